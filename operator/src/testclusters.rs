//! The TestClusters: one watch cache both reconcilers read, with the lease writes this process
//! made that the cache may not show yet, and the TestCluster reconciler on the shared work
//! queue.
//!
//! The ProwJob reconciler takes and ends its jobs' leases (`prow_api::plan`). This reconciler
//! does what time or a vanished job ends: a hold, or a `getvacant` lease, whose time is up is
//! released; a lease whose job is gone (deleted, or finished while nothing released it) is
//! reclaimed. It wakes the first jobs waiting in a pool when a cluster of the pool is free, and
//! keeps a finalizer on every cluster so a delete that bypasses the webhook waits for the lease
//! to end. Every write replaces the status at the resourceVersion it was decided on, so a lease
//! taken meanwhile is never overwritten; the rules are `prow_api::lease`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::jobdefinition::JobDefinition;
use prow_api::lease::{transition, with_health, PoolPolicy, Request};
use prow_api::pool::{leasable, line, Pool};
use prow_api::testcluster::SecretKeyRef;
use prow_api::testclusterpool::{
    cleanup_job, create_cluster_job, create_cluster_run, pool_status, should_grow, TestClusterPool,
};
use prow_api::{labels, ClusterPhase, ProwJob, ProwJobState, TestCluster, TestClusterStatus};
use prow_runtime::health::Readiness;
use prow_runtime::lock;
use prow_runtime::store::Synced;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, Action};
use crate::MANAGER;
use overlay::Overlay;

mod overlay;

/// How often a cluster leased to a job checks that its job still exists (a job's deletion or
/// end wakes it sooner).
const HOLDER_RECHECK: Duration = Duration::from_secs(60);

/// The finalizer every TestCluster carries: a delete waits until the cluster is not leased or
/// held.
pub const FINALIZER: &str = "prow-operator.dev/lease";

/// On the copy of a leased cluster's kubeconfig Secret: the UID of the job it was copied for.
pub const KUBECONFIG_HOLDER: &str = "prow-operator.dev/test-cluster-holder";

/// How often each TestClusterPool's status (counts by phase, jobs waiting) is brought up to
/// date; it is written only when it changed.
const POOL_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// The TestClusters as the operator last saw or wrote them, and the pools' settings.
pub struct Clusters {
    /// The watch cache.
    pub store: Store<TestCluster>,
    /// The TestClusterPools, whose settings override the defaults.
    pub pools: Store<TestClusterPool>,
    /// Whether the cache has its first list.
    pub synced: Synced,
    /// The namespace whose ProwJobs the operator reconciles, if only one: clean-up jobs are
    /// created there.
    pub watch_namespace: Option<String>,
    /// The one namespace whose TestClusters are watched, if not all: there the operator reads
    /// and copies kubeconfig Secrets.
    pub cluster_namespace: Option<String>,
    written: Mutex<Overlay<ObjectRef<TestCluster>>>,
    /// One lock per pool (namespace, name): see [`Clusters::turn`].
    turns: Mutex<HashMap<(String, String), Turn>>,
    wake: mpsc::UnboundedSender<ObjectRef<TestCluster>>,
}

/// One pool's lock; see [`Clusters::turn`].
type Turn = Arc<tokio::sync::Mutex<()>>;

/// A lease write in flight; see [`Clusters::claim`].
pub struct Claim {
    clusters: Arc<Clusters>,
    key: ObjectRef<TestCluster>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.clusters.written().unclaim(&self.key);
    }
}

/// The watch that fills [`Clusters`], and the requests to look at a cluster again; for
/// [`run`].
pub struct ClusterEvents {
    events: futures::stream::BoxStream<'static, watcher::Result<watcher::Event<TestCluster>>>,
    pool_events: futures::stream::BoxStream<'static, ()>,
    woken: mpsc::UnboundedReceiver<ObjectRef<TestCluster>>,
}

