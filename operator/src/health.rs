//! The plain-HTTP health server: `/healthz` (the process is alive), `/readyz` (its caches are
//! synced and it can do its work) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::Filter;

/// Whether the process is ready to serve; flipped once its caches are synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The `/healthz`, `/readyz` and `/metrics` routes.
pub fn routes(
    ready: Readiness,
    metrics: MetricsRender,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").map(|| "ok".to_string());
    let readyz = warp::path!("readyz").map(move || {
        if ready.is_ready() {
            warp::reply::with_status("ok".to_string(), StatusCode::OK)
        } else {
            warp::reply::with_status("not ready".to_string(), StatusCode::SERVICE_UNAVAILABLE)
        }
    });
    let metrics = warp::path!("metrics").map(move || {
        warp::reply::with_header(
            metrics(),
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    });
    warp::get().and(healthz.or(readyz).or(metrics))
}

/// Binds `listen` and serves the health routes until `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    ready: Readiness,
    metrics: MetricsRender,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "health server listening");
    let server = warp::serve(routes(ready, metrics))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    Ok(tokio::spawn(server.run()))
}
