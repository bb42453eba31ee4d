//! A TestCluster pool's line: which jobs wait for a cluster, in which order, and which vacant
//! cluster each of the first ones gets. First come, first served by creation time, rebuilt from
//! the jobs and clusters alone, so the order holds across operator restarts.
//!
//! A pool lives in one namespace, where its TestClusters are, beside their kubeconfig Secrets:
//! the namespace of the pods of the jobs that lease from it.

use crate::concurrency::line_position;
use crate::lease::{Holder, PoolPolicy, HEALTHY};
use crate::prowjob::pod_namespace;
use crate::testcluster::SecretKeyRef;
use crate::{labels, ClusterPhase, ProwJob, TestCluster};

/// Where a leased cluster's kubeconfig is mounted in the job's containers.
pub const KUBECONFIG_DIR: &str = "/etc/test-cluster";

/// The key of the kubeconfig in the copy of the cluster's Secret the job's pod mounts.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// The name of the volume that mounts it.
pub const KUBECONFIG_VOLUME: &str = "test-cluster-kubeconfig";

/// How old a kubeconfig copy must be before [`copy_is_left_over`] may call it left over: a
/// margin for a copy whose job a new leader's cache may not have yet.
pub const COPY_GRACE: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(30);

/// Whether the kubeconfig copy made at `created` for the job with UID `holder` is left over: no
/// unfinished job has that UID (it finished or is gone, and the delete that should have
/// followed did not happen: the cluster was down then, or the operator stopped between the
/// two), and the copy is older than [`COPY_GRACE`]. A copy with no creation time is kept.
pub fn copy_is_left_over(
    holder: &str,
    created: Option<k8s_openapi::jiff::Timestamp>,
    unfinished: &std::collections::HashSet<&str>,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    let old = created.is_some_and(|c| now.duration_since(c) >= COPY_GRACE);
    old && !unfinished.contains(holder)
}

/// What a job's pod learns of the cluster leased to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedCluster {
    /// The TestCluster's name: `TEST_CLUSTER`.
    pub name: String,
    /// Its region: `TEST_CLUSTER_REGION` (empty when it has none).
    pub region: String,
    /// The Secret, in the TestCluster's namespace, with its kubeconfig, if it has one.
    pub kubeconfig: Option<SecretKeyRef>,
}

impl LeasedCluster {
    /// What a pod learns of `cluster`.
    pub fn of(cluster: &TestCluster) -> Self {
        Self {
            name: cluster.metadata.name.clone().unwrap_or_default(),
            region: cluster.spec.region.clone().unwrap_or_default(),
            kubeconfig: cluster.spec.kubeconfig_secret_ref.clone(),
        }
    }
}

/// The name of the copy of a leased cluster's kubeconfig Secret in the namespace of the pod of
/// the job named `job`: the job's name with a suffix, cut to a valid Secret name.
pub fn kubeconfig_copy_name(job: &str) -> String {
    const SUFFIX: &str = "-test-cluster";
    let keep = job.len().min(253 - SUFFIX.len());
    let mut cut = keep;
    while !job.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{SUFFIX}", job[..cut].trim_end_matches(['-', '.']))
}

/// A pool: its name, and the namespace of its clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool<'a> {
    /// The namespace of its clusters, and of the pods of its jobs.
    pub namespace: &'a str,
    /// Its name, as jobs and clusters name it.
    pub name: &'a str,
    /// The namespace of a job's pod when its `spec.namespace` is empty.
    pub default_pod_namespace: &'a str,
}

impl<'a> Pool<'a> {
    /// The pool `job` leases from, if it names one: the pool of that name in its pod namespace.
    pub fn of(job: &'a ProwJob, default_pod_namespace: &'a str) -> Option<Self> {
        Some(Self {
            namespace: pod_namespace(job, default_pod_namespace),
            name: pool_of(job)?,
            default_pod_namespace,
        })
    }

    /// Whether `job` leases from this pool.
    pub fn has(&self, job: &ProwJob) -> bool {
        pool_of(job) == Some(self.name)
            && pod_namespace(job, self.default_pod_namespace) == self.namespace
    }
}

