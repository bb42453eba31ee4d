//! Upstream's trigger plugin on checked deliveries: the pure rules of `prow_api::hook` applied
//! with what only GitHub and the API server know (membership, the base branch's head, the
//! changed files, the pull request's statuses; the definitions, the runs).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prow_api::hook::commands::{Commands, NEEDS_OK_TO_TEST, OK_TO_TEST};
use prow_api::hook::events::{
    Event, IssueCommentEvent, PullRequest, PullRequestEvent, PushEvent, Repository, ReviewEvent,
};
use prow_api::hook::runs::{self, abort_patch};
use prow_api::hook::select::{self, Filter};
use prow_api::hook::trust::{self, HookConfig, PullRequestStep, TriggerSettings};
use prow_api::jobdefinition::JobDefinition;
use prow_api::ProwJob;

use crate::github::GitHub;
use crate::intake::Delivery;
use crate::metrics::Metrics;
use crate::MANAGER;

/// Everything the trigger reads and writes through.
pub struct Trigger {
    /// The API server.
    pub client: Client,
    /// GitHub.
    pub github: Arc<GitHub>,
    /// The JobDefinitions, from a watch cache.
    pub definitions: Store<JobDefinition>,
    /// The per-repository settings (replaced when their file changes).
    pub config: Arc<RwLock<HookConfig>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Where a comment came from.
struct Comment<'a> {
    repo: &'a Repository,
    number: i64,
    author: &'a str,
    body: &'a str,
    /// The pull request, when the payload has it (a review); fetched otherwise.
    pull: Option<&'a PullRequest>,
}

