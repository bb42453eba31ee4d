use serde_json::{json, Value};

use super::*;
use crate::labels;
use crate::pod_view::PodView;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn at(text: &str) -> Time {
    Time(text.parse().expect("time"))
}

/// A job named `name` (uid `uid-NAME`) of job `ci` with `status` and extra spec fields.
fn job(name: &str, status: Value, spec_extra: Value) -> ProwJob {
    let mut spec = json!({"type": "periodic", "agent": "kubernetes", "job": "ci",
                          "pod_spec": {"containers": [{"name": "test", "image": "x"}]}});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "namespace": "prow", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": spec,
        "status": status,
    }))
    .expect("job")
}

fn triggered(name: &str) -> ProwJob {
    job(name, json!({"state": "triggered"}), json!({}))
}

fn pending(name: &str) -> ProwJob {
    job(
        name,
        json!({"state": "pending", "pod_name": name, "build_id": "7",
               "startTime": "2024-05-01T11:00:00Z"}),
        json!({}),
    )
}

fn pod(name: &str, status: Value) -> PodView {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "pods",
                     "creationTimestamp": "2024-05-01T11:58:00Z",
                     "labels": {"prow.k8s.io/build-id": "41"},
                     "annotations": {"prow-operator.dev/job-uid": format!("uid-{name}")}},
        "spec": {"containers": [{"name": "test", "image": "x"}]},
        "status": status,
    }))
    .expect("pod")
}

fn key(name: &str) -> JobKey {
    JobKey {
        namespace: "prow".into(),
        name: name.into(),
    }
}

/// The plan for `job` with `pod` among `peers`; the grant, if asked, is `grant`.
fn plan_of(job: &ProwJob, pod: Option<&PodView>, peers: &[&ProwJob], grant: Grant) -> Plan {
    pool_plan(job, pod, peers, &[], &PoolPolicy::default(), grant)
}

/// The facts of `job` with no pod, no clusters and no eviction.
fn alone<'a>(job: &'a ProwJob, policy: &'a PoolPolicy) -> Facts<'a> {
    Facts {
        job,
        pod: None,
        evicted: false,
        now: now(),
        clusters: &[],
        pool_policy: policy,
        default_pod_namespace: "prow",
    }
}

fn unused() -> Grant {
    Grant::Refuse("the grant is asked only for a start".into())
}

#[test]
fn a_start_creates_the_pod_then_records_it() {
    let j = triggered("a");
    let plan = plan_of(&j, None, &[], Grant::Start("42".into()));
    assert_eq!(
        plan,
        Plan {
            pod: PodChange::Create {
                build_id: "42".into(),
                cluster: None,
            },
            status: Some(StatusChange {
                state: Some(ProwJobState::Pending),
                description: Some("Job triggered.".into()),
                start_time: Some(Time(now())),
                pending_time: Some(Time(now())),
                pod_name: Some(Some("a".into())),
                build_id: Some("42".into()),
                ..StatusChange::default()
            }),
            event: Some(JobEvent {
                warning: false,
                reason: "Pending",
                note: "Pod a created for build 42.".into(),
            }),
            wake: vec![],
            requeue: None,
            lease: None,
        }
    );
}

#[test]
fn the_start_event_names_the_build_cluster_of_the_pod() {
    let j = job("a", json!({"state": "triggered"}), json!({"cluster": "b2"}));
    let plan = plan_of(&j, None, &[], Grant::Start("42".into()));
    assert_eq!(
        plan.event.expect("an event").note,
        "Pod a created for build 42 in build cluster b2."
    );
    let j = job(
        "a",
        json!({"state": "triggered"}),
        json!({"cluster": "default"}),
    );
    let plan = plan_of(&j, None, &[], Grant::Start("42".into()));
    assert_eq!(
        plan.event.expect("an event").note,
        "Pod a created for build 42."
    );
}

