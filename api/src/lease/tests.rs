use serde_json::{json, Value};

use super::*;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn status(value: Value) -> TestClusterStatus {
    serde_json::from_value(value).expect("status")
}

fn job(uid: &str) -> Holder {
    Holder::Job {
        namespace: "ci".into(),
        name: "e2e-1".into(),
        uid: uid.into(),
    }
}

fn caller(name: &str) -> Holder {
    Holder::Caller { name: name.into() }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Every transition and every refusal, by phase.
#[test]
fn transition_table() {
    let vacant = json!({"phase": "Vacant"});
    let leased_to_job = json!({"phase": "Leased", "lease": {
        "holder": "ci/e2e-1", "holderUid": "u1", "since": "2024-05-01T11:00:00Z"}});
    let leased_to_caller = json!({"phase": "Leased", "lease": {
        "holder": "e2e-image", "since": "2024-05-01T11:00:00Z", "until": "2024-05-01T17:00:00Z"}});
    let caller_lease_due = json!({"phase": "Leased", "lease": {
        "holder": "e2e-image", "since": "2024-05-01T05:00:00Z", "until": "2024-05-01T11:00:00Z"}});
    let held = json!({"phase": "Held", "lease": {
        "holder": "alice", "since": "2024-05-01T11:00:00Z", "until": "2024-05-01T17:00:00Z"}});
    let hold_due = json!({"phase": "Held", "lease": {
        "holder": "alice", "since": "2024-05-01T05:00:00Z", "until": "2024-05-01T12:00:00Z"}});
    let disabled = json!({"phase": "Disabled", "disabledReason": "broken etcd"});
    let cleaning = json!({"phase": "Cleaning"});
    let unhealthy = json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "False",
        "reason": "ReadyzFailed", "message": "GET /readyz: connection refused",
        "lastTransitionTime": "2024-05-01T11:00:00Z"}]});
    let hold = |duration: Option<Duration>| Request::Hold {
        caller: "e2e-image".into(),
        by: "alice".into(),
        duration,
    };

    // (case, status before, request, the phase and holder after; or the refusal's words)
    type Want = Result<Option<(&'static str, Option<&'static str>)>, &'static str>;
    let cases: Vec<(&str, Value, Request, Want)> = vec![
        ("a job leases a vacant cluster", vacant.clone(), Request::Lease(job("u1")),
         Ok(Some(("Leased", Some("ci/e2e-1"))))),
        ("getvacant leases a vacant cluster", vacant.clone(), Request::Lease(caller("e2e-image")),
         Ok(Some(("Leased", Some("e2e-image"))))),
        ("the same job asking again changes nothing", leased_to_job.clone(), Request::Lease(job("u1")),
         Ok(None)),
        ("another job is refused", leased_to_job.clone(), Request::Lease(job("u2")),
         Err("cluster c1 is not vacant: it is leased by ci/e2e-1")),
        ("a recreated job of the same name is another holder", leased_to_job.clone(),
         Request::Lease(job("u9")), Err("cluster c1 is not vacant: it is leased by ci/e2e-1")),
        ("a held cluster is not leased", held.clone(), Request::Lease(caller("x")),
         Err("cluster c1 is not vacant: it is held by alice until 2024-05-01T17:00:00Z")),
        ("a disabled cluster is not leased", disabled.clone(), Request::Lease(job("u1")),
         Err("cluster c1 is not vacant: it is disabled")),
        ("a cluster being cleaned is not leased", cleaning.clone(), Request::Lease(job("u1")),
         Err("cluster c1 is not vacant: it is being cleaned up")),
        ("an unhealthy cluster is not leased", unhealthy.clone(), Request::Lease(job("u1")),
         Err("cluster c1 failed its health check: GET /readyz: connection refused")),

        ("the job ends: vacant", leased_to_job.clone(), Request::Finish(job("u1")),
         Ok(Some(("Vacant", None)))),
        ("finishtest by the caller: vacant", leased_to_caller.clone(), Request::Finish(caller("e2e-image")),
         Ok(Some(("Vacant", None)))),
        ("finishtest by someone who does not hold it", leased_to_caller.clone(),
         Request::Finish(caller("mallory")),
         Err("cluster c1 is leased by e2e-image until 2024-05-01T17:00:00Z, not by mallory")),
        ("finishtest on a job's lease", leased_to_job.clone(), Request::Finish(caller("e2e-image")),
         Err("cluster c1 is leased by ci/e2e-1, not by e2e-image")),
        ("finishtest on a held cluster", held.clone(), Request::Finish(caller("e2e-image")),
         Err("cluster c1 is held by alice until 2024-05-01T17:00:00Z: release it with releasecluster")),
        ("finishtest on a vacant cluster", vacant.clone(), Request::Finish(caller("e2e-image")),
         Err("cluster c1 is not leased: it is vacant")),

        ("the caller's lease becomes a hold", leased_to_caller.clone(), hold(None),
         Ok(Some(("Held", Some("alice"))))),
        ("a hold on a job's lease", leased_to_job.clone(), hold(None),
         Err("cluster c1 is leased to job ci/e2e-1 until it ends; it cannot be held")),
        ("a hold by another caller", leased_to_caller.clone(), Request::Hold {
            caller: "mallory".into(), by: "mallory".into(), duration: None },
         Err("cluster c1 is leased by e2e-image, not by mallory")),
        ("a hold past the pool's maximum", leased_to_caller.clone(), hold(Some(30 * HOUR)),
         Err("cluster c1 cannot be held for 30h: the pool allows at most 24h")),
        ("a hold on a vacant cluster", vacant.clone(), hold(None),
         Err("cluster c1 is not leased by a getvacant caller: it is vacant")),

        ("releasecluster ends a hold", held.clone(), Request::Release, Ok(Some(("Vacant", None)))),
        ("releasecluster on a leased cluster", leased_to_job.clone(), Request::Release,
         Err("cluster c1 is not held: it is leased by ci/e2e-1")),

        ("a hold expires", hold_due.clone(), Request::Expire, Ok(Some(("Vacant", None)))),
        ("a hold not yet due", held.clone(), Request::Expire, Ok(None)),
        ("a forgotten getvacant lease expires", caller_lease_due.clone(), Request::Expire,
         Ok(Some(("Vacant", None)))),
        ("a job's lease never expires", leased_to_job.clone(), Request::Expire, Ok(None)),

        ("the lease of a job that is gone is reclaimed", leased_to_job.clone(),
         Request::Reclaim { job_uid: "u1".into() }, Ok(Some(("Vacant", None)))),
        ("reclaim names another job: nothing", leased_to_job.clone(),
         Request::Reclaim { job_uid: "u2".into() }, Ok(None)),

        ("disable a vacant cluster", vacant.clone(), Request::Disable { reason: "flaky".into() },
         Ok(Some(("Disabled", None)))),
        ("a failed clean-up disables", cleaning.clone(), Request::Disable { reason: "cleanup failed".into() },
         Ok(Some(("Disabled", None)))),
        ("disable a leased cluster", leased_to_job.clone(), Request::Disable { reason: "x".into() },
         Err("cluster c1 is in use: it is leased by ci/e2e-1; it can be disabled once it is released")),
        ("enable a disabled cluster", disabled.clone(), Request::Enable, Ok(Some(("Vacant", None)))),
        ("enable a vacant cluster: nothing", vacant.clone(), Request::Enable, Ok(None)),
        ("enable a held cluster", held.clone(), Request::Enable,
         Err("cluster c1 is not disabled: it is held by alice until 2024-05-01T17:00:00Z")),
        ("the clean-up job succeeded", cleaning.clone(), Request::CleanedUp, Ok(Some(("Vacant", None)))),
    ];
    let policy = PoolPolicy::default();
    for (case, before, request, want) in cases {
        let got = transition("c1", &status(before), &request, &policy, now());
        let got = got
            .map(|changed| {
                changed.map(|s| {
                    let phase = serde_json::to_value(s.phase).expect("phase");
                    (
                        phase.as_str().unwrap_or_default().to_string(),
                        s.lease.map(|l| l.holder),
                    )
                })
            })
            .map_err(|e| e.to_string());
        let want = want
            .map(|changed| changed.map(|(p, h)| (p.to_string(), h.map(str::to_string))))
            .map_err(str::to_string);
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn leases_record_the_holder_the_time_and_when_a_callers_lease_ends() {
    let policy = PoolPolicy::default();
    let vacant = status(json!({"phase": "Vacant"}));
    let by_job = transition("c1", &vacant, &Request::Lease(job("u1")), &policy, now())
        .expect("leased")
        .expect("changed");
    let lease = by_job.lease.expect("lease");
    assert_eq!(lease.holder_uid.as_deref(), Some("u1"));
    assert_eq!(lease.since, Time(now()));
    assert_eq!(lease.until, None, "a job's lease lasts until the job ends");

    let by_caller = transition(
        "c1",
        &vacant,
        &Request::Lease(caller("e2e")),
        &policy,
        now(),
    )
    .expect("leased")
    .expect("changed");
    let until = by_caller.lease.expect("lease").until.expect("until");
    assert_eq!(until, Time("2024-05-01T18:00:00Z".parse().expect("time")));

    let held = transition(
        "c1",
        &by_caller_status(),
        &Request::Hold {
            caller: "e2e".into(),
            by: "alice".into(),
            duration: Some(2 * HOUR),
        },
        &policy,
        now(),
    )
    .expect("held")
    .expect("changed");
    assert_eq!(
        held.lease.expect("lease").until,
        Some(Time("2024-05-01T14:00:00Z".parse().expect("time")))
    );
}

fn by_caller_status() -> TestClusterStatus {
    status(
        json!({"phase": "Leased", "lease": {"holder": "e2e", "since": NOW,
                                               "until": "2024-05-01T18:00:00Z"}}),
    )
}

#[test]
fn with_a_clean_up_job_every_end_of_a_lease_goes_through_cleaning() {
    let policy = PoolPolicy {
        cleanup: true,
        ..PoolPolicy::default()
    };
    let ended = transition(
        "c1",
        &by_caller_status(),
        &Request::Finish(caller("e2e")),
        &policy,
        now(),
    )
    .expect("finished")
    .expect("changed");
    assert_eq!(ended.phase, Some(ClusterPhase::Cleaning));
    assert_eq!(ended.lease, None);
    // Conditions and the rest of the status are kept.
    let mut with_condition = by_caller_status();
    with_condition.observed_generation = Some(4);
    let ended = transition(
        "c1",
        &with_condition,
        &Request::Finish(caller("e2e")),
        &policy,
        now(),
    )
    .expect("finished")
    .expect("changed");
    assert_eq!(ended.observed_generation, Some(4));
}

#[test]
fn a_hold_ends_on_a_whole_second_never_before_its_duration() {
    let now: Timestamp = "2024-05-01T12:00:00.300Z".parse().expect("time");
    let leased = TestClusterStatus {
        phase: Some(ClusterPhase::Leased),
        lease: Some(ClusterLease {
            holder: "e2e-image".into(),
            holder_uid: None,
            since: Time(now),
            until: None,
        }),
        ..TestClusterStatus::default()
    };
    let held = transition(
        "c1",
        &leased,
        &Request::Hold {
            caller: "e2e-image".into(),
            by: "alice".into(),
            duration: Some(Duration::from_secs(2)),
        },
        &PoolPolicy::default(),
        now,
    )
    .expect("held")
    .expect("a change");
    let until = held.lease.expect("lease").until.expect("until").0;
    assert_eq!(
        until.to_string(),
        "2024-05-01T12:00:03Z",
        "stored whole seconds, rounded up"
    );
}

#[test]
fn a_health_check_sets_the_healthy_condition_and_moves_its_time_only_on_a_change() {
    let t0: Timestamp = "2024-05-01T12:00:00Z".parse().expect("time");
    let t1: Timestamp = "2024-05-01T12:01:00Z".parse().expect("time");
    let vacant = TestClusterStatus {
        phase: Some(ClusterPhase::Vacant),
        ..TestClusterStatus::default()
    };
    let failed = with_health(&vacant, Err("connection refused".into()), t0).expect("a change");
    let c = &failed.conditions[0];
    assert_eq!((c.type_.as_str(), c.status.as_str()), (HEALTHY, "False"));
    assert_eq!(c.message, "connection refused");
    assert_eq!(c.last_transition_time, Time(t0));
    let refused = transition(
        "c1",
        &failed,
        &Request::Lease(Holder::Caller { name: "x".into() }),
        &PoolPolicy::default(),
        t0,
    );
    assert_eq!(
        refused,
        Err(Refused(
            "cluster c1 failed its health check: connection refused".into()
        )),
        "an unhealthy cluster is never leased"
    );
    assert_eq!(
        with_health(&failed, Err("connection refused".into()), t1),
        None,
        "the same answer: nothing to write"
    );
    let other = with_health(&failed, Err("timed out".into()), t1).expect("a new reason");
    assert_eq!(
        other.conditions[0].last_transition_time,
        Time(t0),
        "still False since t0"
    );
    let healthy = with_health(&other, Ok(()), t1).expect("recovered");
    assert_eq!(healthy.conditions.len(), 1);
    assert_eq!(healthy.conditions[0].status, "True");
    assert_eq!(healthy.conditions[0].last_transition_time, Time(t1));
    assert!(transition(
        "c1",
        &healthy,
        &Request::Lease(Holder::Caller { name: "x".into() }),
        &PoolPolicy::default(),
        t1
    )
    .is_ok());
}

#[test]
fn in_a_pool_that_checks_health_a_released_cluster_waits_for_its_next_check() {
    let now: Timestamp = "2024-05-01T12:00:00Z".parse().expect("time");
    let policy = PoolPolicy {
        health: Some(crate::lease::HealthPolicy::default()),
        ..PoolPolicy::default()
    };
    let caller = Holder::Caller { name: "ci".into() };
    let healthy = with_health(&TestClusterStatus::default(), Ok(()), now).expect("checked");
    let leased = transition(
        "c1",
        &healthy,
        &Request::Lease(caller.clone()),
        &policy,
        now,
    )
    .expect("leased")
    .expect("a change");
    let ended = transition(
        "c1",
        &leased,
        &Request::Finish(caller.clone()),
        &policy,
        now,
    )
    .expect("finished")
    .expect("a change");
    assert_eq!(ended.phase, Some(ClusterPhase::Vacant));
    assert_eq!(ended.conditions.len(), 1);
    assert_eq!(ended.conditions[0].status, "Unknown");
    let refused = transition("c1", &ended, &Request::Lease(caller.clone()), &policy, now);
    assert!(refused.is_err(), "not leased before its check: {refused:?}");
    let checked = with_health(&ended, Ok(()), now).expect("checked again");
    assert!(transition("c1", &checked, &Request::Lease(caller), &policy, now).is_ok());
    // A pool without a check leaves the condition alone.
    let plain = transition(
        "c1",
        &leased,
        &Request::Finish(Holder::Caller { name: "ci".into() }),
        &PoolPolicy::default(),
        now,
    )
    .expect("finished")
    .expect("a change");
    assert_eq!(plain.conditions[0].status, "True");
}

#[test]
fn a_cluster_never_checked_waits_for_its_first_check() {
    let policy = PoolPolicy::default();
    let fresh = TestClusterStatus::default();
    let marked = before_first_check(&fresh, now()).expect("marked");
    assert_eq!(marked.conditions.len(), 1);
    assert_eq!(
        (
            marked.conditions[0].status.as_str(),
            marked.conditions[0].reason.as_str()
        ),
        ("Unknown", "Checking")
    );
    assert!(unhealthy(&marked).is_some(), "not leasable while checked");
    let refused = transition("c1", &marked, &Request::Lease(job("u1")), &policy, now());
    assert!(
        refused.is_err(),
        "not leased before its first check: {refused:?}"
    );
    assert_eq!(before_first_check(&marked, now()), None, "marked once");
    // Once checked, whatever the result, it is never marked again.
    for result in [Ok(()), Err("connection refused".to_string())] {
        let checked = with_health(&marked, result, now()).expect("checked");
        assert_eq!(before_first_check(&checked, now()), None);
    }
}