impl Trigger {
    /// Handles one delivery.
    pub async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        let guid = delivery.guid.as_str();
        match &delivery.event {
            Event::PullRequest(e) => self.pull_request(guid, e).await?,
            Event::IssueComment(e) => self.issue_comment(guid, e).await?,
            Event::Review(e) => self.review(guid, e).await?,
            Event::Push(e) => self.push(guid, e).await?,
        }
        self.metrics
            .delivery_to_run
            .observe(delivery.received.elapsed().as_secs_f64());
        Ok(())
    }

    fn settings(&self, repo: &Repository) -> TriggerSettings {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .trigger_for(repo.org(), &repo.name)
    }

    /// The definitions of `repo` (GitHub's names are case-insensitive).
    fn definitions_of(&self, repo: &Repository) -> Vec<Arc<JobDefinition>> {
        let full = format!("{}/{}", repo.org(), repo.name);
        let mut defs: Vec<_> = self
            .definitions
            .state()
            .into_iter()
            .filter(|d| d.spec.repo.eq_ignore_ascii_case(&full))
            .collect();
        defs.sort_by_key(|d| (d.namespace(), d.name_any()));
        defs
    }

    async fn trusted_user(
        &self,
        settings: &TriggerSettings,
        repo: &Repository,
        login: &str,
    ) -> anyhow::Result<bool> {
        if login.eq_ignore_ascii_case(&self.github.bot_login().await?) {
            return Ok(true);
        }
        if let Some(app) = trust::app_trust(login, settings) {
            return Ok(app);
        }
        if self.github.is_member(repo.org(), login).await? {
            return Ok(true);
        }
        Ok(!settings.only_org_members
            && self
                .github
                .is_collaborator(repo.org(), &repo.name, login)
                .await?)
    }

    async fn trusted_pull(
        &self,
        settings: &TriggerSettings,
        repo: &Repository,
        pr: &PullRequest,
    ) -> anyhow::Result<bool> {
        Ok(self.trusted_user(settings, repo, &pr.user.login).await?
            || (!settings.ignore_ok_to_test && pr.has_label(OK_TO_TEST)))
    }

    async fn pull_request(&self, guid: &str, e: &PullRequestEvent) -> anyhow::Result<()> {
        let bot = self.github.bot_login().await?;
        let (repo, pr) = (&e.repository, &e.pull_request);
        let settings = self.settings(repo);
        match trust::pull_request_step(e, &bot) {
            PullRequestStep::Nothing => Ok(()),
            PullRequestStep::Abort => {
                let why = if e.action == "closed" {
                    "Aborted: the pull request was closed."
                } else {
                    "Aborted: the pull request became a draft."
                };
                self.abort_pull(repo, pr.number, why).await
            }
            PullRequestStep::Opened => {
                if self.trusted_user(&settings, repo, &pr.user.login).await? {
                    self.run(guid, repo, pr, &Filter::Automatic).await?;
                } else {
                    self.welcome(&settings, repo, pr).await?;
                }
                if let Some(body) = pr
                    .body
                    .as_deref()
                    .filter(|b| Commands::parse(b).has_commands())
                {
                    let comment = Comment {
                        repo,
                        number: pr.number,
                        author: &pr.user.login,
                        body,
                        pull: Some(pr),
                    };
                    self.comment(guid, comment).await?;
                }
                Ok(())
            }
            PullRequestStep::RunIfTrusted { abort_first } => {
                if abort_first {
                    self.abort_pull(repo, pr.number, "Aborted: the pull request changed.")
                        .await?;
                }
                if self.trusted_pull(&settings, repo, pr).await? {
                    self.run(guid, repo, pr, &Filter::Automatic).await?;
                }
                Ok(())
            }
            PullRequestStep::OkToTestLabeled => self.run(guid, repo, pr, &Filter::Automatic).await,
        }
    }

    async fn welcome(
        &self,
        settings: &TriggerSettings,
        repo: &Repository,
        pr: &PullRequest,
    ) -> anyhow::Result<()> {
        let (org, name) = (repo.org(), repo.name.as_str());
        self.github
            .comment(
                org,
                name,
                pr.number,
                &trust::welcome(&pr.user.login, org, settings),
            )
            .await?;
        if !pr.has_label(NEEDS_OK_TO_TEST) {
            self.github
                .add_label(org, name, pr.number, NEEDS_OK_TO_TEST)
                .await?;
        }
        Ok(())
    }

    async fn issue_comment(&self, guid: &str, e: &IssueCommentEvent) -> anyhow::Result<()> {
        if e.action != "created" || !e.issue.is_pull_request() || e.issue.state != "open" {
            return Ok(());
        }
        let comment = Comment {
            repo: &e.repository,
            number: e.issue.number,
            author: &e.comment.user.login,
            body: e.comment.body.as_deref().unwrap_or_default(),
            pull: None,
        };
        self.comment(guid, comment).await
    }

    async fn review(&self, guid: &str, e: &ReviewEvent) -> anyhow::Result<()> {
        if e.action != "submitted" || e.pull_request.state != "open" {
            return Ok(());
        }
        let comment = Comment {
            repo: &e.repository,
            number: e.pull_request.number,
            author: &e.review.user.login,
            body: e.review.body.as_deref().unwrap_or_default(),
            pull: Some(&e.pull_request),
        };
        self.comment(guid, comment).await
    }

    async fn comment(&self, guid: &str, c: Comment<'_>) -> anyhow::Result<()> {
        let commands = Commands::parse(c.body);
        if !commands.has_commands()
            || c.author
                .eq_ignore_ascii_case(&self.github.bot_login().await?)
        {
            return Ok(());
        }
        let (org, name) = (c.repo.org(), c.repo.name.as_str());
        let settings = self.settings(c.repo);
        let fetched;
        let pr = match c.pull {
            Some(pr) => pr,
            None => {
                fetched = self.github.pull_request(org, name, c.number).await?;
                &fetched
            }
        };
        let defs = self.definitions_of(c.repo);
        let refs: Vec<&JobDefinition> = defs.iter().map(|d| d.as_ref()).collect();
        let named = refs
            .iter()
            .any(|d| prow_api::hook::commands::triggers(d, &commands));
        let acts = commands.ok_to_test
            || commands.ok_to_test_cancel
            || commands.test_all
            || commands.retest
            || commands.retest_required
            || commands.list_jobs
            || named;
        if !acts {
            return Ok(());
        }
        let commenter_trusted = self.trusted_user(&settings, c.repo, c.author).await?;
        if !commenter_trusted && !self.trusted_pull(&settings, c.repo, pr).await? {
            self.github
                .comment(org, name, c.number, &trust::cannot_trigger(c.author))
                .await?;
            return Ok(());
        }
        let mut commands = commands;
        if commenter_trusted && !settings.ignore_ok_to_test {
            if commands.ok_to_test_cancel {
                self.github
                    .remove_label(org, name, c.number, OK_TO_TEST)
                    .await?;
                self.github
                    .add_label(org, name, c.number, NEEDS_OK_TO_TEST)
                    .await?;
            } else if commands.ok_to_test {
                if pr.has_label(NEEDS_OK_TO_TEST) {
                    self.github
                        .remove_label(org, name, c.number, NEEDS_OK_TO_TEST)
                        .await?;
                }
                if !pr.has_label(OK_TO_TEST) {
                    self.github
                        .add_label(org, name, c.number, OK_TO_TEST)
                        .await?;
                }
            }
        } else {
            commands.ok_to_test = false;
        }
        if commands.list_jobs {
            let text = select::job_list(&refs, &pr.base.name, c.author);
            self.github.comment(org, name, c.number, &text).await?;
        }
        let (mut failed, mut all) = (BTreeSet::new(), BTreeSet::new());
        if commands.retest || commands.retest_required {
            for (context, state) in self.github.statuses(org, name, &pr.head.sha).await? {
                if state == "failure" || state == "error" {
                    failed.insert(context.clone());
                }
                all.insert(context);
            }
            // Check runs too, for a reporter set to --report-as=checks.
            for (context, _, _, conclusion) in self
                .github
                .check_runs(org, name, &pr.head.sha, None)
                .await?
            {
                if matches!(
                    conclusion.as_deref(),
                    Some("failure" | "timed_out" | "cancelled")
                ) {
                    failed.insert(context.clone());
                }
                all.insert(context);
            }
        }
        let filter = Filter::Comment {
            commands,
            failed,
            all,
        };
        self.run(guid, c.repo, pr, &filter).await
    }

    /// Starts the presubmits `filter` asks for on `pr`, aborting older runs of the same jobs.
    async fn run(
        &self,
        guid: &str,
        repo: &Repository,
        pr: &PullRequest,
        filter: &Filter,
    ) -> anyhow::Result<()> {
        if pr.draft && *filter == Filter::Automatic {
            tracing::info!(
                pull = pr.number,
                "a draft: its jobs wait until it is ready for review"
            );
            return Ok(());
        }
        if pr.mergeable == Some(false) {
            tracing::info!(pull = pr.number, "not mergeable: no job starts");
            return Ok(());
        }
        let (org, name) = (repo.org(), repo.name.as_str());
        let defs = self.definitions_of(repo);
        let refs: Vec<&JobDefinition> = defs.iter().map(|d| d.as_ref()).collect();
        let (candidates, errors) = select::candidates(&refs, &pr.base.name, filter);
        log_skipped(&errors);
        if candidates.is_empty() {
            return Ok(());
        }
        let changes = if select::needs_changes(&candidates) {
            Some(self.github.pull_files(org, name, pr.number).await?)
        } else {
            None
        };
        let (chosen, errors) = select::decide(candidates, changes.as_deref());
        log_skipped(&errors);
        if chosen.is_empty() {
            return Ok(());
        }
        let base_sha = self.github.branch_head(org, name, &pr.base.name).await?;
        let mut jobs = Vec::new();
        for def in chosen {
            match runs::presubmit_run(def, repo, pr, &base_sha, guid) {
                Ok(job) => jobs.push(job),
                Err(e) => self.refused(def, &e),
            }
        }
        // Older runs of the same jobs and pull request are aborted by the operator, from its
        // cache, as upstream's plank does: nothing here lists.
        self.create_all(jobs).await.map(drop)
    }

    fn refused(&self, def: &JobDefinition, error: &prow_api::jobdefinition::CannotRun) {
        Metrics::count(&self.metrics.runs, "refused");
        tracing::warn!(definition = %def.name_any(), error = %error, "no run made");
    }

    /// Creates the runs of one event at once (an event of a repository with 20 presubmits
    /// makes 20).
    async fn create_all(&self, jobs: Vec<ProwJob>) -> anyhow::Result<Vec<ProwJob>> {
        futures::future::try_join_all(jobs.into_iter().map(|job| self.create(job))).await
    }

    async fn create(&self, job: ProwJob) -> anyhow::Result<ProwJob> {
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<ProwJob> = Api::namespaced(self.client.clone(), &namespace);
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match api.create(&params, &job).await {
            Ok(created) => {
                Metrics::count(&self.metrics.runs, "created");
                tracing::info!(job = %created.name_any(), namespace, "run created");
                Ok(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Metrics::count(&self.metrics.runs, "existing");
                Ok(job)
            }
            Err(e) => {
                Err(e).with_context(|| format!("creating ProwJob {namespace}/{}", job.name_any()))
            }
        }
    }

    /// Aborts every unfinished presubmit run of pull request `number` of `repo`.
    async fn abort_pull(&self, repo: &Repository, number: i64, why: &str) -> anyhow::Result<()> {
        let selector = runs::pull_selector(repo.org(), &repo.name, number);
        let namespaces: BTreeSet<String> = self
            .definitions_of(repo)
            .iter()
            .filter_map(|d| d.namespace())
            .collect();
        for namespace in namespaces {
            let api: Api<ProwJob> = Api::namespaced(self.client.clone(), &namespace);
            // From the API server's watch cache (resourceVersion 0), not etcd: a pull request's
            // runs are few, the namespace's may be many.
            let params = ListParams::default().labels(&selector).match_any();
            for old in api.list(&params).await?.items {
                if runs::is_unfinished(&old) {
                    self.abort(&api, &old, why).await?;
                }
            }
        }
        Ok(())
    }

    async fn abort(&self, api: &Api<ProwJob>, job: &ProwJob, why: &str) -> anyhow::Result<()> {
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&job.name_any(), &params, &Patch::Merge(&abort_patch(why)))
            .await
        {
            Ok(_) => {
                tracing::info!(job = %job.name_any(), reason = why, "run aborted");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("aborting {}", job.name_any())),
        }
    }

    async fn push(&self, guid: &str, e: &PushEvent) -> anyhow::Result<()> {
        if e.is_deletion() {
            return Ok(());
        }
        let changes = e.changed_files();
        let mut jobs = Vec::new();
        for def in self.definitions_of(&e.repository) {
            match select::postsubmit_runs(&def, e.branch(), &changes) {
                Ok(true) => match runs::postsubmit_run(&def, e, guid) {
                    Ok(job) => jobs.push(job),
                    Err(err) => self.refused(&def, &err),
                },
                Ok(false) => {}
                Err(err) => log_skipped(&[err]),
            }
        }
        self.create_all(jobs).await?;
        Ok(())
    }
}

fn log_skipped(errors: &[String]) {
    for e in errors {
        tracing::warn!(error = %e, "a job was skipped: its definition does not read");
    }
}
