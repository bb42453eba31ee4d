//! The ProwJob reconciler: plank's job -> pod -> state loop, with sinker's retention beside it.

pub mod evictions;
mod lease;
pub mod ledger;
pub mod open;
mod reconcile;
pub mod stored;
mod uploads;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use prow_api::concurrency::Limits;
use prow_api::labels;
use prow_api::lifecycle::Policy;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buildclusters::{BuildClusters, Member};
use crate::metrics::Metrics;
use crate::testclusters::{notice_gone_holders, Clusters};
use prow_api::pod_view::{PodView, WirePod};
use prow_runtime::health::Readiness;
use stored::{Job, WireJob};

use prow_runtime::store::{self, Synced};
pub use reconcile::reconcile;

/// Longest the list of all jobs waits for the pods' first list (ahead of it, with the
/// unfinished jobs, for readiness).
const HISTORY_WAITS_FOR_PODS: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// Image of the pod utilities a decorated job's `utility_images` leaves out.
    pub utility_image: String,
    /// Go template of a run's `status.url` (upstream's `job_url_template`); empty: no link.
    pub job_url_template: String,
    /// How long finished jobs and their pods are kept.
    pub retention: prow_api::retention::Retention,
}

impl Settings {
    /// The one namespace the operator's pods, TestClusters and kubeconfig Secrets live in, when
    /// it watches one namespace's jobs (`--watch-namespace`): then it needs no access to pods
    /// or Secrets elsewhere, and a job whose `spec.namespace` names another namespace errors
    /// with the reason. `None`: jobs may run pods anywhere, and all namespaces are watched.
    pub fn pod_watch_namespace(&self) -> Option<&str> {
        self.watch_namespace
            .as_ref()
            .map(|_| self.pod_namespace.as_str())
    }
}

/// Everything a reconcile reads or writes through.
pub struct Context {
    /// Client for writes and the rare direct read.
    pub client: Client,
    /// The ProwJobs, finished ones stripped.
    pub jobs: Store<Job>,
    /// The unfinished ones among them.
    pub open: open::OpenJobs,
    /// The build clusters, each with its job pods (stripped), its evictions and budgets.
    pub builds: Arc<BuildClusters>,
    /// Configuration.
    pub settings: Settings,
    /// What this process did that the caches may not show yet: starts, pods, status writes.
    pub ledger: ledger::Ledger,
    /// Publishes Events on ProwJobs.
    pub recorder: crate::events::Events,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Asks for jobs to be reconciled again (waiting jobs when a slot frees).
    pub wake: mpsc::UnboundedSender<ObjectRef<Job>>,
    /// The TestClusters jobs lease.
    pub clusters: Arc<Clusters>,
}

/// The job caches, filled by watches.
#[derive(Clone)]
pub struct Caches {
    /// ProwJobs.
    pub jobs: Store<Job>,
    /// The unfinished ones among them.
    pub open: open::OpenJobs,
    /// Prow's pods in the operator's own cluster.
    pub pods: Store<PodView>,
    /// The build clusters, that one among them.
    pub builds: Arc<BuildClusters>,
    /// When finished jobs and their pods fall due for deletion.
    pub schedule: crate::retention::Schedule,
    /// Whether the jobs' store has its first full list.
    pub jobs_synced: Synced,
    /// Whether the jobs' store has the jobs not marked completed (at the latest with the full
    /// list): enough to start, limit and follow jobs.
    pub open_synced: Synced,
    /// Whether the pods' store has its first list.
    pub pods_synced: Synced,
    /// Asks for a job to be reconciled (the first jobs of a pool, when a cluster frees).
    pub wake: mpsc::UnboundedSender<ObjectRef<Job>>,
}

impl Caches {
    /// Waits until both caches have their first full list; false if a watch is gone.
    pub async fn synced(&self) -> bool {
        self.jobs_synced.wait().await && self.pods_synced.wait().await
    }

