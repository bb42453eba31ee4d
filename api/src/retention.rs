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

/// What one sweep deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Completed ProwJobs past their age.
    pub jobs: Vec<Doomed>,
    /// Pods of completed jobs past their TTL or age.
    pub pods: Vec<Doomed>,
    /// Pods whose job is not in the cache: deleted only if a fresh read agrees.
    pub orphans: Vec<Doomed>,
}

fn older_than(t: Option<Timestamp>, age: Duration, now: Timestamp) -> bool {
    t.is_some_and(|t| Duration::try_from(now.duration_since(t)).is_ok_and(|elapsed| elapsed >= age))
}

fn doomed(meta: &ObjectMeta, reason: &'static str) -> Doomed {
    Doomed {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        reason,
    }
}

/// Plans one sweep over every job and every Prow pod the operator knows.
/// A pod is known by its name, UID, creation time and job annotations.
pub fn sweep(jobs: &[&ProwJob], pods: &[&PodView], now: Timestamp, keep: &Retention) -> Sweep {
    let start = |j: &ProwJob| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    let mut newest_periodic: HashMap<&str, (Option<Timestamp>, &str)> = HashMap::new();
    for job in jobs
        .iter()
        .filter(|j| j.is_complete() && j.spec.job_type == Some(ProwJobType::Periodic))
    {
        let key = (start(job), job.metadata.name.as_deref().unwrap_or_default());
        let entry = newest_periodic.entry(job.spec.job.as_str()).or_insert(key);
        if key > *entry {
            *entry = key;
        }
    }

    let mut plan = Sweep::default();
    for job in jobs.iter().filter(|j| j.is_complete()) {
        let newest = job.spec.job_type == Some(ProwJobType::Periodic)
            && newest_periodic.get(job.spec.job.as_str()).map(|n| n.1)
                == job.metadata.name.as_deref();
        if !newest && older_than(start(job), keep.max_prowjob_age, now) {
            plan.jobs
                .push(doomed(&job.metadata, "job older than max_prowjob_age"));
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
            continue; // not a pod of this operator's
        };
        let job_uid = view.job_uid();
        let pod = &view.metadata;
        let name = pod.name.as_deref().unwrap_or_default();
        let created = pod.creation_timestamp.as_ref().map(|t| t.0);
        match by_name.get(&(job_ns, name)) {
            Some(job) if job.metadata.uid.as_deref() == job_uid => {
                if !job.is_complete() {
                    continue;
                }
                let completed = job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0);
                if older_than(completed, keep.terminated_pod_ttl, now) {
                    plan.pods.push(doomed(
                        pod,
                        "job completed longer ago than terminated_pod_ttl",
                    ));
                } else if older_than(created, keep.max_pod_age, now) {
                    plan.pods
                        .push(doomed(pod, "pod of a completed job older than max_pod_age"));
                }
            }
            _ => {
                if older_than(created, keep.orphan_grace, now) {
                    plan.orphans
                        .push(doomed(pod, "pod whose job does not exist"));
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;
