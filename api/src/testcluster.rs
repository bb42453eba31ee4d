//! The TestCluster kind, `prow-operator.dev/v1alpha1`: one end-to-end test cluster of a pool.
//! Its status is the lease: who holds it, since when and until when.

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A test cluster that jobs lease from a pool.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow-operator.dev",
    version = "v1alpha1",
    kind = "TestCluster",
    namespaced,
    status = "TestClusterStatus",
    shortname = "tc",
    category = "prow",
    derive = "PartialEq",
    derive = "Default",
    doc = "TestCluster is one end-to-end test cluster of a pool; jobs that name the pool lease it.",
    printcolumn(
        name = "Pool",
        type_ = "string",
        json_path = ".spec.pool",
        description = "Pool the cluster belongs to"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".spec.region",
        description = "Where the cluster runs"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Vacant, Leased, Held, Cleaning or Disabled"
    ),
    printcolumn(
        name = "Holder",
        type_ = "string",
        json_path = ".status.lease.holder",
        description = "Who holds the cluster"
    ),
    printcolumn(
        name = "Since",
        type_ = "date",
        json_path = ".status.lease.since",
        description = "When the lease or hold began"
    ),
    printcolumn(
        name = "Until",
        type_ = "date",
        json_path = ".status.lease.until",
        description = "When the hold expires"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TestClusterSpec {
    /// Pool the cluster belongs to; a job names the pool, not the cluster.
    pub pool: String,
    /// Where the cluster runs (cloud region or site), for people and for pool selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret, in this namespace, that holds the cluster's kubeconfig. Optional: a cluster
    /// added through the cimaster-compatible API has none, and a job leasing it learns only
    /// its name and region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
    /// What the cluster is, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A key of a Secret in the TestCluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret whose value is the kubeconfig.
    #[serde(default = "default_kubeconfig_key")]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".to_string()
}

/// Whether a test cluster can be leased.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ClusterPhase {
    /// Free to lease.
    Vacant,
    /// Leased to a job until it ends.
    Leased,
    /// Held by a person until the hold expires.
    Held,
    /// Its pool's clean-up job runs against it after a lease; Vacant when that succeeds.
    Cleaning,
    /// Taken out of the pool.
    Disabled,
}

/// The lease state of a test cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestClusterStatus {
    /// Vacant, Leased, Held, Cleaning or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,
    /// Who holds the cluster, when Leased or Held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<ClusterLease>,
    /// Why the cluster was disabled, when Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The clean-up job of the clean-up under way, when Cleaning and it was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_job: Option<String>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready condition and others, Kubernetes style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Who holds a test cluster, since when and until when.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLease {
    /// The holder: `namespace/name` of a ProwJob, or a person's name for a hold.
    pub holder: String,
    /// UID of the holding ProwJob, so a recreated job of the same name is a different holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_uid: Option<String>,
    /// When the lease or hold began.
    pub since: Time,
    /// When a hold expires; a job's lease lasts until the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
}