/// Watches the TestClusters and TestClusterPools (of `cluster_namespace`, or all) through
/// `fail_fast`; clean-up and create-cluster jobs go to `watch_namespace` (the ProwJobs'), or
/// the cluster's own namespace when that is unset. The cache fills once [`run`] polls the
/// events.
pub fn watch(
    fail_fast: Client,
    cluster_namespace: Option<&str>,
    watch_namespace: Option<&str>,
    readiness: Readiness,
) -> (Arc<Clusters>, ClusterEvents) {
    let (api, pools_api): (Api<TestCluster>, Api<TestClusterPool>) = match cluster_namespace {
        Some(ns) => (
            Api::namespaced(fail_fast.clone(), ns),
            Api::namespaced(fail_fast, ns),
        ),
        None => (Api::all(fail_fast.clone()), Api::all(fail_fast)),
    };
    let (store, writer) = reflector::store();
    let events = prow_runtime::watch::watch(
        api,
        watcher::Config::default(),
        "testclusters",
        readiness.clone(),
    )
    .reflect(writer);
    let (pools, pools_writer) = reflector::store();
    let pool_events = prow_runtime::watch::watch(
        pools_api,
        watcher::Config::default(),
        "testclusterpools",
        readiness,
    )
    .reflect(pools_writer)
    .filter_map(|_| std::future::ready(None::<()>))
    .boxed();
    let (events, synced) = prow_runtime::store::signal(events);
    let (wake, woken) = mpsc::unbounded_channel();
    let clusters = Arc::new(Clusters {
        store,
        pools,
        synced,
        watch_namespace: watch_namespace.map(str::to_string),
        cluster_namespace: cluster_namespace.map(str::to_string),
        written: Mutex::default(),
        turns: Mutex::default(),
        wake,
    });
    (
        clusters,
        ClusterEvents {
            events: events.boxed(),
            pool_events,
            woken,
        },
    )
}

impl Clusters {
    /// Clusters from a store filled by hand (tests).
    pub fn from_store(store: Store<TestCluster>) -> Arc<Self> {
        let (wake, _) = mpsc::unbounded_channel();
        Arc::new(Self {
            store,
            pools: reflector::store().0,
            synced: Synced::already(),
            watch_namespace: None,
            cluster_namespace: None,
            written: Mutex::default(),
            turns: Mutex::default(),
            wake,
        })
    }

    /// The clusters of `namespace`: the cached copy, or this process's own later write while
    /// the cache still shows the copy that write replaced.
    pub fn view(&self, namespace: &str) -> Vec<Arc<TestCluster>> {
        let cached: Vec<Arc<TestCluster>> = self
            .store
            .state()
            .into_iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let mut written = self.written();
        if written.is_empty() {
            return cached;
        }
        cached
            .into_iter()
            .map(|c| written.show(&ObjectRef::from_obj(&*c), c))
            .collect()
    }

    /// This process's turn to decide who takes a cluster of pool `pool` of `namespace`: held
    /// from reading [`Clusters::view`] until the decision is claimed ([`Clusters::claim`]), so
    /// each decision sees the ones before it. Two jobs deciding at once on the same view would
    /// pick the same cluster; the second write would be refused (never a second holder) and
    /// decided again later, which made one hand-off in ten wait 100 ms in the pool benchmark.
    pub async fn turn(&self, namespace: &str, pool: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let key = (namespace.to_string(), pool.to_string());
        let turn = lock(&self.turns).entry(key).or_default().clone();
        turn.lock_owned().await
    }

    /// Shows `cluster` (the status about to be written, at the version it was decided on) in
    /// [`Clusters::view`] until the returned claim is dropped, which is once the write is done
    /// and [`Clusters::write`] recorded it (or failed).
    pub fn claim(self: &Arc<Self>, cluster: &TestCluster) -> Claim {
        let key = ObjectRef::from_obj(cluster);
        self.written().claim(key.clone(), Arc::new(cluster.clone()));
        Claim {
            clusters: self.clone(),
            key,
        }
    }

    /// The settings of pool `pool` of `namespace`: its TestClusterPool's, or the defaults (also
    /// when its settings do not read, which admission refuses).
    pub fn policy(&self, namespace: &str, pool: &str) -> PoolPolicy {
        match self.pool(namespace, pool).map(|p| p.spec.policy()) {
            Some(Ok(policy)) => policy,
            Some(Err(bad)) => {
                tracing::warn!(namespace, pool, error = %bad, "pool settings do not read; using the defaults");
                PoolPolicy::default()
            }
            None => PoolPolicy::default(),
        }
    }

