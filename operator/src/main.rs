//! prow-operator: the process. Parses configuration, connects, serves health and metrics, runs
//! the reconcilers and stops cleanly on SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prow_operator::config::{self, OperatorConfig};
use prow_operator::metrics::{self, Metrics};
use prow_operator::{health, prowjob, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = OperatorConfig::parse();
    telemetry::init(cfg.log_format);
    telemetry::install_crypto_provider();
    tracing::info!(config = %cfg.describe(), "prow-operator starting");

    let stop = shutdown::on_signal();
    let client = config::client(cfg.kubeconfig.as_deref())
        .await
        .context("building the Kubernetes client")?;
    let version = client
        .apiserver_version()
        .await
        .context("reaching the API server")?;
    tracing::info!(server = %version.git_version, "connected to the API server");

    let ready = health::Readiness::default();
    let metrics = Arc::new(Metrics::default());
    let (caches, controller) = prowjob::run(
        client,
        cfg.prowjob_settings(),
        metrics.clone(),
        ready.clone(),
        stop.clone(),
    )
    .await;
    let render = metrics::renderer(metrics, caches.jobs.clone());
    let server = health::serve(cfg.listen, ready, render, stop.clone())
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;

    stop.cancelled().await;
    controller.await.context("ProwJob controller")?;
    server.await.context("health server")?;
    tracing::info!("prow-operator stopped");
    Ok(())
}
