//! Where a run's pod is read: the dashboard's own cluster, or the build cluster its job names
//! (`spec.cluster`), reached with the kubeconfig of the BuildCluster of that name, as the
//! operator reaches it (`prow_runtime::kubeconfigs`).

use std::sync::Mutex;
use std::time::Instant;

use kube::{Api, Client};
use prow_api::buildcluster::{alias_of, BuildCluster, DEFAULT_ALIAS};
use prow_api::ProwJob;
use prow_runtime::kubeconfigs::{KubeconfigClients, RECHECK};

/// The clients of the clusters job pods run in.
pub struct BuildClients {
    own: Client,
    /// Where the BuildClusters are; `None`: only the dashboard's own cluster is known.
    namespace: Option<String>,
    kubeconfigs: KubeconfigClients,
    /// When the API server last said there is no BuildCluster `default` (so `default` is the
    /// dashboard's own cluster): asked again only after [`RECHECK`], not at every page.
    own_is_default: Mutex<Option<Instant>>,
}

impl BuildClients {
    /// `own` for the dashboard's cluster; BuildClusters read from `namespace`.
    pub fn new(own: Client, namespace: Option<String>) -> Self {
        Self {
            kubeconfigs: KubeconfigClients::new(own.clone()),
            own,
            namespace,
            own_is_default: Mutex::new(None),
        }
    }

    /// The client for the cluster `job`'s pod runs in, or why it cannot be had (for the page).
    pub async fn for_job(&self, job: &ProwJob) -> Result<Client, String> {
        let alias = alias_of(job);
        if let Some(client) = self.kubeconfigs.recent(alias) {
            return Ok(client);
        }
        if alias == DEFAULT_ALIAS && self.own_is_default_recently() {
            return Ok(self.own.clone());
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
            None if alias == DEFAULT_ALIAS => {
                *prow_runtime::lock(&self.own_is_default) = Some(Instant::now());
                Ok(self.own.clone())
            }
            None => Err(format!(
                "no BuildCluster {alias:?} in namespace {namespace:?}"
            )),
        }
    }

    fn own_is_default_recently(&self) -> bool {
        prow_runtime::lock(&self.own_is_default).is_some_and(|at| at.elapsed() < RECHECK)
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

    /// An API server that has no BuildCluster at all, counting what it is asked.
    async fn without_build_clusters() -> (Client, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use warp::Filter;
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = asked.clone();
        let routes = warp::any().map(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            warp::reply::with_status(
                warp::reply::json(&serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found",
                })),
                warp::http::StatusCode::NOT_FOUND,
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        (Client::try_from(config).unwrap(), asked)
    }

    #[tokio::test]
    async fn the_own_cluster_as_default_is_asked_once_per_recheck_not_per_page() {
        use std::sync::atomic::Ordering;
        let (client, asked) = without_build_clusters().await;
        let clients = BuildClients::new(client, Some("prow".into()));
        for _ in 0..5 {
            assert!(clients.for_job(&job("")).await.is_ok());
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one read for five pages");
        // An alias that does not exist is asked every time: it may be declared any moment.
        for _ in 0..2 {
            let why = clients.for_job(&job("b1")).await.err().unwrap();
            assert!(why.contains("no BuildCluster \"b1\""), "{why}");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_alias_that_cannot_be_looked_up_says_which() {
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let clients = BuildClients::new(Client::try_from(config).unwrap(), Some("prow".into()));
        let why = clients.for_job(&job("b1")).await.err().unwrap();
        assert!(why.starts_with("reading BuildCluster \"b1\""), "{why}");
    }
}
