//! `POST /hook`: GitHub's webhook deliveries, checked in upstream's order (405 for another method;
//! 400 without `X-GitHub-Event` or `X-GitHub-Delivery`; 403 without `X-Hub-Signature-256`; 400
//! for a content type other than `application/json`), then 413 for a body over the limit, 403
//! for a signature no token of the repository makes, 400 for a payload that does not read. A good
//! delivery is answered 200 at once and queued; the trigger handles it after. A delivery ID seen
//! recently is answered 200 and not queued again (and a run's name comes from the delivery, so
//! one seen by two replicas still makes each run once).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Buf;
use futures::{Stream, StreamExt};
use prow_api::hook::events::Event;
use prow_api::hook::secrets::{payload_repository, Secrets};
use prow_runtime::lock;
use tokio::sync::mpsc;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use crate::metrics::Metrics;

/// The largest body taken by default: GitHub caps payloads at 25 MB, but the events acted on
/// are far smaller (a push of many commits is well under 1 MiB).
pub const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;
/// Delivery IDs remembered, to answer a redelivery without handling it twice.
const REMEMBERED: usize = 10_000;

/// One delivery, checked and read, for the trigger.
#[derive(Debug)]
pub struct Delivery {
    /// `X-GitHub-Delivery`.
    pub guid: String,
    /// `X-GitHub-Event`.
    pub kind: String,
    /// The payload.
    pub event: Event,
    /// When it arrived.
    pub received: Instant,
}

/// What the intake needs.
pub struct Intake {
    /// The HMAC tokens (replaced when the secret file changes).
    pub secrets: Arc<RwLock<Secrets>>,
    /// The largest body taken.
    pub max_body: usize,
    /// Where checked deliveries go.
    pub queue: mpsc::Sender<Delivery>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    seen: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    /// Records `guid`; false when it was already there.
    fn first_time(&mut self, guid: &str) -> bool {
        if self.set.contains(guid) {
            return false;
        }
        if self.order.len() == REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(guid.to_string());
        self.order.push_back(guid.to_string());
        true
    }

    fn forget(&mut self, guid: &str) {
        self.set.remove(guid);
    }
}

impl Intake {
    /// An intake with these parts.
    pub fn new(
        secrets: Arc<RwLock<Secrets>>,
        max_body: usize,
        queue: mpsc::Sender<Delivery>,
        metrics: Arc<Metrics>,
    ) -> Intake {
        Intake {
            secrets,
            max_body,
            queue,
            metrics,
            seen: Mutex::new(Recent::default()),
        }
    }
}

/// The headers of a delivery, checked in upstream's order.
#[derive(Debug, PartialEq, Eq)]
pub struct Headers {
    /// `X-GitHub-Event`.
    pub event: String,
    /// `X-GitHub-Delivery`.
    pub guid: String,
    /// The signature's bytes (from `sha256=<hex>`).
    pub signature: Vec<u8>,
}

