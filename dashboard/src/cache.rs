//! What the dashboard reads, kept by watches: the jobs as rows in an [`Index`] (each job parsed,
//! turned into its row and dropped, so 100,000 jobs stay small), and the pools, their clusters
//! and the job definitions in kube's stores. One watch per namespace the dashboard is given (its
//! ServiceAccount may read only those), or one over all namespaces.

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use prow_api::dashboard::index::Index;
use prow_api::dashboard::row::JobRow;
use prow_api::jobdefinition::JobDefinition;
use prow_api::testclusterpool::TestClusterPool;
use prow_api::wire::meta_without_managed_fields;
use prow_api::{ProwJob, ProwJobSpec, ProwJobStatus, ProwJobType, Refs, TestCluster};
use prow_runtime::health::Readiness;
use prow_runtime::store::Synced;
use prow_runtime::watch;
use serde::{Deserialize, Deserializer};

/// A ProwJob as the dashboard's watch reads it: without managed fields, and without its pod
/// spec and decoration, which no row shows.
#[derive(Clone, Debug)]
pub struct WireJob(pub ProwJob);

impl<'de> Deserialize<'de> for WireJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only the spec's fields a row reads are parsed: the pod spec, the decoration and the
        // rest are skipped unparsed (parsing a pod spec into its types was most of a relist).
        #[derive(Deserialize)]
        struct Spec {
            #[serde(rename = "type", default)]
            job_type: Option<ProwJobType>,
            #[serde(default)]
            namespace: String,
            #[serde(default)]
            job: String,
            #[serde(default)]
            refs: Option<Refs>,
        }
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default, deserialize_with = "meta_without_managed_fields")]
            metadata: ObjectMeta,
            spec: Spec,
            #[serde(default)]
            status: Option<ProwJobStatus>,
        }
        let Fields {
            mut metadata,
            spec,
            status,
        } = Fields::deserialize(deserializer)?;
        metadata.annotations = None;
        Ok(WireJob(ProwJob {
            metadata,
            spec: ProwJobSpec {
                job_type: spec.job_type,
                namespace: spec.namespace,
                job: spec.job,
                refs: spec.refs.map(Box::new),
                ..Default::default()
            },
            status,
        }))
    }
}

prow_api::prowjob_newtype_resource!(WireJob);

/// The dashboard's view of the cluster.
#[derive(Clone)]
pub struct Caches {
    /// The jobs.
    pub jobs: Arc<RwLock<Index>>,
    /// Pools, by namespace watched.
    pub pools: Vec<Store<TestClusterPool>>,
    /// Their clusters.
    pub clusters: Vec<Store<TestCluster>>,
    /// Job definitions.
    pub definitions: Vec<Store<JobDefinition>>,
    /// The namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    synced: Vec<Synced>,
}

