//! The work queue that runs reconciles: an object asked for is reconciled at once, never twice
//! at the same time, and again after a delay when its reconcile asks for that.
//!
//! kube-runtime's `Controller` routes every request through a timer queue, even one due now, so
//! each reconcile starts one or two timer ticks (1 to 2 ms) after its watch event. Starting a job
//! is two API writes of about 2 ms each, so that tick is a third of the operator's own latency.
//! Here only requeues with a delay go through a timer; a request for an object that is idle
//! starts its reconcile in the same poll.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Synced;
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
    failed: bool,
}

impl Action {
    /// Reconcile again after `after` (at once for zero), or sooner if the object changes.
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
            failed: false,
        }
    }

    /// Reconcile again only when the object or something it watches changes.
    pub fn await_change() -> Self {
        Self {
            requeue_after: None,
            failed: false,
        }
    }

    /// The reconcile failed: try again after this object's backoff, which doubles with each
    /// failure in a row ([`FIRST_RETRY`] to [`LONGEST_RETRY`]) and resets on a success. One
    /// object failing again and again waits longer each time; the others are not held up.
    pub fn retry() -> Self {
        Self {
            requeue_after: None,
            failed: true,
        }
    }

    /// The delay asked for, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// The first retry of a failed reconcile.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// The longest wait before a reconcile that keeps failing is tried again.
pub const LONGEST_RETRY: Duration = Duration::from_secs(120);

/// The wait before retrying after `failures` failures in a row (1 for the first).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_RETRY)
}

/// The longest a requeue waits; a reconcile asking for more runs after this and decides again.
/// tokio-util's `DelayQueue` panics on delays past its wheel (about two years), and a job's
/// timeout comes from user input: a panic there once stopped every reconcile of the process.
pub const LONGEST_REQUEUE: Duration = Duration::from_secs(3600);

/// The most reconciles the later lane runs at once. A few keep its writes flowing; more only
/// queue in the API server in front of the other objects' writes. A first start marking
/// 100,000 finished jobs (the API server's two cores busy throughout) started a new job's pod
/// in 536 ms at p50 with 32 at once.
pub const LATER_SLOTS: usize = 4;

/// Where one object stands in the queue.
enum State {
    /// In line for a free reconcile slot.
    Ready,
    /// In the later lane: runs when nothing else waits ([`run_in_lanes`]).
    Later,
    /// Being reconciled; `again` when it was asked for meanwhile.
    Running { again: bool },
    /// Waiting out a requeue delay.
    Delayed(delay_queue::Key),
}

/// Runs `reconcile` for every object `requests` names, until `requests` ends or `shutdown` is
/// cancelled; then waits for the reconciles in flight. The object is read from `store` when its
/// reconcile starts, so it is the newest the cache has; an object not in the store is skipped.
/// At most `concurrency` reconciles run at once (0: no limit); objects wait their turn in
/// request order.
pub async fn run<K, R, F, Fut>(
    store: Store<K>,
    synced: Synced,
    requests: R,
    concurrency: usize,
    shutdown: CancellationToken,
    reconcile: F,
) where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
    R: Stream<Item = ObjectRef<K>> + Send,
    F: Fn(Arc<K>) -> Fut,
    Fut: Future<Output = Action> + Send + 'static,
{
    let never = |_: &K| false;
    run_in_lanes(
        store,
        synced,
        requests,
        concurrency,
        shutdown,
        never,
        reconcile,
    )
    .await
}

/// [`run`] with a second lane for the objects `later` picks when their turn comes: catch-up
/// work nothing waits on (a finished job's bookkeeping, say). They run only while no other
/// object is in line, and in at most [`LATER_SLOTS`] (and half the slots), so that a backlog
/// of them (100,000 at a first start) never holds up the others: a request for one of them
/// made while it waits moves it to the first lane if `later` no longer picks it.
pub async fn run_in_lanes<K, R, L, F, Fut>(
    store: Store<K>,
    synced: Synced,
    requests: R,
    concurrency: usize,
    shutdown: CancellationToken,
    later: L,
    reconcile: F,
) where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
    R: Stream<Item = ObjectRef<K>> + Send,
    L: Fn(&K) -> bool,
    F: Fn(Arc<K>) -> Fut,
    Fut: Future<Output = Action> + Send + 'static,
{
    let mut queue = Queue {
        states: HashMap::new(),
        failures: HashMap::new(),
        ready: VecDeque::new(),
        later: VecDeque::new(),
        delayed: DelayQueue::new(),
    };
    let mut running: JoinSet<(ObjectRef<K>, Action, Lane)> = JoinSet::new();
    let limit = if concurrency == 0 {
        usize::MAX
    } else {
        concurrency
    };
    let later_limit = (limit / 2).clamp(1, LATER_SLOTS);
    let mut running_later = 0;
    let mut requests = std::pin::pin!(requests.fuse());
    // Requests made while the store is still filling wait: the object may not be in it yet.
    let mut store_ready = false;
    let mut filled = std::pin::pin!(synced.wait());
    loop {
        while store_ready && running.len() < limit {
            let Some((key, object, lane)) = queue.next(&store, &later, running_later < later_limit)
            else {
                break;
            };
            if lane == Lane::Later {
                running_later += 1;
            }
            queue
                .states
                .insert(key.clone(), State::Running { again: false });
            let attempt = AssertUnwindSafe(reconcile(object)).catch_unwind();
            running.spawn(async move {
                match attempt.await {
                    Ok(action) => (key, action, lane),
                    Err(_panic) => {
                        tracing::error!(object = %key, "reconcile panicked");
                        (key, Action::retry(), lane)
                    }
                }
            });
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = &mut filled, if !store_ready => store_ready = true,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((key, action, lane)) = done {
                    if lane == Lane::Later {
                        running_later -= 1;
                    }
                    queue.finished(key, action);
                }
            }
            request = requests.next() => match request {
                Some(key) => queue.request(key),
                None => break,
            },
            Some(expired) = futures::future::poll_fn(|cx| queue.delayed.poll_expired(cx)),
                if !queue.delayed.is_empty() => {
                let key = expired.into_inner();
                queue.states.remove(&key);
                queue.request(key);
            }
        }
    }
    while running.join_next().await.is_some() {}
}

