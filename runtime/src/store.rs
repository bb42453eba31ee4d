//! Readiness of reflector stores: whether a store holds its first full list.

use std::time::Duration;

use kube::runtime::reflector::Store;

/// Waits until a store has its first full list; false if its writer is gone. Polls afresh
/// rather than waiting once: the store's readiness signal wakes only one of several waiters,
/// and the queue, readiness and retention each wait on the same store.
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
