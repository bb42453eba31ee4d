//! The ProwJob reconciler against a real API server, with the pod driver as the kubelet.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn job_json(name: &str, spec: Value) -> ProwJob {
    let mut base = json!({"type": "periodic", "agent": "kubernetes", "job": "ci-unit",
                          "pod_spec": {"containers": [{"image": "busybox", "command": ["true"]}]}});
    if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": base,
    }))
    .expect("job")
}

async fn create(env: &TestEnv, name: &str, spec: Value) -> ProwJob {
    env.api::<ProwJob>()
        .create(&PostParams::default(), &job_json(name, spec))
        .await
        .expect("job created")
}

fn state(job: &ProwJob) -> Option<ProwJobState> {
    job.status.as_ref().and_then(|s| s.state)
}

fn description(job: &ProwJob) -> String {
    job.status
        .as_ref()
        .map(|s| s.description.clone())
        .unwrap_or_default()
}

async fn pending(env: &TestEnv, name: &str) -> ProwJob {
    wait_for_job(&env.api(), name, WAIT, |j| {
        state(j) == Some(ProwJobState::Pending)
    })
    .await
    .expect("pending")
}

async fn completed(env: &TestEnv, name: &str) -> ProwJob {
    wait_for_job(&env.api(), name, WAIT, ProwJob::is_complete)
        .await
        .expect("completed")
}

async fn pod_gone(env: &TestEnv, name: &str) {
    let pods = env.api::<Pod>();
    eventually("the pod to be deleted", WAIT, || async {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
    .expect("pod deleted");
}

#[tokio::test]
async fn job_runs_as_a_pod_to_success_with_events() {
    let env = TestEnv::new("pj-success").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "run-1", json!({})).await;

    let job = pending(&env, "run-1").await;
    let status = job.status.clone().expect("status");
    assert_eq!(status.pod_name, "run-1");
    assert!(
        status.build_id.parse::<u64>().is_ok(),
        "numeric build id: {}",
        status.build_id
    );
    assert!(status.pending_time.is_some() && status.start_time.is_some());
    assert_eq!(status.description, "Job triggered.");

    let pod = env
        .api::<Pod>()
        .get("run-1")
        .await
        .expect("pod named after the job");
    let labels = pod.metadata.labels.clone().expect("labels");
    assert_eq!(labels["created-by-prow"], "true");
    assert_eq!(labels["prow.k8s.io/build-id"], status.build_id);
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.containers[0].name, "test");
    let env_names: Vec<_> = spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert!(env_names.contains(&"JOB_SPEC".to_string()), "{env_names:?}");

    PodDriver::new(env.client.clone(), &env.namespace)
        .succeed("run-1")
        .await
        .expect("pod succeeds");
    let job = completed(&env, "run-1").await;
    assert_eq!(state(&job), Some(ProwJobState::Success));
    assert_eq!(description(&job), "Job succeeded.");
    let completion = job.status.as_ref().and_then(|s| s.completion_time.clone());

    // Completed jobs are left alone: completionTime is written once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = env.api::<ProwJob>().get("run-1").await.expect("get");
    assert_eq!(again.status.and_then(|s| s.completion_time), completion);

    let events: Api<Event> = env.api();
    let reasons = eventually("Pending and Succeeded events", WAIT, || async {
        let list = events.list(&ListParams::default()).await?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        Ok(
            (reasons.contains(&"Pending".into()) && reasons.contains(&"Succeeded".into()))
                .then_some(reasons),
        )
    })
    .await
    .expect("events");
    assert!(reasons.iter().all(|r| r != "ReconcileError"), "{reasons:?}");
}

