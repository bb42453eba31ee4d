//! The plain-HTTP health server: `/healthz` (the process is alive: no task it depends on has
//! died), `/readyz` (its caches are synced and every watch it depends on is working) and
//! `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::lock;
use warp::http::StatusCode;
use warp::Filter;

/// Whether the process is alive and ready to serve, as the probes report it.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

#[derive(Default)]
struct Inner {
    synced: AtomicBool,
    /// A standby replica waiting for leadership: ready (it can take over), with nothing synced.
    standby: AtomicBool,
    /// Conditions other than watches the process waits for, with why (a certificate made, a
    /// webhook configuration patched).
    waiting: Mutex<BTreeMap<&'static str, String>>,
    /// Watches whose last request failed, with the error.
    failing: Mutex<BTreeMap<&'static str, String>>,
    /// Why the process is no longer alive, once a task it depends on died.
    dead: Mutex<Option<String>>,
}

impl Readiness {
    /// Marks the caches synced: ready, unless a watch is failing.
    pub fn set_ready(&self) {
        self.0.synced.store(true, Ordering::Release);
    }

    /// Marks a standby replica: ready while it waits for leadership, since it can take over.
    pub fn set_standby(&self) {
        self.0.standby.store(true, Ordering::Release);
    }

    /// Marks the standby as leader: ready again only once its caches are synced.
    pub fn set_leading(&self) {
        self.0.standby.store(false, Ordering::Release);
    }

    /// Whether this replica is a standby waiting for leadership.
    pub fn is_standby(&self) -> bool {
        self.0.standby.load(Ordering::Acquire)
    }

    /// Not ready until [`Readiness::done_waiting`] for `name`; `why` is what `/readyz` says.
    pub fn waiting_for(&self, name: &'static str, why: String) {
        let mut waiting = lock(&self.0.waiting);
        if waiting.get(name) != Some(&why) {
            tracing::info!(condition = name, %why, "not ready until it is done");
        }
        waiting.insert(name, why);
    }

    /// The condition `name` is met.
    pub fn done_waiting(&self, name: &'static str) {
        if lock(&self.0.waiting).remove(name).is_some() {
            tracing::info!(condition = name, "done");
        }
    }

    /// Whether the process is ready: synced, no watch failing, alive.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// Why the process is not ready, if it is not.
    pub fn not_ready_because(&self) -> Option<String> {
        if let Some(dead) = self.dead_because() {
            return Some(dead);
        }
        let failing = lock(&self.0.failing);
        if !failing.is_empty() {
            let watches: Vec<String> = failing
                .iter()
                .map(|(watch, error)| format!("watch {watch} failing: {error}"))
                .collect();
            return Some(watches.join("; "));
        }
        let waiting = lock(&self.0.waiting);
        if !waiting.is_empty() {
            let conditions: Vec<&str> = waiting.values().map(String::as_str).collect();
            return Some(conditions.join("; "));
        }
        let synced = self.0.synced.load(Ordering::Acquire) || self.is_standby();
        (!synced).then(|| "caches not synced yet".to_string())
    }

    /// Records that the watch `name` failed; not ready until it succeeds again.
    pub fn watch_failed(&self, name: &'static str, error: &dyn std::fmt::Display) {
        let mut failing = lock(&self.0.failing);
        if !failing.contains_key(name) {
            tracing::warn!(watch = name, error = %error, "watch failing: not ready until it recovers");
        }
        failing.insert(name, error.to_string());
    }

    /// Records that the watch `name` got an answer from the API server.
    pub fn watch_succeeded(&self, name: &'static str) {
        if lock(&self.0.failing).remove(name).is_some() {
            tracing::info!(watch = name, "watch recovered");
        }
    }

    /// Marks the process dead: `/healthz` fails from now on, so it is restarted.
    pub fn set_dead(&self, why: String) {
        lock(&self.0.dead).get_or_insert(why);
    }

    /// Why the process is dead, if it is.
    pub fn dead_because(&self) -> Option<String> {
        lock(&self.0.dead).clone()
    }
}

/// Renders the Prometheus text exposition of the process's metrics.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The `/healthz`, `/readyz` and `/metrics` routes.
pub fn routes(
    ready: Readiness,
    metrics: MetricsRender,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let alive = ready.clone();
    let healthz = warp::path!("healthz").map(move || match alive.dead_because() {
        None => warp::reply::with_status("ok".to_string(), StatusCode::OK),
        Some(why) => warp::reply::with_status(why, StatusCode::INTERNAL_SERVER_ERROR),
    });
    let readyz = warp::path!("readyz").map(move || match ready.not_ready_because() {
        None if ready.is_standby() => {
            warp::reply::with_status("ok (standby)".to_string(), StatusCode::OK)
        }
        None => warp::reply::with_status("ok".to_string(), StatusCode::OK),
        Some(why) => {
            warp::reply::with_status(format!("not ready: {why}"), StatusCode::SERVICE_UNAVAILABLE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_with_no_watch_failing() {
        let ready = Readiness::default();
        assert_eq!(
            ready.not_ready_because().as_deref(),
            Some("caches not synced yet")
        );
        ready.set_ready();
        assert!(ready.is_ready());
        ready.watch_failed("prowjobs", &"503 Service Unavailable");
        ready.watch_failed("pods", &"connection refused");
        let why = ready.not_ready_because().expect("not ready");
        assert!(why.contains("watch prowjobs failing: 503"), "{why}");
        assert!(why.contains("watch pods failing"), "{why}");
        ready.watch_succeeded("prowjobs");
        assert!(!ready.is_ready(), "pods still failing");
        ready.watch_succeeded("pods");
        assert!(ready.is_ready());
    }

    #[test]
    fn a_standby_is_ready_until_it_leads_and_then_waits_for_its_caches() {
        let ready = Readiness::default();
        ready.set_standby();
        assert!(ready.is_ready() && ready.is_standby());
        ready.set_leading();
        assert_eq!(
            ready.not_ready_because().as_deref(),
            Some("caches not synced yet")
        );
        ready.set_ready();
        assert!(ready.is_ready() && !ready.is_standby());
    }

    #[test]
    fn a_condition_waited_for_keeps_a_synced_process_unready() {
        let ready = Readiness::default();
        ready.set_ready();
        ready.waiting_for("ca-bundle", "caBundle not patched yet".into());
        assert_eq!(
            ready.not_ready_because().as_deref(),
            Some("caBundle not patched yet")
        );
        ready.done_waiting("ca-bundle");
        assert!(ready.is_ready());
    }

    #[test]
    fn a_dead_process_is_neither_alive_nor_ready() {
        let ready = Readiness::default();
        ready.set_ready();
        ready.set_dead("task prowjob-controller stopped".into());
        ready.set_dead("a second reason is not kept".into());
        assert_eq!(
            ready.dead_because().as_deref(),
            Some("task prowjob-controller stopped")
        );
        assert!(!ready.is_ready());
    }
}
