//! Upstream crier's GitHub reporter, on the elected replica: for every ProwJob whose state was
//! not reported yet (`prow_api::hook::report::due`), one commit status, then, for a finished
//! presubmit, the pull request's failure comment brought up to date; then the state is recorded
//! in `status.prev_report_states` (upstream's wire name), so that a restart reports nothing twice and a state missed while
//! no replica led is reported when one leads again. Runs on the shared work queue: one job is
//! never reported twice at once, and a failure is retried with the queue's backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use prow_api::hook::report::{self, CommentChange, ReportAs, MARKER};
use prow_api::hook::runs::REPORTER;
use prow_api::ProwJob;
use prow_runtime::lock;
use prow_runtime::queue::Action;

use crate::github::GitHub;
use crate::metrics::Metrics;
use crate::MANAGER;

/// The reporter.
pub struct Reporter {
    /// The API server.
    pub client: Client,
    /// GitHub.
    pub github: Arc<GitHub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Statuses or check runs.
    pub report_as: ReportAs,
    /// The credentials of the bucket logs are read from, for a check run's log tail (mounted:
    /// prow-hook may not read Secrets).
    pub log_credentials: prow_runtime::storage::Credentials,
    /// One lock per pull request: its failure comment is read and written by one job at a time.
    comments: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Lines of a finished run's log shown in its check run.
const LOG_TAIL_LINES: usize = 200;

impl Reporter {
    /// A reporter with these parts.
    pub fn new(client: Client, github: Arc<GitHub>, metrics: Arc<Metrics>) -> Reporter {
        Reporter {
            client,
            github,
            metrics,
            report_as: ReportAs::Statuses,
            log_credentials: prow_runtime::storage::Credentials::Ambient,
            comments: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the reporter has anything to do for `job` (the watch's filter).
    pub fn wants(job: &ProwJob) -> bool {
        report::due(job).is_some()
    }

    /// Reports `job` if it is due; what the queue does next.
    pub async fn reconcile(self: Arc<Self>, job: Arc<ProwJob>) -> Action {
        match self.report(&job).await {
            Ok(()) => Action::await_change(),
            Err(e) => {
                Metrics::count(&self.metrics.reports, "failed");
                tracing::warn!(job = %job.name_any(), error = %e, "reporting failed; trying again");
                Action::retry()
            }
        }
    }

    async fn report(&self, job: &ProwJob) -> anyhow::Result<()> {
        let Some(status) = report::due(job) else {
            return Ok(());
        };
        let posted = match self.report_as {
            ReportAs::Statuses => self.github.create_status(&status).await,
            ReportAs::Checks => {
                let text = if status.job_state.is_complete() {
                    Some(self.log_tail(job).await)
                } else {
                    None
                };
                let check = report::check_run(job, status.clone());
                self.github.upsert_check_run(&check, text).await
            }
        };
        match posted {
            Ok(()) => Metrics::count(&self.metrics.reports, "status"),
            Err(e) if e.ignorable_for_status() => {
                Metrics::count(&self.metrics.reports, "ignored");
                tracing::info!(job = %job.name_any(), error = %e, "status not reported (ignored, as upstream)");
            }
            Err(e) => return Err(e.into()),
        }
        if status.job_state.is_complete() {
            self.failure_comment(job).await?;
        }
        let api: Api<ProwJob> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let patch =
            serde_json::json!({"status": {"prev_report_states": {REPORTER: status.job_state}}});
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&job.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The tail of a finished decorated run's log from its bucket, or why there is none.
    async fn log_tail(&self, job: &ProwJob) -> String {
        let folder = match prow_runtime::storage::RunFolder::of_job_with(job, &self.log_credentials)
        {
            Ok(Some(folder)) => folder,
            Ok(None) => return "The job keeps no log in storage (it is not decorated).".into(),
            Err(e) => return format!("The log could not be found: {e:#}"),
        };
        match folder.get("build-log.txt").await {
            Ok(Some(bytes)) => report::log_tail(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES),
            Ok(None) => format!("No log at {}/build-log.txt.", folder.url()),
            Err(e) => format!("The log could not be read from {}: {e:#}", folder.url()),
        }
    }

    async fn failure_comment(&self, job: &ProwJob) -> anyhow::Result<()> {
        let Some(refs) = job.spec.refs.as_ref() else {
            return Ok(());
        };
        let Some(pull) = refs.pulls.first() else {
            return Ok(());
        };
        if report::comment_change(None, job) == CommentChange::Nothing
            && !matches!(
                job.status.as_ref().and_then(|s| s.state),
                Some(prow_api::ProwJobState::Success)
            )
        {
            return Ok(());
        }
        let (org, repo, number) = (refs.org.as_str(), refs.repo.as_str(), pull.number);
        let key = format!("{org}/{repo}#{number}");
        let guard = lock(&self.comments).entry(key.clone()).or_default().clone();
        let _held = guard.lock().await;
        let bot = self.github.bot_login().await?;
        let existing = self
            .github
            .comments(org, repo, number)
            .await?
            .into_iter()
            .find(|(_, author, body)| author.eq_ignore_ascii_case(&bot) && body.contains(MARKER));
        match report::comment_change(existing.as_ref().map(|(_, _, b)| b.as_str()), job) {
            CommentChange::Nothing => {}
            CommentChange::Create(body) => {
                if let Some((id, _, _)) = existing {
                    self.github.delete_comment(org, repo, id).await?;
                }
                self.github.comment(org, repo, number, &body).await?;
                Metrics::count(&self.metrics.reports, "comment");
            }
            CommentChange::Edit(body) => {
                if let Some((id, _, _)) = existing {
                    self.github.edit_comment(org, repo, id, &body).await?;
                    Metrics::count(&self.metrics.reports, "comment");
                }
            }
            CommentChange::Delete => {
                if let Some((id, _, _)) = existing {
                    self.github.delete_comment(org, repo, id).await?;
                    Metrics::count(&self.metrics.reports, "comment");
                }
            }
        }
        Ok(())
    }
}
