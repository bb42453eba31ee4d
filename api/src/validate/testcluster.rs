//! Rules for TestClusters.

use super::{is_dns_label, Report, Violation};
use crate::{ClusterPhase, TestCluster};

/// Every rule a TestCluster must pass.
pub fn testcluster(tc: &TestCluster) -> Vec<Violation> {
    let mut r = Report::new();
    if !is_dns_label(&tc.spec.pool) {
        r.add(
            "spec.pool",
            format!(
                "{:?} is not a valid pool name: 1-63 lower-case letters, digits and '-'",
                tc.spec.pool
            ),
        );
    }
    if let Some(secret) = &tc.spec.kubeconfig_secret_ref {
        if secret.name.is_empty() {
            r.add(
                "spec.kubeconfigSecretRef.name",
                "is required: name the Secret holding the kubeconfig (or omit kubeconfigSecretRef)",
            );
        }
        if secret.key.is_empty() {
            r.add(
                "spec.kubeconfigSecretRef.key",
                "must not be empty: omit it for the default \"kubeconfig\"",
            );
        }
    }
    r.done()
}

/// A cluster leased to a job or held by a person cannot be deleted until it is released.
pub fn testcluster_delete(tc: &TestCluster) -> Vec<Violation> {
    let mut r = Report::new();
    let status = tc.status.clone().unwrap_or_default();
    if let (Some(phase @ (ClusterPhase::Leased | ClusterPhase::Held)), Some(lease)) =
        (status.phase, status.lease)
    {
        r.add(
            "status.lease",
            format!(
                "the cluster is {} by {}: release it (or disable it and wait for the job to end) before deleting it",
                if phase == ClusterPhase::Leased { "leased" } else { "held" },
                lease.holder
            ),
        );
    }
    r.done()
}
