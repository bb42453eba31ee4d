//! The apply layer's requests against a mock API server: which calls a cluster's plan makes,
//! with which preconditions. The behaviour against a real API server is in kind-tests.

use http::Method;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};

use super::*;
use crate::mock::{failed_pass, failure, requests_to, serve_until_quiet, success};

fn cluster(status: Value, finalizers: Value) -> TestCluster {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c1", "namespace": "pods", "uid": "uid-c1", "resourceVersion": "7",
                     "finalizers": finalizers},
        "spec": {"pool": "e2e"},
        "status": status,
    }))
    .expect("cluster")
}

/// A context over a mock API server whose cluster cache holds `cluster`.
fn context(cluster: &TestCluster) -> (Arc<Ctx>, crate::mock::Server, Writer<TestCluster>) {
    let (client, server) = crate::mock::client();
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Apply(cluster.clone()));
    let (wake_jobs, _) = mpsc::unbounded_channel();
    let jobs = reflector::store().0;
    let local = crate::buildclusters::Member::local(
        client.clone(),
        reflector::store().0,
        Synced::already(),
        crate::prowjob::evictions::Budgets::new(client.clone()),
    );
    let builds = BuildClusters::new(Arc::new(local), jobs.clone(), wake_jobs.clone());
    let ctx = Ctx {
        client: client.clone(),
        definitions: reflector::store().0,
        clusters: Clusters::from_store(store),
        open: OpenJobs::new(jobs.clone()),
        builds: Arc::new(builds),
        jobs,
        jobs_synced: Synced::already(),
        recorder: crate::events::recorder(client),
        wake_jobs,
        default_pod_namespace: "pods".into(),
        cleanups: Mutex::default(),
        grown: Mutex::default(),
    };
    (Arc::new(ctx), server, writer)
}

/// The cluster written back, as the API server answers a write.
fn answer(cluster: &TestCluster) -> impl Fn(&Method, &str, &Value) -> Value + Send + 'static {
    let written = serde_json::to_value(cluster).expect("json");
    move |method, path, body| match *method {
        Method::PUT | Method::PATCH if path.contains("/testclusters/") => {
            let mut object = written.clone();
            object["metadata"]["resourceVersion"] = json!("8");
            if let Some(status) = body.get("status") {
                object["status"] = status.clone();
            }
            object
        }
        Method::GET => {
            json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": []})
        }
        _ => success(),
    }
}

#[tokio::test]
async fn a_cluster_without_the_finalizer_gets_it_at_its_resource_version() {
    let c = cluster(json!(null), json!([]));
    let (ctx, server, _writer) = context(&c);
    let seen = serve_until_quiet(server, answer(&c));
    let action = ctx.reconcile(Arc::new(c)).await.expect("reconciled");
    assert_eq!(action, Action::await_change());
    let seen = seen.await.expect("server");
    let writes = requests_to(&seen, "/testclusters/c1");
    assert_eq!(writes.len(), 1, "{seen:?}");
    let (method, _, body) = writes[0];
    assert_eq!(*method, Method::PATCH);
    assert_eq!(
        body["metadata"],
        json!({"finalizers": [FINALIZER], "resourceVersion": "7"})
    );
}

#[tokio::test]
async fn a_new_cluster_is_written_vacant_with_a_replace_at_its_resource_version() {
    let c = cluster(json!(null), json!([FINALIZER]));
    let (ctx, server, _writer) = context(&c);
    let seen = serve_until_quiet(server, answer(&c));
    ctx.reconcile(Arc::new(c)).await.expect("reconciled");
    let seen = seen.await.expect("server");
    let writes = requests_to(&seen, "/testclusters/c1/status");
    assert_eq!(writes.len(), 1, "{seen:?}");
    let (method, _, body) = writes[0];
    assert_eq!(*method, Method::PUT, "a replace, never a blind patch");
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    assert_eq!(body["status"]["phase"], "Vacant");
}

#[tokio::test]
async fn a_lease_whose_job_is_gone_is_reclaimed_its_copies_deleted_and_an_event_told() {
    let leased = json!({"phase": "Leased", "lease": {"holder": "ci/e2e-1", "holderUid": "u1",
        "since": "2024-05-01T11:00:00Z"}});
    let c = cluster(leased, json!([FINALIZER]));
    let (ctx, server, _writer) = context(&c);
    let seen = serve_until_quiet(server, answer(&c));
    ctx.reconcile(Arc::new(c)).await.expect("reconciled");
    let seen = seen.await.expect("server");
    let status = requests_to(&seen, "/testclusters/c1/status");
    assert_eq!(status.len(), 1, "{seen:?}");
    assert_eq!(status[0].2["status"]["phase"], "Vacant");
    assert!(status[0].2["status"].get("lease").is_none());
    let copies = requests_to(&seen, "/secrets");
    assert_eq!(copies.len(), 1, "{seen:?}");
    assert!(
        copies[0]
            .1
            .contains("prow-operator.dev%2Ftest-cluster-holder%3Du1"),
        "{seen:?}"
    );
    let events = requests_to(&seen, "/events");
    assert_eq!(events.len(), 1, "{seen:?}");
    assert_eq!(events[0].2["reason"], "Reclaimed");
}

#[tokio::test]
async fn a_failed_write_is_a_warning_event_on_the_cluster_and_a_backoff() {
    let c = cluster(json!(null), json!([FINALIZER]));
    let (ctx, server, _writer) = context(&c);
    let seen = serve_until_quiet(server, |method, path, _| match *method {
        Method::PUT if path.ends_with("/status") => {
            failure(403, "Forbidden", "testclusters/status is forbidden")
        }
        _ => success(),
    });
    assert_eq!(failed_pass(&ctx, Arc::new(c)).await, Action::retry());
    let seen = seen.await.expect("server");
    let events = requests_to(&seen, "/events");
    assert_eq!(events.len(), 1, "{seen:?}");
    let event = &events[0].2;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], crate::controller::FAILED);
    assert_eq!(event["regarding"]["kind"], "TestCluster");
    assert_eq!(event["regarding"]["name"], "c1");
    assert!(
        event["note"]
            .as_str()
            .unwrap_or_default()
            .contains("forbidden"),
        "{event}"
    );
}

#[tokio::test]
async fn a_lost_race_is_decided_again_soon_without_an_event() {
    let c = cluster(json!(null), json!([FINALIZER]));
    let (ctx, server, _writer) = context(&c);
    let seen = serve_until_quiet(server, |method, _, _| match *method {
        Method::PUT => failure(409, "Conflict", "the object has been modified"),
        _ => success(),
    });
    assert_eq!(
        failed_pass(&ctx, Arc::new(c)).await,
        Action::requeue(crate::controller::AFTER_CONFLICT)
    );
    let seen = seen.await.expect("server");
    assert!(requests_to(&seen, "/events").is_empty(), "{seen:?}");
}
