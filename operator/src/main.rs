//! prow-operator: the process. Parses configuration, connects, serves health and metrics, waits
//! for leadership, runs the ProwJob reconciler and the retention sweep, and stops cleanly on
//! SIGTERM (releasing its Lease so a standby takes over at once).

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use clap::Parser;
use prow_operator::config::OperatorConfig;
use prow_operator::metrics::{self, Metrics};
use prow_operator::{
    advertise, buildclusters, compat, definitions, leader, presets, prowjob, retention,
    testclusters,
};
use prow_runtime::supervise::Supervisor;
use prow_runtime::{client, health, process, shutdown, telemetry};

#[global_allocator]
static ALLOCATOR: process::CompactHeap = process::CompactHeap;

fn main() -> anyhow::Result<()> {
    process::return_large_buffers_to_the_system();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(process::collect_when_idle)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cfg = OperatorConfig::parse();
    telemetry::init(cfg.log_format);
    process::install_crypto_provider();
    tracing::info!(config = %cfg.describe(), "prow-operator starting");

    let stop = shutdown::on_signal();
    let (client, fail_fast) = client::clients(cfg.kubeconfig.as_deref()).await?;
    let version = client
        .apiserver_version()
        .await
        .context("reaching the API server")?;
    tracing::info!(server = %version.git_version, "connected to the API server");

    let ready = health::Readiness::default();
    let metrics = Arc::new(Metrics::default());
    let sources = Arc::new(OnceLock::new());
    let render = metrics::renderer(metrics.clone(), sources.clone());
    let server = health::serve(cfg.listen, ready.clone(), render, stop.clone())
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;

    let mut leadership = None;
    if cfg.leader_election {
        let identity = leader::identity(
            cfg.leader_election_identity.as_deref(),
            std::env::var("POD_NAME").ok().as_deref(),
            std::env::var("HOSTNAME").ok().as_deref(),
            std::process::id(),
        );
        // A standby is healthy and ready to take over: Ready, so that a rollout of several
        // replicas proceeds. Services of what only the leader serves route by Endpoints the
        // leader writes (--compat-endpoints), not by readiness.
        ready.set_standby();
        leadership = leader::acquire(
            client.clone(),
            &cfg.leader_election_namespace,
            &cfg.leader_election_name,
            identity,
            &stop,
        )
        .await?;
        if leadership.is_none() {
            server.await.context("health server")?;
            return Ok(());
        }
        ready.set_leading();
    }

    // One Events handle for the process: every reconciler's Events go through its writers.
    let events = prow_operator::events::recorder(client.clone());
    let settings = cfg.prowjob_settings();
    let pod_watch_namespace = settings.pod_watch_namespace().map(str::to_string);
    let (clusters, cluster_events) = testclusters::watch(
        fail_fast.clone(),
        settings.pod_watch_namespace(),
        cfg.watch_namespace.as_deref(),
        ready.clone(),
    );
    let (definition_runs, runs_changed) = tokio::sync::mpsc::unbounded_channel();
    let definition_index = definitions::RunIndex::default();
    let (caches, controller) = prowjob::run(
        client.clone(),
        fail_fast.clone(),
        settings,
        clusters.clone(),
        metrics,
        events.clone(),
        definition_runs,
        definition_index.clone(),
        ready.clone(),
        stop.clone(),
    );
    let _ = sources.set(metrics::Sources {
        jobs: caches.jobs.clone(),
        clusters: clusters.clone(),
        default_pod_namespace: cfg.pod_namespace.clone(),
    });
    let mut tasks = Supervisor::new(stop.clone(), ready.clone());
    let wiring = buildclusters::Wiring {
        jobs: caches.jobs.clone(),
        wake: caches.wake.clone(),
        pod_namespace: pod_watch_namespace.clone(),
        list_page_size: cfg.list_page_size,
        shutdown: stop.clone(),
        schedule: caches.schedule.clone(),
        first: [caches.open_synced.clone(), caches.pods_synced.clone()],
    };
    if let Some(dir) = &cfg.kubeconfig_dir {
        for (alias, kubeconfig) in buildclusters::from_kubeconfig_dir(dir)? {
            let clients = client::clients_from_parsed(kubeconfig, Some(&alias))
                .await
                .with_context(|| format!("context {alias:?} of --kubeconfig-dir"))?;
            let member = buildclusters::Member::start(&alias, clients, 0, &wiring);
            caches.builds.fix(member);
        }
    }
    tasks.spawn(
        "buildcluster-controller",
        buildclusters::run(
            client.clone(),
            fail_fast.clone(),
            caches.builds.clone(),
            wiring,
            buildclusters::Settings {
                namespace: cfg.build_cluster_namespace(),
                pod_namespace: cfg.pod_namespace.clone(),
            },
            events.clone(),
            ready.clone(),
        ),
    );
    let (definitions, definition_controller) = definitions::run(
        definitions::Context {
            client: client.clone(),
            jobs: caches.jobs.clone(),
            runs: definition_index,
            jobs_synced: caches.jobs_synced.clone(),
            recorder: events.clone(),
        },
        fail_fast.clone(),
        cfg.watch_namespace.clone(),
        runs_changed,
        ready.clone(),
        stop.clone(),
    );
    tasks.spawn("jobdefinition-controller", definition_controller);
    if let Some(settings) = cfg.compat() {
        let listen = settings.listen;
        let api = compat::serve(
            client.clone(),
            clusters.clone(),
            caches.jobs.clone(),
            definitions.clone(),
            settings,
            stop.clone(),
        )
        .await
        .with_context(|| format!("binding the cimaster-compatible API on {listen}"))?;
        tasks.spawn("cimaster-api", api);
        if let (Some(name), Some(ip)) = (&cfg.compat_endpoints, &cfg.pod_ip) {
            let ad = advertise::Advertisement {
                namespace: cfg.leader_election_namespace.clone(),
                name: name.clone(),
                ip: ip.clone(),
                pod: std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()),
                port_name: "cimaster".to_string(),
                port: listen.port(),
            };
            tasks.spawn(
                "cimaster-endpoints",
                advertise::run(client.clone(), ad, stop.clone()),
            );
        }
    }
    tasks.spawn("prowjob-controller", controller);
    tasks.spawn(
        "preset-status",
        presets::run(
            client.clone(),
            fail_fast.clone(),
            cfg.watch_namespace.clone(),
            events.clone(),
            ready.clone(),
            stop.clone(),
        ),
    );
    tasks.spawn(
        "testcluster-controller",
        testclusters::run(
            client.clone(),
            cfg.pod_namespace.clone(),
            clusters,
            cluster_events,
            testclusters::Shared {
                jobs: caches.jobs.clone(),
                open: caches.open.clone(),
                builds: caches.builds.clone(),
                jobs_synced: caches.jobs_synced.clone(),
                wake_jobs: caches.wake.clone(),
                definitions,
            },
            events.clone(),
            stop.clone(),
        ),
    );
    tasks.spawn(
        "kubeconfig-copy-tidy",
        testclusters::tidy(
            caches.clone(),
            testclusters::TidyScope {
                namespace: pod_watch_namespace.clone(),
                jobs_namespace: cfg.watch_namespace.clone(),
            },
            stop.clone(),
        ),
    );
    tasks.spawn(
        "retention",
        retention::run(client, caches, cfg.sweep_interval, stop.clone()),
    );

    let supervised = tasks.run();
    tokio::pin!(supervised);
    let mut lost = false;
    let outcome = match leadership.as_mut() {
        Some(held) => tokio::select! {
            outcome = &mut supervised => outcome,
            _ = held.lost() => {
                tracing::error!("lost leadership; stopping so a restart rejoins the election");
                lost = true;
                stop.cancel();
                supervised.await
            }
        },
        None => supervised.await,
    };
    // Released even when a task died, so a standby takes over at once.
    if let Some(held) = leadership {
        held.release().await;
    }
    stop.cancel();
    server.await.context("health server")?;
    tracing::info!("prow-operator stopped");
    anyhow::ensure!(!lost, "lost leadership");
    outcome
}
