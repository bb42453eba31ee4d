//! The sweep that replaces upstream's sinker: plans from the caches (`prow_api::retention`),
//! deletes with UID preconditions, and re-reads a job before it deletes a pod it thinks orphaned.
//!
//! A full sweep looks at every job and pod once, at start and after a relist or a change of
//! build clusters; it queues each object at the time it falls due. Every pass in between takes
//! out only what is due: its work follows what it deletes, not the 100,000 jobs stored. The
//! watches keep the queue: a job that completes is queued at its deadlines, a deleted job's pod
//! and a pod without its job are queued for the orphan check.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use prow_api::buildcluster::{alias_of, Reach};
use prow_api::pod_view::PodView;
use prow_api::prowjob::pod_namespace;
use prow_api::retention::{
    is_periodic_run, judge_job, judge_pod, newer_run, pod_look_at, Doomed, Due, Retention, Verdict,
};
use prow_api::{labels, ProwJob};
use tokio_util::sync::CancellationToken;

use crate::buildclusters::{BuildClusters, Lookup, Member};
use crate::prowjob::stored::Job;
use crate::prowjob::Caches;

/// A job as the store holds it, ordered by address: the queue holds the store's own `Arc`
/// (no copy), and an entry whose `Arc` the store has replaced is stale (the new one is queued).
#[derive(Clone, Debug)]
struct Held(Arc<Job>);

impl Held {
    fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.addr().cmp(&other.addr())
    }
}

/// Where a pod is: its build cluster's alias, its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PodAt {
    cluster: String,
    namespace: String,
    name: String,
}

/// What the queue holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    /// A completed job: its age.
    Job(Held),
    /// The pod of a completed job: its TTL and age.
    Pod(Held),
    /// A pod without its job (boxed: rare, and it keeps the other items small).
    Orphan(Box<PodAt>),
}

/// The retention queue, kept from the watches.
#[derive(Clone)]
pub struct Schedule {
    jobs: Store<Job>,
    keep: Retention,
    pod_namespace: String,
    watch_namespace: Option<String>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    due: Due<Item>,
    /// Each periodic's newest completed run, by `spec.job`: kept whatever its age.
    newest: HashMap<String, Arc<Job>>,
    /// Periodics whose newest run was deleted by hand: found again by a walk before use.
    stale: HashSet<String>,
    /// A full sweep is wanted (the job list came in, again).
    full: bool,
    /// The jobs are listed: a pod's job can be looked up.
    listed: bool,
}

/// What one pass deletes, and how many queued items it looked at.
#[derive(Default)]
pub struct Plan {
    /// Jobs past their age.
    pub jobs: Vec<Doomed>,
    /// Pods past their TTL or age, each with its cluster.
    pub pods: Vec<(Arc<Member>, Doomed)>,
    /// Pods without their job, each with its cluster: deleted if a fresh read agrees.
    pub orphans: Vec<(Arc<Member>, Doomed)>,
    /// Items looked at.
    pub examined: usize,
}

impl Inner {
    /// Forgets every queued item and held job.
    fn clear(&mut self) {
        self.due.clear();
        self.newest.clear();
        self.stale.clear();
    }
}

impl Schedule {
    /// An empty queue for `jobs`' objects. `pod_namespace` is where a job's pod is when its
    /// `spec.namespace` is empty; with `watch_namespace`, only pods of jobs in that namespace
    /// are this operator's.
    pub fn new(
        jobs: Store<Job>,
        keep: Retention,
        pod_namespace: String,
        watch_namespace: Option<String>,
    ) -> Self {
        Self {
            jobs,
            keep,
            pod_namespace,
            watch_namespace,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("retention lock")
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.lock().due.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in one job watch event (after the store did).
    pub fn observe_job(&self, event: &watcher::Event<Job>) {
        let now = Timestamp::now();
        let mut inner = self.lock();
        match event {
            watcher::Event::Init => {
                // The list replaces each job's copy in the store as it comes
                // (`prow_runtime::reflect`): the queue lets go of the old copies now (100,000
                // of them at a relist), so that they are freed as they are replaced, and the
                // pass after the list queues afresh. Nothing is deleted meanwhile.
                inner.clear();
            }
            watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                // What was queued while the list came, from copies it may have replaced since.
                inner.clear();
                inner.full = true;
                inner.listed = true;
            }
            watcher::Event::Apply(job) => {
                if let Some(held) = self.jobs.get(&ObjectRef::from_obj(job)) {
                    self.queue_job(&mut inner, held, now);
                }
            }
            watcher::Event::Delete(job) => {
                let at = PodAt {
                    cluster: alias_of(job).to_string(),
                    namespace: pod_namespace(job, &self.pod_namespace).to_string(),
                    name: job.metadata.name.clone().unwrap_or_default(),
                };
                inner.due.push(now, Item::Orphan(Box::new(at)));
                let newest = inner.newest.get(&job.spec.job);
                if newest.is_some_and(|n| n.metadata.uid == job.metadata.uid) {
                    inner.stale.insert(job.spec.job.clone());
                }
            }
        }
    }

    /// Takes in one pod watch event of the build cluster `cluster`: a pod whose job is not
    /// there is queued for the orphan check.
    pub fn observe_pod(&self, cluster: &str, event: &watcher::Event<PodView>) {
        let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
            return;
        };
        let mut inner = self.lock();
        if inner.listed {
            self.queue_if_orphan(&mut inner, cluster, pod, Timestamp::now());
        }
    }

