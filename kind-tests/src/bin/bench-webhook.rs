//! Benchmark of the admission webhook (prints figures; asserts nothing). Usage:
//! `bench-webhook KUBECONFIG` with `prow-webhook` built beside it (release);
//! kind-tests/scripts/bench-webhook.sh runs it on a fresh control plane.
//!
//! 1. Admissions per second and latency percentiles with 8 keep-alive TLS connections (wrk),
//!    for /validate/prowjobs and /mutate/prowjobs, without the deep check.
//! 2. Latency of creating a ProwJob through the API server without the webhook, with it, and
//!    with the deep check.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kind_tests::fixtures::decorated_job;
use kind_tests::operator::eventually;
use kind_tests::webhook::{register, start_webhook};
use kind_tests::TestEnv;
use kube::api::PostParams;
use prow_api::ProwJob;
use serde_json::json;

const CREATES: usize = 300;

fn job(name: &str) -> serde_json::Value {
    let labels = json!({"preset-gcp": "true", "created-by-prow": "true"});
    let spec = json!({"type": "presubmit", "job": "pull-widgets-unit", "context": "unit",
        "rerun_command": "/test unit", "max_concurrency": 10,
        "refs": {"org": "acme", "repo": "widgets", "base_ref": "main", "base_sha": "4f2c1a9e",
                 "pulls": [{"number": 101, "author": "alice", "sha": "9e8d7c6b", "title": "Faster widgets"}]}});
    decorated_job(name, labels, spec)
}

fn review(namespace: &str) -> serde_json::Value {
    let mut object = job("bench");
    object["metadata"]["namespace"] = json!(namespace);
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "0b2b7c4e-5c6e-4bde-a2a0-3f1b6c0d9e11",
                    "kind": {"group": "prow.k8s.io", "version": "v1", "kind": "ProwJob"},
                    "resource": {"group": "prow.k8s.io", "version": "v1", "resource": "prowjobs"},
                    "name": "bench", "namespace": namespace, "operation": "CREATE",
                    "userInfo": {"username": "system:serviceaccount:prow:hook"},
                    "object": object, "oldObject": null, "dryRun": false},
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kubeconfig = std::env::args()
        .nth(1)
        .context("usage: bench-webhook KUBECONFIG")?;
    std::env::set_var(kind_tests::env::KUBECONFIG_VAR, &kubeconfig);

    println!("== 1. admissions over TLS, 8 keep-alive connections, no deep check");
    let env = TestEnv::new("bench-webhook").await?;
    let preset: prow_api::Preset = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": "gcp"},
        "spec": {"selector": {"preset-gcp": "true"}, "env": [{"name": "GCP_KEY", "value": "/etc/gcp/key.json"}],
                 "volumes": [{"name": "gcp", "secret": {"secretName": "gcp"}}],
                 "volumeMounts": [{"name": "gcp", "mountPath": "/etc/gcp"}]},
    }))?;
    env.api::<prow_api::Preset>()
        .create(&PostParams::default(), &preset)
        .await?;
    let webhook = start_webhook(&env, &["--deep-check=false"])?;
    let body = serde_json::to_vec(&review(&env.namespace))?;
    println!("AdmissionReview body: {} bytes", body.len());
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("wrk"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("body.json"), &body)?;
    let script = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
        dir.join("body.json").display()
    );
    std::fs::write(dir.join("post.lua"), script)?;
    for path in ["/validate/prowjobs", "/mutate/prowjobs"] {
        let out = std::process::Command::new("wrk")
            .args(["-t2", "-c8", "-d10s", "--latency", "-s"])
            .arg(dir.join("post.lua"))
            .arg(format!("{}{path}", webhook.url))
            .output();
        match out {
            Ok(out) => {
                println!("-- {path}");
                let text = String::from_utf8_lossy(&out.stdout);
                for line in text.lines().filter(|l| {
                    l.contains("Requests/sec")
                        || l.contains("50%")
                        || l.contains("99%")
                        || l.contains("Latency ")
                        || l.contains("Non-2xx")
                }) {
                    println!("{}", line.trim());
                }
            }
            Err(e) => {
                println!("wrk not available ({e}): install it (apt-get install wrk) for this part")
            }
        }
    }
    drop(webhook);

    println!("== 2. ProwJob create through the API server ({CREATES} sequential creates)");
    let plain = TestEnv::new("bench-nohook").await?;
    print_row("no webhook", &creates(&plain).await?);
    for (label, extra) in [
        ("webhook, no deep check", "--deep-check=false"),
        ("webhook with deep check", "--deep-check=true"),
    ] {
        let env = TestEnv::new("bench-hook").await?;
        let webhook = start_webhook(&env, &[extra])?;
        register(&env, &webhook).await?;
        // Wait until the API server calls the webhook (a bad job is refused).
        let jobs = env.api::<ProwJob>();
        eventually(
            "the webhook to be active",
            Duration::from_secs(20),
            || async {
                let mut bad: ProwJob = serde_json::from_value(job("probe"))?;
                bad.spec.job = "bad name".into();
                Ok(jobs
                    .create(&PostParams::default(), &bad)
                    .await
                    .is_err()
                    .then_some(()))
            },
        )
        .await?;
        print_row(label, &creates(&env).await?);
    }
    Ok(())
}

async fn creates(env: &TestEnv) -> anyhow::Result<Vec<f64>> {
    let jobs = env.api::<ProwJob>();
    let mut took = Vec::with_capacity(CREATES);
    for i in 0..CREATES {
        let j: ProwJob = serde_json::from_value(job(&format!("job-{i:04}")))?;
        let t = Instant::now();
        jobs.create(&PostParams::default(), &j).await?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok(took)
}

fn print_row(label: &str, sorted: &[f64]) {
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{label:<28} p50 {:6.2} ms  p99 {:6.2} ms",
        at(0.5),
        at(0.99)
    );
}
