//! Benchmark of the operator with 100,000 finished jobs whose pods are spread over three
//! clusters (prints figures; asserts nothing). Usage:
//! `bench-build-clusters CONTROL_KUBECONFIG B1_KUBECONFIG B2_KUBECONFIG OPERATOR_BINARY`;
//! kind-tests/scripts/bench-build-clusters.sh starts the three planes and a release build.
//!
//! 1. 100,000 finished (decorated, upstream-sized) jobs stored in the control plane, a third
//!    for each of `default`, `b1` and `b2`, each with its pod in its cluster, each marked
//!    `prow-operator.dev/completed` as the operator marks the jobs it has finished with.
//! 2. The operator started with the two BuildClusters: start -> ready, and its RSS 5 s and
//!    30 s after.
//! 3. In the same run, with the 100,000 stored: plain pods created at 50/s in the control
//!    plane (the baseline), then jobs created at 50/s for the three clusters: create -> pod
//!    seen in its cluster, and the ratios to the baseline. Then RSS again, and its peak.
//!
//! `BENCH_FILLED=NAMESPACE` reuses jobs stored by an earlier run (the planes kept up).
//! `BENCH_UNMARKED=1` stores the jobs without the mark (or, with `BENCH_FILLED`, takes it off
//! first): a first start on upstream's jobs, where the operator marks every finished job
//! while new jobs start; it prints when the last is marked.
//! `BENCH_RELIST_PLANE=DIR` (the control plane's state directory; the script sets it with
//! `BENCH_RELIST=1`) then restarts that plane's API server and prints the operator's RSS over
//! the relist of every job that follows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::bench::{
    latencies, peak_mb, percentiles, print_row, reset_peak, rss_mb, sorted, wait_all, CpuWindow,
    Latencies,
};
use kind_tests::build_clusters::{add_build_cluster, kubeconfig_text, namespace_in};
use kind_tests::fixtures::decorated_job;
use kind_tests::process::Running;
use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use prow_api::ProwJob;
use serde_json::json;

