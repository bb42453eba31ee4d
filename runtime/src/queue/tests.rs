use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

fn object(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.namespace = Some("ns".into());
    cm
}

fn store_with(names: &[&str]) -> (Store<ConfigMap>, Writer<ConfigMap>) {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for name in names {
        writer.apply_watcher_event(&Event::InitApply(object(name)));
    }
    writer.apply_watcher_event(&Event::InitDone);
    (store, writer)
}

/// A queue running in a task, fed through a channel.
struct Harness {
    requests: mpsc::UnboundedSender<ObjectRef<ConfigMap>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start<F, Fut>(store: Store<ConfigMap>, concurrency: usize, reconcile: F) -> Self
    where
        F: Fn(Arc<ConfigMap>) -> Fut + Send + 'static,
        Fut: Future<Output = Action> + Send + 'static,
    {
        Self::start_with(store, Synced::already(), concurrency, reconcile)
    }

    fn start_with<F, Fut>(
        store: Store<ConfigMap>,
        synced: Synced,
        concurrency: usize,
        reconcile: F,
    ) -> Self
    where
        F: Fn(Arc<ConfigMap>) -> Fut + Send + 'static,
        Fut: Future<Output = Action> + Send + 'static,
    {
        Self::start_in_lanes(store, synced, concurrency, |_| false, reconcile)
    }

    fn start_in_lanes<L, F, Fut>(
        store: Store<ConfigMap>,
        synced: Synced,
        concurrency: usize,
        later: L,
        reconcile: F,
    ) -> Self
    where
        L: Fn(&ConfigMap) -> bool + Send + 'static,
        F: Fn(Arc<ConfigMap>) -> Fut + Send + 'static,
        Fut: Future<Output = Action> + Send + 'static,
    {
        let (requests, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_in_lanes(
            store,
            synced,
            requests_from(rx),
            concurrency,
            shutdown.clone(),
            later,
            reconcile,
        ));
        Self {
            requests,
            shutdown,
            task,
        }
    }

    fn ask(&self, name: &str) {
        self.requests
            .send(ObjectRef::new(name).within("ns"))
            .expect("queue running");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("queue task");
    }
}

/// A reconcile that counts its runs and asks for `action`.
fn counting(
    action: Action,
) -> (
    Arc<AtomicUsize>,
    impl Fn(Arc<ConfigMap>) -> futures::future::Ready<Action> + Send + 'static,
) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    (runs, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(action)
    })
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_request_during_a_reconcile_runs_it_once_more_afterwards() {
    let (store, _writer) = store_with(&["a"]);
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let queue = Harness::start(store, 0, move |_| {
        let (runs, mut gate) = (counter.clone(), gate_rx.clone());
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            Action::await_change()
        }
    });
    queue.ask("a");
    settle().await;
    for _ in 0..5 {
        queue.ask("a");
    }
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never two at once");
    gate_tx.send(true).unwrap();
    settle().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "five requests, one more run"
    );
    queue.stop().await;
}