#[test]
fn a_job_that_must_wait_says_why_once_and_looks_again_later() {
    let j = triggered("a");
    let plan = plan_of(&j, None, &[], Grant::Wait("Waiting: full.".into()));
    assert_eq!(plan.pod, PodChange::Keep);
    assert_eq!(plan.requeue, Some(WAITING_RECHECK));
    let status = plan.status.expect("says why");
    assert_eq!(status.description.as_deref(), Some("Waiting: full."));
    assert_eq!(status.start_time, Some(Time(now())));
    // Already saying so: nothing to write.
    let said = job(
        "a",
        json!({"state": "triggered", "description": "Waiting: full.",
               "startTime": "2024-05-01T11:00:00Z"}),
        json!({}),
    );
    let again = plan_of(&said, None, &[], Grant::Wait("Waiting: full.".into()));
    assert_eq!(again.status, None);
    assert_eq!(again.requeue, Some(WAITING_RECHECK));
}

#[test]
fn a_refused_start_ends_the_job_in_error() {
    let j = triggered("a");
    let plan = plan_of(&j, None, &[], Grant::Refuse("No queue.".into()));
    let status = plan.status.expect("final");
    assert_eq!(status.state, Some(ProwJobState::Error));
    assert_eq!(status.description.as_deref(), Some("No queue."));
    assert!(status.completes());
    assert_eq!(plan.pod, PodChange::Keep);
    assert_eq!(plan.event.expect("event").reason, "Errored");
}

#[test]
fn an_orphaned_pod_is_adopted_with_its_own_build_id_and_time() {
    let j = triggered("a");
    let p = pod("a", json!({"phase": "Pending"}));
    let plan = plan_of(&j, Some(&p), &[], unused());
    assert_eq!(plan.pod, PodChange::Keep, "the pod exists");
    let status = plan.status.expect("recorded");
    assert_eq!(status.build_id.as_deref(), Some("41"));
    assert_eq!(status.pending_time, Some(at("2024-05-01T11:58:00Z")));
}

#[test]
fn a_finished_pod_ends_the_job_and_wakes_one_waiting_job_per_name() {
    let j = pending("a");
    let p = pod(
        "a",
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "test", "image": "x",
               "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0}}}]}),
    );
    let (first, second) = (triggered("b"), triggered("c"));
    let mut other_name = triggered("d");
    other_name.spec.job = "other".into();
    let peers = [&j, &first, &second, &other_name];
    let plan = plan_of(&j, Some(&p), &peers, unused());
    let status = plan.status.clone().expect("final");
    assert_eq!(status.state, Some(ProwJobState::Success));
    assert_eq!(status.completion_time, Some(Time(now())));
    assert_eq!(status.start_time, None, "it had one");
    assert_eq!(
        plan.pod,
        PodChange::Keep,
        "a finished pod stays for its logs"
    );
    assert_eq!(plan.event.expect("event").reason, "Succeeded");
    // No global limit: only its own name shares a limit, and only the head of that line.
    assert_eq!(plan.wake, vec![key("b")]);
}

#[test]
fn a_timed_out_pod_is_deleted_after_the_final_state_is_written() {
    let j = pending("a");
    let p = pod(
        "a",
        json!({"phase": "Running", "startTime": "2024-04-28T00:00:00Z"}),
    );
    let plan = plan_of(&j, Some(&p), &[], unused());
    let status = plan.status.expect("final");
    assert_eq!(status.state, Some(ProwJobState::Aborted));
    assert_eq!(status.description.as_deref(), Some("Pod running timeout."));
    assert_eq!(plan.pod, PodChange::Delete);
}

#[test]
fn a_lost_pod_is_revived_count_first() {
    let j = pending("a");
    let p = pod("a", json!({"phase": "Failed", "reason": "Evicted"}));
    let plan = plan_of(&j, Some(&p), &[], unused());
    let status = plan.status.expect("count");
    assert_eq!(status.pod_revival_count, Some(1));
    assert_eq!(
        status.pod_name,
        Some(None),
        "cleared: recreate once it is gone"
    );
    assert_eq!(plan.pod, PodChange::Delete);
    assert_eq!(plan.requeue, Some(AFTER_DELETE));
    let event = plan.event.expect("event");
    assert!(event.warning && event.reason == "PodRevived");
}

