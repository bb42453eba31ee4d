use serde_json::{json, Value};

use super::*;
use crate::lease::HealthPolicy;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

/// A cluster of pool `p` with `status`, carrying the finalizer unless `meta` says otherwise.
fn cluster(status: Value, meta: Value) -> TestCluster {
    let mut object = json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c1", "namespace": "ns", "finalizers": [FINALIZER]},
        "spec": {"pool": "p", "kubeconfigSecretRef": {"name": "c1-kubeconfig"}},
        "status": status,
    });
    for (k, v) in meta.as_object().expect("meta") {
        object["metadata"][k] = v.clone();
    }
    serde_json::from_value(object).expect("cluster")
}

fn facts<'a>(cluster: &'a TestCluster, policy: &'a PoolPolicy) -> Facts<'a> {
    Facts {
        cluster,
        policy,
        holder_alive: false,
        cleanup_template: None,
        cleanup_made: None,
        cleanup_job: CleanupJob::None,
        now: now(),
    }
}

fn checked() -> PoolPolicy {
    PoolPolicy {
        health: Some(HealthPolicy::default()),
        ..PoolPolicy::default()
    }
}

fn phase(plan: &Plan) -> Option<ClusterPhase> {
    plan.status.as_ref().and_then(|s| s.phase)
}

const LEASED_TO_JOB: &str = r#"{"phase": "Leased", "lease": {"holder": "ci/e2e-1", "holderUid": "u1", "since": "2024-05-01T11:00:00Z"}}"#;
const HOLD_DUE: &str = r#"{"phase": "Held", "lease": {"holder": "alice", "since": "2024-05-01T05:00:00Z", "until": "2024-05-01T12:00:00Z"}}"#;
const HELD: &str = r#"{"phase": "Held", "lease": {"holder": "alice", "since": "2024-05-01T11:00:00Z", "until": "2024-05-01T13:00:00Z"}}"#;

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

/// The decisions that need no clean-up or health facts, one row each.
#[test]
fn plan_table() {
    struct Row {
        case: &'static str,
        status: Value,
        meta: Value,
        holder_alive: bool,
        finalizer: Option<Finalizer>,
        phase: Option<ClusterPhase>,
        reason: Option<&'static str>,
        delete_copies_of: Option<&'static str>,
        wake_pool: bool,
        next: Next,
    }
    let row = |case, status, meta| Row {
        case,
        status,
        meta,
        holder_alive: false,
        finalizer: None,
        phase: None,
        reason: None,
        delete_copies_of: None,
        wake_pool: false,
        next: Next::AwaitChange,
    };
    let rows = vec![
        Row {
            finalizer: Some(Finalizer::Add),
            ..row(
                "a cluster without the finalizer gets it first",
                json!({}),
                json!({"finalizers": []}),
            )
        },
        Row {
            phase: Some(ClusterPhase::Vacant),
            ..row("a new cluster says Vacant", json!(null), json!({}))
        },
        Row {
            wake_pool: true,
            ..row(
                "a vacant cluster wakes its pool's waiting jobs",
                json!({"phase": "Vacant"}),
                json!({}),
            )
        },
        Row {
            next: Next::After(HOLDER_RECHECK),
            holder_alive: true,
            ..row(
                "a lease whose job runs is looked at again later",
                value(LEASED_TO_JOB),
                json!({}),
            )
        },
        Row {
            phase: Some(ClusterPhase::Vacant),
            reason: Some("Reclaimed"),
            delete_copies_of: Some("u1"),
            ..row(
                "a lease whose job is gone is reclaimed with its kubeconfig copies",
                value(LEASED_TO_JOB),
                json!({}),
            )
        },
        Row {
            phase: Some(ClusterPhase::Vacant),
            reason: Some("Expired"),
            ..row("a hold whose time is up ends", value(HOLD_DUE), json!({}))
        },
        Row {
            next: Next::After(Duration::from_secs(3600)),
            ..row(
                "a hold with time left is looked at when it runs out",
                value(HELD),
                json!({}),
            )
        },
        Row {
            ..row(
                "a disabled cluster waits",
                json!({"phase": "Disabled", "disabledReason": "x"}),
                json!({}),
            )
        },
        Row {
            finalizer: Some(Finalizer::Remove),
            ..row(
                "a vacant cluster being deleted lets go",
                json!({"phase": "Vacant"}),
                json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            )
        },
        Row {
            next: Next::After(HOLDER_RECHECK),
            holder_alive: true,
            ..row(
                "a leased cluster being deleted keeps its finalizer while its job runs",
                value(LEASED_TO_JOB),
                json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            )
        },
        Row {
            ..row(
                "a deleted cluster without the finalizer is left to go",
                json!({"phase": "Vacant"}),
                json!({"deletionTimestamp": "2024-05-01T11:59:00Z", "finalizers": ["other"]}),
            )
        },
    ];
    let policy = PoolPolicy::default();
    for r in rows {
        let c = cluster(r.status, r.meta);
        let plan = plan(&Facts {
            holder_alive: r.holder_alive,
            ..facts(&c, &policy)
        });
        assert_eq!(plan.finalizer, r.finalizer, "{}", r.case);
        assert_eq!(phase(&plan), r.phase, "{}", r.case);
        assert_eq!(
            plan.event.as_ref().map(|e| e.reason),
            r.reason,
            "{}",
            r.case
        );
        assert_eq!(
            plan.delete_copies_of.as_deref(),
            r.delete_copies_of,
            "{}",
            r.case
        );
        assert_eq!(plan.wake_pool, r.wake_pool, "{}", r.case);
        assert_eq!(plan.next, r.next, "{}", r.case);
        assert_eq!(plan.check_health, None, "{}", r.case);
        assert_eq!(plan.start_cleanup, None, "{}", r.case);
    }
}

