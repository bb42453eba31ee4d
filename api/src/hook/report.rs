//! What goes back to GitHub for a run, as upstream crier's GitHub reporter: one commit status per
//! state (once each, recorded in `status.prev_report_states` (upstream's wire name) under [`REPORTER`]), and one bot
//! comment per pull request with a table of its failed jobs.

use super::runs::{OPTIONAL_ANNOTATION, REPORTER};
use crate::{ProwJob, ProwJobState, ProwJobType};

/// Longest description GitHub keeps on a status.
pub const MAX_DESCRIPTION: usize = 140;
/// The marker of the failure comment, by which it is found again.
pub const MARKER: &str = "<!-- test report -->";
const TABLE_HEAD: &str = "Test name | Commit | Details | Required | Rerun command";
const TABLE_RULE: &str = "--- | --- | --- | --- | ---";

/// One commit status to post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Organisation.
    pub org: String,
    /// Repository.
    pub repo: String,
    /// The commit: the pull request's head for a presubmit, the base for a postsubmit.
    pub sha: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: &'static str,
    /// The job's context.
    pub context: String,
    /// The job's description and the base SHA, at most 140 characters.
    pub description: String,
    /// `status.url`.
    pub target_url: String,
    /// The job state this reports (recorded once posted).
    pub job_state: ProwJobState,
}

/// GitHub's state for a job state, as upstream maps it.
pub fn github_state(state: ProwJobState) -> &'static str {
    match state {
        ProwJobState::Scheduling | ProwJobState::Triggered | ProwJobState::Pending => "pending",
        ProwJobState::Success => "success",
        ProwJobState::Failure | ProwJobState::Aborted => "failure",
        ProwJobState::Error => "error",
    }
}

/// The status `job` is due, if any: a presubmit or postsubmit with `report` set and a context,
/// whose state is not the one last reported.
pub fn due(job: &ProwJob) -> Option<Status> {
    let spec = &job.spec;
    if !spec.report || spec.context.is_empty() {
        return None;
    }
    let refs = spec.refs.as_ref()?;
    let status = job.status.as_ref()?;
    let state = status.state?;
    if status.prev_report_states.get(REPORTER) == Some(&state) {
        return None;
    }
    let sha = match spec.job_type? {
        ProwJobType::Presubmit if refs.pulls.len() == 1 => refs.pulls[0].sha.clone()?,
        ProwJobType::Postsubmit => refs.base_sha.clone(),
        _ => return None,
    };
    if sha.is_empty() || refs.org.is_empty() || refs.repo.is_empty() {
        return None;
    }
    let described = if status.description.is_empty() {
        default_description(state).to_string()
    } else {
        status.description.clone()
    };
    Some(Status {
        org: refs.org.clone(),
        repo: refs.repo.clone(),
        sha,
        state: github_state(state),
        context: spec.context.clone(),
        description: with_base_sha(&described, &refs.base_sha),
        target_url: status.url.clone(),
        job_state: state,
    })
}

fn default_description(state: ProwJobState) -> &'static str {
    match state {
        ProwJobState::Scheduling | ProwJobState::Triggered => "Job triggered.",
        ProwJobState::Pending => "Job running.",
        ProwJobState::Success => "Job succeeded.",
        ProwJobState::Failure => "Job failed.",
        ProwJobState::Aborted => "Job aborted.",
        ProwJobState::Error => "Error: the job could not run.",
    }
}

/// `description` with ` BaseSHA:<sha>` after it, the description cut in its middle so that the
/// whole fits in [`MAX_DESCRIPTION`] characters.
pub fn with_base_sha(description: &str, base_sha: &str) -> String {
    let suffix = if base_sha.is_empty() {
        String::new()
    } else {
        format!(" BaseSHA:{base_sha}")
    };
    let room = MAX_DESCRIPTION.saturating_sub(suffix.chars().count());
    format!("{}{suffix}", elide(description, room))
}

