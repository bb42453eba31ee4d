//! A watch on a test namespace's pods that records what concurrency tests assert: the most
//! pods alive at once, the order pods first appeared in, and every UID each pod name had.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};

/// What the watch has seen so far.
#[derive(Default, Debug)]
pub struct Seen {
    /// Whether each pod, by name, was alive at its last event.
    pub alive: HashMap<String, bool>,
    /// The most pods alive at once.
    pub max_alive: usize,
    /// Pod names in the order they first appeared.
    pub created: Vec<String>,
    /// Every UID seen under each pod name (more than one: the job got a second pod).
    pub uids: HashMap<String, HashSet<String>>,
}

/// Whether a pod still runs or waits to: not finished and not being deleted.
pub fn alive(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// Records pod events of one namespace until dropped.
pub struct PodTracker {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodTracker {
    /// Starts watching the pods `pods` lists.
    pub fn start(pods: Api<Pod>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(Ok(pod)) = events.next().await {
                let mut s = record.lock().expect("lock");
                let name = pod.name_any();
                if !s.alive.contains_key(&name) {
                    s.created.push(name.clone());
                }
                s.uids
                    .entry(name.clone())
                    .or_default()
                    .insert(pod.metadata.uid.clone().unwrap_or_default());
                s.alive.insert(name, alive(&pod));
                let now = s.alive.values().filter(|a| **a).count();
                s.max_alive = s.max_alive.max(now);
            }
        });
        Self { seen, task }
    }

    /// Stops watching and returns what was seen.
    pub fn stop(self) -> Seen {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}
