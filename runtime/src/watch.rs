//! Watches that come back within seconds after the API server does, and that make the process
//! unready while they fail.
//!
//! kube's default backoff (client-go's: 0.8 s doubling to 30 s) had grown to 6-13 s by the time
//! a restarted API server answered, so the operator and webhook resumed 11-14 s after it; and
//! the failures were only logged, so `/readyz` said ready throughout.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, ExponentialBackoff};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde::de::DeserializeOwned;

use crate::health::Readiness;
use crate::store::Synced;

/// The same watch events with each object made into `T`, a lighter form to keep in a store
/// (`kube::runtime::reflector::reflector`): parsed and converted one by one, so the first
/// list never holds both forms of every object.
pub fn converted<K, T, S>(events: S) -> impl Stream<Item = watcher::Result<watcher::Event<T>>>
where
    S: Stream<Item = watcher::Result<watcher::Event<K>>>,
    T: From<K>,
{
    use watcher::Event;
    events.map(|event| {
        event.map(|event| match event {
            Event::Apply(k) => Event::Apply(T::from(k)),
            Event::Delete(k) => Event::Delete(T::from(k)),
            Event::InitApply(k) => Event::InitApply(T::from(k)),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        })
    })
}

/// `config` with its first list as `page_size` asks: 0 reads it from the API server's watch
/// cache in one response (a limit would make the API server page it from etcd, several times
/// slower), N pages it from etcd N objects at a time.
pub fn first_list(config: watcher::Config, page_size: u32) -> watcher::Config {
    match page_size {
        0 => watcher::Config {
            page_size: None,
            ..config.any_semantic()
        },
        n => config.page_size(n),
    }
}

/// First retry of a failed watch request.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between retries: a recovered API server is seen within this (plus jitter).
pub const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// The retry schedule of every watch: 100 ms doubling to 2 s, with jitter so that replicas do
/// not retry in step; reset by the first success. Two seconds between list attempts is light
/// for an API server (each is one request), and short enough that jobs created right after a
/// restart wait seconds, not tens of them.
pub fn backoff() -> impl Backoff {
    ExponentialBackoff::from(
        backon::ExponentialBuilder::default()
            .with_min_delay(FIRST_RETRY)
            .with_max_delay(LONGEST_RETRY)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times(),
    )
}

/// A watch of `api` named `name` for the probes: each failed request marks the process unready
/// (with the error in `/readyz`), each answer marks this watch healthy again. `Init` is no
/// answer: the watcher emits it before it sends a relist's request.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    readiness: Readiness,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    crate::watcher::watcher(api, config)
        .backoff(backoff())
        .inspect(move |event| match event {
            Ok(watcher::Event::Init) => {}
            Ok(_) => readiness.watch_succeeded(name),
            Err(e) => readiness.watch_failed(name, e),
        })
}

/// A watch cache: the store, whether it has its first list, and the reflected events, which
/// fill the store only while they are polled (by a reconciler's requests, or [`drain`]).
pub struct Cached<K: kube::Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The objects.
    pub store: Store<K>,
    /// Whether `store` has its first full list.
    pub synced: Synced,
    /// The watch's events, after the store took them.
    pub events: BoxStream<'static, watcher::Result<watcher::Event<K>>>,
}

/// The one way every process caches a kind: the `K`s of `namespace` (all when none), watched
/// through `client` as `name` (its failures count for `readiness`), reflected into a store.
pub fn cached<K>(
    client: kube::Client,
    namespace: Option<&str>,
    config: watcher::Config,
    name: &'static str,
    readiness: Readiness,
) -> Cached<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (store, writer) = reflector::store();
    let events = crate::reflect::reflect(writer, watch(api, config, name, readiness));
    let (events, synced) = crate::store::signal(events);
    Cached {
        store,
        synced,
        events: events.boxed(),
    }
}

/// Drives a watch whose objects are only cached (its stream's items are not needed), logging
/// its errors.
pub async fn drain<S, T>(stream: S, name: &'static str)
where
    S: Stream<Item = watcher::Result<T>>,
{
    stream
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(watch = name, error = %e, "watch request failed");
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_fast_and_never_wait_more_than_two_seconds_and_a_bit() {
        let delays: Vec<Duration> = backoff().take(20).collect();
        assert!(delays[0] <= FIRST_RETRY * 2, "{delays:?}");
        // Jitter adds up to one more delay's worth.
        assert!(delays.iter().all(|d| *d <= LONGEST_RETRY * 2), "{delays:?}");
        assert!(delays[10] >= LONGEST_RETRY, "{delays:?}");
    }

    #[test]
    fn the_first_list_is_one_response_from_the_watch_cache_unless_paged() {
        let selected = || watcher::Config::default().labels("a=b");
        let whole = first_list(selected(), 0);
        assert_eq!(whole.page_size, None, "no limit");
        assert_eq!(
            whole.list_semantic,
            watcher::ListSemantic::Any,
            "resourceVersion=0"
        );
        assert_eq!(whole.label_selector.as_deref(), Some("a=b"));
        let paged = first_list(selected(), 500);
        assert_eq!(paged.page_size, Some(500));
        assert_eq!(
            paged.list_semantic,
            watcher::ListSemantic::MostRecent,
            "from etcd"
        );
        assert_eq!(paged.label_selector.as_deref(), Some("a=b"));
    }
}