#[tokio::test]
async fn never_more_than_the_limit_at_once_and_in_request_order() {
    let names: Vec<String> = (0..20).map(|i| format!("o{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (store, _writer) = store_with(&refs);
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (l, p, o) = (live.clone(), peak.clone(), order.clone());
    let queue = Harness::start(store, 3, move |obj| {
        let (live, peak, order) = (l.clone(), p.clone(), o.clone());
        async move {
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            order
                .lock()
                .unwrap()
                .push(obj.metadata.name.clone().unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
            live.fetch_sub(1, Ordering::SeqCst);
            Action::await_change()
        }
    });
    for name in &names {
        queue.ask(name);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(*order.lock().unwrap(), names);
    queue.stop().await;
}

/// Whether an object is later work: named `later-...`, or labelled `lane=later`.
fn is_later(o: &ConfigMap) -> bool {
    o.metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .starts_with("later-")
        || o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("lane"))
            .map(String::as_str)
            == Some("later")
}

#[tokio::test]
async fn later_work_waits_for_the_rest_and_takes_at_most_half_the_slots() {
    let later: Vec<String> = (0..10).map(|i| format!("later-{i}")).collect();
    let first: Vec<String> = (0..4).map(|i| format!("first-{i}")).collect();
    let all: Vec<&str> = later.iter().chain(&first).map(String::as_str).collect();
    let (store, _writer) = store_with(&all);
    let live_later = Arc::new(AtomicUsize::new(0));
    let peak_later = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (l, p, o) = (live_later.clone(), peak_later.clone(), order.clone());
    let queue = Harness::start_in_lanes(store, Synced::already(), 4, is_later, move |obj| {
        let (live, peak, order) = (l.clone(), p.clone(), o.clone());
        async move {
            let name = obj.metadata.name.clone().unwrap();
            let is_later = name.starts_with("later-");
            if is_later {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
            }
            order.lock().unwrap().push(name);
            tokio::time::sleep(Duration::from_millis(5)).await;
            if is_later {
                live.fetch_sub(1, Ordering::SeqCst);
            }
            Action::await_change()
        }
    });
    // The later work is asked for first, as a first start's backlog is.
    for name in &all {
        queue.ask(name);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), all.len(), "everything ran once: {order:?}");
    // Two later ones took the free slots (half of four) before the rest was asked for; then
    // every first-lane object started before the remaining later ones.
    assert_eq!(order[..2], ["later-0", "later-1"]);
    assert_eq!(order[2..6], first[..]);
    assert_eq!(order[6..], later[2..]);
    assert_eq!(peak_later.load(Ordering::SeqCst), 2);
    queue.stop().await;
}

#[tokio::test]
async fn a_request_for_waiting_later_work_that_no_longer_is_moves_it_ahead() {
    let (store, mut writer) = store_with(&["later-slow", "x"]);
    let mut x = object("x");
    x.metadata.labels = Some([("lane".to_string(), "later".to_string())].into());
    writer.apply_watcher_event(&Event::Apply(x.clone()));
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let record = ran.clone();
    // Two slots: one for later work, held by later-slow until the gate opens.
    let queue = Harness::start_in_lanes(store, Synced::already(), 2, is_later, move |obj| {
        let (ran, mut gate) = (record.clone(), gate_rx.clone());
        async move {
            let name = obj.metadata.name.clone().unwrap();
            ran.lock().unwrap().push(name.clone());
            if name == "later-slow" {
                let _ = gate.wait_for(|open| *open).await;
            }
            Action::await_change()
        }
    });
    queue.ask("later-slow");
    queue.ask("x");
    settle().await;
    assert_eq!(
        *ran.lock().unwrap(),
        ["later-slow"],
        "x waits in the later lane"
    );
    x.metadata.labels = None;
    writer.apply_watcher_event(&Event::Apply(x));
    queue.ask("x");
    settle().await;
    assert_eq!(
        *ran.lock().unwrap(),
        ["later-slow", "x"],
        "x runs in the free slot"
    );
    gate_tx.send(true).expect("gate");
    settle().await;
    assert_eq!(ran.lock().unwrap().len(), 2, "x ran once");
    queue.stop().await;
}

#[tokio::test]
async fn a_requeue_runs_after_its_delay_or_at_once_when_asked_for() {
    let (store, _writer) = store_with(&["a"]);
    let runs = Arc::new(Mutex::new(Vec::new()));
    let record = runs.clone();
    let start = tokio::time::Instant::now();
    let queue = Harness::start(store, 0, move |_| {
        let mut runs = record.lock().unwrap();
        runs.push(start.elapsed());
        futures::future::ready(match runs.len() {
            1 => Action::requeue(Duration::from_millis(100)),
            2 => Action::requeue(Duration::from_secs(3600)),
            _ => Action::await_change(),
        })
    });
    queue.ask("a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(runs[1] >= Duration::from_millis(100), "{runs:?}");
    }
    // The hour-long requeue is cut short by a request.
    queue.ask("a");
    settle().await;
    assert_eq!(runs.lock().unwrap().len(), 3);
    queue.stop().await;
}

#[tokio::test]
async fn objects_gone_from_the_store_are_skipped_and_a_panic_is_retried() {
    let (store, _writer) = store_with(&["boom"]);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    tokio::time::pause();
    let queue = Harness::start(store, 0, move |obj| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            assert_ne!(
                obj.metadata.name.as_deref(),
                Some("boom"),
                "a bad reconcile"
            );
            Action::await_change()
        }
    });
    queue.ask("missing");
    queue.ask("boom");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the missing object is not reconciled"
    );
    tokio::time::sleep(FIRST_RETRY + Duration::from_millis(10)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the panicked one is tried again"
    );
    queue.stop().await;
}

#[test]
fn the_retry_delay_doubles_up_to_its_longest() {
    let ms = |n| retry_delay(n).as_millis();
    assert_eq!(
        [1, 2, 3, 4].map(ms),
        [200, 400, 800, 1600],
        "200 ms, doubling"
    );
    assert_eq!(ms(11), 120_000, "capped at two minutes");
    assert_eq!(ms(u32::MAX), 120_000, "no overflow");
}

