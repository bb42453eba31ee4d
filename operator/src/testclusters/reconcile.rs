//! The TestCluster reconcile: fetch (the cluster as last written, its pool's settings, its
//! holder, its clean-up job) -> `prow_api::cluster_plan::plan` -> apply (each write at the
//! cluster's resourceVersion, so a lease taken meanwhile is never overwritten).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::cluster_plan::{
    after_health_check, cleanup_started, plan, CleanupJob, ClusterEvent, Facts, Finalizer, Next,
    Plan, FINALIZER,
};
use prow_api::jobdefinition::JobDefinition;
use prow_api::pool::{leasable, line, Pool};
use prow_api::{ClusterPhase, ProwJob, TestCluster};
use prow_runtime::lock;
use prow_runtime::store::Synced;
use tokio::sync::mpsc;

use super::cache::Clusters;
use super::copies::delete_kubeconfig_copies;
use super::readyz::readyz;
use crate::buildclusters::BuildClusters;
use crate::controller::Reconciler;
use crate::error::Error;
use crate::events::Events;
use crate::prowjob::open::OpenJobs;
use crate::prowjob::stored::Job;
use crate::queue::Action;

/// What the TestCluster reconciles and the pool loop share.
pub struct Ctx {
    pub(super) client: Client,
    pub(super) definitions: Store<JobDefinition>,
    pub(super) clusters: Arc<Clusters>,
    pub(super) jobs: Store<Job>,
    /// The unfinished jobs: only they hold leases or wait in a pool's line.
    pub(super) open: OpenJobs,
    pub(super) builds: Arc<BuildClusters>,
    pub(super) jobs_synced: Synced,
    pub(super) recorder: Events,
    pub(super) wake_jobs: mpsc::UnboundedSender<ObjectRef<Job>>,
    pub(super) default_pod_namespace: String,
    /// Clean-up jobs made, by cluster (`namespace/name`), until their name is in the
    /// cluster's status.
    pub(super) cleanups: Mutex<HashMap<String, String>>,
    /// When this process last made a pool's create-cluster job, by pool (`namespace/name`).
    pub(super) grown: Mutex<HashMap<String, std::time::Instant>>,
}

impl Ctx {
    /// Publishes an Event on `cluster`, without holding up the reconcile.
    fn tell(&self, cluster: &TestCluster, event: ClusterEvent) {
        crate::events::publish(
            &self.recorder,
            cluster.object_ref(&()),
            event.warning,
            event.reason,
            event.note,
            event.action,
        );
    }
}

impl Reconciler for Ctx {
    type Kind = TestCluster;
    const KIND: &'static str = "TestCluster";

    async fn reconcile(self: Arc<Self>, cluster: Arc<TestCluster>) -> Result<Action, Error> {
        // Whether a job is gone can only be told from a full list of jobs.
        if !self.jobs_synced.wait_at_most(Duration::from_secs(1)).await {
            return Ok(Action::retry());
        }
        reconcile(&cluster, &self).await
    }

    fn events(&self) -> &Events {
        &self.recorder
    }

    fn put_failure(&self, cluster: &TestCluster, error: &Error) {
        let conditions = cluster.status.as_ref().map(|s| s.conditions.as_slice());
        crate::controller::mark_failed(
            &self.client,
            cluster,
            conditions.unwrap_or_default(),
            error,
        );
    }
}

/// Fetch -> plan -> apply, for one cluster.
async fn reconcile(cached: &TestCluster, ctx: &Ctx) -> Result<Action, Error> {
    // Fetch.
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let Some(cluster) = ctx
        .clusters
        .view(&ns)
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
    else {
        return Ok(Action::await_change());
    };
    let status = cluster.status.clone().unwrap_or_default();
    let policy = ctx.clusters.policy(&ns, &cluster.spec.pool);
    let holder_alive = match status.lease.as_ref().and_then(|l| l.holder_uid.as_deref()) {
        Some(uid) => ctx
            .open
            .state()
            .iter()
            .any(|j| j.metadata.uid.as_deref() == Some(uid)),
        None => false,
    };
    let key = format!("{ns}/{name}");
    let jobs_ns = ctx
        .clusters
        .watch_namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    let template = ctx
        .clusters
        .pool(&ns, &cluster.spec.pool)
        .and_then(|p| p.spec.cleanup_job.clone());
    let made = lock(&ctx.cleanups).get(&key).cloned();
    let found = match (status.phase, status.cleanup_job.as_deref()) {
        (Some(ClusterPhase::Cleaning), Some(job)) => {
            Some(match ctx.jobs.get(&ObjectRef::new(job).within(&jobs_ns)) {
                Some(found) => Some(found),
                // Not in the cache: just made, or deleted.
                None => Api::<ProwJob>::namespaced(ctx.client.clone(), &jobs_ns)
                    .get_opt(job)
                    .await?
                    .map(|j| Arc::new(Job(j))),
            })
        }
        _ => None,
    };
    let cleanup_job = match &found {
        None => CleanupJob::None,
        Some(None) => CleanupJob::Missing,
        Some(Some(job)) if !job.is_complete() => CleanupJob::Running,
        Some(Some(job)) => CleanupJob::Ended {
            state: job.state(),
            description: job
                .status
                .as_ref()
                .map(|s| s.description.as_str())
                .unwrap_or_default(),
        },
    };
    // Decide.
    let plan = plan(&Facts {
        cluster: &cluster,
        policy: &policy,
        holder_alive,
        cleanup_template: template.as_ref(),
        cleanup_made: made.as_deref(),
        cleanup_job,
        now: Timestamp::now(),
    });
    // Apply.
    apply(&cluster, plan, &key, &jobs_ns, ctx).await
}

