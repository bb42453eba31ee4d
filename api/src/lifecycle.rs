//! What happens next to a ProwJob, given its pod and the time: upstream plank's state machine
//! as one pure function.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::duration::LONGEST_TIMEOUT;
use crate::labels;
use crate::pod_view::PodView;
use crate::{ProwJob, ProwJobAgent, ProwJobState};

/// Pod timeouts; upstream's defaults, overridable globally and per job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A scheduled pod that is not running yet.
    pub pending: Duration,
    /// A pod with no node yet, measured from its creation.
    pub unscheduled: Duration,
    /// A running pod, measured from its start.
    pub running: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(10 * 60),
            unscheduled: Duration::from_secs(5 * 60),
            running: Duration::from_secs(48 * 3600),
        }
    }
}

impl Timeouts {
    /// These timeouts with the job's `decoration_config` overrides applied; an override that
    /// does not parse is ignored and one beyond [`LONGEST_TIMEOUT`] is cut to it (the webhook
    /// refuses both, but a job stored while it was off must not overflow a timer).
    pub fn for_job(self, job: &ProwJob) -> Self {
        let Some(dc) = job.spec.decoration_config.as_ref() else {
            return self;
        };
        let pick = |o: &Option<String>, d| {
            o.as_deref()
                .and_then(|t| crate::duration::parse(t).ok())
                .map_or(d, |t| t.min(LONGEST_TIMEOUT))
        };
        Self {
            pending: pick(&dc.pod_pending_timeout, self.pending),
            unscheduled: pick(&dc.pod_unscheduled_timeout, self.unscheduled),
            running: pick(&dc.pod_running_timeout, self.running),
        }
    }
}

/// Settings of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Pod timeouts before per-job overrides.
    pub timeouts: Timeouts,
    /// How often a lost pod is recreated before the job errors.
    pub max_revivals: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            timeouts: Timeouts::default(),
            max_revivals: 3,
        }
    }
}

/// The next step for a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not this operator's job, or nothing to do until something changes.
    Idle,
    /// Nothing to do now; look again after this long (a timeout comes due).
    WaitFor(Duration),
    /// Create the job's pod, if the concurrency limits allow it.
    Start,
    /// The job's pod exists but the job does not say so (the operator stopped between creating
    /// the pod and writing the status): record it as pending.
    Adopt,
    /// Recreate the pod of a pending job whose lost pod was removed (revival).
    Restart,
    /// Delete a pod that is not this job's current one: left by a deleted job of the same name,
    /// or the lost pod of a revival whose deletion did not happen.
    DeleteStalePod,
    /// Recreate a lost pod: count the revival, then delete the pod.
    Revive {
        /// Why, for the job's description.
        description: String,
    },
    /// End the job.
    Finish {
        /// Its final state.
        state: ProwJobState,
        /// Why, for the job's description.
        description: String,
        /// Whether its pod is deleted (timeouts, aborts, evictions).
        delete_pod: bool,
    },
}

fn finish(state: ProwJobState, description: impl Into<String>, delete_pod: bool) -> Step {
    Step::Finish {
        state,
        description: description.into(),
        delete_pod,
    }
}

/// The pod's UID annotation for its job, if any.
fn pod_job_uid(pod: &PodView) -> Option<&str> {
    pod.job_uid()
}

