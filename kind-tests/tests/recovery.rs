//! Crash safety, retention, leader election and metrics of the operator.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::process::{http_get, Running};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn job(name: &str, kind: &str) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": kind, "agent": "kubernetes", "job": format!("ci-{name}"),
                 "pod_spec": {"containers": [{"image": "busybox"}]}},
    }))
    .expect("job")
}

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

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let env = TestEnv::new("recover-leader").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let leader = start_operator(&env, &[]).expect("leader");
    // The standby never becomes ready while the leader holds the Lease.
    let ns = env.namespace.as_str();
    let standby_args = [
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        format!("--leader-election-namespace={ns}"),
    ];
    let standby_args: Vec<&str> = standby_args.iter().map(String::as_str).collect();
    let standby =
        Running::start_unready("prow-operator", &env.kubeconfig, &standby_args).expect("standby");
    jobs.create(&PostParams::default(), &job("first", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "first", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("leader runs it");
    assert_eq!(http_get(&standby.health, "/readyz").expect("readyz").0, 503);

    assert!(leader.terminate().expect("leader stops"), "clean exit");
    jobs.create(&PostParams::default(), &job("second", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "second", Duration::from_secs(40), |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("the standby took over");
}

#[tokio::test]
async fn metrics_count_jobs_by_state_and_type() {
    let env = TestEnv::new("recover-metrics").await.expect("env");
    let operator = start_operator(&env, &[]).expect("operator");
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job("counted", "postsubmit"))
        .await
        .expect("job");
    wait_for_job(&jobs, "counted", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("pending");
    // The gauge counts the operator's cache, which follows the API server a moment later.
    let body = eventually("the pending job in the metrics", WAIT, || async {
        let (status, body) = http_get(&operator.health, "/metrics")?;
        assert_eq!(status, 200);
        let pending = r#"prow_operator_prowjobs{state="pending",type="postsubmit"} 1"#;
        Ok(body.contains(pending).then_some(body))
    })
    .await
    .expect("metrics");
    assert!(
        body.contains("prow_operator_reconcile_duration_seconds_count"),
        "{body}"
    );
    assert!(
        body.contains("prow_operator_job_start_latency_seconds_count 1"),
        "{body}"
    );
    assert!(
        body.contains("prow_operator_reconcile_errors_total 0"),
        "{body}"
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

#[tokio::test]
async fn preset_status_says_ready_and_names_a_colliding_preset() {
    use prow_api::Preset;
    let env = TestEnv::new("recover-presets").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    let presets = env.api::<Preset>();
    let make = |name: &str, selector: serde_json::Value, value: &str| -> Preset {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": name},
            "spec": {"selector": selector, "env": [{"name": "KEY", "value": value}]},
        }))
        .expect("preset")
    };
    presets
        .create(&PostParams::default(), &make("a", json!({"x": "1"}), "one"))
        .await
        .expect("a");
    let condition = |p: &Preset, kind: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind).cloned())
    };
    eventually("preset a ready and without conflict", WAIT, || async {
        let p = presets.get("a").await?;
        let ok = condition(&p, "Ready").is_some_and(|c| c.status == "True")
            && condition(&p, "Conflicting").is_some_and(|c| c.status == "False")
            && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation;
        Ok(ok.then_some(()))
    })
    .await
    .expect("a ready");
    // No webhook here: the collision gets in, and both presets' status says so.
    presets
        .create(&PostParams::default(), &make("b", json!({"y": "1"}), "two"))
        .await
        .expect("b");
    for (name, other) in [("a", "b"), ("b", "a")] {
        let message = eventually(&format!("{name} conflicting"), WAIT, || async {
            let p = presets.get(name).await?;
            Ok(condition(&p, "Conflicting")
                .filter(|c| c.status == "True")
                .map(|c| c.message))
        })
        .await
        .expect("conflicting");
        assert!(
            message.contains(&format!("preset \"{other}\"")),
            "{message}"
        );
    }
}