#[test]
fn a_pod_the_eviction_api_deleted_is_revived_not_reported_deleted() {
    let j = pending("a");
    let policy = PoolPolicy::default();
    let facts = Facts {
        evicted: true,
        ..alone(&j, &policy)
    };
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let plan = plan(
        &facts,
        &mut peers,
        &Policy::default(),
        &Limits::default(),
        unused,
    );
    assert_eq!(plan.status.expect("count").pod_revival_count, Some(1));
    assert_eq!(plan.pod, PodChange::Keep, "no pod left to delete");
    let gone = plan_of(&j, None, &[], unused());
    assert_eq!(
        gone.status.expect("final").description.as_deref(),
        Some("Pod got deleted unexpectedly")
    );
}

#[test]
fn a_revived_job_recreates_its_pod_with_the_same_build_id() {
    let j = job(
        "a",
        json!({"state": "pending", "build_id": "7", "pod_revival_count": 1}),
        json!({}),
    );
    let plan = plan_of(&j, None, &[], unused());
    assert_eq!(
        plan.pod,
        PodChange::Create {
            build_id: "7".into(),
            cluster: None,
        }
    );
    assert_eq!(plan.status.expect("name").pod_name, Some(Some("a".into())));
}

#[test]
fn a_superseded_presubmit_aborts_and_a_new_one_wakes_the_old() {
    let presubmit = |name: &str, created: &str, status: Value| {
        let mut j = job(
            name,
            status,
            json!({"type": "presubmit",
                   "refs": {"org": "o", "repo": "r", "base_ref": "main",
                            "pulls": [{"number": 1, "author": "a", "sha": "s"}]}}),
        );
        j.metadata.creation_timestamp = Some(at(created));
        j
    };
    let old = presubmit("old", "2024-05-01T10:00:00Z", json!({"state": "triggered"}));
    let new = presubmit("new", "2024-05-01T11:00:00Z", json!({"state": "triggered"}));
    let peers = [&old, &new];
    let plan = plan_of(&old, None, &peers, unused());
    let status = plan.status.expect("aborted");
    assert_eq!(status.state, Some(ProwJobState::Aborted));
    assert!(status
        .description
        .expect("why")
        .contains("newer version of this job is running (new)"));
    // Marked reported to GitHub, as upstream: the context keeps the newer run's state.
    assert_eq!(
        status.prev_report_states,
        Some([("github-reporter".to_string(), ProwJobState::Aborted)].into())
    );
    let newer = plan_of(&new, None, &peers, Grant::Start("9".into()));
    assert_eq!(newer.status.and_then(|s| s.prev_report_states), None);
    assert!(newer.wake.contains(&key("old")), "{:?}", newer.wake);
}

#[test]
fn a_stale_pod_is_deleted_and_looked_at_again() {
    let j = triggered("a");
    let mut stale = pod("a", json!({"phase": "Running"}));
    stale.metadata.job_uid = Some("uid-someone-else".into());
    let plan = plan_of(&j, Some(&stale), &[], unused());
    assert_eq!(plan.pod, PodChange::Delete);
    assert_eq!(plan.status, None);
    assert_eq!(plan.requeue, Some(AFTER_DELETE));
}

#[test]
fn a_waiting_timeout_comes_back_just_past_its_deadline() {
    let j = pending("a");
    let p = pod(
        "a",
        json!({"phase": "Running", "startTime": "2024-05-01T11:59:00Z"}),
    );
    let plan = plan_of(&j, Some(&p), &[], unused());
    assert_eq!(plan.status, None);
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(48 * 3600 - 60) + PAST_DEADLINE)
    );
}

#[test]
fn the_status_change_is_the_merge_patch_the_api_server_gets() {
    let change = StatusChange {
        pod_revival_count: Some(2),
        pod_name: Some(None),
        description: Some("d".into()),
        ..StatusChange::default()
    };
    assert_eq!(
        serde_json::to_value(&change).expect("json"),
        json!({"pod_revival_count": 2, "pod_name": null, "description": "d"})
    );
    let pending = StatusChange {
        state: Some(ProwJobState::Pending),
        pending_time: Some(at(NOW)),
        build_id: Some("1".into()),
        ..StatusChange::default()
    };
    assert_eq!(
        serde_json::to_value(&pending).expect("json"),
        json!({"state": "pending", "pendingTime": NOW, "build_id": "1"})
    );
}

