//! Where a run's pod is read: the dashboard's own cluster, or the build cluster its job names
//! (`spec.cluster`), reached with the kubeconfig of the BuildCluster of that name, as the
//! operator reaches it. A client is made once per kubeconfig and reused; which kubeconfig a
//! BuildCluster names is asked again after [`RECHECK`], so a rotated one is picked up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use prow_api::buildcluster::{alias_of, BuildCluster, DEFAULT_ALIAS};
use prow_api::ProwJob;
use prow_runtime::client::{build_cluster_kubeconfig, clients_from_text, kubeconfig_fingerprint};

/// How long what an alias resolved to is used before it is looked up again.
pub const RECHECK: Duration = Duration::from_secs(30);

/// The clients of the clusters job pods run in.
pub struct BuildClients {
    own: Client,
    /// Where the BuildClusters are; `None`: only the dashboard's own cluster is known.
    namespace: Option<String>,
    resolved: Mutex<HashMap<String, Resolved>>,
}

#[derive(Clone)]
struct Resolved {
    /// The kubeconfig's hash; `None` for the dashboard's own cluster.
    fingerprint: Option<u64>,
    client: Client,
    at: Instant,
}

impl BuildClients {
    /// `own` for the dashboard's cluster; BuildClusters read from `namespace`.
    pub fn new(own: Client, namespace: Option<String>) -> Self {
        Self {
            own,
            namespace,
            resolved: Mutex::default(),
        }
    }

    /// The client for the cluster `job`'s pod runs in, or why it cannot be had (for the page).
    pub async fn for_job(&self, job: &ProwJob) -> Result<Client, String> {
        let alias = alias_of(job);
        if let Some(known) = self.known(alias) {
            return Ok(known.client);
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
        let Some(declared) = declared else {
            if alias == DEFAULT_ALIAS {
                return Ok(self.remember(alias, None, self.own.clone()));
            }
            return Err(format!(
                "no BuildCluster {alias:?} in namespace {namespace:?}"
            ));
        };
        let text = build_cluster_kubeconfig(&self.own, &declared)
            .await
            .map_err(|e| format!("build cluster {alias:?}: {e}"))?
            .map_err(|why| format!("build cluster {alias:?}: {why}"))?;
        let fingerprint = kubeconfig_fingerprint(&text);
        let same = self
            .entry(alias)
            .filter(|r| r.fingerprint == Some(fingerprint));
        let client = match same {
            Some(r) => r.client,
            None => {
                clients_from_text(&text)
                    .await
                    .map_err(|e| format!("build cluster {alias:?}: its kubeconfig: {e:#}"))?
                    .0
            }
        };
        Ok(self.remember(alias, Some(fingerprint), client))
    }

    fn entry(&self, alias: &str) -> Option<Resolved> {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved.get(alias).cloned()
    }

    /// What `alias` resolved to, while that is recent.
    fn known(&self, alias: &str) -> Option<Resolved> {
        self.entry(alias).filter(|r| r.at.elapsed() < RECHECK)
    }

    fn remember(&self, alias: &str, fingerprint: Option<u64>, client: Client) -> Client {
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved.insert(
            alias.to_owned(),
            Resolved {
                fingerprint,
                client: client.clone(),
                at: Instant::now(),
            },
        );
        client
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