const STORED: usize = 100_000;
const IN_FLIGHT: usize = 64;
const PROBES: usize = 600;
const RATE_PER_SEC: u64 = 50;
const ALIASES: [&str; 3] = ["default", "b1", "b2"];
/// How long after the API server's restart the relist's peak is read.
const RELIST_WAIT_SECS: u64 = 120;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: bench-build-clusters CONTROL B1 B2 OPERATOR_BINARY";
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    anyhow::ensure!(args.len() == 4, "{usage}");
    let (control, operator) = (&args[0], &args[3]);
    std::env::set_var(kind_tests::env::KUBECONFIG_VAR, control);
    prow_runtime::process::install_crypto_provider();
    let env = TestEnv::new("bench-100k").await?;
    let mut clients = vec![env.client.clone()];
    for kubeconfig in &args[1..3] {
        clients.push(prow_runtime::client::client(Some(kubeconfig)).await?);
    }
    let unmarked = std::env::var_os("BENCH_UNMARKED").is_some();
    let ns = match std::env::var("BENCH_FILLED") {
        Ok(ns) => {
            forget_earlier_probes(&clients, &ns).await?;
            if unmarked {
                take_marks_off(&env.client, &ns).await?;
            }
            ns
        }
        Err(_) => {
            for client in &clients[1..] {
                namespace_in(client, &env.namespace, false).await?;
            }
            fill(&env, &clients, !unmarked).await?;
            env.namespace.clone()
        }
    };
    println!("stored jobs are in namespace {ns}");
    let env = TestEnv {
        namespace: ns.clone(),
        ..env
    };
    for (alias, kubeconfig) in ["b1", "b2"].iter().zip(&args[1..3]) {
        let text = kubeconfig_text(kubeconfig, None)?;
        // A second run on the same namespace finds them there.
        let _ = add_build_cluster(&env, alias, &text).await;
    }

    println!("== 2. the operator starts with {STORED} finished jobs and their pods stored");
    let started = Instant::now();
    let running = start_operator(operator, &env)?;
    let ready = Instant::now();
    println!(
        "operator start -> ready: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let marking = unmarked.then(|| tokio::spawn(all_marked(env.api(), started)));
    // Twice: 5 s after ready the build clusters' lists may still be in, and the figure
    // moves by tens of MB from run to run; 30 s after, it has settled.
    for after in [5, 30] {
        tokio::time::sleep_until((ready + Duration::from_secs(after)).into()).await;
        println!(
            "operator RSS {after} s after ready: {:.1} MB",
            rss_mb(running.pid())
        );
    }

    println!("== 3. jobs started while the {STORED} are stored, {PROBES} at {RATE_PER_SEC}/s");
    let cpu = CpuWindow::start();
    let baseline_env = TestEnv::new("bench-100k-baseline").await?;
    let baseline = plain_pods(&baseline_env).await?;
    print_row("baseline: pod create -> pod seen", &baseline);
    let probes = start_jobs(&env, &clients).await?;
    println!("({})", cpu.report());
    print_row("job create -> job seen (API server)", &probes.job_seen);
    print_row(
        "job seen -> pod seen (operator, pod create)",
        &probes.operator_leg,
    );
    let mut all = Vec::new();
    for (alias, samples) in ALIASES.iter().zip(&probes.by_cluster) {
        print_row(&format!("job for {alias}: create -> pod seen"), samples);
        all.extend(samples.iter().copied());
    }
    let all = sorted(all);
    print_row("job, any cluster: create -> pod seen", &all);
    let (b, o) = (percentiles(&baseline), percentiles(&all));
    println!(
        "ratio job create -> pod seen / baseline: p50 {:.2}x  p95 {:.2}x  p99 {:.2}x",
        o[0] / b[0],
        o[1] / b[1],
        o[2] / b[2]
    );
    println!(
        "operator RSS after the run: {:.1} MB (peak {:.1} MB)",
        rss_mb(running.pid()),
        peak_mb(running.pid())
    );
    if let Some(marking) = marking {
        let took = marking.await??;
        println!("operator start -> every finished job marked: {took:.1} s");
    }
    if let Ok(plane) = std::env::var("BENCH_RELIST_PLANE") {
        relist(&plane, running.pid()).await?;
    }
    Ok(())
}

/// The operator's RSS over a relist of every job: the control plane's API server (state in
/// `plane`) is restarted, and its new watch cache starts past the versions the operator's
/// watches resume from, so they list again.
async fn relist(plane: &str, pid: u32) -> anyhow::Result<()> {
    println!("== 4. the control plane's API server restarts: the operator lists every job again");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let settled = rss_mb(pid);
    reset_peak(pid)?;
    kind_tests::control_plane::restart_apiserver(Path::new(plane))?;
    // The new API server lists every stored object into its watch cache before it answers
    // the watches, then they list: a minute on this machine with 100,000 jobs.
    tokio::time::sleep(Duration::from_secs(RELIST_WAIT_SECS)).await;
    println!(
        "operator RSS before the restart {settled:.1} MB; {RELIST_WAIT_SECS} s after it {:.1} MB, peak {:.1} MB",
        rss_mb(pid),
        peak_mb(pid)
    );
    Ok(())
}

