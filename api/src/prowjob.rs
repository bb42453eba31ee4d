//! The ProwJob kind, `prow.k8s.io/v1`: one run of a CI job.
//!
//! Wire-compatible with upstream Prow (kubernetes-sigs/prow `pkg/apis/prowjobs/v1`): the same
//! JSON field names (snake_case in spec, camelCase times in status), the same enums and the same
//! printer columns, so ProwJobs written by upstream hook, horologium or deck apply unchanged.

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::upstream::with_upstream_job_fields;

use crate::schema::{preserved_object, string_map};

with_upstream_job_fields! {
/// What a ProwJob asks for: which job, on which refs, run how.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow.k8s.io",
    version = "v1",
    kind = "ProwJob",
    plural = "prowjobs",
    singular = "prowjob",
    namespaced,
    status = "ProwJobStatus",
    derive = "PartialEq",
    derive = "Default",
    // The API server refuses a CRD in a `*.k8s.io` group without this; upstream's carries it.
    doc = "ProwJob is one run of a CI job: the operator runs it as a pod and records its state.",
    annotation("api-approved.kubernetes.io", "https://github.com/kubernetes/test-infra/pull/8669"),
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.job", description = "The name of the job"),
    printcolumn(name = "BuildId", type_ = "string", json_path = ".status.build_id", description = "The ID of the job being run."),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type", description = "The type of job being run."),
    printcolumn(name = "Org", type_ = "string", json_path = ".spec.refs.org", description = "The org for which the job is running."),
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.refs.repo", description = "The repo for which the job is running."),
    printcolumn(name = "Pulls", type_ = "string", json_path = ".spec.refs.pulls[*].number", description = "The pulls for which the job is running."),
    printcolumn(name = "StartTime", type_ = "date", json_path = ".status.startTime", description = "When the job started running."),
    printcolumn(name = "CompletionTime", type_ = "date", json_path = ".status.completionTime", description = "When the job finished running."),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state", description = "The state of the job.")
)]
pub struct ProwJobSpec {
    /// Kind of job: presubmit, postsubmit, periodic or batch.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<ProwJobType>,
    /// What runs the job; only `kubernetes` jobs are run by this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<ProwJobAgent>,
    /// Namespace the job's pod is created in; the operator's default when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the job as configured (the same for every run of it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// Repository and pull requests the job tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Box<Refs>>,
    /// Whether the result is reported back to the code host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub report: bool,
    /// Pod spec the job's pod is built from (a core/v1 PodSpec; validated by the webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub pod_spec: Option<Box<PodSpec>>,
}
}

/// Kind of CI job.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProwJobType {
    /// Runs on a pull request before merge.
    Presubmit,
    /// Runs on a branch after merge.
    Postsubmit,
    /// Runs on a schedule.
    Periodic,
    /// Runs several pull requests merged together.
    Batch,
}

impl ProwJobType {
    /// The type as ProwJobs spell it on the wire (`presubmit`, `periodic`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Presubmit => "presubmit",
            Self::Postsubmit => "postsubmit",
            Self::Periodic => "periodic",
            Self::Batch => "batch",
        }
    }
}

/// What runs a job.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProwJobAgent {
    /// A Kubernetes pod (the only agent this operator runs).
    #[serde(rename = "kubernetes")]
    Kubernetes,
    /// A Jenkins build.
    #[serde(rename = "jenkins")]
    Jenkins,
    /// A Tekton pipeline run.
    #[serde(rename = "tekton-pipeline")]
    TektonPipeline,
}

/// Where a job is in its life.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProwJobState {
    /// Waiting for upstream's scheduler to pick a build cluster.
    Scheduling,
    /// Created; no pod yet.
    Triggered,
    /// Its pod exists and has not finished.
    Pending,
    /// Finished and passed.
    Success,
    /// Finished and failed.
    Failure,
    /// Stopped by a user, a newer run or a timeout.
    Aborted,
    /// Could not run to an end (pod not creatable, lost, timed out).
    Error,
}

impl ProwJobState {
    /// The state as ProwJobs spell it on the wire (`pending`, `success`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduling => "scheduling",
            Self::Triggered => "triggered",
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Aborted => "aborted",
            Self::Error => "error",
        }
    }

    /// Whether the state is final.
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failure | Self::Aborted | Self::Error
        )
    }
}

/// A repository, the base it is tested on and the pull requests merged onto it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Refs {
    /// Organisation (GitHub org or Gerrit host) of the repository.
    pub org: String,
    /// Repository name.
    pub repo: String,
    /// Link to the repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo_link: String,
    /// Branch the job tests against.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_ref: String,
    /// Commit of the base branch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_sha: String,
    /// Link to the base commit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_link: String,
    /// Pull requests merged onto the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<Pull>,
    /// Import path the repository is cloned under, instead of github.com/org/repo.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_alias: String,
    /// Whether the job's working directory is this repository's checkout.
    #[serde(default, skip_serializing_if = "is_false")]
    pub workdir: bool,
    /// URI to clone from, instead of the code host's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clone_uri: String,
    /// Whether submodules are left out of the clone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_submodules: bool,
    /// Depth of a shallow clone; 0 is a full clone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clone_depth: i64,
    /// Whether the fetch of HEAD is skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_fetch_head: bool,
    /// Whether the clone fetches without blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobless_fetch: Option<bool>,
}

