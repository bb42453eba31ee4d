//! Benchmark of prow-dashboard (prints figures; asserts nothing). Usage: `bench-dashboard
//! KUBECONFIG` with a release `prow-dashboard` beside it and the S3 server's `PROW_TEST_S3_*`
//! set; kind-tests/scripts/bench-dashboard.sh runs it on a fresh control plane.
//!
//! 1. 100,000 finished ProwJobs stored (1,000 job names, 100 repositories, 500 authors): the
//!    dashboard's time to ready (its first list) and its RSS.
//! 2. The jobs page, p50/p95/p99 over 300 requests each: no filter, a state, a job name, a
//!    pattern, an author with a repository, a deep page; the server's own time (its
//!    `request_seconds` histogram) beside the client's.
//! 3. A run whose stored log is 200 MB: time to the first byte of its page and of `?raw`, its
//!    last lines (read to the end) and a search over the whole log.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kind_tests::bench::{print_row, rss_mb, sorted, CpuWindow};
use kind_tests::process::Running;
use kind_tests::services::Services;
use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use prow_api::ProwJob;
use serde_json::json;

const JOBS: usize = 100_000;
const IN_FLIGHT: usize = 64;
const REQUESTS: usize = 300;

fn job(i: usize) -> ProwJob {
    let presubmit = !i.is_multiple_of(3);
    let mut spec = json!({"type": if presubmit { "presubmit" } else { "periodic" },
                          "job": format!("job-{}", i % 1000), "agent": "kubernetes",
                          "pod_spec": {"containers": [{"name": "test", "image": "busybox",
                                                       "command": ["sh", "-c", "make test"]}]}});
    if presubmit {
        spec["refs"] = json!({"org": "org", "repo": format!("repo-{}", i % 100), "base_ref": "main",
                              "base_sha": "0123456789abcdef0123456789abcdef01234567",
                              "pulls": [{"number": i % 5000 + 1, "author": format!("user-{}", i % 500),
                                         "sha": "89abcdef0123456789abcdef0123456789abcdef"}]});
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": format!("run-{i:06}")},
        "spec": spec,
    }))
    .expect("job")
}

fn status(i: usize) -> serde_json::Value {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs((JOBS - i) as i64 * 6);
    let end = start + jiff::SignedDuration::from_secs(60 + (i % 600) as i64);
    let state = match i % 10 {
        0 => "failure",
        1 => "error",
        2 => "aborted",
        _ => "success",
    };
    json!({"status": {"state": state, "startTime": start.to_string(), "completionTime": end.to_string(),
                      "pendingTime": start.to_string(), "description": format!("Job {state}"),
                      "pod_name": format!("run-{i:06}"), "build_id": format!("{}", 1_000_000 + i),
                      "url": format!("http://172.17.0.1/view/run-{i:06}")}})
}