    /// Passes `events` on, keeping the queue.
    pub fn follow_jobs<S>(&self, events: S) -> impl Stream<Item = S::Item> + Send
    where
        S: Stream<Item = watcher::Result<watcher::Event<Job>>> + Send,
    {
        let schedule = self.clone();
        events.inspect(move |event| {
            if let Ok(event) = event {
                schedule.observe_job(event);
            }
        })
    }

    fn ours(&self, pod: &PodView) -> bool {
        pod.job_namespace().is_some()
            && self
                .watch_namespace
                .as_deref()
                .is_none_or(|ns| pod.job_namespace() == Some(ns))
    }

    fn job_of(&self, pod: &PodView) -> Option<Arc<Job>> {
        let ns = pod.job_namespace()?;
        let name = pod.metadata.name.as_deref()?;
        self.jobs
            .get(&ObjectRef::new(name).within(ns))
            .filter(|j| j.metadata.uid.as_deref() == pod.job_uid())
    }

    fn queue_if_orphan(&self, inner: &mut Inner, cluster: &str, pod: &PodView, now: Timestamp) {
        if !self.ours(pod) || self.job_of(pod).is_some() {
            return;
        }
        let at = match judge_pod(pod, None, now, &self.keep) {
            Verdict::At(t) => t,
            Verdict::Orphan(_) | Verdict::Delete(_) => now,
            Verdict::Keep => return,
        };
        let key = PodAt {
            cluster: cluster.to_string(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        inner.due.push(at, Item::Orphan(Box::new(key)));
    }

    /// Queues a completed job at its deadlines, and notes it if it is its periodic's newest run.
    fn queue_job(&self, inner: &mut Inner, job: Arc<Job>, now: Timestamp) {
        if !job.is_complete() {
            return;
        }
        match judge_job(&job, false, now, &self.keep) {
            Verdict::At(t) => inner.due.push(t, Item::Job(Held(job.clone()))),
            Verdict::Delete(_) => inner.due.push(now, Item::Job(Held(job.clone()))),
            Verdict::Orphan(_) | Verdict::Keep => {}
        }
        if let Some(t) = pod_look_at(&job, &self.keep) {
            inner.due.push(t, Item::Pod(Held(job.clone())));
        }
        if is_periodic_run(&job) {
            let newest = inner.newest.get(&job.spec.job);
            if newest.is_none_or(|n| newer_run(&job, n) || n.metadata.uid == job.metadata.uid) {
                inner.newest.insert(job.spec.job.clone(), job);
            }
        }
    }

    /// Queues everything afresh from the stores: every completed job and every pod of
    /// `members` without its job. Looks at each object once.
    fn requeue_all(&self, inner: &mut Inner, members: &[Arc<Member>], now: Timestamp) -> usize {
        inner.due.clear();
        inner.newest.clear();
        inner.stale.clear();
        let jobs = self.jobs.state();
        let mut examined = jobs.len();
        for job in jobs {
            self.queue_job(inner, job, now);
        }
        for member in members {
            let pods = member.pods.state();
            examined += pods.len();
            for pod in pods {
                self.queue_if_orphan(inner, &member.alias, &pod, now);
            }
        }
        examined
    }

    /// Whether `job` is its periodic's newest completed run (finding the newest again by a walk
    /// of the periodic's runs when the newest was deleted by hand).
    fn is_newest(&self, inner: &mut Inner, job: &Arc<Job>) -> bool {
        if !is_periodic_run(job) {
            return false;
        }
        if inner.stale.remove(&job.spec.job) {
            let newest = self
                .jobs
                .state()
                .into_iter()
                .filter(|j| is_periodic_run(j) && j.spec.job == job.spec.job)
                .reduce(|a, b| if newer_run(&b, &a) { b } else { a });
            match newest {
                Some(n) => inner.newest.insert(job.spec.job.clone(), n),
                None => inner.newest.remove(&job.spec.job),
            };
        }
        inner
            .newest
            .get(&job.spec.job)
            .is_some_and(|n| n.metadata.uid == job.metadata.uid)
    }

    /// Plans one pass at `now`: a full sweep when one is wanted (`full`, or the job list came
    /// in again), else only what is due. An item of a cluster that is not reached is looked
    /// at again at `retry`.
    pub fn plan(
        &self,
        builds: &BuildClusters,
        full: bool,
        now: Timestamp,
        retry: Timestamp,
    ) -> Plan {
        let mut inner = self.lock();
        let mut plan = Plan::default();
        if std::mem::take(&mut inner.full) || full {
            let members: Vec<Arc<Member>> = builds
                .members()
                .into_iter()
                .filter(|m| m.reach() == Reach::Up)
                .collect();
            plan.examined += self.requeue_all(&mut inner, &members, now);
        }
        let due = inner.due.take_due(now);
        plan.examined += due.len();
        for item in due {
            let at = match &item {
                Item::Job(held) => {
                    let Some(job) = self.current(held) else {
                        continue;
                    };
                    let newest = self.is_newest(&mut inner, &job);
                    match judge_job(&job, newest, now, &self.keep) {
                        Verdict::Delete(d) => plan.jobs.push(d),
                        Verdict::At(t) => inner.due.push(t, item),
                        Verdict::Orphan(_) | Verdict::Keep => {}
                    }
                    continue;
                }
                Item::Pod(held) => {
                    let Some(job) = self.current(held) else {
                        continue;
                    };
                    PodAt {
                        cluster: alias_of(&job).to_string(),
                        namespace: pod_namespace(&job, &self.pod_namespace).to_string(),
                        name: job.metadata.name.clone().unwrap_or_default(),
                    }
                }
                Item::Orphan(at) => (**at).clone(),
            };
            let Lookup::Member(member) = builds.lookup(&at.cluster) else {
                continue; // its cluster is gone; a new one is swept whole
            };
            if member.reach() != Reach::Up {
                inner.due.push(retry, item);
                continue;
            }
            let key = ObjectRef::new(&at.name).within(&at.namespace);
            let Some(pod) = member.pods.get(&key).filter(|p| self.ours(p)) else {
                continue;
            };
            let job = self.job_of(&pod);
            match judge_pod(&pod, job.as_ref().map(|j| &j.0), now, &self.keep) {
                Verdict::Delete(d) => plan.pods.push((member, d)),
                Verdict::Orphan(d) => plan.orphans.push((member, d)),
                Verdict::At(t) => match job {
                    Some(job) => inner.due.push(t, Item::Pod(Held(job))),
                    None => inner.due.push(t, Item::Orphan(Box::new(at))),
                },
                Verdict::Keep => {}
            }
        }
        plan
    }

    /// The job `held` is, if the store still holds that version (a newer one is queued by
    /// itself).
    fn current(&self, held: &Held) -> Option<Arc<Job>> {
        self.jobs
            .get(&ObjectRef::from_obj(held.0.as_ref()))
            .filter(|j| Arc::ptr_eq(j, &held.0))
    }
}

/// Sweeps every `interval` until `shutdown`, the first time as soon as the caches are synced.
pub async fn run(client: Client, caches: Caches, interval: Duration, shutdown: CancellationToken) {
    tokio::select! {
        ok = caches.synced() => if !ok { return },
        _ = shutdown.cancelled() => return,
    }
    // A full sweep also whenever the clusters change: a new or replaced one's pods are not
    // queued yet.
    let mut clusters: Vec<usize> = Vec::new();
    loop {
        let now = Timestamp::now();
        let retry = k8s_openapi::jiff::SignedDuration::try_from(interval)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(now);
        let up: Vec<usize> = {
            let mut up: Vec<usize> = caches
                .builds
                .members()
                .iter()
                .filter(|m| m.reach() == Reach::Up)
                .map(|m| Arc::as_ptr(m) as usize)
                .collect();
            up.sort_unstable();
            up
        };
        let full = up != clusters;
        clusters = up;
        let started = std::time::Instant::now();
        let plan = caches.schedule.plan(&caches.builds, full, now, retry);
        let planned_ms = started.elapsed().as_millis() as u64;
        let (mut jobs_deleted, mut pods_deleted) = (0usize, 0usize);
        for doomed in &plan.jobs {
            if shutdown.is_cancelled() {
                return;
            }
            jobs_deleted += usize::from(deleted(
                doomed,
                delete_planned::<ProwJob>(&client, doomed).await,
            ));
        }
        for (member, doomed) in &plan.pods {
            if shutdown.is_cancelled() {
                return;
            }
            pods_deleted += usize::from(deleted(
                doomed,
                delete_planned::<Pod>(&member.client, doomed).await,
            ));
        }
        for (member, doomed) in &plan.orphans {
            if shutdown.is_cancelled() {
                return;
            }
            if still_orphaned(&member.client, &client, doomed).await {
                pods_deleted += usize::from(deleted(
                    doomed,
                    delete_planned::<Pod>(&member.client, doomed).await,
                ));
            }
        }
        let queued = caches.schedule.len();
        if jobs_deleted + pods_deleted > 0 || full {
            tracing::info!(
                jobs_deleted,
                pods_deleted,
                examined = plan.examined,
                queued,
                planned_ms,
                full,
                "retention sweep"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deletes one object if it is still the one planned for (its UID as the precondition), not a
/// later one of the same name.
pub(crate) async fn delete_planned<K>(client: &Client, doomed: &Doomed) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &doomed.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: doomed.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    api.delete(&doomed.name, &params).await.map(drop)
}

/// Whether the sweep's [`delete_planned`] of `doomed` deleted it; a failure is logged and the
/// sweep goes on.
fn deleted(doomed: &Doomed, outcome: Result<(), kube::Error>) -> bool {
    match outcome {
        Ok(_) => {
            tracing::debug!(namespace = %doomed.namespace, name = %doomed.name, reason = doomed.reason, "deleted");
            true
        }
        Err(e) => {
            tracing::warn!(namespace = %doomed.namespace, name = %doomed.name, error = %e, "retention delete failed");
            false
        }
    }
}

/// Whether a fresh read confirms the pod's job is gone (or is another job of the same name):
/// the pod read in its build cluster (`build`), the job in the operator's (`client`).
async fn still_orphaned(build: &Client, client: &Client, doomed: &Doomed) -> bool {
    let pods: Api<Pod> = Api::namespaced(build.clone(), &doomed.namespace);
    let Ok(Some(pod)) = pods.get_opt(&doomed.name).await else {
        return false;
    };
    let annotations = pod.metadata.annotations.unwrap_or_default();
    let (Some(ns), Some(uid)) = (
        annotations.get(labels::JOB_NAMESPACE),
        annotations.get(labels::JOB_UID),
    ) else {
        return false;
    };
    let jobs: Api<ProwJob> = Api::namespaced(client.clone(), ns);
    match jobs.get_opt(&doomed.name).await {
        Ok(Some(job)) => job.metadata.uid.as_ref() != Some(uid),
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(error = %e, "re-reading a job before deleting its pod");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::prowjob::evictions::Budgets;

    fn job(name: &str, kind: &str, started: &str) -> ProwJob {
        serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "ci", "uid": format!("uid-{name}"),
                         "creationTimestamp": started},
            "spec": {"type": kind, "job": format!("job-{kind}")},
            "status": {"state": "success", "startTime": started, "completionTime": started},
        }))
        .expect("job")
    }

    fn ago(days: i64) -> String {
        let t = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(24 * days);
        t.to_string()
    }

    fn names(doomed: &[Doomed]) -> Vec<&str> {
        let mut names: Vec<&str> = doomed.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_queued_item_is_32_bytes() {
        // What docs/architecture.md says an entry costs, before the tree's nodes.
        assert_eq!(std::mem::size_of::<(Timestamp, Item)>(), 32);
    }

    #[tokio::test]
    async fn a_pass_looks_only_at_what_falls_due_not_at_every_stored_job() {
        let (client, _server) = crate::mock::client();
        let (jobs, mut jobs_writer) = reflector::store();
        let (pods, mut pods_writer) = reflector::store();
        let local = Member::local(
            client.clone(),
            pods,
            prow_runtime::store::Synced::already(),
            Budgets::off(client),
        );
        let (wake, _) = mpsc::unbounded_channel();
        let builds = BuildClusters::new(Arc::new(local), jobs.clone(), wake);
        let schedule = Schedule::new(jobs, Retention::default(), "test-pods".into(), None);
        let mut feed = |event: watcher::Event<Job>| {
            jobs_writer.apply_watcher_event(&event);
            schedule.observe_job(&event);
        };

        // 1,000 recent finished jobs, two old ones, and two old runs of one periodic.
        feed(watcher::Event::Init);
        for i in 0..1000 {
            feed(watcher::Event::InitApply(Job(job(
                &format!("recent-{i}"),
                "presubmit",
                &ago(0),
            ))));
        }
        for (name, kind, days) in [
            ("old-1", "presubmit", 9),
            ("old-2", "postsubmit", 8),
            ("run-1", "periodic", 10),
            ("run-2", "periodic", 9),
        ] {
            feed(watcher::Event::InitApply(Job(job(name, kind, &ago(days)))));
        }
        feed(watcher::Event::InitDone);

        let now = Timestamp::now();
        let plan = schedule.plan(&builds, false, now, now);
        assert_eq!(
            names(&plan.jobs),
            ["old-1", "old-2", "run-1"],
            "the first pass after the list sweeps everything; a periodic's newest run stays"
        );
        assert!(
            plan.examined >= 1004,
            "it looked at every job: {}",
            plan.examined
        );
        let queued = schedule.len();
        assert!(
            queued >= 2000,
            "each recent job and its pod are queued: {queued}"
        );

        let plan = schedule.plan(&builds, false, now, now);
        assert_eq!(plan.examined, 0, "nothing fell due since");
        assert!(plan.jobs.is_empty());

        // One more job finishes, backdated; one old job is deleted (by the last pass).
        feed(watcher::Event::Apply(Job(job(
            "late",
            "presubmit",
            &ago(8),
        ))));
        feed(watcher::Event::Delete(Job(job(
            "old-1",
            "presubmit",
            &ago(9),
        ))));
        // A pod whose job does not exist turns up in the cluster.
        let orphan: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "lost", "namespace": "test-pods", "uid": "pod-lost",
                         "creationTimestamp": ago(1),
                         "annotations": {"prow-operator.dev/job-namespace": "ci",
                                         "prow-operator.dev/job-uid": "uid-lost"}},
        }))
        .expect("pod");
        let orphan = PodView::of(&orphan);
        let orphan = watcher::Event::Apply(orphan);
        pods_writer.apply_watcher_event(&orphan);
        schedule.observe_pod(prow_api::buildcluster::DEFAULT_ALIAS, &orphan);