fn elide(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    const DOTS: &str = " ... ";
    let keep = max.saturating_sub(DOTS.len());
    let head: String = text.chars().take(keep / 2).collect();
    let tail: String = text.chars().skip(count - (keep - keep / 2)).collect();
    format!("{head}{DOTS}{tail}")
}

/// A row of the failure table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The job's context.
    pub context: String,
    /// The commit it failed on.
    pub sha: String,
    /// Its page.
    pub url: String,
    /// Whether it is required (not optional).
    pub required: bool,
    /// How to run it again.
    pub rerun: String,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "{} | {} | [link]({}) | {} | `{}`",
            self.context, self.sha, self.url, self.required, self.rerun
        )
    }

    fn parse(line: &str) -> Option<Row> {
        let cells: Vec<&str> = line.split(" | ").collect();
        let [context, sha, link, required, rerun] = cells.as_slice() else {
            return None;
        };
        Some(Row {
            context: context.to_string(),
            sha: sha.to_string(),
            url: link.strip_prefix("[link](")?.strip_suffix(')')?.to_string(),
            required: *required == "true",
            rerun: rerun.trim_matches('`').to_string(),
        })
    }
}

/// The rows of an earlier failure comment.
pub fn rows_of(body: &str) -> Vec<Row> {
    body.lines()
        .skip_while(|l| *l != TABLE_RULE)
        .skip(1)
        .map_while(Row::parse)
        .collect()
}

/// The failure comment for `rows`, addressed to the pull request's author.
pub fn comment_body(author: &str, rows: &[Row]) -> String {
    let table: Vec<String> = rows.iter().map(Row::line).collect();
    format!(
        "@{author}: the jobs below failed. Comment `/retest` to run every failed job again, or \
         `/retest-required` for the required ones only.\n\n{TABLE_HEAD}\n{TABLE_RULE}\n{}\n\n\
         This comment is kept up to date as jobs pass and fail.\n{MARKER}\n",
        table.join("\n")
    )
}

/// What to do with the pull request's failure comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommentChange {
    /// Nothing.
    Nothing,
    /// Post a new comment (a new failure: the author is notified).
    Create(String),
    /// Change the comment in place (a failed job passed; others still fail).
    Edit(String),
    /// Remove it (nothing fails any more).
    Delete,
}

/// How `job`, finished, changes the failure comment whose body is `existing` (the bot's
/// comment with [`MARKER`], if there is one). With [`CommentChange::Create`] and an existing
/// comment, the old one is deleted: a new failure makes a new comment, as upstream.
pub fn comment_change(existing: Option<&str>, job: &ProwJob) -> CommentChange {
    let Some(state) = job.status.as_ref().and_then(|s| s.state) else {
        return CommentChange::Nothing;
    };
    let refs = job.spec.refs.as_ref();
    let pull = refs.and_then(|r| r.pulls.first());
    if job.spec.job_type != Some(ProwJobType::Presubmit) || !job.spec.report || pull.is_none() {
        return CommentChange::Nothing;
    }
    let pull = pull.expect("checked");
    let old = existing.map(rows_of).unwrap_or_default();
    let mut rows: Vec<Row> = old
        .iter()
        .filter(|r| r.context != job.spec.context)
        .cloned()
        .collect();
    let failed = matches!(state, ProwJobState::Failure | ProwJobState::Error);
    let new_row = failed.then(|| Row {
        context: job.spec.context.clone(),
        sha: pull.sha.clone().unwrap_or_default(),
        url: job
            .status
            .as_ref()
            .map(|s| s.url.clone())
            .unwrap_or_default(),
        required: job
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| a.get(OPTIONAL_ANNOTATION).is_none_or(|v| v != "true")),
        rerun: if job.spec.rerun_command.is_empty() {
            format!("/test {}", job.spec.job)
        } else {
            job.spec.rerun_command.clone()
        },
    });
    match (state.is_complete(), new_row) {
        (false, _) => CommentChange::Nothing,
        (true, Some(row)) => {
            if old.contains(&row) {
                return CommentChange::Nothing;
            }
            rows.push(row);
            CommentChange::Create(comment_body(author_of(job), &rows))
        }
        (true, None) if state == ProwJobState::Aborted || rows.len() == old.len() => {
            CommentChange::Nothing
        }
        (true, None) if rows.is_empty() => CommentChange::Delete,
        (true, None) => CommentChange::Edit(comment_body(author_of(job), &rows)),
    }
}

