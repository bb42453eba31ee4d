//! May a triggered job start now? Upstream plank's `max_concurrency`, global and job-queue rules,
//! decided over the jobs the operator knows of plus the starts it has made that its cache does
//! not show yet, so a lagging cache can never push a limit over.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::jiff::Timestamp;

use crate::{ProwJob, ProwJobState};

/// Concurrency limits from the operator's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most jobs pending at once across all job names; 0 is unlimited.
    pub global: i64,
    /// Capacity of each named job queue: 0 blocks, negative is unlimited.
    pub queues: BTreeMap<String, i64>,
}

/// Whether a job may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Start it now.
    Start,
    /// Not yet; the text says why, for the job's description.
    Wait(String),
    /// Never: the job names a queue that is not configured.
    Refuse(String),
}

/// Starts and finishes the operator has written that its cache may not show yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// UIDs of jobs whose pod was created; they hold a slot whatever the cache says.
    pub started: HashSet<String>,
    /// UIDs of jobs that were completed; they hold no slot whatever the cache says.
    pub finished: HashSet<String>,
}

impl InFlight {
    fn started(&self, job: &ProwJob) -> bool {
        job.metadata
            .uid
            .as_ref()
            .is_some_and(|u| self.started.contains(u))
    }

    fn finished(&self, job: &ProwJob) -> bool {
        job.is_complete()
            || job
                .metadata
                .uid
                .as_ref()
                .is_some_and(|u| self.finished.contains(u))
    }
}

/// Whether `other` holds a slot: unfinished and pending, or started by us and not yet seen so.
fn holds_slot(other: &ProwJob, in_flight: &InFlight) -> bool {
    !in_flight.finished(other)
        && (other.state() == ProwJobState::Pending || in_flight.started(other))
}

/// Whether `other` is a triggered job created before `job`, so it starts first (FIFO).
fn ahead_in_line(other: &ProwJob, job: &ProwJob, in_flight: &InFlight) -> bool {
    !in_flight.finished(other)
        && other.state() == ProwJobState::Triggered
        && !in_flight.started(other)
        && line_position(other) < line_position(job)
}

/// Decides whether `job` may start, given every other job the operator knows of (`jobs` may
/// include `job` itself) and the starts and finishes its cache may not show yet.
pub fn admit<'a>(
    job: &ProwJob,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    in_flight: &InFlight,
    limits: &Limits,
) -> Admission {
    let queue = job.spec.job_queue_name.as_str();
    let queue_capacity = if queue.is_empty() {
        None
    } else {
        match limits.queues.get(queue) {
            Some(c) => Some(*c),
            None => return Admission::Refuse(format!("Job queue {queue:?} is not configured.")),
        }
    };
    if queue_capacity == Some(0) {
        return Admission::Wait(format!("Waiting: job queue {queue:?} has capacity 0."));
    }

    let (mut same_job, mut same_queue, mut global) = (0i64, 0i64, 0i64);
    for other in jobs {
        if other.metadata.uid == job.metadata.uid {
            continue;
        }
        let slot = holds_slot(other, in_flight);
        let counts = slot || ahead_in_line(other, job, in_flight);
        global += i64::from(slot);
        if counts && other.spec.job == job.spec.job {
            same_job += 1;
        }
        if counts && !queue.is_empty() && other.spec.job_queue_name == queue {
            same_queue += 1;
        }
    }

    let max = job.spec.max_concurrency;
    if max > 0 && same_job >= max {
        return Admission::Wait(format!(
            "Waiting: {same_job} runs of {} are pending or ahead in line (max_concurrency {max}).",
            job.spec.job
        ));
    }
    if let Some(capacity) = queue_capacity.filter(|c| *c > 0) {
        if same_queue >= capacity {
            return Admission::Wait(format!(
                "Waiting: {same_queue} jobs of queue {queue:?} are pending or ahead in line (capacity {capacity})."
            ));
        }
    }
    if limits.global > 0 && global >= limits.global {
        return Admission::Wait(format!(
            "Waiting: {global} jobs are pending (global max_concurrency {}).",
            limits.global
        ));
    }
    Admission::Start
}

/// The outcome of asking to start a job: admission, with the build ID the start takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Start it with this build ID.
    Start(String),
    /// Not yet (a limit is full); the text says why, for the job's description.
    Wait(String),
    /// Never (the job names a queue that is not configured, or has no UID).
    Refuse(String),
}

/// The jobs to wake when `job` gives up its slot: of the triggered jobs that share a limit with
/// it (its job name, its queue, or the global limit), the first in line of each job name.
/// Each is the head of its name's line; waking one per name rather than every waiting job
/// keeps a finish O(jobs) instead of O(waiting x jobs), and still wakes a job that can start
/// when the head of another name is held back by its own limit.
pub fn to_wake<'a>(
    job: &ProwJob,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    limits: &Limits,
) -> Vec<&'a ProwJob> {
    let global = limits.global > 0;
    let queue = job.spec.job_queue_name.as_str();
    let mut heads: BTreeMap<&str, &'a ProwJob> = BTreeMap::new();
    for other in jobs {
        let shares = global
            || other.spec.job == job.spec.job
            || (!queue.is_empty() && other.spec.job_queue_name == queue);
        if !shares
            || other.state() != ProwJobState::Triggered
            || other.metadata.uid == job.metadata.uid
        {
            continue;
        }
        let head = heads.entry(other.spec.job.as_str()).or_insert(other);
        if line_position(other) < line_position(head) {
            *head = other;
        }
    }
    heads.into_values().collect()
}

/// A job's place in any line it waits in (a concurrency limit, a TestCluster pool): creation
/// time, then name.
pub fn line_position(job: &ProwJob) -> (Option<Timestamp>, Option<&str>) {
    (
        job.metadata.creation_timestamp.as_ref().map(|t| t.0),
        job.metadata.name.as_deref(),
    )
}

/// The next build ID of a job name: the clock in milliseconds, or one more than the last ID of
/// that name when the clock is not past it (two starts in a millisecond, a clock step back).
/// Time-based IDs keep increasing across operator restarts with nothing stored but the last ID
/// each job's status already records.
pub fn next_build_id(now_millis: u64, last: Option<u64>) -> u64 {
    match last {
        Some(last) if last >= now_millis => last + 1,
        _ => now_millis,
    }
}

#[cfg(test)]
mod tests;
