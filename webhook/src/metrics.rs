//! Prometheus metrics of the webhook.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the admissions counter: static strings, so counting an admission allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// ProwJob, Preset or TestCluster.
    pub kind: &'static str,
    /// CREATE, UPDATE, DELETE, CONNECT, or UNKNOWN for a body that is not a review.
    pub operation: &'static str,
    /// allowed, patched, denied or bad_request.
    pub result: &'static str,
}

/// The webhook's metrics.
pub struct Metrics {
    registry: Registry,
    /// Admissions by kind, operation and result.
    pub admissions: Family<AdmissionLabels, Counter>,
    /// Seconds per admission, in the handler.
    pub latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prow_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews by kind, operation and result",
            admissions.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "admission_duration_seconds",
            "Time the handler took per review",
            latency.clone(),
        );
        Self {
            registry,
            admissions,
            latency,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}
