//! Where a run's pod is read: the dashboard's own cluster, or the build cluster its job names
//! (`spec.cluster`), reached with the kubeconfig of the BuildCluster of that name, as the
//! operator reaches it (`prow_runtime::kubeconfigs`).

use kube::{Api, Client};
use prow_api::buildcluster::{alias_of, BuildCluster, DEFAULT_ALIAS};
use prow_api::ProwJob;
use prow_runtime::kubeconfigs::KubeconfigClients;

/// The clients of the clusters job pods run in.
pub struct BuildClients {
    own: Client,
    /// Where the BuildClusters are; `None`: only the dashboard's own cluster is known.
    namespace: Option<String>,
    kubeconfigs: KubeconfigClients,
}

impl BuildClients {
    /// `own` for the dashboard's cluster; BuildClusters read from `namespace`.
    pub fn new(own: Client, namespace: Option<String>) -> Self {
        Self {
            kubeconfigs: KubeconfigClients::new(own.clone()),
            own,
            namespace,
        }
    }

    /// The client for the cluster `job`'s pod runs in, or why it cannot be had (for the page).
    pub async fn for_job(&self, job: &ProwJob) -> Result<Client, String> {
        let alias = alias_of(job);
        if let Some(client) = self.kubeconfigs.recent(alias) {
            return Ok(client);
        }
        let Some(namespace) = &self.namespace else {
            return match alias {
                DEFAULT_ALIAS => Ok(self.own.clone()),
                _ => Err(format!(
                    "build cluster {alias:?}: the dashboard has no --build-cluster-namespace"
                )),
            };
        };
        let declared = Api::<BuildCluster>::namespaced(self.own.clone(), namespace)
            .get_opt(alias)
            .await
            .map_err(|e| format!("reading BuildCluster {alias:?}: {e}"))?;
        match declared {
            Some(cluster) => self.kubeconfigs.of(&cluster).await,
            None if alias == DEFAULT_ALIAS => Ok(self.own.clone()),
            None => Err(format!(
                "no BuildCluster {alias:?} in namespace {namespace:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cluster: &str) -> ProwJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob", "metadata": {"name": "a"},
            "spec": {"job": "j", "cluster": cluster},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn without_a_build_cluster_namespace_only_the_own_cluster_is_read() {
        // Nothing listens there: neither answer may ask the API server.
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let clients = BuildClients::new(Client::try_from(config).unwrap(), None);
        assert!(clients.for_job(&job("")).await.is_ok());
        assert!(clients.for_job(&job("default")).await.is_ok());
        let why = clients.for_job(&job("b1")).await.err().unwrap();
        assert!(
            why.contains("\"b1\"") && why.contains("--build-cluster-namespace"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn an_alias_that_cannot_be_looked_up_says_which() {
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let clients = BuildClients::new(Client::try_from(config).unwrap(), Some("prow".into()));
        let why = clients.for_job(&job("b1")).await.err().unwrap();
        assert!(why.starts_with("reading BuildCluster \"b1\""), "{why}");
    }
}
