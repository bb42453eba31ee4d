//! The JobDefinition kind, `prow-operator.dev/v1alpha1`: a presubmit, postsubmit or periodic as
//! a job repository keeps it, with upstream Prow's job-config field names, so that an entry of
//! upstream's `presubmits:`, `postsubmits:` or `periodics:` pastes into `spec` unchanged (with
//! `type`, and `repo` for the first two). Periodics are scheduled from it
//! (the `schedule` module); every run is a ProwJob built by [`prowjob_for`].

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::upstream::with_upstream_job_fields;

use crate::prowjob::{is_false, is_zero};
use crate::schema::preserved_object;

pub mod trigger;
use crate::{labels, ProwJob, ProwJobAgent, ProwJobSpec, ProwJobType, Pull, Refs};

/// On every run: the definition it was made from.
pub const DEFINITION_LABEL: &str = "prow-operator.dev/definition";
/// On every run: what started it (`schedule`, `retry`, `manual`).
pub const TRIGGER_LABEL: &str = "prow-operator.dev/trigger";
/// On a scheduled run: the time it was due (RFC 3339), from which its name is made.
pub const DUE_ANNOTATION: &str = "prow-operator.dev/due";
/// On a scheduled run: 0 for the run the schedule started, 1.. for its retries.
pub const ATTEMPT_ANNOTATION: &str = "prow-operator.dev/attempt";
/// On a manual run: who asked for it.
pub const TRIGGERED_BY_ANNOTATION: &str = "prow-operator.dev/triggered-by";
/// On a definition: set or change it to start one run (the Kubernetes-native manual trigger);
/// each value starts exactly one run.
pub const RUN_ANNOTATION: &str = "prow-operator.dev/run";
/// On a definition, beside [`RUN_ANNOTATION`]: the branch a postsubmit's manual run tests.
pub const RUN_BASE_REF_ANNOTATION: &str = "prow-operator.dev/run-base-ref";

with_upstream_job_fields! {
/// A job as a job repository defines it; see the module documentation.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow-operator.dev",
    version = "v1alpha1",
    kind = "JobDefinition",
    namespaced,
    status = "JobDefinitionStatus",
    shortname = "jobdef",
    category = "prow",
    derive = "PartialEq",
    derive = "Default",
    doc = "JobDefinition is a presubmit, postsubmit or periodic with upstream Prow's job-config fields; periodics are scheduled from it and manual triggers run it.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.repo"),
    printcolumn(name = "Last run", type_ = "date", json_path = ".status.lastRunTime"),
    printcolumn(name = "Next run", type_ = "date", json_path = ".status.nextRunTime"),
    printcolumn(
        name = "Latest",
        type_ = "string",
        json_path = ".status.latestRuns[0].state"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct JobDefinitionSpec {
    /// Which list of upstream's job config the job belongs to.
    #[serde(rename = "type")]
    pub job_type: DefinitionType,
    /// `org/repo` the job belongs to (the key of upstream's `presubmits:`/`postsubmits:` map);
    /// required for presubmits and postsubmits, not used by periodics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    /// Name of the job (`^[A-Za-z0-9-._]+$`); the object's name when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Labels added to every run (presets select jobs by them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// What runs the job; `kubernetes` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    /// Namespace of the runs' pods; the operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod each run runs (a core/v1 PodSpec; validated by the webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub spec: Option<Box<PodSpec>>,

    /// Whether the pod utilities decorate the pod (clone, upload, timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decorate: Option<bool>,
    /// Import path the job's repository is cloned under.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_alias: String,
    /// URI the job's repository is cloned from.
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

    /// Presubmit: run on every pull request; postsubmit: run unless a change filter says not
    /// to (its default is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_run: Option<bool>,
    /// Presubmit: its context is not required for merge.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Presubmit: the comment regex that starts it; needs `rerun_command`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// Presubmit: Tide runs it before merge even when it did not run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub run_before_merge: bool,
    /// Branches (regexes) the job runs against; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Branches (regexes) the job never runs against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_branches: Vec<String>,
    /// Regex of changed files that make the job run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_if_changed: String,
    /// Regex of changed files that alone do not make the job run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skip_if_only_changed: String,
    /// Whether the result is not reported to the code host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_report: bool,

    /// Periodic: time between the starts of two runs, each once the previous finished (Go
    /// duration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Periodic: time from the end of a run to the start of the next (Go duration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub minimum_interval: String,
    /// Periodic: cron schedule (5 fields or `@daily`-style), optionally after `CRON_TZ=Zone `
    /// or `TZ=Zone `; UTC otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cron: String,
    /// Periodic: free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Periodic: runs again after a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}
}

/// Which list of upstream's job config a definition belongs to.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefinitionType {
    /// Runs on pull requests.
    #[default]
    Presubmit,
    /// Runs on pushes to a branch.
    Postsubmit,
    /// Runs on a schedule.
    Periodic,
}

