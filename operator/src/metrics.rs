//! Prometheus metrics of the reconcilers, in the OpenMetrics text format.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prow_api::pod::type_name;
use prow_api::pool::{line, Pool};
use prow_api::{ClusterPhase, TestCluster};

use crate::prowjob::stored::Job;
use crate::testclusters::Clusters;

/// Labels of the clusters-by-pool-and-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The pool's namespace.
    pub namespace: String,
    /// The pool.
    pub pool: String,
    /// Vacant, Leased, Held, Cleaning or Disabled.
    pub phase: String,
}

/// Labels of the per-pool gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// The pool's namespace.
    pub namespace: String,
    /// The pool.
    pub pool: String,
}

/// How long a release waits for the hand-off it starts before it no longer counts.
const HANDOFF_WINDOW: Duration = Duration::from_secs(60);

/// Labels of the jobs-by-state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Job state.
    pub state: String,
    /// Job type.
    pub r#type: String,
}

/// Label of the errors-by-category counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    /// conflict, refused, unavailable, pod or encoding.
    pub category: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Gauge>,
    /// Seconds per reconcile.
    pub reconcile_duration: Histogram,
    /// Seconds from a job's creation to its pod's creation.
    pub start_latency: Histogram,
    /// Reconciles that ended in an error.
    pub reconcile_errors: Counter,
    /// The same, by category ([`crate::error::Error::category`]).
    pub reconcile_errors_by_category: Family<CategoryLabel, Counter>,
    /// Writes refused because the job changed after it was read (decided again 100 ms later).
    pub write_conflicts: Counter,
    clusters: Family<ClusterLabels, Gauge>,
    waiting: Family<PoolLabels, Gauge>,
    /// Seconds from a pool job's creation to its lease.
    pub lease_wait: Histogram,
    /// Seconds from a lease's end, with jobs waiting, to the cluster's next lease.
    pub handoff: Histogram,
    /// Releases with jobs waiting, by cluster (namespace, name), not yet handed off.
    releases: Mutex<HashMap<(String, String), Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prow_operator");
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "prowjobs",
            "ProwJobs known to the operator, by state and type",
            jobs.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time one ProwJob reconcile took",
            reconcile_duration.clone(),
        );
        let start_latency = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            "job_start_latency_seconds",
            "Time from a ProwJob's creation to its pod's creation",
            start_latency.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "ProwJob reconciles that ended in an error",
            reconcile_errors.clone(),
        );
        let reconcile_errors_by_category = Family::<CategoryLabel, Counter>::default();
        registry.register(
            "reconcile_errors_by_category",
            "ProwJob reconciles that ended in an error, by category (refused: the API server refused a request; unavailable: it could not be reached or failed; pod: the pod cannot be built; encoding)",
            reconcile_errors_by_category.clone(),
        );
        let write_conflicts = Counter::default();
        registry.register(
            "write_conflicts",
            "ProwJob writes refused because the job changed after it was read",
            write_conflicts.clone(),
        );
        let clusters = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "testclusters",
            "TestClusters, by pool and phase",
            clusters.clone(),
        );
        let waiting = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "testcluster_waiting_jobs",
            "Jobs waiting for a TestCluster, by pool",
            waiting.clone(),
        );
        let lease_wait = Histogram::new(exponential_buckets(0.005, 2.0, 20));
        registry.register(
            "testcluster_lease_wait_seconds",
            "Time from a pool job's creation to its TestCluster lease",
            lease_wait.clone(),
        );
        let handoff = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "testcluster_handoff_seconds",
            "Time from the end of a lease, with jobs waiting in its pool, to the cluster's next lease",
            handoff.clone(),
        );
        Self {
            registry,
            jobs,
            reconcile_duration,
            start_latency,
            reconcile_errors,
            reconcile_errors_by_category,
            write_conflicts,
            clusters,
            waiting,
            lease_wait,
            handoff,
            releases: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile, in the total and under its category.
    pub fn count_error(&self, category: &'static str) {
        self.reconcile_errors.inc();
        self.reconcile_errors_by_category
            .get_or_create(&CategoryLabel { category })
            .inc();
    }

    /// Records how long a reconcile took.
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records the end of a lease of cluster `cluster` of `namespace` while jobs wait for it.
    pub fn lease_ended_with_waiters(&self, namespace: &str, cluster: &str) {
        let mut releases = prow_runtime::lock(&self.releases);
        releases.retain(|_, at| at.elapsed() <= HANDOFF_WINDOW);
        releases.insert((namespace.to_string(), cluster.to_string()), Instant::now());
    }

    /// Records a lease of cluster `cluster` of `namespace`: the hand-off of its last release,
    /// if jobs waited then, is done. (Pairing by pool instead counted one release's hand-off
    /// against another cluster's lease whenever a job took a cluster nobody was woken for.)
    pub fn lease_taken(&self, namespace: &str, cluster: &str) {
        let mut releases = prow_runtime::lock(&self.releases);
        if let Some(released) = releases.remove(&(namespace.to_string(), cluster.to_string())) {
            let took = released.elapsed();
            if took <= HANDOFF_WINDOW {
                self.handoff.observe(took.as_secs_f64());
            }
        }
    }

    /// Renders every metric, counting jobs by state and type from the cache at scrape time.
    pub fn render(&self, jobs: &Store<Job>) -> String {
        self.count_jobs(jobs);
        self.encode()
    }

    /// Renders every metric, counting jobs, and clusters and waiting jobs by pool, from the
    /// caches at scrape time.
    pub fn render_with_pools(
        &self,
        jobs: &Store<Job>,
        clusters: &Clusters,
        default_pod_namespace: &str,
    ) -> String {
        self.count_jobs(jobs);
        self.clusters.clear();
        self.waiting.clear();
        let all = clusters.store.state();
        let mut pools: BTreeMap<(String, String), Vec<&TestCluster>> = BTreeMap::new();
        for cluster in &all {
            let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
            let phase = cluster
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(ClusterPhase::Vacant);
            self.clusters
                .get_or_create(&ClusterLabels {
                    namespace: namespace.clone(),
                    pool: cluster.spec.pool.clone(),
                    phase: format!("{phase:?}"),
                })
                .inc();
            pools
                .entry((namespace, cluster.spec.pool.clone()))
                .or_default()
                .push(cluster);
        }
        let jobs = jobs.state();
        for ((namespace, name), members) in &pools {
            let pool = Pool {
                namespace,
                name,
                default_pod_namespace,
            };
            let waiting = line(&pool, jobs.iter().map(|j| &j.0), members).len();
            self.waiting
                .get_or_create(&PoolLabels {
                    namespace: namespace.clone(),
                    pool: name.clone(),
                })
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
        self.encode()
    }

    fn count_jobs(&self, jobs: &Store<Job>) {
        self.jobs.clear();
        for job in jobs.state() {
            let state = serde_json::to_value(job.state())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let job_type = job.spec.job_type.map(type_name).unwrap_or("unknown");
            self.jobs
                .get_or_create(&JobLabels {
                    state,
                    r#type: job_type.to_string(),
                })
                .inc();
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// The caches the metrics count from, once the process leads.
pub struct Sources {
    /// The jobs.
    pub jobs: Store<Job>,
    /// The TestClusters.
    pub clusters: Arc<Clusters>,
    /// The namespace of a job's pod when its `spec.namespace` is empty.
    pub default_pod_namespace: String,
}

/// A render function for the health server; jobs and clusters are counted once `sources`
/// holds their caches (a standby replica has none).
pub fn renderer(
    metrics: Arc<Metrics>,
    sources: Arc<OnceLock<Sources>>,
) -> prow_runtime::health::MetricsRender {
    Arc::new(move || match sources.get() {
        Some(s) => metrics.render_with_pools(&s.jobs, &s.clusters, &s.default_pod_namespace),
        None => metrics.render(&empty_store()),
    })
}

fn empty_store() -> Store<Job> {
    kube::runtime::reflector::store().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoffs(metrics: &Metrics) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).expect("encode");
        text.lines()
            .find(|l| l.starts_with("prow_operator_testcluster_handoff_seconds_count"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .expect("the hand-off count")
    }

    #[test]
    fn a_hand_off_pairs_a_clusters_release_with_that_clusters_next_lease() {
        let metrics = Metrics::default();
        // A lease nobody waited for, and a lease of another cluster: no hand-off.
        metrics.lease_taken("ns", "c1");
        metrics.lease_ended_with_waiters("ns", "c1");
        metrics.lease_taken("ns", "c2");
        metrics.lease_taken("other", "c1");
        assert_eq!(handoffs(&metrics), 0);
        metrics.lease_taken("ns", "c1");
        assert_eq!(handoffs(&metrics), 1);
        metrics.lease_taken("ns", "c1");
        assert_eq!(handoffs(&metrics), 1, "one release, one hand-off");
    }
}
