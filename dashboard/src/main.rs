//! prow-dashboard: the process. Serves the pages with `/healthz`, `/readyz` and `/metrics` on
//! one address, reading the API server through watch caches and runs' logs from their bucket.
//! It writes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prow_dashboard::cache;
use prow_dashboard::clusters::BuildClients;
use prow_dashboard::metrics::Metrics;
use prow_dashboard::pages::{self, App};
use prow_runtime::settings::go_duration;
use prow_runtime::storage::Credentials;
use prow_runtime::supervise::Supervisor;
use prow_runtime::telemetry::{self, LogFormat};
use prow_runtime::{client, health, process, shutdown};
use warp::Filter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// prow-dashboard: every job with its live or stored log, its history, the test-cluster pools
/// and the job definitions, in a browser. Read-only.
#[derive(Parser, Debug, Clone)]
#[command(name = "prow-dashboard", version, about)]
struct DashboardFlags {
    /// Address serving the pages, /healthz, /readyz and /metrics (plain HTTP: put it behind an
    /// Ingress, or reach it with `kubectl port-forward`).
    #[arg(long, env = "PROW_DASHBOARD_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// A namespace whose jobs, pools and definitions are shown; repeat for several. None: every
    /// namespace (the ServiceAccount must then read them cluster-wide).
    #[arg(
        long = "namespace",
        env = "PROW_DASHBOARD_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// Where a job that names no pod namespace runs its pod: the operator's --pod-namespace.
    #[arg(long, env = "PROW_DASHBOARD_POD_NAMESPACE", default_value = "default")]
    pod_namespace: String,

    /// S3 credentials (upstream's service-account.json) of the bucket decorated runs upload to.
    #[arg(long, env = "PROW_DASHBOARD_S3_CREDENTIALS_FILE", default_value = "")]
    s3_credentials_file: String,

    /// GCS credentials of that bucket, where it is a gs:// one.
    #[arg(long, env = "PROW_DASHBOARD_GCS_CREDENTIALS_FILE", default_value = "")]
    gcs_credentials_file: String,

    /// Jobs per page of the watch's first list.
    #[arg(long, env = "PROW_DASHBOARD_LIST_PAGE_SIZE", default_value_t = 500)]
    list_page_size: u32,

    /// Namespace of the BuildClusters (and their kubeconfig Secrets), to read the pod and live
    /// log of a job that runs in a build cluster. Without it, only pods of the dashboard's own
    /// cluster are read (and it needs no right on BuildClusters or Secrets).
    #[arg(long, env = "PROW_DASHBOARD_BUILD_CLUSTER_NAMESPACE")]
    build_cluster_namespace: Option<String>,

    /// After SIGTERM, keep serving this long, unready, before the listener closes (Go
    /// duration): the Service sends to a pod until its endpoint is removed, which takes a
    /// moment, and a page asked for meanwhile would find nothing listening.
    #[arg(long, env = "PROW_DASHBOARD_SHUTDOWN_DELAY", default_value = "0s", value_parser = go_duration)]
    shutdown_delay: std::time::Duration,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_DASHBOARD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Log line format.
    #[arg(long, env = "PROW_DASHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::return_large_buffers_to_the_system();
    let flags = DashboardFlags::parse();
    telemetry::init(flags.log_format);
    process::install_crypto_provider();
    tracing::info!(listen = %flags.listen, namespaces = ?flags.namespaces, "prow-dashboard starting");

    let credentials =
        Credentials::from_files(&flags.s3_credentials_file, &flags.gcs_credentials_file)?;
    let ready = health::Readiness::default();
    // A page is answered at once: nothing is left to do after the listener closes.
    let stages = shutdown::Stages::on_signal(
        &ready,
        flags.shutdown_delay,
        std::time::Duration::ZERO,
        None,
    );
    let stop = stages.stop.clone();
    let (client, fail_fast) = client::clients(flags.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::default());
    let mut tasks = Supervisor::new(stop.clone(), ready.clone());

    let namespaces: Vec<String> = flags
        .namespaces
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    let (caches, watches) = cache::start(
        fail_fast,
        namespaces,
        flags.list_page_size.max(1),
        ready.clone(),
    );
    for watch in watches {
        let stop = stop.clone();
        tasks.spawn("watch", async move {
            tokio::select! {
                _ = watch => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    {
        let (caches, ready) = (caches.clone(), ready.clone());
        tokio::spawn(async move {
            if caches.synced().await {
                ready.set_ready();
                tracing::info!(jobs = caches.read().len(), "caches synced");
            }
        });
    }
    let app = Arc::new(App {
        caches: caches.clone(),
        clusters: BuildClients::new(client.clone(), flags.build_cluster_namespace.clone()),
        client,
        credentials,
        pod_namespace: flags.pod_namespace.clone(),
        metrics: metrics.clone(),
    });
    let render: health::MetricsRender = {
        let (metrics, caches) = (metrics.clone(), caches.clone());
        Arc::new(move || {
            metrics.jobs.set(caches.read().len() as i64);
            metrics.render()
        })
    };
    let routes = health::routes(ready.clone(), render)
        .map(warp::Reply::into_response)
        .or(pages::routes(app))
        .unify();
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .with_context(|| format!("binding {}", flags.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving the dashboard");
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(stages.listener_closes());
    tasks.spawn("server", server.run());
    tasks.run().await
}
