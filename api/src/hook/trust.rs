//! Who may start jobs, and what each `pull_request` action does, as upstream's trigger plugin:
//! the per-repository settings (upstream's `triggers` entries of its plugin configuration), the
//! trust of GitHub Apps, and the step each action takes.

use serde::Deserialize;

use super::events::PullRequestEvent;

/// The trigger settings of a set of repositories (upstream's `triggers:` entry).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    /// `org` or `org/repo` these settings apply to.
    #[serde(default)]
    pub repos: Vec<String>,
    /// GitHub Apps (by name, without `[bot]`) whose pull requests and comments are trusted.
    #[serde(default)]
    pub trusted_apps: Vec<String>,
    /// Trust organisation members only, not the repository's collaborators.
    #[serde(default)]
    pub only_org_members: bool,
    /// Ignore `/ok-to-test`: only trusted authors' pull requests are tested.
    #[serde(default)]
    pub ignore_ok_to_test: bool,
    /// Where the welcome comment tells an outsider to ask for membership.
    #[serde(default)]
    pub join_org_url: String,
    /// Upstream's Actions re-run switch; accepted and unused (no GitHub Actions here).
    #[serde(default)]
    pub trigger_github_workflows: bool,
}

/// The hook's configuration file (`--plugin-config`): upstream's plugin configuration, of which
/// the `triggers:` list is read; other keys are upstream plugins' and are ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct HookConfig {
    /// Trigger settings by repository.
    #[serde(default)]
    pub triggers: Vec<TriggerSettings>,
}

impl HookConfig {
    /// Reads the file; a malformed `triggers` entry is an error that names it.
    pub fn parse(text: &str) -> Result<HookConfig, String> {
        if text.trim().is_empty() {
            return Ok(HookConfig::default());
        }
        serde_yaml::from_str(text).map_err(|e| format!("the hook's configuration: {e}"))
    }

    /// The settings of `org/repo`: the entry naming the repository, else its organisation,
    /// else the defaults.
    pub fn trigger_for(&self, org: &str, repo: &str) -> TriggerSettings {
        let full = format!("{org}/{repo}");
        self.triggers
            .iter()
            .find(|t| t.repos.contains(&full))
            .or_else(|| {
                self.triggers
                    .iter()
                    .find(|t| t.repos.iter().any(|r| r == org))
            })
            .cloned()
            .unwrap_or_default()
    }
}

/// The trust of a GitHub App's account (`name[bot]`): trusted when its name is listed; `None`
/// for a person (membership decides).
pub fn app_trust(login: &str, settings: &TriggerSettings) -> Option<bool> {
    let app = login.strip_suffix("[bot]")?;
    Some(settings.trusted_apps.iter().any(|a| a == app))
}

/// What a `pull_request` action does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullRequestStep {
    /// Nothing (another action, or the bot's own label).
    Nothing,
    /// Abort the pull request's unfinished runs (`closed`, `converted_to_draft`).
    Abort,
    /// `opened`: run the automatic jobs if the author is trusted, else welcome the author and
    /// label the pull request `needs-ok-to-test`.
    Opened,
    /// Run the automatic jobs if the pull request is trusted (`reopened`, `ready_for_review`,
    /// `edited` with a new base, `synchronize`); `abort_first` aborts its unfinished runs first
    /// (they test an older commit or base).
    RunIfTrusted {
        /// Abort unfinished runs first.
        abort_first: bool,
    },
    /// `labeled ok-to-test` by someone other than the bot: run the automatic jobs.
    OkToTestLabeled,
}

/// The step for `event`; `bot` is the hook's own login.
pub fn pull_request_step(event: &PullRequestEvent, bot: &str) -> PullRequestStep {
    match event.action.as_str() {
        "opened" => PullRequestStep::Opened,
        "reopened" | "ready_for_review" => PullRequestStep::RunIfTrusted { abort_first: false },
        "edited" if event.base_changed() => PullRequestStep::RunIfTrusted { abort_first: true },
        "synchronize" => PullRequestStep::RunIfTrusted { abort_first: true },
        "labeled"
            if event
                .label
                .as_ref()
                .is_some_and(|l| l.name == super::commands::OK_TO_TEST)
                && !event.sender.login.eq_ignore_ascii_case(bot) =>
        {
            PullRequestStep::OkToTestLabeled
        }
        "closed" | "converted_to_draft" => PullRequestStep::Abort,
        _ => PullRequestStep::Nothing,
    }
}

/// The comment an untrusted author's new pull request gets.
pub fn welcome(author: &str, org: &str, settings: &TriggerSettings) -> String {
    let join = if settings.join_org_url.is_empty() {
        String::new()
    } else {
        format!(
            " Regular contributors can [become members of {org}]({}) to skip this step.",
            settings.join_org_url
        )
    };
    format!(
        "Hi @{author}, thank you for the pull request.\n\nIts jobs run once a member of {org} has \
         looked at it and commented `/ok-to-test` on a line of its own; until then, new commits \
         are not tested by themselves, though members can still start jobs with `/test`.{join}\n\n\
         The `ok-to-test` label shows that the pull request was allowed to be tested."
    )
}

/// The answer to an untrusted commenter on an untrusted pull request.
pub fn cannot_trigger(commenter: &str) -> String {
    format!(
        "@{commenter}: jobs cannot be started here until a trusted user has reviewed the pull \
         request and commented `/ok-to-test`."
    )
}
