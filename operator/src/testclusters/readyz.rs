//! The health check of a pool's vacant clusters: `/readyz` through each one's kubeconfig.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use prow_api::testcluster::SecretKeyRef;

/// Whether the cluster's API answers `/readyz` within `timeout`, through the kubeconfig in
/// its Secret; why not, for its condition.
pub(super) async fn readyz(
    client: &Client,
    namespace: &str,
    secret: &SecretKeyRef,
    timeout: Duration,
) -> Result<(), String> {
    let read = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&secret.name)
        .await
        .map_err(|e| format!("its kubeconfig Secret {} cannot be read: {e}", secret.name))?;
    let bytes = read
        .data
        .as_ref()
        .and_then(|d| d.get(&secret.key))
        .ok_or_else(|| {
            format!(
                "its kubeconfig Secret {} has no key {:?}",
                secret.name, secret.key
            )
        })?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("its kubeconfig in Secret {} is not text", secret.name))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| format!("its kubeconfig does not read: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("its kubeconfig is not usable: {e}"))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    let cluster = Client::try_from(config).map_err(|e| format!("no client for it: {e}"))?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, cluster.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("/readyz failed: {e}")),
        Err(_) => Err(format!(
            "/readyz did not answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}
