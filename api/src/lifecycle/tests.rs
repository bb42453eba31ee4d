use serde_json::{json, Value};

use super::*;
use crate::pod_view::PodView;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn job(status: Value, spec_extra: Value) -> ProwJob {
    let mut spec = json!({"type": "periodic", "agent": "kubernetes", "job": "j",
                          "pod_spec": {"containers": [{"name": "test", "image": "x"}]}});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "j-1", "namespace": "prow", "uid": "uid-1"},
        "spec": spec,
        "status": status,
    }))
    .expect("job")
}

fn pending(extra: Value) -> ProwJob {
    let mut status = json!({"state": "pending", "pod_name": "j-1", "build_id": "1",
                            "startTime": "2024-05-01T11:00:00Z"});
    if let (Some(s), Some(extra)) = (status.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    job(status, json!({}))
}

fn pod(status: Value) -> PodView {
    serde_json::from_value(json!({
        "metadata": {"name": "j-1", "namespace": "test-pods",
                     "creationTimestamp": "2024-05-01T11:58:00Z",
                     "annotations": {"prow-operator.dev/job-uid": "uid-1"}},
        "spec": {"containers": [{"name": "test", "image": "x"}]},
        "status": status,
    }))
    .expect("pod")
}

fn terminated(code: i32) -> Value {
    json!([{"name": "test", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}}])
}

