//! One build cluster as the operator works with it: its clients, a stripped watch of its job
//! pods (feeding the ProwJob reconciler's requests), its eviction budget, and whether it is
//! reached, from that watch and a probe every [`PROBE_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use prow_api::buildcluster::{Reach, Right};
use prow_api::labels;
use prow_api::pod_view::{PodView, WirePod};
use prow_runtime::store::{self, Synced};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::prowjob::evictions::{self, Budgets, Evictions};
use crate::prowjob::stored::Job;

/// How often a build cluster's API server is asked for its version.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long that question may take before the cluster counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a member's tasks need from the operator.
#[derive(Clone)]
pub struct Wiring {
    /// The ProwJobs, to find a pod's job.
    pub jobs: Store<Job>,
    /// Asks for a job to be reconciled.
    pub wake: mpsc::UnboundedSender<ObjectRef<Job>>,
    /// The one namespace job pods are in, when the operator works in one.
    pub pod_namespace: Option<String>,
    /// Page size of the pod list; 0 lists from the watch cache.
    pub list_page_size: u32,
    /// Ends every member's tasks.
    pub shutdown: CancellationToken,
    /// Retention's queue: a pod without its job is queued for the orphan check.
    pub schedule: crate::retention::Schedule,
    /// The operator's own caches (its unfinished jobs, its cluster's pods): a member lists its
    /// pods once they are in, so that the lists readiness waits for do not share the machine
    /// with the build clusters' (every job needs the first; only a build cluster's jobs need
    /// its own).
    pub first: [Synced; 2],
}

/// One build cluster.
pub struct Member {
    /// The alias jobs name it by.
    pub alias: String,
    /// Client for writes and direct reads there.
    pub client: Client,
    /// Its job pods, stripped.
    pub pods: Store<PodView>,
    /// Whether `pods` has its first list.
    pub synced: Synced,
    /// Pods the Eviction API deleted there.
    pub evictions: Evictions,
    /// The operator's eviction budgets there.
    pub budgets: Budgets,
    /// A hash of the kubeconfig it was built from; a different one replaces it.
    pub fingerprint: u64,
    /// Counts the times kubeconfig copies may have been left there (a delete that failed; the
    /// first count is the start, when nothing is known): `testclusters::tidy` looks there once
    /// the count is past the one it last tidied.
    copies_left: AtomicU64,
    /// How it reaches the operator's jobs; `None` for the operator's own cluster.
    wiring: Option<Wiring>,
    /// Writes the Events of its jobs' pods there; `None` for the operator's own cluster, where
    /// the jobs themselves carry them.
    pod_events: Option<crate::events::Events>,
    health: Mutex<Health>,
    stop: CancellationToken,
}

struct Health {
    /// Since when, and why, it is not reached; `None` while it is.
    down: Option<(Timestamp, String)>,
    /// When the operator began to use it.
    started: Timestamp,
    /// Its version, when last reached.
    version: Option<String>,
    /// The rights last found missing (`None`: not asked yet), and when they were asked.
    rights: Option<(std::time::Instant, Vec<Right>)>,
    /// Why the API server refused the first list of its pods (403, say), while it does.
    list_refused: Option<String>,
}

impl Member {
    /// The operator's own cluster, whose pods `prowjob::run` watches.
    pub fn local(client: Client, pods: Store<PodView>, synced: Synced, budgets: Budgets) -> Self {
        Self {
            alias: prow_api::buildcluster::DEFAULT_ALIAS.to_string(),
            client,
            pods,
            synced,
            evictions: Evictions::default(),
            budgets,
            fingerprint: 0,
            copies_left: AtomicU64::new(1),
            wiring: None,
            pod_events: None,
            health: Mutex::new(Health::new()),
            stop: CancellationToken::new(),
        }
    }

