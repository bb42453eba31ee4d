//! Readiness of reflector stores: whether a store holds its first full list, told to every
//! waiter at once.
//!
//! kube's `Store::wait_until_ready` hands its signal through a lock, one waiter at a time; the
//! queue, readiness, retention and the webhook each wait on the same stores, and polling it
//! every few milliseconds was the workaround. Here the reflected stream itself says when its
//! first list is in the store.

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// Whether a store has its first full list.
#[derive(Clone, Debug)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    /// Waits until the store has its first full list; false if its watch stream is gone
    /// before that.
    pub async fn wait(&self) -> bool {
        let mut rx = self.0.clone();
        let synced = rx.wait_for(|synced| *synced).await.is_ok();
        synced
    }

    /// Whether the store has its first full list within `within`: a reconcile that needs
    /// another store waits this long at most, so a watch that keeps failing (a CRD not
    /// installed) holds up no work slot for good; the caller retries later.
    pub async fn wait_at_most(&self, within: std::time::Duration) -> bool {
        tokio::time::timeout(within, self.wait())
            .await
            .unwrap_or(false)
    }

    /// Whether the store has its first full list now, without waiting.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }

    /// A store that is synced already (a store filled by hand, in tests).
    pub fn already() -> Self {
        Self(watch::channel(true).1)
    }
}

/// The same reflected watch stream, and its store's [`Synced`]: set once the stream's first
/// `InitDone` has gone through (after `.reflect(writer)`, the store shows the list by then).
pub fn signal<K, S>(events: S) -> (impl Stream<Item = S::Item> + Send, Synced)
where
    K: Send,
    S: Stream<Item = watcher::Result<Event<K>>> + Send,
{
    let (tx, rx) = watch::channel(false);
    let events = events.inspect(move |event| {
        if let Ok(Event::InitDone) = event {
            tx.send_replace(true);
        }
    });
    (events, Synced(rx))
}

