//! What this process has done that its caches may not show yet, by concern: the starts it
//! made (with the build IDs they took), the pods it created, and the status writes it made.
//! Everything here can be rebuilt from the API server: a started job's pod and pending status
//! are stored, and build IDs are time-based.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use prow_api::concurrency::{admit, next_build_id, Admission, Grant, InFlight, Limits};
use prow_api::pod_view::PodView;
use prow_api::ProwJob;
use prow_runtime::lock;

use crate::prowjob::stored::Job;

/// How many remembered status writes make an insert sweep out the expired ones.
const WRITTEN_SWEEP_AT: usize = 1024;

/// How long a created pod stands in for the cache; after that the API server is asked.
const CREATED_POD_TTL: Duration = Duration::from_secs(5);

/// How long a status write marks the cached copy it replaced as stale; after that the cached
/// copy is decided on again (and a write from it is refused by its resourceVersion if it
/// really was stale).
const WRITTEN_TTL: Duration = Duration::from_secs(5);

/// The three records, each behind its own lock.
#[derive(Default)]
pub struct Ledger {
    /// Starts and finishes, and the last build ID of each job name.
    pub starts: Starts,
    /// Pods created a moment ago.
    pub pods: CreatedPods,
    /// Status writes made a moment ago.
    pub writes: StatusWrites,
}

impl Ledger {
    /// Records that the job was completed: its slot is free and its created pod forgotten
    /// before the caches show it.
    pub fn finished(&self, uid: &str) {
        self.starts.finished(uid);
        self.pods.forget(uid);
    }
}

/// The one place where starts are decided. Admission and build-ID allocation run under one
/// lock over the job cache plus the starts made since, so concurrent reconciles of jobs with
/// the same name can never overshoot a limit while the cache lags behind the operator's own
/// writes.
#[derive(Default)]
pub struct Starts {
    inner: Mutex<StartsInner>,
}

#[derive(Default)]
struct StartsInner {
    in_flight: InFlight,
    last_build_id: HashMap<String, u64>,
}

/// A start [`Starts::grant`] recorded: forgotten when dropped, unless [`Granted::keep`] says
/// the job's pod was created. Every way a pass can end before its pod exists (a failed lease
/// write, a taken pod name, a refused pod, an error) then frees the slot by itself.
pub struct Granted<'a> {
    starts: &'a Starts,
    uid: String,
}

impl Granted<'_> {
    /// The pod exists: the start stays recorded until the job cache shows the job past
    /// triggered.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Granted<'_> {
    fn drop(&mut self) {
        self.starts.forget_start(&self.uid);
    }
}

impl Starts {
    /// [`Starts::try_start`], for a plan's `grant`: a granted start also fills `granted` with
    /// its guard.
    pub fn grant<'a>(
        &'a self,
        job: &ProwJob,
        jobs: impl FnOnce() -> Vec<Arc<Job>>,
        limits: &Limits,
        now_millis: u64,
        granted: &mut Option<Granted<'a>>,
    ) -> Grant {
        let grant = self.try_start(job, jobs, limits, now_millis);
        if let (Grant::Start(_), Some(uid)) = (&grant, job.metadata.uid.as_ref()) {
            *granted = Some(Granted {
                starts: self,
                uid: uid.clone(),
            });
        }
        grant
    }

    /// Decides whether `job` may start and, if so, records the start and allocates its build ID,
    /// all under one lock.
    pub fn try_start(
        &self,
        job: &ProwJob,
        jobs: impl FnOnce() -> Vec<Arc<Job>>,
        limits: &Limits,
        now_millis: u64,
    ) -> Grant {
        let Some(uid) = job.metadata.uid.clone() else {
            return Grant::Refuse("The job has no uid.".into());
        };
        let mut inner = lock(&self.inner);
        let snapshot = jobs();
        let verdict = admit(job, snapshot.iter().map(|j| &j.0), &inner.in_flight, limits);
        match verdict {
            Admission::Start => {}
            Admission::Wait(why) => return Grant::Wait(why),
            Admission::Refuse(why) => return Grant::Refuse(why),
        }
        let last = match inner.last_build_id.get(&job.spec.job) {
            Some(last) => Some(*last),
            None => snapshot
                .iter()
                .filter(|j| j.spec.job == job.spec.job)
                .filter_map(|j| j.status.as_ref()?.build_id.parse::<u64>().ok())
                .max(),
        };
        let id = next_build_id(now_millis, last);
        inner.last_build_id.insert(job.spec.job.clone(), id);
        inner.in_flight.started.insert(uid);
        Grant::Start(id.to_string())
    }

    /// Whether the job was started by this process and the cache may not show it yet.
    pub fn is_started(&self, uid: &str) -> bool {
        lock(&self.inner).in_flight.started.contains(uid)
    }

    /// Forgets a start: the cache shows the job past triggered, or its pod was not created.
    pub fn forget_start(&self, uid: &str) {
        lock(&self.inner).in_flight.started.remove(uid);
    }

    /// Records that the job was completed, so its slot is free before the cache shows it.
    pub fn finished(&self, uid: &str) {
        let mut inner = lock(&self.inner);
        inner.in_flight.started.remove(uid);
        inner.in_flight.finished.insert(uid.to_string());
    }

    /// Forgets a finish: the cache shows the job complete.
    pub fn forget_finish(&self, uid: &str) {
        lock(&self.inner).in_flight.finished.remove(uid);
    }
}

