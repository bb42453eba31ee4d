//! The TestClusters as this process last saw or wrote them: the watch cache, with the lease
//! writes the cache may not show yet, one turn per pool to decide who takes a cluster, and the
//! pools' settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use prow_api::lease::PoolPolicy;
use prow_api::testclusterpool::TestClusterPool;
use prow_api::{TestCluster, TestClusterStatus};
use prow_runtime::lock;
use prow_runtime::store::Synced;
use tokio::sync::mpsc;

use super::overlay::Overlay;

/// One pool's lock: see [`Clusters::open`].
pub(super) type PoolTurn = Arc<tokio::sync::Mutex<()>>;

/// The TestClusters as the operator last saw or wrote them, and the pools' settings.
pub struct Clusters {
    /// The watch cache.
    pub store: Store<TestCluster>,
    /// The TestClusterPools, whose settings override the defaults.
    pub pools: Store<TestClusterPool>,
    /// Whether the cache has its first list.
    pub synced: Synced,
    /// The namespace whose ProwJobs the operator reconciles, if only one: clean-up jobs are
    /// created there.
    pub watch_namespace: Option<String>,
    /// The one namespace whose TestClusters are watched, if not all: there the operator reads
    /// and copies kubeconfig Secrets.
    pub cluster_namespace: Option<String>,
    pub(super) written: Mutex<Overlay<ObjectRef<TestCluster>>>,
    /// One lock per pool (namespace, name): see [`Clusters::open`].
    pub(super) turns: Mutex<HashMap<(String, String), PoolTurn>>,
    pub(super) wake: mpsc::UnboundedSender<ObjectRef<TestCluster>>,
}

impl Clusters {
    /// Clusters from a store filled by hand (tests).
    pub fn from_store(store: Store<TestCluster>) -> Arc<Self> {
        Self::from_stores(store, reflector::store().0)
    }

    /// Clusters and pools from stores filled by hand (tests).
    pub fn from_stores(store: Store<TestCluster>, pools: Store<TestClusterPool>) -> Arc<Self> {
        let (wake, _) = mpsc::unbounded_channel();
        Arc::new(Self {
            store,
            pools,
            synced: Synced::already(),
            watch_namespace: None,
            cluster_namespace: None,
            written: Mutex::default(),
            turns: Mutex::default(),
            wake,
        })
    }

    /// The clusters of `namespace`: the cached copy, or this process's own later write while
    /// the cache still shows the copy that write replaced.
    pub fn view(&self, namespace: &str) -> Vec<Arc<TestCluster>> {
        let cached: Vec<Arc<TestCluster>> = self
            .store
            .state()
            .into_iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let mut written = self.written();
        if written.is_empty() {
            return cached;
        }
        cached
            .into_iter()
            .map(|c| written.show(&ObjectRef::from_obj(&*c), c))
            .collect()
    }

    /// The settings of pool `pool` of `namespace`: its TestClusterPool's, or the defaults (also
    /// when its settings do not read, which admission refuses).
    pub fn policy(&self, namespace: &str, pool: &str) -> PoolPolicy {
        match self.pool(namespace, pool).map(|p| p.spec.policy()) {
            Some(Ok(policy)) => policy,
            Some(Err(bad)) => {
                tracing::warn!(namespace, pool, error = %bad, "pool settings do not read; using the defaults");
                PoolPolicy::default()
            }
            None => PoolPolicy::default(),
        }
    }

    /// The TestClusterPool of pool `pool` of `namespace`, if there is one.
    pub fn pool(&self, namespace: &str, pool: &str) -> Option<Arc<TestClusterPool>> {
        self.pools.get(&ObjectRef::new(pool).within(namespace))
    }

    /// Replaces `cluster`'s status with the one it carries, at the resourceVersion it carries
    /// (a lease written meanwhile makes this a 409 Conflict, never a second holder). Returns
    /// the cluster as written.
    pub async fn write(
        &self,
        client: &Client,
        cluster: &TestCluster,
    ) -> Result<TestCluster, kube::Error> {
        let ns = cluster.namespace().unwrap_or_default();
        let api: Api<TestCluster> = Api::namespaced(client.clone(), &ns);
        let params = crate::post_params();
        let written = api
            .replace_status(&cluster.name_any(), &params, cluster)
            .await?;
        if let Some(based_on) = cluster.metadata.resource_version.clone() {
            self.written().wrote(
                ObjectRef::from_obj(cluster),
                based_on,
                Arc::new(written.clone()),
            );
        }
        Ok(written)
    }

    /// Replaces `cluster`'s status with `status`, at the resourceVersion `cluster` was read at
    /// (see [`Clusters::write`]).
    pub async fn set_status(
        &self,
        client: &Client,
        cluster: &TestCluster,
        status: TestClusterStatus,
    ) -> Result<TestCluster, kube::Error> {
        let mut updated = cluster.clone();
        updated.status = Some(status);
        self.write(client, &updated).await
    }

    /// Asks for the cluster leased to the job with `uid`, if any, to be looked at: the job is
    /// gone.
    pub fn holder_gone(&self, uid: &str) {
        for cluster in self.store.state() {
            let holder = cluster
                .status
                .as_ref()
                .and_then(|s| s.lease.as_ref())
                .and_then(|l| l.holder_uid.as_deref());
            if holder == Some(uid) {
                let _ = self.wake.send(ObjectRef::from_obj(&*cluster));
            }
        }
    }

    pub(super) fn written(&self) -> MutexGuard<'_, Overlay<ObjectRef<TestCluster>>> {
        lock(&self.written)
    }
}