    /// Waits until the unfinished jobs and the pods are listed: enough to reconcile jobs.
    pub async fn open_synced(&self) -> bool {
        self.open_synced.wait().await && self.pods_synced.wait().await
    }
}

/// The ProwJob reconciler, writing through `client` and watching through `fail_fast`: its
/// caches, and the controller to spawn, which runs until `shutdown` is cancelled (it ends
/// early only if it fails). Marks `ready` once the caches have synced; its watches count for
/// `ready` from then on.
// Each argument is one thing the controller shares with another part of the process.
#[allow(clippy::too_many_arguments)]
pub fn run(
    client: Client,
    fail_fast: Client,
    settings: Settings,
    clusters: Arc<Clusters>,
    metrics: Arc<Metrics>,
    events: crate::events::Events,
    definition_runs: crate::definitions::RunEvents,
    definition_index: crate::definitions::RunIndex,
    ready: Readiness,
    shutdown: CancellationToken,
) -> (
    Caches,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let jobs_api: Api<WireJob> = match &settings.watch_namespace {
        Some(ns) => Api::namespaced(fail_fast.clone(), ns),
        None => Api::all(fail_fast.clone()),
    };
    let page_size = settings.list_page_size;
    let list = move |c| prow_runtime::watch::first_list(c, page_size);
    let (jobs, jobs_writer) = reflector::store();
    let job_watch = {
        let ready = ready.clone();
        move |config| {
            prow_runtime::watch::converted::<_, Job, _>(prow_runtime::watch::watch(
                jobs_api.clone(),
                list(config),
                "prowjobs",
                ready.clone(),
            ))
        }
    };
    // The jobs not marked completed are listed first: a short list, after which (with the
    // pods) the operator is ready. The list of all jobs, a large installation's history, is
    // asked for once the pods are listed too, so that it does not slow the lists readiness
    // waits for on the same API server.
    let (pods_listed, pods_listed_rx) = tokio::sync::oneshot::channel::<Synced>();
    let all_jobs = {
        let job_watch = job_watch.clone();
        futures::stream::once(async move {
            if let Ok(pods) = pods_listed_rx.await {
                // Bounded: a pod list that keeps failing holds up no definition or retention.
                pods.wait_at_most(HISTORY_WAITS_FOR_PODS).await;
            }
        })
        .flat_map(move |()| job_watch(watcher::Config::default()))
    };
    let (job_events, open_synced) = store::part_first(
        all_jobs,
        job_watch(watcher::Config::default().labels(&format!("{}!=true", labels::COMPLETED))),
    );
    let job_events = prow_runtime::reflect::reflect(jobs_writer, job_events);
    let open = open::OpenJobs::new(jobs.clone());
    let job_events = open.follow(job_events);
    let schedule = crate::retention::Schedule::new(
        jobs.clone(),
        settings.retention,
        settings.pod_namespace.clone(),
        settings.watch_namespace.clone(),
    );
    let job_events = schedule.follow_jobs(job_events);
    let job_events = notice_gone_holders(clusters.clone(), job_events);
    let job_events = crate::definitions::notice_runs(definition_runs, definition_index, job_events);
    let (job_events, jobs_synced) = store::signal(job_events);

    let pods_api: Api<WirePod> = match settings.pod_watch_namespace() {
        Some(ns) => Api::namespaced(fail_fast, ns),
        None => Api::all(fail_fast),
    };
    let pod_selector = format!("{}=true", labels::CREATED_BY_PROW);
    let (pods, pods_writer) = reflector::store();
    let pod_events = prow_runtime::watch::converted::<_, PodView, _>(prow_runtime::watch::watch(
        pods_api,
        list(watcher::Config::default().labels(&pod_selector)),
        "pods",
        ready.clone(),
    ));
    let pod_events = prow_runtime::reflect::reflect(pods_writer, pod_events).inspect({
        let schedule = schedule.clone();
        move |event| {
            if let Ok(event) = event {
                schedule.observe_pod(prow_api::buildcluster::DEFAULT_ALIAS, event);
            }
        }
    });
    let (pod_events, pods_synced) = store::signal(pod_events);
    let _ = pods_listed.send(pods_synced.clone());
    let pod_events = pod_events.touched_objects();

    let settings_concurrency = settings.reconcile_concurrency;
    let (wake, woken) = mpsc::unbounded_channel();
    let local = Arc::new(Member::local(
        client.clone(),
        pods.clone(),
        pods_synced.clone(),
        evictions::Budgets::new(client.clone()),
    ));
    let builds = Arc::new(BuildClusters::new(local, jobs.clone(), wake.clone()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        jobs: jobs.clone(),
        open: open.clone(),
        builds: builds.clone(),
        settings,
        ledger: ledger::Ledger::default(),
        recorder: events,
        metrics,
        wake: wake.clone(),
        clusters,
    });

    let caches = Caches {
        jobs: jobs.clone(),
        open,
        pods: pods.clone(),
        builds,
        schedule,
        jobs_synced: jobs_synced.clone(),
        open_synced: open_synced.clone(),
        pods_synced,
        wake,
    };
    let readiness = {
        let caches = caches.clone();
        async move {
            let started = std::time::Instant::now();
            if caches.open_synced().await {
                tracing::info!(
                    open_jobs = caches.open.len(),
                    pods = caches.pods.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "unfinished jobs and pods listed"
                );
                ready.set_ready();
            }
            if caches.synced().await {
                prow_runtime::process::trim_heap();
                tracing::info!(
                    jobs = caches.jobs.len(),
                    pods = caches.pods.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "caches synced"
                );
            }
        }
    };
    tokio::spawn(readiness);

    // Three things ask for a job to be reconciled: its own events, its pod's events (only
    // while the job needs a reconcile: most pods at start-up belong to finished jobs), and
    // wake-ups of waiting jobs when a slot frees.
    // Finished jobs need no reconcile once marked completed; before, one may have a pod an abort
    // or timeout left running when the operator stopped between its two writes, and the mark
    // itself (both in the queue's later lane). Watch errors are logged by the readiness gate.
    let job_requests = crate::queue::requests_of(job_events, Job::needs_reconcile);
    let pod_requests = pod_events.filter_map({
        let jobs = jobs.clone();
        move |event| {
            std::future::ready(match event {
                Ok(pod) => {
                    job_of_pod(pod).filter(|r| jobs.get(r).is_some_and(|j| j.needs_reconcile()))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watching pods");
                    None
                }
            })
        }
    });
    // An eviction the budget records wakes the job of the evicted pod.
    let eviction_requests = {
        let ctx = ctx.clone();
        let pods = pods.clone();
        futures::stream::once(async move {
            let local = ctx.builds.local().clone();
            let resource = local.budgets.resource().await;
            let namespace = ctx.settings.pod_watch_namespace().map(str::to_string);
            evictions::watch_evictions(ctx.client.clone(), namespace, resource).filter_map(
                move |(namespace, pod, at)| {
                    let news = local
                        .evictions
                        .record(&namespace, &pod, at, Timestamp::now());
                    let job = pods
                        .get(&ObjectRef::new(&pod).within(&namespace))
                        .and_then(|p| job_of_pod((*p).clone()));
                    std::future::ready(job.filter(|_| news))
                },
            )
        })
        .flatten()
    };
    let requests = futures::stream::select(
        futures::stream::select(job_requests, eviction_requests),
        futures::stream::select(pod_requests, crate::queue::requests_from(woken)),
    );
    let controller = crate::controller::run(
        ctx,
        jobs.clone(),
        open_synced,
        requests,
        usize::from(settings_concurrency),
        shutdown,
    );
    (caches, controller)
}

/// The ProwJob a pod runs: same name, in the namespace its annotation records.
fn job_of_pod(pod: PodView) -> Option<ObjectRef<Job>> {
    let namespace = pod.job_namespace()?.to_string();
    Some(ObjectRef::new(&pod.name_any()).within(&namespace))
}