    /// A build cluster reached through `client` (and `fail_fast` for its watches), working
    /// until [`Member::stop`] or the operator's shutdown.
    pub fn start(
        alias: &str,
        (client, fail_fast): (Client, Client),
        fingerprint: u64,
        wiring: &Wiring,
    ) -> Arc<Self> {
        let stop = wiring.shutdown.child_token();
        let api: Api<WirePod> = match &wiring.pod_namespace {
            Some(ns) => Api::namespaced(fail_fast.clone(), ns),
            None => Api::all(fail_fast.clone()),
        };
        let config = prow_runtime::watch::first_list(
            watcher::Config::default().labels(&format!("{}=true", labels::CREATED_BY_PROW)),
            wiring.list_page_size,
        );
        let (pods, writer) = reflector::store();
        let events = prow_runtime::watch::converted::<_, PodView, _>(
            prow_runtime::watcher::watcher(api, config).backoff(prow_runtime::watch::backoff()),
        );
        let events = prow_runtime::reflect::reflect(writer, events);
        let (events, synced) = store::signal(events);
        let member = Arc::new(Self {
            alias: alias.to_string(),
            client: client.clone(),
            pods,
            synced,
            evictions: Evictions::default(),
            budgets: Budgets::new(client.clone()),
            fingerprint,
            copies_left: AtomicU64::new(1),
            wiring: Some(wiring.clone()),
            pod_events: Some(crate::events::recorder(client.clone())),
            health: Mutex::new(Health::new()),
            stop: stop.clone(),
        });
        tracing::info!(alias, "build cluster started");
        let weak = Arc::downgrade(&member);
        let wiring = wiring.clone();
        let (w, s) = (weak.clone(), stop.clone());
        tokio::spawn(async move {
            for first in &wiring.first {
                tokio::select! {
                    ok = first.wait() => if !ok { return },
                    _ = s.cancelled() => return,
                }
            }
            let follow = events.for_each(|event| {
                follow_pod_event(&w, &wiring, event);
                std::future::ready(())
            });
            tokio::select! {
                _ = follow => {}
                _ = s.cancelled() => {}
            }
        });
        tokio::spawn(probe(weak.clone(), fail_fast, stop.clone()));
        tokio::spawn(follow_evictions(weak, stop));
        member
    }

    /// Publishes a job's Event there too, on the job's pod (`pod`: its name, namespace and,
    /// once known, UID), so that a person who works in the build cluster sees in
    /// `kubectl describe pod` what the operator did and why; the note names the job, which is
    /// in the operator's cluster. Nothing for the operator's own cluster.
    pub fn publish_on_pod(
        &self,
        (name, namespace, uid): (&str, &str, Option<String>),
        job: &prow_api::ProwJob,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        let Some(events) = &self.pod_events else {
            return;
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid,
            ..Default::default()
        };
        let job_name = job.metadata.name.as_deref().unwrap_or_default();
        let job_namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        crate::events::publish(
            events,
            reference,
            warning,
            reason,
            format!("ProwJob {job_namespace}/{job_name}: {note}"),
            "Reconcile",
        );
    }

    /// Stops its watches and probe.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// How it stands for its jobs: the operator's own cluster is always up (when it is not,
    /// nothing works); another is starting until its pods are listed, then up while reached.
    pub fn reach(&self) -> Reach {
        if self.wiring.is_none() {
            return Reach::Up;
        }
        let health = self.health.lock().expect("health lock");
        match &health.down {
            Some((since, reason)) => Reach::Down {
                since: *since,
                reason: reason.clone(),
            },
            // Answered but refused: nothing will change by itself, so the jobs say why.
            None if !self.synced.is_synced() => match &health.list_refused {
                Some(why) => Reach::Down {
                    since: health.started,
                    reason: format!("listing its job pods: {why}"),
                },
                None => Reach::Starting {
                    since: health.started,
                    reason: "its job pods are not listed yet".into(),
                },
            },
            None => Reach::Up,
        }
    }

    /// Its version when last reached, or why it is not.
    pub fn version(&self) -> Result<String, String> {
        let health = self.health.lock().expect("health lock");
        match (&health.down, &health.version) {
            (Some((since, reason)), _) => Err(format!("Unreachable since {since}: {reason}")),
            (None, Some(v)) => Ok(v.clone()),
            (None, None) => Err("Not reached yet.".into()),
        }
    }

    /// The rights last found missing, if asked within `within`.
    pub fn rights(&self, within: Duration) -> Option<Vec<Right>> {
        let health = self.health.lock().expect("health lock");
        health
            .rights
            .as_ref()
            .filter(|(at, _)| at.elapsed() < within)
            .map(|(_, missing)| missing.clone())
    }

    /// Records the rights found missing now.
    pub fn set_rights(&self, missing: Vec<Right>) {
        self.health.lock().expect("health lock").rights =
            Some((std::time::Instant::now(), missing));
    }

    /// Records an answer; true when it was down until now.
    fn reached(&self, version: Option<String>) -> bool {
        let mut health = self.health.lock().expect("health lock");
        if version.is_some() {
            health.version = version;
        }
        health.down.take().is_some()
    }

    /// Records a failure (the first one's time is kept while it lasts).
    fn failed(&self, reason: String) {
        let mut health = self.health.lock().expect("health lock");
        match &mut health.down {
            Some((_, why)) => *why = reason,
            None => {
                tracing::warn!(alias = %self.alias, reason, "build cluster unreachable");
                health.down = Some((Timestamp::now(), reason));
            }
        }
    }

