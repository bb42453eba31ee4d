//! Evictions through the Eviction API, seen on API servers older than 1.26.
//!
//! From 1.26 the API server marks a pod it is about to evict with a `DisruptionTarget`
//! condition, which the lifecycle rules read. Before that, an eviction is a plain deletion,
//! and the one trace it leaves is in a PodDisruptionBudget covering the pod: the API server
//! adds the pod to the budget's `status.disruptedPods` before it deletes the pod.
//!
//! So the operator keeps one budget per pod namespace, covering only Prow's pods and never
//! refusing an eviction of a ready pod (`minAvailable: 0`), watches it, and remembers each pod
//! the API server recorded there. A job whose pod goes away after such a record is revived,
//! like one whose pod the kubelet evicted; any other deletion still ends the job in error with
//! "Pod got deleted unexpectedly", as upstream.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject};
use kube::discovery::{self, Scope};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use prow_api::labels;
use serde_json::json;

use crate::MANAGER;

/// Name of the operator's budget in each namespace it creates pods in.
pub const BUDGET_NAME: &str = "prow-job-pods";

/// Label on the budgets the operator owns, so that its watch sees only those.
pub const BUDGET_LABEL: &str = "app.kubernetes.io/managed-by";

/// How long a recorded eviction is kept for the reconcile that reads it. The API server writes
/// the record before the deletion, so the reconcile comes within the pod's grace period.
const KEEP: Duration = Duration::from_secs(600);

/// Evictions recorded in the budgets, by pod namespace and name.
#[derive(Default)]
pub struct Evictions {
    inner: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    /// Evictions not yet acted on: (namespace, pod) -> when the API server recorded it.
    pending: HashMap<(String, String), Timestamp>,
    /// Evictions already acted on, so that a budget still listing one does not bring it back.
    taken: HashSet<(String, String, Timestamp)>,
}

impl Evictions {
    /// Notes that the API server recorded an eviction of `pod` in `namespace` at `at`. Returns
    /// whether it is news (not already known, not already acted on).
    pub fn record(&self, namespace: &str, pod: &str, at: Timestamp, now: Timestamp) -> bool {
        let mut records = self.inner.lock().expect("evictions lock");
        records.prune(now);
        let key = (namespace.to_string(), pod.to_string());
        if records.taken.contains(&(key.0.clone(), key.1.clone(), at)) {
            return false;
        }
        match records.pending.get(&key) {
            Some(known) if *known >= at => false,
            _ => {
                records.pending.insert(key, at);
                true
            }
        }
    }

    /// Whether `pod` in `namespace` was evicted at or after `since` (the pod's creation), and
    /// if so forgets it: one eviction revives a job once.
    pub fn take(&self, namespace: &str, pod: &str, since: Timestamp) -> bool {
        let mut records = self.inner.lock().expect("evictions lock");
        let key = (namespace.to_string(), pod.to_string());
        match records.pending.get(&key).copied() {
            Some(at) if at >= since => {
                records.pending.remove(&key);
                records.taken.insert((key.0, key.1, at));
                true
            }
            _ => false,
        }
    }

    /// Whether an eviction of `pod` at or after `since` is recorded, without forgetting it.
    pub fn contains(&self, namespace: &str, pod: &str, since: Timestamp) -> bool {
        let records = self.inner.lock().expect("evictions lock");
        records
            .pending
            .get(&(namespace.to_string(), pod.to_string()))
            .is_some_and(|at| *at >= since)
    }
}

impl Records {
    fn prune(&mut self, now: Timestamp) {
        let fresh = |at: &Timestamp| {
            Duration::try_from(now.duration_since(*at)).map_or(true, |age| age < KEEP)
        };
        self.pending.retain(|_, at| fresh(at));
        self.taken.retain(|(_, _, at)| fresh(at));
    }
}

/// The evictions a budget lists: pod name and when.
pub fn disrupted_pods(budget: &DynamicObject) -> Vec<(String, Timestamp)> {
    let Some(pods) = budget
        .data
        .pointer("/status/disruptedPods")
        .and_then(|p| p.as_object())
    else {
        return Vec::new();
    };
    pods.iter()
        .filter_map(|(pod, at)| Some((pod.clone(), at.as_str()?.parse().ok()?)))
        .collect()
}

/// The budget the operator keeps in a namespace: Prow's pods, never blocking an eviction of a
/// ready pod.
pub fn budget(namespace: &str) -> serde_json::Value {
    json!({
        "metadata": {
            "name": BUDGET_NAME,
            "namespace": namespace,
            "labels": {BUDGET_LABEL: MANAGER},
        },
        "spec": {
            "minAvailable": 0,
            "selector": {"matchLabels": {labels::CREATED_BY_PROW: "true"}},
        },
    })
}

