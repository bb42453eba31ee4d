//! prow-hook: the process. Serves `/hook` with `/healthz`, `/readyz` and `/metrics` on one
//! address; every replica takes deliveries and runs the trigger; the replica holding the Lease
//! reports to GitHub.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::runtime::watcher;
use prow_api::hook::report::ReportAs;
use prow_api::hook::secrets::Secrets;
use prow_api::hook::trust::HookConfig;
use prow_api::jobdefinition::JobDefinition;
use prow_api::ProwJob;
use prow_hook::github::{self, GitHub};
use prow_hook::intake::{self, Delivery, Intake};
use prow_hook::metrics::Metrics;
use prow_hook::reporter::Reporter;
use prow_hook::trigger::Trigger;
use prow_runtime::settings::go_duration;
use prow_runtime::storage::Credentials;
use prow_runtime::supervise::Supervisor;
use prow_runtime::telemetry::{self, LogFormat};
use prow_runtime::{client, health, leader, process, queue, shutdown, watch};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use warp::Filter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// prow-hook: GitHub webhooks in (pull requests, comments and pushes start ProwJobs by
/// upstream's trigger rules), statuses and the failure comment out (upstream crier's GitHub
/// reporter).
#[derive(Parser, Debug, Clone)]
#[command(name = "prow-hook", version, about)]
struct HookFlags {
    /// Address serving /hook, /healthz, /readyz and /metrics (plain HTTP, behind an Ingress).
    #[arg(long, env = "PROW_HOOK_LISTEN", default_value = "0.0.0.0:8888")]
    listen: SocketAddr,

