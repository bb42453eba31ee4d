//! The TestCluster lease as a state machine: every transition a cluster can take, asked for by
//! a job (the declarative path), by the cimaster-compatible HTTP API, or by time, as one pure
//! function that says what the status becomes or why the request is refused.
//!
//! Phases: Vacant -> Leased (a job, until it ends; or a `getvacant` caller, until `finishtest`
//! or the pool's longest lease) -> Held (a caller's lease turned into a person's hold, until
//! `releasecluster` or its expiry) -> Cleaning (when the pool has a clean-up job) -> Vacant.
//! Vacant <-> Disabled; a failed clean-up disables the cluster with its reason.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::{ClusterLease, ClusterPhase, TestClusterStatus};

/// The condition a failed health check sets to "False"; such a cluster is never leased. In a
/// pool with a health check, a lease's end sets it to "Unknown" until the next check, so every
/// lease follows a check.
pub const HEALTHY: &str = "Healthy";

/// Who asks for a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A ProwJob, for as long as it runs.
    Job {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its UID: a recreated job of the same name is another holder.
        uid: String,
    },
    /// A caller of `getvacant`, until it calls `finishtest` or the lease runs out.
    Caller {
        /// Who called: the authenticated user, or the `job` and `build` it gave.
        name: String,
    },
}

impl Holder {
    /// How the lease records the holder: `namespace/name` of a job, the caller's name.
    pub fn recorded_as(&self) -> String {
        match self {
            Holder::Job {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
            Holder::Caller { name } => name.clone(),
        }
    }

    fn uid(&self) -> Option<&str> {
        match self {
            Holder::Job { uid, .. } => Some(uid),
            Holder::Caller { .. } => None,
        }
    }

    /// Whether `lease` is this holder's.
    fn holds(&self, lease: &ClusterLease) -> bool {
        lease.holder == self.recorded_as() && lease.holder_uid.as_deref() == self.uid()
    }
}

/// The pool's settings the transitions read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPolicy {
    /// The hold a `holdcluster` without a duration gets.
    pub default_hold: Duration,
    /// The longest hold.
    pub max_hold: Duration,
    /// The longest a `getvacant` lease lives without `finishtest`.
    pub max_caller_lease: Duration,
    /// Whether a clean-up job runs after each lease (the cluster is Cleaning meanwhile).
    pub cleanup: bool,
    /// The health check of vacant clusters, when the pool turns it on.
    pub health: Option<HealthPolicy>,
}

/// How a pool checks its clusters' health: `/readyz` through each one's kubeconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How long `/readyz` may take.
    pub timeout: Duration,
    /// How often a vacant cluster is checked again (a failing one, and a healthy one that may
    /// have broken while idle).
    pub interval: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(60),
        }
    }
}

impl Default for PoolPolicy {
    fn default() -> Self {
        Self {
            default_hold: Duration::from_secs(6 * 3600),
            max_hold: Duration::from_secs(24 * 3600),
            max_caller_lease: Duration::from_secs(6 * 3600),
            cleanup: false,
            health: None,
        }
    }
}

/// What is asked of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Lease it (a job's lease before its pod starts, or `getvacant`).
    Lease(Holder),
    /// The holder is done with it (its job ended, or `finishtest`).
    Finish(Holder),
    /// Turn a caller's lease into a person's hold (`holdcluster`); `None` for the default.
    Hold {
        /// The caller whose lease it is.
        caller: String,
        /// The person holding it.
        by: String,
        /// How long.
        duration: Option<Duration>,
    },
    /// End a hold (`releasecluster`).
    Release,
    /// Time passed: end a hold or a caller's lease whose time is up.
    Expire,
    /// End a job's lease whose job is gone (deleted, or ended while the operator was away).
    Reclaim {
        /// UID of the job the lease names.
        job_uid: String,
    },
    /// The clean-up job succeeded.
    CleanedUp,
    /// Take the cluster out of the pool (`disablecluster`, or a failed clean-up job).
    Disable {
        /// Why, for people.
        reason: String,
    },
    /// Put it back (`enablecluster`).
    Enable,
}