/// Decides the next step for `job` whose pod (same name, in the job's pod namespace) is `pod`.
pub fn decide(job: &ProwJob, pod: Option<&PodView>, now: Timestamp, policy: &Policy) -> Step {
    if job.spec.agent != Some(ProwJobAgent::Kubernetes) {
        return Step::Idle;
    }
    if job.is_complete() {
        // An abort or a timeout writes the final state, then deletes the pod; if the operator
        // stopped in between, the pod still runs and is deleted now.
        let stopped = matches!(job.state(), ProwJobState::Aborted | ProwJobState::Error);
        return match pod {
            Some(p)
                if stopped && is_unfinished(p) && pod_job_uid(p) == job.metadata.uid.as_deref() =>
            {
                Step::DeleteStalePod
            }
            _ => Step::Idle,
        };
    }
    let status = job.status.clone().unwrap_or_default();
    let ours = |p: &&PodView| pod_job_uid(p) == job.metadata.uid.as_deref();
    let state = job.state();
    match state {
        ProwJobState::Scheduling => Step::Idle,
        ProwJobState::Aborted => {
            let description = if status.description.is_empty() {
                "Job aborted.".to_string()
            } else {
                status.description
            };
            finish(ProwJobState::Aborted, description, pod.is_some())
        }
        ProwJobState::Success | ProwJobState::Failure | ProwJobState::Error => {
            // A final state without completionTime: complete it as it stands.
            finish(state, status.description, false)
        }
        ProwJobState::Triggered => match pod {
            None => Step::Start,
            Some(p) if ours(&p) => Step::Adopt,
            Some(_) => Step::DeleteStalePod,
        },
        ProwJobState::Pending => {
            let awaiting_revival = status.pod_name.is_empty();
            match pod {
                None if awaiting_revival => Step::Restart,
                None => finish(ProwJobState::Error, "Pod got deleted unexpectedly", false),
                Some(p) if !ours(&p) => Step::DeleteStalePod,
                // Awaiting revival: the lost pod must go first; a healthy pod of ours is the
                // new one, whose name the job does not record yet.
                Some(p) if awaiting_revival => {
                    if p.metadata.deletion_timestamp.is_some() {
                        Step::WaitFor(Duration::from_secs(1))
                    } else if lost_how(p).is_some() {
                        Step::DeleteStalePod
                    } else {
                        Step::Adopt
                    }
                }
                Some(p) => follow_pod(job, p, now, policy),
            }
        }
    }
}

/// A pending job's step, read off its pod.
fn follow_pod(job: &ProwJob, pod: &PodView, now: Timestamp, policy: &Policy) -> Step {
    let status = &pod.status;
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let timeouts = policy.timeouts.for_job(job);

    if let Some(why) = lost_how(pod) {
        return lost(job, why, policy);
    }

    match phase {
        "Succeeded" => {
            if every_container_terminated(pod) {
                finish(ProwJobState::Success, "Job succeeded.", false)
            } else {
                finish(
                    ProwJobState::Error,
                    "Pod was in succeeded phase but some containers didn't finish",
                    false,
                )
            }
        }
        "Failed" => match oom_killed(pod) {
            // Not the test's verdict: the job could not run to one.
            Some(container) => finish(
                ProwJobState::Error,
                format!(
                    "Job pod's container {container:?} was OOM killed: it used more memory than its limit."
                ),
                false,
            ),
            None => match failure_message(pod) {
                Some(why) => finish(ProwJobState::Failure, format!("Job failed: {why}"), false),
                None => finish(ProwJobState::Failure, "Job failed.", false),
            },
        },
        "Running" => match status.start_time.as_ref() {
            Some(start) => deadline(
                start.0,
                timeouts.running,
                now,
                finish(ProwJobState::Aborted, "Pod running timeout.", true),
            ),
            None => Step::Idle,
        },
        _ => match status.start_time.as_ref() {
            Some(start) => deadline(
                start.0,
                timeouts.pending,
                now,
                finish(ProwJobState::Error, "Pod pending timeout.", true),
            ),
            None => match pod.metadata.creation_timestamp.as_ref() {
                Some(created) => deadline(
                    created.0,
                    timeouts.unscheduled,
                    now,
                    finish(ProwJobState::Error, "Pod scheduling timeout.", true),
                ),
                None => Step::Idle,
            },
        },
    }
}

/// Whether a job from the watch needs a reconcile: every unfinished job, finished jobs that
/// were aborted or errored (their pod may still run), and finished jobs not yet `marked`
/// [`labels::COMPLETED`] (a store may keep the mark beside a stripped job rather than in its
/// labels). Marked succeeded and failed jobs are done.
pub fn needs_reconcile(job: &ProwJob, marked: bool) -> bool {
    !job.is_complete()
        || matches!(job.state(), ProwJobState::Aborted | ProwJobState::Error)
        || !marked
}