/// Pods this process created, by job UID, until the pod cache shows them: a reconcile in
/// between need not read the pod from the API server.
#[derive(Default)]
pub struct CreatedPods {
    inner: Mutex<HashMap<String, (Instant, Arc<PodView>)>>,
}

impl CreatedPods {
    /// Remembers the pod created for a job.
    pub fn created(&self, uid: &str, pod: &Pod) {
        let view = Arc::new(PodView::of(pod));
        lock(&self.inner).insert(uid.to_string(), (Instant::now(), view));
    }

    /// The pod created for a job a moment ago, if the cache may not show it yet.
    pub fn get(&self, uid: &str) -> Option<Arc<PodView>> {
        let mut inner = lock(&self.inner);
        match inner.get(uid) {
            Some((at, pod)) if at.elapsed() < CREATED_POD_TTL => Some(pod.clone()),
            Some(_) => {
                inner.remove(uid);
                None
            }
            None => None,
        }
    }

    /// Forgets a created pod: the cache shows it, or its job completed.
    pub fn forget(&self, uid: &str) {
        let mut inner = lock(&self.inner);
        if !inner.is_empty() {
            inner.remove(uid);
        }
    }
}

/// Status writes this process made, by job UID: the resourceVersion each one replaced, until
/// the job cache shows a newer one.
#[derive(Default)]
pub struct StatusWrites {
    inner: Mutex<HashMap<String, (Instant, String)>>,
}

impl StatusWrites {
    /// Remembers that this process wrote the job's status over `replaced` (the resourceVersion
    /// the write was guarded by).
    pub fn wrote(&self, uid: &str, replaced: &str) {
        let mut written = lock(&self.inner);
        if written.len() >= WRITTEN_SWEEP_AT {
            written.retain(|_, (at, _)| at.elapsed() < WRITTEN_TTL);
        }
        written.insert(uid.to_string(), (Instant::now(), replaced.to_string()));
    }

