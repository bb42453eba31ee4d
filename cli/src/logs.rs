//! `prowctl logs`: a run's log from its pod while it runs (following it with `-f`), and from
//! its bucket once it ended or its pod is gone, saying on stderr which it read.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::Api;
use prow_api::ProwJob;
use prow_runtime::storage::RunFolder;

use crate::cluster::Target;

/// Where a printed log came from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The pod's test container.
    Pod(String),
    /// The run's `build-log.txt` in its bucket.
    Storage(String),
}

/// The test container of a decorated or plain job's pod: `test`, else the first that is not
/// the sidecar.
fn test_container(pod: &Pod) -> Option<String> {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| c.name.as_str())
        .collect();
    names
        .iter()
        .find(|n| **n == prow_api::pod::TEST_CONTAINER)
        .or_else(|| names.iter().find(|n| **n != "sidecar"))
        .map(|n| n.to_string())
}

/// Whether `container` of `pod` has started (running or ended), so it has a log.
fn started(pod: &Pod, container: &str) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == container)
        .any(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
}

/// Prints the log of `run` to `out`.
pub async fn logs(
    target: &Target,
    run: &str,
    pod_namespace: Option<&str>,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Source> {
    let (client, namespace) = target.connect().await?;
    let job = Api::<ProwJob>::namespaced(client.clone(), &namespace)
        .get_opt(run)
        .await?
        .with_context(|| format!("no ProwJob {namespace}/{run}"))?;
    let pod_ns = pod_namespace
        .map(str::to_string)
        .or_else(|| (!job.spec.namespace.is_empty()).then(|| job.spec.namespace.clone()))
        .unwrap_or_else(|| namespace.clone());
    let folder = RunFolder::of_job(&client, &job, &pod_ns).await;
    // A run that ended reads from its bucket when the bucket has its log.
    if job.is_complete() {
        if let Ok(Some(folder)) = folder.as_ref() {
            if let Some(log) = folder.get("build-log.txt").await? {
                out.write_all(&log)?;
                return Ok(Source::Storage(format!("{}/build-log.txt", folder.url())));
            }
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod_ns);
    let pod_name = job
        .status
        .as_ref()
        .map(|s| s.pod_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| run.to_string());
    if let Some(source) = from_pod(&pods, &pod_name, follow, out).await? {
        return Ok(source);
    }
    let folder = folder?.with_context(|| {
        format!(
            "the pod {pod_ns}/{pod_name} is gone and the job names no bucket \
             (decoration_config.gcs_configuration.bucket): its log was not kept"
        )
    })?;
    let log = folder
        .get("build-log.txt")
        .await?
        .with_context(|| format!("no build-log.txt in {} yet", folder.url()))?;
    out.write_all(&log)?;
    Ok(Source::Storage(format!("{}/build-log.txt", folder.url())))
}

/// The pod's log, when the pod is there: all of it, or followed until the container ends.
async fn from_pod(
    pods: &Api<Pod>,
    name: &str,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Option<Source>> {
    let Some(mut pod) = pods.get_opt(name).await? else {
        return Ok(None);
    };
    let Some(container) = test_container(&pod) else {
        return Ok(None);
    };
    // Following a pod still in its init containers: wait for the test to start.
    while follow && !started(&pod, &container) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match pods.get_opt(name).await? {
            Some(p) => pod = p,
            None => return Ok(None),
        }
    }
    if !started(&pod, &container) {
        return Ok(None);
    }
    let source = Source::Pod(format!(
        "{}/{name} container {container}",
        pod.metadata.namespace.clone().unwrap_or_default()
    ));
    let params = LogParams {
        container: Some(container),
        follow,
        ..Default::default()
    };
    if follow {
        let mut lines = pods.log_stream(name, &params).await?.lines();
        while let Some(line) = lines.try_next().await? {
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    } else {
        match pods.logs(name, &params).await {
            Ok(text) => out.write_all(text.as_bytes())?,
            // Gone between the two reads: the bucket has it.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(source))
}
