//! Stands in for the kubelet on the local control plane, for the demo: every pod labelled
//! `created-by-prow` is scheduled, run and finished, and deletions are completed.
//!
//! A container command or args containing `exit N` ends with exit code N (else 0), and
//! `sleep N` runs that many seconds (else 3, at most 60).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::PodDriver;
use kube::api::DeleteParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    prow_runtime::telemetry::init(prow_runtime::telemetry::LogFormat::Text);
    prow_runtime::process::install_crypto_provider();
    let kubeconfig = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let client = prow_runtime::client::client(kubeconfig.as_deref())
        .await
        .context("connecting")?;
    let pods: Api<Pod> = Api::all(client.clone());
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    tracing::info!("fake kubelet running pods labelled created-by-prow=true");
    let mut events = watcher(
        pods,
        watcher::Config::default().labels("created-by-prow=true"),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(e) => {
                tracing::warn!(error = %e, "watch");
                continue;
            }
        };
        let key = format!(
            "{}/{}/{}",
            pod.namespace().unwrap_or_default(),
            pod.name_any(),
            pod.uid().unwrap_or_default()
        );
        let namespace = pod.namespace().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let _ = api
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if matches!(phase.as_str(), "Succeeded" | "Failed")
            || !busy.lock().expect("lock").insert(key.clone())
        {
            continue;
        }
        let driver = PodDriver::new(client.clone(), &namespace);
        let busy = busy.clone();
        tokio::spawn(async move {
            if let Err(e) = run(&driver, &pod).await {
                tracing::warn!(pod = %pod.name_any(), error = %e, "driving pod");
            }
            busy.lock().expect("lock").remove(&key);
        });
    }
    Ok(())
}

async fn run(driver: &PodDriver, pod: &Pod) -> anyhow::Result<()> {
    let name = pod.name_any();
    let words: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .flat_map(|w| w.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let after = |word: &str| {
        words.windows(2).find(|w| w[0] == word).and_then(|w| {
            w[1].trim_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        })
    };
    let exit_code = after("exit").unwrap_or(0) as i32;
    let seconds = after("sleep").unwrap_or(3).min(60);

    tokio::time::sleep(Duration::from_millis(500)).await;
    driver.schedule(&name).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    driver.run(&name).await?;
    tracing::info!(pod = %name, seconds, exit_code, "running");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    driver.finish(&name, |_| exit_code).await?;
    tracing::info!(pod = %name, exit_code, "finished");
    Ok(())
}
