//! The copies of a leased cluster's kubeconfig Secret made beside a job's pod, found by the
//! UID of the job they were made for.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use prow_api::labels;

/// On the copy of a leased cluster's kubeconfig Secret: the UID of the job it was copied for.
pub const KUBECONFIG_HOLDER: &str = "prow-operator.dev/test-cluster-holder";

/// Deletes the copies of a cluster's kubeconfig made for the job with `uid`, in `namespace`
/// or, when the job is gone and its pod namespace unknown, wherever they are.
pub async fn delete_kubeconfig_copies(
    client: &Client,
    namespace: Option<&str>,
    uid: &str,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("{KUBECONFIG_HOLDER}={uid}");
    for secret in api.list(&ListParams::default().labels(&selector)).await? {
        let ns = secret.namespace().unwrap_or_default();
        let result = Api::<Secret>::namespaced(client.clone(), &ns)
            .delete(&secret.name_any(), &DeleteParams::default())
            .await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The label selector of the kubeconfig copies made for a job.
pub fn kubeconfig_copy_labels(uid: &str) -> std::collections::BTreeMap<String, String> {
    [
        (labels::CREATED_BY_PROW.to_string(), "true".to_string()),
        (KUBECONFIG_HOLDER.to_string(), uid.to_string()),
    ]
    .into_iter()
    .collect()
}
