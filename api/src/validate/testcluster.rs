//! Rules for TestClusters.

use super::{is_dns_label, is_dns_subdomain, Report, Violation};
use crate::testclusterpool::TestClusterPool;
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

/// Every rule a TestClusterPool must pass: a name TestClusters can use as their pool, settings
/// that read as durations, a hold no longer than its maximum, a size that is not negative.
pub fn testclusterpool(pool: &TestClusterPool) -> Vec<Violation> {
    let mut r = Report::new();
    let name = pool.metadata.name.clone().unwrap_or_default();
    if !is_dns_label(&name) {
        r.add(
            "metadata.name",
            format!("{name:?} is not a valid pool name: 1-63 lower-case letters, digits and '-'"),
        );
    }
    if let Err(bad) = pool.spec.policy() {
        r.add(bad.field, bad.message);
    }
    if let Some(check) = &pool.spec.health_check {
        for (field, value) in [
            ("spec.healthCheck.timeout", &check.timeout),
            ("spec.healthCheck.retryInterval", &check.retry_interval),
        ] {
            if let Some(Err(e)) = value.as_deref().map(crate::duration::parse) {
                r.add(field, e.to_string());
            }
        }
    }
    if let Some(def) = &pool.spec.create_cluster_definition {
        if pool.spec.create_cluster_job.is_some() {
            r.add(
                "spec.createClusterDefinition",
                "and spec.createClusterJob both say how to build a cluster: keep one",
            );
        }
        if !is_dns_subdomain(def) {
            r.add(
                "spec.createClusterDefinition",
                format!(
                    "{def:?} is not a JobDefinition name: lower-case letters, digits, '-' and '.'"
                ),
            );
        }
    }
    if pool.spec.max_size.is_some_and(|n| n < 0) {
        r.add("spec.maxSize", "must be 0 or more");
    }
    r.done()
}