/// Whether the job carries [`labels::COMPLETED`].
pub fn is_marked_completed(job: &ProwJob) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::COMPLETED))
        .is_some_and(|v| v == "true")
}

/// The step for a pending job whose pod was lost (`why`: "evicted" or "lost"): revived, up to
/// the policy's revivals; an eviction (by the kubelet or the Eviction API) ends the job instead
/// when it asks for that (`error_on_eviction`). Also for a pod the Eviction API deleted on an
/// API server that leaves no mark on the pod (before 1.26): the operator learns of it from its
/// PodDisruptionBudget.
pub fn lost(job: &ProwJob, why: &str, policy: &Policy) -> Step {
    let revivals = job.status.as_ref().map_or(0, |s| s.pod_revival_count);
    if why == EVICTED && job.spec.error_on_eviction {
        return finish(
            ProwJobState::Error,
            "Job pod was evicted by the cluster.",
            true,
        );
    }
    if revivals >= policy.max_revivals {
        return finish(
            ProwJobState::Error,
            format!(
                "Job pod reached max revivals ({revivals}) after being stopped unexpectedly ({why})"
            ),
            true,
        );
    }
    Step::Revive {
        description: format!(
            "Job pod was {why}; recreating it (revival {} of {}).",
            revivals + 1,
            policy.max_revivals
        ),
    }
}

/// `expired` once `since + timeout <= now` (upstream compares with >=), else wait for it.
fn deadline(since: Timestamp, timeout: Duration, now: Timestamp, expired: Step) -> Step {
    let elapsed = now.duration_since(since);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    if elapsed >= timeout {
        expired
    } else {
        Step::WaitFor(timeout - elapsed)
    }
}

pub use crate::pod_view::DISRUPTION_TARGET;

/// How an evicted pod was lost, in [`lost`] and in the job's description.
pub const EVICTED: &str = "evicted";

/// How the pod was lost, if it was: evicted (by the kubelet, or disrupted through the API),
/// or lost with its node (reason NodeLost, phase Unknown).
fn lost_how(pod: &PodView) -> Option<&'static str> {
    let status = &pod.status;
    match (status.reason.as_deref(), status.phase.as_deref()) {
        (Some("Evicted"), _) => Some(EVICTED),
        (Some("NodeLost"), _) | (_, Some("Unknown")) => Some("lost"),
        _ if status.disrupted.is_some() => Some(EVICTED),
        _ => None,
    }
}

/// The first container (or init container) the kernel killed for exceeding its memory limit.
fn oom_killed(pod: &PodView) -> Option<&str> {
    let status = &pod.status;
    status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .find(|cs| cs.state.terminated.as_ref().is_some_and(|t| t.oom_killed))
        .map(|cs| cs.name.as_str())
}

/// The termination message of the first container that failed (init containers first): the
/// pod utilities write there why a clone failed or a test timed out.
fn failure_message(pod: &PodView) -> Option<String> {
    let status = &pod.status;
    status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .filter_map(|cs| cs.state.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .find_map(|t| {
            t.message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
        })
        .map(|m| m.chars().take(400).collect())
}

/// Whether the pod is still running or waiting to run, and not already being deleted.
fn is_unfinished(pod: &PodView) -> bool {
    let phase = pod.status.phase.as_deref();
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether every container and init container of the pod has a terminated state.
fn every_container_terminated(pod: &PodView) -> bool {
    let status = &pod.status;
    let declared = pod.spec.containers as usize;
    let terminated = |cs: &crate::pod_view::ViewContainerStatus| cs.state.terminated.is_some();
    status.container_statuses.len() >= declared
        && status.container_statuses.iter().all(terminated)
        && status.init_container_statuses.iter().all(terminated)
}

#[cfg(test)]
mod tests;
