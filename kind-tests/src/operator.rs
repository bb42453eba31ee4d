//! Helpers for tests of the operator: start it for one test's namespace, and wait for jobs.

use std::time::{Duration, Instant};

use kube::Api;
use prow_api::ProwJob;

use crate::process::Running;
use crate::TestEnv;

/// Starts `prow-operator` for this test alone: it reconciles the test namespace, puts pods
/// there, holds its own Lease there, and deletes pods at once (the control plane has no kubelet
/// to finish a graceful deletion).
pub fn start_operator(env: &TestEnv, extra: &[&str]) -> anyhow::Result<Running> {
    let ns = env.namespace.as_str();
    let mut args = vec![
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        format!("--leader-election-namespace={ns}"),
        "--pod-deletion-grace-seconds=0".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start("prow-operator", &env.kubeconfig, &args)
}

/// The job's description (empty when it has no status yet).
pub fn description(job: &ProwJob) -> String {
    job.status
        .as_ref()
        .map(|s| s.description.clone())
        .unwrap_or_default()
}

/// Polls the job until `done` holds for it, or fails after `within` with the last state seen.
pub async fn wait_for_job(
    api: &Api<ProwJob>,
    name: &str,
    within: Duration,
    done: impl Fn(&ProwJob) -> bool,
) -> anyhow::Result<ProwJob> {
    let deadline = Instant::now() + within;
    loop {
        let job = api.get(name).await?;
        if done(&job) {
            return Ok(job);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "job {name} did not get there in {within:?}; last status: {:?}",
                job.status
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job `name` is pending, ends its pod with the exit code `code` through
/// `driver`, and returns the job once it is complete.
pub async fn finish_job(
    driver: &crate::PodDriver,
    jobs: &Api<ProwJob>,
    name: &str,
    code: i32,
    within: Duration,
) -> anyhow::Result<ProwJob> {
    wait_for_job(jobs, name, within, |j| {
        j.state() == prow_api::ProwJobState::Pending
    })
    .await?;
    driver.finish(name, |_| code).await?;
    wait_for_job(jobs, name, within, ProwJob::is_complete).await
}

/// Polls until `check` returns `Some`, or fails after `within` saying what it waited for.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, check: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