    /// The webhook's HMAC secret: one token, or upstream's YAML of `org/repo`, `org` and `*` to
    /// lists of {value, created_at}. Re-read when it changes.
    #[arg(
        long,
        env = "PROW_HOOK_HMAC_SECRET_FILE",
        default_value = "/etc/webhook/hmac"
    )]
    hmac_secret_file: PathBuf,

    /// File holding the GitHub token (a personal access token or a bot account's); re-read at
    /// each call, so a rotated Secret is used at once.
    #[arg(
        long,
        env = "PROW_HOOK_GITHUB_TOKEN_PATH",
        default_value = "/etc/github/oauth"
    )]
    github_token_path: PathBuf,

    /// Authenticate as this GitHub App (with --github-app-private-key-path) instead of a token:
    /// an installation token per organisation, made again before it expires.
    #[arg(
        long,
        env = "PROW_HOOK_GITHUB_APP_ID",
        requires = "github_app_private_key_path"
    )]
    github_app_id: Option<String>,

    /// The GitHub App's private key (PEM).
    #[arg(
        long,
        env = "PROW_HOOK_GITHUB_APP_PRIVATE_KEY_PATH",
        requires = "github_app_id"
    )]
    github_app_private_key_path: Option<PathBuf>,

    /// GitHub's API: a GitHub Enterprise server's `https://HOST/api/v3`, or a stand-in in tests.
    #[arg(
        long,
        env = "PROW_HOOK_GITHUB_ENDPOINT",
        default_value = "https://api.github.com"
    )]
    github_endpoint: String,

    /// Tries per GitHub call (connection errors, 5xx and rate limits are tried again).
    #[arg(long, env = "PROW_HOOK_GITHUB_TRIES", default_value_t = 8)]
    github_tries: u32,

    /// The first wait before a GitHub call is tried again, doubled each try (Go duration).
    #[arg(long, env = "PROW_HOOK_GITHUB_BACKOFF", default_value = "2s", value_parser = go_duration)]
    github_backoff: Duration,

    /// Upstream's plugin configuration, of which `triggers:` is read (trusted_apps,
    /// only_org_members, ignore_ok_to_test, join_org_url per org or repository). Re-read when
    /// it changes. Without it, every repository has the defaults.
    #[arg(long, env = "PROW_HOOK_PLUGIN_CONFIG")]
    plugin_config: Option<PathBuf>,

    /// Largest delivery body taken; a larger one is answered 413.
    #[arg(long, env = "PROW_HOOK_MAX_BODY_BYTES", default_value_t = intake::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,

    /// Deliveries handled at once.
    #[arg(long, env = "PROW_HOOK_WORKERS", default_value_t = 16)]
    workers: usize,

    /// Deliveries waiting to be handled before new ones are answered 503 (GitHub shows them as
    /// failed; they can be redelivered).
    #[arg(long, env = "PROW_HOOK_QUEUE", default_value_t = 2000)]
    queue: usize,

    /// Namespace whose JobDefinitions and ProwJobs are read; empty reads all.
    #[arg(long, env = "PROW_HOOK_NAMESPACE")]
    namespace: Option<String>,

    /// Report as commit statuses (upstream's) or as check runs, whose output carries a finished
    /// run's log tail (check runs need a GitHub App).
    #[arg(long, env = "PROW_HOOK_REPORT_AS", value_enum, default_value_t = ReportAsFlag::Statuses)]
    report_as: ReportAsFlag,

    /// S3 credentials (upstream's service-account.json) of the bucket decorated runs upload to,
    /// for check runs' log tails.
    #[arg(long, env = "PROW_HOOK_S3_CREDENTIALS_FILE", default_value = "")]
    s3_credentials_file: String,

    /// GCS credentials of that bucket, where it is a gs:// one.
    #[arg(long, env = "PROW_HOOK_GCS_CREDENTIALS_FILE", default_value = "")]
    gcs_credentials_file: String,

    /// Report job states to GitHub (on the replica holding the Lease).
    #[arg(long, env = "PROW_HOOK_REPORT", default_value_t = true, action = clap::ArgAction::Set)]
    report: bool,

    /// Namespace of the reporter's Lease; defaults to the client's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the reporter's Lease.
    #[arg(
        long,
        env = "PROW_HOOK_LEADER_ELECTION_NAME",
        default_value = "prow-hook"
    )]
    leader_election_name: String,

    /// After SIGTERM, keep taking deliveries this long, unready, before the listener closes
    /// (Go duration): the Service sends to a pod until its endpoint is removed, which takes a
    /// moment. From SIGTERM on, every answer asks its connection to close.
    #[arg(long, env = "PROW_HOOK_SHUTDOWN_DELAY", default_value = "0s", value_parser = go_duration)]
    shutdown_delay: Duration,

    /// On shutdown, keep handling the deliveries taken in (answered 200, not handled yet) for
    /// at most this long after the listener closes (upstream hook's flag). Any still waiting
    /// then are logged by delivery ID, to be redelivered from GitHub.
    #[arg(long, env = "PROW_HOOK_GRACE_PERIOD", default_value = "60s", value_parser = go_duration)]
    grace_period: Duration,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_HOOK_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Log line format.
    #[arg(long, env = "PROW_HOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--report-as`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ReportAsFlag {
    /// Commit statuses.
    Statuses,
    /// Check runs.
    Checks,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::return_large_buffers_to_the_system();
    let flags = HookFlags::parse();
    telemetry::init(flags.log_format);
    process::install_crypto_provider();
    tracing::info!(listen = %flags.listen, endpoint = %flags.github_endpoint, "prow-hook starting");

    let secrets = Arc::new(RwLock::new(read_secrets(&flags.hmac_secret_file)?));
    let config = Arc::new(RwLock::new(read_config(flags.plugin_config.as_deref())?));
    let auth = match (&flags.github_app_id, &flags.github_app_private_key_path) {
        (Some(id), Some(key)) => github::Auth::App {
            id: id.clone(),
            key: key.clone(),
        },
        _ => github::Auth::Token(flags.github_token_path.clone()),
    };
    let github = Arc::new(GitHub::new(github::Settings {
        endpoint: flags.github_endpoint.clone(),
        auth,
        tries: flags.github_tries,
        backoff: flags.github_backoff,
        timeout: Duration::from_secs(30),
    })?);

    let ready = health::Readiness::default();
    let drained = CancellationToken::new();
    let stages = shutdown::Stages::on_signal(
        &ready,
        flags.shutdown_delay,
        flags.grace_period,
        Some(drained.clone()),
    );
    let stop = stages.stop.clone();
    let (client, fail_fast) = client::clients(flags.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::default());
    let mut tasks = Supervisor::new(stop.clone(), ready.clone());

    let definitions = watch::cached::<JobDefinition>(
        fail_fast.clone(),
        flags.namespace.as_deref(),
        watcher::Config::default(),
        "jobdefinition-watch",
        ready.clone(),
    );
    {
        let (feed, stop) = (definitions.events, stop.clone());
        tasks.spawn("jobdefinition-watch", async move {
            tokio::select! {
                _ = watch::drain(feed, "jobdefinition-watch") => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    {
        let (synced, ready) = (definitions.synced.clone(), ready.clone());
        tokio::spawn(async move {
            if synced.wait().await {
                ready.set_ready();
            }
        });
    }

    let (deliveries, received) = mpsc::channel(flags.queue.max(1));
    // Cancelled once the listener closed and every request was answered: nothing more is
    // taken in.
    let served = CancellationToken::new();
    let intake = Arc::new(Intake::new(
        secrets.clone(),
        flags.max_body_bytes,
        deliveries,
        metrics.clone(),
    ));
    let trigger = Arc::new(Trigger {
        client: client.clone(),
        github: github.clone(),
        definitions: definitions.store.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
    });
    tasks.spawn(
        "trigger",
        logged(
            "trigger",
            handle_deliveries(
                trigger,
                received,
                flags.workers,
                Draining {
                    served: served.clone(),
                    drained,
                    stop: stop.clone(),
                },
            ),
        ),
    );
    tasks.spawn(
        "secret-reload",
        logged(
            "secret-reload",
            reload(
                flags.hmac_secret_file.clone(),
                secrets,
                read_secrets,
                stop.clone(),
            ),
        ),
    );
    if let Some(path) = flags.plugin_config.clone() {
        tasks.spawn(
            "config-reload",
            logged(
                "config-reload",
                reload(
                    path.clone(),
                    config,
                    move |p| read_config(Some(p)),
                    stop.clone(),
                ),
            ),
        );
    }
    if flags.report {
        let namespace = flags
            .leader_election_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let mut reporter = Reporter::new(client.clone(), github.clone(), metrics.clone());
        reporter.report_as = match flags.report_as {
            ReportAsFlag::Statuses => ReportAs::Statuses,
            ReportAsFlag::Checks => ReportAs::Checks,
        };
        reporter.log_credentials =
            Credentials::from_files(&flags.s3_credentials_file, &flags.gcs_credentials_file)?;
        let reporter = Arc::new(reporter);
        tasks.spawn(
            "reporter",
            logged(
                "reporter",
                report_while_leading(ReportSettings {
                    client: client.clone(),
                    fail_fast: fail_fast.clone(),
                    reporter,
                    namespace: flags.namespace.clone(),
                    lease_namespace: namespace,
                    lease_name: flags.leader_election_name.clone(),
                    ready: ready.clone(),
                    stop: stop.clone(),
                }),
            ),
        );
    }

    let render: health::MetricsRender = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let routes = intake::route(intake).or(health::routes(ready.clone(), render));
    // From SIGTERM on, each answer lets its connection go, so that a proxy in front sends the
    // next delivery on a new connection, to a pod that stays (it does not retry a POST on a
    // kept-alive connection closed under it).
    let routes = routes.map({
        let signalled = stages.signalled.clone();
        move |reply| -> Box<dyn warp::Reply> {
            if signalled.is_cancelled() {
                Box::new(warp::reply::with_header(reply, "connection", "close"))
            } else {
                Box::new(reply)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .with_context(|| format!("binding {}", flags.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /hook");
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(stages.clone().listener_closes());
    tasks.spawn("server", async move {
        server.run().await;
        served.cancel();
        // A supervised task lives until the stop.
        stages.stop.cancelled().await;
    });
    tasks.run().await
}

/// Runs `task`, logging its error: a task of the supervisor ends only with the process.
async fn logged(name: &'static str, task: impl std::future::Future<Output = anyhow::Result<()>>) {
    if let Err(e) = task.await {
        tracing::error!(task = name, error = format!("{e:#}"), "task failed");
    }
}

fn read_secrets(path: &Path) -> anyhow::Result<Secrets> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the HMAC secret file {}", path.display()))?;
    Secrets::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn read_config(path: Option<&Path>) -> anyhow::Result<HookConfig> {
    let Some(path) = path else {
        return Ok(HookConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plugin configuration {}", path.display()))?;
    HookConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads `path` again every few seconds and replaces `value` when it changed and reads; a file
/// that no longer reads keeps the last good value, with a warning.
async fn reload<T, F>(
    path: PathBuf,
    value: Arc<RwLock<T>>,
    read: F,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    T: PartialEq + Send + Sync,
    F: Fn(&Path) -> anyhow::Result<T> + Send,
{
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        match read(&path) {
            Ok(new) => {
                let mut current = value.write().unwrap_or_else(|p| p.into_inner());
                if *current != new {
                    *current = new;
                    tracing::info!(file = %path.display(), "reloaded");
                }
            }
            Err(e) => tracing::warn!(error = %e, "keeping the last good copy"),
        }
    }
}

/// What ends the trigger's intake at shutdown.
struct Draining {
    /// Cancelled once nothing more can be taken in.
    served: CancellationToken,
    /// Cancelled here once every delivery taken in was handled.
    drained: CancellationToken,
    /// The grace period ran out (or a task died): what waits is left, and logged.
    stop: CancellationToken,
}

/// Hands each delivery taken in to one of `workers`. Once nothing more is taken in, it goes on
/// until every delivery queued and in hand was handled, then says so (`drained`); at the stop,
/// the deliveries still queued are logged one by one, to be redelivered.
async fn handle_deliveries(
    trigger: Arc<Trigger>,
    mut received: mpsc::Receiver<Delivery>,
    workers: usize,
    draining: Draining,
) -> anyhow::Result<()> {
    let workers = workers.max(1);
    let slots = Arc::new(Semaphore::new(workers));
    let mut closed = false;
    loop {
        let delivery = tokio::select! {
            biased;
            _ = draining.stop.cancelled() => {
                left_unhandled(&mut received);
                return Ok(());
            }
            _ = draining.served.cancelled(), if !closed => {
                // What is queued is still received; then recv() says the queue is empty.
                received.close();
                closed = true;
                tracing::info!(queued = received.len(), "no more deliveries come in; handling those taken");
                continue;
            }
            d = received.recv() => match d { Some(d) => d, None => break },
        };
        let permit = tokio::select! {
            _ = draining.stop.cancelled() => {
                left_unhandled_one(&delivery);
                left_unhandled(&mut received);
                return Ok(());
            }
            permit = slots.clone().acquire_owned() => permit?,
        };
        let trigger = trigger.clone();
        tokio::spawn(async move {
            if let Err(e) = trigger.handle(&delivery).await {
                tracing::warn!(delivery = %delivery.guid, event = %delivery.kind, error = format!("{e:#}"), "handling a delivery failed");
            }
            drop(permit);
        });
    }
    tokio::select! {
        _ = draining.stop.cancelled() => {}
        all = slots.acquire_many(workers as u32) => {
            all?.forget();
            tracing::info!("every delivery taken in was handled");
            draining.drained.cancel();
            draining.stop.cancelled().await;
        }
    }
    Ok(())
}

fn left_unhandled(received: &mut mpsc::Receiver<Delivery>) {
    while let Ok(delivery) = received.try_recv() {
        left_unhandled_one(&delivery);
    }
}

fn left_unhandled_one(delivery: &Delivery) {
    tracing::warn!(delivery = %delivery.guid, event = %delivery.kind, "stopping with this delivery unhandled: redeliver it from the repository's webhook settings");
}

struct ReportSettings {
    client: kube::Client,
    fail_fast: kube::Client,
    reporter: Arc<Reporter>,
    namespace: Option<String>,
    lease_namespace: String,
    lease_name: String,
    ready: health::Readiness,
    stop: CancellationToken,
}

/// Reports while this replica holds the Lease; waits for it again when it is lost.
async fn report_while_leading(s: ReportSettings) -> anyhow::Result<()> {
    let identity = leader::identity(
        None,
        std::env::var("POD_NAME").ok().as_deref(),
        std::env::var("HOSTNAME").ok().as_deref(),
        std::process::id(),
    );
    loop {
        let Some(mut held) = leader::acquire(
            s.client.clone(),
            &s.lease_namespace,
            &s.lease_name,
            identity.clone(),
            &s.stop,
        )
        .await?
        else {
            return Ok(());
        };
        let reporting = s.stop.child_token();
        // Only presubmits and postsubmits are reported.
        let config =
            watcher::Config::default().labels("prow.k8s.io/type in (presubmit,postsubmit)");
        let jobs = watch::cached::<ProwJob>(
            s.fail_fast.clone(),
            s.namespace.as_deref(),
            config,
            "prowjob-watch",
            s.ready.clone(),
        );
        let requests = queue::requests_of(jobs.events, Reporter::wants);
        let reporter = s.reporter.clone();
        let run = queue::run(
            jobs.store,
            jobs.synced,
            requests,
            4,
            reporting.clone(),
            move |job| reporter.clone().reconcile(job),
        );
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {
                held.release().await;
                return Ok(());
            }
            _ = held.lost() => {
                tracing::warn!("lost the reporter's Lease; reporting stops until it is held again");
                reporting.cancel();
                run.await;
            }
        }
    }
}
