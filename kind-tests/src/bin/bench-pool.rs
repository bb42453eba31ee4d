//! Benchmark of TestCluster leasing against a real API server (prints figures; asserts
//! nothing). Usage: `bench-pool KUBECONFIG OPERATOR_BINARY`; kind-tests/scripts/bench-pool.sh
//! starts a control plane and a release build for it.
//!
//! 200 jobs contend for 20 clusters of one pool; each holds its cluster for a short
//! pseudo-random time (its pod is finished a while after it appears), in two rounds: one that
//! saturates the API server, one at a calmer rate. A watch records every
//! cluster status as it arrives. Printed: hand-off latency (a lease ends while jobs wait -> the
//! cluster's next lease, both as the watch delivers them) p50/p95/p99, double leases, FIFO
//! violations (a job leased while a job created before it waits on for more than a second),
//! and the total time from the first job's creation to the last job's end.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::bench::{print_row, sorted, CpuWindow};
use kind_tests::fixtures::job;
use kind_tests::process::{http_get, Running};
use kind_tests::{PodDriver, TestEnv};
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use prow_api::{labels, ClusterPhase, ProwJob, TestCluster};
use serde_json::json;

const JOBS: usize = 200;
const CLUSTERS: usize = 20;

/// One cluster status as the watch delivered it.
struct Seen {
    at: Instant,
    resource_version: u64,
    phase: ClusterPhase,
    holder_uid: Option<String>,
}

/// The rounds: each pod's hold is `min + (index * 37) % spread` milliseconds. The first loads
/// this machine's API server to saturation (about a hundred hand-offs a second); the second
/// hands off about fifteen a second, still far more than a CI system's e2e pool.
const ROUNDS: [(u64, u64); 2] = [(50, 250), (500, 1500)];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-pool KUBECONFIG OPERATOR_BINARY";
    let kubeconfig = PathBuf::from(args.next().context(usage)?);
    let operator = PathBuf::from(args.next().context(usage)?);
    std::env::set_var(kind_tests::env::KUBECONFIG_VAR, &kubeconfig);
    for (min, spread) in ROUNDS {
        round(&operator, min, spread).await?;
    }
    Ok(())
}