    /// Records that a kubeconfig copy there could not be deleted.
    pub fn copies_may_be_left(&self) {
        self.copies_left.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times copies may have been left there so far.
    pub fn copies_left_count(&self) -> u64 {
        self.copies_left.load(Ordering::SeqCst)
    }

    /// Job pods running and pending there.
    pub fn pod_counts(&self) -> (i64, i64) {
        let (mut running, mut pending) = (0, 0);
        for pod in self.pods.state() {
            match pod.status.phase.as_deref() {
                Some("Running") => running += 1,
                Some("Pending") => pending += 1,
                _ => {}
            }
        }
        (running, pending)
    }
}

impl Health {
    fn new() -> Self {
        Self {
            down: None,
            started: Timestamp::now(),
            version: None,
            rights: None,
            list_refused: None,
        }
    }
}

/// One event of a member's pod watch: an answer marks it reached (waking its jobs if it was
/// not), an error unreachable; a pod's change asks for its job to be reconciled.
fn follow_pod_event(
    member: &Weak<Member>,
    wiring: &Wiring,
    event: watcher::Result<watcher::Event<PodView>>,
) {
    let Some(member) = member.upgrade() else {
        return;
    };
    if let Ok(event) = &event {
        wiring.schedule.observe_pod(&member.alias, event);
    }
    let pod = match event {
        Ok(watcher::Event::Init) => return,
        Ok(watcher::Event::InitDone) => {
            // The first list is in: jobs that waited for it go on.
            member.health.lock().expect("health lock").list_refused = None;
            member.reached(None);
            member.wake_own_jobs();
            return;
        }
        Ok(watcher::Event::Apply(pod) | watcher::Event::Delete(pod))
        | Ok(watcher::Event::InitApply(pod)) => pod,
        Err(e) if answered(&e) => {
            // The API server answered (a watch too old to resume, say): the watch relists.
            tracing::debug!(alias = %member.alias, error = %e, "watching pods");
            if let (watcher::Error::InitialListFailed(kube::Error::Api(status)), false) =
                (&e, member.synced.is_synced())
            {
                member.health.lock().expect("health lock").list_refused =
                    Some(status.message.clone());
            }
            return;
        }
        Err(e) => {
            member.failed(format!("watching pods: {e}"));
            return;
        }
    };
    if member.reached(None) && member.synced.is_synced() {
        member.wake_own_jobs();
    }
    wake_job_of(&pod, wiring);
}

/// Whether a watch error is an answer of the API server short of a failure of its own (410
/// Gone, 403, ...): the cluster is reached.
fn answered(error: &watcher::Error) -> bool {
    let refused = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code < 500);
    match error {
        watcher::Error::WatchError(_) => true,
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => refused(e),
        _ => false,
    }
}

/// Asks for the job of `pod` to be reconciled, when it needs it.
fn wake_job_of(pod: &PodView, wiring: &Wiring) {
    let Some(namespace) = pod.job_namespace() else {
        return;
    };
    let job = ObjectRef::new(&pod.name_any()).within(namespace);
    if wiring.jobs.get(&job).is_some_and(|j| j.needs_reconcile()) {
        let _ = wiring.wake.send(job);
    }
}

/// Asks the cluster's version every [`PROBE_EVERY`] until `stop`.
async fn probe(member: Weak<Member>, client: Client, stop: CancellationToken) {
    loop {
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await;
        let Some(m) = member.upgrade() else {
            return;
        };
        match answer {
            Ok(Ok(info)) => {
                let synced = m.synced.is_synced();
                if m.reached(Some(info.git_version)) && synced {
                    tracing::info!(alias = %m.alias, "build cluster reached again");
                    m.wake_own_jobs();
                }
            }
            Ok(Err(e)) => m.failed(e.to_string()),
            Err(_) => m.failed(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
        drop(m);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

impl Member {
    /// Asks for its unfinished jobs to be reconciled (it came back).
    fn wake_own_jobs(&self) {
        if let Some(w) = &self.wiring {
            super::wake_jobs_of(&w.jobs, &w.wake, &self.alias);
        }
    }
}

/// Follows the evictions the member's budgets record, waking the evicted pods' jobs.
async fn follow_evictions(member: Weak<Member>, stop: CancellationToken) {
    let Some(m) = member.upgrade() else {
        return;
    };
    let Some(wiring) = m.wiring.clone() else {
        return;
    };
    let namespace = wiring.pod_namespace.clone();
    let resource = tokio::select! {
        r = m.budgets.resource() => r,
        _ = stop.cancelled() => return,
    };
    let client = m.client.clone();
    drop(m);
    let records = evictions::watch_evictions(client, namespace, resource);
    let follow = records.for_each(|(namespace, pod, at)| {
        if let Some(m) = member.upgrade() {
            let news = m.evictions.record(&namespace, &pod, at, Timestamp::now());
            let evicted = m.pods.get(&ObjectRef::new(&pod).within(&namespace));
            if let (true, Some(evicted)) = (news, evicted) {
                wake_job_of(&evicted, &wiring);
            }
        }
        std::future::ready(())
    });
    tokio::select! {
        _ = follow => {}
        _ = stop.cancelled() => {}
    }
}
