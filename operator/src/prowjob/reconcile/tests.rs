//! The apply layer's requests, against a mock API server: which calls a plan makes, in which
//! order, with which preconditions. The behaviour against a real API server is in kind-tests.

use std::sync::Arc;

use http::Method;
use kube::runtime::reflector;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::*;
use crate::metrics::Metrics;
use crate::mock::{serve, serve_until_quiet, Server};
use crate::prowjob::evictions::Budgets;
use crate::prowjob::{ledger::Ledger, Settings};

/// A context whose client talks to the returned mock, with empty caches.
fn context() -> (Context, Server) {
    let (client, handle) = crate::mock::client();
    let (jobs, _) = reflector::store();
    let (pods, _) = reflector::store();
    let (wake, _) = mpsc::unbounded_channel();
    let local = Member::local(
        client.clone(),
        pods,
        prow_runtime::store::Synced::already(),
        Budgets::off(client.clone()),
    );
    let builds =
        crate::buildclusters::BuildClusters::new(Arc::new(local), jobs.clone(), wake.clone());
    let ctx = Context {
        client: client.clone(),
        open: crate::prowjob::open::OpenJobs::new(jobs.clone()),
        jobs,
        builds: Arc::new(builds),
        settings: Settings {
            pod_namespace: "pods".into(),
            ..Settings::default()
        },
        ledger: Ledger::default(),
        recorder: crate::events::recorder(client),
        metrics: Arc::new(Metrics::default()),
        wake,
        clusters: crate::testclusters::Clusters::from_store(reflector::store().0),
    };
    (ctx, handle)
}

/// The operator's own cluster's namespace `pods`, where the jobs of these tests run.
fn local_target(ctx: &Context) -> Target<'_> {
    Target {
        namespace: "pods",
        member: Some(ctx.builds.local()),
    }
}

fn job(status: Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "j", "namespace": "prow", "uid": "uid-j", "resourceVersion": "5",
                     "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": "ci",
                 "pod_spec": {"containers": [{"name": "test", "image": "x"}]}},
        "status": status,
    }))
    .expect("job")
}

/// What the API server answers to a status patch: the job (its content does not matter).
fn job_answer() -> Value {
    serde_json::to_value(job(json!({"state": "pending"}))).expect("json")
}

fn pod_answer(uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "j", "namespace": "pods", "uid": uid}})
}

#[tokio::test]
async fn a_start_creates_the_pod_then_writes_pending_guarded_by_the_resource_version() {
    let (ctx, handle) = context();
    let job = job(json!({"state": "triggered"}));
    let server = serve(handle, 2, |method, _, body| match *method {
        Method::POST => {
            let mut pod = body.clone();
            pod["metadata"]["uid"] = json!("uid-pod");
            pod
        }
        _ => job_answer(),
    });
    let action = reconcile_job(&Job(job.clone()), &ctx)
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    let seen = server.await.expect("server");
    let (create, patch) = (&seen[0], &seen[1]);
    assert_eq!(create.0, Method::POST);
    assert!(
        create.1.starts_with("/api/v1/namespaces/pods/pods?"),
        "{}",
        create.1
    );
    assert_eq!(create.2["metadata"]["name"], "j");
    let build_id = create.2["metadata"]["labels"][prow_api::labels::BUILD_ID].clone();
    assert!(
        build_id.as_str().is_some_and(|id| !id.is_empty()),
        "{build_id}"
    );

    assert_eq!(patch.0, Method::PATCH);
    assert!(
        patch
            .1
            .starts_with("/apis/prow.k8s.io/v1/namespaces/prow/prowjobs/j/status?"),
        "{}",
        patch.1
    );
    assert!(
        patch.1.contains("fieldManager=prow-operator"),
        "{}",
        patch.1
    );
    assert_eq!(patch.2["metadata"]["resourceVersion"], "5");
    let status = &patch.2["status"];
    assert_eq!(status["state"], "pending");
    assert_eq!(status["pod_name"], "j");
    assert_eq!(status["build_id"], build_id);
    assert!(
        ctx.ledger.starts.is_started("uid-j"),
        "the start counts before the cache shows it"
    );
}

#[tokio::test]
async fn a_revival_stores_the_count_before_the_pod_goes_and_deletes_only_that_pod() {
    let (ctx, handle) = context();
    let job = job(json!({"state": "pending", "pod_name": "j", "build_id": "1"}));
    let pod: PodView = serde_json::from_value(json!({
        "metadata": {"name": "j", "namespace": "pods", "uid": "uid-pod",
                     "annotations": {"prow-operator.dev/job-uid": "uid-j"}},
        "status": {"phase": "Failed", "reason": "Evicted"},
    }))
    .expect("pod");
    let facts = Facts {
        job: &job,
        pod: Some(&pod),
        evicted: false,
        now: Timestamp::now(),
        clusters: &[],
        pool_policy: &PoolPolicy::default(),
        default_pod_namespace: "pods",
    };
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let planned = plan(
        &facts,
        &mut peers,
        &ctx.settings.policy,
        &ctx.settings.limits,
        || unreachable!("a revival starts nothing"),
    );
    let server = serve(handle, 2, |method, _, _| match *method {
        Method::DELETE => pod_answer("uid-pod"),
        _ => job_answer(),
    });
    let action = apply(
        &facts,
        &mut peers,
        planned,
        None,
        None,
        local_target(&ctx),
        &ctx,
    )
    .await
    .expect("applied");
    assert_eq!(action, Action::requeue(prow_api::plan::AFTER_DELETE));
    let seen = server.await.expect("server");
    assert_eq!(seen[0].0, Method::PATCH, "the count first: {seen:?}");
    assert_eq!(seen[0].2["status"]["pod_revival_count"], 1);
    assert_eq!(seen[0].2["status"]["pod_name"], Value::Null);
    assert_eq!(seen[1].0, Method::DELETE);
    assert!(
        seen[1].1.starts_with("/api/v1/namespaces/pods/pods/j?"),
        "{}",
        seen[1].1
    );
    assert_eq!(
        seen[1].2["preconditions"]["uid"], "uid-pod",
        "only the pod decided on"
    );
}

