//! Clients for the build clusters BuildClusters declare, made from the kubeconfig Secret each
//! names and reused while that kubeconfig stays the same: the read-only processes (the
//! dashboard, the webhook's deep check) reach a build cluster as the operator does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use prow_api::buildcluster::BuildCluster;

use crate::client::{build_cluster_kubeconfig, clients_from_text, kubeconfig_fingerprint};

/// How long a client is used before its BuildCluster's Secret is read again (a rotated
/// kubeconfig is picked up then).
pub const RECHECK: Duration = Duration::from_secs(30);

/// The clients made so far, by alias.
pub struct KubeconfigClients {
    /// Reads the BuildClusters' Secrets.
    own: Client,
    made: Mutex<HashMap<String, Made>>,
}

#[derive(Clone)]
struct Made {
    fingerprint: u64,
    client: Client,
    at: Instant,
}

impl KubeconfigClients {
    /// Reads kubeconfig Secrets through `own`.
    pub fn new(own: Client) -> Self {
        Self {
            own,
            made: Mutex::default(),
        }
    }

    /// The client made for `alias` within [`RECHECK`], if any.
    pub fn recent(&self, alias: &str) -> Option<Client> {
        self.entry(alias)
            .filter(|m| m.at.elapsed() < RECHECK)
            .map(|m| m.client)
    }

    /// The client for the cluster `cluster` declares (its name is the alias): the recent one,
    /// the one made before if the kubeconfig is the same, else a new one; or why there is none,
    /// naming the alias.
    pub async fn of(&self, cluster: &BuildCluster) -> Result<Client, String> {
        let alias = cluster.metadata.name.clone().unwrap_or_default();
        if let Some(client) = self.recent(&alias) {
            return Ok(client);
        }
        let text = build_cluster_kubeconfig(&self.own, cluster)
            .await
            .map_err(|e| format!("build cluster {alias:?}: {e}"))?
            .map_err(|why| format!("build cluster {alias:?}: {why}"))?;
        let fingerprint = kubeconfig_fingerprint(&text);
        let client = match self.entry(&alias).filter(|m| m.fingerprint == fingerprint) {
            Some(same) => same.client,
            None => {
                clients_from_text(&text)
                    .await
                    .map_err(|e| format!("build cluster {alias:?}: its kubeconfig: {e:#}"))?
                    .0
            }
        };
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        made.insert(
            alias,
            Made {
                fingerprint,
                client: client.clone(),
                at: Instant::now(),
            },
        );
        Ok(client)
    }

    fn entry(&self, alias: &str) -> Option<Made> {
        let made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        made.get(alias).cloned()
    }
}