/// Seconds from `started` until no finished job is left unmarked (read from the API server's
/// watch cache every 2 s, so the figure is within 2 s).
async fn all_marked(jobs: Api<ProwJob>, started: Instant) -> anyhow::Result<f64> {
    let unmarked = kube::api::ListParams::default()
        .labels(&format!("!{},!bench-probe", prow_api::labels::COMPLETED))
        .match_any();
    loop {
        let left = jobs.list_metadata(&unmarked).await?.items.len();
        if left == 0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Takes the mark off every stored job (`BENCH_UNMARKED` on a filled namespace).
async fn take_marks_off(client: &Client, ns: &str) -> anyhow::Result<()> {
    let jobs: Api<ProwJob> = Api::namespaced(client.clone(), ns);
    let marked = kube::api::ListParams::default()
        .labels(prow_api::labels::COMPLETED)
        .match_any();
    let names: Vec<String> = jobs
        .list_metadata(&marked)
        .await?
        .items
        .into_iter()
        .map(|j| j.name_any())
        .collect();
    println!("taking the mark off {} jobs", names.len());
    let off = json!({"metadata": {"labels": {prow_api::labels::COMPLETED: null}}});
    let work = futures::stream::iter(names).map(|name| {
        let (jobs, off) = (jobs.clone(), off.clone());
        async move {
            jobs.patch(&name, &PatchParams::default(), &Patch::Merge(&off))
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        }
    });
    kind_tests::bench::store_all(work, IN_FLIGHT, "marks taken off").await
}

/// Deletes the probe jobs and pods of earlier runs on the same stored jobs: left, each run
/// would start with 600 more unfinished jobs (kept whole, unlike finished ones) than the last.
async fn forget_earlier_probes(clients: &[Client], ns: &str) -> anyhow::Result<()> {
    let probes = kube::api::ListParams::default().labels("bench-probe");
    let gone = kube::api::DeleteParams::background();
    Api::<ProwJob>::namespaced(clients[0].clone(), ns)
        .delete_collection(&gone, &probes)
        .await?;
    for client in clients {
        Api::<Pod>::namespaced(client.clone(), ns)
            .delete_collection(&gone, &probes)
            .await?;
    }
    Ok(())
}

/// The release operator for `env`'s namespace, its BuildClusters there, without leader
/// election; waits until it is ready.
fn start_operator(operator: &Path, env: &TestEnv) -> anyhow::Result<Running> {
    let ns = &env.namespace;
    let args = [
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        format!("--build-cluster-namespace={ns}"),
        "--leader-election=false".into(),
    ];
    // BENCH_OPERATOR_ARGS adds flags (comparing settings on the same stored jobs).
    let extra = std::env::var("BENCH_OPERATOR_ARGS").unwrap_or_default();
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(extra.split_whitespace())
        .collect();
    Running::start_binary(operator, &env.kubeconfig, &args)
}

fn job(name: &str, alias: &str) -> ProwJob {
    let labels = json!({"created-by-prow": "true", "prow.k8s.io/type": "periodic"});
    let cluster = if alias == "default" { "" } else { alias };
    let spec =
        json!({"type": "periodic", "job": format!("ci-{}", name.len() % 7), "cluster": cluster});
    serde_json::from_value(decorated_job(name, labels, spec)).expect("job")
}

/// Stores STORED finished jobs, a third per cluster, each with its pod in its cluster.
async fn fill(env: &TestEnv, clients: &[Client], marked: bool) -> anyhow::Result<()> {
    println!("== 1. storing {STORED} finished jobs and their pods over three clusters");
    let ns = env.namespace.clone();
    let jobs: Api<ProwJob> = env.api();
    let started = Instant::now();
    let work = futures::stream::iter(0..STORED)
        .map(|i| {
            let jobs = jobs.clone();
            let pods: Api<Pod> = Api::namespaced(clients[i % 3].clone(), &ns);
            let ns = ns.clone();
            async move {
                let name = format!("done-{i:06}");
                // Marked as the operator marks a job it has finished with.
                let mut stored = job(&name, ALIASES[i % 3]);
                if marked {
                    stored
                        .labels_mut()
                        .insert(prow_api::labels::COMPLETED.into(), "true".into());
                }
                let created = jobs.create(&PostParams::default(), &stored).await?;
                let ago = |minutes: i64| {
                    let at = k8s_openapi::jiff::Timestamp::now()
                        - k8s_openapi::jiff::SignedDuration::from_mins(minutes);
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)
                };
                let status = json!({"status": {"state": "success", "startTime": ago(120),
                    "pendingTime": ago(119), "completionTime": ago(110),
                    "pod_name": name, "build_id": format!("{}", 1_700_000_000_000u64 + i as u64),
                    "description": "Job succeeded.", "url": format!("https://prow.example/view/{name}")}});
                jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await?;
                let mut pod = prow_api::pod::pod_for(&created, "1", &ns)?;
                pod.status = None;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        });
    kind_tests::bench::store_all(work, IN_FLIGHT, "jobs and pods").await?;
    println!(
        "stored {STORED} jobs and their pods in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// The label value of this run's probes: a second run on the same stored jobs counts only its
/// own.
fn run_id() -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{}", secs % 1_000_000)
    })
    .clone()
}

/// Records when a watch of `api` (pods or jobs) first sees each of this run's probes.
fn watch_pods<K>(api: Api<K>) -> (Seen, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        // From the watch cache in one response: a paged list would make the API server read
        // every stored object from etcd first, seconds in which the first probes go unseen.
        let config = watcher::Config {
            page_size: None,
            ..watcher::Config::default()
                .labels(&format!("bench-probe={}", run_id()))
                .any_semantic()
        };
        let mut events = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(object)) = events.next().await {
            record
                .lock()
                .expect("lock")
                .entry(object.name_any())
                .or_insert_with(Instant::now);
        }
    });
    (seen, task)
}

