//! The Preset reconciler: keeps every Preset's status true (observedGeneration, Ready, and
//! Conflicting naming the presets it collides with), on the shared work queue.
//!
//! One preset's change can change its peers' Conflicting condition, so a change, a deletion or
//! a relist asks for every preset of the namespace; the rule (`prow_api::preset::status_update`)
//! is pure and writes happen only when it says the stored status is stale.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use prow_api::preset::status_update;
use prow_api::Preset;
use prow_runtime::health::Readiness;
use prow_runtime::watch::{cached, Cached};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::Reconciler;
use crate::error::Error;
use crate::events::Events;
use crate::queue::Action;

/// The controller to spawn: runs until `shutdown`, writing through `client` and watching
/// through `fail_fast`; its watch counts for `readiness`, its failures go to `events`.
pub fn run(
    client: Client,
    fail_fast: Client,
    watch_namespace: Option<String>,
    events: Events,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let Cached {
        store,
        synced,
        events: watched,
    } = cached(
        fail_fast,
        watch_namespace.as_deref(),
        watcher::Config::default(),
        "presets",
        readiness,
    );
    let requests = requests(watched, store.clone());
    let presets = Arc::new(Presets {
        client,
        peers: store.clone(),
        events,
    });
    crate::controller::run(presets, store, synced, requests, 4, shutdown)
}

/// The Preset reconciler.
struct Presets {
    client: Client,
    /// Every preset, for the peers of the one reconciled.
    peers: Store<Preset>,
    events: Events,
}

impl Reconciler for Presets {
    type Kind = Preset;
    const KIND: &'static str = "Preset";

    async fn reconcile(self: Arc<Self>, preset: Arc<Preset>) -> Result<Action, Error> {
        Ok(reconcile(&preset, &self.peers, &self.client).await?)
    }

    fn events(&self) -> &Events {
        &self.events
    }

    fn put_failure(&self, preset: &Preset, error: &Error) {
        let conditions = preset.status.as_ref().map(|s| s.conditions.as_slice());
        crate::controller::mark_failed(&self.client, preset, conditions.unwrap_or_default(), error);
    }
}

/// Every preset of the namespace an event touches, read from the store after the event is in
/// it; after a (re)list, every preset.
fn requests<S>(events: S, store: Store<Preset>) -> impl Stream<Item = ObjectRef<Preset>> + Send
where
    S: Stream<Item = watcher::Result<Event<Preset>>> + Send,
{
    events.flat_map(move |event| {
        let namespace = match &event {
            Ok(Event::Apply(p) | Event::Delete(p)) => Some(p.namespace()),
            Ok(Event::InitDone) => None,
            // The readiness gate logs the failure and its recovery.
            Ok(Event::Init | Event::InitApply(_)) | Err(_) => {
                return futures::stream::iter(Vec::new())
            }
        };
        let wanted: Vec<_> = store
            .state()
            .iter()
            .filter(|p| namespace.as_ref().is_none_or(|ns| &p.namespace() == ns))
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        futures::stream::iter(wanted)
    })
}

/// Fetch (the preset and its peers, from the cache) -> decide (`status_update`) -> apply (one
/// status patch, only when it is stale).
async fn reconcile(
    preset: &Preset,
    store: &Store<Preset>,
    client: &Client,
) -> Result<Action, kube::Error> {
    let namespace = preset.namespace().unwrap_or_default();
    let peers: Vec<Arc<Preset>> = store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let Some(status) = status_update(
        preset,
        peers.iter().map(|p| p.as_ref()),
        Time(Timestamp::now()),
    ) else {
        return Ok(Action::await_change());
    };
    let api: Api<Preset> = Api::namespaced(client.clone(), &namespace);
    let params = crate::patch_params();
    api.patch_status(
        &preset.name_any(),
        &params,
        &Patch::Merge(&json!({ "status": status })),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use http::Method;
    use kube::runtime::reflector;
    use kube::runtime::reflector::store::Writer;
    use serde_json::{json, Value};

    use super::*;
    use crate::mock::serve_until_quiet;

    fn preset(name: &str, env: &str) -> Preset {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": name, "namespace": "prow", "generation": 2},
            "spec": {"selector": {}, "env": [{"name": "E", "value": env}]},
        }))
        .expect("preset")
    }

    fn presets(objects: &[&Preset]) -> (Arc<Presets>, crate::mock::Server, Writer<Preset>) {
        let (client, server) = crate::mock::client();
        let (peers, mut writer) = reflector::store();
        for p in objects {
            writer.apply_watcher_event(&Event::Apply((*p).clone()));
        }
        let events = crate::events::recorder(client.clone());
        (
            Arc::new(Presets {
                client,
                peers,
                events,
            }),
            server,
            writer,
        )
    }

    fn ok(_: &Method, _: &str, body: &Value) -> Value {
        let mut object = serde_json::to_value(preset("a", "1")).expect("json");
        object["status"] = body["status"].clone();
        object
    }

    #[tokio::test]
    async fn a_stale_status_is_patched_with_its_generation_and_a_colliding_peer_named() {
        let (a, b) = (preset("a", "1"), preset("b", "2"));
        let (reconciler, server, _writer) = presets(&[&a, &b]);
        let seen = serve_until_quiet(server, ok);
        reconciler.reconcile(Arc::new(a)).await.expect("reconciled");
        let seen = seen.await.expect("server");
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (method, path, body) = &seen[0];
        assert_eq!(*method, Method::PATCH);
        assert!(
            path.starts_with("/apis/prow-operator.dev/v1alpha1/namespaces/prow/presets/a/status"),
            "{path}"
        );
        assert_eq!(body["status"]["observedGeneration"], 2);
        let conflicting = body["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Conflicting")
            .expect("a Conflicting condition");
        assert_eq!(conflicting["status"], "True", "{body}");
        assert!(
            conflicting["message"]
                .as_str()
                .unwrap_or_default()
                .contains('b'),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_up_to_date_status_writes_nothing() {
        let a = preset("a", "1");
        let (reconciler, server, _writer) = presets(&[&a]);
        let mut written = a.clone();
        written.status = status_update(&a, [&a], Time(Timestamp::now()));
        let seen = serve_until_quiet(server, ok);
        reconciler
            .reconcile(Arc::new(written))
            .await
            .expect("reconciled");
        assert!(seen.await.expect("server").is_empty());
    }
}
