//! The runs an event makes, as upstream's trigger makes them: upstream's refs (the pull request
//! with its SHA, author, title and links; the base branch at its current head), the delivery's
//! ID as the `event-GUID` label, and a name made from the definition and the delivery, so that a
//! delivery seen twice (a redelivery, or two replicas) makes each run once.

use std::collections::BTreeMap;

use super::events::{PullRequest, PushEvent, Repository};
use crate::jobdefinition::{
    prowjob_for, run_name, stable_hash, CannotRun, JobDefinition, RunRequest,
};
use crate::{labels, ProwJob, ProwJobState, Pull};

/// On a run made for a webhook delivery: the delivery's ID (`X-GitHub-Delivery`), as upstream.
pub const EVENT_GUID_LABEL: &str = "event-GUID";
/// The `prow-operator.dev/trigger` of runs made for GitHub's events.
pub const TRIGGER: &str = "github";
/// The name under which the GitHub reporter records what it reported in
/// `status.prev_report_states` (upstream's wire name), as upstream's crier.
pub const REPORTER: &str = crate::plan::GITHUB_REPORTER;
/// On a presubmit run: `true` when its job is optional (the failure comment says so).
pub const OPTIONAL_ANNOTATION: &str = "prow-operator.dev/optional";

/// The pull request as upstream's refs carry it.
pub fn pull_of(pr: &PullRequest) -> Pull {
    Pull {
        number: pr.number,
        author: Some(pr.user.login.clone()),
        sha: Some(pr.head.sha.clone()),
        title: pr.title.clone(),
        head_ref: pr.head.name.clone(),
        link: pr.html_url.clone(),
        commit_link: if pr.html_url.is_empty() {
            String::new()
        } else {
            format!("{}/commits/{}", pr.html_url, pr.head.sha)
        },
        author_link: pr.user.html_url.clone(),
        ..Pull::default()
    }
}

/// The name of `def`'s run for the delivery `guid`: the same for the same pair, always.
pub fn run_name_for(def: &JobDefinition, guid: &str) -> String {
    let definition = def
        .metadata
        .name
        .as_deref()
        .unwrap_or_else(|| def.job_name());
    run_name(
        definition,
        &format!(
            "gh-{:012x}",
            stable_hash(guid.as_bytes()) & 0xffff_ffff_ffff
        ),
    )
}

/// A presubmit's run for `pr` of `repo`, tested on `base_sha` (the base branch's head now).
pub fn presubmit_run(
    def: &JobDefinition,
    repo: &Repository,
    pr: &PullRequest,
    base_sha: &str,
    guid: &str,
) -> Result<ProwJob, CannotRun> {
    let request = RunRequest {
        name: run_name_for(def, guid),
        trigger: TRIGGER.into(),
        base_ref: pr.base.name.clone(),
        base_sha: base_sha.to_string(),
        pulls: vec![pull_of(pr)],
        user: None,
        annotations: BTreeMap::new(),
    };
    let mut job = finish(prowjob_for(def, &request)?, repo, guid)?;
    if def.spec.optional {
        job.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(OPTIONAL_ANNOTATION.into(), "true".into());
    }
    Ok(job)
}

/// A postsubmit's run for `push`.
pub fn postsubmit_run(
    def: &JobDefinition,
    push: &PushEvent,
    guid: &str,
) -> Result<ProwJob, CannotRun> {
    let request = RunRequest {
        name: run_name_for(def, guid),
        trigger: TRIGGER.into(),
        base_ref: push.branch().to_string(),
        base_sha: push.after.clone(),
        pulls: Vec::new(),
        user: None,
        annotations: BTreeMap::new(),
    };
    finish(prowjob_for(def, &request)?, &push.repository, guid)
}

fn finish(mut job: ProwJob, repo: &Repository, guid: &str) -> Result<ProwJob, CannotRun> {
    if let Some(refs) = job.spec.refs.as_mut() {
        refs.repo_link = repo.html_url.clone();
        if !repo.html_url.is_empty() && !refs.base_sha.is_empty() {
            refs.base_link = format!("{}/commit/{}", repo.html_url, refs.base_sha);
        }
    }
    if labels::is_valid_label_value(guid) {
        job.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(EVENT_GUID_LABEL.into(), guid.to_string());
    }
    Ok(job)
}

/// The label selector of a pull request's presubmit runs in a namespace (upstream's labels).
pub fn pull_selector(org: &str, repo: &str, number: i64) -> String {
    format!(
        "{}=presubmit,{}={org},{}={repo},{}={number}",
        labels::TYPE,
        labels::REFS_ORG,
        labels::REFS_REPO,
        labels::REFS_PULL
    )
}

/// The status patch that aborts a run for `why` (its pull request changed or closed), recorded
/// as already reported so that the reporter never reports it, as upstream. Older runs a new run
/// supersedes are aborted by the operator (`dedupe`), marked the same way.
pub fn abort_patch(why: &str) -> serde_json::Value {
    serde_json::json!({"status": {
        "state": ProwJobState::Aborted,
        "description": why,
        "prev_report_states": {REPORTER: ProwJobState::Aborted},
    }})
}

/// Whether `job` is unfinished (the ones a closed pull request or a new commit aborts).
pub fn is_unfinished(job: &ProwJob) -> bool {
    !job.status
        .as_ref()
        .and_then(|s| s.state)
        .is_some_and(|s| s.is_complete())
}
