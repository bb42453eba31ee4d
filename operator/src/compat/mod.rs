//! The cimaster-compatible HTTP API: the paths, parameters and plain-text answers of cimaster,
//! so existing e2e images keep working, over the TestCluster lease rules the declarative path
//! uses (`prow_api::lease`). Each call reads the watch cache (never a list), decides with the
//! pure rules, and writes at the resourceVersion it decided on.
//!
//! Callers present a bearer token, checked with a TokenReview and authorized with a
//! SubjectAccessReview on `testclusters` in the namespace; without one only when
//! `--compat-allow-anonymous` says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kube::runtime::reflector::Store;
use kube::Client;
use prow_api::compat::{parse, BadCall};
use prow_api::jobdefinition::JobDefinition;
use prow_api::lease::Refused;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::Filter;

use crate::prowjob::stored::Job;
use crate::testclusters::Clusters;

/// How long a `getvacant` caller is told to wait before asking again when nothing is vacant.
const RETRY_AFTER_SECONDS: u64 = 10;

/// How often a lease write that lost a race is decided again on a fresh read.
const ATTEMPTS: usize = 3;

/// The API's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The namespace of its TestClusters.
    pub namespace: String,
    /// The pool `getvacant` leases from and `addcluster` adds to.
    pub pool: String,
    /// Whether callers without a token are served (with no authorization check).
    pub allow_anonymous: bool,
    /// The namespace of a job's pod when its `spec.namespace` is empty (to find the jobs
    /// waiting in the pool, who come first).
    pub default_pod_namespace: String,
}

/// What the calls read and write through.
pub struct Compat {
    client: Client,
    clusters: Arc<Clusters>,
    jobs: Store<Job>,
    definitions: Store<JobDefinition>,
    settings: Settings,
    recorder: crate::events::Events,
}

/// An answer: the HTTP status and the plain text.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn ok(text: String) -> Self {
        Self {
            status: StatusCode::OK,
            text,
        }
    }

    fn with(status: StatusCode, text: String) -> Self {
        Self { status, text }
    }
}

impl From<BadCall> for Answer {
    fn from(bad: BadCall) -> Self {
        Self::with(
            StatusCode::from_u16(bad.status).unwrap_or(StatusCode::BAD_REQUEST),
            bad.message,
        )
    }
}

impl From<Refused> for Answer {
    fn from(refused: Refused) -> Self {
        Self::with(StatusCode::CONFLICT, refused.0)
    }
}

impl From<kube::Error> for Answer {
    fn from(e: kube::Error) -> Self {
        tracing::warn!(error = %e, "cimaster-compatible call failed");
        Self::with(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the API server could not be reached: {e}"),
        )
    }
}

/// Binds the API's address and serves it until `shutdown`.
pub async fn serve(
    client: Client,
    clusters: Arc<Clusters>,
    jobs: Store<Job>,
    definitions: Store<JobDefinition>,
    settings: Settings,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        namespace = %settings.namespace,
        pool = %settings.pool,
        anonymous = settings.allow_anonymous,
        "cimaster-compatible API listening"
    );
    let compat = Arc::new(Compat {
        recorder: crate::events::recorder(client.clone()),
        client,
        clusters,
        jobs,
        definitions,
        settings,
    });
    let server = warp::serve(routes(compat))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    Ok(server.run())
}

/// The largest form body a POST may carry.
const BODY_LIMIT: u64 = 64 * 1024;

/// A body over [`BODY_LIMIT`].
#[derive(Debug)]
struct TooLarge;

impl warp::reject::Reject for TooLarge {}

/// `GET` or `POST /CALL?params`; a POST may carry its parameters as a form body too.
fn routes(
    compat: Arc<Compat>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let method = warp::get().or(warp::post()).unify();
    // A GET (as curl sends it) has no Content-Length, so warp's length limit, which requires
    // one, is checked only when the header is there.
    let small_body = warp::header::optional::<u64>("content-length")
        .and_then(|length: Option<u64>| async move {
            match length {
                Some(n) if n > BODY_LIMIT => Err(warp::reject::custom(TooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one();
    // The manual trigger: a JSON body, as the manual-trigger service took it.
    let trigger = warp::post()
        .and(warp::path("manual-trigger"))
        .and(warp::path::end())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body)
        .and(warp::body::bytes())
        .and_then({
            let compat = compat.clone();
            move |auth: Option<String>, body: Bytes| {
                let compat = compat.clone();
                async move {
                    let answer = compat.manual_trigger(auth, &body).await;
                    Ok::<_, warp::Rejection>(plain(answer))
                }
            }
        });
    let calls = method
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body)
        .and(warp::body::bytes())
        .and_then(move |call: String, query: String, auth, body: Bytes| {
            let compat = compat.clone();
            async move {
                let answer = compat.answer(&call, &query, auth, &body).await;
                Ok::<_, warp::Rejection>(plain(answer))
            }
        });
    trigger.or(calls).unify()
}

/// An answer as a plain-text response.
fn plain(answer: Answer) -> warp::http::Response<String> {
    let mut reply = warp::http::Response::builder()
        .status(answer.status)
        .header("content-type", "text/plain; charset=utf-8");
    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
        reply = reply.header("retry-after", RETRY_AFTER_SECONDS.to_string());
    }
    reply.body(format!("{}\n", answer.text)).unwrap_or_default()
}

/// Who called.
struct Caller {
    user: String,
    groups: Vec<String>,
    uid: Option<String>,
    extra: Option<BTreeMap<String, Vec<String>>>,
    anonymous: bool,
}

impl Compat {
    async fn answer(&self, call: &str, query: &str, auth: Option<String>, body: &[u8]) -> Answer {
        let mut params: BTreeMap<String, String> =
            serde_urlencoded::from_str(query).unwrap_or_default();
        if !body.is_empty() {
            match serde_urlencoded::from_bytes::<BTreeMap<String, String>>(body) {
                Ok(form) => params.extend(form),
                Err(e) => {
                    return Answer::with(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not form-encoded parameters: {e}"),
                    )
                }
            }
        }
        let call = match parse(call, &params) {
            Ok(call) => call,
            Err(bad) => return bad.into(),
        };
        let caller = match self.authenticate(auth.as_deref()).await {
            Ok(caller) => caller,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.authorize(&caller, &call).await {
            return answer;
        }
        let answer = self.run(&call, &caller).await;
        tracing::info!(?call, user = %caller.user, status = answer.status.as_u16(), "cimaster-compatible call");
        answer
    }
}
mod auth;
mod calls;
mod manual;

#[cfg(test)]
mod tests;