/// Budgets in the API version the API server serves (policy/v1 from 1.21, v1beta1 before).
/// `Ok(None)` when the API server has none; an error when it could not be asked (asked again
/// at the next pod).
pub async fn budget_resource(client: &Client) -> Result<Option<ApiResource>, kube::Error> {
    let group = match discovery::group(client, "policy").await {
        Ok(group) => group,
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
            tracing::warn!("evicted pods will not be revived: no policy API group");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let found = group
        .versioned_resources(group.preferred_version_or_latest())
        .into_iter()
        .chain(group.recommended_resources())
        .find(|(r, caps)| r.kind == "PodDisruptionBudget" && caps.scope == Scope::Namespaced);
    if found.is_none() {
        tracing::warn!(
            "evicted pods will not be revived: the API server has no PodDisruptionBudget"
        );
    }
    Ok(found.map(|(r, _)| r))
}

/// How long a namespace whose budget could not be created waits before the operator tries
/// again (at its next pod there): a failure costs one request per interval, not per pod.
const BUDGET_RETRY: Duration = Duration::from_secs(600);

/// Creates the budget in each namespace the operator creates pods in, once per process.
pub struct Budgets {
    client: Client,
    resource: tokio::sync::OnceCell<Option<ApiResource>>,
    /// Namespaces with the budget (`None`), or whose attempt failed at this instant.
    ensured: Mutex<HashMap<String, Option<std::time::Instant>>>,
}

impl Budgets {
    /// Budgets written through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            resource: tokio::sync::OnceCell::new(),
            ensured: Mutex::new(HashMap::new()),
        }
    }

    /// Budgets that are never created: as on an API server without PodDisruptionBudgets.
    #[cfg(test)]
    pub fn off(client: Client) -> Self {
        Self::with_resource(client, None)
    }

    /// Budgets of a resource known already, without discovery.
    #[cfg(test)]
    pub fn with_resource(client: Client, resource: Option<ApiResource>) -> Self {
        Self {
            client,
            resource: tokio::sync::OnceCell::new_with(Some(resource)),
            ensured: Mutex::new(HashMap::new()),
        }
    }

    /// The budget resource, discovered once it could be asked.
    pub async fn resource(&self) -> Option<ApiResource> {
        match self
            .resource
            .get_or_try_init(|| budget_resource(&self.client))
            .await
        {
            Ok(resource) => resource.clone(),
            Err(e) => {
                tracing::debug!(error = %e, "discovering PodDisruptionBudgets");
                None
            }
        }
    }

    /// Makes sure `namespace` has the operator's budget. A failure is logged and does not stop
    /// the pod: only the revival of API evictions depends on the budget.
    pub async fn ensure(&self, namespace: &str) {
        match self.ensured.lock().expect("budgets lock").get(namespace) {
            Some(None) => return,
            Some(Some(failed)) if failed.elapsed() < BUDGET_RETRY => return,
            _ => {}
        }
        let Some(resource) = self.resource().await else {
            return;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let object = budget(namespace);
        let mut budget: DynamicObject = match serde_json::from_value(object) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "building the eviction budget");
                return;
            }
        };
        budget.types = Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        let params = crate::post_params();
        match api.create(&params, &budget).await {
            Ok(_) => tracing::info!(namespace, "created the eviction budget"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                tracing::warn!(namespace, error = %e, "evicted pods will not be revived: cannot create the eviction budget (trying again in 10 minutes)");
                self.ensured
                    .lock()
                    .expect("budgets lock")
                    .insert(namespace.to_string(), Some(std::time::Instant::now()));
                return;
            }
        }
        self.ensured
            .lock()
            .expect("budgets lock")
            .insert(namespace.to_string(), None);
    }
}

impl Budgets {
    /// The evictions the budget in `namespace` lists now, read from the API server: for when
    /// a pod is gone before the budget's watch delivered its record.
    pub async fn read(&self, namespace: &str) -> Vec<(String, Timestamp)> {
        let Some(resource) = self.resource().await else {
            return Vec::new();
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_opt(BUDGET_NAME).await {
            Ok(Some(budget)) => disrupted_pods(&budget),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::debug!(namespace, error = %e, "reading the eviction budget");
                Vec::new()
            }
        }
    }
}