#[tokio::test]
async fn failed_pod_fails_the_job_and_a_refused_pod_errors_it() {
    let env = TestEnv::new("pj-failure").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "fails", json!({})).await;
    // Two containers keep their names; an invalid one makes the API server refuse the pod.
    create(
        &env,
        "refused",
        json!({"pod_spec": {"containers": [{"name": "Not_Valid", "image": "x"}, {"name": "b", "image": "x"}]}}),
    )
    .await;

    pending(&env, "fails").await;
    PodDriver::new(env.client.clone(), &env.namespace)
        .finish("fails", |_| 2)
        .await
        .expect("pod fails");
    let job = completed(&env, "fails").await;
    assert_eq!(state(&job), Some(ProwJobState::Failure));
    assert_eq!(description(&job), "Job failed.");

    let job = completed(&env, "refused").await;
    assert_eq!(state(&job), Some(ProwJobState::Error));
    assert!(
        description(&job).starts_with("Pod can not be created: "),
        "{}",
        description(&job)
    );
    assert!(
        description(&job).contains("Not_Valid"),
        "the API server's own message: {}",
        description(&job)
    );
}

#[tokio::test]
async fn pod_deleted_under_a_running_job_errors_it() {
    let env = TestEnv::new("pj-deleted").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "victim", json!({})).await;
    pending(&env, "victim").await;
    env.api::<Pod>()
        .delete("victim", &DeleteParams::default().grace_period(0))
        .await
        .expect("pod deleted");
    let job = completed(&env, "victim").await;
    assert_eq!(state(&job), Some(ProwJobState::Error));
    assert_eq!(description(&job), "Pod got deleted unexpectedly");
}

#[tokio::test]
async fn aborting_a_job_deletes_its_pod_and_completes_it() {
    let env = TestEnv::new("pj-abort").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "long", json!({})).await;
    pending(&env, "long").await;
    PodDriver::new(env.client.clone(), &env.namespace)
        .run("long")
        .await
        .expect("running");

    // As upstream's dashboard does: state aborted through the status subresource.
    env.api::<ProwJob>()
        .patch_status(
            "long",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"state": "aborted", "description": "Aborted by alice."}}),
            ),
        )
        .await
        .expect("aborted");
    let job = completed(&env, "long").await;
    assert_eq!(state(&job), Some(ProwJobState::Aborted));
    assert_eq!(description(&job), "Aborted by alice.");
    pod_gone(&env, "long").await;
}

#[tokio::test]
async fn a_newer_presubmit_for_the_same_pulls_aborts_the_older() {
    let env = TestEnv::new("pj-dedupe").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    let presubmit = |sha: &str| {
        json!({"type": "presubmit", "job": "pull-unit",
               "refs": {"org": "acme", "repo": "widgets", "base_ref": "main",
                        "pulls": [{"number": 7, "author": "a", "sha": sha}]}})
    };
    create(&env, "first", presubmit("aaa")).await;
    pending(&env, "first").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation times have 1 s resolution
    create(&env, "second", presubmit("bbb")).await;
    let mut other_base = presubmit("ccc");
    other_base["refs"]["base_ref"] = json!("release-1");
    create(&env, "other-base", other_base).await;

    let first = completed(&env, "first").await;
    assert_eq!(state(&first), Some(ProwJobState::Aborted));
    assert!(
        description(&first).contains("newer version"),
        "{}",
        description(&first)
    );
    pod_gone(&env, "first").await;
    pending(&env, "second").await;
    let other = pending(&env, "other-base").await;
    assert!(
        !other.is_complete(),
        "a different base_ref is a different job"
    );
}

