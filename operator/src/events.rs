//! The Events the operator publishes on the objects it reconciles.
//!
//! Events are for people, not state: they are written by a few background writers from a
//! bounded queue, as client-go's event broadcaster does, so a burst of them (a pool handing
//! twenty clusters on at once publishes forty) never holds up a reconcile or competes with its
//! writes for the API server. When the queue is full an Event is dropped and logged.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;

use crate::MANAGER;

/// Events waiting to be written; more are dropped.
const QUEUE: usize = 4096;

/// Events being written at once.
const WRITERS: usize = 4;

/// Where the operator's Events go: a handle on the background writers.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, ObjectReference)>,
}

/// Starts the writers of Events signed as the operator (and, in a pod, the pod). They end when
/// every handle is dropped.
pub fn recorder(client: Client) -> Events {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let (queue, mut queued) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
    let writes = futures::stream::poll_fn(move |cx| queued.poll_recv(cx))
        .map(move |(event, reference)| {
            let recorder = recorder.clone();
            async move {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %e, "publishing event");
                }
            }
        })
        .buffer_unordered(WRITERS)
        .for_each(|()| std::future::ready(()));
    tokio::spawn(writes);
    Events { queue }
}

/// Publishes an Event on `reference` without holding up the reconcile; a failure is only
/// logged.
pub fn publish(
    events: &Events,
    reference: ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
    action: &str,
) {
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
    if events.queue.try_send((event, reference)).is_err() {
        tracing::warn!(
            reason,
            "too many Events waiting to be written; this one is dropped"
        );
    }
}
