//! Benchmark of the admission webhook (prints figures; asserts nothing). Usage:
//! `bench-webhook KUBECONFIG` with `prow-webhook` built beside it (release);
//! kind-tests/scripts/bench-webhook.sh runs it on a fresh control plane.
//!
//! 1. Admissions per second and latency percentiles with 8 keep-alive TLS connections (wrk),
//!    for /validate/prowjobs and /mutate/prowjobs, without the deep check, and for a bare echo
//!    of the same review over the same TLS stack as the reference.
//! 2. Latency of creating a ProwJob through the API server without the webhook, with it, and
//!    with the deep check.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kind_tests::bench::{print_row, sorted, CpuWindow};
use kind_tests::fixtures::decorated_job;
use kind_tests::operator::eventually;
use kind_tests::process::free_port;
use kind_tests::webhook::{register, start_webhook, Certs};
use kind_tests::TestEnv;
use kube::api::PostParams;
use prow_api::ProwJob;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use warp::{Filter as _, Reply as _};

const CREATES: usize = 300;

fn job(name: &str) -> serde_json::Value {
    let labels = json!({"preset-gcp": "true", "created-by-prow": "true"});
    let spec = json!({"type": "presubmit", "job": "pull-widgets-unit", "context": "unit",
        "rerun_command": "/test unit", "max_concurrency": 10,
        "refs": {"org": "acme", "repo": "widgets", "base_ref": "main", "base_sha": "4f2c1a9e",
                 "pulls": [{"number": 101, "author": "alice", "sha": "9e8d7c6b", "title": "Faster widgets"}]}});
    decorated_job(name, labels, spec)
}

/// The review the API server sends for a `kubectl apply` of a new job: with the applied
/// configuration annotation, server-set metadata and managedFields (about 3 KB, the size of the
/// issue's reference review).
fn review(namespace: &str) -> serde_json::Value {
    let mut object = job("bench");
    object["metadata"]["namespace"] = json!(namespace);
    let applied = serde_json::to_string(&object).expect("json");
    let fields = |value: &serde_json::Value| -> serde_json::Value {
        let keys = value
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>());
        let mut out = serde_json::Map::from_iter([(".".to_string(), json!({}))]);
        for key in keys.unwrap_or_default() {
            out.insert(format!("f:{key}"), json!({}));
        }
        serde_json::Value::Object(out)
    };
    let managed = json!([{
        "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "prow.k8s.io/v1",
        "time": "2026-11-22T07:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:annotations": fields(&json!({"kubectl.kubernetes.io/last-applied-configuration": ""})),
                                    "f:labels": fields(&object["metadata"]["labels"])},
                     "f:spec": fields(&object["spec"])}}]);
    let metadata = &mut object["metadata"];
    metadata["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": applied});
    metadata["uid"] = json!("6f1c8a52-93d4-4a4e-8f0e-2b7d5c9e1a30");
    metadata["creationTimestamp"] = json!("2026-11-22T07:00:00Z");
    metadata["generation"] = json!(1);
    metadata["managedFields"] = managed;
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "0b2b7c4e-5c6e-4bde-a2a0-3f1b6c0d9e11",
                    "kind": {"group": "prow.k8s.io", "version": "v1", "kind": "ProwJob"},
                    "resource": {"group": "prow.k8s.io", "version": "v1", "resource": "prowjobs"},
                    "requestKind": {"group": "prow.k8s.io", "version": "v1", "kind": "ProwJob"},
                    "requestResource": {"group": "prow.k8s.io", "version": "v1", "resource": "prowjobs"},
                    "name": "bench", "namespace": namespace, "operation": "CREATE",
                    "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
                    "object": object, "oldObject": null, "dryRun": false,
                    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                                "fieldManager": "kubectl-client-side-apply"}},
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
    let echo = EchoReference::start(&webhook.certs)?;
    for (label, url) in [
        ("bare echo (reference)", format!("{}/echo", echo.url)),
        (
            "/validate/prowjobs",
            format!("{}/validate/prowjobs", webhook.url),
        ),
        (
            "/mutate/prowjobs",
            format!("{}/mutate/prowjobs", webhook.url),
        ),
    ] {
        let cpu = CpuWindow::start();
        let out = std::process::Command::new("wrk")
            .args(["-t2", "-c8", "-d10s", "--latency", "-s"])
            .arg(dir.join("post.lua"))
            .arg(url)
            .output();
        match out {
            Ok(out) => {
                println!("-- {label} ({})", cpu.report());
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
    drop(echo);
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
    Ok(sorted(took))
}

/// The yardstick, served in this run on the same TLS stack and one worker thread like
/// the webhook: parse the review and send it back, no rules and no patch.
struct EchoReference {
    url: String,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoReference {
    fn start(certs: &Certs) -> anyhow::Result<Self> {
        let cert = prow_webhook::tls::ReloadingCert::load(&certs.cert, &certs.key)?;
        let config = prow_webhook::tls::server_config(cert)?;
        let port = free_port()?;
        let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let stop = CancellationToken::new();
        let filter = warp::post()
            .and(warp::path("echo"))
            .and(warp::body::bytes())
            .map(|body: warp::hyper::body::Bytes| {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(review) => warp::reply::json(&review).into_response(),
                    Err(e) => {
                        warp::reply::with_status(e.to_string(), warp::http::StatusCode::BAD_REQUEST)
                            .into_response()
                    }
                }
            });
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                prow_webhook::tls::serve(
                    listener,
                    config,
                    filter,
                    prow_webhook::tls::ConnectionLimits::default().within_file_limit(),
                    prow_webhook::tls::Shutdown {
                        stop: stopped,
                        ..Default::default()
                    },
                )
                .await
            });
            if let Err(e) = served {
                eprintln!("echo reference: {e:#}");
            }
        });
        Ok(Self {
            url: format!("https://127.0.0.1:{port}"),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoReference {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