#[tokio::test]
async fn lost_pods_are_recreated_up_to_max_revivals_then_the_job_errors() {
    let env = TestEnv::new("pj-revive").await.expect("env");
    let _operator = start_operator(&env, &["--max-revivals=1"]).expect("operator");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let pods = env.api::<Pod>();
    create(&env, "flaky", json!({})).await;
    pending(&env, "flaky").await;
    let first_uid = pods.get("flaky").await.expect("pod").metadata.uid;

    driver.evict("flaky").await.expect("evicted");
    let revived = eventually("a new pod after the eviction", WAIT, || async {
        let pod = pods.get_opt("flaky").await?;
        Ok(pod.filter(|p| p.metadata.uid != first_uid && p.metadata.deletion_timestamp.is_none()))
    })
    .await
    .expect("revived");
    let job = wait_for_job(&env.api(), "flaky", WAIT, |j| {
        !j.status.as_ref().is_some_and(|s| s.pod_name.is_empty())
    })
    .await
    .expect("job follows the new pod");
    let status = job.status.expect("status");
    assert_eq!(
        status.pod_revival_count, 1,
        "the revival is counted in status"
    );
    assert_eq!(state_of(&status), Some(ProwJobState::Pending));
    assert_eq!(
        revived.metadata.labels.as_ref().expect("labels")["prow.k8s.io/build-id"],
        status.build_id,
        "the same build"
    );

    driver.mark_unknown("flaky").await.expect("unknown");
    let job = completed(&env, "flaky").await;
    assert_eq!(state(&job), Some(ProwJobState::Error));
    assert_eq!(
        description(&job),
        "Job pod reached max revivals (1) after being stopped unexpectedly (lost)"
    );
    pod_gone(&env, "flaky").await;
}

fn state_of(status: &prow_api::ProwJobStatus) -> Option<ProwJobState> {
    status.state
}

#[tokio::test]
async fn error_on_eviction_errors_at_once() {
    let env = TestEnv::new("pj-evict-error").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "strict", json!({"error_on_eviction": true})).await;
    pending(&env, "strict").await;
    PodDriver::new(env.client.clone(), &env.namespace)
        .evict("strict")
        .await
        .expect("evicted");
    let job = completed(&env, "strict").await;
    assert_eq!(state(&job), Some(ProwJobState::Error));
    assert_eq!(description(&job), "Job pod was evicted by the cluster.");
}

#[tokio::test]
async fn per_job_timeouts_end_jobs_and_delete_their_pods() {
    let env = TestEnv::new("pj-timeouts").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    create(
        &env,
        "unscheduled",
        json!({"decoration_config": {"pod_unscheduled_timeout": "2s"}}),
    )
    .await;
    create(
        &env,
        "stuck",
        json!({"decoration_config": {"pod_pending_timeout": "2s"}}),
    )
    .await;
    create(
        &env,
        "slow",
        json!({"decoration_config": {"pod_running_timeout": "2s"}}),
    )
    .await;
    pending(&env, "stuck").await;
    driver.schedule("stuck").await.expect("scheduled");
    pending(&env, "slow").await;
    driver.run("slow").await.expect("running");

    let cases = [
        (
            "unscheduled",
            ProwJobState::Error,
            "Pod scheduling timeout.",
        ),
        ("stuck", ProwJobState::Error, "Pod pending timeout."),
        ("slow", ProwJobState::Aborted, "Pod running timeout."),
    ];
    for (name, expected_state, expected_description) in cases {
        let job = completed(&env, name).await;
        assert_eq!(state(&job), Some(expected_state), "{name}");
        assert_eq!(description(&job), expected_description, "{name}");
        pod_gone(&env, name).await;
    }
}

/// With `--watch-namespace`, the operator works in that namespace and `--pod-namespace` only
/// (the chart's namespaced RBAC grants nothing else): a job whose pod would go elsewhere errors
/// with the reason, and no pod is made there.
#[tokio::test]
async fn a_job_whose_pod_would_leave_the_pod_namespace_errors_with_the_reason() {
    let env = TestEnv::new("pod-elsewhere").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    create(&env, "elsewhere", json!({"namespace": "kube-system"})).await;
    create(&env, "here", json!({"namespace": env.namespace})).await;
    let refused = completed(&env, "elsewhere").await;
    assert_eq!(state(&refused), Some(ProwJobState::Error));
    assert!(
        description(&refused).contains("\"kube-system\""),
        "{}",
        description(&refused)
    );
    pending(&env, "here").await;
    let strays = Api::<Pod>::namespaced(env.client.clone(), "kube-system")
        .get_opt("elsewhere")
        .await
        .expect("read");
    assert!(strays.is_none(), "no pod outside the pod namespace");
}