/// One run of the benchmark, in a fresh namespace with a fresh operator; prints its figures.
async fn round(operator: &std::path::Path, min: u64, spread: u64) -> anyhow::Result<()> {
    let env = TestEnv::new("bench-pool").await?;
    let requests_before = api_requests(&env.client).await;
    let ns = env.namespace.clone();
    let clusters = env.api::<TestCluster>();
    for i in 0..CLUSTERS {
        let cluster: TestCluster = serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": format!("cluster-{i:02}")},
            "spec": {"pool": "e2e"},
        }))?;
        clusters.create(&PostParams::default(), &cluster).await?;
    }

    // Every status each cluster goes through, as it arrives.
    let history: Arc<Mutex<HashMap<String, Vec<Seen>>>> = Arc::default();
    let recorder = {
        let (history, clusters) = (history.clone(), clusters.clone());
        tokio::spawn(async move {
            let events = watcher(clusters, watcher::Config::default()).applied_objects();
            futures::pin_mut!(events);
            while let Some(Ok(cluster)) = events.next().await {
                let status = cluster.status.clone().unwrap_or_default();
                let seen = Seen {
                    at: Instant::now(),
                    resource_version: cluster
                        .resource_version()
                        .and_then(|rv| rv.parse().ok())
                        .unwrap_or(0),
                    phase: status.phase.unwrap_or(ClusterPhase::Vacant),
                    holder_uid: status.lease.and_then(|l| l.holder_uid),
                };
                history
                    .lock()
                    .expect("history")
                    .entry(cluster.name_any())
                    .or_default()
                    .push(seen);
            }
        })
    };

    // The operator runs while the jobs arrive, as in a CI system.
    let args = [
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        "--leader-election=false".to_string(),
        "--pod-deletion-grace-seconds=0".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = Running::start_binary(operator, &env.kubeconfig, &args)?;
    let cpu = CpuWindow::start();

    // The pods: each finishes a short pseudo-random time after it appears.
    let driver = PodDriver::new(env.client.clone(), &ns);
    let finisher = {
        let pods = env.api::<Pod>();
        tokio::spawn(async move {
            let events = watcher(pods, watcher::Config::default()).applied_objects();
            futures::pin_mut!(events);
            let mut started = std::collections::HashSet::new();
            while let Some(Ok(pod)) = events.next().await {
                let name = pod.name_any();
                if !started.insert(name.clone()) {
                    continue;
                }
                let index: u64 = name.trim_start_matches("job-").parse().unwrap_or(0);
                let hold = Duration::from_millis(min + (index * 37) % spread);
                let driver = driver.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    if let Err(e) = driver.succeed(&name).await {
                        eprintln!("finishing {name}: {e}");
                    }
                });
            }
        })
    };

    let jobs = env.api::<ProwJob>();
    let began = Instant::now();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..JOBS {
        let mut j = job(&format!("job-{i:03}"), "periodic");
        j.metadata.labels = Some(BTreeMap::from([(
            labels::TEST_CLUSTER_POOL.to_string(),
            "e2e".to_string(),
        )]));
        let made = jobs.create(&PostParams::default(), &j).await?;
        created.insert(made.uid().unwrap_or_default(), i);
    }
    let created_in = began.elapsed();

    // The end, from a watch of the jobs: a list of 200 jobs every few milliseconds would load
    // the API server more than what is measured.
    let ended = watcher(jobs.clone(), watcher::Config::default())
        .applied_objects()
        .scan(std::collections::HashSet::new(), |complete, job| {
            if let Ok(job) = job {
                if job.is_complete() {
                    complete.insert(job.uid().unwrap_or_default());
                }
            }
            std::future::ready(Some(complete.len()))
        })
        .any(|complete| std::future::ready(complete == JOBS));
    anyhow::ensure!(
        tokio::time::timeout(Duration::from_secs(600), ended)
            .await
            .unwrap_or(false),
        "jobs did not all finish"
    );
    let total = began.elapsed();
    let busy = cpu.report();
    let programs = cpu.top_programs();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The operator's own measure: release written -> next lease written.
    let (_, metrics) = http_get(&operator.health, "/metrics")?;
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (count, sum) = (
        figure("prow_operator_testcluster_handoff_seconds_count"),
        figure("prow_operator_testcluster_handoff_seconds_sum"),
    );
    // Its quantiles, as the upper bound of the histogram bucket they fall in.
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("prow_operator_testcluster_handoff_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.split_whitespace().last()?.parse().ok()?))
        })
        .collect();
    let bucket_quantile = |q: f64| -> f64 {
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= q * count)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    };
    let requests = api_requests(&env.client).await;
    recorder.abort();
    finisher.abort();

    // Grants (a new holder), releases, double leases.
    let history = history.lock().expect("history");
    let mut grants: Vec<(Instant, u64, usize)> = Vec::new();
    let mut handoffs = Vec::new();
    let mut double = 0;
    for statuses in history.values() {
        let mut holder: Option<&str> = None;
        let mut released: Option<Instant> = None;
        for seen in statuses {
            match (seen.phase, seen.holder_uid.as_deref()) {
                (ClusterPhase::Leased, Some(uid)) if holder != Some(uid) => {
                    if holder.is_some() {
                        double += 1;
                    }
                    holder = Some(uid);
                    let index = created.get(uid).copied().unwrap_or(usize::MAX);
                    grants.push((seen.at, seen.resource_version, index));
                    if let Some(at) = released.take() {
                        handoffs.push(seen.at.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
                (ClusterPhase::Leased, _) => {}
                _ => {
                    if holder.take().is_some() {
                        released = Some(seen.at);
                    }
                }
            }
        }
    }
    grants.sort_by_key(|g| g.1);
    // A FIFO violation: a job leased while a job created before it waits on for more than a
    // second (jobs served in the same round may commit in any order).
    let granted_at: HashMap<usize, Instant> = grants.iter().map(|g| (g.2, g.0)).collect();
    let mut fifo = 0;
    for (at, _, index) in &grants {
        let skipped = (0..*index).any(|earlier| {
            granted_at
                .get(&earlier)
                .is_some_and(|t| t.saturating_duration_since(*at) > Duration::from_secs(1))
        });
        fifo += usize::from(skipped);
    }
    println!(
        "== {JOBS} jobs, {CLUSTERS} clusters of one pool, holds of {min}-{} ms ({busy})",
        min + spread
    );
    println!("CPU by program: {programs}");
    let mut counts: Vec<(u64, &String)> = requests
        .iter()
        .map(|(kind, n)| (n - requests_before.get(kind).copied().unwrap_or(0), kind))
        .filter(|(n, _)| *n > 0)
        .collect();
    counts.sort_by(|a, b| b.cmp(a));
    let counts: Vec<String> = counts
        .iter()
        .take(8)
        .map(|(n, kind)| format!("{n} {kind}"))
        .collect();
    println!(
        "API server requests (all clients, top 8): {}",
        counts.join(", ")
    );
    println!(
        "jobs created in {:.2} s; leases granted: {} (of {JOBS})",
        created_in.as_secs_f64(),
        grants.len()
    );
    print_row(
        "hand-off: lease ended -> next lease of the cluster",
        &sorted(handoffs),
    );
    println!(
        "operator's own hand-off (release written -> next lease written): n={count} mean {:.2} ms, p50 <= {:.1} ms, p99 <= {:.1} ms (histogram buckets)",
        sum / count * 1000.0,
        bucket_quantile(0.5),
        bucket_quantile(0.99)
    );
    println!(
        "operator's write conflicts (each a decision made again after 100 ms): {}",
        figure("prow_operator_write_conflicts_total")
    );
    println!("double leases: {double}");
    println!("FIFO violations: {fifo}");
    println!(
        "total: first job created -> last job finished: {:.2} s",
        total.as_secs_f64()
    );
    Ok(())
}

/// The API server's request counts so far, by "VERB resource[/subresource]" (empty when its
/// metrics do not read).
async fn api_requests(client: &kube::Client) -> HashMap<String, u64> {
    let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else {
        return HashMap::new();
    };
    let Ok(text) = client.request_text(request).await else {
        return HashMap::new();
    };
    let mut counts = HashMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
        };
        let Some(n) = line
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<f64>().ok())
        else {
            continue;
        };
        let kind = match label("subresource") {
            "" => format!("{} {}", label("verb"), label("resource")),
            sub => format!("{} {}/{sub}", label("verb"), label("resource")),
        };
        *counts.entry(kind).or_default() += n as u64;
    }
    counts
}
