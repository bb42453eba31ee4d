//! The TestClusterPool kind, `prow-operator.dev/v1alpha1`: a pool's settings, optional (every
//! pool has the defaults without one), and its status: clusters by phase, jobs waiting, the
//! oldest wait. A pool is named by the object's name, as TestClusters' `spec.pool` names it.

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::jobdefinition::{prowjob_for, DefinitionType, JobDefinition, RunRequest};
use crate::labels;
use crate::lease::PoolPolicy;
use crate::pod::{give_test_cluster, set_env};
use crate::pool::{line, Pool};
use crate::schema::preserved_object;
use crate::{ClusterPhase, ProwJob, ProwJobSpec, TestCluster};

/// A pool of test clusters: how long clusters may be held and leased, the health check, and
/// the jobs that clean and create clusters.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow-operator.dev",
    version = "v1alpha1",
    kind = "TestClusterPool",
    namespaced,
    status = "TestClusterPoolStatus",
    shortname = "tcp",
    category = "prow",
    derive = "PartialEq",
    derive = "Default",
    doc = "TestClusterPool holds the settings of the TestClusters whose spec.pool is its name.",
    printcolumn(
        name = "Vacant",
        type_ = "integer",
        json_path = ".status.clusters.vacant"
    ),
    printcolumn(
        name = "Leased",
        type_ = "integer",
        json_path = ".status.clusters.leased"
    ),
    printcolumn(name = "Held", type_ = "integer", json_path = ".status.clusters.held"),
    printcolumn(
        name = "Disabled",
        type_ = "integer",
        json_path = ".status.clusters.disabled"
    ),
    printcolumn(
        name = "Waiting",
        type_ = "integer",
        json_path = ".status.waiting",
        description = "Jobs waiting for a cluster"
    ),
    printcolumn(
        name = "Oldest wait",
        type_ = "date",
        json_path = ".status.oldestWait",
        description = "Since when the first job in line waits"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TestClusterPoolSpec {
    /// The hold `holdcluster` gives without a duration (Go duration; default 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_duration: Option<String>,
    /// The longest hold (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold_duration: Option<String>,
    /// The longest a `getvacant` lease lives without `finishtest` (default 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lease_duration: Option<String>,
    /// Check a cluster before each lease: its API answers `/readyz` through its kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// ProwJob spec run against a cluster after each lease; the cluster is Vacant again only
    /// when it succeeds, and disabled with the reason when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub cleanup_job: Option<serde_json::Value>,
    /// ProwJob spec that builds a new cluster (`createcluster`, and when jobs wait and the
    /// pool is below `maxSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub create_cluster_job: Option<serde_json::Value>,
    /// Instead of `createClusterJob`: the JobDefinition, in the namespace the create-cluster
    /// job is made in, whose run builds a new cluster (a periodic, or a postsubmit run on the
    /// branch `createcluster` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_cluster_definition: Option<String>,
    /// Most clusters the create-cluster job may bring the pool to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i32>,
}

/// The health check a pool runs before each lease.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// How long `/readyz` may take (Go duration; default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How often a failing cluster is checked again (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
}

/// A pool's clusters by phase, the jobs waiting and the oldest wait.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestClusterPoolStatus {
    /// Clusters of the pool by phase.
    #[serde(default)]
    pub clusters: PhaseCounts,
    /// Jobs waiting for a cluster.
    #[serde(default)]
    pub waiting: i32,
    /// When the first job in line was created, while any waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_wait: Option<Time>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Clusters by phase.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PhaseCounts {
    /// Free to lease.
    pub vacant: i32,
    /// Leased to a job or a caller.
    pub leased: i32,
    /// Held by a person.
    pub held: i32,
    /// Being cleaned up.
    pub cleaning: i32,
    /// Out of the pool.
    pub disabled: i32,
}

