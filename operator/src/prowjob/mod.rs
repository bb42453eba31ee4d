//! The ProwJob reconciler: plank's job -> pod -> state loop, with sinker's retention beside it.

pub mod cache;
pub mod ledger;
mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use prow_api::concurrency::Limits;
use prow_api::lifecycle::Policy;
use prow_api::{labels, ProwJob};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;
use crate::metrics::Metrics;
use cache::SlimPod;

pub use reconcile::{error_policy, reconcile};

/// What the reconciler is configured with.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Namespace of jobs' pods when `spec.namespace` is empty.
    pub pod_namespace: String,
    /// Namespace whose ProwJobs are reconciled; `None` for all.
    pub watch_namespace: Option<String>,
    /// Timeouts and revivals.
    pub policy: Policy,
    /// Concurrency limits.
    pub limits: Limits,
    /// Grace period of the pod deletions the operator makes; `None` keeps the pod's own.
    pub pod_deletion_grace_seconds: Option<i64>,
    /// Page size of the initial lists; 0 lists from the API server's watch cache in one go.
    pub list_page_size: u32,
    /// Most reconciles in flight at once; 0 is unlimited.
    pub reconcile_concurrency: u16,
}

/// Everything a reconcile reads or writes through.
pub struct Context {
    /// Client for writes and the rare direct read.
    pub client: Client,
    /// The ProwJobs, finished ones stripped.
    pub jobs: Store<ProwJob>,
    /// The pods labelled `created-by-prow`, stripped.
    pub pods: Store<SlimPod>,
    /// Configuration.
    pub settings: Settings,
    /// Starts in flight and build IDs.
    pub ledger: ledger::Ledger,
    /// Publishes Events on ProwJobs.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Asks for jobs to be reconciled again (waiting jobs when a slot frees).
    pub wake: mpsc::UnboundedSender<ObjectRef<ProwJob>>,
}

/// The job caches, filled by watches, and the streams that feed the controller from them.
pub struct Caches {
    /// ProwJobs.
    pub jobs: Store<ProwJob>,
    /// Prow's pods.
    pub pods: Store<SlimPod>,
}

/// Runs the ProwJob reconciler until `shutdown` is cancelled; marks `ready` once its caches
/// have synced.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: CancellationToken,
) -> (Caches, tokio::task::JoinHandle<()>) {
    let jobs_api: Api<ProwJob> = match &settings.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = |c: watcher::Config| match settings.list_page_size {
        0 => c.any_semantic(),
        n => c.page_size(n),
    };
    let (jobs, jobs_writer) = reflector::store();
    let job_events = watcher(jobs_api, list(watcher::Config::default()))
        .default_backoff()
        .modify(cache::strip_job)
        .reflect(jobs_writer)
        .applied_objects()
        // Finished jobs need no reconcile, except to delete a pod an abort or timeout left
        // running when the operator stopped between its two writes.
        .try_filter(|job| std::future::ready(cache::needs_reconcile(job)));

    let pods_api: Api<SlimPod> = Api::all(client.clone());
    let pod_selector = format!("{}=true", labels::CREATED_BY_PROW);
    let (pods, pods_writer) = reflector::store();
    let pod_events = watcher(
        pods_api,
        list(watcher::Config::default().labels(&pod_selector)),
    )
    .default_backoff()
    .modify(SlimPod::strip)
    .reflect(pods_writer)
    .touched_objects();

    let settings_concurrency = settings.reconcile_concurrency;
    let (wake, woken) = mpsc::unbounded_channel();
    let reporter = Reporter {
        controller: "prow-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        settings,
        ledger: ledger::Ledger::default(),
        recorder: Recorder::new(client, reporter),
        metrics,
        wake,
    });

    let readiness = {
        let (jobs, pods) = (jobs.clone(), pods.clone());
        async move {
            let started = std::time::Instant::now();
            if synced(&jobs).await && synced(&pods).await {
                tracing::info!(
                    jobs = jobs.len(),
                    pods = pods.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "caches synced"
                );
                ready.set_ready();
            }
        }
    };
    tokio::spawn(readiness);

    let controller = Controller::for_stream(job_events, jobs.clone())
        .watches_stream(pod_events, {
            // A pod of a job that is done needs no reconcile (most pods, at start-up).
            let jobs = jobs.clone();
            move |pod| {
                job_of_pod(pod).filter(|r| jobs.get(r).is_some_and(|j| cache::needs_reconcile(&j)))
            }
        })
        .reconcile_on(tokio_stream_from(woken))
        .with_config(
            ControllerConfig::default()
                .debounce(Duration::ZERO)
                .concurrency(settings_concurrency),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller");
            }
        });
    (Caches { jobs, pods }, tokio::spawn(controller))
}

/// Waits until a store has its first full list; false if its writer is gone. Polls afresh
/// rather than waiting once: the store's readiness signal wakes only one of several waiters,
/// and the controller is already one.
pub async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(20), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
}

/// The ProwJob a pod runs: same name, in the namespace its annotation records.
fn job_of_pod(pod: SlimPod) -> Option<ObjectRef<ProwJob>> {
    let namespace = pod.annotations().get(labels::JOB_NAMESPACE)?.clone();
    Some(ObjectRef::new(&pod.name_any()).within(&namespace))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
