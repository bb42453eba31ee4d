//! The TestClusterPools: each pool's status (clusters by phase, jobs waiting) kept up to date
//! every few seconds, and growth: the pool's create-cluster job when jobs wait and nothing is
//! vacant.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use prow_api::jobdefinition::JobDefinition;
use prow_api::pool::Pool;
use prow_api::testclusterpool::{
    create_cluster_job, create_cluster_run, pool_status, should_grow, TestClusterPool,
};
use prow_api::{labels, ProwJob, TestCluster};
use prow_runtime::lock;
use tokio_util::sync::CancellationToken;

use super::reconcile::Ctx;
use crate::prowjob::stored::Job;
use crate::MANAGER;

/// How often each TestClusterPool's status (counts by phase, jobs waiting) is brought up to
/// date; it is written only when it changed.
const POOL_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Brings every TestClusterPool's status up to date every few seconds, until `shutdown`:
/// clusters by phase, jobs waiting, the oldest wait. Written only when it changed.
pub(super) async fn keep_pool_statuses(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    if !ctx.clusters.synced.wait().await || !ctx.jobs_synced.wait().await {
        return;
    }
    let mut tick = tokio::time::interval(POOL_STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pools = ctx.clusters.pools.state();
        if pools.is_empty() {
            continue;
        }
        // Only unfinished jobs wait in a line or build a cluster.
        let jobs = ctx.open.state();
        for object in pools {
            let (Some(ns), Some(name)) = (object.namespace(), object.metadata.name.clone()) else {
                continue;
            };
            let clusters = ctx.clusters.view(&ns);
            let members: Vec<&TestCluster> = clusters.iter().map(|c| c.as_ref()).collect();
            let pool = Pool {
                namespace: &ns,
                name: &name,
                default_pod_namespace: &ctx.default_pod_namespace,
            };
            let mut status = pool_status(&pool, &members, jobs.iter().map(|j| &j.0));
            status.observed_generation = object.metadata.generation;
            grow(&object, &ns, &name, &status, &jobs, &ctx).await;
            if object.status.as_ref() == Some(&status) {
                continue;
            }
            let api: Api<TestClusterPool> = Api::namespaced(ctx.client.clone(), &ns);
            let params = crate::patch_params();
            let patch = serde_json::json!({"status": status});
            if let Err(e) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pool = %name, namespace = %ns, error = %e, "writing the pool's status");
            }
        }
    }
}

/// How long a create-cluster job this process made counts as building before the job cache
/// shows it.
const BUILD_GRACE: Duration = Duration::from_secs(30);

/// Runs the pool's create-cluster job when it should grow (`prow_api::testclusterpool::
/// should_grow`).
async fn grow(
    object: &TestClusterPool,
    ns: &str,
    name: &str,
    status: &prow_api::testclusterpool::TestClusterPoolStatus,
    jobs: &[Arc<Job>],
    ctx: &Ctx,
) {
    let jobs_ns = ctx
        .clusters
        .watch_namespace
        .clone()
        .unwrap_or_else(|| ns.to_string());
    let key = format!("{ns}/{name}");
    let building = jobs
        .iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(jobs_ns.as_str()) && !j.is_complete())
        .filter(|j| {
            j.labels()
                .get(labels::CREATES_CLUSTER_FOR)
                .map(String::as_str)
                == Some(name)
        })
        .count();
    let just_made = lock(&ctx.grown)
        .get(&key)
        .is_some_and(|at| at.elapsed() < BUILD_GRACE);
    let building = building + usize::from(just_made && building == 0);
    if !should_grow(&object.spec, status, building) {
        return;
    }
    let job = match create_cluster_job_of(object, &jobs_ns, &ctx.definitions, MANAGER, "") {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(why) => {
            tracing::warn!(pool = %name, namespace = %ns, %why, "the pool's create-cluster job cannot be made");
            crate::events::publish(
                &ctx.recorder,
                object.object_ref(&()),
                true,
                "CannotGrow",
                format!(
                    "{} jobs wait but no cluster can be built: {why}",
                    status.waiting
                ),
                "Grow",
            );
            return;
        }
    };
    match Api::<ProwJob>::namespaced(ctx.client.clone(), &jobs_ns)
        .create(&PostParams::default(), &job)
        .await
    {
        Ok(made) => {
            lock(&ctx.grown).insert(key, std::time::Instant::now());
            tracing::info!(pool = %name, namespace = %ns, job = %made.name_any(), waiting = status.waiting, "growing the pool");
            crate::events::publish(
                &ctx.recorder,
                object.object_ref(&()),
                false,
                "Growing",
                format!(
                    "Create-cluster job {} started: {} jobs wait and no cluster is vacant.",
                    made.name_any(),
                    status.waiting
                ),
                "Grow",
            );
        }
        Err(e) => {
            tracing::warn!(pool = %name, namespace = %ns, error = %e, "starting the pool's create-cluster job")
        }
    }
}

/// The create-cluster job of `pool`, to be made in `jobs_ns`: from its `createClusterJob`, or
/// a run of its `createClusterDefinition` (the JobDefinition of that name in `jobs_ns`);
/// `None` when it has neither.
pub fn create_cluster_job_of(
    pool: &TestClusterPool,
    jobs_ns: &str,
    definitions: &Store<JobDefinition>,
    user: &str,
    branch: &str,
) -> Result<Option<ProwJob>, String> {
    let name = pool.name_any();
    if let Some(template) = &pool.spec.create_cluster_job {
        return create_cluster_job(template, &name, user, branch).map(Some);
    }
    let Some(def_name) = &pool.spec.create_cluster_definition else {
        return Ok(None);
    };
    let def = definitions
        .get(&ObjectRef::new(def_name).within(jobs_ns))
        .ok_or_else(|| {
            format!("its createClusterDefinition {jobs_ns}/{def_name} does not exist")
        })?;
    create_cluster_run(&def, &name, user, branch).map(Some)
}
