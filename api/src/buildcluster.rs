//! The BuildCluster kind, `prow-operator.dev/v1alpha1`: a cluster where job pods run, named by
//! the alias a job's `spec.cluster` gives (upstream's build clusters, declared as objects). Its
//! kubeconfig is a Secret beside it; its status says whether the operator reaches it, whether
//! its rights there suffice, its version and its job pods.
//!
//! The pure rules: which alias a job names, what a job does while its cluster is missing or
//! unreachable ([`gate`]), which rights the operator needs there ([`required_rights`]) and the
//! status a probe's findings give ([`status`]).

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::with_transitions;
use crate::lifecycle::Timeouts;
use crate::testcluster::SecretKeyRef;
use crate::ProwJob;

/// A cluster where job pods run.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow-operator.dev",
    version = "v1alpha1",
    kind = "BuildCluster",
    namespaced,
    status = "BuildClusterStatus",
    shortname = "bc",
    category = "prow",
    derive = "PartialEq",
    derive = "Default",
    doc = "BuildCluster is a cluster where job pods run; its name is the alias a ProwJob's spec.cluster gives.",
    printcolumn(
        name = "Reachable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Reachable\")].status",
        description = "Whether the operator reaches the cluster"
    ),
    printcolumn(
        name = "Permissions",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"PermissionsOK\")].status",
        description = "Whether the operator's rights there are enough"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.kubernetesVersion",
        description = "The cluster's Kubernetes version"
    ),
    printcolumn(
        name = "Running",
        type_ = "integer",
        json_path = ".status.runningPods",
        description = "Job pods running there"
    ),
    printcolumn(
        name = "Pending",
        type_ = "integer",
        json_path = ".status.pendingPods",
        description = "Job pods pending there"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Reachable\")].message",
        description = "Why the cluster is reachable or not"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BuildClusterSpec {
    /// Secret, in this namespace, that holds the kubeconfig the operator uses there (its
    /// current context). `key` defaults to `kubeconfig`.
    pub kubeconfig_secret_ref: SecretKeyRef,
    /// What the cluster is, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the operator last found out about a build cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildClusterStatus {
    /// `Reachable` and `PermissionsOK`, Kubernetes style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The cluster's Kubernetes version (`gitVersion`), when it was last reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Job pods running there.
    #[serde(default)]
    pub running_pods: i64,
    /// Job pods pending there.
    #[serde(default)]
    pub pending_pods: i64,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The alias of the operator's own cluster, unless a BuildCluster of that name exists.
pub const DEFAULT_ALIAS: &str = "default";

/// Condition: the operator reaches the cluster's API server.
pub const REACHABLE: &str = "Reachable";

/// Condition: the operator's rights there are enough.
pub const PERMISSIONS_OK: &str = "PermissionsOK";

/// Prefix of the description of a job that waits for its build cluster.
pub const WAITING_PREFIX: &str = "Waiting for build cluster";

/// The alias of the build cluster a job's pods run in: its `spec.cluster`, or `default`.
pub fn alias_of(job: &ProwJob) -> &str {
    match job.spec.cluster.as_str() {
        "" => DEFAULT_ALIAS,
        alias => alias,
    }
}

/// How a build cluster stands for the jobs that name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// No BuildCluster (nor kubeconfig context) of that alias.
    Missing,
    /// Reached, and its pods are listed.
    Up,
    /// Not reached since `since`, for `reason`.
    Down {
        /// When it was last seen working.
        since: Timestamp,
        /// Why, for people.
        reason: String,
    },
    /// Not usable yet, with nothing known to be wrong: the operator has just started, or the
    /// BuildCluster is new, and its pods are being listed (`reason` says which step).
    Starting {
        /// When the operator began to use it.
        since: Timestamp,
        /// The step it is at, for people.
        reason: String,
    },
}

/// What an unfinished job does about its build cluster before anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// The cluster is there: the job goes on as usual. `restore` is the description to put
    /// back when the job's says it waited for the cluster.
    Go {
        /// The description to write back, if any.
        restore: Option<String>,
    },
    /// Wait, saying why (unless the cluster is only starting), and look again after
    /// `recheck`.
    Wait {
        /// The job's description while it waits; `None` leaves the job's as it is.
        description: Option<String>,
        /// When to look again: the deadline, or sooner.
        recheck: Duration,
    },
    /// The job ends `error` with this description.
    End(String),
}

/// How often a job waiting for its build cluster looks again by itself (a cluster that comes
/// back wakes its jobs sooner).
pub const DOWN_RECHECK: Duration = Duration::from_secs(5);

