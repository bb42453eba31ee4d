//! Prometheus metrics of prow-dashboard: requests by page and status, and each page's server
//! time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's page and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The page (`jobs`, `run`, `log`, ...), never the URL (labels stay few).
    pub page: &'static str,
    /// The HTTP status.
    pub code: u16,
}

/// A page.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    /// The page.
    pub page: &'static str,
}

/// prow-dashboard's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    seconds: Family<PageLabels, Histogram>,
    /// Jobs in the index.
    pub jobs: Gauge,
    /// Live log streams open.
    pub live_logs: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prow_dashboard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests, by page and status", requests.clone());
        let seconds = Family::<PageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_seconds",
            "Server time of a request until its response starts, by page",
            seconds.clone(),
        );
        let jobs = Gauge::default();
        registry.register("jobs", "ProwJobs the dashboard keeps", jobs.clone());
        let live_logs = Gauge::default();
        registry.register("live_logs", "Live log streams open", live_logs.clone());
        Metrics {
            registry,
            requests,
            seconds,
            jobs,
            live_logs,
        }
    }
}

impl Metrics {
    /// Counts a request of `page` answered `code` after `seconds`.
    pub fn served(&self, page: &'static str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { page, code })
            .inc();
        self.seconds
            .get_or_create(&PageLabels { page })
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}
