//! prow-webhook: the admission webhook (preset injection, job validation) over HTTPS, and
//! `prow-webhook validate PATH...`, the same rules offline for a job repository's CI.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use prow_api::buildcluster::BuildCluster;
use prow_api::jobdefinition::JobDefinition;
use prow_api::Preset;
use prow_runtime::kubeconfigs::KubeconfigClients;
use prow_runtime::settings::{go_duration, JobQueue, DEFAULT_POD_NAMESPACE};
use prow_runtime::supervise::Supervisor;
use prow_runtime::telemetry::{self, LogFormat};
use prow_runtime::{client, health, process, shutdown, store, watch};
use prow_webhook::{admission, certs, metrics, selftls, server, tls};
use serde::Serialize;

/// prow-webhook: injects Presets into ProwJobs and rejects bad job specs at admission.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "prow-webhook", version, about)]
struct WebhookConfig {
    /// Address the server listens on: HTTPS when a certificate is given, else plain HTTP
    /// (health and metrics only make sense then; the API server calls webhooks over HTTPS).
    #[arg(long, env = "PROW_WEBHOOK_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Optional plain-HTTP address for /healthz, /readyz and /metrics alone (kubelet probes and
    /// Prometheus without TLS).
    #[arg(long, env = "PROW_WEBHOOK_PROBE_LISTEN")]
    probe_listen: Option<SocketAddr>,

    /// PEM certificate chain of the server; re-read when it changes.
    #[arg(long, env = "PROW_WEBHOOK_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,

    /// PEM private key of the server; re-read when it changes.
    #[arg(long, env = "PROW_WEBHOOK_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,

    /// Make the server's certificate and its CA once and keep them in this Secret (shared by
    /// the replicas, renewed before they expire), instead of reading certificate files.
    #[arg(
        long,
        env = "PROW_WEBHOOK_TLS_SECRET",
        conflicts_with = "tls_cert_file",
        requires = "tls_service"
    )]
    tls_secret: Option<String>,

    /// Namespace of --tls-secret and --tls-service; defaults to the namespace the webhook
    /// runs in.
    #[arg(long, env = "PROW_WEBHOOK_TLS_NAMESPACE")]
    tls_namespace: Option<String>,

    /// The Service the API server calls the webhook through; its DNS names are the
    /// certificate's.
    #[arg(long, env = "PROW_WEBHOOK_TLS_SERVICE", requires = "tls_secret")]
    tls_service: Option<String>,

    /// Webhook configurations whose `caBundle` is kept set to --tls-secret's CA, as
    /// mutatingwebhookconfiguration/NAME or validatingwebhookconfiguration/NAME; the first
    /// owns the Secret, which goes when it does.
    #[arg(
        long = "ca-bundle-of",
        env = "PROW_WEBHOOK_CA_BUNDLE_OF",
        value_delimiter = ',',
        requires = "tls_secret"
    )]
    ca_bundle_of: Vec<selftls::Target>,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_WEBHOOK_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Namespace whose Presets are watched; empty watches all.
    #[arg(long, env = "PROW_WEBHOOK_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Job queues that exist, NAME or NAME=N as the operator takes them (the capacity is the
    /// operator's to enforce); when given, a job naming another queue is refused.
    #[arg(
        long = "job-queue",
        env = "PROW_WEBHOOK_JOB_QUEUES",
        value_delimiter = ','
    )]
    job_queues: Vec<JobQueue>,

    /// Dry-run each new job's pod on the API server and refuse jobs whose pod it would refuse.
    #[arg(long, env = "PROW_WEBHOOK_DEEP_CHECK", default_value_t = true, action = clap::ArgAction::Set)]
    deep_check: bool,

    /// Dry-run the pod of a job for another build cluster in that cluster, with the kubeconfig
    /// its BuildCluster names (needs `get` on those Secrets); false admits such a job with a
    /// warning that its pod was not dry-run.
    #[arg(long, env = "PROW_WEBHOOK_DEEP_CHECK_BUILD_CLUSTERS", default_value_t = true, action = clap::ArgAction::Set)]
    deep_check_build_clusters: bool,

    /// How long the deep check may take before the job is admitted with a warning.
    #[arg(
        long,
        env = "PROW_WEBHOOK_DEEP_CHECK_TIMEOUT_MS",
        default_value_t = 2000
    )]
    deep_check_timeout_ms: u64,

    /// Namespace of the pods of jobs without `spec.namespace` (as the operator's flag).
    #[arg(long, env = "PROW_WEBHOOK_POD_NAMESPACE", default_value = DEFAULT_POD_NAMESPACE)]
    pod_namespace: String,

    /// Namespace of the BuildClusters, whose names (with `default` and --kubeconfig-dir's
    /// contexts) are the build cluster aliases a new job's `spec.cluster` may name; defaults to
    /// the webhook's own namespace (`POD_NAMESPACE`). Unset there too: the rule is off.
    #[arg(long, env = "PROW_WEBHOOK_BUILD_CLUSTER_NAMESPACE")]
    build_cluster_namespace: Option<String>,

    /// Directory of kubeconfig files whose contexts are build cluster aliases too (upstream's
    /// `--kubeconfig-dir`, as the operator takes it); only the context names are read.
    #[arg(long, env = "PROW_WEBHOOK_KUBECONFIG_DIR")]
    kubeconfig_dir: Option<std::path::PathBuf>,

    /// Threads serving admissions. One serves over 20,000 admissions a second and keeps the tail
    /// lowest where the webhook shares CPUs with the API server; raise it on large nodes.
    #[arg(long, env = "PROW_WEBHOOK_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,

    /// Most client connections open at once (lowered to fit the open-file limit); more
    /// clients wait to be accepted.
    #[arg(long, env = "PROW_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1000)]
    max_connections: usize,

    /// Time a client has to finish its TLS handshake (Go duration).
    #[arg(long, env = "PROW_WEBHOOK_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = go_duration)]
    #[serde(skip)]
    handshake_timeout: Duration,

    /// Time a client has to send a request's headers, and then its body (Go duration).
    #[arg(long, env = "PROW_WEBHOOK_HEADER_TIMEOUT", default_value = "10s", value_parser = go_duration)]
    #[serde(skip)]
    header_timeout: Duration,

    /// A connection with no traffic this long is closed (Go duration).
    /// Longer than the API server's own 90 s, so that it is the client that closes an idle
    /// connection: closed by the server, one the client is sending on fails with EOF.
    #[arg(long, env = "PROW_WEBHOOK_IDLE_TIMEOUT", default_value = "120s", value_parser = go_duration)]
    #[serde(skip)]
    idle_timeout: Duration,

    /// After SIGTERM, keep serving this long, unready, before stopping (Go duration): the
    /// API server keeps calling a pod until its endpoint is removed, which takes a moment.
    /// From SIGTERM on, each connection is let go once its requests are answered (an idle
    /// HTTP/1 one at the end of the delay), so the API server dials again instead of reusing
    /// a connection to this pod.
    #[arg(long, env = "PROW_WEBHOOK_SHUTDOWN_DELAY", default_value = "0s", value_parser = go_duration)]
    #[serde(skip)]
    shutdown_delay: Duration,

    /// Log line format.
    #[arg(long, env = "PROW_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Check ProwJob, Preset, TestCluster, TestClusterPool and JobDefinition YAML files (or
    /// directories of them) with the webhook's rules; exits non-zero on any violation. The same
    /// as `prowctl validate`.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// mimalloc: admissions allocate many small short-lived objects on every worker thread, where