/// What `job` does about its cluster, which stands as `reach`: a missing alias ends it at once;
/// an unreachable cluster makes it wait, until the job's unscheduled timeout (measured from the
/// later of the outage's start and the job's creation) ends it; a cluster that is up lets it go
/// on. Finished jobs always go on (their pod, if reachable, may still need deleting).
pub fn gate(job: &ProwJob, reach: &Reach, now: Timestamp, timeouts: Timeouts) -> Gate {
    let alias = alias_of(job);
    if job.is_complete() {
        return Gate::Go { restore: None };
    }
    match reach {
        Reach::Missing => Gate::End(format!(
            "Build cluster {alias:?} does not exist: no BuildCluster of that name (spec.cluster)."
        )),
        Reach::Up => {
            let description = job
                .status
                .as_ref()
                .map(|s| s.description.as_str())
                .unwrap_or_default();
            let restore = (description.starts_with(WAITING_PREFIX)
                && job.state() == crate::ProwJobState::Pending)
                .then(|| "Job triggered.".to_string());
            Gate::Go { restore }
        }
        Reach::Down { since, reason } | Reach::Starting { since, reason } => {
            let down = matches!(reach, Reach::Down { .. });
            let created = job
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(*since, |t| t.0);
            let from = (*since).max(created);
            let limit = timeouts.for_job(job).unscheduled;
            let waited = now.duration_since(from).unsigned_abs();
            if waited >= limit {
                let was = if down { "unreachable" } else { "not ready" };
                return Gate::End(format!(
                    "Build cluster {alias:?} was {was} for {limit:?}, the job's pod_unscheduled_timeout: {reason}"
                ));
            }
            Gate::Wait {
                // A cluster being listed is no news: its jobs wait without a status write each
                // (the first list's end wakes them).
                description: down.then(|| format!("{WAITING_PREFIX} {alias:?}: {reason}")),
                recheck: (limit - waited).min(DOWN_RECHECK),
            }
        }
    }
}

/// One right the operator needs in a build cluster, as a SelfSubjectAccessReview asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Right {
    /// The verb: `create`, `delete`, `watch`...
    pub verb: &'static str,
    /// The API group; empty for the core group.
    pub group: &'static str,
    /// The resource, plural.
    pub resource: &'static str,
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group {
            "" => write!(f, "{} {}", self.verb, self.resource),
            group => write!(f, "{} {}.{group}", self.verb, self.resource),
        }
    }
}

/// The rights the operator needs in a build cluster's pod namespace, by what it does there:
/// runs and follows job pods, reads the credentials Secrets a decorated job names and copies a
/// leased TestCluster's kubeconfig beside the pod (server-side apply), and keeps its eviction
/// budget (and watches it for evictions), and records its jobs' Events on their pods there.
/// The chart's `files/build-cluster-access.yaml` grants exactly these.
pub fn required_rights() -> Vec<Right> {
    let mut rights = Vec::new();
    let mut add = |group, resource, verbs: &[&'static str]| {
        rights.extend(verbs.iter().map(|verb| Right {
            verb,
            group,
            resource,
        }));
    };
    add("", "pods", &["create", "delete", "get", "list", "watch"]);
    add("", "secrets", &["get", "create", "patch", "delete"]);
    add(
        "policy",
        "poddisruptionbudgets",
        &["create", "get", "list", "watch"],
    );
    add("events.k8s.io", "events", &["create", "patch"]);
    rights
}

/// What one probe of a build cluster found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    /// `Ok(gitVersion)` when the API server answered; `Err(why)` when it did not (or the
    /// kubeconfig is unusable).
    pub version: Result<String, String>,
    /// The rights the access reviews denied; `None` when they could not be asked.
    pub missing: Option<Vec<Right>>,
    /// The namespace the rights were checked in.
    pub namespace: String,
    /// Job pods running there.
    pub running: i64,
    /// Job pods pending there.
    pub pending: i64,
}

/// The status `findings` give, keeping the transition times of `previous` whose conditions did
/// not change. An unreachable cluster keeps its last known version and pod counts.
pub fn status(
    previous: Option<&BuildClusterStatus>,
    findings: &Findings,
    generation: Option<i64>,
    now: &Time,
) -> BuildClusterStatus {
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let reachable = match &findings.version {
        Ok(version) => (
            REACHABLE,
            "True",
            "Reached",
            format!("The API server answers (Kubernetes {version})."),
        ),
        Err(why) => (REACHABLE, "False", "Unreachable", why.clone()),
    };
    let rights = match (&findings.version, &findings.missing) {
        (_, Some(missing)) if missing.is_empty() => (
            PERMISSIONS_OK,
            "True",
            "Granted",
            format!(
                "Every right the operator needs is granted in namespace {:?}.",
                findings.namespace
            ),
        ),
        (_, Some(missing)) => (
            PERMISSIONS_OK,
            "False",
            "MissingPermissions",
            format!(
                "Missing in namespace {:?}: {}.",
                findings.namespace,
                missing
                    .iter()
                    .map(Right::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (Err(_), None) => (
            PERMISSIONS_OK,
            "Unknown",
            "Unreachable",
            "The rights cannot be checked while the cluster is unreachable.".to_string(),
        ),
        (Ok(_), None) => (
            PERMISSIONS_OK,
            "Unknown",
            "NotChecked",
            "The access reviews did not answer.".to_string(),
        ),
    };
    let conditions = with_transitions(
        previous_conditions,
        vec![reachable, rights],
        generation,
        now,
    );
    let (version, running, pending) = match (&findings.version, previous) {
        (Ok(v), _) => (Some(v.clone()), findings.running, findings.pending),
        (Err(_), Some(p)) => (p.kubernetes_version.clone(), p.running_pods, p.pending_pods),
        (Err(_), None) => (None, 0, 0),
    };
    BuildClusterStatus {
        conditions,
        kubernetes_version: version,
        running_pods: running,
        pending_pods: pending,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests;