/// Carries out `plan` for `cluster` (whose clean-up key is `key`; its jobs go to `jobs_ns`).
async fn apply(
    cluster: &TestCluster,
    plan: Plan,
    key: &str,
    jobs_ns: &str,
    ctx: &Ctx,
) -> Result<Action, Error> {
    if let Some(change) = plan.finalizer {
        set_finalizer(cluster, change, ctx).await?;
    }
    let mut status = plan.status;
    let mut event = plan.event;
    if let Some(job) = plan.start_cleanup {
        // Remembered until its name is in the status, so a lost race never makes it twice.
        let made = Api::<ProwJob>::namespaced(ctx.client.clone(), jobs_ns)
            .create(&PostParams::default(), &job)
            .await?
            .name_any();
        lock(&ctx.cleanups).insert(key.to_string(), made.clone());
        let current = cluster.status.clone().unwrap_or_default();
        let (recorded, started) = cleanup_started(&current, &made);
        ctx.tell(cluster, started);
        status = Some(recorded);
    }
    if let Some(new) = status {
        let recorded_cleanup = new.cleanup_job.is_some();
        ctx.clusters
            .set_status(&ctx.client, cluster, new)
            .await
            .map_err(Error::from)?;
        if recorded_cleanup {
            lock(&ctx.cleanups).remove(key);
        }
    }
    if let (Some(check), Some(current)) = (plan.check_health, cluster.status.as_ref()) {
        let ns = cluster.namespace().unwrap_or_default();
        let result = readyz(&ctx.client, &ns, &check.secret, check.timeout).await;
        let (written, healthy) = after_health_check(current, result, Timestamp::now());
        if let Some((new, checked)) = written {
            ctx.clusters.set_status(&ctx.client, cluster, new).await?;
            event = Some(checked);
        }
        if healthy {
            wake_pool(cluster, ctx);
        }
    }
    if let Some(uid) = plan.delete_copies_of {
        // The job is gone, and with it the namespace of its pod and its build cluster: the
        // copies are wherever the operator may make them, in every build cluster it reaches.
        delete_copies_everywhere(ctx, &uid).await?;
    }
    if let Some(event) = event {
        ctx.tell(cluster, event);
    }
    if plan.wake_pool {
        wake_pool(cluster, ctx);
    }
    Ok(match plan.next {
        Next::AwaitChange => Action::await_change(),
        Next::After(after) => Action::requeue(after),
    })
}

/// Adds or removes the finalizer, at the cluster's resourceVersion.
async fn set_finalizer(cluster: &TestCluster, change: Finalizer, ctx: &Ctx) -> Result<(), Error> {
    let finalizers = cluster.finalizers();
    let wanted: Vec<&str> = match change {
        Finalizer::Add => finalizers
            .iter()
            .map(String::as_str)
            .chain([FINALIZER])
            .collect(),
        Finalizer::Remove => finalizers
            .iter()
            .map(String::as_str)
            .filter(|f| *f != FINALIZER)
            .collect(),
    };
    let rv = cluster.resource_version().unwrap_or_default();
    let patch = serde_json::json!({"metadata": {"finalizers": wanted, "resourceVersion": rv}});
    let params = crate::patch_params();
    Api::<TestCluster>::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default())
        .patch(&cluster.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Deletes the kubeconfig copies made for the job with `uid` in every build cluster that is
/// reachable. A cluster that fails is passed over: the others are still cleaned, and its error
/// is returned, so it shows on the TestCluster as a failed reconcile (a Warning Event). The
/// lease is already reclaimed then, so no later pass here retries it: the cluster is marked,
/// and [`super::tidy`] deletes that copy once the cluster is reachable again.
async fn delete_copies_everywhere(ctx: &Ctx, uid: &str) -> Result<(), Error> {
    let namespace = ctx.clusters.cluster_namespace.as_deref();
    let mut failed = None;
    for member in ctx.builds.members() {
        if let Err(e) = delete_kubeconfig_copies(&member.client, namespace, uid).await {
            tracing::warn!(cluster = %member.alias, job_uid = uid, error = %e,
                "deleting a kubeconfig copy");
            member.copies_may_be_left();
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), |e| Err(e.into()))
}

/// Wakes as many of the first jobs waiting in the cluster's pool as it has leasable clusters.
fn wake_pool(cluster: &TestCluster, ctx: &Ctx) {
    let namespace = cluster.namespace().unwrap_or_default();
    let pool = cluster.spec.pool.as_str();
    let clusters = ctx.clusters.view(&namespace);
    let members: Vec<&TestCluster> = clusters.iter().map(|c| c.as_ref()).collect();
    let free = members.iter().filter(|c| leasable(c, pool)).count();
    let jobs = ctx.open.state();
    let pool = Pool {
        namespace: &namespace,
        name: pool,
        default_pod_namespace: &ctx.default_pod_namespace,
    };
    for job in line(&pool, jobs.iter().map(|j| &j.0), &members)
        .into_iter()
        .take(free)
    {
        let _ = ctx.wake_jobs.send(crate::prowjob::stored::key_of(job));
    }
}

#[cfg(test)]
mod tests;
