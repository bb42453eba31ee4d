//! The Events the operator publishes on the objects it reconciles.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use crate::MANAGER;

/// A recorder that signs Events as the operator (and, in a pod, the pod).
pub fn recorder(client: Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Publishes an Event on `reference` without holding up the reconcile; a failure is only
/// logged (Events are for people, not state).
pub fn publish(
    recorder: &Recorder,
    reference: ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
    action: &str,
) {
    let recorder = recorder.clone();
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "publishing event");
        }
    });
}
