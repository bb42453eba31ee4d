//! Upstream sinker's garbage collection as a pure plan: which finished ProwJobs and which pods
//! go, given the time.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::pod_view::PodView;
use crate::{ProwJob, ProwJobType};

/// How long things are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Completed jobs that started longer ago than this are deleted.
    pub max_prowjob_age: Duration,
    /// Pods of completed jobs created longer ago than this are deleted.
    pub max_pod_age: Duration,
    /// Pods of jobs that completed longer ago than this are deleted.
    pub terminated_pod_ttl: Duration,
    /// Pods whose job does not exist are deleted once older than this.
    pub orphan_grace: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_prowjob_age: Duration::from_secs(7 * 24 * 3600),
            max_pod_age: Duration::from_secs(24 * 3600),
            terminated_pod_ttl: Duration::from_secs(24 * 3600),
            orphan_grace: Duration::from_secs(30),
        }
    }
}

/// An object to delete: namespace, name and the UID it was decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doomed {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, the deletion's precondition.
    pub uid: Option<String>,
    /// Why, for the log.
    pub reason: &'static str,
}

/// The pod or job (its namespace, name and UID) to delete, and why.
fn doomed(
    (namespace, name, uid): (Option<&str>, Option<&str>, Option<&str>),
    reason: &'static str,
) -> Doomed {
    Doomed {
        namespace: namespace.unwrap_or_default().to_string(),
        name: name.unwrap_or_default().to_string(),
        uid: uid.map(str::to_string),
        reason,
    }
}

fn ids(meta: &ObjectMeta) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.uid.as_deref(),
    )
}

/// When a job started: its `status.startTime`, else its creation.
fn start(job: &ProwJob) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// When a job completed, if it has.
fn completed(job: &ProwJob) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
}

fn plus(t: Timestamp, d: Duration) -> Option<Timestamp> {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
}

/// What the rules say about one object now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delete it.
    Delete(Doomed),
    /// A pod whose job is not in the cache: deleted only if a fresh read agrees.
    Orphan(Doomed),
    /// Not yet: look again at this time.
    At(Timestamp),
    /// Not while it stays as it is (an unfinished job, a periodic's newest run): a change to
    /// it or its job brings it back.
    Keep,
}

/// What the rules say about a job now; `newest` when it is its periodic's newest completed run
/// (kept whatever its age, so the next run's schedule has a last run to follow).
pub fn judge_job(job: &ProwJob, newest: bool, now: Timestamp, keep: &Retention) -> Verdict {
    if !job.is_complete() || newest {
        return Verdict::Keep;
    }
    let Some(due) = start(job).and_then(|t| plus(t, keep.max_prowjob_age)) else {
        return Verdict::Keep;
    };
    if due <= now {
        Verdict::Delete(doomed(ids(&job.metadata), "job older than max_prowjob_age"))
    } else {
        Verdict::At(due)
    }
}

/// What the rules say about a Prow pod now, given its job as the cache has it (`None`: not
/// there, or another job of the same name).
pub fn judge_pod(
    pod: &PodView,
    job: Option<&ProwJob>,
    now: Timestamp,
    keep: &Retention,
) -> Verdict {
    if pod.job_namespace().is_none() {
        return Verdict::Keep; // not a pod of this operator's
    }
    let meta = &pod.metadata;
    let pod_ids = (
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.uid.as_deref(),
    );
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    let job = job.filter(|j| j.metadata.uid.as_deref() == pod.job_uid());
    let Some(job) = job else {
        return match created.and_then(|t| plus(t, keep.orphan_grace)) {
            Some(due) if due > now => Verdict::At(due),
            Some(_) => Verdict::Orphan(doomed(pod_ids, "pod whose job does not exist")),
            None => Verdict::Keep,
        };
    };
    if !job.is_complete() {
        return Verdict::Keep;
    }
    let by_ttl = completed(job).and_then(|t| plus(t, keep.terminated_pod_ttl));
    let by_age = created.and_then(|t| plus(t, keep.max_pod_age));
    match (by_ttl, by_age) {
        (Some(t), _) if t <= now => Verdict::Delete(doomed(
            pod_ids,
            "job completed longer ago than terminated_pod_ttl",
        )),
        (_, Some(t)) if t <= now => Verdict::Delete(doomed(
            pod_ids,
            "pod of a completed job older than max_pod_age",
        )),
        (a, b) => a
            .into_iter()
            .chain(b)
            .min()
            .map_or(Verdict::Keep, Verdict::At),
    }
}

/// The earliest time a completed job's pod may be due, before the pod is read (its creation
/// is not before the job's): when the schedule should first look at it.
pub fn pod_look_at(job: &ProwJob, keep: &Retention) -> Option<Timestamp> {
    if !job.is_complete() {
        return None;
    }
    let by_ttl = completed(job).and_then(|t| plus(t, keep.terminated_pod_ttl));
    let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let by_age = created.and_then(|t| plus(t, keep.max_pod_age));
    by_ttl.into_iter().chain(by_age).min()
}

/// Each periodic's newest completed run, by `spec.job`: its start and name.
pub fn newest_periodic_runs<'a>(
    jobs: &[&'a ProwJob],
) -> HashMap<&'a str, (Option<Timestamp>, &'a str)> {
    let mut newest: HashMap<&str, (Option<Timestamp>, &str)> = HashMap::new();
    for job in jobs.iter().filter(|j| is_periodic_run(j)) {
        let key = (start(job), job.metadata.name.as_deref().unwrap_or_default());
        let entry = newest.entry(job.spec.job.as_str()).or_insert(key);
        if key > *entry {
            *entry = key;
        }
    }
    newest
}

/// Whether `job` is a completed periodic run (the kind whose newest run is kept).
pub fn is_periodic_run(job: &ProwJob) -> bool {
    job.is_complete() && job.spec.job_type == Some(ProwJobType::Periodic)
}

/// Whether periodic run `job` is newer than the run `than` (start, then name).
pub fn newer_run(job: &ProwJob, than: &ProwJob) -> bool {
    let key = |j: &ProwJob| (start(j), j.metadata.name.clone().unwrap_or_default());
    key(job) > key(than)
}

/// Things to look at again at a time: the retention pass between full sweeps takes out only
/// what is due, so its work follows what it deletes, not how many objects are stored.
#[derive(Debug)]
pub struct Due<T: Ord> {
    queue: std::collections::BTreeSet<(Timestamp, T)>,
}

impl<T: Ord> Default for Due<T> {
    fn default() -> Self {
        Self {
            queue: std::collections::BTreeSet::new(),
        }
    }
}

impl<T: Ord> Due<T> {
    /// Looks at `item` again at `at` (the same item at the same time is kept once).
    pub fn push(&mut self, at: Timestamp, item: T) {
        self.queue.insert((at, item));
    }

    /// Takes out everything due by `now`, earliest first.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<T> {
        let mut taken = Vec::new();
        while self.queue.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, item)) = self.queue.pop_first() {
                taken.push(item);
            }
        }
        taken
    }

    /// How many are queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Forgets everything (a full sweep queues afresh).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// When the next item falls due.
    pub fn next(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests;
