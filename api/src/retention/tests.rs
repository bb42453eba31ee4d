use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;

const NOW: &str = "2024-01-10T00:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn job(name: &str, kind: &str, status: Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "namespace": "prow", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"type": kind, "job": format!("job-{kind}")},
        "status": status,
    }))
    .expect("job")
}

fn done(started: &str, completed: &str) -> Value {
    json!({"state": "success", "startTime": started, "completionTime": completed})
}

fn pod(name: &str, job_uid: &str, created: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "test-pods", "uid": format!("pod-{name}"),
                     "creationTimestamp": created,
                     "annotations": {"prow-operator.dev/job-namespace": "prow",
                                     "prow-operator.dev/job-uid": job_uid}},
    }))
    .expect("pod")
}

fn names(doomed: &[Doomed]) -> Vec<&str> {
    doomed.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn completed_jobs_past_max_age_go_but_the_newest_periodic_run_stays() {
    let jobs = [
        job(
            "old-presubmit",
            "presubmit",
            done("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ),
        job(
            "new-presubmit",
            "presubmit",
            done("2024-01-09T00:00:00Z", "2024-01-09T01:00:00Z"),
        ),
        job(
            "unfinished-old",
            "presubmit",
            json!({"state": "pending", "startTime": "2024-01-01T00:00:00Z"}),
        ),
        job(
            "periodic-older",
            "periodic",
            done("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ),
        job(
            "periodic-newest",
            "periodic",
            done("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z"),
        ),
    ];
    let refs: Vec<&ProwJob> = jobs.iter().collect();
    let plan = sweep(&refs, &[], now(), &Retention::default());
    assert_eq!(names(&plan.jobs), ["old-presubmit", "periodic-older"]);
    assert_eq!(plan.jobs[0].uid.as_deref(), Some("uid-old-presubmit"));
}

#[test]
fn pods_go_after_the_ttl_or_max_age_and_never_while_their_job_runs() {
    let jobs = [
        job(
            "a",
            "presubmit",
            done("2024-01-08T00:00:00Z", "2024-01-08T01:00:00Z"),
        ),
        job(
            "b",
            "presubmit",
            done("2024-01-09T20:00:00Z", "2024-01-09T21:00:00Z"),
        ),
        job(
            "c",
            "presubmit",
            json!({"state": "pending", "startTime": "2024-01-01T00:00:00Z"}),
        ),
    ];
    let pods = [
        pod("a", "uid-a", "2024-01-08T00:00:00Z"),
        pod("b", "uid-b", "2024-01-09T20:00:00Z"),
        pod("c", "uid-c", "2024-01-01T00:00:00Z"),
    ];
    let views: Vec<PodView> = pods.iter().map(PodView::of).collect();
    let (jobs, pods): (Vec<&ProwJob>, Vec<&PodView>) =
        (jobs.iter().collect(), views.iter().collect());
    let plan = sweep(&jobs, &pods, now(), &Retention::default());
    assert_eq!(
        names(&plan.pods),
        ["a"],
        "b completed 3 h ago; c still runs"
    );
    let short = Retention {
        max_pod_age: Duration::from_secs(3600),
        terminated_pod_ttl: Duration::from_secs(10 * 24 * 3600),
        ..Retention::default()
    };
    assert_eq!(
        names(&sweep(&jobs, &pods, now(), &short).pods),
        ["a", "b"],
        "max_pod_age"
    );
}

#[test]
fn pods_without_their_job_are_orphans_after_the_grace() {
    let jobs = [job("recreated", "presubmit", json!({"state": "pending"}))];
    let pods = [
        pod("gone", "uid-gone", "2024-01-09T23:59:00Z"),
        pod("young", "uid-young", "2024-01-09T23:59:50Z"),
        pod("recreated", "uid-an-older-job", "2024-01-09T23:00:00Z"),
    ];
    let views: Vec<PodView> = pods.iter().map(PodView::of).collect();
    let (jobs, pods): (Vec<&ProwJob>, Vec<&PodView>) =
        (jobs.iter().collect(), views.iter().collect());
    let plan = sweep(&jobs, &pods, now(), &Retention::default());
    assert_eq!(names(&plan.orphans), ["gone", "recreated"]);
    assert!(plan.pods.is_empty());
}
