//! Prometheus metrics of the ProwJob reconciler, in the OpenMetrics text format.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prow_api::pod::type_name;
use prow_api::ProwJob;

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
        Self {
            registry,
            jobs,
            reconcile_duration,
            start_latency,
            reconcile_errors,
            reconcile_errors_by_category,
            write_conflicts,
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

    /// Renders every metric, counting jobs by state and type from the cache at scrape time.
    pub fn render(&self, jobs: &Store<ProwJob>) -> String {
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
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// A render function for the health server; jobs are counted once `jobs` holds their cache
/// (a standby replica has none).
pub fn renderer(
    metrics: Arc<Metrics>,
    jobs: Arc<OnceLock<Store<ProwJob>>>,
) -> prow_runtime::health::MetricsRender {
    Arc::new(move || match jobs.get() {
        Some(store) => metrics.render(store),
        None => metrics.render(&empty_store()),
    })
}

fn empty_store() -> Store<ProwJob> {
    kube::runtime::reflector::store().0
}