/// PROBES plain pods at RATE_PER_SEC: create -> seen.
async fn plain_pods(env: &TestEnv) -> anyhow::Result<Latencies> {
    let pods: Api<Pod> = env.api();
    let (seen, watch) = watch_pods(pods.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut template = job("baseline", "default");
    template.spec.decoration_config = None;
    template.metadata.uid = Some("baseline".into());
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let mut started = HashMap::new();
    let mut tasks = Vec::new();
    for i in 0..PROBES {
        tick.tick().await;
        let mut pod = prow_api::pod::pod_for(&template, "1", &env.namespace)?;
        let name = format!("pod-{}-{i:04}", run_id());
        pod.metadata.name = Some(name.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("bench-probe".into(), run_id());
        started.insert(name, Instant::now());
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            pods.create(&PostParams::default(), &pod).await.map(drop)
        }));
    }
    for t in tasks {
        t.await??;
    }
    wait_all(&seen, PROBES).await;
    watch.abort();
    let seen = seen.lock().expect("lock").clone();
    Ok(latencies(&started, &seen))
}

/// What the probe jobs measured.
struct Probes {
    /// Create -> pod seen in its cluster, by cluster.
    by_cluster: Vec<Latencies>,
    /// Create -> the job seen by a watch (the API server's part).
    job_seen: Latencies,
    /// Job seen -> pod seen (the operator's part, with the pod's create).
    operator_leg: Latencies,
}

/// PROBES jobs at RATE_PER_SEC, round-robin over the three clusters.
async fn start_jobs(env: &TestEnv, clients: &[Client]) -> anyhow::Result<Probes> {
    let jobs: Api<ProwJob> = env.api();
    let (jobs_seen, jobs_watch) = watch_pods(jobs.clone());
    let watches: Vec<_> = clients
        .iter()
        .map(|c| watch_pods(Api::<Pod>::namespaced(c.clone(), &env.namespace)))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let mut started: [HashMap<String, Instant>; 3] = Default::default();
    let mut tasks = Vec::new();
    for i in 0..PROBES {
        tick.tick().await;
        let name = format!("probe-{}-{i:04}", run_id());
        let mut j = job(&name, ALIASES[i % 3]);
        // Plain pods: a decorated run would upload to its bucket when it ends.
        j.spec.decoration_config = None;
        // The pod carries the job's labels: the probes' watches select on this one.
        j.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("bench-probe".into(), run_id());
        started[i % 3].insert(name, Instant::now());
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            jobs.create(&PostParams::default(), &j).await.map(drop)
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut by_cluster = Vec::new();
    let mut pods_seen = HashMap::new();
    for ((seen, watch), started) in watches.into_iter().zip(&started) {
        wait_all(&seen, started.len()).await;
        watch.abort();
        let seen = seen.lock().expect("lock").clone();
        by_cluster.push(latencies(started, &seen));
        pods_seen.extend(seen);
    }
    jobs_watch.abort();
    let jobs_seen = jobs_seen.lock().expect("lock").clone();
    let all_started: HashMap<String, Instant> = started.into_iter().flatten().collect();
    Ok(Probes {
        by_cluster,
        job_seen: latencies(&all_started, &jobs_seen),
        operator_leg: latencies(&jobs_seen, &pods_seen),
    })
}