/// glibc's malloc spent a fifth of the handler's CPU time (measured with perf under wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cfg = WebhookConfig::parse();
    if let Some(Command::Validate { paths }) = &cfg.command {
        let queues = queue_names(&cfg.job_queues);
        let clean = prow_runtime::manifests::validate(paths, queues, &mut std::io::stdout())?;
        std::process::exit(if clean { 0 } else { 1 });
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(cfg))
}

/// A cache of the `K`s of `namespace` (all when none), filled by the watch `what` that the
/// task `task` drives until `stop`; and whether it has its first list.
fn cached<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    (what, task): (&'static str, &'static str),
    ready: &health::Readiness,
    tasks: &mut Supervisor,
    stop: &tokio_util::sync::CancellationToken,
) -> (reflector::Store<K>, store::Synced)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let watch::Cached {
        store: cache,
        synced,
        events: feed,
    } = watch::cached::<K>(
        client.clone(),
        namespace,
        watcher::Config::default(),
        what,
        ready.clone(),
    );
    let feed = feed.applied_objects();
    let stop = stop.clone();
    tasks.spawn(task, async move {
        tokio::select! {
            _ = watch::drain(feed, what) => {}
            _ = stop.cancelled() => {}
        }
    });
    (cache, synced)
}

async fn serve(cfg: WebhookConfig) -> anyhow::Result<()> {
    telemetry::init(cfg.log_format);
    process::install_crypto_provider();
    let printed = serde_json::to_string(&cfg).unwrap_or_default();
    tracing::info!(config = %printed, "prow-webhook starting");

    let ready = health::Readiness::default();
    // Nothing is taken in to be done later: the stop follows the delay.
    let stages = shutdown::Stages::on_signal(&ready, cfg.shutdown_delay, Duration::ZERO, None);
    let (signalled, stop) = (stages.signalled.clone(), stages.stop.clone());
    let (client, fail_fast) = client::clients(cfg.kubeconfig.as_deref()).await?;
    let mut tasks = Supervisor::new(stop.clone(), ready.clone());
    let namespace = cfg.watch_namespace.as_deref();
    let (store, synced) = cached::<Preset>(
        &fail_fast,
        namespace,
        ("presets", "preset-watch"),
        &ready,
        &mut tasks,
        &stop,
    );
    let (definition_store, definitions_synced) = cached::<JobDefinition>(
        &fail_fast,
        namespace,
        ("jobdefinitions", "jobdefinition-watch"),
        &ready,
        &mut tasks,
        &stop,
    );

    let build_cluster_namespace =
        process::flag_or_own_namespace(cfg.build_cluster_namespace.as_deref());
    let fixed_aliases = match &cfg.kubeconfig_dir {
        Some(dir) => prow_runtime::kubeconfig_dir::from_kubeconfig_dir(dir)?
            .into_keys()
            .collect(),
        None => Default::default(),
    };
    let (build_clusters, build_clusters_synced) = match &build_cluster_namespace {
        Some(ns) => {
            let (declared, synced) = cached::<BuildCluster>(
                &fail_fast,
                Some(ns),
                ("buildclusters", "buildcluster-watch"),
                &ready,
                &mut tasks,
                &stop,
            );
            (
                Some(admission::BuildClusters {
                    declared,
                    fixed: fixed_aliases,
                }),
                Some(synced),
            )
        }
        None => {
            tracing::info!("no --build-cluster-namespace nor POD_NAMESPACE: spec.cluster is not checked at admission");
            (None, None)
        }
    };
    let admitter = admission::Admitter {
        presets: store.clone(),
        definitions: definition_store,
        job_queues: queue_names(&cfg.job_queues),
        deep_check: cfg.deep_check.then(|| admission::DeepCheck {
            client: client.clone(),
            pod_namespace: cfg.pod_namespace.clone(),
            timeout: Duration::from_millis(cfg.deep_check_timeout_ms),
            kubeconfigs: (cfg.deep_check_build_clusters && build_clusters.is_some())
                .then(|| Arc::new(KubeconfigClients::new(client.clone()))),
        }),
        build_clusters,
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let routes = server::routes(admitter, ready.clone(), metrics.clone(), cfg.header_timeout);
    let probes = match cfg.probe_listen {
        Some(address) => {
            let render: health::MetricsRender = Arc::new(move || metrics.render());
            Some(health::serve(address, ready.clone(), render, stop.clone()).await?)
        }
        None => None,
    };

    let resolver: Option<Arc<dyn rustls::server::ResolvesServerCert>> =
        match (&cfg.tls_cert_file, &cfg.tls_key_file, &cfg.tls_secret) {
            (Some(cert), Some(key), _) => {
                let cert = tls::ReloadingCert::load(cert, key)?;
                tasks.spawn("certificate-reload", cert.clone().watch(stop.clone()));
                Some(cert)
            }
            (_, _, Some(secret)) => {
                let namespace = cfg
                    .tls_namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string());
                let service = cfg.tls_service.as_deref().unwrap_or("prow-webhook");
                let settings = selftls::Settings {
                    dns_names: certs::service_dns_names(service, &namespace),
                    namespace,
                    secret: secret.clone(),
                    targets: cfg.ca_bundle_of.clone(),
                };
                let Some(managed) =
                    selftls::SelfManaged::start(client.clone(), settings, &ready, &stop).await
                else {
                    return Ok(());
                };
                tasks.spawn(
                    "certificate",
                    managed.clone().run(ready.clone(), stop.clone()),
                );
                Some(managed.resolver())
            }
            _ => None,
        };
    match resolver {
        Some(resolver) => {
            let tls_config = tls::server_config(resolver)?;
            let limits = tls::ConnectionLimits {
                max_connections: cfg.max_connections,
                handshake_timeout: cfg.handshake_timeout,
                header_timeout: cfg.header_timeout,
                idle_timeout: cfg.idle_timeout,
            }
            .within_file_limit();
            let shutdown = tls::Shutdown {
                drain: signalled.clone(),
                stop: stop.clone(),
            };
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("binding {}", cfg.listen))?;
            tasks.spawn("admission-server", async move {
                if let Err(e) = tls::serve(listener, tls_config, routes, limits, shutdown).await {
                    tracing::error!(error = %e, "admission server");
                }
            });
        }
        None => {
            let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
            tracing::info!(address = %listener.local_addr()?, "webhook listening (plain HTTP)");
            let stop = stop.clone();
            tasks.spawn("admission-server", async move {
                warp::serve(routes)
                    .incoming(listener)
                    .graceful(async move { stop.cancelled().await })
                    .run()
                    .await;
            });
        }
    }

    {
        let (ready, stop) = (ready.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                synced = async {
                    synced.wait().await
                        && definitions_synced.wait().await
                        && match &build_clusters_synced {
                            Some(s) => s.wait().await,
                            None => true,
                        }
                } => {
                    if synced {
                        tracing::info!(presets = store.state().len(), "preset cache synced");
                        ready.set_ready();
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    let outcome = tasks.run().await;
    if let Some(probes) = probes {
        probes.await.context("probe server")?;
    }
    tracing::info!("prow-webhook stopped");
    outcome
}

/// Queue names from `NAME` or `NAME=N` entries; `None` when none are configured.
fn queue_names(entries: &[JobQueue]) -> Option<BTreeSet<String>> {
    let names: BTreeSet<String> = entries.iter().map(|q| q.name.clone()).collect();
    (!names.is_empty()).then_some(names)
}
