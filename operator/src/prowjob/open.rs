//! The unfinished jobs, indexed beside the ProwJob store from the same watch events: what a
//! start's limits, a presubmit's supersession and a finish's wake-ups read (they only count
//! jobs that are not complete), so none of them walks the finished jobs the store also holds
//! (100,000 of them in a large installation).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::prowjob::stored::Job;

/// The unfinished jobs of a [`Store`].
#[derive(Clone)]
pub struct OpenJobs {
    store: Store<Job>,
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    open: HashSet<ObjectRef<Job>>,
    /// The unfinished jobs of a relist under way, swapped in at its end.
    relist: Option<HashSet<ObjectRef<Job>>>,
}

impl OpenJobs {
    /// The index of `store`'s unfinished jobs, kept by [`OpenJobs::follow`].
    pub fn new(store: Store<Job>) -> Self {
        Self {
            store,
            inner: Arc::default(),
        }
    }

    /// The unfinished jobs now, as the store has them.
    pub fn state(&self) -> Vec<Arc<Job>> {
        let inner = self.inner.read().expect("open jobs lock");
        inner
            .open
            .iter()
            .filter_map(|key| self.store.get(key))
            .filter(|job| !job.is_complete())
            .collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.inner.read().expect("open jobs lock").open.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in one watch event (after the store did).
    pub fn observe(&self, event: &watcher::Event<Job>) {
        let mut inner = self.inner.write().expect("open jobs lock");
        match event {
            watcher::Event::Init => inner.relist = Some(HashSet::new()),
            watcher::Event::InitApply(job) => {
                if !job.is_complete() {
                    if let Some(relist) = inner.relist.as_mut() {
                        relist.insert(ObjectRef::from_obj(job));
                    }
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.open = relist;
                }
            }
            watcher::Event::Apply(job) => {
                let key = ObjectRef::from_obj(job);
                if job.is_complete() {
                    inner.open.remove(&key);
                } else {
                    inner.open.insert(key);
                }
            }
            watcher::Event::Delete(job) => {
                inner.open.remove(&ObjectRef::from_obj(job));
            }
        }
    }

    /// Passes `events` on, keeping the index.
    pub fn follow<S>(&self, events: S) -> impl Stream<Item = S::Item> + Send
    where
        S: Stream<Item = watcher::Result<watcher::Event<Job>>> + Send,
    {
        let open = self.clone();
        events.inspect(move |event| {
            if let Ok(event) = event {
                open.observe(event);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use serde_json::json;

    use super::*;

    fn job(name: &str, complete: bool) -> Job {
        let status = if complete {
            json!({"state": "success", "completionTime": "2024-05-01T12:00:00Z"})
        } else {
            json!({"state": "pending"})
        };
        Job(serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "ci"},
            "spec": {"job": "j"}, "status": status,
        }))
        .expect("job"))
    }

    fn names(open: &OpenJobs) -> Vec<String> {
        let mut names: Vec<String> = open
            .state()
            .iter()
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_unfinished_jobs_are_kept_through_changes_and_relists() {
        let (store, mut writer) = reflector::store();
        let open = OpenJobs::new(store);
        let mut feed = |event: watcher::Event<Job>| {
            writer.apply_watcher_event(&event);
            open.observe(&event);
        };
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(job("a", false)));
        feed(watcher::Event::InitApply(job("done", true)));
        assert!(open.is_empty(), "a relist shows once it is complete");
        feed(watcher::Event::InitDone);
        assert_eq!(names(&open), ["a"]);
        feed(watcher::Event::Apply(job("b", false)));
        assert_eq!(names(&open), ["a", "b"]);
        feed(watcher::Event::Apply(job("a", true)));
        assert_eq!(names(&open), ["b"], "a finished job leaves");
        feed(watcher::Event::Delete(job("b", false)));
        assert!(open.state().is_empty());
        // A relist replaces what was there.
        feed(watcher::Event::Apply(job("c", false)));
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(job("d", false)));
        assert_eq!(
            names(&open),
            ["c"],
            "the old set serves until the relist is done"
        );
        feed(watcher::Event::InitDone);
        assert_eq!(names(&open), ["d"]);
    }
}
