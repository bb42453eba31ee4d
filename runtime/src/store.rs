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
}