/// The holder a job's lease records: its namespace, name and UID.
pub fn holder_of(job: &ProwJob) -> Holder {
    Holder::Job {
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The pool a job leases a cluster from, if it names one.
pub fn pool_of(job: &ProwJob) -> Option<&str> {
    job.metadata
        .labels
        .as_ref()?
        .get(labels::TEST_CLUSTER_POOL)
        .map(String::as_str)
        .filter(|pool| !pool.is_empty())
}

/// The cluster of `clusters` leased to `job`, if any (by the job's UID: a recreated job of the
/// same name holds nothing).
pub fn lease_of<'a>(
    job: &ProwJob,
    clusters: impl IntoIterator<Item = &'a TestCluster>,
) -> Option<&'a TestCluster> {
    let uid = job.metadata.uid.as_deref()?;
    clusters.into_iter().find(|c| {
        c.status
            .as_ref()
            .and_then(|s| s.lease.as_ref())
            .and_then(|l| l.holder_uid.as_deref())
            == Some(uid)
    })
}

/// The jobs of `pool` waiting for a cluster, first in line first: unfinished, not yet running
/// a pod, holding no cluster; ordered by creation time, then name.
pub fn line<'a>(
    pool: &Pool,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    clusters: &[&TestCluster],
) -> Vec<&'a ProwJob> {
    let mut waiting: Vec<&ProwJob> = jobs
        .into_iter()
        .filter(|j| pool.has(j))
        .filter(|j| j.state() == crate::ProwJobState::Triggered && !j.is_complete())
        .filter(|j| lease_of(j, clusters.iter().copied()).is_none())
        .collect();
    waiting.sort_by(|a, b| line_position(a).cmp(&line_position(b)));
    waiting
}

/// Whether a cluster of `pool` can be leased now: vacant, not being deleted, not failing its
/// health check and not waiting for one.
pub fn leasable(cluster: &TestCluster, pool: &str) -> bool {
    let status = cluster.status.clone().unwrap_or_default();
    cluster.spec.pool == pool
        && cluster.metadata.deletion_timestamp.is_none()
        && status.phase.unwrap_or(ClusterPhase::Vacant) == ClusterPhase::Vacant
        && crate::lease::unhealthy(&status).is_none()
}

/// Who gets which cluster now: the first waiting jobs in line, each with a leasable cluster
/// of the pool, in the clusters' name order. A job later in line gets nothing while an earlier
/// one waits. `clusters` are the clusters of the pool's namespace.
pub fn assign<'a>(
    pool: &Pool,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    clusters: &[&'a TestCluster],
) -> Vec<(&'a ProwJob, &'a TestCluster)> {
    line(pool, jobs, clusters)
        .into_iter()
        .zip(free(pool.name, clusters))
        .collect()
}

/// The clusters of `pool` that can be leased now, in name order: the order they are handed
/// out in.
pub fn free<'a>(pool: &str, clusters: &[&'a TestCluster]) -> Vec<&'a TestCluster> {
    let mut free: Vec<&TestCluster> = clusters
        .iter()
        .copied()
        .filter(|c| leasable(c, pool))
        .collect();
    free.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    free
}

/// Why a vacant cluster is not handed out yet: in a pool with a health check, it was never
/// checked (new, and its first check not even begun). It is checked within moments, and a
/// passed check wakes the pool. The one rule for jobs and `getvacant` callers alike.
pub fn awaits_first_check(cluster: &TestCluster, policy: &PoolPolicy) -> Option<String> {
    let checked = cluster
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == HEALTHY);
    (policy.health.is_some() && cluster.spec.kubeconfig_secret_ref.is_some() && !checked).then(
        || {
            let name = cluster.metadata.name.as_deref().unwrap_or_default();
            format!("cluster {name} has not been health-checked yet")
        },
    )
}

/// The cluster a `getvacant` caller of `pool` gets: a leasable one beyond those the jobs waiting
/// in line will take (they came first), and one that has been health-checked where the pool
/// checks; or why there is none, for the caller.
pub fn caller_share<'a, 'j>(
    pool: &Pool,
    jobs: impl IntoIterator<Item = &'j ProwJob>,
    clusters: &[&'a TestCluster],
    policy: &PoolPolicy,
) -> Result<&'a TestCluster, String> {
    let vacant = free(pool.name, clusters);
    let waiting = line(pool, jobs, clusters).len();
    let Some(cluster) = vacant.get(waiting) else {
        return Err(format!(
            "no vacant cluster in pool {}: {} free, {waiting} jobs waiting; try again later",
            pool.name,
            vacant.len()
        ));
    };
    match awaits_first_check(cluster, policy) {
        Some(why) => Err(format!("{why}; try again in a moment")),
        None => Ok(cluster),
    }
}

/// What a waiting job says, in `kubectl get prowjobs`: the pool and its place in line. Not the
/// length of the line: that changes with every job that joins it, and each change would be a
/// status write for every waiting job.
pub fn waiting_description(pool: &str, position: usize) -> String {
    format!("Waiting for a test cluster of pool {pool:?}: number {position} in line.")
}

#[cfg(test)]
mod tests;