impl Caches {
    /// Whether `namespace` is one the dashboard shows.
    pub fn shows(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Waits until every watch has its first list; false if one is gone.
    pub async fn synced(&self) -> bool {
        for s in &self.synced {
            if !s.wait().await {
                return false;
            }
        }
        true
    }

    /// Every pool.
    pub fn all_pools(&self) -> Vec<Arc<TestClusterPool>> {
        self.pools.iter().flat_map(Store::state).collect()
    }

    /// Every cluster.
    pub fn all_clusters(&self) -> Vec<Arc<TestCluster>> {
        self.clusters.iter().flat_map(Store::state).collect()
    }

    /// Every definition.
    pub fn all_definitions(&self) -> Vec<Arc<JobDefinition>> {
        self.definitions.iter().flat_map(Store::state).collect()
    }

    /// A copy of the index for a read.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.jobs.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Applies one watch event of the watch of `scope` (a namespace; None: all) to the index. A
/// relist builds a fresh index beside the current one and swaps it in when the list is
/// through, so the pages never show half a list; a namespace's relist replaces that
/// namespace's rows only (the other namespaces' watches keep theirs).
pub fn apply(
    index: &RwLock<Index>,
    scope: Option<&str>,
    building: &mut Option<Index>,
    event: Event<WireJob>,
) {
    let write = || index.write().unwrap_or_else(|p| p.into_inner());
    match event {
        Event::Init => *building = Some(Index::default()),
        Event::InitApply(WireJob(job)) => {
            let fresh = building.get_or_insert_with(Index::default);
            let row = JobRow::of(&job, &mut fresh.strings).for_lists();
            fresh.apply(row);
        }
        Event::InitDone => {
            if let Some(mut fresh) = building.take() {
                match scope {
                    Some(namespace) => write().replace_namespace(namespace, fresh),
                    None => {
                        fresh.strings.prune();
                        *write() = fresh;
                    }
                }
            }
        }
        Event::Apply(WireJob(job)) => {
            let mut index = write();
            let row = JobRow::of(&job, &mut index.strings).for_lists();
            index.apply(row);
        }
        Event::Delete(WireJob(job)) => {
            let mut index = write();
            index.remove(
                job.metadata.namespace.as_deref().unwrap_or_default(),
                job.metadata.name.as_deref().unwrap_or_default(),
            );
        }
    }
}

/// The name a watch of `kind` in `scope` has for the probes (`prowjobs/ci`): each namespace's
/// watch fails and recovers on its own. Made once per watch at start (so kept for good).
fn watch_name(kind: &str, scope: &Option<String>) -> &'static str {
    match scope {
        Some(ns) => Box::leak(format!("{kind}/{ns}").into_boxed_str()),
        None => Box::leak(kind.to_owned().into_boxed_str()),
    }
}

/// A watch to run.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Starts the watches of `namespaces` (all when empty) through `client`; the futures to run
/// them, and the caches they fill. With several namespaces the job watches share one index.
pub fn start(
    client: kube::Client,
    namespaces: Vec<String>,
    page_size: u32,
    readiness: Readiness,
) -> (Caches, Vec<Task>) {
    let jobs = Arc::new(RwLock::new(Index::default()));
    let mut tasks: Vec<Task> = Vec::new();
    let mut synced = Vec::new();
    let (mut pools, mut clusters, mut definitions) = (Vec::new(), Vec::new(), Vec::new());
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    for scope in scopes {
        let api: Api<WireJob> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let config = watcher::Config::default().page_size(page_size);
        let events = watch::watch(
            api,
            config,
            watch_name("prowjobs", &scope),
            readiness.clone(),
        );
        let (events, jobs_synced) = prow_runtime::store::signal(events);
        synced.push(jobs_synced);
        let index = jobs.clone();
        let namespace = scope.clone();
        tasks.push(Box::pin(async move {
            let mut building = None;
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => apply(&index, namespace.as_deref(), &mut building, event),
                    Err(e) => tracing::debug!(error = %e, "prowjob watch request failed"),
                }
            }
        }));
        let ns = scope.as_deref();
        let names = ["testclusterpools", "testclusters", "jobdefinitions"]
            .map(|kind| watch_name(kind, &scope));
        let pool = watch::cached::<TestClusterPool>(
            client.clone(),
            ns,
            watcher::Config::default(),
            names[0],
            readiness.clone(),
        );
        let cluster = watch::cached::<TestCluster>(
            client.clone(),
            ns,
            watcher::Config::default(),
            names[1],
            readiness.clone(),
        );
        let definition = watch::cached::<JobDefinition>(
            client.clone(),
            ns,
            watcher::Config::default(),
            names[2],
            readiness.clone(),
        );
        let feeds = [
            (pool.events.map(|e| e.map(|_| ())).boxed(), pool.synced),
            (
                cluster.events.map(|e| e.map(|_| ())).boxed(),
                cluster.synced,
            ),
            (
                definition.events.map(|e| e.map(|_| ())).boxed(),
                definition.synced,
            ),
        ];
        for ((events, s), name) in feeds.into_iter().zip(names) {
            synced.push(s);
            tasks.push(Box::pin(watch::drain(events, name)));
        }
        pools.push(pool.store);
        clusters.push(cluster.store);
        definitions.push(definition.store);
    }
    (
        Caches {
            jobs,
            pools,
            clusters,
            definitions,
            namespaces,
            synced,
        },
        tasks,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(name: &str, state: &str) -> WireJob {
        serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "ci", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "managedFields": [{"manager": "x"}], "annotations": {"big": "x"}},
            "spec": {"type": "periodic", "job": "nightly",
                     "pod_spec": {"containers": [{"name": "t", "image": "x"}]}},
            "status": {"state": state},
        }))
        .expect("job")
    }

    #[test]
    fn the_wire_job_drops_what_no_row_shows() {
        let WireJob(j) = job("a", "pending");
        assert!(j.spec.pod_spec.is_none() && j.metadata.managed_fields.is_none());
        assert!(j.metadata.annotations.is_none());
        assert_eq!(j.spec.job, "nightly");
        assert_eq!(j.spec.job_type, Some(ProwJobType::Periodic));
        assert_eq!(j.state(), prow_api::ProwJobState::Pending);
    }

    #[test]
    fn a_relist_is_swapped_in_whole_and_drops_jobs_deleted_while_the_watch_was_down() {
        let index = RwLock::new(Index::default());
        let mut building = None;
        apply(
            &index,
            None,
            &mut building,
            Event::Apply(job("gone", "pending")),
        );
        apply(&index, None, &mut building, Event::Init);
        apply(
            &index,
            None,
            &mut building,
            Event::InitApply(job("a", "success")),
        );
        assert!(
            index.read().expect("read").get("ci", "gone").is_some(),
            "the old list until the new one is through"
        );
        apply(&index, None, &mut building, Event::InitDone);
        let read = index.read().expect("read");
        assert!(read.get("ci", "gone").is_none());
        assert_eq!(read.len(), 1);
        drop(read);
        apply(
            &index,
            None,
            &mut building,
            Event::Apply(job("a", "failure")),
        );
        assert_eq!(
            index.read().expect("read").get("ci", "a").map(|r| r.state),
            Some(prow_api::ProwJobState::Failure)
        );
        apply(
            &index,
            None,
            &mut building,
            Event::Delete(job("a", "failure")),
        );
        assert!(index.read().expect("read").is_empty());
    }

    #[test]
    fn a_namespaces_relist_keeps_the_jobs_of_the_other_watched_namespaces() {
        let in_ns = |ns: &str, name: &str| {
            let WireJob(mut j) = job(name, "success");
            j.metadata.namespace = Some(ns.to_owned());
            WireJob(j)
        };
        let index = RwLock::new(Index::default());
        let (mut a, mut b) = (None, None);
        for (scope, building, name) in [("a", &mut a, "a1"), ("b", &mut b, "b1")] {
            apply(&index, Some(scope), building, Event::Init);
            apply(
                &index,
                Some(scope),
                building,
                Event::InitApply(in_ns(scope, name)),
            );
            apply(&index, Some(scope), building, Event::InitDone);
        }
        // Namespace a's watch lists again and a1 is gone meanwhile; b's job stays.
        apply(&index, Some("a"), &mut a, Event::Init);
        apply(
            &index,
            Some("a"),
            &mut a,
            Event::InitApply(in_ns("a", "a2")),
        );
        apply(&index, Some("a"), &mut a, Event::InitDone);
        let read = index.read().expect("read");
        assert!(read.get("a", "a1").is_none() && read.get("a", "a2").is_some());
        assert!(read.get("b", "b1").is_some(), "b's jobs survive a's relist");
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn each_namespaces_watch_has_its_own_name_for_the_probes() {
        assert_eq!(watch_name("prowjobs", &Some("ci".into())), "prowjobs/ci");
        assert_eq!(watch_name("prowjobs", &None), "prowjobs");
    }
}