/// A job of pool `e2e`, created at `created`.
fn pool_job(name: &str, created: &str, status: Value) -> ProwJob {
    let mut j = job(name, status, json!({}));
    j.metadata.creation_timestamp = Some(at(created));
    j.metadata.labels = Some(
        [(labels::TEST_CLUSTER_POOL.to_string(), "e2e".to_string())]
            .into_iter()
            .collect(),
    );
    j
}

fn test_cluster(name: &str, status: Value) -> TestCluster {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": name, "namespace": "prow", "resourceVersion": "5"},
        "spec": {"pool": "e2e", "region": "eu", "kubeconfigSecretRef": {"name": "kc"}},
        "status": status,
    }))
    .expect("cluster")
}

fn leased_to(job: &str) -> Value {
    json!({"phase": "Leased", "lease": {"holder": format!("prow/{job}"),
           "holderUid": format!("uid-{job}"), "since": "2024-05-01T11:30:00Z"}})
}

/// The plan for `job` among `peers` with `clusters` and `policy`.
fn pool_plan(
    job: &ProwJob,
    pod: Option<&PodView>,
    peers: &[&ProwJob],
    clusters: &[&TestCluster],
    policy: &PoolPolicy,
    grant: Grant,
) -> Plan {
    let facts = Facts {
        job,
        pod,
        evicted: false,
        now: now(),
        clusters,
        pool_policy: policy,
        default_pod_namespace: "prow",
    };
    let mut peers = Peers::new(|| peers.to_vec());
    plan(
        &facts,
        &mut peers,
        &Policy::default(),
        &Limits::default(),
        || grant,
    )
}

#[test]
fn the_first_in_line_takes_a_vacant_cluster_with_its_start_and_its_pod_gets_it() {
    let first = pool_job(
        "first",
        "2024-05-01T11:00:00Z",
        json!({"state": "triggered"}),
    );
    let second = pool_job(
        "second",
        "2024-05-01T11:01:00Z",
        json!({"state": "triggered"}),
    );
    let vacant = test_cluster("c1", json!({"phase": "Vacant"}));
    let plan = pool_plan(
        &first,
        None,
        &[&first, &second],
        &[&vacant],
        &PoolPolicy::default(),
        Grant::Start("42".into()),
    );
    let take = plan.lease.expect("a lease is taken");
    assert!(take.take);
    assert_eq!(
        take.cluster.metadata.resource_version.as_deref(),
        Some("5"),
        "written at the version it was decided on"
    );
    let status = take.cluster.status.expect("status");
    assert_eq!(status.phase, Some(crate::ClusterPhase::Leased));
    let lease = status.lease.expect("lease");
    assert_eq!(lease.holder, "prow/first");
    assert_eq!(lease.holder_uid.as_deref(), Some("uid-first"));
    assert_eq!(lease.since, Time(now()));
    assert_eq!(lease.until, None, "a job's lease lasts as long as the job");
    match plan.pod {
        PodChange::Create {
            cluster: Some(c), ..
        } => {
            assert_eq!((c.name.as_str(), c.region.as_str()), ("c1", "eu"));
        }
        other => panic!("expected a pod with the cluster, got {other:?}"),
    }
    assert_eq!(
        plan.status.expect("status").test_cluster.as_deref(),
        Some("c1")
    );
    assert!(plan
        .event
        .expect("event")
        .note
        .contains("on test cluster c1"));

    // The second in line has no cluster left: it waits, and its grant is never asked.
    let plan = pool_plan(
        &second,
        None,
        &[&first, &second],
        &[&vacant],
        &PoolPolicy::default(),
        unused(),
    );
    assert_eq!(plan.lease, None);
    assert_eq!(plan.pod, PodChange::Keep);
    assert_eq!(
        plan.requeue,
        Some(POOL_RECHECK),
        "looks again soon, to keep its place in line current"
    );
    let status = plan.status.expect("says where it waits");
    assert_eq!(status.state, Some(ProwJobState::Triggered));
    assert_eq!(
        status.description.as_deref(),
        Some("Waiting for a test cluster of pool \"e2e\": number 2 in line.")
    );
}