/// Why a request was refused, for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What `request` does to a cluster named `cluster` whose status is `status`, at `now`: the new
/// status, `None` when nothing changes, or why it is refused. Every write of the result must
/// carry the resourceVersion the status was read at.
pub fn transition(
    cluster: &str,
    status: &TestClusterStatus,
    request: &Request,
    policy: &PoolPolicy,
    now: Timestamp,
) -> Result<Option<TestClusterStatus>, Refused> {
    let phase = status.phase.unwrap_or(ClusterPhase::Vacant);
    let lease = status.lease.as_ref();
    let refuse = |why: String| Err(Refused(format!("cluster {cluster} {why}")));
    let held_by = || {
        lease.map_or_else(String::new, |l| match &l.until {
            Some(until) => format!("{} until {}", l.holder, until.0),
            None => l.holder.clone(),
        })
    };
    match (request, phase) {
        (Request::Lease(holder), ClusterPhase::Vacant) => {
            if let Some(why) = unhealthy(status) {
                return refuse(format!("failed its health check: {why}"));
            }
            let until = match holder {
                Holder::Job { .. } => None,
                Holder::Caller { .. } => Some(after(now, policy.max_caller_lease)),
            };
            Ok(Some(with_lease(
                status,
                ClusterPhase::Leased,
                ClusterLease {
                    holder: holder.recorded_as(),
                    holder_uid: holder.uid().map(str::to_string),
                    since: Time(now),
                    until,
                },
            )))
        }
        (Request::Lease(holder), ClusterPhase::Leased)
            if lease.is_some_and(|l| holder.holds(l)) =>
        {
            Ok(None)
        }
        (Request::Lease(_), _) => refuse(format!("is not vacant: {}", describe(phase, held_by()))),

        (Request::Finish(holder), ClusterPhase::Leased) => match lease {
            Some(l) if holder.holds(l) => Ok(Some(lease_ended(status, policy))),
            _ => refuse(format!(
                "is leased by {}, not by {}",
                held_by(),
                holder.recorded_as()
            )),
        },
        (Request::Finish(_), ClusterPhase::Held) => refuse(format!(
            "is held by {}: release it with releasecluster",
            held_by()
        )),
        (Request::Finish(_), _) => refuse(format!("is not leased: {}", describe(phase, held_by()))),

        (
            Request::Hold {
                caller,
                by,
                duration,
            },
            ClusterPhase::Leased,
        ) => {
            let duration = duration.unwrap_or(policy.default_hold);
            match lease {
                Some(l) if l.holder_uid.is_some() => refuse(format!(
                    "is leased to job {} until it ends; it cannot be held",
                    l.holder
                )),
                Some(l) if &l.holder != caller => {
                    refuse(format!("is leased by {}, not by {caller}", l.holder))
                }
                _ if duration > policy.max_hold => refuse(format!(
                    "cannot be held for {}: the pool allows at most {}",
                    hours(duration),
                    hours(policy.max_hold)
                )),
                _ => Ok(Some(with_lease(
                    status,
                    ClusterPhase::Held,
                    ClusterLease {
                        holder: by.clone(),
                        holder_uid: None,
                        since: Time(now),
                        until: Some(after(now, duration)),
                    },
                ))),
            }
        }
        (Request::Hold { .. }, _) => refuse(format!(
            "is not leased by a getvacant caller: {}",
            describe(phase, held_by())
        )),

        (Request::Release, ClusterPhase::Held) => Ok(Some(lease_ended(status, policy))),
        (Request::Release, _) => refuse(format!("is not held: {}", describe(phase, held_by()))),

        (Request::Expire, ClusterPhase::Held | ClusterPhase::Leased) => {
            let due = lease
                .and_then(|l| l.until.as_ref())
                .is_some_and(|until| until.0 <= now);
            Ok(due.then(|| lease_ended(status, policy)))
        }
        (Request::Expire, _) => Ok(None),

        (Request::Reclaim { job_uid }, ClusterPhase::Leased)
            if lease.is_some_and(|l| l.holder_uid.as_deref() == Some(job_uid.as_str())) =>
        {
            Ok(Some(lease_ended(status, policy)))
        }
        (Request::Reclaim { .. }, _) => Ok(None),

        (Request::CleanedUp, ClusterPhase::Cleaning) => Ok(Some(vacant(status))),
        (Request::CleanedUp, _) => Ok(None),

        (Request::Disable { reason }, ClusterPhase::Vacant | ClusterPhase::Cleaning) => {
            Ok(Some(TestClusterStatus {
                phase: Some(ClusterPhase::Disabled),
                lease: None,
                disabled_reason: Some(reason.clone()),
                cleanup_job: None,
                ..status.clone()
            }))
        }
        (Request::Disable { reason }, ClusterPhase::Disabled) => Ok((status
            .disabled_reason
            .as_deref()
            != Some(reason.as_str()))
        .then(|| TestClusterStatus {
            disabled_reason: Some(reason.clone()),
            ..status.clone()
        })),
        (Request::Disable { .. }, _) => refuse(format!(
            "is in use: {}; it can be disabled once it is released",
            describe(phase, held_by())
        )),

        (Request::Enable, ClusterPhase::Disabled) => Ok(Some(vacant(status))),
        (Request::Enable, ClusterPhase::Vacant) => Ok(None),
        (Request::Enable, _) => refuse(format!("is not disabled: {}", describe(phase, held_by()))),
    }
}