        let plan = schedule.plan(&builds, false, Timestamp::now(), Timestamp::now());
        assert_eq!(names(&plan.jobs), ["late"]);
        let orphans: Vec<&str> = plan.orphans.iter().map(|(_, d)| d.name.as_str()).collect();
        assert_eq!(orphans, ["lost"]);
        assert!(
            plan.examined <= 4,
            "the late job, its pod, the deleted job's pod and the orphan: {}",
            plan.examined
        );
        assert_eq!(
            schedule.len(),
            queued,
            "the recent ones stay queued, untouched"
        );

        // A relist: the queue lets go of the old copies as it begins (the list replaces each
        // in the store as it comes, and the replaced ones are freed), and the next pass after
        // it sweeps all.
        let listed: Vec<Job> = schedule
            .jobs
            .state()
            .iter()
            .map(|j| (**j).clone())
            .collect();
        feed(watcher::Event::Init);
        assert!(
            schedule.is_empty(),
            "nothing is queued while the list comes"
        );
        let stored = schedule.jobs.state();
        assert!(
            stored.iter().all(|j| Arc::strong_count(j) == 2),
            "no job is held but by the store (and this look at it)"
        );
        drop(stored);
        for job in listed {
            feed(watcher::Event::InitApply(job));
        }
        feed(watcher::Event::InitDone);
        assert!(schedule.is_empty(), "no old copy is held after a relist");
        let plan = schedule.plan(&builds, false, Timestamp::now(), Timestamp::now());
        assert!(plan.examined >= 1000, "a full sweep: {}", plan.examined);
        assert_eq!(schedule.len(), queued);
    }
}
