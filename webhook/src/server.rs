//! The webhook's routes: admission endpoints (POST, JSON AdmissionReview v1), health and metrics.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kube::core::admission::Operation;
use prow_operator::health::{self, Readiness};
use warp::http::StatusCode;
use warp::Filter;

use crate::admission::{Admitter, Endpoint, Verdict};
use crate::metrics::{AdmissionLabels, Metrics};

/// Largest AdmissionReview body accepted (the API server's own limit on objects is 1.5 MiB,
/// plus the old object on updates).
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// Every route of the webhook.
pub fn routes(
    admitter: Admitter,
    ready: Readiness,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let endpoint = warp::path!("mutate" / "prowjobs")
        .map(|| Endpoint::MutateProwJobs)
        .or(warp::path!("validate" / "prowjobs").map(|| Endpoint::ValidateProwJobs))
        .unify()
        .or(warp::path!("validate" / "presets").map(|| Endpoint::ValidatePresets))
        .unify()
        .or(warp::path!("validate" / "testclusters").map(|| Endpoint::ValidateTestClusters))
        .unify();
    let admit = {
        let metrics = metrics.clone();
        // Path first, then method: GET on an unknown path is a 404, on an endpoint a 405.
        endpoint
            .and(warp::post())
            .and(warp::body::content_length_limit(MAX_BODY))
            .and(warp::body::bytes())
            .then(move |endpoint: Endpoint, body: Bytes| {
                let (admitter, metrics) = (admitter.clone(), metrics.clone());
                async move { handle(&admitter, &metrics, endpoint, &body).await }
            })
    };
    let render: health::MetricsRender = Arc::new(move || metrics.render());
    let probes = health::routes(ready, render);
    admit
        .or(probes)
        .recover(|rejection: warp::Rejection| async move {
            let (code, message) = if rejection.is_not_found() {
                (StatusCode::NOT_FOUND, "no such endpoint".to_string())
            } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the AdmissionReview is too large".to_string(),
                )
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST for admission endpoints, GET for probes".to_string(),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("{rejection:?}"))
            };
            Ok::<_, std::convert::Infallible>(warp::reply::with_status(message, code))
        })
}

async fn handle(
    admitter: &Admitter,
    metrics: &Metrics,
    endpoint: Endpoint,
    body: &[u8],
) -> warp::reply::Response {
    use warp::Reply;
    let started = Instant::now();
    let (reply, operation, result) = match admitter.review(endpoint, body).await {
        Ok((review, operation, verdict)) => {
            let result = match verdict {
                Verdict::Allowed => "allowed",
                Verdict::Patched => "patched",
                Verdict::Denied => "denied",
            };
            let operation = match operation {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
                Operation::Delete => "DELETE",
                Operation::Connect => "CONNECT",
            };
            (
                warp::reply::json(&review).into_response(),
                operation,
                result,
            )
        }
        Err(bad) => (
            warp::reply::with_status(bad.0, StatusCode::BAD_REQUEST).into_response(),
            "UNKNOWN",
            "bad_request",
        ),
    };
    metrics.latency.observe(started.elapsed().as_secs_f64());
    metrics
        .admissions
        .get_or_create(&AdmissionLabels {
            kind: endpoint.kind(),
            operation,
            result,
        })
        .inc();
    reply
}
