//! kube's reflector with a list applied in place.
//!
//! kube's store writer builds a list up beside the store and swaps it in when the list is
//! through, so while 100,000 jobs are relisted (a watch whose resourceVersion expired, an API
//! server restarted) or listed in full after a first, partial list (`store::part_first`, where
//! at a first start on unmarked jobs the part is every job), the process holds two copies of
//! each: 120 MB more for the operator's job store. Here each listed object replaces its copy in
//! the store as it arrives, and once the list is through, what it did not have is removed. The
//! store ends exactly as kube's would, holding the listed objects; while the list comes, it
//! shows some objects as listed and others as they were before, each one a copy the API server
//! had. The only extra memory is the keys the store held when the list began.

use std::collections::HashSet;
use std::hash::Hash;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{store::Writer, Lookup, ObjectRef};
use kube::runtime::watcher::{self, Event};

/// Which keys a list in progress has yet to account for: the store's keys when the list began,
/// and keys a watch alongside (`store::part_first`'s part) added while it came, less those the
/// list brought. What is left when the list is through is not in the list: removed.
#[derive(Debug)]
struct Relist<Key> {
    unlisted: HashSet<Key>,
}

impl<Key: Eq + Hash + Clone> Relist<Key> {
    /// A list begins while the store holds `keys`.
    fn start(keys: impl IntoIterator<Item = Key>) -> Self {
        Self {
            unlisted: keys.into_iter().collect(),
        }
    }

    /// The list brought `key`: it stays.
    fn listed(&mut self, key: &Key) {
        self.unlisted.remove(key);
    }

    /// A watch alongside applied `key`. Not in the store before: the list must bring it too
    /// (otherwise it is gone by the list's time, or newer, and the list's own watch brings it
    /// again). In the store and not waiting to be listed: the list brought it already.
    fn applied(&mut self, key: &Key, was_stored: bool) {
        if !was_stored {
            self.unlisted.insert(key.clone());
        }
    }

    /// A watch alongside deleted `key`: nothing is left to remove.
    fn deleted(&mut self, key: &Key) {
        self.unlisted.remove(key);
    }

    /// The list is through: the keys to remove.
    fn done(self) -> HashSet<Key> {
        self.unlisted
    }
}