#[tokio::test]
async fn a_refused_pod_ends_the_job_in_error_with_the_api_servers_reason() {
    let (ctx, handle) = context();
    let job = job(json!({"state": "triggered"}));
    let server = serve(handle, 2, |method, _, _| match *method {
        Method::POST => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "pods \"j\" is forbidden: exceeded quota",
                               "reason": "Forbidden", "code": 403}),
        _ => job_answer(),
    });
    reconcile_job(&Job(job.clone()), &ctx)
        .await
        .expect("reconciled");
    let seen = server.await.expect("server");
    assert_eq!(seen[1].0, Method::PATCH);
    let status = &seen[1].2["status"];
    assert_eq!(status["state"], "error");
    assert_eq!(
        status["description"],
        "Pod can not be created: pods \"j\" is forbidden: exceeded quota"
    );
    assert!(status["completionTime"].is_string());
    assert!(
        !ctx.ledger.starts.is_started("uid-j"),
        "the refused start holds no slot"
    );
}

/// A context like [`context`] whose cluster cache holds `cluster`.
fn context_with(cluster: Value) -> (Context, Server) {
    let (mut ctx, handle) = context();
    let (store, mut writer) = reflector::store();
    let cluster: TestCluster = serde_json::from_value(cluster).expect("cluster");
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cluster));
    ctx.clusters = crate::testclusters::Clusters::from_store(store);
    (ctx, handle)
}

fn pool_job(status: Value) -> ProwJob {
    let mut j = job(status);
    j.metadata.labels = Some(
        [(
            prow_api::labels::TEST_CLUSTER_POOL.to_string(),
            "e2e".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    j
}

#[tokio::test]
async fn a_lease_is_written_at_its_version_before_the_pod_and_given_back_if_the_pod_is_refused() {
    let (ctx, handle) = context_with(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c1", "namespace": "pods", "resourceVersion": "7"},
        "spec": {"pool": "e2e"},
        "status": {"phase": "Vacant"},
    }));
    let job = pool_job(json!({"state": "triggered"}));
    // Lease, pod, job status, release; and Events.
    let server = serve_until_quiet(handle, |method, path, body| {
        if path.contains("/events") {
            return body.clone();
        }
        match *method {
            Method::PUT => {
                let mut c = body.clone();
                let rv = c["metadata"]["resourceVersion"].as_str().unwrap_or("0");
                let next = rv.parse::<u64>().unwrap_or(0) + 1;
                c["metadata"]["resourceVersion"] = json!(next.to_string());
                c
            }
            Method::POST => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": "exceeded quota", "reason": "Forbidden",
                                   "code": 403}),
            Method::DELETE => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404}),
            _ => job_answer(),
        }
    });
    reconcile_job(&Job(job.clone()), &ctx)
        .await
        .expect("reconciled");
    let slot_held = ctx.ledger.starts.is_started("uid-j");
    drop(ctx);
    let seen: Vec<_> = server
        .await
        .expect("server")
        .into_iter()
        .filter(|(_, path, _)| !path.contains("/events"))
        .collect();
    let calls: Vec<(Method, &str)> = seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                Method::PUT,
                "/apis/prow-operator.dev/v1alpha1/namespaces/pods/testclusters/c1/status"
            ),
            (Method::POST, "/api/v1/namespaces/pods/pods"),
            (
                Method::PATCH,
                "/apis/prow.k8s.io/v1/namespaces/prow/prowjobs/j/status"
            ),
            (
                Method::PUT,
                "/apis/prow-operator.dev/v1alpha1/namespaces/pods/testclusters/c1/status"
            ),
        ],
        "a cluster without a kubeconfig leaves no copy to remove"
    );
    let take = &seen[0].2;
    assert_eq!(
        take["metadata"]["resourceVersion"], "7",
        "the version decided on"
    );
    assert_eq!(take["status"]["phase"], "Leased");
    assert_eq!(take["status"]["lease"]["holderUid"], "uid-j");
    assert_eq!(seen[2].2["status"]["state"], "error");
    let give_back = &seen[3].2;
    assert_eq!(
        give_back["metadata"]["resourceVersion"], "8",
        "the version the lease write left"
    );
    assert_eq!(give_back["status"]["phase"], "Vacant");
    assert!(!slot_held);
}

#[tokio::test]
async fn a_lease_taken_meanwhile_is_a_conflict_that_creates_no_pod_and_holds_no_slot() {
    let (ctx, handle) = context_with(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c1", "namespace": "pods", "resourceVersion": "7"},
        "spec": {"pool": "e2e"},
    }));
    let job = pool_job(json!({"state": "triggered"}));
    let server = serve(handle, 1, |_, _, _| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "the object has been modified", "reason": "Conflict", "code": 409})
    });
    let error = reconcile_job(&Job(job.clone()), &ctx)
        .await
        .expect_err("a conflict");
    assert!(matches!(error, Error::Conflict(_)), "{error}");
    let seen = server.await.expect("server");
    assert_eq!(seen[0].0, Method::PUT);
    assert!(!ctx.ledger.starts.is_started("uid-j"), "no slot held");
}