/// A pull request a job tests.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Pull {
    /// Pull request number.
    pub number: i64,
    /// Login of the pull request's author.
    // Optional here (upstream always writes it): an empty-string schema default would be
    // refused by the 1.20 API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Head commit of the pull request.
    // Optional here (upstream always writes it): an empty-string schema default would be
    // refused by the 1.20 API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Title of the pull request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// Branch the pull request comes from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head_ref: String,
    /// Git ref of the pull request's head, for code hosts that need it.
    #[serde(rename = "ref", default, skip_serializing_if = "String::is_empty")]
    pub git_ref: String,
    /// Link to the pull request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
    /// Link to the head commit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_link: String,
    /// Link to the author.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author_link: String,
}

/// Pod utilities' decoration settings. The timeouts are read here; every other field is kept as
/// written so upstream's full configuration round-trips.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DecorationConfig {
    /// Longest the test may run (Go duration, e.g. `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How long the test gets to stop after the timeout before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
    /// How long a pod may stay pending after it was scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_pending_timeout: Option<String>,
    /// How long a pod may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_running_timeout: Option<String>,
    /// How long a pod may wait to be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_unscheduled_timeout: Option<String>,
    /// Every other decoration field, kept as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// What has happened to a ProwJob so far.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ProwJobStatus {
    /// When the job was created by its trigger.
    #[serde(rename = "startTime", default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job's pod was created.
    #[serde(
        rename = "pendingTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_time: Option<Time>,
    /// When the job finished; set exactly once.
    #[serde(
        rename = "completionTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub completion_time: Option<Time>,
    /// Where the job is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProwJobState>,
    /// Why the job is in its state, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Link to the job's logs or results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Name of the pod that runs the job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// Build number of this run, increasing per job name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build_id: String,
    /// Build ID Jenkins gave the job, for upstream's Jenkins agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jenkins_build_id: String,
    /// How often the job's pod was recreated after it was lost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pod_revival_count: i64,
    /// The TestCluster leased to the job, when the job names a pool (prow-operator's own
    /// field; upstream Prow ignores it).
    #[serde(
        rename = "testCluster",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub test_cluster: Option<String>,
    /// Last state each reporter reported, by reporter name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map")]
    pub prev_report_states: BTreeMap<String, ProwJobState>,
}

/// A ProwJob, or something that holds one (a reference, an `Arc`, a cache's wrapper): what the
/// rules that look at many jobs take, so a cache's jobs are read where they are.
pub trait JobRef {
    /// The job.
    fn job(&self) -> &ProwJob;
}

impl JobRef for ProwJob {
    fn job(&self) -> &ProwJob {
        self
    }
}

impl<T: JobRef + ?Sized> JobRef for &T {
    fn job(&self) -> &ProwJob {
        (**self).job()
    }
}

impl<T: JobRef + ?Sized> JobRef for std::sync::Arc<T> {
    fn job(&self) -> &ProwJob {
        (**self).job()
    }
}

impl ProwJob {
    /// The job's state; a job with no state yet counts as triggered, as upstream treats it.
    pub fn state(&self) -> ProwJobState {
        self.status
            .as_ref()
            .and_then(|s| s.state)
            .unwrap_or(ProwJobState::Triggered)
    }

    /// The refs labels and env describe: the main refs, or the first extra refs.
    pub fn main_refs(&self) -> Option<&Refs> {
        self.spec.refs.as_deref().or(self.spec.extra_refs.first())
    }

    /// Whether the job is finished: upstream's rule is that `completionTime` is set.
    pub fn is_complete(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.completion_time.is_some())
    }
}

/// Whether a flag is off (left out of the written object).
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a count is zero (left out of the written object).
pub(crate) fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The namespace the job's pod runs in: `spec.namespace`, or `default_namespace` when empty.
pub fn pod_namespace<'a>(job: &'a ProwJob, default_namespace: &'a str) -> &'a str {
    if job.spec.namespace.is_empty() {
        default_namespace
    } else {
        &job.spec.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_types_are_spelled_as_on_the_wire() {
        use ProwJobState::*;
        for state in [
            Scheduling, Triggered, Pending, Success, Failure, Aborted, Error,
        ] {
            assert_eq!(serde_json::to_value(state).expect("state"), state.as_str());
        }
        use ProwJobType::*;
        for t in [Presubmit, Postsubmit, Periodic, Batch] {
            assert_eq!(serde_json::to_value(t).expect("type"), t.as_str());
        }
    }
}