/// Reflects `events` into `writer`'s store (as `kube::runtime::reflector::reflector` does),
/// applying a list in place rather than swapping it in at its end; the events go on unchanged.
/// kube's `Store::wait_until_ready` is never told: whether a store has its list is
/// [`crate::store::signal`]'s.
pub fn reflect<K, S>(mut writer: Writer<K>, events: S) -> impl Stream<Item = S::Item>
where
    K: Lookup + Clone,
    K::DynamicType: Eq + Hash + Clone + Default,
    S: Stream<Item = watcher::Result<Event<K>>>,
{
    let store = writer.as_reader();
    let key = |k: &K| k.to_object_ref(Default::default());
    let mut relist: Option<Relist<ObjectRef<K>>> = None;
    events.map(move |event| {
        let Ok(event) = event else {
            return event;
        };
        Ok(match event {
            Event::Init => {
                relist = Some(Relist::start(store.state().iter().map(|k| key(k))));
                Event::Init
            }
            Event::InitApply(object) => {
                if let Some(relist) = relist.as_mut() {
                    relist.listed(&key(&object));
                }
                let apply = Event::Apply(object);
                writer.apply_watcher_event(&apply);
                let Event::Apply(object) = apply else {
                    unreachable!("built just above")
                };
                Event::InitApply(object)
            }
            Event::InitDone => {
                for gone in relist.take().map(Relist::done).unwrap_or_default() {
                    if let Some(object) = store.get(&gone) {
                        writer.apply_watcher_event(&Event::Delete(K::clone(&object)));
                    }
                }
                Event::InitDone
            }
            Event::Apply(object) => {
                if let Some(relist) = relist.as_mut() {
                    let k = key(&object);
                    let was_stored = store.get(&k).is_some();
                    relist.applied(&k, was_stored);
                }
                let apply = Event::Apply(object);
                writer.apply_watcher_event(&apply);
                apply
            }
            Event::Delete(object) => {
                if let Some(relist) = relist.as_mut() {
                    relist.deleted(&key(&object));
                }
                let delete = Event::Delete(object);
                writer.apply_watcher_event(&delete);
                delete
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    use super::*;

    fn object(name: &str, version: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    /// The store as name -> resourceVersion.
    fn shown(store: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
        store
            .state()
            .iter()
            .map(|c| {
                (
                    c.metadata.name.clone().unwrap_or_default(),
                    c.metadata.resource_version.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn a_list_replaces_each_copy_as_it_comes_and_ends_with_exactly_the_listed_objects() {
        use futures::channel::mpsc::unbounded;
        let (store, writer) = reflector::store::<ConfigMap>();
        let (tx, rx) = unbounded::<watcher::Result<Event<ConfigMap>>>();
        let events = reflect(writer, rx);
        let mut events = std::pin::pin!(events);
        let send = |events: Vec<Event<ConfigMap>>| {
            for e in events {
                tx.unbounded_send(Ok(e)).expect("still read");
            }
        };
        let drain = |events: &mut std::pin::Pin<&mut _>| {
            let mut n = 0;
            while let Some(Some(event)) = StreamExt::next(events).now_or_never() {
                let _: watcher::Result<Event<ConfigMap>> = event;
                n += 1;
            }
            n
        };

        // A part applied ahead of the list (store::part_first), then the list begins.
        send(vec![
            Event::Apply(object("a", "1")),
            Event::Apply(object("gone-before", "2")),
            Event::Apply(object("b", "3")),
        ]);
        assert_eq!(drain(&mut events), 3, "every event goes on");
        send(vec![Event::Init, Event::InitApply(object("a", "10"))]);
        drain(&mut events);
        assert_eq!(
            shown(&store),
            map(&[("a", "10"), ("b", "3"), ("gone-before", "2")]),
            "a listed object replaces its copy at once; the others show as they were"
        );
        // A watch alongside: a new object, a newer copy of a listed one, a deletion.
        send(vec![
            Event::Apply(object("ghost", "11")),
            Event::Apply(object("a", "12")),
            Event::Delete(object("b", "3")),
            Event::InitApply(object("c", "13")),
        ]);
        drain(&mut events);
        assert_eq!(
            shown(&store),
            map(&[
                ("a", "12"),
                ("c", "13"),
                ("ghost", "11"),
                ("gone-before", "2")
            ])
        );
        send(vec![Event::InitApply(object("d", "14")), Event::InitDone]);
        assert_eq!(drain(&mut events), 2);
        assert_eq!(
            shown(&store),
            map(&[("a", "12"), ("c", "13"), ("d", "14")]),
            "what the list did not bring is gone: deleted before it, or the watch's own"
        );

        // A relist: the same in place; a watch event after it is applied as ever.
        send(vec![
            Event::Init,
            Event::InitApply(object("d", "20")),
            Event::InitApply(object("e", "21")),
        ]);
        drain(&mut events);
        assert_eq!(
            shown(&store),
            map(&[("a", "12"), ("c", "13"), ("d", "20"), ("e", "21")])
        );
        send(vec![Event::InitDone, Event::Apply(object("f", "22"))]);
        drain(&mut events);
        assert_eq!(shown(&store), map(&[("d", "20"), ("e", "21"), ("f", "22")]));
        send(vec![Event::Delete(object("d", "20"))]);
        drain(&mut events);
        assert_eq!(shown(&store), map(&[("e", "21"), ("f", "22")]));
    }

    #[test]
    fn a_relist_accounts_for_every_key_it_started_with_or_saw_added() {
        let mut relist = Relist::start([1, 2, 3]);
        relist.listed(&1);
        relist.applied(&4, false);
        relist.applied(&1, true);
        relist.deleted(&3);
        relist.listed(&5);
        let mut gone: Vec<_> = relist.done().into_iter().collect();
        gone.sort();
        assert_eq!(gone, vec![2, 4]);
    }
}