#[test]
fn a_pool_job_waits_for_a_leasable_cluster_and_keeps_a_lease_it_holds() {
    let a = pool_job("a", "2024-05-01T11:00:00Z", json!({"state": "triggered"}));
    let busy = [
        test_cluster("c1", leased_to("other")),
        test_cluster(
            "c2",
            json!({"phase": "Disabled", "disabledReason": "broken"}),
        ),
        test_cluster("c3", json!({"phase": "Cleaning"})),
        test_cluster(
            "c4",
            json!({"phase": "Held", "lease": {"holder": "al",
                      "since": "2024-05-01T11:00:00Z", "until": "2024-05-01T18:00:00Z"}}),
        ),
    ];
    let refs: Vec<&TestCluster> = busy.iter().collect();
    let plan = pool_plan(&a, None, &[&a], &refs, &PoolPolicy::default(), unused());
    assert_eq!(plan.lease, None);
    assert_eq!(
        plan.status.expect("waits").description.as_deref(),
        Some("Waiting for a test cluster of pool \"e2e\": number 1 in line.")
    );

    // It took a lease and the operator stopped before the pod: the next pass starts with it.
    let mine = test_cluster("c5", leased_to("a"));
    let plan = pool_plan(
        &a,
        None,
        &[&a],
        &[&mine],
        &PoolPolicy::default(),
        Grant::Start("43".into()),
    );
    assert_eq!(plan.lease, None, "nothing more to write on the cluster");
    assert!(matches!(
        plan.pod,
        PodChange::Create { cluster: Some(ref c), .. } if c.name == "c5"
    ));

    // First in line with a cluster free, but its concurrency limit is full: it waits for
    // that, and takes no lease meanwhile.
    let vacant = test_cluster("c6", json!({}));
    let plan = pool_plan(
        &a,
        None,
        &[&a],
        &[&vacant],
        &PoolPolicy::default(),
        Grant::Wait("Waiting: full.".into()),
    );
    assert_eq!(plan.lease, None);
    assert_eq!(
        plan.status.expect("waits").description.as_deref(),
        Some("Waiting: full.")
    );
}

#[test]
fn the_line_is_per_namespace_and_unhealthy_clusters_are_skipped() {
    let a = pool_job("a", "2024-05-01T11:00:00Z", json!({"state": "triggered"}));
    let mut elsewhere = pool_job("b", "2024-05-01T10:00:00Z", json!({"state": "triggered"}));
    elsewhere.spec.namespace = "other".into();
    let sick = test_cluster(
        "c0",
        json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "False",
               "reason": "ReadyzFailed", "message": "no answer",
               "lastTransitionTime": "2024-05-01T11:00:00Z"}]}),
    );
    let fine = test_cluster("c9", json!({"phase": "Vacant"}));
    let plan = pool_plan(
        &a,
        None,
        &[&elsewhere, &a],
        &[&sick, &fine],
        &PoolPolicy::default(),
        Grant::Start("1".into()),
    );
    let take = plan.lease.expect("lease");
    assert_eq!(take.cluster.metadata.name.as_deref(), Some("c9"));
}