/// Watches the operator's budgets (in `namespace`, or all) and yields each eviction they
/// record: pod namespace, pod name and when. Ends at once on an API server without budgets.
pub fn watch_evictions(
    client: Client,
    namespace: Option<String>,
    resource: Option<ApiResource>,
) -> impl Stream<Item = (String, String, Timestamp)> + Send {
    let Some(resource) = resource else {
        return futures::stream::empty().left_stream();
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, &ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let config = watcher::Config::default().labels(&format!("{BUDGET_LABEL}={MANAGER}"));
    prow_runtime::watcher::watcher(api, config)
        .backoff(prow_runtime::watch::backoff())
        .applied_objects()
        .filter_map(|event| {
            std::future::ready(match event {
                Ok(budget) => Some(budget),
                Err(e) => {
                    tracing::debug!(error = %e, "watching eviction budgets");
                    None
                }
            })
        })
        .flat_map(|budget| {
            let namespace = budget.metadata.namespace.clone().unwrap_or_default();
            futures::stream::iter(
                disrupted_pods(&budget)
                    .into_iter()
                    .map(move |(pod, at)| (namespace.clone(), pod, at)),
            )
        })
        .right_stream()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_eviction_revives_the_pod_it_names_once() {
        let e = Evictions::default();
        let now = at("2026-01-01T00:00:10Z");
        assert!(e.record("pods", "job-a", at("2026-01-01T00:00:05Z"), now));
        // The budget lists it again on its next update: no news.
        assert!(!e.record("pods", "job-a", at("2026-01-01T00:00:05Z"), now));
        // Not another namespace's pod, not a pod created after the eviction.
        assert!(!e.take("other", "job-a", at("2026-01-01T00:00:00Z")));
        assert!(!e.take("pods", "job-a", at("2026-01-01T00:00:06Z")));
        assert!(e.contains("pods", "job-a", at("2026-01-01T00:00:00Z")));
        assert!(e.take("pods", "job-a", at("2026-01-01T00:00:00Z")));
        // Taken once; the budget still listing it does not bring it back.
        assert!(!e.take("pods", "job-a", at("2026-01-01T00:00:00Z")));
        assert!(!e.record("pods", "job-a", at("2026-01-01T00:00:05Z"), now));
        // A later eviction of the revived pod of the same name is news.
        assert!(e.record("pods", "job-a", at("2026-01-01T00:00:09Z"), now));
        assert!(e.take("pods", "job-a", at("2026-01-01T00:00:07Z")));
    }

    #[test]
    fn old_records_are_forgotten() {
        let e = Evictions::default();
        assert!(e.record(
            "pods",
            "old",
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z")
        ));
        // Any record prunes: ten minutes later the first one is gone.
        e.record(
            "pods",
            "new",
            at("2026-01-01T00:10:01Z"),
            at("2026-01-01T00:10:01Z"),
        );
        assert!(!e.contains("pods", "old", at("2026-01-01T00:00:00Z")));
        assert!(e.contains("pods", "new", at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn a_budget_lists_its_disrupted_pods() {
        let budget: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": BUDGET_NAME, "namespace": "pods"},
            "status": {"disruptedPods": {"job-a": "2026-01-01T00:00:05Z", "bad": 3}},
        }))
        .unwrap();
        assert_eq!(
            disrupted_pods(&budget),
            vec![("job-a".to_string(), at("2026-01-01T00:00:05Z"))]
        );
        let empty: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": BUDGET_NAME}, "status": {},
        }))
        .unwrap();
        assert!(disrupted_pods(&empty).is_empty());
    }

    /// A namespace where the budget cannot be created costs one request, not one per pod;
    /// one where it exists (or was made) costs none after the first.
    #[tokio::test]
    async fn a_budget_is_asked_for_once_per_namespace_even_when_refused() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let resource = ApiResource {
            group: "policy".into(),
            version: "v1".into(),
            api_version: "policy/v1".into(),
            kind: "PodDisruptionBudget".into(),
            plural: "poddisruptionbudgets".into(),
        };
        let budgets = Budgets::with_resource(Client::new(service, "default"), Some(resource));
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            for code in [403u16, 201] {
                let (request, respond) = handle.next_request().await.expect("request");
                paths.push(request.uri().path().to_string());
                let body = if code == 201 {
                    serde_json::to_vec(&budget("made")).expect("json")
                } else {
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "message": "forbidden", "code": 403}))
                    .expect("json")
                };
                respond.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(body))
                        .expect("response"),
                );
            }
            paths
        });
        // A third request would wait for an answer that never comes.
        let calls = async {
            budgets.ensure("refused").await;
            budgets.ensure("refused").await;
            budgets.ensure("made").await;
            budgets.ensure("made").await;
        };
        tokio::time::timeout(Duration::from_secs(5), calls)
            .await
            .expect("no request beyond one per namespace");
        assert_eq!(
            server.await.expect("server"),
            [
                "/apis/policy/v1/namespaces/refused/poddisruptionbudgets",
                "/apis/policy/v1/namespaces/made/poddisruptionbudgets",
            ]
        );
    }

    #[test]
    fn the_budget_covers_only_prow_pods_and_refuses_no_eviction() {
        let b = budget("pods");
        assert_eq!(b["spec"]["minAvailable"], 0);
        assert_eq!(
            b["spec"]["selector"]["matchLabels"][labels::CREATED_BY_PROW],
            "true"
        );
        assert_eq!(b["metadata"]["labels"][BUDGET_LABEL], MANAGER);
    }
}
