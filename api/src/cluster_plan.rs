//! Every decision of a TestCluster reconcile as one pure function: from what the reconcile
//! fetched (the cluster as last written, its pool's settings, whether its holder still runs,
//! its clean-up job) to what it writes (finalizer, status at the version it was read at,
//! clean-up job), what it checks (`/readyz`), whose kubeconfig copies it deletes, whether it
//! wakes the pool's waiting jobs, the Event, and when to look again.
//!
//! The ProwJob side takes and ends its jobs' leases (`crate::plan`); this one ends what time or
//! a vanished job ends, runs clean-ups and health checks, and keeps the finalizer that makes a
//! delete wait for the lease to end.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::conditions::without_failure;
use crate::lease::{before_first_check, transition, with_health, PoolPolicy, Request, HEALTHY};
use crate::pool::leasable;
use crate::testcluster::SecretKeyRef;
use crate::testclusterpool::cleanup_job;
use crate::{ClusterPhase, ProwJob, ProwJobState, TestCluster, TestClusterStatus};

/// The finalizer every TestCluster carries: a delete waits until the cluster is not leased or
/// held.
pub const FINALIZER: &str = "prow-operator.dev/lease";

/// How often a cluster leased to a job checks that its job still exists (a job's deletion or
/// end wakes it sooner).
pub const HOLDER_RECHECK: Duration = Duration::from_secs(60);

/// How often a Cleaning cluster looks at its clean-up job by itself (the job's end wakes it
/// sooner).
pub const CLEANUP_RECHECK: Duration = Duration::from_secs(30);

/// What a TestCluster reconcile fetched.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The cluster: the cached copy, or this process's own later write.
    pub cluster: &'a TestCluster,
    /// Its pool's settings.
    pub policy: &'a PoolPolicy,
    /// Whether the job a Leased cluster's lease names still exists and has not ended.
    pub holder_alive: bool,
    /// Its pool's `cleanupJob` template, if the pool has one.
    pub cleanup_template: Option<&'a serde_json::Value>,
    /// The clean-up job this process made for the cluster whose name did not reach its status
    /// yet (a lost race), so it is not made twice.
    pub cleanup_made: Option<&'a str>,
    /// The clean-up job the status names, as found.
    pub cleanup_job: CleanupJob<'a>,
    /// The time of the decision.
    pub now: Timestamp,
}

/// The clean-up job a Cleaning cluster's status names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupJob<'a> {
    /// The status names none (or the cluster is not Cleaning).
    None,
    /// It names one that does not exist.
    Missing,
    /// It has not ended.
    Running,
    /// It ended.
    Ended {
        /// How.
        state: ProwJobState,
        /// Its description.
        description: &'a str,
    },
}

/// A change of the cluster's finalizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finalizer {
    /// Add [`FINALIZER`].
    Add,
    /// Remove it: the cluster is being deleted and nothing holds it.
    Remove,
}

/// An Event on the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Warning, or Normal.
    pub warning: bool,
    /// The Event's reason.
    pub reason: &'static str,
    /// What happened, for people.
    pub note: String,
    /// The action it reports.
    pub action: &'static str,
}

/// When to reconcile again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// When the cluster (or something that wakes it) changes.
    AwaitChange,
    /// After this long, or sooner on a change.
    After(Duration),
}

/// A `/readyz` check of the cluster to run, whose result [`after_health_check`] turns into the
/// status to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Secret (in the cluster's namespace) holding its kubeconfig.
    pub secret: SecretKeyRef,
    /// How long `/readyz` may take.
    pub timeout: Duration,
}

/// What a TestCluster reconcile does, in this order: finalizer, clean-up job (then
/// [`cleanup_started`] says what to write), status, health check (then [`after_health_check`]),
/// kubeconfig copies, Event, wake-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The finalizer change, if any.
    pub finalizer: Option<Finalizer>,
    /// A clean-up job to create.
    pub start_cleanup: Option<ProwJob>,
    /// The status to write, at the resourceVersion the cluster was read at.
    pub status: Option<TestClusterStatus>,
    /// A health check to run.
    pub check_health: Option<HealthCheck>,
    /// Delete the kubeconfig copies made for the job with this UID (its lease was reclaimed).
    pub delete_copies_of: Option<String>,
    /// The Event to publish once the writes are done.
    pub event: Option<ClusterEvent>,
    /// Wake as many of the pool's waiting jobs as it has leasable clusters.
    pub wake_pool: bool,
    /// When to look again.
    pub next: Next,
}