async fn store_jobs(env: &TestEnv) -> anyhow::Result<()> {
    let jobs = env.api::<ProwJob>();
    let started = Instant::now();
    let work = futures::stream::iter(0..JOBS).map(|i| {
        let jobs = jobs.clone();
        async move {
            let j = job(i);
            let name = j.metadata.name.clone().unwrap_or_default();
            for attempt in 0.. {
                match jobs.create(&PostParams::default(), &j).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(e)) if e.code == 409 => break,
                    Err(e) if attempt < 5 => {
                        tracing::debug!(error = %e, "create again");
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(e) => return Err(anyhow::Error::new(e)),
                }
            }
            jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(status(i)))
                .await?;
            anyhow::Ok(())
        }
    });
    kind_tests::bench::store_all(work, IN_FLIGHT, "jobs").await?;
    println!(
        "stored {JOBS} finished ProwJobs in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Milliseconds to the response's headers (the first byte) and to its whole body.
async fn timed_get(http: &reqwest::Client, url: &str) -> anyhow::Result<(f64, f64, usize)> {
    let started = Instant::now();
    let response = http.get(url).send().await?;
    let first = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut size = 0;
    let mut first_chunk = None;
    while let Some(chunk) = body.next().await {
        first_chunk.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
        size += chunk?.len();
    }
    let _ = first;
    Ok((
        first_chunk.unwrap_or(first),
        started.elapsed().as_secs_f64() * 1000.0,
        size,
    ))
}

/// The server's mean time per request of `page` from its metrics.
fn server_mean_ms(metrics: &str, page: &str) -> f64 {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("page=\"{page}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        value("prow_dashboard_request_seconds_sum"),
        value("prow_dashboard_request_seconds_count"),
    );
    if count == 0.0 {
        f64::NAN
    } else {
        sum / count * 1000.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kubeconfig = std::env::args()
        .nth(1)
        .expect("usage: bench-dashboard KUBECONFIG");
    std::env::set_var("PROW_TEST_KUBECONFIG", &kubeconfig);
    let services =
        Services::from_env()?.ok_or_else(|| anyhow::anyhow!("PROW_TEST_S3_* not set"))?;
    let env = TestEnv::new("bench-dash").await?;
    let cpu = CpuWindow::start();
    store_jobs(&env).await?;
    println!("  while storing: {}; {}", cpu.report(), cpu.top_programs());

    // A run with a 200 MB stored log.
    let log_job = format!("big-log-{}", env.namespace);
    let mut log = Vec::with_capacity(201 << 20);
    let mut n = 0u64;
    while log.len() < 200 << 20 {
        n += 1;
        log.extend_from_slice(format!("{n:09} \x1b[32mok\x1b[0m a line of a long build log, padded to look real ........\n").as_bytes());
    }
    log.extend_from_slice(b"needle: the one failure\n");
    let store = services.store()?;
    store
        .put(&format!("logs/{log_job}/1/build-log.txt"), log)
        .await?;
    let big: ProwJob = serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob", "metadata": {"name": "big-log"},
        "spec": {"type": "periodic", "job": log_job,
                 "decoration_config": {"gcs_configuration": {"bucket": format!("s3://{}", services.bucket),
                                                             "path_strategy": "explicit"}}}}))?;
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &big).await?;
    jobs.patch_status(
        "big-log",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
        "state": "success", "startTime": jiff::Timestamp::now().to_string(),
        "completionTime": jiff::Timestamp::now().to_string(), "build_id": "1"}})),
    )
    .await?;

    let binary = kind_tests::process::binary("prow-dashboard")?;
    let creds_file = std::env::temp_dir().join(format!("bench-dash-{}.json", env.namespace));
    std::fs::write(&creds_file, services.service_account_json())?;
    let args = [
        format!("--namespace={}", env.namespace),
        format!("--s3-credentials-file={}", creds_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let dashboard = tokio::task::block_in_place(|| {
        Running::start_binary(&binary, std::path::Path::new(&kubeconfig), &args)
    })?;
    let ready_in = started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let base = format!("http://{}", dashboard.health);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let kept = metrics
        .lines()
        .find(|l| l.starts_with("prow_dashboard_jobs "))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
        .to_owned();
    println!(
        "ready in {ready_in:.2} s keeping {kept} jobs (its metric); RSS {:.0} MB",
        rss_mb(dashboard.pid())
    );
    let pages = [
        ("/", "jobs page, no filter"),
        ("/?state=failure", "state=failure"),
        ("/?job=job-17", "job=job-17 (a part of names)"),
        ("/?job=job-1*7", "job=job-1*7 (a pattern)"),
        ("/?author=user-42&repo=org/repo-42", "author and repo"),
        ("/?type=periodic&page=600", "type=periodic, page 600"),
        ("/?pull=4242", "pull=4242"),
    ];
    let cpu = CpuWindow::start();
    for (path, label) in pages {
        let mut samples = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            let (_, whole, size) = timed_get(&http, &format!("{base}{path}")).await?;
            samples.push(whole);
            bytes = size;
        }
        print_row(&format!("{label} ({} KB)", bytes / 1024), &sorted(samples));
    }
    println!("  while paging: {}", cpu.report());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!(
        "server time per jobs page (its histogram's mean over all of them): {:.2} ms",
        server_mean_ms(&metrics, "jobs")
    );
    println!("RSS after paging: {:.0} MB", rss_mb(dashboard.pid()));

    let run = format!("{base}/jobs/{}/big-log", env.namespace);
    let mut page_first = Vec::new();
    let mut page_whole = Vec::new();
    let mut raw_first = Vec::new();
    for _ in 0..20 {
        let (first, whole, _) = timed_get(&http, &run).await?;
        page_first.push(first);
        page_whole.push(whole);
        // The plain text's first byte: read it, then drop the rest.
        let started = Instant::now();
        let response = http.get(format!("{run}?raw")).send().await?;
        let mut body = response.bytes_stream();
        body.next().await;
        raw_first.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    print_row(
        "200 MB stored log: run page first byte",
        &sorted(page_first),
    );
    print_row("200 MB stored log: run page whole", &sorted(page_whole));
    print_row("200 MB stored log: ?raw first byte", &sorted(raw_first));
    let mut tails = Vec::new();
    for _ in 0..3 {
        let (_, whole, _) = timed_get(&http, &format!("{run}/log/tail")).await?;
        tails.push(whole);
    }
    print_row("200 MB stored log: its last 2,000 lines", &sorted(tails));
    let mut searches = Vec::new();
    for _ in 0..3 {
        let (_, whole, _) = timed_get(&http, &format!("{run}?q=needle")).await?;
        searches.push(whole);
    }
    print_row(
        "200 MB stored log: search for its last line",
        &sorted(searches),
    );
    println!(
        "RSS after the 200 MB log: {:.0} MB",
        rss_mb(dashboard.pid())
    );
    let _ = std::fs::remove_file(creds_file);
    Ok(())
}
