//! The one way a lease is taken, by a job's reconcile and by a `getvacant` call alike: open a
//! decision in the pool's turn (which reads the view), decide (the pure rules), claim the
//! decision so the next one sees it, pass the turn on, write at the resourceVersion decided on,
//! forget the claim; a lost race is decided again. The other cimaster calls change one named
//! cluster through [`Clusters::change`]: the same guarded write and retry, without a turn or a
//! claim.
//!
//! The turn is why: two deciders reading the same view would pick the same cluster; the second
//! write would be refused (never a second holder) and decided again later, which made one
//! hand-off in ten wait 100 ms in the pool benchmark.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use prow_api::{TestCluster, TestClusterStatus};
use prow_runtime::lock;
use tokio::sync::OwnedMutexGuard;

use super::cache::Clusters;

/// A decision in progress: the pool's turn, held from reading the view until the decision is
/// claimed ([`Turn::claim`]). No turn when the decision takes no lease.
pub struct Turn {
    /// Released when the turn is dropped: after the claim shows, in [`Turn::claim`].
    _held: Option<OwnedMutexGuard<()>>,
}

/// A lease write in flight: the new status shows in [`Clusters::view`] until [`Claim::write`]
/// has written it (or failed).
pub struct Claim {
    clusters: Arc<Clusters>,
    cluster: TestCluster,
    key: ObjectRef<TestCluster>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.clusters.written().unclaim(&self.key);
    }
}

/// Why [`Clusters::lease`] or [`Clusters::change`] wrote nothing.
#[derive(Debug)]
pub enum NotWritten<E> {
    /// The decision gave nothing: its reason.
    Decided(E),
    /// Every attempt lost its race to another writer.
    Raced,
    /// There is no cluster of that name.
    Missing,
    /// A read or the write failed.
    Api(kube::Error),
}

/// What [`Clusters::change`] did.
pub enum Changed {
    /// The cluster as it was, and as written.
    Written(Arc<TestCluster>, Box<TestCluster>),
    /// Nothing to change: the cluster as it is.
    Unchanged(Arc<TestCluster>),
}

impl Clusters {
    /// Opens a decision on the clusters of `namespace`: takes `pool`'s turn when the decision
    /// may take a lease of it, then reads the view (cache plus this process's writes).
    pub async fn open(&self, namespace: &str, pool: Option<&str>) -> (Turn, Vec<Arc<TestCluster>>) {
        let turn = match pool {
            Some(pool) => {
                let key = (namespace.to_string(), pool.to_string());
                let turn = lock(&self.turns).entry(key).or_default().clone();
                Some(turn.lock_owned().await)
            }
            None => None,
        };
        (Turn { _held: turn }, self.view(namespace))
    }

    /// The whole sequence for a caller that decides at once (`getvacant`): `decide` picks a
    /// cluster of the view of `namespace` in `pool`'s turn and gives it with its new status; it
    /// is claimed and written; a lost race decides again on a new view, `attempts` times.
    pub async fn lease<E>(
        self: &Arc<Self>,
        client: &Client,
        namespace: &str,
        pool: &str,
        attempts: usize,
        mut decide: impl FnMut(&[&TestCluster]) -> Result<TestCluster, E>,
    ) -> Result<TestCluster, NotWritten<E>> {
        for _ in 0..attempts {
            let (turn, view) = self.open(namespace, Some(pool)).await;
            let members: Vec<&TestCluster> = view.iter().map(|c| c.as_ref()).collect();
            let decided = decide(&members).map_err(NotWritten::Decided)?;
            match turn.claim_one(self, &decided).write(client).await {
                Ok(written) => return Ok(written),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(NotWritten::Api(e)),
            }
        }
        Err(NotWritten::Raced)
    }
}

impl Clusters {
    /// A change of one named cluster that takes no lease (a hold, a release, a disable...):
    /// `decide` gives the new status of the cluster as last seen or written, or `None` when
    /// nothing changes; it is written at the version decided on (and shown in the view once
    /// written, never before: see the comment below), and a lost race decides again on the
    /// cluster read afresh from the API server (the cache may not show the winner yet),
    /// `attempts` times.
    pub async fn change<E>(
        self: &Arc<Self>,
        client: &Client,
        namespace: &str,
        name: &str,
        attempts: usize,
        mut decide: impl FnMut(&TestCluster) -> Result<Option<TestClusterStatus>, E>,
    ) -> Result<Changed, NotWritten<E>> {
        let named = |c: &Arc<TestCluster>| c.metadata.name.as_deref() == Some(name);
        let mut cluster = match self.view(namespace).into_iter().find(named) {
            Some(cluster) => cluster,
            // Not in the cache yet (added a moment ago, by `addcluster` say): the API server
            // says whether it exists.
            None => Arc::new(
                Api::<TestCluster>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map_err(NotWritten::Api)?
                    .ok_or(NotWritten::Missing)?,
            ),
        };
        for _ in 0..attempts {
            let Some(status) = decide(&cluster).map_err(NotWritten::Decided)? else {
                return Ok(Changed::Unchanged(cluster));
            };
            // Not claimed: a change is shown in the view only once it is written. A claimed
            // release would let the pool's next decider lease the cluster on the version the
            // release was decided on, and that lease could land first, straight over the holder.
            match self.set_status(client, &cluster, status).await {
                Ok(written) => return Ok(Changed::Written(cluster, Box::new(written))),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let api: Api<TestCluster> = Api::namespaced(client.clone(), namespace);
                    let fresh = api.get_opt(name).await.map_err(NotWritten::Api)?;
                    cluster = Arc::new(fresh.ok_or(NotWritten::Missing)?);
                }
                Err(e) => return Err(NotWritten::Api(e)),
            }
        }
        Err(NotWritten::Raced)
    }
}

impl Turn {
    /// Ends the decision: `decided` (the cluster with the status about to be written, at the
    /// version it was decided on), if any, shows in the view from now on, and the next decider
    /// of the pool goes ahead.
    pub fn claim(self, clusters: &Arc<Clusters>, decided: Option<&TestCluster>) -> Option<Claim> {
        decided.map(|cluster| self.claim_one(clusters, cluster))
    }

    /// [`Turn::claim`] of a decision that takes `decided`.
    pub fn claim_one(self, clusters: &Arc<Clusters>, decided: &TestCluster) -> Claim {
        let key = ObjectRef::from_obj(decided);
        clusters
            .written()
            .claim(key.clone(), Arc::new(decided.clone()));
        Claim {
            clusters: clusters.clone(),
            cluster: decided.clone(),
            key,
        }
        // The turn ends here, after the claim shows.
    }
}

impl Claim {
    /// Writes the claimed status at the resourceVersion it was decided on (a lease written
    /// meanwhile makes this a 409 Conflict, never a second holder); the claim ends with it.
    pub async fn write(self, client: &Client) -> Result<TestCluster, kube::Error> {
        self.clusters.write(client, &self.cluster).await
    }
}
