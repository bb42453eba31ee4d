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

/// Who this process is in the election: the identity given, else the pod's name (`POD_NAME`,
/// from the downward API), else the host's name and the process ID.
///
/// A pod's name survives a container restart, so a leader that crashed and restarted finds the
/// Lease still held by its own name and leads again at once instead of waiting out the lease.
/// Outside a pod a restarted process is another process, and two on one host must differ.
pub fn identity(
    given: Option<&str>,
    pod_name: Option<&str>,
    host: Option<&str>,
    pid: u32,
) -> String {
    match (nonempty(given), nonempty(pod_name)) {
        (Some(given), _) => given.to_string(),
        (None, Some(pod)) => pod.to_string(),
        (None, None) => format!("{}-{pid}", nonempty(host).unwrap_or("prow-operator")),
    }
}

/// Waits until this process, as `identity`, holds the Lease `namespace/name`; `None` if
/// `shutdown` came first.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: String,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Leadership>> {
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

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::identity;

    #[test]
    fn identity_is_the_pod_name_in_a_pod_and_host_and_pid_outside() {
        let cases = [
            (Some("given"), Some("pod-7f9"), Some("host"), "given"),
            (
                None,
                Some("prow-operator-5d8c-x2x"),
                Some("prow-operator-5d8c-x2x"),
                "prow-operator-5d8c-x2x",
            ),
            (Some(" "), Some("pod-a"), None, "pod-a"),
            (None, None, Some("laptop"), "laptop-42"),
            (None, Some(""), None, "prow-operator-42"),
        ];
        for (given, pod, host, want) in cases {
            assert_eq!(
                identity(given, pod, host, 42),
                want,
                "{given:?} {pod:?} {host:?}"
            );
        }
    }
}