#[test]
fn a_finished_pool_job_ends_its_lease_and_wakes_the_next_in_its_pool() {
    let running = pool_job(
        "a",
        "2024-05-01T11:00:00Z",
        json!({"state": "pending", "pod_name": "a", "build_id": "7",
               "startTime": "2024-05-01T11:00:00Z"}),
    );
    let next = pool_job("b", "2024-05-01T11:01:00Z", json!({"state": "triggered"}));
    let later = pool_job("c", "2024-05-01T11:02:00Z", json!({"state": "triggered"}));
    let mine = test_cluster("c1", leased_to("a"));
    let succeeded = pod(
        "a",
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "test", "image": "x",
               "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0}}}]}),
    );
    let plan = pool_plan(
        &running,
        Some(&succeeded),
        &[&running, &later, &next],
        &[&mine],
        &PoolPolicy::default(),
        unused(),
    );
    assert_eq!(
        plan.status.as_ref().and_then(|s| s.state),
        Some(ProwJobState::Success)
    );
    let release = plan.lease.expect("the lease ends");
    assert!(!release.take);
    assert!(release.handoff, "b waits for it");
    let status = release.cluster.status.expect("status");
    assert_eq!(status.phase, Some(crate::ClusterPhase::Vacant));
    assert_eq!(status.lease, None);
    assert!(plan.wake.contains(&key("b")), "{:?}", plan.wake);
    assert!(!plan.wake.contains(&key("c")), "only the first in line");
    // Another cluster freed a moment ago and not taken yet: the first two get one each.
    let also_free = test_cluster("c2", json!({"phase": "Vacant"}));
    let plan = pool_plan(
        &running,
        Some(&succeeded),
        &[&running, &later, &next],
        &[&mine, &also_free],
        &PoolPolicy::default(),
        unused(),
    );
    assert!(
        plan.wake.contains(&key("b")) && plan.wake.contains(&key("c")),
        "{:?}",
        plan.wake
    );

    // A pool that cleans its clusters after use: the cluster goes to Cleaning instead.
    let cleaning = PoolPolicy {
        cleanup: true,
        ..PoolPolicy::default()
    };
    let plan = pool_plan(
        &running,
        Some(&succeeded),
        &[&running],
        &[&mine],
        &cleaning,
        unused(),
    );
    let status = plan.lease.expect("ends").cluster.status.expect("status");
    assert_eq!(status.phase, Some(crate::ClusterPhase::Cleaning));

    // Finished while the operator was away, lease still held: the next look ends it.
    let done = pool_job(
        "a",
        "2024-05-01T11:00:00Z",
        json!({"state": "success", "completionTime": "2024-05-01T11:50:00Z"}),
    );
    let plan = pool_plan(&done, None, &[], &[&mine], &PoolPolicy::default(), unused());
    assert!(plan.status.is_none());
    assert!(!plan.lease.expect("ends").take);

    // An aborted job ends its lease like any other end.
    let aborted = pool_job(
        "a",
        "2024-05-01T11:00:00Z",
        json!({"state": "aborted", "pod_name": "a"}),
    );
    let plan = pool_plan(
        &aborted,
        Some(&pod("a", json!({"phase": "Running"}))),
        &[],
        &[&mine],
        &PoolPolicy::default(),
        unused(),
    );
    assert!(plan.status.expect("final").completes());
    assert!(!plan.lease.expect("ends").take);
}

#[test]
fn in_a_health_checked_pool_a_cluster_never_checked_is_not_leased_yet() {
    let a = pool_job("a", "2024-05-01T11:00:00Z", json!({"state": "triggered"}));
    let unchecked = test_cluster("c1", json!({"phase": "Vacant"}));
    let checking = PoolPolicy {
        health: Some(crate::lease::HealthPolicy::default()),
        ..PoolPolicy::default()
    };
    let plan = pool_plan(
        &a,
        None,
        &[&a],
        &[&unchecked],
        &checking,
        Grant::Start("1".into()),
    );
    assert_eq!(plan.lease, None, "not leased before its first check");
    let why = plan.status.expect("waits").description.expect("why");
    assert!(why.contains("c1 has not been health-checked yet"), "{why}");
    // Without a health check it is leased at once.
    let plan = pool_plan(
        &a,
        None,
        &[&a],
        &[&unchecked],
        &PoolPolicy::default(),
        Grant::Start("1".into()),
    );
    assert!(plan.lease.is_some());
}