#[test]
fn a_new_cluster_of_a_checked_pool_is_vacant_and_waits_for_its_first_check() {
    let policy = checked();
    let c = cluster(json!(null), json!({}));
    let plan = plan(&facts(&c, &policy));
    let status = plan.status.expect("a status");
    assert_eq!(status.phase, Some(ClusterPhase::Vacant));
    assert!(crate::lease::unhealthy(&status).is_some(), "{status:?}");
    assert!(!plan.wake_pool);
}

#[test]
fn a_vacant_cluster_of_a_checked_pool_is_checked_every_interval_and_a_result_is_written() {
    let policy = checked();
    let marked = json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "Unknown",
        "reason": "Checking", "message": "m", "lastTransitionTime": "2024-05-01T11:00:00Z"}]});
    let c = cluster(marked, json!({}));
    let plan = plan(&facts(&c, &policy));
    assert_eq!(
        plan.check_health,
        Some(HealthCheck {
            secret: c.spec.kubeconfig_secret_ref.clone().expect("secret"),
            timeout: HealthPolicy::default().timeout,
        })
    );
    assert_eq!(plan.next, Next::After(HealthPolicy::default().interval));
    assert_eq!(plan.status, None);

    let status = c.status.clone().expect("status");
    let (written, wake) = after_health_check(&status, Ok(()), now());
    let (healthy, event) = written.expect("the condition changes");
    assert!(wake);
    assert!(crate::lease::unhealthy(&healthy).is_none());
    assert_eq!((event.reason, event.warning), ("HealthCheckPassed", false));
    let (again, wake) = after_health_check(&healthy, Ok(()), now());
    assert!(
        again.is_none() && wake,
        "nothing to write, the pool is woken"
    );
    let (failed, wake) = after_health_check(&healthy, Err("refused".into()), now());
    let (status, event) = failed.expect("the condition changes");
    assert!(!wake);
    assert_eq!(crate::lease::unhealthy(&status).as_deref(), Some("refused"));
    assert_eq!((event.reason, event.warning), ("HealthCheckFailed", true));
}

#[test]
fn a_cluster_waiting_for_a_check_its_pool_no_longer_runs_is_cleared() {
    let policy = PoolPolicy::default();
    let marked = json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "Unknown",
        "reason": "Checking", "message": "m", "lastTransitionTime": "2024-05-01T11:00:00Z"}]});
    let c = cluster(marked, json!({}));
    let plan = plan(&facts(&c, &policy));
    let status = plan.status.expect("a status");
    assert!(status.conditions.is_empty(), "{status:?}");
}

