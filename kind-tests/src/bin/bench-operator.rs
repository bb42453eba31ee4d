//! Benchmark of the ProwJob reconciler against a real API server (prints figures; asserts
//! nothing). Usage: `bench-operator KUBECONFIG OPERATOR_BINARY`; kind-tests/scripts/bench.sh
//! starts a control plane and a release build for it.
//!
//! 1. 1,000 jobs created at 100/s: created -> pod created and created -> pending (p50/p95/p99),
//!    total time to all pending; and the same pods created by a plain client as the baseline.
//! 2. 10,000 completed jobs and their pods stored: operator start -> caches synced, and RSS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kind_tests::bench::{latencies, percentiles, print_row, wait_all, CpuWindow, Latencies};
use kind_tests::fixtures::decorated_job;
use kind_tests::process::{http_status, Running};
use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

const JOBS: usize = 1_000;
const RATE_PER_SEC: u64 = 100;
const STORED: usize = 10_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let kubeconfig = PathBuf::from(
        args.next()
            .context("usage: bench-operator KUBECONFIG OPERATOR_BINARY")?,
    );
    let operator = PathBuf::from(
        args.next()
            .context("usage: bench-operator KUBECONFIG OPERATOR_BINARY")?,
    );
    std::env::set_var(kind_tests::env::KUBECONFIG_VAR, &kubeconfig);

    let part = args.next().unwrap_or_else(|| "all".into());
    if part == "all" || part == "start" {
        println!("== 1. {JOBS} jobs created at {RATE_PER_SEC}/s");
        let cpu = CpuWindow::start();
        let mut pod_job = job("x", "baseline");
        pod_job.metadata.uid = Some("u".into());
        let baseline = plain_creates("bench-baseline", |ns, i| {
            let mut pod = prow_api::pod::pod_for(&pod_job, "1", ns).expect("pod");
            pod.metadata.name = Some(format!("pod-{i:04}"));
            pod
        })
        .await?;
        let job_leg = plain_creates("bench-jobs", |_, i| {
            job(&format!("job-{i:04}"), &format!("ci-bench-{}", i % 50))
        })
        .await?;
        println!("without the operator ({})", cpu.report());
        println!("CPU by program: {}", cpu.top_programs());
        print_row("baseline: pod create -> pod seen", &baseline);
        print_row("job create -> job seen (no operator)", &job_leg);
        let floor = percentiles(&job_leg)
            .iter()
            .zip(percentiles(&baseline))
            .map(|(j, b)| format!("{:.2}x", (j + b) / b))
            .collect::<Vec<_>>();
        println!(
            "floor (job seen + a plain pod create, over the baseline): p50 {}  p95 {}  p99 {}",
            floor[0], floor[1], floor[2]
        );
        let cpu = CpuWindow::start();
        let run = start_latency(&operator).await?;
        println!("with the operator ({})", cpu.report());
        println!("CPU by program: {}", cpu.top_programs());
        print_row("job create -> job seen", &run.job_seen);
        print_row(
            "job seen -> pod seen (the operator's leg)",
            &run.operator_leg,
        );
        print_row("operator: job create -> pod seen", &run.pod_seen);
        print_row("operator: job create -> pending seen", &run.pending);
        println!(
            "all {JOBS} pending {:.2} s after the first job was created",
            run.total.as_secs_f64()
        );
        let (b, o) = (percentiles(&baseline), percentiles(&run.pod_seen));
        println!(
            "ratio created -> pod created / baseline: p50 {:.2}x  p95 {:.2}x  p99 {:.2}x",
            o[0] / b[0],
            o[1] / b[1],
            o[2] / b[2]
        );
    }
    if part == "all" || part == "stored" {
        cold_start(&operator).await?;
    }
    Ok(())
}

fn job(name: &str, job: &str) -> ProwJob {
    let labels = json!({"created-by-prow": "true", "prow.k8s.io/type": "periodic"});
    let spec = json!({"type": "periodic", "job": job});
    serde_json::from_value(decorated_job(name, labels, spec)).expect("job")
}

/// Creates JOBS objects made by `make(namespace, i)` at RATE_PER_SEC in a fresh namespace no
/// operator watches; returns create -> seen by a watch, per object.
async fn plain_creates<K, F>(prefix: &str, make: F) -> anyhow::Result<Latencies>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
    F: Fn(&str, usize) -> K,
{
    let env = TestEnv::new(prefix).await?;
    let api: Api<K> = env.api();
    let ([seen], watch) = first_seen(api.clone(), [|_| true]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = paced(JOBS, |i| {
        let (api, object) = (api.clone(), make(&env.namespace, i));
        let name = object.name_any();
        async move {
            let t = Instant::now();
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| (name, t))
        }
    })
    .await?;
    wait_all(&seen, JOBS).await;
    watch.abort();
    let result = latencies(&started, &seen.lock().expect("lock"));
    Ok(result)
}

/// Latencies of one run of jobs through the operator.
struct StartRun {
    job_seen: Latencies,
    operator_leg: Latencies,
    pod_seen: Latencies,
    pending: Latencies,
    total: Duration,
}

