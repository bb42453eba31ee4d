//! Leader election over a coordination.k8s.io Lease (kube-lease-manager: server-side apply with
//! conflict detection), so that of several replicas exactly one reconciles.

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Seconds a leader's lease is valid after its last renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the leader renews.
const RENEW_BEFORE_SECONDS: u64 = 5;

/// Held leadership; dropping it releases the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Waits until this process holds the Lease `namespace/name`; `None` if `shutdown` came first.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Leadership>> {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "prow-operator".into());
    let identity = format!("{host}-{}", std::process::id());
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity.clone())
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_BEFORE_SECONDS)
        .build()
        .await
        .context("setting up leader election")?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "waiting for leadership");
    while !*state.borrow_and_update() {
        tokio::select! {
            changed = state.changed() => changed.context("leader election stopped")?,
            _ = shutdown.cancelled() => return Ok(None),
        }
    }
    tracing::info!(%identity, "became leader");
    Ok(Some(Leadership { state, task }))
}

impl Leadership {
    /// Resolves when leadership is lost.
    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Releases the Lease so a standby takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("leadership released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing leadership"),
            Err(e) => tracing::warn!(error = %e, "leader election task"),
        }
    }
}
