//! The webhook's routes: admission endpoints (POST, JSON AdmissionReview v1), health and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kube::core::admission::Operation;
use prow_runtime::health::{self, Readiness};
use warp::http::StatusCode;
use warp::Filter;

use crate::admission::{Admitter, Endpoint, Verdict};
use crate::metrics::{AdmissionLabels, Metrics};

/// Largest AdmissionReview body accepted (the API server's own limit on objects is 1.5 MiB,
/// plus the old object on updates).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyProblem {
    /// Over [`MAX_BODY`], by its Content-Length or by what arrived.
    TooLarge,
    /// Not complete within the body timeout.
    TooSlow,
    /// The connection failed while it was read.
    Broken(String),
}

/// Every route of the webhook. `body_timeout` bounds how long a request body may take to
/// arrive, whether it comes with a Content-Length or chunked.
pub fn routes(
    admitter: Admitter,
    ready: Readiness,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let endpoint = warp::path!(String / String).and_then(|prefix: String, resource: String| {
        std::future::ready(Endpoint::at(&prefix, &resource).ok_or_else(warp::reject::not_found))
    });
    let admit = {
        let metrics = metrics.clone();
        // Path first, then method: GET on an unknown path is a 404, on an endpoint a 405.
        endpoint
            .and(warp::post())
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::body::stream())
            .then(move |endpoint: Endpoint, length: Option<u64>, body| {
                let (admitter, metrics) = (admitter.clone(), metrics.clone());
                async move {
                    match read_body(length, body, body_timeout).await {
                        Ok(body) => handle(&admitter, &metrics, endpoint, body).await,
                        Err(problem) => refuse_body(problem),
                    }
                }
            })
    };
    let render: health::MetricsRender = Arc::new(move || metrics.render());
    let probes = health::routes(ready, render);
    admit
        .or(probes)
        .recover(|rejection: warp::Rejection| async move {
            let (code, message) = if rejection.is_not_found() {
                (StatusCode::NOT_FOUND, "no such endpoint".to_string())
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

/// Reads a whole request body of at most [`MAX_BODY`] within `within`: one announced larger is
/// refused before any of it is read, a chunked one as soon as it passes the limit.
pub async fn read_body<S, B>(
    length: Option<u64>,
    body: S,
    within: Duration,
) -> Result<Bytes, BodyProblem>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    if length.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyProblem::TooLarge);
    }
    let capacity = length.map_or(16 * 1024, |n| n as usize);
    let collect = async move {
        let mut body = std::pin::pin!(body);
        let mut all = bytes::BytesMut::with_capacity(capacity);
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| BodyProblem::Broken(e.to_string()))?;
            if all.len() + chunk.remaining() > MAX_BODY {
                return Err(BodyProblem::TooLarge);
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                all.extend_from_slice(piece);
                let n = piece.len();
                chunk.advance(n);
            }
        }
        Ok(all.freeze())
    };
    tokio::time::timeout(within, collect)
        .await
        .unwrap_or(Err(BodyProblem::TooSlow))
}

fn refuse_body(problem: BodyProblem) -> warp::reply::Response {
    use warp::Reply;
    let (code, message) = match problem {
        BodyProblem::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the AdmissionReview is larger than {MAX_BODY} bytes"),
        ),
        BodyProblem::TooSlow => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time".to_string(),
        ),
        BodyProblem::Broken(e) => (
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        ),
    };
    warp::reply::with_status(message, code).into_response()
}

async fn handle(
    admitter: &Admitter,
    metrics: &Metrics,
    endpoint: Endpoint,
    body: Bytes,
) -> warp::reply::Response {
    use warp::Reply;
    let started = Instant::now();
    let (reply, operation, result) = match admitter.review_owned(endpoint, body).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> impl futures::Stream<Item = Result<Bytes, warp::Error>> {
        let items: Vec<Result<Bytes, warp::Error>> = sizes
            .iter()
            .map(|n| Ok(Bytes::from(vec![b'x'; *n])))
            .collect();
        futures::stream::iter(items)
    }

    #[tokio::test]
    async fn chunked_bodies_are_read_within_the_same_limit() {
        let second = Duration::from_secs(1);
        let body = read_body(None, chunks(&[10, 20, 30]), second).await;
        assert_eq!(body.map(|b| b.len()), Ok(60));
        let body = read_body(None, chunks(&[MAX_BODY / 2, MAX_BODY / 2 + 1]), second).await;
        assert_eq!(body, Err(BodyProblem::TooLarge));
        let announced = read_body(Some(MAX_BODY as u64 + 1), chunks(&[1]), second).await;
        assert_eq!(
            announced,
            Err(BodyProblem::TooLarge),
            "refused before reading"
        );
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out() {
        let stalled = futures::stream::pending::<Result<Bytes, warp::Error>>();
        let body = read_body(Some(100), stalled, Duration::from_millis(50)).await;
        assert_eq!(body, Err(BodyProblem::TooSlow));
    }
}
