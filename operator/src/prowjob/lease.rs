//! A job's side of its test cluster: the lease write (at the resourceVersion it was decided
//! on) and the copy of the cluster's kubeconfig beside its pod.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Client;
use kube::{Api, Resource, ResourceExt};
use prow_api::plan::LeaseWrite;
use prow_api::pool::{kubeconfig_copy_name, LeasedCluster, KUBECONFIG_KEY};
use prow_api::{ProwJob, TestCluster};

use super::Context;
use crate::error::{api_code, Error, Result};
use crate::testclusters::Claim;
use crate::MANAGER;

/// Takes (through the decision's `claim`) or ends a lease: one TestCluster status write at the
/// resourceVersion it was decided on, and an Event on the cluster. A lease taken meanwhile is a conflict, decided again.
pub(super) async fn write_lease(
    write: &LeaseWrite,
    claim: Option<Claim>,
    job: &ProwJob,
    ctx: &Context,
) -> Result<TestCluster> {
    let written = match claim {
        Some(claim) => claim.write(&ctx.client).await,
        None => ctx.clusters.write(&ctx.client, &write.cluster).await,
    };
    let written = match written {
        Ok(written) => written,
        Err(e) if api_code(&e) == Some(409) => {
            return Err(Error::Conflict(write.cluster.name_any()))
        }
        Err(e) => return Err(e.into()),
    };
    let holder = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
    let (reason, note) = if write.take {
        ("Leased", format!("Leased to job {holder}."))
    } else {
        ("Released", format!("Lease of job {holder} ended."))
    };
    crate::events::publish(
        &ctx.recorder,
        write.cluster.object_ref(&()),
        false,
        reason,
        note,
        "Lease",
    );
    Ok(written)
}

/// Copies the leased cluster's kubeconfig into the pod's namespace in its build cluster (through
/// `build`), under the name the pod mounts; an existing copy (from an earlier pass) is
/// replaced.
pub(super) async fn copy_kubeconfig(
    job: &ProwJob,
    cluster: &LeasedCluster,
    pod_ns: &str,
    build: &Client,
    ctx: &Context,
) -> Result<()> {
    let Some(source) = cluster.kubeconfig.as_ref() else {
        return Ok(());
    };
    // The cluster is in the pod's namespace, beside its Secret.
    let original = Api::<Secret>::namespaced(ctx.client.clone(), pod_ns)
        .get(&source.name)
        .await?;
    let Some(kubeconfig) = original
        .data
        .as_ref()
        .and_then(|d| d.get(&source.key))
        .cloned()
    else {
        return Err(Error::Pod(prow_api::pod::PodError::NoKubeconfig {
            secret: source.name.clone(),
            key: source.key.clone(),
        }));
    };
    let copy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(kubeconfig_copy_name(&job.name_any())),
            namespace: Some(pod_ns.to_string()),
            labels: Some(crate::testclusters::kubeconfig_copy_labels(
                job.metadata.uid.as_deref().unwrap_or_default(),
                job.metadata.namespace.as_deref().unwrap_or_default(),
            )),
            ..Default::default()
        },
        data: Some(
            [(KUBECONFIG_KEY.to_string(), kubeconfig)]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    let api = Api::<Secret>::namespaced(build.clone(), pod_ns);
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&copy.name_any(), &params, &Patch::Apply(&copy))
        .await?;
    Ok(())
}

/// Removes the job's copy of its cluster's kubeconfig from its build cluster (through `build`);
/// already gone is fine.
pub(super) async fn delete_kubeconfig_copy(
    job: &ProwJob,
    pod_ns: &str,
    build: &Client,
) -> Result<()> {
    let api = Api::<Secret>::namespaced(build.clone(), pod_ns);
    match api
        .delete(
            &kubeconfig_copy_name(&job.name_any()),
            &DeleteParams::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