    /// The TestClusterPool of pool `pool` of `namespace`, if there is one.
    pub fn pool(&self, namespace: &str, pool: &str) -> Option<Arc<TestClusterPool>> {
        self.pools.get(&ObjectRef::new(pool).within(namespace))
    }

    /// Replaces `cluster`'s status with the one it carries, at the resourceVersion it carries
    /// (a lease written meanwhile makes this a 409 Conflict, never a second holder). Returns
    /// the cluster as written.
    pub async fn write(
        &self,
        client: &Client,
        cluster: &TestCluster,
    ) -> Result<TestCluster, kube::Error> {
        let ns = cluster.namespace().unwrap_or_default();
        let api: Api<TestCluster> = Api::namespaced(client.clone(), &ns);
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        let written = api
            .replace_status(&cluster.name_any(), &params, cluster)
            .await?;
        if let Some(based_on) = cluster.metadata.resource_version.clone() {
            self.written().wrote(
                ObjectRef::from_obj(cluster),
                based_on,
                Arc::new(written.clone()),
            );
        }
        Ok(written)
    }

    /// Replaces `cluster`'s status with `status`, at the resourceVersion `cluster` was read at
    /// (see [`Clusters::write`]).
    pub async fn set_status(
        &self,
        client: &Client,
        cluster: &TestCluster,
        status: TestClusterStatus,
    ) -> Result<TestCluster, kube::Error> {
        let mut updated = cluster.clone();
        updated.status = Some(status);
        self.write(client, &updated).await
    }

    /// Asks for the cluster leased to the job with `uid`, if any, to be looked at: the job is
    /// gone.
    pub fn holder_gone(&self, uid: &str) {
        for cluster in self.store.state() {
            let holder = cluster
                .status
                .as_ref()
                .and_then(|s| s.lease.as_ref())
                .and_then(|l| l.holder_uid.as_deref());
            if holder == Some(uid) {
                let _ = self.wake.send(ObjectRef::from_obj(&*cluster));
            }
        }
    }

    fn written(&self) -> MutexGuard<'_, Overlay<ObjectRef<TestCluster>>> {
        lock(&self.written)
    }
}

