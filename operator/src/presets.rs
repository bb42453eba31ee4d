//! The Preset reconciler: keeps every Preset's status true (observedGeneration, Ready, and
//! Conflicting naming the presets it collides with). Level-triggered: any change in a namespace
//! re-derives the status of every preset there, and only differences are written.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};

use crate::health::Readiness;
use kube::{Api, Client, ResourceExt};
use prow_api::preset::conditions;
use prow_api::Preset;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MANAGER: &str = "prow-operator";

/// Runs until `shutdown`, writing through `client` and watching through `fail_fast`; its
/// watch counts for `readiness`.
pub async fn run(
    client: Client,
    fail_fast: Client,
    watch_namespace: Option<String>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let api: Api<Preset> = match &watch_namespace {
        Some(ns) => Api::namespaced(fail_fast, ns),
        None => Api::all(fail_fast),
    };
    let (store, writer) = reflector::store();
    let mut events = crate::watch::watch(api, watcher::Config::default(), "presets", readiness)
        .reflect(writer)
        .touched_objects()
        .boxed();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        match event {
            Ok(preset) => {
                let namespace = preset.namespace().unwrap_or_default();
                if let Err(e) = sync_namespace(&client, &store, &namespace).await {
                    tracing::warn!(%namespace, error = %e, "updating preset status");
                }
            }
            // The readiness gate logs the failure and its recovery.
            Err(e) => tracing::debug!(error = %e, "preset watch"),
        }
    }
}

/// Re-derives and writes the status of every preset in `namespace` whose status is stale.
async fn sync_namespace(
    client: &Client,
    store: &Store<Preset>,
    namespace: &str,
) -> Result<(), kube::Error> {
    let presets: Vec<_> = store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .collect();
    let api: Api<Preset> = Api::namespaced(client.clone(), namespace);
    for preset in &presets {
        let status = preset.status.clone().unwrap_or_default();
        let facts = conditions(preset, presets.iter().map(|p| p.as_ref()));
        let now = Time(Timestamp::now());
        let wanted: Vec<Condition> = facts
            .into_iter()
            .map(|(kind, state, reason, message)| {
                let previous = status.conditions.iter().find(|c| c.type_ == kind);
                let unchanged = previous.is_some_and(|c| c.status == state);
                Condition {
                    type_: kind.to_string(),
                    status: state.to_string(),
                    reason: reason.to_string(),
                    message,
                    observed_generation: preset.metadata.generation,
                    last_transition_time: previous
                        .filter(|_| unchanged)
                        .map(|c| c.last_transition_time.clone())
                        .unwrap_or_else(|| now.clone()),
                }
            })
            .collect();
        let same = |a: &Condition, b: &Condition| {
            (
                a.type_.as_str(),
                a.status.as_str(),
                a.reason.as_str(),
                a.message.as_str(),
                a.observed_generation,
            ) == (
                b.type_.as_str(),
                b.status.as_str(),
                b.reason.as_str(),
                b.message.as_str(),
                b.observed_generation,
            )
        };
        let current: BTreeSet<_> = status.conditions.iter().map(|c| c.type_.clone()).collect();
        let fresh = status.observed_generation == preset.metadata.generation
            && current.len() == wanted.len()
            && wanted
                .iter()
                .all(|w| status.conditions.iter().any(|c| same(c, w)));
        if fresh {
            continue;
        }
        let body = json!({"status": {"observedGeneration": preset.metadata.generation, "conditions": wanted}});
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(&preset.name_any(), &params, &Patch::Merge(&body))
            .await?;
    }
    Ok(())
}