fn author_of(job: &ProwJob) -> &str {
    job.spec
        .refs
        .as_ref()
        .and_then(|r| r.pulls.first())
        .and_then(|p| p.author.as_deref())
        .unwrap_or("author")
}

/// How results go to GitHub (`--report-as`): commit statuses, as upstream, or check runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportAs {
    /// Commit statuses (upstream crier's).
    #[default]
    Statuses,
    /// Check runs, with the log's tail in a finished run's output (beyond upstream, prow#340).
    Checks,
}

/// A check run to create or update: one per run (its `external_id` is the run's name), named
/// by the job's context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    /// Organisation.
    pub org: String,
    /// Repository.
    pub repo: String,
    /// The commit checked.
    pub head_sha: String,
    /// The job's context.
    pub name: String,
    /// The ProwJob's name.
    pub external_id: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: &'static str,
    /// For a completed run: `success`, `failure` or `cancelled`.
    pub conclusion: Option<&'static str>,
    /// `status.url`.
    pub details_url: String,
    /// The output's title: the job's description.
    pub title: String,
    /// The job state this reports.
    pub job_state: ProwJobState,
}

/// GitHub's check status and conclusion for a job state.
pub fn check_state(state: ProwJobState) -> (&'static str, Option<&'static str>) {
    match state {
        ProwJobState::Scheduling | ProwJobState::Triggered => ("queued", None),
        ProwJobState::Pending => ("in_progress", None),
        ProwJobState::Success => ("completed", Some("success")),
        ProwJobState::Failure | ProwJobState::Error => ("completed", Some("failure")),
        ProwJobState::Aborted => ("completed", Some("cancelled")),
    }
}

/// The check run `job` is due, if any: the same jobs and states as [`due`].
pub fn check_due(job: &ProwJob) -> Option<CheckRun> {
    due(job).map(|status| check_run(job, status))
}

/// The check run that reports `status`, which [`due`] gave for `job`.
pub fn check_run(job: &ProwJob, status: Status) -> CheckRun {
    let (check, conclusion) = check_state(status.job_state);
    let described = job
        .status
        .as_ref()
        .map(|s| s.description.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| default_description(status.job_state).to_string());
    CheckRun {
        org: status.org,
        repo: status.repo,
        head_sha: status.sha,
        name: status.context,
        external_id: job.metadata.name.clone().unwrap_or_default(),
        status: check,
        conclusion,
        details_url: status.target_url,
        title: elide(&described, 1000),
        job_state: status.job_state,
    }
}

/// Most characters of a check run's output text GitHub keeps.
pub const MAX_CHECK_TEXT: usize = 65_535;

/// The output text of a finished run: the last `lines` lines of its log in a code block, cut to
/// fit GitHub's limit, with a line saying how much was left out.
pub fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let mut kept: Vec<&str> = all[all.len().saturating_sub(lines)..].to_vec();
    let room = MAX_CHECK_TEXT - 200;
    while kept.len() > 1 && kept.iter().map(|l| l.len() + 1).sum::<usize>() > room {
        kept.remove(0);
    }
    let mut body = kept.join("\n");
    if body.len() > room {
        let mut cut = body.len() - room;
        while !body.is_char_boundary(cut) {
            cut += 1;
        }
        body = body[cut..].to_string();
    }
    let body = body.replace("```", "'''");
    let left_out = all.len() - kept.len();
    let head = if left_out == 0 {
        "The log:".to_string()
    } else {
        format!(
            "The last {} lines of the log ({left_out} before them left out):",
            kept.len()
        )
    };
    format!("{head}\n\n```\n{body}\n```\n")
}
