//! A TestCluster pool's line: which jobs wait for a cluster, in which order, and which vacant
//! cluster each of the first ones gets. First come, first served by creation time, rebuilt from
//! the jobs and clusters alone, so the order holds across operator restarts.

use crate::concurrency::line_position;
use crate::lease::HEALTHY;
use crate::{labels, ClusterPhase, ProwJob, TestCluster};

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
    pool: &str,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    clusters: &[&TestCluster],
) -> Vec<&'a ProwJob> {
    let mut waiting: Vec<&ProwJob> = jobs
        .into_iter()
        .filter(|j| pool_of(j) == Some(pool))
        .filter(|j| j.state() == crate::ProwJobState::Triggered && !j.is_complete())
        .filter(|j| lease_of(j, clusters.iter().copied()).is_none())
        .collect();
    waiting.sort_by(|a, b| line_position(a).cmp(&line_position(b)));
    waiting
}

/// Whether a cluster of `pool` can be leased now: vacant, and not failing its health check.
pub fn leasable(cluster: &TestCluster, pool: &str) -> bool {
    let status = cluster.status.clone().unwrap_or_default();
    cluster.spec.pool == pool
        && status.phase.unwrap_or(ClusterPhase::Vacant) == ClusterPhase::Vacant
        && !status
            .conditions
            .iter()
            .any(|c| c.type_ == HEALTHY && c.status == "False")
}

/// Who gets which cluster now: the first waiting jobs in line, each with a leasable cluster
/// of the pool, in the clusters' name order. A job later in line gets nothing while an earlier
/// one waits.
pub fn assign<'a>(
    pool: &str,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
    clusters: &[&'a TestCluster],
) -> Vec<(&'a ProwJob, &'a TestCluster)> {
    let mut free: Vec<&TestCluster> = clusters
        .iter()
        .copied()
        .filter(|c| leasable(c, pool))
        .collect();
    free.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    line(pool, jobs, clusters).into_iter().zip(free).collect()
}

/// What a waiting job says, in `kubectl get prowjobs`: the pool and its place in line.
pub fn waiting_description(pool: &str, position: usize, of: usize) -> String {
    format!("Waiting for a test cluster of pool {pool:?}: number {position} of {of} in line.")
}

#[cfg(test)]
mod tests;