/// A setting that is not a Go duration, with its field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadSetting {
    /// Its field path.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl TestClusterPoolSpec {
    /// The pool's policy: the defaults, overridden by what the spec gives.
    pub fn policy(&self) -> Result<PoolPolicy, BadSetting> {
        let defaults = PoolPolicy::default();
        let duration = |field: &'static str, text: &Option<String>, default: Duration| {
            text.as_deref().map_or(Ok(default), |t| {
                crate::duration::parse(t).map_err(|e| BadSetting {
                    field,
                    message: e.to_string(),
                })
            })
        };
        let policy = PoolPolicy {
            default_hold: duration(
                "spec.holdDuration",
                &self.hold_duration,
                defaults.default_hold,
            )?,
            max_hold: duration(
                "spec.maxHoldDuration",
                &self.max_hold_duration,
                defaults.max_hold,
            )?,
            max_caller_lease: duration(
                "spec.maxLeaseDuration",
                &self.max_lease_duration,
                defaults.max_caller_lease,
            )?,
            cleanup: self.cleanup_job.is_some(),
            health: match &self.health_check {
                None => None,
                Some(check) => {
                    let defaults = crate::lease::HealthPolicy::default();
                    Some(crate::lease::HealthPolicy {
                        timeout: duration(
                            "spec.healthCheck.timeout",
                            &check.timeout,
                            defaults.timeout,
                        )?,
                        interval: duration(
                            "spec.healthCheck.retryInterval",
                            &check.retry_interval,
                            defaults.interval,
                        )?,
                    })
                }
            },
        };
        if policy.default_hold > policy.max_hold {
            return Err(BadSetting {
                field: "spec.holdDuration",
                message: "is longer than spec.maxHoldDuration".into(),
            });
        }
        Ok(policy)
    }
}

/// A ProwJob from a pool's job template (a ProwJob spec): named `generate_name` plus a suffix,
/// with `labels`, and `env` added to (or replacing the same names in) every container.
pub fn job_from_template(
    template: &serde_json::Value,
    generate_name: &str,
    labels: BTreeMap<String, String>,
    env: &[(&str, String)],
) -> Result<ProwJob, String> {
    let spec: ProwJobSpec = serde_json::from_value(template.clone())
        .map_err(|e| format!("the template is not a ProwJob spec: {e}"))?;
    let mut job = ProwJob::new("", spec);
    job.metadata.name = None;
    job.metadata.generate_name = Some(generate_name.to_string());
    job.metadata.labels = Some(labels);
    if let Some(pod) = job.spec.pod_spec.as_mut() {
        set_env(pod, env);
    }
    Ok(job)
}

/// The clean-up job of `cluster` from its pool's `cleanupJob`: it runs in the cluster's
/// namespace with `TEST_CLUSTER`, `TEST_CLUSTER_REGION` and, when the cluster has one, its
/// kubeconfig Secret mounted with `KUBECONFIG` pointing at it.
pub fn cleanup_job(template: &serde_json::Value, cluster: &TestCluster) -> Result<ProwJob, String> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let mut job = job_from_template(
        template,
        &format!("{name}-cleanup-"),
        BTreeMap::from([(labels::CLEANS.to_string(), name.clone())]),
        &[],
    )?;
    job.spec.namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    if let Some(pod) = job.spec.pod_spec.as_mut() {
        let kubeconfig = cluster.spec.kubeconfig_secret_ref.as_ref();
        give_test_cluster(
            pod,
            &name,
            cluster.spec.region.as_deref().unwrap_or_default(),
            kubeconfig.map(|s| (s.name.as_str(), s.key.as_str())),
        );
    }
    Ok(job)
}

/// The create-cluster job of `pool` from its `createClusterJob`, for `user` and `branch`, who
/// reach it as `CLUSTER_POOL`, `REQUESTED_BY` and `BRANCH`.
pub fn create_cluster_job(
    template: &serde_json::Value,
    pool: &str,
    user: &str,
    branch: &str,
) -> Result<ProwJob, String> {
    job_from_template(
        template,
        &format!("create-cluster-{pool}-"),
        BTreeMap::from([(labels::CREATES_CLUSTER_FOR.to_string(), pool.to_string())]),
        &create_cluster_env(pool, user, branch),
    )
}