impl Plan {
    fn wait() -> Self {
        Self {
            finalizer: None,
            start_cleanup: None,
            status: None,
            check_health: None,
            delete_copies_of: None,
            event: None,
            wake_pool: false,
            next: Next::AwaitChange,
        }
    }

    fn after(next: Duration) -> Self {
        Self {
            next: Next::After(next),
            ..Self::wait()
        }
    }

    fn write(status: TestClusterStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::wait()
        }
    }
}

fn event(warning: bool, reason: &'static str, note: String, action: &'static str) -> ClusterEvent {
    ClusterEvent {
        warning,
        reason,
        note,
        action,
    }
}

/// Decides the reconcile of one cluster.
pub fn plan(f: &Facts<'_>) -> Plan {
    let cluster = f.cluster;
    let status = cluster.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(ClusterPhase::Vacant);
    let in_use = matches!(phase, ClusterPhase::Leased | ClusterPhase::Held);
    let deleting = cluster.metadata.deletion_timestamp.is_some();
    let finalized = cluster
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    match (deleting, finalized) {
        // The finalizer's write brings the cluster back here.
        (false, false) => {
            return Plan {
                finalizer: Some(Finalizer::Add),
                ..Plan::wait()
            }
        }
        (true, true) if !in_use => {
            return Plan {
                finalizer: Some(Finalizer::Remove),
                ..Plan::wait()
            }
        }
        // Deleted while in use: it goes when its lease or hold ends (that write wakes it).
        (true, _) if in_use => {}
        (true, _) => return Plan::wait(),
        (false, true) => {}
    }
    if let Some(conditions) = without_failure(&status.conditions) {
        // A failed reconcile marked it; this one goes through.
        return Plan::write(TestClusterStatus {
            conditions,
            ..status
        });
    }
    if phase == ClusterPhase::Cleaning {
        return clean_up(f, &status);
    }
    let can_check = f.policy.health.is_some() && cluster.spec.kubeconfig_secret_ref.is_some();
    let waits_for_check = status
        .conditions
        .iter()
        .any(|c| c.type_ == HEALTHY && c.status == "Unknown");
    if phase == ClusterPhase::Vacant && waits_for_check && !can_check {
        // Its pool no longer checks health (or it has no kubeconfig to check with).
        let mut cleared = status;
        cleared.conditions.retain(|c| c.type_ != HEALTHY);
        return Plan::write(cleared);
    }
    if status.phase.is_none() && !deleting {
        // A new cluster says Vacant (`kubectl get testclusters` shows it), and, in a pool with
        // a health check, that it is checked before its first lease.
        let vacant = TestClusterStatus {
            phase: Some(ClusterPhase::Vacant),
            ..status
        };
        let marked = can_check
            .then(|| before_first_check(&vacant, f.now))
            .flatten();
        return Plan::write(marked.unwrap_or(vacant));
    }
    if let (ClusterPhase::Vacant, false, Some(health), Some(secret), true) = (
        phase,
        deleting,
        f.policy.health,
        cluster.spec.kubeconfig_secret_ref.as_ref(),
        can_check,
    ) {
        // Checked when it becomes vacant and every interval after; a failing one is skipped
        // until it answers again. One never checked is first marked as being checked, so no
        // job leases it before its check (the write brings it back here).
        if let Some(marked) = before_first_check(&status, f.now) {
            return Plan::write(marked);
        }
        return Plan {
            check_health: Some(HealthCheck {
                secret: secret.clone(),
                timeout: health.timeout,
            }),
            ..Plan::after(health.interval)
        };
    }
    if leasable(cluster, &cluster.spec.pool) {
        return Plan {
            wake_pool: true,
            ..Plan::wait()
        };
    }
    let Some(lease) = status.lease.as_ref() else {
        return Plan::wait();
    };
    let request = match (phase, lease.holder_uid.as_deref()) {
        (ClusterPhase::Leased, Some(_)) if f.holder_alive => return Plan::after(HOLDER_RECHECK),
        (ClusterPhase::Leased, Some(uid)) => Request::Reclaim {
            job_uid: uid.to_string(),
        },
        _ => match lease.until.as_ref() {
            Some(until) if until.0 > f.now => {
                let left = Duration::try_from(until.0.duration_since(f.now)).unwrap_or_default();
                return Plan::after(left);
            }
            Some(_) => Request::Expire,
            None => return Plan::wait(),
        },
    };
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let Ok(Some(new)) = transition(name, &status, &request, f.policy, f.now) else {
        return Plan::wait();
    };
    let (reason, note, delete_copies_of) = match request {
        Request::Reclaim { job_uid } => (
            "Reclaimed",
            format!("Lease of {} ended: the job is gone.", lease.holder),
            Some(job_uid),
        ),
        _ => (
            "Expired",
            format!("The hold or lease of {} ran out.", lease.holder),
            None,
        ),
    };
    Plan {
        delete_copies_of,
        event: Some(event(false, reason, note, "Release")),
        ..Plan::write(new)
    }
}