/// The second plan after the API server refused the pod of a job that had just taken a lease:
/// the job ends in error with the reason, and the lease it took ends with it.
#[test]
fn a_refused_pod_ends_the_job_in_error_and_gives_back_the_lease_taken_for_it() {
    let job = pool_job(
        "first",
        "2024-05-01T11:00:00Z",
        json!({"state": "triggered"}),
    );
    let taken = test_cluster("c1", leased_to("first"));
    let policy = PoolPolicy::default();
    let facts = alone(&job, &policy);
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let plan = after_refused_pod(
        &facts,
        &mut peers,
        &Limits::default(),
        "quota exceeded",
        Some(&taken),
    );
    let status = plan.status.as_ref().expect("a status");
    assert_eq!(status.state, Some(ProwJobState::Error));
    assert_eq!(
        status.description.as_deref(),
        Some("Pod can not be created: quota exceeded")
    );
    let lease = plan.lease.as_ref().expect("the lease ends");
    assert!(!lease.take);
    assert_eq!(lease.cluster.metadata.name.as_deref(), Some("c1"));
    assert_ne!(
        lease.cluster.status.as_ref().and_then(|s| s.phase),
        Some(crate::ClusterPhase::Leased)
    );

    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let plan = after_refused_pod(
        &facts,
        &mut peers,
        &Limits::default(),
        "quota exceeded",
        None,
    );
    assert!(plan.lease.is_none(), "no lease taken, none to end");
}

/// What a reconcile reads before it plans, by the job's state.
#[test]
fn reads_table() {
    let pooled = |status: Value| pool_job("j", "2024-05-01T11:00:00Z", status);
    let cases = [
        (
            "a triggered job nobody started reads no pod",
            job("j", json!({"state": "triggered"}), json!({})),
            false,
            (false, false, None),
        ),
        (
            "a job this process just started reads its pod",
            job("j", json!({"state": "triggered"}), json!({})),
            true,
            (true, false, None),
        ),
        (
            "a pending job reads its pod",
            job("j", json!({"state": "pending"}), json!({})),
            false,
            (true, false, None),
        ),
        (
            "a finished job reads nothing",
            job(
                "j",
                json!({"state": "success", "completionTime": "2024-05-01T11:00:00Z"}),
                json!({}),
            ),
            false,
            (false, false, None),
        ),
        (
            "a waiting job of a pool takes its pool's turn",
            pooled(json!({"state": "triggered"})),
            false,
            (false, true, Some("e2e")),
        ),
        (
            "a job holding a cluster reads the clusters but takes no turn",
            pooled(json!({"state": "triggered", "testCluster": "c1"})),
            false,
            (false, true, None),
        ),
        (
            "a running job of a pool reads the clusters",
            pooled(json!({"state": "pending"})),
            false,
            (true, true, None),
        ),
    ];
    for (case, job, started_here, (pod, clusters, turn)) in cases {
        let got = reads(&job, started_here);
        assert_eq!(
            (got.pod_if_uncached, got.clusters, got.pool_turn),
            (pod, clusters, turn),
            "{case}"
        );
    }
}

/// What a job does about its build cluster, as a plan: ended, waiting (its description written
/// once), or the usual plan with a wait's description put back.
#[test]
fn build_cluster_gates_as_plans() {
    use crate::buildcluster::Gate;
    let policy = PoolPolicy::default();
    let ran = std::cell::Cell::new(false);
    let go = |_: &mut Peers<&ProwJob, _>| {
        ran.set(true);
        Plan::default()
    };

    let first = triggered("j");
    let facts = alone(&first, &policy);
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let ended = Gate::End("Build cluster \"gone\" does not exist".into());
    let plan = in_build_cluster(ended, &facts, &mut peers, &Limits::default(), go);
    let status = plan.status.expect("a status");
    assert_eq!(status.state, Some(ProwJobState::Error));
    assert_eq!(
        status.description.as_deref(),
        Some("Build cluster \"gone\" does not exist")
    );
    assert!(status.completes());
    assert_eq!(plan.pod, PodChange::Keep, "no pod to delete out there");
    assert!(!ran.get());

    let wait = || Gate::Wait {
        description: Some("Waiting for build cluster \"b2\": down".into()),
        recheck: Duration::from_secs(3),
    };
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let plan = in_build_cluster(wait(), &facts, &mut peers, &Limits::default(), go);
    assert_eq!(plan.requeue, Some(Duration::from_secs(3)));
    let status = plan.status.expect("the reason is written");
    assert_eq!(status.state, None, "the state stays");
    assert_eq!(
        status.description.as_deref(),
        Some("Waiting for build cluster \"b2\": down")
    );

    let waiting = job(
        "j",
        json!({"state": "triggered", "description": "Waiting for build cluster \"b2\": down"}),
        json!({}),
    );
    let facts = alone(&waiting, &policy);
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let plan = in_build_cluster(wait(), &facts, &mut peers, &Limits::default(), go);
    assert_eq!(plan.status, None, "said once");
    assert!(!ran.get());

    // A cluster that is only being listed: the job waits, and its description stays.
    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let listing = Gate::Wait {
        description: None,
        recheck: Duration::from_secs(5),
    };
    let plan = in_build_cluster(listing, &facts, &mut peers, &Limits::default(), go);
    assert_eq!(plan.status, None, "nothing written");
    assert_eq!(plan.requeue, Some(Duration::from_secs(5)));
    assert!(!ran.get());

    let mut peers = Peers::new(Vec::<&ProwJob>::new);
    let back = Gate::Go {
        restore: Some("Job triggered.".into()),
    };
    let plan = in_build_cluster(back, &facts, &mut peers, &Limits::default(), go);
    assert!(ran.get());
    assert_eq!(
        plan.status.and_then(|s| s.description).as_deref(),
        Some("Job triggered.")
    );
}