impl DefinitionType {
    /// The ProwJob type of its runs.
    pub fn job_type(self) -> ProwJobType {
        match self {
            Self::Presubmit => ProwJobType::Presubmit,
            Self::Postsubmit => ProwJobType::Postsubmit,
            Self::Periodic => ProwJobType::Periodic,
        }
    }
}

/// A periodic's retry of failed runs (upstream's `retry`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Retry {
    /// Most retries after a failed run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: i64,
    /// Time from a failed run's end to its retry (Go duration); at once when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Whether every attempt runs once one failed, even after a success.
    #[serde(default, skip_serializing_if = "is_false")]
    pub run_all: bool,
}

/// What the operator last did with a definition.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDefinitionStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the latest run was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<Time>,
    /// Periodics: when the next run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Time>,
    /// The latest runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_runs: Vec<RunSummary>,
    /// The last value of the run annotation a run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_trigger: Option<String>,
    /// `Scheduled` (the schedule is understood) and `Late` (a due run cannot start, and why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One run of a definition.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The ProwJob's name.
    pub name: String,
    /// Its state (`triggered` until the operator picks it up).
    pub state: String,
    /// What started it: `schedule`, `retry` or `manual`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

impl JobDefinition {
    /// The job's name: `spec.name`, or the object's name.
    pub fn job_name(&self) -> &str {
        if self.spec.name.is_empty() {
            self.metadata.name.as_deref().unwrap_or_default()
        } else {
            &self.spec.name
        }
    }

    /// The one branch `spec.branches` names literally (`main`, or `^main$` as upstream writes
    /// it), which a postsubmit's manual run tests when none is asked for.
    pub fn literal_branch(&self) -> Option<String> {
        let [only] = self.spec.branches.as_slice() else {
            return None;
        };
        let bare = only.strip_prefix('^').unwrap_or(only);
        let bare = bare.strip_suffix('$').unwrap_or(bare);
        (!bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_alphanumeric() || "-_./".contains(c)))
        .then(|| bare.to_string())
    }

    /// `spec.repo` as (org, repo), when it has that shape.
    pub fn org_repo(&self) -> Option<(&str, &str)> {
        let (org, repo) = self.spec.repo.split_once('/')?;
        (!org.is_empty() && !repo.is_empty() && !repo.contains('/')).then_some((org, repo))
    }
}

/// What a run is made for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// The run's name (deterministic for scheduled and annotation-triggered runs).
    pub name: String,
    /// `schedule`, `retry` or `manual`.
    pub trigger: String,
    /// Branch tested (presubmits and postsubmits).
    pub base_ref: String,
    /// Its commit, when known.
    pub base_sha: String,
    /// Pull requests tested (presubmits).
    pub pulls: Vec<Pull>,
    /// Who asked (manual runs).
    pub user: Option<String>,
    /// Further annotations for the run (due time, attempt).
    pub annotations: BTreeMap<String, String>,
}

/// A definition that cannot make a run, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CannotRun(pub String);