/// A Cleaning cluster: its pool's clean-up job is started once for this clean-up (its name
/// goes into `status.cleanupJob`); when it ends the cluster is Vacant (success) or Disabled
/// with the reason (any other end).
fn clean_up(f: &Facts<'_>, status: &TestClusterStatus) -> Plan {
    let Some(name) = status.cleanup_job.as_deref() else {
        let Some(template) = f.cleanup_template else {
            let note = "The pool has no clean-up job any more.".to_string();
            return finish_cleanup(f, status, Request::CleanedUp, note);
        };
        if let Some(made) = f.cleanup_made {
            return Plan {
                status: Some(recorded(status, made)),
                ..Plan::after(CLEANUP_RECHECK)
            };
        }
        return match cleanup_job(template, f.cluster) {
            Ok(job) => Plan {
                start_cleanup: Some(job),
                ..Plan::after(CLEANUP_RECHECK)
            },
            Err(why) => {
                let reason = format!("its pool's clean-up job cannot be made: {why}");
                finish_cleanup(f, status, Request::Disable { reason }, String::new())
            }
        };
    };
    let request = match f.cleanup_job {
        CleanupJob::None | CleanupJob::Missing => Request::Disable {
            reason: format!("clean-up job {name} is gone before it ended"),
        },
        CleanupJob::Running => return Plan::after(CLEANUP_RECHECK),
        CleanupJob::Ended {
            state: ProwJobState::Success,
            ..
        } => Request::CleanedUp,
        CleanupJob::Ended { state, description } => Request::Disable {
            reason: format!("clean-up job {name} ended {state:?}: {description}"),
        },
    };
    let note = format!("Clean-up job {name} succeeded.");
    finish_cleanup(f, status, request, note)
}

/// The end of a clean-up (Vacant, or Disabled with the reason, which is then the Event's note;
/// `note` is the note of a success).
fn finish_cleanup(
    f: &Facts<'_>,
    status: &TestClusterStatus,
    request: Request,
    note: String,
) -> Plan {
    let name = f.cluster.metadata.name.as_deref().unwrap_or_default();
    let policy = PoolPolicy::default();
    let Ok(Some(new)) = transition(name, status, &request, &policy, f.now) else {
        return Plan::wait();
    };
    let event = match request {
        Request::Disable { reason } => event(true, "CleanupFailed", reason, "Cleanup"),
        _ => event(false, "CleanedUp", note, "Cleanup"),
    };
    Plan {
        event: Some(event),
        ..Plan::write(new)
    }
}

fn recorded(status: &TestClusterStatus, job: &str) -> TestClusterStatus {
    TestClusterStatus {
        cleanup_job: Some(job.to_string()),
        ..status.clone()
    }
}

/// What to write once the clean-up job the plan asked for was created as `job`: its name in
/// the status, and the Event that says it started.
pub fn cleanup_started(status: &TestClusterStatus, job: &str) -> (TestClusterStatus, ClusterEvent) {
    let note = format!("Clean-up job {job} started.");
    (
        recorded(status, job),
        event(false, "CleanupStarted", note, "Cleanup"),
    )
}

/// What a health check's `result` at `now` changes: the status to write and its Event when
/// the `Healthy` condition changes, and whether the pool's waiting jobs are woken (a healthy
/// cluster can be leased).
pub fn after_health_check(
    status: &TestClusterStatus,
    result: Result<(), String>,
    now: Timestamp,
) -> (Option<(TestClusterStatus, ClusterEvent)>, bool) {
    let healthy = result.is_ok();
    let written = with_health(status, result.clone(), now).map(|new| {
        let event = match result {
            Ok(()) => event(
                false,
                "HealthCheckPassed",
                "/readyz answered.".into(),
                "HealthCheck",
            ),
            Err(why) => event(true, "HealthCheckFailed", why, "HealthCheck"),
        };
        (new, event)
    });
    (written, healthy)
}

#[cfg(test)]
mod tests;