#[test]
fn a_finished_job_is_marked_completed_once_nothing_is_left_to_do_and_an_unfinished_one_never() {
    let done = |state: &str| {
        job(
            "a",
            json!({"state": state, "completionTime": "2024-05-01T11:30:00Z",
                   "pod_name": "a", "build_id": "7"}),
            json!({}),
        )
    };
    let marked = |mut j: ProwJob| {
        j.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(labels::COMPLETED.into(), "true".into());
        j
    };
    let idle = Plan::default();
    let deletes = Plan {
        pod: PodChange::Delete,
        ..Plan::default()
    };
    let writes = Plan {
        status: plan_of(&pending("a"), None, &[], unused()).status,
        ..Plan::default()
    };
    let looks_again = Plan {
        requeue: Some(Duration::from_secs(1)),
        ..Plan::default()
    };
    // (job, plan, the mark this pass writes, needs a reconcile)
    let table: Vec<(&str, ProwJob, &Plan, Option<bool>, bool)> = vec![
        ("succeeded, idle", done("success"), &idle, Some(true), true),
        ("failed, idle", done("failure"), &idle, Some(true), true),
        (
            "aborted, its pod deleted first",
            done("aborted"),
            &deletes,
            None,
            true,
        ),
        (
            "aborted, pod gone",
            done("aborted"),
            &idle,
            Some(true),
            true,
        ),
        (
            "error, looked at again later",
            done("error"),
            &looks_again,
            None,
            true,
        ),
        (
            "finished by a status write this pass",
            done("success"),
            &writes,
            None,
            true,
        ),
        (
            "succeeded, marked",
            marked(done("success")),
            &idle,
            None,
            false,
        ),
        (
            "failed, marked",
            marked(done("failure")),
            &idle,
            None,
            false,
        ),
        // Its pod may still run (a stop between two writes): read at every start.
        (
            "aborted, marked",
            marked(done("aborted")),
            &idle,
            None,
            true,
        ),
        ("error, marked", marked(done("error")), &idle, None, true),
        ("pending", pending("a"), &idle, None, true),
        ("triggered", triggered("a"), &idle, None, true),
        // A mark on an unfinished job (by hand) is taken off, whatever the pass does; the job is
        // reconciled as any unfinished one.
        (
            "triggered, marked by hand, its pod created this pass",
            marked(triggered("a")),
            &writes,
            Some(false),
            true,
        ),
        (
            "pending, marked by hand",
            marked(pending("a")),
            &idle,
            Some(false),
            true,
        ),
    ];
    for (case, job, plan, marks, needs) in table {
        let marked = crate::lifecycle::is_marked_completed(&job);
        assert_eq!(plan.mark(&job, marked), marks, "{case}: the mark");
        assert_eq!(
            crate::lifecycle::needs_reconcile(&job, marked),
            needs,
            "{case}: needs a reconcile"
        );
    }
}
