use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;

/// What one sweep deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sweep {
    /// Completed ProwJobs past their age.
    jobs: Vec<Doomed>,
    /// Pods of completed jobs past their TTL or age.
    pods: Vec<Doomed>,
    /// Pods whose job is not in the cache: deleted only if a fresh read agrees.
    orphans: Vec<Doomed>,
}

/// The rules applied to every job and pod at once, as the operator's full sweep does.
fn sweep(jobs: &[&ProwJob], pods: &[&PodView], now: Timestamp, keep: &Retention) -> Sweep {
    let newest_periodic = newest_periodic_runs(jobs);
    let mut plan = Sweep::default();
    for job in jobs.iter().filter(|j| j.is_complete()) {
        let newest = job.spec.job_type == Some(ProwJobType::Periodic)
            && newest_periodic.get(job.spec.job.as_str()).map(|n| n.1)
                == job.metadata.name.as_deref();
        if let Verdict::Delete(d) = judge_job(job, newest, now, keep) {
            plan.jobs.push(d);
        }
    }

    let by_name: HashMap<(&str, &str), &ProwJob> = jobs
        .iter()
        .map(|j| {
            let key = (
                j.metadata.namespace.as_deref().unwrap_or_default(),
                j.metadata.name.as_deref().unwrap_or_default(),
            );
            (key, *j)
        })
        .collect();
    for view in pods {
        let Some(job_ns) = view.job_namespace() else {
            continue;
        };
        let name = view.metadata.name.as_deref().unwrap_or_default();
        let job = by_name.get(&(job_ns, name)).copied();
        match judge_pod(view, job, now, keep) {
            Verdict::Delete(d) => plan.pods.push(d),
            Verdict::Orphan(d) => plan.orphans.push(d),
            Verdict::At(_) | Verdict::Keep => {}
        }
    }
    plan
}

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

fn at(t: &str) -> Verdict {
    Verdict::At(t.parse().expect("time"))
}

#[test]
fn each_object_is_judged_alone_with_the_time_to_look_again() {
    let keep = Retention::default();
    let finished = job(
        "f",
        "presubmit",
        done("2024-01-08T00:00:00Z", "2024-01-09T12:00:00Z"),
    );
    let running = job(
        "r",
        "presubmit",
        json!({"state": "pending", "startTime": "2024-01-01T00:00:00Z"}),
    );
    let old = job(
        "o",
        "periodic",
        done("2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
    );
    let young_pod = PodView::of(&pod("f", "uid-f", "2024-01-09T11:00:00Z"));
    let old_pod = PodView::of(&pod("f", "uid-f", "2024-01-08T00:00:00Z"));
    let running_pod = PodView::of(&pod("r", "uid-r", "2024-01-01T00:00:00Z"));
    let orphan = PodView::of(&pod("x", "uid-x", "2024-01-09T23:59:45Z"));
    let not_ours = PodView::of(
        &serde_json::from_value::<Pod>(json!({
            "metadata": {"name": "plain", "creationTimestamp": "2024-01-01T00:00:00Z"}
        }))
        .expect("pod"),
    );
    let table: Vec<(&str, Verdict)> = vec![
        (
            "a finished job: at start + 7 d",
            judge_job(&finished, false, now(), &keep),
        ),
        (
            "a running job: kept",
            judge_job(&running, false, now(), &keep),
        ),
        ("an old run: deleted", judge_job(&old, false, now(), &keep)),
        (
            "the same run, its periodic's newest: kept",
            judge_job(&old, true, now(), &keep),
        ),
        (
            "a young pod: at completion + 24 h",
            judge_pod(&young_pod, Some(&finished), now(), &keep),
        ),
        (
            "a pod of its running job: kept",
            judge_pod(&running_pod, Some(&running), now(), &keep),
        ),
        (
            "a pod created 2 d ago: deleted",
            judge_pod(&old_pod, Some(&finished), now(), &keep),
        ),
        (
            "an orphan within its grace: at creation + 30 s",
            judge_pod(&orphan, None, now(), &keep),
        ),
        (
            "the same orphan later: an orphan",
            judge_pod(
                &orphan,
                None,
                "2024-01-10T00:00:15Z".parse().expect("t"),
                &keep,
            ),
        ),
        (
            "a pod not of a job: kept",
            judge_pod(&not_ours, None, now(), &keep),
        ),
    ];
    let want = [
        at("2024-01-15T00:00:00Z"),
        Verdict::Keep,
        Verdict::Delete(Doomed {
            namespace: "prow".into(),
            name: "o".into(),
            uid: Some("uid-o".into()),
            reason: "job older than max_prowjob_age",
        }),
        Verdict::Keep,
        at("2024-01-10T11:00:00Z"),
        Verdict::Keep,
        Verdict::Delete(Doomed {
            namespace: "test-pods".into(),
            name: "f".into(),
            uid: Some("pod-f".into()),
            reason: "pod of a completed job older than max_pod_age",
        }),
        at("2024-01-10T00:00:15Z"),
        Verdict::Orphan(Doomed {
            namespace: "test-pods".into(),
            name: "x".into(),
            uid: Some("pod-x".into()),
            reason: "pod whose job does not exist",
        }),
        Verdict::Keep,
    ];
    for ((case, got), want) in table.into_iter().zip(want) {
        assert_eq!(got, want, "{case}");
    }
    assert_eq!(
        pod_look_at(&finished, &keep),
        Some("2024-01-02T00:00:00Z".parse().expect("t")),
        "a pod is not older than its job: the job's creation + max_pod_age is the earliest"
    );
    assert_eq!(pod_look_at(&running, &keep), None);
}

#[test]
fn the_due_queue_hands_out_only_what_is_due_earliest_first_and_once() {
    let t = |s: &str| -> Timestamp { s.parse().expect("time") };
    let mut due = Due::default();
    due.push(t("2024-01-10T00:00:02Z"), "b");
    due.push(t("2024-01-10T00:00:01Z"), "a");
    due.push(t("2024-01-10T00:00:01Z"), "a");
    due.push(t("2024-01-11T00:00:00Z"), "later");
    assert_eq!(
        due.len(),
        3,
        "the same item at the same time is queued once"
    );
    assert_eq!(due.take_due(t("2024-01-10T00:00:00Z")), Vec::<&str>::new());
    assert_eq!(due.take_due(t("2024-01-10T00:00:05Z")), ["a", "b"]);
    assert_eq!(due.next(), Some(t("2024-01-11T00:00:00Z")));
    assert_eq!(due.len(), 1);
}