fn create_cluster_env(pool: &str, user: &str, branch: &str) -> [(&'static str, String); 3] {
    [
        ("CLUSTER_POOL", pool.to_string()),
        ("REQUESTED_BY", user.to_string()),
        ("BRANCH", branch.to_string()),
    ]
}

/// The create-cluster job of `pool` as a manual run of its `createClusterDefinition` `def`,
/// for `user` and `branch` (a postsubmit's run tests `branch`, else its one literal branch),
/// with the same name prefix, label and environment as [`create_cluster_job`]'s.
pub fn create_cluster_run(
    def: &JobDefinition,
    pool: &str,
    user: &str,
    branch: &str,
) -> Result<ProwJob, String> {
    if def.spec.job_type == DefinitionType::Presubmit {
        return Err(format!(
            "definition {} is a presubmit, which runs on pull requests: name a periodic or a postsubmit",
            def.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let base_ref = match (def.spec.job_type, branch.is_empty()) {
        (DefinitionType::Postsubmit, true) => def.literal_branch().unwrap_or_default(),
        (DefinitionType::Postsubmit, false) => branch.to_string(),
        _ => String::new(),
    };
    let request = RunRequest {
        trigger: "manual".into(),
        base_ref,
        user: Some(user.to_string()),
        ..RunRequest::default()
    };
    let mut job = prowjob_for(def, &request).map_err(|e| e.to_string())?;
    job.metadata.name = None;
    job.metadata.generate_name = Some(format!("create-cluster-{pool}-"));
    job.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::CREATES_CLUSTER_FOR.to_string(), pool.to_string());
    if let Some(pod) = job.spec.pod_spec.as_mut() {
        set_env(pod, &create_cluster_env(pool, user, branch));
    }
    Ok(job)
}

/// Whether a pool grows now: jobs wait, none of its clusters is vacant, no create-cluster job
/// of it runs (`building`), and it has fewer than `max_size` clusters; only with a
/// `createClusterJob` or a `createClusterDefinition` to grow with.
pub fn should_grow(
    spec: &TestClusterPoolSpec,
    status: &TestClusterPoolStatus,
    building: usize,
) -> bool {
    let clusters = status.clusters;
    let size =
        clusters.vacant + clusters.leased + clusters.held + clusters.cleaning + clusters.disabled;
    (spec.create_cluster_job.is_some() || spec.create_cluster_definition.is_some())
        && status.waiting > 0
        && clusters.vacant == 0
        && building == 0
        && spec.max_size.is_some_and(|max| size < max)
}

/// The status of `pool`: its clusters by phase (`clusters` are its namespace's), and its line
/// of waiting jobs.
pub fn pool_status<'a>(
    pool: &Pool,
    clusters: &[&TestCluster],
    jobs: impl IntoIterator<Item = &'a ProwJob>,
) -> TestClusterPoolStatus {
    let mut counts = PhaseCounts::default();
    let members: Vec<&TestCluster> = clusters
        .iter()
        .copied()
        .filter(|c| c.spec.pool == pool.name)
        .collect();
    for cluster in &members {
        let phase = cluster
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(ClusterPhase::Vacant);
        let count = match phase {
            ClusterPhase::Vacant => &mut counts.vacant,
            ClusterPhase::Leased => &mut counts.leased,
            ClusterPhase::Held => &mut counts.held,
            ClusterPhase::Cleaning => &mut counts.cleaning,
            ClusterPhase::Disabled => &mut counts.disabled,
        };
        *count += 1;
    }
    let waiting = line(pool, jobs, &members);
    TestClusterPoolStatus {
        clusters: counts,
        waiting: i32::try_from(waiting.len()).unwrap_or(i32::MAX),
        oldest_wait: waiting
            .first()
            .and_then(|j| j.metadata.creation_timestamp.clone()),
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests;
