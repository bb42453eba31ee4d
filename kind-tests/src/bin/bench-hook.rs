//! Benchmark of prow-hook (prints figures; asserts nothing). Usage: `bench-hook KUBECONFIG`
//! with a release `prow-hook` beside it; kind-tests/scripts/bench-hook.sh runs it on a fresh
//! control plane with GitHub's example payload (PROW_TEST_WEBHOOK_EXAMPLES).
//!
//! 1. Delivery -> ProwJobs created: 1,000 signed `pull_request` `opened` events (as many pull
//!    requests) sent at 50/s to a repository with 20 always_run presubmits (20 runs an event),
//!    the time from sending a delivery until its first and its twentieth run are seen in a
//!    watch; beside it, in the same run, the API server's own ProwJob create (the floor).
//! 2. Saturation: 300 events sent by 16 senders at once; events handled per second (all 20
//!    runs of each created).
//! 3. RSS of a hook started with 10,000 JobDefinitions (500 repositories of 20).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kind_tests::bench::{print_row, rss_mb, sorted, CpuWindow};
use kind_tests::hook::{Examples, Hook, Pr};
use kind_tests::operator::eventually;
use kind_tests::TestEnv;
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prow_api::jobdefinition::JobDefinition;
use prow_api::ProwJob;
use serde_json::json;

const PRESUBMITS: usize = 20;
const EVENTS: usize = 1000;
const RATE: u64 = 50;
const SATURATION_EVENTS: usize = 300;
const SENDERS: usize = 16;
const DEFINITIONS: usize = 10_000;

fn definition(name: &str, repo: &str) -> JobDefinition {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
        "metadata": {"name": name},
        "spec": {"type": "presubmit", "repo": repo, "always_run": true,
                 "spec": {"containers": [{"image": "busybox", "command": ["true"]}]}},
    }))
    .expect("definition")
}