fn finished(state: ProwJobState, description: &str, delete_pod: bool) -> Step {
    Step::Finish {
        state,
        description: description.into(),
        delete_pod,
    }
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[test]
fn state_machine_table() {
    use ProwJobState::*;
    let policy = Policy::default();
    let stale_pod = {
        let mut p = pod(json!({"phase": "Running"}));
        p.metadata.job_uid = Some("old".into());
        p
    };
    let cases: Vec<(&str, ProwJob, Option<PodView>, Step)> = vec![
        (
            "not ours: jenkins agent",
            job(json!({}), json!({"agent": "jenkins"})),
            None,
            Step::Idle,
        ),
        (
            "complete jobs are left alone",
            job(
                json!({"state": "success", "completionTime": NOW}),
                json!({}),
            ),
            None,
            Step::Idle,
        ),
        (
            "scheduling is upstream's scheduler's",
            job(json!({"state": "scheduling"}), json!({})),
            None,
            Step::Idle,
        ),
        (
            "no status: start",
            job(json!({}), json!({})),
            None,
            Step::Start,
        ),
        (
            "triggered: start",
            job(json!({"state": "triggered"}), json!({})),
            None,
            Step::Start,
        ),
        (
            "triggered with its pod: adopt",
            job(json!({"state": "triggered"}), json!({})),
            Some(pod(json!({}))),
            Step::Adopt,
        ),
        (
            "triggered with a stale pod: delete it",
            job(json!({"state": "triggered"}), json!({})),
            Some(stale_pod.clone()),
            Step::DeleteStalePod,
        ),
        (
            "pending with a stale pod: delete it",
            pending(json!({})),
            Some(stale_pod),
            Step::DeleteStalePod,
        ),
        (
            "pod gone under a pending job",
            pending(json!({})),
            None,
            finished(Error, "Pod got deleted unexpectedly", false),
        ),
        (
            "revival: old pod gone, start again",
            pending(json!({"pod_name": ""})),
            None,
            Step::Restart,
        ),
        (
            "revival: old pod still there",
            pending(json!({"pod_name": ""})),
            Some(pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            Step::DeleteStalePod,
        ),
        (
            "succeeded, every container done",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Succeeded", "containerStatuses": terminated(0)}),
            )),
            finished(Success, "Job succeeded.", false),
        ),
        (
            "succeeded, a container unfinished",
            pending(json!({})),
            Some(pod(json!({"phase": "Succeeded"}))),
            finished(
                Error,
                "Pod was in succeeded phase but some containers didn't finish",
                false,
            ),
        ),
        (
            "failed",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Failed", "containerStatuses": terminated(1)}),
            )),
            finished(Failure, "Job failed.", false),
        ),
        (
            "failed, a pod utility said why (init container first)",
            pending(json!({})),
            Some(pod(json!({"phase": "Failed",
                "initContainerStatuses": [
                    {"name": "clonerefs", "state": {"terminated": {"exitCode": 0}}},
                    {"name": "initupload", "state": {"terminated": {"exitCode": 1,
                        "message": "clone failed: acme/w: `git merge --no-ff p7` failed\n"}}}],
                "containerStatuses": [
                    {"name": "test", "state": {"terminated": {"exitCode": 1, "message": "later"}}}]}))),
            finished(
                Failure,
                "Job failed: clone failed: acme/w: `git merge --no-ff p7` failed",
                false,
            ),
        ),
        (
            "failed, a passing container's message is not the reason",
            pending(json!({})),
            Some(pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "sidecar", "state": {"terminated": {"exitCode": 0, "message": "uploaded"}}},
                {"name": "test", "state": {"terminated": {"exitCode": 1,
                    "message": "timed out after 10s: the test got SIGINT"}}}]}))),
            finished(
                Failure,
                "Job failed: timed out after 10s: the test got SIGINT",
                false,
            ),
        ),
        (
            "failed because a container was OOM killed",
            pending(json!({})),
            Some(pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "test", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}))),
            finished(
                Error,
                "Job pod's container \"test\" was OOM killed: it used more memory than its limit.",
                false,
            ),
        ),
        (
            "aborted by a user, pod running",
            job(
                json!({"state": "aborted", "description": "stop"}),
                json!({}),
            ),
            Some(pod(json!({"phase": "Running"}))),
            finished(Aborted, "stop", true),
        ),
        (
            "aborted, no pod",
            job(json!({"state": "aborted"}), json!({})),
            None,
            finished(Aborted, "Job aborted.", false),
        ),
        (
            "final state without completionTime",
            job(json!({"state": "failure", "description": "d"}), json!({})),
            None,
            finished(Failure, "d", false),
        ),
        (
            "evicted: revive",
            pending(json!({})),
            Some(pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            Step::Revive {
                description: "Job pod was evicted; recreating it (revival 1 of 3).".into(),
            },
        ),
        (
            "evicted through the Eviction API (DisruptionTarget): revive",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Running", "startTime": "2024-05-01T11:59:00Z",
                             "conditions": [{"type": "DisruptionTarget", "status": "True",
                                             "reason": "EvictionByEvictionAPI"}]}),
            )),
            Step::Revive {
                description: "Job pod was evicted; recreating it (revival 1 of 3).".into(),
            },
        ),
        (
            "a DisruptionTarget condition that is false changes nothing",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Running", "startTime": "2024-05-01T11:59:00Z",
                             "conditions": [{"type": "DisruptionTarget", "status": "False"}]}),
            )),
            Step::WaitFor(Duration::from_secs(48 * 3600 - 60)),
        ),
        (
            "node lost: revive",
            pending(json!({"pod_revival_count": 2})),
            Some(pod(json!({"phase": "Running", "reason": "NodeLost"}))),
            Step::Revive {
                description: "Job pod was lost; recreating it (revival 3 of 3).".into(),
            },
        ),
        (
            "unknown after max revivals: error",
            pending(json!({"pod_revival_count": 3})),
            Some(pod(json!({"phase": "Unknown"}))),
            finished(
                Error,
                "Job pod reached max revivals (3) after being stopped unexpectedly (lost)",
                true,
            ),
        ),
        (
            "evicted with error_on_eviction",
            job(
                json!({"state": "pending", "pod_name": "j-1"}),
                json!({"error_on_eviction": true}),
            ),
            Some(pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            finished(Error, "Job pod was evicted by the cluster.", true),
        ),
        (
            "evicted through the Eviction API with error_on_eviction",
            job(
                json!({"state": "pending", "pod_name": "j-1"}),
                json!({"error_on_eviction": true}),
            ),
            Some(pod(
                json!({"phase": "Running", "startTime": "2024-05-01T11:59:00Z",
                             "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
            )),
            finished(Error, "Job pod was evicted by the cluster.", true),
        ),
        (
            "unscheduled for 2 of 5 minutes",
            pending(json!({})),
            Some(pod(json!({"phase": "Pending"}))),
            Step::WaitFor(minutes(3)),
        ),
        (
            "unscheduled for exactly 5 minutes",
            pending(json!({})),
            Some({
                let mut p = pod(json!({"phase": "Pending"}));
                p.metadata.creation_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        "2024-05-01T11:55:00Z".parse().expect("t"),
                    ));
                p
            }),
            finished(Error, "Pod scheduling timeout.", true),
        ),
        (
            "scheduled, pending 9 minutes",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Pending", "startTime": "2024-05-01T11:51:00Z"}),
            )),
            Step::WaitFor(minutes(1)),
        ),
        (
            "scheduled, pending 10 minutes",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Pending", "startTime": "2024-05-01T11:50:00Z"}),
            )),
            finished(Error, "Pod pending timeout.", true),
        ),
        (
            "running 47 hours",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Running", "startTime": "2024-04-29T13:00:00Z"}),
            )),
            Step::WaitFor(minutes(60)),
        ),
        (
            "running 48 hours",
            pending(json!({})),
            Some(pod(
                json!({"phase": "Running", "startTime": "2024-04-29T12:00:00Z"}),
            )),
            finished(Aborted, "Pod running timeout.", true),
        ),
        (
            "running without startTime stays pending",
            pending(json!({})),
            Some(pod(json!({"phase": "Running"}))),
            Step::Idle,
        ),
    ];
    for (name, job, pod, expected) in cases {
        assert_eq!(
            decide(&job, pod.as_ref(), now(), &policy),
            expected,
            "{name}"
        );
    }
}

#[test]
fn per_job_timeouts_override_the_defaults() {
    let j = job(
        json!({"state": "pending", "pod_name": "j-1"}),
        json!({"decoration_config": {"pod_running_timeout": "30m", "pod_pending_timeout": "1m",
                                      "pod_unscheduled_timeout": "bad"}}),
    );
    let t = Timeouts::default().for_job(&j);
    assert_eq!(t.running, minutes(30));
    assert_eq!(t.pending, minutes(1));
    assert_eq!(
        t.unscheduled,
        minutes(5),
        "an unparsable override keeps the default"
    );
    let running = pod(json!({"phase": "Running", "startTime": "2024-05-01T11:30:00Z"}));
    assert_eq!(
        decide(&j, Some(&running), now(), &Policy::default()),
        finished(ProwJobState::Aborted, "Pod running timeout.", true)
    );
}

