//! Crash safety: what the operator finds after a crash or a stale cache, it repairs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kind_tests::fixtures::job;
use kind_tests::operator::{start_operator, wait_for_job};
use kind_tests::process::http_get;
use kind_tests::{PodDriver, TestEnv};
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use prow_api::labels::COMPLETED;
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

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

fn marked(job: &ProwJob) -> bool {
    job.labels().get(COMPLETED).is_some_and(|v| v == "true")
}

/// The first start on an installation's history (upstream's jobs, or jobs from before the
/// mark): every finished job is to be marked, and a job created meanwhile is started ahead of
/// that backlog, not behind it.
#[tokio::test]
async fn a_backlog_of_finished_jobs_to_mark_does_not_hold_up_a_new_job() {
    use futures::{StreamExt, TryStreamExt};
    const HISTORY: usize = 1000;
    let env = TestEnv::new("recover-backlog").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let done = json!({"status": {"state": "success", "startTime": "2024-01-01T00:00:00Z",
                                 "completionTime": "2024-01-01T00:01:00Z"}});
    futures::stream::iter(0..HISTORY)
        .map(|i| {
            let (jobs, done) = (jobs.clone(), done.clone());
            async move {
                let name = format!("old-{i:04}");
                jobs.create(&PostParams::default(), &job(&name, "periodic"))
                    .await?;
                jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("history stored");
    let unmarked = kube::api::ListParams::default().labels(&format!("!{COMPLETED}"));

    // Two reconciles at once: one for the backlog, one for everything else.
    let _operator = start_operator(&env, &["--reconcile-concurrency=2"]).expect("operator");
    jobs.create(&PostParams::default(), &job("new", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "new", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("the new job started");
    let left = jobs
        .list_metadata(&unmarked)
        .await
        .expect("list")
        .items
        .len()
        - 1;
    assert!(
        left > HISTORY / 4,
        "the new job waited for the backlog: {left} of {HISTORY} finished jobs left unmarked"
    );
    kind_tests::operator::eventually("the backlog marked", Duration::from_secs(60), || {
        let (jobs, unmarked) = (jobs.clone(), unmarked.clone());
        async move {
            let left = jobs.list_metadata(&unmarked).await?.items;
            Ok((left.len() == 1).then_some(()))
        }
    })
    .await
    .expect("every finished job marked");
}

#[tokio::test]
async fn finished_jobs_are_marked_completed_and_a_marked_unfinished_job_still_runs() {
    let env = TestEnv::new("recover-marks").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    // Finished before this operator marked jobs (or before a crash ahead of the mark).
    jobs.create(&PostParams::default(), &job("before", "periodic"))
        .await
        .expect("job");
    let done = json!({"status": {"state": "success", "startTime": "2024-01-01T00:00:00Z",
                                 "completionTime": "2024-01-01T00:01:00Z"}});
    jobs.patch_status("before", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("finished");
    // Unfinished, yet marked by hand (no webhook here, which would refuse the mark): run all
    // the same, and the mark taken off, so that a restart lists it with the unfinished jobs.
    let mut hand = job("by-hand", "periodic");
    hand.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETED.into(), "true".into());
    jobs.create(&PostParams::default(), &hand)
        .await
        .expect("job");

    let operator = start_operator(&env, &[]).expect("operator");
    wait_for_job(&jobs, "before", WAIT, marked)
        .await
        .expect("a finished job found unmarked is marked");
    wait_for_job(&jobs, "by-hand", WAIT, |j| {
        j.state() == ProwJobState::Pending && !marked(j)
    })
    .await
    .expect("a marked unfinished job gets its pod, and the mark is taken off");

    jobs.create(&PostParams::default(), &job("runs", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "runs", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("pending");
    assert!(
        !marked(&jobs.get("runs").await.expect("job")),
        "an unfinished job is not marked"
    );
    driver.succeed("runs").await.expect("pod succeeded");
    let runs = wait_for_job(&jobs, "runs", WAIT, |j| marked(j) && j.is_complete())
        .await
        .expect("marked once finished");
    assert_eq!(runs.state(), ProwJobState::Success);

    // A restart reads the marked jobs again and writes nothing to them.
    drop(operator);
    let _operator = start_operator(&env, &[]).expect("operator");
    jobs.create(&PostParams::default(), &job("after", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "after", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("the restarted operator runs jobs");
    driver.succeed("by-hand").await.expect("pod succeeded");
    wait_for_job(&jobs, "by-hand", WAIT, |j| j.is_complete() && marked(j))
        .await
        .expect("the job marked by hand is followed to its end, and marked after it");
    let again = jobs.get("runs").await.expect("job");
    assert_eq!(
        again.resource_version(),
        runs.resource_version(),
        "a marked finished job is not written again"
    );
    let by_hand = jobs.get("by-hand").await.expect("job");
    assert_eq!(by_hand.state(), ProwJobState::Success);
}