async fn start_latency(operator: &std::path::Path) -> anyhow::Result<StartRun> {
    let env = TestEnv::new("bench-start").await?;
    let ns = env.namespace.clone();
    let _operator = start_release_operator(operator, &env, &ns)?;
    let pods: Api<Pod> = env.api();
    let jobs: Api<ProwJob> = env.api();
    let ([pod_seen], pod_watch) = first_seen(pods, [|_| true]);
    // One watch for both, so the benchmark adds no more load than it must.
    let ([job_seen, pending_seen], job_watch) = first_seen(
        jobs.clone(),
        [|_| true, |j: &ProwJob| j.state() == ProwJobState::Pending],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = Instant::now();
    let started = paced(JOBS, |i| {
        let jobs = jobs.clone();
        async move {
            let name = format!("job-{i:04}");
            let t = Instant::now();
            jobs.create(
                &PostParams::default(),
                &job(&name, &format!("ci-bench-{}", i % 50)),
            )
            .await
            .map(|_| (name, t))
        }
    })
    .await?;
    wait_all(&pending_seen, JOBS).await;
    let total = pending_seen
        .lock()
        .expect("lock")
        .values()
        .max()
        .map(|t| *t - first)
        .unwrap_or_default();
    wait_all(&pod_seen, JOBS).await;
    for watch in [pod_watch, job_watch] {
        watch.abort();
    }
    let [job_seen, pod_seen, pending_seen] =
        [job_seen, pod_seen, pending_seen].map(|s| s.lock().expect("lock").clone());
    Ok(StartRun {
        job_seen: latencies(&started, &job_seen),
        operator_leg: latencies(&job_seen, &pod_seen),
        pod_seen: latencies(&started, &pod_seen),
        pending: latencies(&started, &pending_seen),
        total,
    })
}

async fn cold_start(operator: &std::path::Path) -> anyhow::Result<()> {
    println!("== 2. {STORED} completed jobs and their pods stored");
    let env = TestEnv::new("bench-stored").await?;
    // BENCH_STORED_NAMESPACE reuses a namespace filled by an earlier run (for profiling).
    let ns = match std::env::var("BENCH_STORED_NAMESPACE") {
        Ok(ns) => ns,
        Err(_) => {
            fill(&env).await?;
            env.namespace.clone()
        }
    };
    println!("stored jobs are in namespace {ns}");
    let start = Instant::now();
    let running = start_release_operator(operator, &env, &ns)?;
    let synced = start.elapsed();
    // Let the controller take every stored job through one reconcile, then read memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid()))?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    / 1024.0
            })
            .unwrap_or(0.0)
    };
    println!(
        "operator start -> caches synced (ready): {:.2} s",
        synced.as_secs_f64()
    );
    println!(
        "operator RSS after sync: {:.1} MB (peak {:.1} MB)",
        field("VmRSS:"),
        field("VmHWM:")
    );
    anyhow::ensure!(
        http_status(&running.health, "/readyz")? == 200,
        "operator not ready"
    );
    Ok(())
}

async fn fill(env: &TestEnv) -> anyhow::Result<()> {
    let ns = env.namespace.clone();
    let jobs: Api<ProwJob> = env.api();
    let pods: Api<Pod> = env.api();
    let filled = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(0..STORED)
        .map(|i| {
            let (jobs, pods, ns) = (jobs.clone(), pods.clone(), ns.clone());
            async move {
                let name = format!("done-{i:05}");
                let created = jobs.create(&PostParams::default(), &job(&name, &format!("ci-done-{}", i % 200))).await?;
                // Finished within the retention window, so the operator keeps them all.
                let ago = |minutes: i64| {
                    let at = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_mins(minutes);
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)
                };
                let status = json!({"status": {"state": "success", "startTime": ago(120),
                    "pendingTime": ago(119), "completionTime": ago(110),
                    "pod_name": name, "build_id": format!("{}", 1_700_000_000_000u64 + i as u64),
                    "description": "Job succeeded.", "url": format!("https://prow.example/view/{name}")}});
                jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
                let mut pod = prow_api::pod::pod_for(&created, "1", &ns)?;
                pod.status = None;
                pods.create(&PostParams::default(), &pod).await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    println!(
        "stored {STORED} completed jobs and {STORED} pods in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    Ok(())
}

/// When the watch first saw each object of `api` for which `when` holds, by name.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Watches `api` and records, for each predicate, the first moment each object satisfies it.
fn first_seen<K, const N: usize>(
    api: Api<K>,
    when: [fn(&K) -> bool; N],
) -> ([Seen; N], tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let seen: [Seen; N] = std::array::from_fn(|_| Arc::default());
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(object)) = events.next().await {
            let now = Instant::now();
            for (holds, record) in when.iter().zip(&record) {
                if holds(&object) {
                    record
                        .lock()
                        .expect("lock")
                        .entry(object.name_any())
                        .or_insert(now);
                }
            }
        }
    });
    (seen, task)
}

/// Starts the release operator for namespace `ns`, without leader election, and waits until
/// it is ready.
fn start_release_operator(
    operator: &std::path::Path,
    env: &TestEnv,
    ns: &str,
) -> anyhow::Result<Running> {
    let args = [
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        "--leader-election=false".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start_binary(operator, &env.kubeconfig, &args)
}

/// Runs `make(i)` for i in 0..n at RATE_PER_SEC, concurrently; returns name -> start instant.
async fn paced<F, Fut>(n: usize, make: F) -> anyhow::Result<HashMap<String, Instant>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(String, Instant), kube::Error>> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        tasks.push(tokio::spawn(make(i)));
    }
    let mut started = HashMap::with_capacity(n);
    for t in tasks {
        let (name, at) = t.await??;
        started.insert(name, at);
    }
    Ok(started)
}