/// A failing object waits longer with each failure in a row and starts over after a
/// success; an object beside it is reconciled at once all along.
#[tokio::test]
async fn failures_back_off_per_object_and_reset_on_success() {
    let (store, _writer) = store_with(&["flaky", "fine"]);
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let record = runs.clone();
    let queue = Harness::start(store, 0, move |obj| {
        let record = record.clone();
        async move {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let mut runs = record.lock().unwrap();
            runs.push((name.clone(), start.elapsed().as_millis()));
            let flaky_runs = runs.iter().filter(|(n, _)| n == "flaky").count();
            // Fails three times, succeeds once, then fails again.
            if name == "flaky" && flaky_runs != 4 {
                Action::retry()
            } else {
                Action::await_change()
            }
        }
    });
    queue.ask("flaky");
    tokio::time::sleep(Duration::from_millis(250)).await;
    queue.ask("fine");
    tokio::time::sleep(Duration::from_millis(10)).await;
    // 0 (fail), 200 (fail), 600 (fail), 1400 (success); then asked again at 1500: fails,
    // and the backoff starts over at 200 ms.
    tokio::time::sleep(Duration::from_millis(1240)).await;
    queue.ask("flaky");
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.stop().await;
    let runs = runs.lock().unwrap().clone();
    let flaky: Vec<u128> = runs
        .iter()
        .filter(|(n, _)| n == "flaky")
        .map(|(_, t)| *t)
        .collect();
    let fine: Vec<u128> = runs
        .iter()
        .filter(|(n, _)| n == "fine")
        .map(|(_, t)| *t)
        .collect();
    assert!(
        fine.len() == 1 && fine[0].abs_diff(250) <= 5,
        "the other object is not held up: {fine:?}"
    );
    let expected = [0, 200, 600, 1400, 1500, 1700];
    assert_eq!(flaky.len(), expected.len(), "{flaky:?}");
    for (got, want) in flaky.iter().zip(expected) {
        assert!(got.abs_diff(want) <= 5, "{flaky:?} against {expected:?}");
    }
}

#[tokio::test]
async fn an_absurd_requeue_delay_waits_an_hour_and_the_queue_keeps_working() {
    let (store, _writer) = store_with(&["long", "later"]);
    tokio::time::pause();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let record = runs.clone();
    let queue = Harness::start(store, 0, move |obj| {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let mut runs = record.lock().unwrap();
        runs.push(name.clone());
        futures::future::ready(if name == "long" {
            // What a job with pod_running_timeout: 20000h used to ask for.
            Action::requeue(Duration::from_secs(20_000 * 3600))
        } else {
            Action::await_change()
        })
    });
    queue.ask("long");
    tokio::time::sleep(Duration::from_millis(10)).await;
    queue.ask("later");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        *runs.lock().unwrap(),
        ["long", "later"],
        "the queue survived"
    );
    tokio::time::sleep(LONGEST_REQUEUE).await;
    assert_eq!(
        *runs.lock().unwrap(),
        ["long", "later", "long"],
        "decided again after an hour"
    );
    queue.stop().await;
}

#[tokio::test]
async fn a_relist_requests_its_objects_once_it_is_done_and_only_the_wanted_ones() {
    use kube::runtime::watcher::Event;
    let events = futures::stream::iter(vec![
        Ok(Event::Apply(object("before"))),
        Ok(Event::Init),
        Ok(Event::InitApply(object("a"))),
        Ok(Event::InitApply(object("skip"))),
        Ok(Event::InitApply(object("b"))),
        Ok(Event::InitDone),
        Ok(Event::Apply(object("c"))),
        Ok(Event::Delete(object("a"))),
        // A relist cut short by an error and started again requests only the new one.
        Ok(Event::Init),
        Ok(Event::InitApply(object("lost"))),
        Err(kube::runtime::watcher::Error::NoResourceVersion),
        Ok(Event::Init),
        Ok(Event::InitApply(object("d"))),
        Ok(Event::InitDone),
    ]);
    let names: Vec<String> = requests_of(events, |o: &ConfigMap| {
        o.metadata.name.as_deref() != Some("skip")
    })
    .map(|r| r.name)
    .collect()
    .await;
    assert_eq!(names, ["before", "a", "b", "c", "d"]);
}

#[tokio::test]
async fn requests_made_while_the_store_fills_run_once_it_is_full() {
    let (store, mut writer) = reflector::store();
    // The watch stream as the controllers build it: reflected, then signalled.
    let (events, rx) = mpsc::unbounded_channel::<Event<ConfigMap>>();
    let reflected = requests_from(rx).map(move |event| {
        writer.apply_watcher_event(&event);
        Ok::<_, kube::runtime::watcher::Error>(event)
    });
    let (reflected, synced) = crate::store::signal(reflected);
    tokio::spawn(reflected.for_each(|_| async {}));
    let (runs, reconcile) = counting(Action::await_change());
    let queue = Harness::start_with(store, synced, 0, reconcile);
    // The watch's initial list names the object before the store shows any of it.
    events.send(Event::Init).unwrap();
    events.send(Event::InitApply(object("a"))).unwrap();
    queue.ask("a");
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    events.send(Event::InitDone).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    queue.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_reconciles_in_flight() {
    let (store, _writer) = store_with(&["a"]);
    let done = Arc::new(AtomicUsize::new(0));
    let finished = done.clone();
    let queue = Harness::start(store, 0, move |_| {
        let finished = finished.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Action::await_change()
        }
    });
    queue.ask("a");
    settle().await;
    queue.stop().await;
    assert_eq!(done.load(Ordering::SeqCst), 1);
}
