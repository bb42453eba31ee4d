//! prow-webhook: the admission webhook process. Keeps a watch-fed cache of Presets, serves
//! health and metrics, and stops cleanly on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use prow_api::Preset;
use prow_operator::telemetry::{self, LogFormat};
use prow_operator::{config, health, shutdown};
use serde::Serialize;

/// prow-webhook: injects Presets into ProwJobs and rejects bad job specs at admission.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "prow-webhook", version, about)]
struct WebhookConfig {
    /// Address the server listens on.
    #[arg(long, env = "PROW_WEBHOOK_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_WEBHOOK_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Namespace whose Presets are watched; empty watches all.
    #[arg(long, env = "PROW_WEBHOOK_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Log line format.
    #[arg(long, env = "PROW_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = WebhookConfig::parse();
    telemetry::init(cfg.log_format);
    telemetry::install_crypto_provider();
    let printed = serde_json::to_string(&cfg).unwrap_or_default();
    tracing::info!(config = %printed, "prow-webhook starting");

    let stop = shutdown::on_signal();
    let client = config::client(cfg.kubeconfig.as_deref())
        .await
        .context("building the Kubernetes client")?;

    let presets: Api<Preset> = match &cfg.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let feed = watcher(presets, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "preset watch");
            }
        });
    let feed = tokio::spawn(feed);

    let ready = health::Readiness::default();
    let render: health::MetricsRender = Arc::new(String::new);
    let server = health::serve(cfg.listen, ready.clone(), render, stop.clone())
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;

    tokio::select! {
        synced = store.wait_until_ready() => {
            synced.context("preset cache")?;
            tracing::info!(presets = store.state().len(), "preset cache synced");
            ready.set_ready();
        }
        _ = stop.cancelled() => {}
    }

    stop.cancelled().await;
    feed.abort();
    server.await.context("health server")?;
    tracing::info!("prow-webhook stopped");
    Ok(())
}
