//! Retention (sinker): old jobs and pods are deleted, the newest periodic run is kept.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kind_tests::fixtures::job;
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn retention_deletes_old_jobs_and_pods_but_keeps_the_newest_periodic_run() {
    let env = TestEnv::new("recover-retention").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    let _operator = start_operator(
        &env,
        &[
            "--sweep-interval=1s",
            "--max-prowjob-age=1h",
            "--max-pod-age=1h",
            "--terminated-pod-ttl=2s",
            "--orphan-pod-grace=1s",
        ],
    )
    .expect("operator");
    for (name, kind) in [
        ("old-presubmit", "presubmit"),
        ("old-periodic-1", "periodic"),
        ("old-periodic-2", "periodic"),
        ("fresh", "periodic"),
    ] {
        let mut j = job(name, kind);
        if name != "fresh" {
            j.spec.job = format!("ci-{kind}"); // the two old periodics are runs of one job
        }
        jobs.create(&PostParams::default(), &j).await.expect("job");
    }
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    for name in ["old-presubmit", "old-periodic-1", "old-periodic-2", "fresh"] {
        wait_for_job(&jobs, name, WAIT, |j| j.state() == ProwJobState::Pending)
            .await
            .expect("pending");
        driver.succeed(name).await.expect("done");
        wait_for_job(&jobs, name, WAIT, ProwJob::is_complete)
            .await
            .expect("complete");
    }
    // Backdate three runs, as if they had started last week.
    for (name, day) in [
        ("old-presubmit", "01"),
        ("old-periodic-1", "01"),
        ("old-periodic-2", "02"),
    ] {
        jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"startTime": format!("2024-01-{day}T00:00:00Z")}})),
        )
        .await
        .expect("backdated");
    }
    // And a pod whose job never existed.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"created-by-prow": "true"},
                     "annotations": {"prow-operator.dev/job-namespace": env.namespace,
                                     "prow-operator.dev/job-uid": "gone"}},
        "spec": {"containers": [{"name": "test", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("orphan");

    let remaining = eventually("old jobs collected", WAIT, || async {
        let names: Vec<String> = jobs
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|j| j.name_any())
            .collect();
        Ok((names.len() == 2).then_some(names))
    })
    .await
    .expect("collected");
    assert_eq!(
        remaining,
        ["fresh", "old-periodic-2"],
        "the newest periodic run stays"
    );
    eventually(
        "pods of completed jobs and the orphan collected",
        WAIT,
        || async {
            Ok(pods
                .list(&Default::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await
    .expect("pods collected");
}
