//! A decorated run's bucket as the operator sees it. Before the pod is created, the Secrets
//! its pod utilities would mount must exist: a pod mounting a missing Secret waits in
//! ContainerCreating until its pending timeout, so the job ends `error` at once instead, with
//! the field and Secret named. When the run ends, the operator adds `prowjob.json` (the job as
//! it ended) and `podinfo.json` (its pod) beside the utilities' files, as upstream's crier does.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use prow_api::decorate::options::Decoration;
use prow_api::pod::PodError;
use prow_api::{ProwJob, ProwJobStatus};
use prow_runtime::storage::RunFolder;

use crate::buildclusters::Member;
use crate::error::{Error, Result};

/// Longest the end-of-run uploads may take.
const UPLOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Checks that the credentials Secrets a decorated job names exist in `pod_ns`.
pub async fn check_secrets(job: &ProwJob, pod_ns: &str, build: &Client) -> Result<()> {
    let Some(dc) = job.spec.decoration_config.as_ref() else {
        return Ok(());
    };
    let d = Decoration::of(dc).map_err(PodError::from)?;
    let secrets: Api<Secret> = Api::namespaced(build.clone(), pod_ns);
    let named = [
        ("s3_credentials_secret", d.s3_credentials_secret),
        ("gcs_credentials_secret", d.gcs_credentials_secret),
    ];
    for (field, secret) in named {
        if secret.is_empty() {
            continue;
        }
        if secrets.get_metadata_opt(&secret).await?.is_none() {
            return Err(Error::Pod(PodError::MissingSecret {
                field: field.into(),
                namespace: pod_ns.into(),
                secret,
            }));
        }
    }
    Ok(())
}

/// Writes `prowjob.json` (the job with its final `status`) and `podinfo.json` to the run's
/// folder, with the credentials and the pod of its build cluster (`member`). A store that cannot be written is logged, not retried: the job's end is not held
/// up by its bucket, and the utilities' own files are already there.
pub async fn upload_final(job: &ProwJob, status: &ProwJobStatus, pod_ns: &str, member: &Member) {
    let mut ended = job.clone();
    ended.status = Some(status.clone());
    ended.metadata.managed_fields = None;
    let upload = async {
        let Some(folder) = RunFolder::of_job(&member.client, &ended, pod_ns).await? else {
            return anyhow::Ok(());
        };
        folder
            .put("prowjob.json", serde_json::to_vec_pretty(&ended)?)
            .await?;
        let name = job.metadata.name.clone().unwrap_or_default();
        if let Some(mut pod) = Api::<Pod>::namespaced(member.client.clone(), pod_ns)
            .get_opt(&name)
            .await?
        {
            pod.metadata.managed_fields = None;
            let info = serde_json::json!({ "pod": pod });
            folder
                .put("podinfo.json", serde_json::to_vec_pretty(&info)?)
                .await?;
        }
        anyhow::Ok(())
    };
    // Bounded: a bucket that is down does not hold up the job's end.
    let result = match tokio::time::timeout(UPLOAD_LIMIT, upload).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("no answer within {UPLOAD_LIMIT:?}")),
    };
    if let Err(e) = result {
        tracing::warn!(error = %format!("{e:#}"), "writing prowjob.json and podinfo.json to the run's bucket failed");
    }
}