/// A clean-up, step by step: started once, its name recorded, waited for, and its end.
#[test]
fn cleanup_table() {
    let template = json!({"type": "periodic", "job": "wipe",
        "pod_spec": {"containers": [{"image": "wiper"}]}});
    let cleaning = json!({"phase": "Cleaning"});
    let recorded = json!({"phase": "Cleaning", "cleanupJob": "c1-cleanup-x"});
    let policy = PoolPolicy::default();

    let c = cluster(cleaning.clone(), json!({}));
    let started = plan(&Facts {
        cleanup_template: Some(&template),
        ..facts(&c, &policy)
    });
    let job = started.start_cleanup.expect("a clean-up job");
    assert_eq!(job.spec.namespace, "ns");
    assert_eq!(started.next, Next::After(CLEANUP_RECHECK));
    let (status, event) = cleanup_started(c.status.as_ref().expect("status"), "c1-cleanup-x");
    assert_eq!(status.cleanup_job.as_deref(), Some("c1-cleanup-x"));
    assert_eq!(event.reason, "CleanupStarted");

    let again = plan(&Facts {
        cleanup_template: Some(&template),
        cleanup_made: Some("c1-cleanup-x"),
        ..facts(&c, &policy)
    });
    assert_eq!(again.start_cleanup, None, "never made twice");
    assert_eq!(
        again.status.and_then(|s| s.cleanup_job).as_deref(),
        Some("c1-cleanup-x")
    );

    let gone = plan(&facts(&c, &policy));
    assert_eq!(
        phase(&gone),
        Some(ClusterPhase::Vacant),
        "no template any more"
    );
    assert_eq!(gone.event.map(|e| e.reason), Some("CleanedUp"));

    let bad = json!("not a job spec");
    let broken = plan(&Facts {
        cleanup_template: Some(&bad),
        ..facts(&c, &policy)
    });
    assert_eq!(phase(&broken), Some(ClusterPhase::Disabled));
    assert!(broken
        .event
        .is_some_and(|e| e.warning && e.note.contains("cannot be made")));

    let c = cluster(recorded, json!({}));
    let cases = [
        (CleanupJob::Running, None, None),
        (
            CleanupJob::Missing,
            Some(ClusterPhase::Disabled),
            Some("is gone before it ended"),
        ),
        (
            CleanupJob::Ended {
                state: ProwJobState::Success,
                description: "ok",
            },
            Some(ClusterPhase::Vacant),
            Some("succeeded"),
        ),
        (
            CleanupJob::Ended {
                state: ProwJobState::Failure,
                description: "exit 1",
            },
            Some(ClusterPhase::Disabled),
            Some("ended Failure: exit 1"),
        ),
    ];
    for (job, want, note) in cases {
        let plan = plan(&Facts {
            cleanup_template: Some(&template),
            cleanup_job: job,
            ..facts(&c, &policy)
        });
        assert_eq!(phase(&plan), want, "{job:?}");
        assert_eq!(
            plan.event
                .as_ref()
                .map(|e| e.note.contains(note.unwrap_or_default())),
            note.map(|_| true),
            "{job:?}: {:?}",
            plan.event
        );
        if want.is_none() {
            assert_eq!(plan.next, Next::After(CLEANUP_RECHECK));
        }
    }
}

#[test]
fn a_cluster_a_failed_reconcile_marked_is_cleared_by_the_next_one() {
    let marked = json!({"phase": "Vacant", "conditions": [{"type": "Reconciled", "status": "False",
        "reason": "ReconcileError", "message": "forbidden", "lastTransitionTime": "2024-05-01T11:00:00Z"}]});
    let policy = PoolPolicy::default();
    let c = cluster(marked, json!({}));
    let plan = plan(&facts(&c, &policy));
    let status = plan.status.expect("a status");
    assert!(status.conditions.is_empty(), "{status:?}");
    assert_eq!(status.phase, Some(ClusterPhase::Vacant));
}
