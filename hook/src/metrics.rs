//! Prometheus metrics of prow-hook.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A delivery's event and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `X-GitHub-Event` (`other` beyond the ones acted on, so labels stay few).
    pub event: String,
    /// accepted, ignored, duplicate or busy.
    pub result: &'static str,
}

/// A refused delivery's status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The HTTP status.
    pub code: u16,
}

/// A name for a counter by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

/// prow-hook's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    refused: Family<CodeLabels, Counter>,
    /// Runs by outcome: created, existing (the delivery was seen before), refused.
    pub runs: Family<OutcomeLabels, Counter>,
    /// Reports by outcome: status, comment, ignored, failed.
    pub reports: Family<OutcomeLabels, Counter>,
    /// Seconds from a delivery's arrival to its last run created.
    pub delivery_to_run: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prow_hook");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries taken, by event and result",
            deliveries.clone(),
        );
        let refused = Family::<CodeLabels, Counter>::default();
        registry.register(
            "refused_deliveries",
            "Deliveries refused, by HTTP status",
            refused.clone(),
        );
        let runs = Family::<OutcomeLabels, Counter>::default();
        registry.register("runs", "ProwJobs made for events, by outcome", runs.clone());
        let reports = Family::<OutcomeLabels, Counter>::default();
        registry.register("reports", "Reports to GitHub, by outcome", reports.clone());
        let delivery_to_run = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "delivery_to_run_seconds",
            "Time from a delivery's arrival to its runs created",
            delivery_to_run.clone(),
        );
        Metrics {
            registry,
            deliveries,
            refused,
            runs,
            reports,
            delivery_to_run,
        }
    }
}

impl Metrics {
    /// Counts a delivery taken.
    pub fn delivery(&self, event: &str, result: &'static str) {
        let event = match event {
            "pull_request" | "issue_comment" | "pull_request_review" | "push" => event,
            _ => "other",
        };
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event.to_string(),
                result,
            })
            .inc();
    }

    /// Counts a delivery refused with `code`.
    pub fn refused(&self, code: u16) {
        self.refused.get_or_create(&CodeLabels { code }).inc();
    }

    /// Counts `outcome` in `family`.
    pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}