/// The status of a cluster whose health check gave `result` at `now`: its `Healthy` condition
/// True, or False with the reason; `None` when the condition already says so. The transition
/// time moves only when the condition's status changes.
pub fn with_health(
    status: &TestClusterStatus,
    result: Result<(), String>,
    now: Timestamp,
) -> Option<TestClusterStatus> {
    let (value, reason, message) = match result {
        Ok(()) => ("True", "ReadyzAnswered", "/readyz answered ok".to_string()),
        Err(why) => ("False", "ReadyzFailed", why),
    };
    let old = status.conditions.iter().find(|c| c.type_ == HEALTHY);
    if old.is_some_and(|c| c.status == value && c.message == message) {
        return None;
    }
    let since = match old {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != HEALTHY)
        .cloned()
        .collect();
    conditions.push(Condition {
        type_: HEALTHY.into(),
        status: value.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: None,
    });
    Some(TestClusterStatus {
        conditions,
        ..status.clone()
    })
}

/// The status of a cluster of a pool with a health check that was never checked (new, or its
/// pool just turned the check on): `Healthy` "Unknown", so that it is not leased before its
/// first check. `None` when it has a `Healthy` condition.
pub fn before_first_check(status: &TestClusterStatus, now: Timestamp) -> Option<TestClusterStatus> {
    if status.conditions.iter().any(|c| c.type_ == HEALTHY) {
        return None;
    }
    let mut conditions = status.conditions.clone();
    conditions.push(Condition {
        type_: HEALTHY.into(),
        status: "Unknown".into(),
        reason: "Checking".into(),
        message: "checked before its first lease".into(),
        last_transition_time: Time(now),
        observed_generation: None,
    });
    Some(TestClusterStatus {
        conditions,
        ..status.clone()
    })
}

/// Why a cluster cannot be leased for its health: its Healthy condition is False (the reason),
/// or Unknown (being checked).
pub fn unhealthy(status: &TestClusterStatus) -> Option<String> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == HEALTHY && c.status != "True")
        .map(|c| {
            if c.message.is_empty() {
                c.reason.clone()
            } else {
                c.message.clone()
            }
        })
}

fn with_lease(
    status: &TestClusterStatus,
    phase: ClusterPhase,
    lease: ClusterLease,
) -> TestClusterStatus {
    TestClusterStatus {
        phase: Some(phase),
        lease: Some(lease),
        disabled_reason: None,
        ..status.clone()
    }
}

/// A lease or hold ended: Cleaning when the pool cleans clusters after use, else Vacant; its
/// health unknown until checked again when the pool checks health.
fn lease_ended(status: &TestClusterStatus, policy: &PoolPolicy) -> TestClusterStatus {
    let mut ended = vacant(status);
    if policy.health.is_some() {
        ended.conditions.retain(|c| c.type_ != HEALTHY);
        ended.conditions.push(Condition {
            type_: HEALTHY.into(),
            status: "Unknown".into(),
            reason: "Checking".into(),
            message: "checked again before its next lease".into(),
            last_transition_time: status
                .lease
                .as_ref()
                .map_or_else(|| Time(Timestamp::UNIX_EPOCH), |l| l.since.clone()),
            observed_generation: None,
        });
    }
    if policy.cleanup {
        TestClusterStatus {
            phase: Some(ClusterPhase::Cleaning),
            ..ended
        }
    } else {
        ended
    }
}

/// Free to lease: no holder, no reason to be out of the pool, no clean-up under way;
/// conditions kept.
fn vacant(status: &TestClusterStatus) -> TestClusterStatus {
    TestClusterStatus {
        phase: Some(ClusterPhase::Vacant),
        lease: None,
        cleanup_job: None,
        disabled_reason: None,
        ..status.clone()
    }
}

fn describe(phase: ClusterPhase, holder: String) -> String {
    let phase = match phase {
        ClusterPhase::Vacant => "vacant",
        ClusterPhase::Leased => "leased",
        ClusterPhase::Held => "held",
        ClusterPhase::Cleaning => "being cleaned up",
        ClusterPhase::Disabled => "disabled",
    };
    if holder.is_empty() {
        format!("it is {phase}")
    } else {
        format!("it is {phase} by {holder}")
    }
}

/// `now` plus `duration`, rounded up to a whole second: a stored time keeps whole seconds only,
/// and a hold must never end before its duration.
fn after(now: Timestamp, duration: Duration) -> Time {
    let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    let end = now.saturating_add(duration).unwrap_or(Timestamp::MAX);
    let fraction = end.subsec_nanosecond();
    if fraction == 0 {
        return Time(end);
    }
    let rest = SignedDuration::from_nanos(i64::from(1_000_000_000 - fraction));
    Time(end.saturating_add(rest).unwrap_or(end))
}

fn hours(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests;
