//! Crash safety: what the operator finds after a crash or a stale cache, it repairs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kind_tests::fixtures::job;
use kind_tests::operator::{start_operator, wait_for_job};
use kind_tests::process::http_get;
use kind_tests::{PodDriver, TestEnv};
use kube::api::PostParams;
use prow_api::{ProwJob, ProwJobState};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_pod_created_before_a_crash_is_adopted_and_a_stale_one_replaced() {
    let env = TestEnv::new("recover-adopt").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    // The operator died after creating the pod and before writing the status.
    let adopted = jobs
        .create(&PostParams::default(), &job("adopted", "periodic"))
        .await
        .expect("job");
    let pod = prow_api::pod::pod_for(&adopted, "4242", &env.namespace).expect("pod");
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    // A pod left by a deleted job of the same name.
    let stale = jobs
        .create(&PostParams::default(), &job("stale", "periodic"))
        .await
        .expect("job");
    let mut old = prow_api::pod::pod_for(&stale, "1", &env.namespace).expect("pod");
    old.metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .insert(
            prow_api::labels::JOB_UID.into(),
            "uid-of-a-deleted-job".into(),
        );
    let old = pods
        .create(&PostParams::default(), &old)
        .await
        .expect("stale pod");

    let _operator = start_operator(&env, &[]).expect("operator");
    let job = wait_for_job(&jobs, "adopted", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("adopted");
    assert_eq!(
        job.status.as_ref().map(|s| s.build_id.as_str()),
        Some("4242"),
        "the pod's build"
    );
    assert_eq!(
        pods.get("adopted").await.expect("pod").metadata.uid,
        pod.metadata.uid,
        "not recreated"
    );

    wait_for_job(&jobs, "stale", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("started");
    let fresh = pods.get("stale").await.expect("pod");
    assert_ne!(
        fresh.metadata.uid, old.metadata.uid,
        "the stale pod was replaced"
    );
}

#[tokio::test]
async fn the_operator_does_not_redo_its_own_writes_from_a_stale_cache() {
    let env = TestEnv::new("recover-stale").await.expect("env");
    let operator = start_operator(&env, &[]).expect("operator");
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let names: Vec<String> = (0..12).map(|i| format!("run-{i}")).collect();
    for name in &names {
        jobs.create(&PostParams::default(), &job(name, "periodic"))
            .await
            .expect("job");
    }
    // Each start is a pod create and a status write; each pod event arrives while the job
    // cache still holds the copy that write replaced.
    for name in &names {
        wait_for_job(&jobs, name, WAIT, |j| j.state() == ProwJobState::Pending)
            .await
            .expect("pending");
        driver.succeed(name).await.expect("pod succeeded");
    }
    for name in &names {
        wait_for_job(&jobs, name, WAIT, |j| j.state() == ProwJobState::Success)
            .await
            .expect("success");
    }
    let (status, body) = http_get(&operator.health, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("prow_operator_write_conflicts_total 0"),
        "a status write was redone from a copy it had replaced: {}",
        body.lines()
            .find(|l| l.starts_with("prow_operator_write_conflicts_total"))
            .unwrap_or(&body)
    );
}