async fn define(env: &TestEnv, repos: usize, per_repo: usize) -> anyhow::Result<()> {
    let api: Api<JobDefinition> = env.api();
    let names: Vec<(String, String)> = (0..repos)
        .flat_map(|r| {
            (0..per_repo).map(move |j| (format!("r{r}-job-{j}"), format!("acme/repo-{r}")))
        })
        .collect();
    futures::stream::iter(names)
        .map(|(name, repo)| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &definition(&name, &repo))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// When the first and the last run of each delivery (by its `event-GUID`) were seen.
type Seen = Arc<Mutex<HashMap<String, (Instant, Instant, usize)>>>;

fn watch_runs(env: &TestEnv) -> Seen {
    let seen: Seen = Arc::default();
    let api: Api<ProwJob> = env.api();
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(job)) = stream.next().await {
            let Some(guid) = job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("event-GUID"))
                .cloned()
            else {
                continue;
            };
            let now = Instant::now();
            let mut seen = record.lock().unwrap();
            let entry = seen.entry(guid).or_insert((now, now, 0));
            entry.1 = now;
            entry.2 += 1;
        }
    });
    seen
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let examples = Examples::load()?
        .ok_or_else(|| anyhow::anyhow!("PROW_TEST_WEBHOOK_EXAMPLES is not set"))?;
    let env = TestEnv::new("bench-hook").await?;
    define(&env, 1, PRESUBMITS).await?;
    let hook = Hook::start(&env, "", &["--log-format=json"]).await?;
    hook.github.with(|s| {
        s.members
            .entry("acme".into())
            .or_default()
            .insert("alice".into());
    });
    let change = |number: i64| Pr {
        org: "acme".into(),
        repo: "repo-0".into(),
        number,
        author: "alice".into(),
        sha: format!("{number:040x}"),
        base: "main".into(),
        labels: Vec::new(),
        draft: false,
    };
    change(1).publish(
        &hook.github,
        &examples,
        &["main.go"],
        "fedcba9876543210fedcba9876543210fedcba98",
    );
    let payloads: Vec<serde_json::Value> = (1..=(EVENTS + SATURATION_EVENTS) as i64)
        .map(|n| change(n).event(&examples, "opened", "alice"))
        .collect();
    let seen = watch_runs(&env);

    // 1. At 50/s, with the API server's own create measured between them.
    let cpu = CpuWindow::start();
    let jobs: Api<ProwJob> = env.api();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let mut floor = Vec::new();
    let start = Instant::now();
    for (i, payload) in payloads.iter().take(EVENTS).enumerate() {
        let due = start + Duration::from_millis(i as u64 * 1000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let guid = kind_tests::hook::guid();
        let at = Instant::now();
        let (status, body) = hook.deliver_as("pull_request", &guid, payload).await?;
        anyhow::ensure!(status == 200, "delivery answered {status}: {body}");
        sent.push((guid, at));
        if i % 10 == 0 {
            let mut job = prow_api::jobdefinition::prowjob_for(
                &definition("floor", "acme/floor"),
                &prow_api::jobdefinition::RunRequest {
                    name: format!("floor-{i}"),
                    trigger: "bench".into(),
                    base_ref: "main".into(),
                    pulls: vec![prow_api::Pull {
                        number: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )?;
            job.metadata.namespace = Some(env.namespace.clone());
            let t = Instant::now();
            jobs.create(&PostParams::default(), &job).await?;
            floor.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let all = eventually(
        "every run of every delivery",
        Duration::from_secs(300),
        || async {
            let seen = seen.lock().unwrap();
            Ok(sent
                .iter()
                .all(|(g, _)| seen.get(g).is_some_and(|e| e.2 >= PRESUBMITS))
                .then(|| seen.clone()))
        },
    )
    .await?;
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (guid, at) in &sent {
        let (f, l, _) = all[guid];
        first.push(f.duration_since(*at).as_secs_f64() * 1000.0);
        last.push(l.duration_since(*at).as_secs_f64() * 1000.0);
    }
    println!(
        "== {EVENTS} pull_request deliveries at {RATE}/s, {PRESUBMITS} presubmits each ({} runs)",
        EVENTS * PRESUBMITS
    );
    print_row("delivery -> first run seen", &sorted(first));
    print_row("delivery -> all 20 runs seen", &sorted(last));
    print_row("API server ProwJob create (the floor)", &sorted(floor));
    println!("CPU over the run: {}; {}", cpu.report(), cpu.top_programs());
    println!("hook RSS after: {:.1} MB", rss_mb(hook.process.pid()));

    // 2. Saturation.
    let before = seen.lock().unwrap().len();
    let cpu = CpuWindow::start();
    let start = Instant::now();
    let guids: Vec<String> = (0..SATURATION_EVENTS)
        .map(|_| kind_tests::hook::guid())
        .collect();
    futures::stream::iter(guids.clone().into_iter().zip(&payloads[EVENTS..]))
        .map(|(guid, payload)| {
            let hook = &hook;
            async move { hook.deliver_as("pull_request", &guid, payload).await }
        })
        .buffer_unordered(SENDERS)
        .collect::<Vec<_>>()
        .await;
    let accepted = start.elapsed();
    eventually("the saturation runs", Duration::from_secs(600), || async {
        let seen = seen.lock().unwrap();
        Ok(guids
            .iter()
            .all(|g| seen.get(g).is_some_and(|e| e.2 >= PRESUBMITS))
            .then_some(()))
    })
    .await?;
    let handled = start.elapsed();
    println!(
        "== saturation: {SATURATION_EVENTS} deliveries from {SENDERS} senders: accepted in {:.2} s, handled (all {} runs created) in {:.2} s: {:.0} events/s, {:.0} runs/s ({} deliveries seen before)",
        accepted.as_secs_f64(),
        SATURATION_EVENTS * PRESUBMITS,
        handled.as_secs_f64(),
        SATURATION_EVENTS as f64 / handled.as_secs_f64(),
        (SATURATION_EVENTS * PRESUBMITS) as f64 / handled.as_secs_f64(),
        before,
    );
    println!("CPU over the run: {}; {}", cpu.report(), cpu.top_programs());
    drop(hook);

    // 3. 10,000 definitions.
    let many = TestEnv::new("bench-hook-defs").await?;
    let t = Instant::now();
    define(&many, DEFINITIONS / PRESUBMITS, PRESUBMITS).await?;
    println!(
        "== {DEFINITIONS} JobDefinitions created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let big = Hook::start(&many, "", &["--log-format=json"]).await?;
    println!(
        "hook with {DEFINITIONS} JobDefinitions: ready in {:.2} s, RSS {:.1} MB",
        t.elapsed().as_secs_f64(),
        rss_mb(big.process.pid())
    );
    Ok(())
}