    /// Whether a cached job at `resource_version` is the copy this process's own status write
    /// replaced a moment ago: deciding on it would redo that write and be refused as a conflict.
    pub fn is_superseded(&self, uid: &str, resource_version: &str) -> bool {
        let mut written = lock(&self.inner);
        match written.get(uid) {
            None => false,
            Some((at, replaced)) if replaced == resource_version && at.elapsed() < WRITTEN_TTL => {
                true
            }
            Some(_) => {
                written.remove(uid);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, uid: &str, state: &str, build_id: &str) -> ProwJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"type": "periodic", "agent": "kubernetes", "job": "ci-x", "max_concurrency": 2},
            "status": {"state": state, "build_id": build_id},
        }))
        .expect("job")
    }

    fn store_of(jobs: Vec<ProwJob>) -> kube::runtime::reflector::Store<Job> {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for j in jobs {
            writer.apply_watcher_event(&Event::InitApply(Job(j)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        store
    }

    /// A granted start holds its slot while its guard lives and frees it when dropped, unless
    /// the pod was created.
    #[test]
    fn a_granted_start_is_forgotten_when_its_guard_drops_unless_kept() {
        let (a, b, c) = (
            job("a", "ua", "triggered", ""),
            job("b", "ub", "triggered", ""),
            job("c", "uc", "triggered", ""),
        );
        let jobs = store_of(vec![a.clone(), b.clone(), c.clone()]);
        let ledger = Starts::default();
        let limits = Limits::default();
        let mut granted = None;
        let grant = ledger.grant(&a, || jobs.state(), &limits, 1, &mut granted);
        assert!(matches!(grant, Grant::Start(_)) && granted.is_some());
        assert!(ledger.is_started("ua"));
        drop(granted);
        assert!(!ledger.is_started("ua"), "no pod: the slot is free again");

        let mut kept = None;
        ledger.grant(&b, || jobs.state(), &limits, 2, &mut kept);
        kept.expect("granted").keep();
        assert!(
            ledger.is_started("ub"),
            "its pod exists: counted until the cache shows it"
        );

        // One slot is left, and `a` (created first) is still in line for it: `c` waits.
        let mut waiting = None;
        let verdict = ledger.grant(&c, || jobs.state(), &limits, 3, &mut waiting);
        assert!(matches!(verdict, Grant::Wait(_)), "{verdict:?}");
        assert!(waiting.is_none(), "no guard for a start not granted");
    }

    /// Starts counted before the cache shows them, build IDs that only grow, and the verdicts
    /// that are not a start.
    #[test]
    fn try_start_counts_its_own_starts_and_allocates_growing_build_ids() {
        let running = job("old", "u0", "pending", "1700000000000");
        let (a, b, c) = (
            job("a", "ua", "triggered", ""),
            job("b", "ub", "triggered", ""),
            job("c", "uc", "triggered", ""),
        );
        let jobs = store_of(vec![running, a.clone(), b.clone(), c.clone()]);
        let ledger = Starts::default();
        let limits = Limits::default();
        // An earlier clock than the stored build ID: the ID still grows past it.
        let Grant::Start(first) = ledger.try_start(&a, || jobs.state(), &limits, 1_600_000_000_000)
        else {
            panic!("a starts: one of two slots is taken");
        };
        assert!(first.parse::<u64>().unwrap() > 1_700_000_000_000, "{first}");
        assert!(ledger.is_started("ua"));
        // The cache still says `a` is triggered; the ledger knows it started: the limit is full.
        assert!(matches!(
            ledger.try_start(&b, || jobs.state(), &limits, 1_600_000_000_000),
            Grant::Wait(_)
        ));
        // `a` finishing frees its slot for `b`, first in line; the next build ID is larger.
        ledger.forget_start("ua");
        ledger.finished("ua");
        let Grant::Start(second) =
            ledger.try_start(&b, || jobs.state(), &limits, 1_600_000_000_000)
        else {
            panic!("b starts once a slot is free");
        };
        assert!(second.parse::<u64>().unwrap() > first.parse::<u64>().unwrap());
        assert!(matches!(
            ledger.try_start(&c, || jobs.state(), &limits, 1_600_000_000_000),
            Grant::Wait(_)
        ));

        let mut queued = job("q", "uq", "triggered", "");
        queued.spec.max_concurrency = 0;
        queued.spec.job_queue_name = "nowhere".into();
        assert_eq!(
            ledger.try_start(&queued, || jobs.state(), &limits, 0),
            Grant::Refuse("Job queue \"nowhere\" is not configured.".into())
        );
        let mut anonymous = job("n", "", "triggered", "");
        anonymous.metadata.uid = None;
        assert!(matches!(
            ledger.try_start(&anonymous, || jobs.state(), &limits, 0),
            Grant::Refuse(_)
        ));
    }

    #[test]
    fn a_status_write_marks_only_the_copy_it_replaced_as_stale() {
        let ledger = StatusWrites::default();
        assert!(!ledger.is_superseded("u1", "10"), "nothing written yet");
        ledger.wrote("u1", "10");
        assert!(ledger.is_superseded("u1", "10"));
        assert!(!ledger.is_superseded("u2", "10"), "another job");
        assert!(!ledger.is_superseded("u1", "11"), "the cache caught up");
        assert!(
            !ledger.is_superseded("u1", "10"),
            "forgotten once the cache showed a newer copy"
        );
    }

    #[test]
    fn remembered_writes_expire_and_are_swept() {
        let ledger = StatusWrites::default();
        ledger.wrote("old", "1");
        lock(&ledger.inner).get_mut("old").unwrap().0 -= WRITTEN_TTL;
        assert!(!ledger.is_superseded("old", "1"), "expired");
        ledger.wrote("old", "1");
        lock(&ledger.inner).get_mut("old").unwrap().0 -= WRITTEN_TTL;
        for i in 0..WRITTEN_SWEEP_AT {
            ledger.wrote(&format!("u{i}"), "1");
        }
        assert!(!lock(&ledger.inner).contains_key("old"), "swept");
        assert_eq!(lock(&ledger.inner).len(), WRITTEN_SWEEP_AT);
    }
}
