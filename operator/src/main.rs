//! prow-operator: the process. Parses configuration, connects, serves health and metrics, runs
//! the reconcilers and stops cleanly on SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prow_operator::config::{self, OperatorConfig};
use prow_operator::{health, shutdown, telemetry};

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
    let render: health::MetricsRender = Arc::new(String::new);
    let server = health::serve(cfg.listen, ready.clone(), render, stop.clone())
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    ready.set_ready();

    stop.cancelled().await;
    server.await.context("health server")?;
    tracing::info!("prow-operator stopped");
    Ok(())
}