/// The reconcile requests a reflected watch stream makes: an applied object at once, the
/// objects of a (re)list only when it is done, and none for deletions or errors; `wanted`
/// filters them.
///
/// A reflector keeps a relist's objects in a buffer until `InitDone` and only then shows them
/// in its store; [`run`] drops a request for an object its store does not show. Requesting at
/// `InitApply` lost every job created while the operator relisted after an API server restart:
/// it was never reconciled.
pub fn requests_of<K, S>(
    events: S,
    wanted: impl Fn(&K) -> bool + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send
where
    K: Lookup + Clone + Send + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send,
    S: Stream<Item = kube::runtime::watcher::Result<kube::runtime::watcher::Event<K>>> + Send,
{
    use kube::runtime::watcher::Event;
    events
        .scan(Vec::new(), move |relisted, event| {
            let now = match event {
                Ok(Event::Apply(object)) if wanted(&object) => vec![ObjectRef::from_obj(&object)],
                Ok(Event::InitApply(object)) => {
                    if wanted(&object) {
                        relisted.push(ObjectRef::from_obj(&object));
                    }
                    Vec::new()
                }
                Ok(Event::Init) => {
                    relisted.clear();
                    Vec::new()
                }
                Ok(Event::InitDone) => std::mem::take(relisted),
                Ok(Event::Apply(_) | Event::Delete(_)) | Err(_) => Vec::new(),
            };
            std::future::ready(Some(futures::stream::iter(now)))
        })
        .flatten()
}

/// Requests sent through a channel, as a stream for [`run`].
pub fn requests_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct Queue<K: Lookup>
where
    K::DynamicType: Eq + Hash,
{
    states: HashMap<ObjectRef<K>, State>,
    /// Failures in a row, by object; gone at its first success.
    failures: HashMap<ObjectRef<K>, u32>,
    ready: VecDeque<ObjectRef<K>>,
    /// The later lane; an entry whose state is no longer [`State::Later`] is skipped.
    later: VecDeque<ObjectRef<K>>,
    delayed: DelayQueue<ObjectRef<K>>,
}

/// The lane a reconcile was started from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    First,
    Later,
}

impl<K: Lookup> Queue<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The next object to reconcile and its lane: the first lane's, moving the objects
    /// `later` picks to the later lane on the way; else, when `later_may_start`, the later
    /// lane's. Objects gone from the store are forgotten.
    fn next(
        &mut self,
        store: &Store<K>,
        later: &impl Fn(&K) -> bool,
        later_may_start: bool,
    ) -> Option<(ObjectRef<K>, Arc<K>, Lane)>
    where
        K: Clone,
    {
        while let Some(key) = self.ready.pop_front() {
            let Some(object) = store.get(&key) else {
                self.forget(&key);
                continue;
            };
            if later(&object) {
                self.later.push_back(key.clone());
                self.states.insert(key, State::Later);
                continue;
            }
            return Some((key, object, Lane::First));
        }
        if !later_may_start {
            return None;
        }
        loop {
            let key = self.later.pop_front()?;
            if !matches!(self.states.get(&key), Some(State::Later)) {
                continue;
            }
            match store.get(&key) {
                Some(object) => return Some((key, object, Lane::Later)),
                None => self.forget(&key),
            }
        }
    }

    fn forget(&mut self, key: &ObjectRef<K>) {
        self.states.remove(key);
        self.failures.remove(key);
    }

    /// Someone asks for `key` to be reconciled.
    fn request(&mut self, key: ObjectRef<K>) {
        match self.states.entry(key) {
            Entry::Vacant(slot) => {
                self.ready.push_back(slot.key().clone());
                slot.insert(State::Ready);
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                State::Ready => {}
                // Back to the first lane, where it is picked for the later one again if it
                // still is later work.
                State::Later => {
                    self.ready.push_back(slot.key().clone());
                    slot.insert(State::Ready);
                }
                State::Running { again } => *again = true,
                State::Delayed(timer) => {
                    self.delayed.remove(timer);
                    self.ready.push_back(slot.key().clone());
                    slot.insert(State::Ready);
                }
            },
        }
    }

    /// A reconcile of `key` ended asking for `action`.
    fn finished(&mut self, key: ObjectRef<K>, action: Action) {
        let again = matches!(self.states.get(&key), Some(State::Running { again: true }));
        let retry = if action.failed {
            let failures = self.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            Some(retry_delay(*failures))
        } else {
            self.failures.remove(&key);
            None
        };
        match retry.or(action.requeue_after()) {
            _ if again => self.requeue_now(key),
            Some(Duration::ZERO) => self.requeue_now(key),
            Some(after) => {
                let timer = self.delayed.insert(key.clone(), after.min(LONGEST_REQUEUE));
                self.states.insert(key, State::Delayed(timer));
            }
            None => {
                self.states.remove(&key);
            }
        }
    }

    fn requeue_now(&mut self, key: ObjectRef<K>) {
        self.ready.push_back(key.clone());
        self.states.insert(key, State::Ready);
    }
}

#[cfg(test)]
mod tests;
