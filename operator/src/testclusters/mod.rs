//! The TestClusters, one idea a file: the watch cache both reconcilers read with the lease
//! writes it may not show yet (`cache`), the reconcile (`reconcile`: fetch ->
//! `prow_api::cluster_plan` -> apply), the pools' status and growth (`pools`), the health probe
//! (`readyz`) and the kubeconfig copies (`copies`). This file wires them to the watches.
//!
//! The ProwJob reconciler takes and ends its jobs' leases (`prow_api::plan`). This reconciler
//! does what time or a vanished job ends: a hold, or a `getvacant` lease, whose time is up is
//! released; a lease whose job is gone (deleted, or finished while nothing released it) is
//! reclaimed. It wakes the first jobs waiting in a pool when a cluster of the pool is free, and
//! keeps a finalizer on every cluster so a delete that bypasses the webhook waits for the lease
//! to end.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use prow_api::jobdefinition::JobDefinition;
use prow_api::testclusterpool::TestClusterPool;
use prow_api::{labels, TestCluster};
use prow_runtime::health::Readiness;
use prow_runtime::store::Synced;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::prowjob::stored::Job;
use crate::queue;
use reconcile::Ctx;

mod cache;
mod copies;
mod lease;
mod overlay;
mod pools;
mod readyz;
mod reconcile;

pub use cache::Clusters;
pub use copies::{
    delete_kubeconfig_copies, kubeconfig_copy_labels, tidy, TidyScope, KUBECONFIG_HOLDER,
};
pub use lease::{Changed, Claim, NotWritten, Turn};
pub use pools::create_cluster_job_of;
pub use prow_api::cluster_plan::FINALIZER;

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

/// What the controller reads from the other reconcilers, and how it wakes jobs.
pub struct Shared {
    /// The ProwJob reconciler's store of jobs.
    pub jobs: Store<Job>,
    /// The unfinished ones among them: what leases, lines and pool statuses read.
    pub open: crate::prowjob::open::OpenJobs,
    /// The build clusters, where jobs' kubeconfig copies are.
    pub builds: Arc<crate::buildclusters::BuildClusters>,
    /// Whether that store has listed every job.
    pub jobs_synced: Synced,
    /// Wakes a job (one waiting in a pool's line).
    pub wake_jobs: mpsc::UnboundedSender<ObjectRef<Job>>,
    /// The JobDefinitions, for pools that build clusters with a `createClusterDefinition`.
    pub definitions: Store<JobDefinition>,
}

/// The controller to spawn: runs until `shutdown`, writing through `client`, reading the jobs
/// and definitions from the other reconcilers' stores and waking the jobs of a pool
/// (a job with no `spec.namespace` runs in `default_pod_namespace`); its Events go to
/// `events_out`.
pub fn run(
    client: Client,
    default_pod_namespace: String,
    clusters: Arc<Clusters>,
    events: ClusterEvents,
    shared: Shared,
    events_out: Events,
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
    let Shared {
        jobs: job_store,
        open,
        builds,
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
        open,
        builds,
        jobs_synced,
        recorder: events_out,
        wake_jobs,
        default_pod_namespace,
        cleanups: Mutex::default(),
        grown: Mutex::default(),
    });
    let statuses = pools::keep_pool_statuses(ctx.clone(), shutdown.clone());
    let controller = crate::controller::run(ctx, store, synced, requests, 4, shutdown);
    async move {
        futures::future::join(controller, statuses).await;
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
    S: Stream<Item = watcher::Result<watcher::Event<Job>>> + Send,
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