#[test]
fn an_absurd_timeout_override_is_cut_to_thirty_days() {
    let j = job(
        json!({"state": "pending", "pod_name": "j-1"}),
        json!({"decoration_config": {"pod_running_timeout": "20000h"}}),
    );
    let t = Timeouts::default().for_job(&j);
    assert_eq!(t.running, LONGEST_TIMEOUT);
    let running = pod(json!({"phase": "Running", "startTime": "2024-05-01T11:30:00Z"}));
    match decide(&j, Some(&running), now(), &Policy::default()) {
        Step::WaitFor(after) => assert!(after <= LONGEST_TIMEOUT, "{after:?}"),
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// A pod the Eviction API deleted on an API server older than 1.26 carries no mark; the
/// operator learns of the eviction elsewhere and asks `lost` directly.
#[test]
fn a_pod_gone_by_eviction_is_revived_while_revivals_remain() {
    let policy = Policy::default();
    let cases = [
        (
            pending(json!({})),
            Step::Revive {
                description: "Job pod was evicted; recreating it (revival 1 of 3).".into(),
            },
        ),
        (
            pending(json!({"pod_revival_count": 3})),
            finished(
                ProwJobState::Error,
                "Job pod reached max revivals (3) after being stopped unexpectedly (evicted)",
                true,
            ),
        ),
        (
            job(
                json!({"state": "pending", "pod_name": "j-1"}),
                json!({"error_on_eviction": true}),
            ),
            finished(
                ProwJobState::Error,
                "Job pod was evicted by the cluster.",
                true,
            ),
        ),
    ];
    for (job, want) in cases {
        assert_eq!(lost(&job, EVICTED, &policy), want, "{:?}", job.status);
    }
    // Without the eviction's record, a vanished pod ends the job as upstream.
    assert_eq!(
        decide(&pending(json!({})), None, now(), &policy),
        finished(ProwJobState::Error, "Pod got deleted unexpectedly", false)
    );
}

#[test]
fn max_revivals_is_configurable() {
    let policy = Policy {
        max_revivals: 0,
        ..Policy::default()
    };
    let evicted = pod(json!({"phase": "Failed", "reason": "Evicted"}));
    assert!(matches!(
        decide(&pending(json!({})), Some(&evicted), now(), &policy),
        Step::Finish {
            state: ProwJobState::Error,
            delete_pod: true,
            ..
        }
    ));
}

/// The stripped view the operator caches decides every pod state as the full pod would.
#[test]
fn a_view_read_off_the_wire_decides_like_the_view_of_the_full_pod() {
    let job: ProwJob = serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "a", "namespace": "prow", "uid": "u"},
        "spec": {"agent": "kubernetes", "job": "j", "pod_spec": {"containers": [{"name": "t"}]}},
        "status": {"state": "pending", "pod_name": "a", "startTime": "2024-01-01T00:00:00Z"},
    }))
    .expect("job");
    let pod = |status: serde_json::Value| {
        json!({"metadata": {"name": "a", "namespace": "p", "creationTimestamp": "2024-01-01T00:00:00Z",
                            "labels": {"prow.k8s.io/build-id": "9", "x": "y"},
                            "annotations": {"prow-operator.dev/job-uid": "u", "big": "z"}},
               "spec": {"containers": [{"name": "test", "image": "i", "env": [{"name": "A", "value": "1"}]},
                                       {"name": "side", "image": "i"}]},
               "status": status})
    };
    let terminated = |code: i32| json!({"terminated": {"exitCode": code, "reason": "Completed"}});
    let cases = [
        json!({"phase": "Pending"}),
        json!({"phase": "Running", "startTime": "2024-01-01T00:00:00Z"}),
        json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)},
            {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)}]}),
        json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)}]}),
        json!({"phase": "Failed", "reason": "Evicted"}),
        json!({"phase": "Running", "startTime": "2024-01-01T00:00:00Z", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]}),
        json!({"phase": "Failed", "containerStatuses": [
            {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        json!({"phase": "Unknown"}),
    ];
    let now: k8s_openapi::jiff::Timestamp = "2024-01-01T00:01:00Z".parse().expect("time");
    let policy = Policy::default();
    for status in cases {
        let full: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(pod(status.clone())).expect("pod");
        let wire: PodView = serde_json::from_value(pod(status.clone())).expect("view");
        assert_eq!(
            decide(&job, Some(&wire), now, &policy),
            decide(&job, Some(&PodView::of(&full)), now, &policy),
            "{status}"
        );
    }
    let slim: PodView = serde_json::from_value(pod(json!({}))).expect("view");
    assert!(slim.build_id().is_some(), "the build id is kept");
    assert!(slim.job_uid().is_some(), "and the job's UID");
}