/// `all`'s events with, in front of them until `all`'s first list is through, the events of
/// `part`: a watch of a small part of the same objects (selected by label). A store reflecting
/// the result holds `part`'s objects as soon as `part` is listed, and exactly `all`'s once
/// `all`'s first `InitDone` is through (kube's reflector swaps the list in then;
/// [`crate::reflect::reflect`] has applied it in place, each listed object replacing its copy
/// from `part`); from then on `part` is dropped, and the stream is `all`'s alone.
///
/// `part`'s listed objects come as `Apply` (an `Init` would discard what `all` is listing),
/// and its `Init` and `InitDone` are dropped. The [`Synced`] returned is set once the store
/// holds `part`'s first list (or `all`'s, if that is first): the operator is ready with its
/// unfinished jobs while its finished ones are still arriving. An object that leaves `part`'s
/// selection meanwhile leaves the store until `all`'s list brings it back, so whatever needs
/// every object waits for `all`'s own [`signal`].
pub fn part_first<K, A, P>(all: A, part: P) -> (impl Stream<Item = A::Item> + Send, Synced)
where
    K: Send,
    A: Stream<Item = watcher::Result<Event<K>>> + Send,
    P: Stream<Item = watcher::Result<Event<K>>> + Send,
{
    use std::task::Poll;
    let (tx, rx) = watch::channel(false);
    let mut all = Box::pin(all);
    let mut part = Some(Box::pin(part));
    // Told at the next poll: by then the item before it has gone through every stage.
    let mut tell = false;
    let events = futures::stream::poll_fn(move |cx| {
        if std::mem::take(&mut tell) {
            tx.send_replace(true);
        }
        let Some(listing) = part.as_mut() else {
            return all.as_mut().poll_next(cx);
        };
        match all.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(Event::InitDone))) => {
                part = None;
                tell = true;
                return Poll::Ready(Some(Ok(Event::InitDone)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        loop {
            match listing.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(Event::Init))) => {}
                Poll::Ready(Some(Ok(Event::InitDone))) => {
                    // Every object of the list went through before this poll.
                    tx.send_replace(true);
                }
                Poll::Ready(Some(Ok(Event::InitApply(k) | Event::Apply(k)))) => {
                    return Poll::Ready(Some(Ok(Event::Apply(k))))
                }
                Poll::Ready(Some(other)) => return Poll::Ready(Some(other)),
                Poll::Ready(None) => {
                    part = None;
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    });
    (events, Synced(rx))
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn every_waiter_learns_of_the_first_list_and_a_lost_stream_says_so() {
        let (events, synced) = signal(futures::stream::iter(vec![
            Ok::<_, watcher::Error>(Event::<u8>::Init),
            Ok(Event::InitApply(1)),
            Ok(Event::InitDone),
        ]));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let synced = synced.clone();
                tokio::spawn(async move { synced.wait().await })
            })
            .collect();
        assert!(
            synced.wait().now_or_never().is_none(),
            "not before the list is through"
        );
        let mut events = std::pin::pin!(events);
        while events.next().await.is_some() {}
        for waiter in waiters {
            assert!(waiter.await.expect("waiter"), "every waiter is told");
        }
        assert_eq!(synced.wait().now_or_never(), Some(true));

        let (never, unsynced) = signal(futures::stream::iter(vec![Ok::<_, watcher::Error>(
            Event::<u8>::Init,
        )]));
        drop(never);
        assert!(!unsynced.wait().await, "the stream is gone before its list");
        assert!(Synced::already().wait().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_wait_gives_up_on_a_watch_that_never_lists() {
        // A stream that is alive but never lists (a watch failing on a missing CRD).
        let (pending, stuck) = signal(futures::stream::pending::<watcher::Result<Event<u8>>>());
        let started = tokio::time::Instant::now();
        assert!(!stuck.wait_at_most(std::time::Duration::from_secs(1)).await);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(1));
        drop(pending);
        assert!(
            Synced::already()
                .wait_at_most(std::time::Duration::from_secs(1))
                .await
        );
    }

    /// A store as kube's reflector keeps one: a relist is buffered and swapped in at its end.
    #[derive(Default)]
    struct Model {
        shown: std::collections::BTreeSet<u8>,
        relist: Option<std::collections::BTreeSet<u8>>,
    }

    impl Model {
        fn take(&mut self, event: &Event<u8>) {
            match event {
                Event::Init => self.relist = Some(Default::default()),
                Event::InitApply(k) => {
                    self.relist.get_or_insert_with(Default::default).insert(*k);
                }
                Event::InitDone => self.shown = self.relist.take().unwrap_or_default(),
                Event::Apply(k) => {
                    self.shown.insert(*k);
                }
                Event::Delete(k) => {
                    self.shown.remove(k);
                }
            }
        }

        fn shown(&self) -> Vec<u8> {
            self.shown.iter().copied().collect()
        }
    }

    #[tokio::test]
    async fn a_part_listed_first_fills_the_store_until_the_whole_list_replaces_it() {
        use futures::channel::mpsc::unbounded;
        let (all_tx, all_rx) = unbounded::<watcher::Result<Event<u8>>>();
        let (part_tx, part_rx) = unbounded::<watcher::Result<Event<u8>>>();
        let (events, part_synced) = part_first(all_rx, part_rx);
        let mut events = std::pin::pin!(events);
        let mut store = Model::default();
        fn drain<S>(events: &mut std::pin::Pin<&mut S>, store: &mut Model)
        where
            S: Stream<Item = watcher::Result<Event<u8>>>,
        {
            while let Some(Some(event)) = events.next().now_or_never() {
                store.take(&event.expect("no error here"));
            }
        }
        let send = |tx: &futures::channel::mpsc::UnboundedSender<_>, events: Vec<Event<u8>>| {
            for e in events {
                tx.unbounded_send(Ok(e)).expect("still read");
            }
        };

        send(
            &part_tx,
            vec![Event::Init, Event::InitApply(1), Event::InitApply(2)],
        );
        drain(&mut events, &mut store);
        assert_eq!(
            store.shown(),
            vec![1, 2],
            "the part's objects show as they come"
        );
        assert!(
            !part_synced.is_synced(),
            "not before the part's list is through"
        );
        send(
            &part_tx,
            vec![Event::InitDone, Event::Apply(3), Event::Delete(2)],
        );
        drain(&mut events, &mut store);
        assert!(part_synced.is_synced());
        assert_eq!(store.shown(), vec![1, 3], "the part's watch follows");

        // The whole list is buffered while it comes; the part's watch still goes through.
        send(
            &all_tx,
            vec![Event::Init, Event::InitApply(1), Event::InitApply(2)],
        );
        send(&part_tx, vec![Event::Apply(5)]);
        drain(&mut events, &mut store);
        assert_eq!(store.shown(), vec![1, 3, 5]);
        send(
            &all_tx,
            vec![Event::InitApply(3), Event::InitApply(4), Event::InitDone],
        );
        drain(&mut events, &mut store);
        assert_eq!(store.shown(), vec![1, 2, 3, 4], "exactly the whole list");
        assert!(
            part_tx.unbounded_send(Ok(Event::Apply(6))).is_err(),
            "the part's watch is dropped once the whole list is in"
        );
        send(&all_tx, vec![Event::Apply(7), Event::Delete(1)]);
        drain(&mut events, &mut store);
        assert_eq!(store.shown(), vec![2, 3, 4, 7]);

        // The whole list first: that is the part's too.
        let (all_tx, all_rx) = unbounded::<watcher::Result<Event<u8>>>();
        let (_part_tx, part_rx) = unbounded::<watcher::Result<Event<u8>>>();
        let (events, part_synced) = part_first(all_rx, part_rx);
        let mut events = std::pin::pin!(events);
        let mut store = Model::default();
        send(
            &all_tx,
            vec![Event::Init, Event::InitApply(9), Event::InitDone],
        );
        drain(&mut events, &mut store);
        assert!(part_synced.is_synced());
        assert_eq!(store.shown(), vec![9]);
    }
}