/// Checks the method and the headers: the answer to give when they are not a delivery.
pub fn check_headers(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Headers, (StatusCode, String)> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if method != Method::POST {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is accepted".into(),
        ));
    }
    let event = get("x-github-event").ok_or((
        StatusCode::BAD_REQUEST,
        "missing X-GitHub-Event header".into(),
    ))?;
    let guid = get("x-github-delivery").ok_or((
        StatusCode::BAD_REQUEST,
        "missing X-GitHub-Delivery header".into(),
    ))?;
    let signature = get("x-hub-signature-256").ok_or((
        StatusCode::FORBIDDEN,
        "missing X-Hub-Signature-256 header".into(),
    ))?;
    let content_type = get("content-type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("content type must be application/json, not {content_type:?}"),
        ));
    }
    let signature = signature
        .strip_prefix("sha256=")
        .and_then(decode_hex)
        .ok_or((
            StatusCode::FORBIDDEN,
            "X-Hub-Signature-256 is not sha256=<hex>".into(),
        ))?;
    Ok(Headers {
        event: event.to_string(),
        guid: guid.to_string(),
        signature,
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `signature` is the HMAC-SHA256 of `body` under one of the repository's tokens
/// (compared in constant time).
pub fn signature_valid(secrets: &Secrets, body: &[u8], signature: &[u8]) -> bool {
    let repo = payload_repository(body);
    secrets.tokens_for(&repo).into_iter().any(|token| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
        ring::hmac::verify(&key, body, signature).is_ok()
    })
}

/// `sha256=<hex>` of `body` under `token`, as GitHub signs it (for tests and tools).
pub fn sign(token: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Bytes of an oversized body read and dropped before the 413 is sent, so that a client that
/// writes its whole body first (most do) reads the answer instead of a broken connection.
const DRAINED: usize = 64 * 1024 * 1024;

/// Reads at most `max` bytes of `body`; `None` when there are more (the rest is read and
/// dropped, up to [`DRAINED`] bytes).
async fn read_limited<S, B>(body: S, max: usize) -> Result<Option<Vec<u8>>, warp::Error>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk?;
        if out.len() + chunk.remaining() > max {
            let mut dropped = out.len() + chunk.remaining();
            while dropped < DRAINED {
                match body.next().await {
                    Some(Ok(more)) => dropped += more.remaining(),
                    _ => break,
                }
            }
            return Ok(None);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Some(out))
}

fn answer(status: StatusCode, text: impl Into<String>) -> warp::reply::Response {
    use warp::Reply;
    let mut text = text.into();
    text.push('\n');
    warp::reply::with_status(text, status).into_response()
}

impl Intake {
    async fn take<S, B>(&self, method: Method, headers: HeaderMap, body: S) -> warp::reply::Response
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let received = Instant::now();
        let checked = match check_headers(&method, &headers) {
            Ok(h) => h,
            Err((status, why)) => return self.refuse(status, why),
        };
        let declared = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // A declared length over the limit is not stored either: read_limited drops it.
        let limit = if declared.is_some_and(|n| n > self.max_body) {
            0
        } else {
            self.max_body
        };
        let body = match read_limited(body, limit).await {
            Ok(Some(body)) => body,
            Ok(None) => return self.refuse(StatusCode::PAYLOAD_TOO_LARGE, self.too_large()),
            Err(e) => {
                return self.refuse(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
            }
        };
        let valid = {
            let secrets = self.secrets.read().unwrap_or_else(|p| p.into_inner());
            signature_valid(&secrets, &body, &checked.signature)
        };
        if !valid {
            return self.refuse(
                StatusCode::FORBIDDEN,
                "X-Hub-Signature-256 does not match the body under any token of this repository",
            );
        }
        let event = match Event::parse(&checked.event, &body) {
            Ok(Some(event)) => event,
            Ok(None) => {
                self.metrics.delivery(&checked.event, "ignored");
                return answer(
                    StatusCode::OK,
                    format!("event {} is not acted on", checked.event),
                );
            }
            Err(e) => return self.refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if !lock(&self.seen).first_time(&checked.guid) {
            self.metrics.delivery(&checked.event, "duplicate");
            return answer(StatusCode::OK, "delivery already received");
        }
        let delivery = Delivery {
            guid: checked.guid.clone(),
            kind: checked.event.clone(),
            event,
            received,
        };
        if self.queue.try_send(delivery).is_err() {
            lock(&self.seen).forget(&checked.guid);
            self.metrics.delivery(&checked.event, "busy");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many deliveries waiting; redeliver it later",
            );
        }
        self.metrics.delivery(&checked.event, "accepted");
        answer(StatusCode::OK, "event received")
    }

    fn too_large(&self) -> String {
        format!("the body is over the limit of {} bytes", self.max_body)
    }

    fn refuse(&self, status: StatusCode, why: impl Into<String>) -> warp::reply::Response {
        let why = why.into();
        tracing::info!(status = status.as_u16(), reason = %why, "delivery refused");
        self.metrics.refused(status.as_u16());
        answer(status, why)
    }
}

/// The `/hook` route.
pub fn route(
    intake: Arc<Intake>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("hook")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method, headers, body| {
            let intake = intake.clone();
            async move { intake.take(method, headers, body).await }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_are_checked_in_upstreams_order() {
        let sig = "sha256=00ff";
        let all = [
            ("x-github-event", "push"),
            ("x-github-delivery", "d1"),
            ("x-hub-signature-256", sig),
            ("content-type", "application/json"),
        ];
        let without = |name: &str| {
            let kept: Vec<_> = all.iter().filter(|(k, _)| *k != name).cloned().collect();
            headers(&kept)
        };
        let cases = [
            (Method::GET, headers(&all), 405),
            (Method::POST, without("x-github-event"), 400),
            (Method::POST, without("x-github-delivery"), 400),
            (Method::POST, without("x-hub-signature-256"), 403),
            (Method::POST, without("content-type"), 400),
            (
                Method::POST,
                headers(&[
                    all[0],
                    all[1],
                    all[2],
                    ("content-type", "application/x-www-form-urlencoded"),
                ]),
                400,
            ),
            (
                Method::POST,
                headers(&[all[0], all[1], ("x-hub-signature-256", "sha1=00"), all[3]]),
                403,
            ),
            (
                Method::POST,
                headers(&[all[0], all[1], ("x-hub-signature-256", "sha256=zz"), all[3]]),
                403,
            ),
        ];
        for (method, h, want) in cases {
            let got = check_headers(&method, &h).unwrap_err();
            assert_eq!(got.0.as_u16(), want, "{method} {h:?}: {}", got.1);
        }
        let ok = check_headers(
            &Method::POST,
            &headers(&[
                all[0],
                all[1],
                all[2],
                ("content-type", "application/json; charset=utf-8"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (ok.event.as_str(), ok.guid.as_str(), ok.signature),
            ("push", "d1", vec![0, 255])
        );
    }

    #[test]
    fn a_signature_is_valid_under_a_token_of_the_repository_only() {
        let body = br#"{"repository":{"full_name":"acme/widgets"}}"#;
        let keyed =
            Secrets::parse("acme/widgets:\n- value: new\n- value: old\n'*':\n- value: star\n")
                .unwrap();
        let decode = |s: String| decode_hex(s.strip_prefix("sha256=").unwrap()).unwrap();
        assert!(signature_valid(&keyed, body, &decode(sign("old", body))));
        assert!(signature_valid(&keyed, body, &decode(sign("new", body))));
        assert!(!signature_valid(&keyed, body, &decode(sign("star", body))));
        let other = br#"{"repository":{"full_name":"acme/other"}}"#;
        assert!(signature_valid(&keyed, other, &decode(sign("star", other))));
        let single = Secrets::parse("s3cret").unwrap();
        assert!(signature_valid(
            &single,
            body,
            &decode(sign("s3cret", body))
        ));
        assert!(!signature_valid(
            &single,
            b"changed",
            &decode(sign("s3cret", body))
        ));
        // GitHub's documented example.
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn recent_deliveries_are_remembered_up_to_a_bound() {
        let mut recent = Recent::default();
        assert!(recent.first_time("a"));
        assert!(!recent.first_time("a"));
        for i in 0..REMEMBERED {
            recent.first_time(&i.to_string());
        }
        assert!(
            recent.first_time("a"),
            "forgotten after {REMEMBERED} others"
        );
        assert!(recent.set.len() <= REMEMBERED);
    }
}