/// Deletes the copies of a cluster's kubeconfig made for the job with `uid`, in `namespace`
/// or, when the job is gone and its pod namespace unknown, wherever they are.
pub async fn delete_kubeconfig_copies(
    client: &Client,
    namespace: Option<&str>,
    uid: &str,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("{KUBECONFIG_HOLDER}={uid}");
    for secret in api.list(&ListParams::default().labels(&selector)).await? {
        let ns = secret.namespace().unwrap_or_default();
        let result = Api::<Secret>::namespaced(client.clone(), &ns)
            .delete(&secret.name_any(), &DeleteParams::default())
            .await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the controller reads from the other reconcilers, and how it wakes jobs.
pub struct Shared {
    /// The ProwJob reconciler's store of jobs.
    pub jobs: Store<ProwJob>,
    /// Whether that store has listed every job.
    pub jobs_synced: Synced,
    /// Wakes a job (one waiting in a pool's line).
    pub wake_jobs: mpsc::UnboundedSender<ObjectRef<ProwJob>>,
    /// The JobDefinitions, for pools that build clusters with a `createClusterDefinition`.
    pub definitions: Store<JobDefinition>,
}

/// The controller to spawn: runs until `shutdown`, writing through `client`, reading the jobs
/// and definitions from the other reconcilers' stores and waking the jobs of a pool
/// (a job with no `spec.namespace` runs in `default_pod_namespace`).
pub fn run(
    client: Client,
    default_pod_namespace: String,
    clusters: Arc<Clusters>,
    events: ClusterEvents,
    shared: Shared,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let ClusterEvents {
        events,
        pool_events,
        woken,
    } = events;
    let requests = futures::stream::select(
        queue::requests_of(events, |_: &TestCluster| true).boxed(),
        futures::stream::select(
            queue::requests_from(woken).boxed(),
            pool_events.filter_map(|()| std::future::ready(None)),
        ),
    );
    let recorder = crate::events::recorder(client.clone());
    let Shared {
        jobs: job_store,
        jobs_synced,
        wake_jobs,
        definitions,
    } = shared;
    let store = clusters.store.clone();
    let synced = clusters.synced.clone();
    let ctx = Arc::new(Ctx {
        client,
        definitions,
        clusters,
        jobs: job_store,
        jobs_synced,
        recorder,
        wake_jobs,
        default_pod_namespace,
        cleanups: Mutex::default(),
        grown: Mutex::default(),
    });
    let statuses = keep_pool_statuses(ctx.clone(), shutdown.clone());
    let controller = queue::run(store, synced, requests, 4, shutdown, move |cluster| {
        let ctx = ctx.clone();
        async move {
            // Whether a job is gone can only be told from a full list of jobs.
            if !ctx.jobs_synced.wait_at_most(Duration::from_secs(1)).await {
                return Action::retry();
            }
            match reconcile(&cluster, &ctx).await {
                Ok(action) => action,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Action::requeue(Duration::from_millis(100))
                }
                Err(e) => {
                    tracing::warn!(cluster = %cluster.name_any(), error = %e, "reconciling test cluster");
                    Action::retry()
                }
            }
        }
    });
    async move {
        futures::future::join(controller, statuses).await;
    }
}

/// Brings every TestClusterPool's status up to date every few seconds, until `shutdown`:
/// clusters by phase, jobs waiting, the oldest wait. Written only when it changed.
async fn keep_pool_statuses(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    if !ctx.clusters.synced.wait().await || !ctx.jobs_synced.wait().await {
        return;
    }
    let mut tick = tokio::time::interval(POOL_STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let jobs = ctx.jobs.state();
        for object in ctx.clusters.pools.state() {
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
            let mut status = pool_status(&pool, &members, jobs.iter().map(|j| j.as_ref()));
            status.observed_generation = object.metadata.generation;
            grow(&object, &ns, &name, &status, &jobs, &ctx).await;
            if object.status.as_ref() == Some(&status) {
                continue;
            }
            let api: Api<TestClusterPool> = Api::namespaced(ctx.client.clone(), &ns);
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
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
    jobs: &[Arc<ProwJob>],
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
pub(crate) fn create_cluster_job_of(
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

struct Ctx {
    client: Client,
    definitions: Store<JobDefinition>,
    clusters: Arc<Clusters>,
    jobs: Store<ProwJob>,
    jobs_synced: Synced,
    recorder: crate::events::Events,
    wake_jobs: mpsc::UnboundedSender<ObjectRef<ProwJob>>,
    default_pod_namespace: String,
    /// Clean-up jobs made, by cluster (`namespace/name`), until their name is in the
    /// cluster's status.
    cleanups: Mutex<HashMap<String, String>>,
    /// When this process last made a pool's create-cluster job, by pool (`namespace/name`).
    grown: Mutex<HashMap<String, std::time::Instant>>,
}

impl Ctx {
    /// Publishes an Event on `cluster`, without holding up the reconcile.
    fn tell(&self, cluster: &TestCluster, warning: bool, reason: &str, note: String, action: &str) {
        crate::events::publish(
            &self.recorder,
            cluster.object_ref(&()),
            warning,
            reason,
            note,
            action,
        );
    }
}

/// Fetch (the cluster as last written, the jobs) -> decide (`prow_api::lease`) -> apply (one
/// write at the cluster's resourceVersion).
async fn reconcile(cached: &TestCluster, ctx: &Ctx) -> Result<Action, kube::Error> {
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
    let phase = status.phase.unwrap_or(ClusterPhase::Vacant);
    let in_use = matches!(phase, ClusterPhase::Leased | ClusterPhase::Held);
    if let Some(action) = keep_finalizer(&cluster, in_use, ctx).await? {
        return Ok(action);
    }
    let policy = ctx.clusters.policy(&ns, &cluster.spec.pool);
    if phase == ClusterPhase::Cleaning {
        return clean_up(&cluster, &status, ctx).await;
    }
    let can_check = policy.health.is_some() && cluster.spec.kubeconfig_secret_ref.is_some();
    let waits_for_check = status
        .conditions
        .iter()
        .any(|c| c.type_ == prow_api::lease::HEALTHY && c.status == "Unknown");
    if phase == ClusterPhase::Vacant && waits_for_check && !can_check {
        // Its pool no longer checks health (or it has no kubeconfig to check with).
        let mut cleared = status.clone();
        cleared
            .conditions
            .retain(|c| c.type_ != prow_api::lease::HEALTHY);
        ctx.clusters
            .set_status(&ctx.client, &cluster, cleared)
            .await?;
        return Ok(Action::await_change());
    }
    if let (ClusterPhase::Vacant, None, Some(health), Some(secret)) = (
        phase,
        cluster.metadata.deletion_timestamp.as_ref(),
        policy.health,
        cluster.spec.kubeconfig_secret_ref.as_ref(),
    ) {
        // A vacant cluster of a pool with a health check: checked when it becomes vacant and
        // every interval after; a failing one is skipped until it answers again. One never
        // checked is marked as being checked first, so no job leases it before its check (the
        // write brings it back here).
        if let Some(marked) = prow_api::lease::before_first_check(&status, Timestamp::now()) {
            ctx.clusters
                .set_status(&ctx.client, &cluster, marked)
                .await?;
            return Ok(Action::await_change());
        }
        let result = readyz(&ctx.client, &ns, secret, health.timeout).await;
        let healthy = result.is_ok();
        if let Some(new) = with_health(&status, result.clone(), Timestamp::now()) {
            ctx.clusters.set_status(&ctx.client, &cluster, new).await?;
            let (warning, reason, note) = match result {
                Ok(()) => (false, "HealthCheckPassed", "/readyz answered.".to_string()),
                Err(why) => (true, "HealthCheckFailed", why),
            };
            ctx.tell(&cluster, warning, reason, note, "HealthCheck");
        }
        if healthy {
            wake_pool(&ns, &cluster.spec.pool, ctx);
        }
        return Ok(Action::requeue(health.interval));
    }
    if leasable(&cluster, &cluster.spec.pool) {
        wake_pool(&ns, &cluster.spec.pool, ctx);
        return Ok(Action::await_change());
    }
    let Some(lease) = status.lease.clone() else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let (request, reason) = match (phase, lease.holder_uid.as_deref()) {
        (ClusterPhase::Leased, Some(uid)) => {
            let alive = ctx
                .jobs
                .state()
                .iter()
                .any(|j| j.metadata.uid.as_deref() == Some(uid) && !j.is_complete());
            if alive {
                return Ok(Action::requeue(HOLDER_RECHECK));
            }
            let request = Request::Reclaim {
                job_uid: uid.to_string(),
            };
            (request, "Reclaimed")
        }
        _ => match lease.until.as_ref() {
            Some(until) if until.0 > now => {
                let left = Duration::try_from(until.0.duration_since(now)).unwrap_or_default();
                return Ok(Action::requeue(left));
            }
            Some(_) => (Request::Expire, "Expired"),
            None => return Ok(Action::await_change()),
        },
    };
    let new = match transition(&name, &status, &request, &policy, now) {
        Ok(Some(new)) => new,
        Ok(None) => return Ok(Action::await_change()),
        Err(refused) => {
            tracing::debug!(cluster = %name, %refused, "nothing to end");
            return Ok(Action::await_change());
        }
    };
    ctx.clusters.set_status(&ctx.client, &cluster, new).await?;
    if let Request::Reclaim { job_uid } = &request {
        // The job is gone, and with it the namespace of its pod: the copies are wherever the
        // operator may make them.
        let namespace = ctx.clusters.cluster_namespace.as_deref();
        delete_kubeconfig_copies(&ctx.client, namespace, job_uid).await?;
    }
    let note = match reason {
        "Reclaimed" => format!("Lease of {} ended: the job is gone.", lease.holder),
        _ => format!("The hold or lease of {} ran out.", lease.holder),
    };
    ctx.tell(&cluster, false, reason, note, "Release");
    Ok(Action::await_change())
}

/// How often a Cleaning cluster looks at its clean-up job by itself (the job's end wakes it
/// sooner).
const CLEANUP_RECHECK: Duration = Duration::from_secs(30);

/// A Cleaning cluster: starts its pool's clean-up job once for this clean-up (its name goes
/// into the cluster's `status.cleanupJob`), and when the job ends makes the cluster Vacant
/// (success) or Disabled with the reason (any other end).
async fn clean_up(
    cluster: &TestCluster,
    status: &TestClusterStatus,
    ctx: &Ctx,
) -> Result<Action, kube::Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", cluster.name_any());
    let jobs_ns = ctx
        .clusters
        .watch_namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    let Some(name) = status.cleanup_job.clone() else {
        let template = ctx
            .clusters
            .pool(&ns, &cluster.spec.pool)
            .and_then(|p| p.spec.cleanup_job.clone());
        let Some(template) = template else {
            // The pool no longer cleans its clusters.
            let note = "The pool has no clean-up job any more.".to_string();
            return finish_cleanup(cluster, status, Request::CleanedUp, "CleanedUp", note, ctx)
                .await;
        };
        // A job this process made whose name did not reach the status (a lost race) is used,
        // not made twice.
        let made = lock(&ctx.cleanups).get(&key).cloned();
        let made = match made {
            Some(made) => made,
            None => match cleanup_job(&template, cluster) {
                Ok(job) => {
                    let made = Api::<ProwJob>::namespaced(ctx.client.clone(), &jobs_ns)
                        .create(&PostParams::default(), &job)
                        .await?
                        .name_any();
                    lock(&ctx.cleanups).insert(key.clone(), made.clone());
                    let note = format!("Clean-up job {made} started.");
                    ctx.tell(cluster, false, "CleanupStarted", note, "Cleanup");
                    made
                }
                Err(why) => {
                    let reason = format!("its pool's clean-up job cannot be made: {why}");
                    let request = Request::Disable {
                        reason: reason.clone(),
                    };
                    return finish_cleanup(cluster, status, request, "CleanupFailed", reason, ctx)
                        .await;
                }
            },
        };
        let recorded = TestClusterStatus {
            cleanup_job: Some(made),
            ..status.clone()
        };
        ctx.clusters
            .set_status(&ctx.client, cluster, recorded)
            .await?;
        lock(&ctx.cleanups).remove(&key);
        return Ok(Action::requeue(CLEANUP_RECHECK));
    };
    let job = match ctx.jobs.get(&ObjectRef::new(&name).within(&jobs_ns)) {
        Some(job) => Some(job),
        // Not in the cache: just made, or deleted.
        None => Api::<ProwJob>::namespaced(ctx.client.clone(), &jobs_ns)
            .get_opt(&name)
            .await?
            .map(Arc::new),
    };
    let request = match job {
        None => Request::Disable {
            reason: format!("clean-up job {name} is gone before it ended"),
        },
        Some(job) if !job.is_complete() => return Ok(Action::requeue(CLEANUP_RECHECK)),
        Some(job) if job.state() == ProwJobState::Success => Request::CleanedUp,
        Some(job) => Request::Disable {
            reason: format!(
                "clean-up job {name} ended {:?}: {}",
                job.state(),
                job.status
                    .as_ref()
                    .map(|s| s.description.as_str())
                    .unwrap_or_default()
            ),
        },
    };
    let (reason, note) = match &request {
        Request::Disable { reason } => ("CleanupFailed", reason.clone()),
        _ => ("CleanedUp", format!("Clean-up job {name} succeeded.")),
    };
    finish_cleanup(cluster, status, request, reason, note, ctx).await
}

/// Writes the end of a clean-up (Vacant, or Disabled) at the version it was decided on.
async fn finish_cleanup(
    cluster: &TestCluster,
    status: &TestClusterStatus,
    request: Request,
    reason: &str,
    note: String,
    ctx: &Ctx,
) -> Result<Action, kube::Error> {
    let name = cluster.name_any();
    let policy = PoolPolicy::default();
    if let Ok(Some(new)) = transition(&name, status, &request, &policy, Timestamp::now()) {
        ctx.clusters.set_status(&ctx.client, cluster, new).await?;
        let warning = matches!(request, Request::Disable { .. });
        ctx.tell(cluster, warning, reason, note, "Cleanup");
    }
    Ok(Action::await_change())
}

/// Whether the cluster's API answers `/readyz` within `timeout`, through the kubeconfig in
/// its Secret; why not, for its condition.
async fn readyz(
    client: &Client,
    namespace: &str,
    secret: &SecretKeyRef,
    timeout: Duration,
) -> Result<(), String> {
    let read = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&secret.name)
        .await
        .map_err(|e| format!("its kubeconfig Secret {} cannot be read: {e}", secret.name))?;
    let bytes = read
        .data
        .as_ref()
        .and_then(|d| d.get(&secret.key))
        .ok_or_else(|| {
            format!(
                "its kubeconfig Secret {} has no key {:?}",
                secret.name, secret.key
            )
        })?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("its kubeconfig in Secret {} is not text", secret.name))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| format!("its kubeconfig does not read: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("its kubeconfig is not usable: {e}"))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    let cluster = Client::try_from(config).map_err(|e| format!("no client for it: {e}"))?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, cluster.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("/readyz failed: {e}")),
        Err(_) => Err(format!(
            "/readyz did not answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}

/// Adds the finalizer to a cluster that lacks it; lets a cluster being deleted go once nothing
/// holds it. `Some` when that was all this pass does.
async fn keep_finalizer(
    cluster: &TestCluster,
    in_use: bool,
    ctx: &Ctx,
) -> Result<Option<Action>, kube::Error> {
    let finalizers = cluster.finalizers();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    let deleting = cluster.metadata.deletion_timestamp.is_some();
    let api: Api<TestCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    let rv = cluster.resource_version().unwrap_or_default();
    match (deleting, has) {
        (false, false) => {
            let mut all = finalizers.to_vec();
            all.push(FINALIZER.into());
            let patch = serde_json::json!({"metadata": {"finalizers": all, "resourceVersion": rv}});
            api.patch(&cluster.name_any(), &params, &Patch::Merge(&patch))
                .await?;
            Ok(None)
        }
        (true, true) if !in_use => {
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            let patch =
                serde_json::json!({"metadata": {"finalizers": rest, "resourceVersion": rv}});
            api.patch(&cluster.name_any(), &params, &Patch::Merge(&patch))
                .await?;
            Ok(Some(Action::await_change()))
        }
        // Deleted while in use: it goes when its lease or hold ends (that write wakes it).
        (true, _) if in_use => Ok(None),
        (true, _) => Ok(Some(Action::await_change())),
        (false, true) => Ok(None),
    }
}

/// Wakes as many of the first jobs waiting in the pool as it has leasable clusters.
fn wake_pool(namespace: &str, pool: &str, ctx: &Ctx) {
    let clusters = ctx.clusters.view(namespace);
    let members: Vec<&TestCluster> = clusters.iter().map(|c| c.as_ref()).collect();
    let free = members.iter().filter(|c| leasable(c, pool)).count();
    let jobs = ctx.jobs.state();
    let pool = Pool {
        namespace,
        name: pool,
        default_pod_namespace: &ctx.default_pod_namespace,
    };
    for job in line(&pool, jobs.iter().map(|j| j.as_ref()), &members)
        .into_iter()
        .take(free)
    {
        let _ = ctx.wake_jobs.send(ObjectRef::from_obj(job));
    }
}

/// The jobs that end a lease by being deleted, and the clean-up jobs that end, from the job
/// watch: each asks for its cluster, if any, to be looked at. (A job that finishes ends its own
/// lease; one finished by someone else is found by the cluster's periodic look at its holder.)
pub fn notice_gone_holders<S>(
    clusters: Arc<Clusters>,
    events: S,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream<Item = watcher::Result<watcher::Event<ProwJob>>> + Send,
{
    events.inspect(move |event| {
        match event {
            Ok(watcher::Event::Delete(job)) => {
                if let Some(uid) = job.metadata.uid.as_deref() {
                    clusters.holder_gone(uid);
                }
            }
            // A clean-up job that ended: its cluster is Vacant again, or disabled.
            Ok(watcher::Event::Apply(job)) if job.is_complete() => {
                if let Some(cluster) = job.labels().get(labels::CLEANS) {
                    let _ = clusters
                        .wake
                        .send(ObjectRef::new(cluster).within(&job.spec.namespace));
                }
            }
            _ => {}
        }
    })
}

/// The label selector of the kubeconfig copies made for a job.
pub fn kubeconfig_copy_labels(uid: &str) -> std::collections::BTreeMap<String, String> {
    [
        (labels::CREATED_BY_PROW.to_string(), "true".to_string()),
        (KUBECONFIG_HOLDER.to_string(), uid.to_string()),
    ]
    .into_iter()
    .collect()
}
