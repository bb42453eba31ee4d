//! Benchmark of decoration's overhead on the real node: for 50 decorated jobs (clone of a small
//! repository, the three init containers, the wrapped test, the streaming sidecar) and 50 of
//! the same job undecorated, one at a time, the time from the pod's creation (seen by polling)
//! to the test's first line of output (the container runtime's timestamp of that line). Prints
//! p50 and p99 of both and their difference; asserts nothing.
//!
//! Needs the node (`PROW_TEST_NODE_KUBECONFIG`), the servers (`PROW_TEST_S3_*`,
//! `PROW_TEST_GIT_*`) and the images; `kind-tests/scripts/bench-decoration.sh` sets it all up.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kind_tests::operator::{start_operator, wait_for_job};
use kind_tests::services::Services;
use kind_tests::TestEnv;
use kube::api::{LogParams, PostParams};
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

const RUNS: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = TestEnv::on_node("bench-deco")
        .await?
        .ok_or_else(|| anyhow::anyhow!("PROW_TEST_NODE_KUBECONFIG is not set"))?;
    let services =
        Services::from_env()?.ok_or_else(|| anyhow::anyhow!("PROW_TEST_S3_ENDPOINT is not set"))?;
    services.credentials_secret(&env, "s3-credentials").await?;
    let repo = services.repo(
        &env.namespace,
        "printf 'echo first line\\n' > test.sh && git add . && git commit -qm base",
    )?;
    let _operator = start_operator(&env, &[])?;
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    let mut decorated = Vec::new();
    let mut plain = Vec::new();
    for i in 0..RUNS * 2 {
        let with = i % 2 == 0;
        let name = format!("{}-{i}", if with { "deco" } else { "plain" });
        let mut spec = json!({
            "type": "periodic", "agent": "kubernetes", "job": format!("bench-{name}"),
            "pod_spec": {"containers": [{"image": "prow-operator.local/toolbox:v1",
                                          "imagePullPolicy": "Never",
                                          "command": ["sh", "-c", "echo first line"]}]},
        });
        if with {
            spec["extra_refs"] = json!([{"org": "acme", "repo": "small", "base_ref": "main",
                                         "clone_uri": repo.url, "workdir": true}]);
            spec["decoration_config"] = json!({
                "timeout": "5m",
                "gcs_configuration": {"bucket": format!("s3://{}", services.bucket),
                                      "path_strategy": "explicit"},
                "s3_credentials_secret": "s3-credentials"});
            spec["pod_spec"]["containers"][0]["command"] = json!(["sh", "./test.sh"]);
        }
        let job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name}, "spec": spec}))?;
        jobs.create(&PostParams::default(), &job).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let created = loop {
            if pods.get_opt(&name).await?.is_some() {
                break Timestamp::now();
            }
            anyhow::ensure!(Instant::now() < deadline, "no pod for {name}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let params = LogParams {
            container: Some("test".into()),
            timestamps: true,
            ..Default::default()
        };
        // The next job starts once this one printed: the runs do not overlap where it counts.
        let first = loop {
            if let Ok(log) = pods.logs(&name, &params).await {
                let line = log.lines().find(|l| l.contains("first line"));
                if let Some(stamp) = line.and_then(|l| l.split_whitespace().next()) {
                    break stamp.to_string();
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name}: no first line within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let printed: Timestamp = first.parse()?;
        let ms = printed.duration_since(created).as_secs_f64() * 1000.0;
        if with { &mut decorated } else { &mut plain }.push(ms);
        eprintln!("{name}: first line {ms:.0} ms after the pod's creation");
    }
    // Every run must have passed, or the figures measure something else.
    for i in 0..RUNS * 2 {
        let name = format!("{}-{i}", if i % 2 == 0 { "deco" } else { "plain" });
        let done =
            wait_for_job(&jobs, &name, Duration::from_secs(120), ProwJob::is_complete).await?;
        anyhow::ensure!(
            done.state() == ProwJobState::Success,
            "{name}: {:?}",
            done.status
        );
    }
    decorated.sort_by(f64::total_cmp);
    plain.sort_by(f64::total_cmp);
    let (d50, d99, p50, p99) = (
        percentile(&decorated, 0.5),
        percentile(&decorated, 0.99),
        percentile(&plain, 0.5),
        percentile(&plain, 0.99),
    );
    println!("pod creation -> the test's first line, {RUNS} jobs each, one at a time:");
    println!("  undecorated:                    p50 {p50:6.0} ms   p99 {p99:6.0} ms");
    println!("  decorated (clone, S3, sidecar): p50 {d50:6.0} ms   p99 {d99:6.0} ms");
    println!(
        "  decoration adds:                p50 {:6.0} ms   p99 {:6.0} ms",
        d50 - p50,
        d99 - p99
    );
    Ok(())
}