/// The ProwJob of one run of `def`, in the definition's namespace: upstream's job-to-ProwJob
/// rules (the job's labels and annotations, Prow's labels, refs from `repo` and the request,
/// decoration only when `decorate` is true, the context defaulting to the name).
pub fn prowjob_for(def: &JobDefinition, req: &RunRequest) -> Result<ProwJob, CannotRun> {
    let s = &def.spec;
    let name = def.job_name().to_string();
    let job_type = s.job_type.job_type();
    let agent = agent_named(&s.agent)
        .ok_or_else(|| CannotRun(format!("agent {:?} is not known", s.agent)))?;
    let refs = match s.job_type {
        DefinitionType::Periodic => None,
        DefinitionType::Presubmit | DefinitionType::Postsubmit => {
            let (org, repo) = def
                .org_repo()
                .ok_or_else(|| CannotRun(format!("repo {:?} is not org/repo", s.repo)))?;
            if req.base_ref.is_empty() {
                return Err(CannotRun(
                    "a run needs the branch it tests (base_ref)".into(),
                ));
            }
            if s.job_type == DefinitionType::Presubmit && req.pulls.is_empty() {
                return Err(CannotRun("a presubmit run needs a pull request".into()));
            }
            Some(Refs {
                org: org.to_string(),
                repo: repo.to_string(),
                base_ref: req.base_ref.clone(),
                base_sha: req.base_sha.clone(),
                pulls: req.pulls.clone(),
                path_alias: s.path_alias.clone(),
                clone_uri: s.clone_uri.clone(),
                skip_submodules: s.skip_submodules,
                clone_depth: s.clone_depth,
                skip_fetch_head: s.skip_fetch_head,
                ..Refs::default()
            })
        }
    };
    let context = match (s.job_type, s.context.is_empty()) {
        (DefinitionType::Periodic, _) => String::new(),
        (_, true) => name.clone(),
        (_, false) => s.context.clone(),
    };
    let rerun_command = match (s.job_type, s.rerun_command.is_empty()) {
        (DefinitionType::Presubmit, true) => format!("/test {name}"),
        _ => s.rerun_command.clone(),
    };
    let spec = ProwJobSpec {
        job_type: Some(job_type),
        agent: Some(agent),
        cluster: s.cluster.clone(),
        namespace: s.namespace.clone().unwrap_or_default(),
        job: name.clone(),
        refs: refs.map(Box::new),
        extra_refs: s.extra_refs.clone(),
        report: !s.skip_report,
        context,
        rerun_command,
        max_concurrency: s.max_concurrency,
        error_on_eviction: s.error_on_eviction,
        pod_spec: s.spec.clone(),
        jenkins_spec: s.jenkins_spec.clone(),
        pipeline_run_spec: s.pipeline_run_spec.clone(),
        tekton_pipeline_run_spec: s.tekton_pipeline_run_spec.clone(),
        decoration_config: if s.decorate == Some(true) {
            Some(s.decoration_config.clone().unwrap_or_default())
        } else {
            None
        },
        reporter_config: s.reporter_config.clone(),
        rerun_auth_config: s.rerun_auth_config.clone(),
        hidden: s.hidden,
        prowjob_defaults: s.prowjob_defaults.clone(),
        job_queue_name: s.job_queue_name.clone(),
    };

    let mut job_labels = s.labels.clone();
    job_labels.insert(labels::CREATED_BY_PROW.into(), "true".into());
    job_labels.insert(labels::TYPE.into(), crate::pod::type_name(job_type).into());
    if let Some(value) = labels::job_label_value(&name) {
        job_labels.insert(labels::JOB.into(), value);
    }
    if let Some(refs) = spec.refs.as_ref() {
        job_labels.insert(labels::REFS_ORG.into(), refs.org.clone());
        job_labels.insert(labels::REFS_REPO.into(), refs.repo.clone());
        job_labels.insert(labels::REFS_BASE_REF.into(), refs.base_ref.clone());
        if let Some(pull) = refs.pulls.first() {
            job_labels.insert(labels::REFS_PULL.into(), pull.number.to_string());
        }
    }
    job_labels.retain(|_, v| labels::is_valid_label_value(v));
    if let Some(def_name) = def.metadata.name.as_ref() {
        if labels::is_valid_label_value(def_name) {
            job_labels.insert(DEFINITION_LABEL.into(), def_name.clone());
        }
    }
    job_labels.insert(TRIGGER_LABEL.into(), req.trigger.clone());

    let mut annotations = s.annotations.clone();
    annotations.insert(labels::JOB.into(), name);
    annotations.extend(req.annotations.clone());
    if let Some(user) = req.user.as_ref() {
        annotations.insert(TRIGGERED_BY_ANNOTATION.into(), user.clone());
    }

    let mut job = ProwJob::new(&req.name, spec);
    job.metadata.namespace = def.metadata.namespace.clone();
    job.metadata.labels = Some(job_labels);
    job.metadata.annotations = Some(annotations);
    Ok(job)
}

/// The agent upstream's `agent` field names; `kubernetes` when empty.
pub fn agent_named(name: &str) -> Option<ProwJobAgent> {
    match name {
        "" | "kubernetes" => Some(ProwJobAgent::Kubernetes),
        "jenkins" => Some(ProwJobAgent::Jenkins),
        "tekton-pipeline" => Some(ProwJobAgent::TektonPipeline),
        _ => None,
    }
}

/// A run's name from the definition's name and a distinguishing suffix, at most 63 characters
/// (pods are named after their jobs): a long definition name is cut and a hash of the whole
/// name keeps it unique.
pub fn run_name(definition: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let base = if definition.len() <= room {
        definition.to_string()
    } else {
        let hash = format!("{:08x}", stable_hash(definition.as_bytes()) as u32);
        let keep = room.saturating_sub(hash.len() + 1);
        let cut: String = definition.chars().take(keep).collect();
        format!("{}-{hash}", cut.trim_end_matches(['-', '.']))
    };
    format!("{base}-{suffix}")
}

/// The suffix of the run a value of [`RUN_ANNOTATION`] starts: the same value always names the
/// same run.
pub fn manual_suffix(token: &str) -> String {
    format!(
        "run-{:012x}",
        stable_hash(token.as_bytes()) & 0xffff_ffff_ffff
    )
}

/// FNV-1a, 64 bits: a hash whose value never changes between builds (names depend on it).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
