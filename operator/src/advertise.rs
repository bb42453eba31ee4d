//! Routes a Service to the leader alone: the leader writes its own address into the Endpoints
//! of a selector-less Service (the cimaster-compatible API's, which only the leader serves),
//! and takes it out when it steps down. A standby stays Ready for rollouts without drawing
//! any of that Service's traffic, and the binaries need no right to label pods: only `patch`
//! on the one Endpoints object, by name.

use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Where the leader is reached, and the Endpoints object that says so.
#[derive(Clone, Debug)]
pub struct Advertisement {
    /// Namespace of the Endpoints (and of the Service of the same name).
    pub namespace: String,
    /// Name of the Endpoints and of its Service.
    pub name: String,
    /// This pod's address (`status.podIP` from the downward API).
    pub ip: String,
    /// This pod's name, recorded as the address's target.
    pub pod: Option<String>,
    /// The port's name in the Service.
    pub port_name: String,
    /// The port the API listens on.
    pub port: u16,
}

impl Advertisement {
    /// The merge patch that makes this pod the Endpoints' only address (a merge patch replaces
    /// lists whole, so a former leader's address goes with it).
    pub fn publish_patch(&self) -> serde_json::Value {
        let mut address = json!({ "ip": self.ip });
        if let Some(pod) = &self.pod {
            address["targetRef"] =
                json!({ "kind": "Pod", "name": pod, "namespace": self.namespace });
        }
        json!({
            "subsets": [{
                "addresses": [address],
                "ports": [{ "name": self.port_name, "port": self.port, "protocol": "TCP" }],
            }]
        })
    }

    /// The merge patch that leaves the Endpoints with no address.
    pub fn withdraw_patch() -> serde_json::Value {
        json!({ "subsets": null })
    }
}

/// How long the withdrawal at shutdown may take; the next leader overwrites it anyway.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes this pod as the Service's endpoint (retrying until it is written), holds it until
/// `stop`, then withdraws it if it is still this pod's.
pub async fn run(client: Client, ad: Advertisement, stop: CancellationToken) {
    let api: Api<Endpoints> = Api::namespaced(client, &ad.namespace);
    let params = PatchParams::default();
    let mut delay = Duration::from_millis(200);
    loop {
        match api
            .patch(&ad.name, &params, &Patch::Merge(ad.publish_patch()))
            .await
        {
            Ok(_) => {
                tracing::info!(endpoints = %ad.name, ip = %ad.ip, "routing the Service to this leader");
                break;
            }
            Err(e) => {
                tracing::warn!(endpoints = %ad.name, error = %e, "publishing the leader's address; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(5)),
            _ = stop.cancelled() => return,
        }
    }
    stop.cancelled().await;
    let withdraw = async {
        let current = api.get(&ad.name).await?;
        let ours = current
            .subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .any(|a| a.ip == ad.ip);
        if ours {
            api.patch(
                &ad.name,
                &params,
                &Patch::Merge(Advertisement::withdraw_patch()),
            )
            .await?;
        }
        Ok::<_, kube::Error>(())
    };
    match tokio::time::timeout(WITHDRAW_TIMEOUT, withdraw).await {
        Ok(Ok(())) => tracing::info!(endpoints = %ad.name, "withdrew the leader's address"),
        Ok(Err(e)) => {
            tracing::warn!(endpoints = %ad.name, error = %e, "withdrawing the leader's address")
        }
        Err(_) => {
            tracing::warn!(endpoints = %ad.name, "withdrawing the leader's address timed out")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(pod: Option<&str>) -> Advertisement {
        Advertisement {
            namespace: "prow".into(),
            name: "prow-operator-testcluster-api".into(),
            ip: "172.17.0.5".into(),
            pod: pod.map(str::to_string),
            port_name: "cimaster".into(),
            port: 8082,
        }
    }

    #[test]
    fn the_patch_names_this_pod_alone() {
        let patch = ad(Some("prow-operator-abc")).publish_patch();
        let endpoints: Endpoints =
            serde_json::from_value(json!({ "metadata": {}, "subsets": patch["subsets"] }))
                .expect("an Endpoints");
        let subsets = endpoints.subsets.expect("subsets");
        assert_eq!(subsets.len(), 1);
        let addresses = subsets[0].addresses.as_ref().expect("addresses");
        assert_eq!(addresses.len(), 1);
        assert_eq!(addresses[0].ip, "172.17.0.5");
        let target = addresses[0].target_ref.as_ref().expect("target");
        assert_eq!(target.name.as_deref(), Some("prow-operator-abc"));
        assert_eq!(target.namespace.as_deref(), Some("prow"));
        let ports = subsets[0].ports.as_ref().expect("ports");
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("cimaster"), 8082)
        );
    }

    #[test]
    fn without_a_pod_name_the_address_has_no_target() {
        let patch = ad(None).publish_patch();
        assert!(patch["subsets"][0]["addresses"][0]
            .get("targetRef")
            .is_none());
    }

    #[test]
    fn withdrawing_clears_the_subsets() {
        assert_eq!(Advertisement::withdraw_patch(), json!({ "subsets": null }));
    }
}
