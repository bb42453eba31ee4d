//! GitHub's webhook payloads, the fields of them the trigger rules read. Unknown fields are
//! ignored and missing optional ones default, so GitHub adding fields never breaks intake.

use serde::Deserialize;

/// The events `prow-hook` acts on, by `X-GitHub-Event`; every other event is acknowledged and
/// ignored.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `pull_request`.
    PullRequest(Box<PullRequestEvent>),
    /// `issue_comment`.
    IssueComment(Box<IssueCommentEvent>),
    /// `pull_request_review`.
    Review(Box<ReviewEvent>),
    /// `push`.
    Push(Box<PushEvent>),
}

/// Why a payload was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {event} payload is not valid: {reason}")]
pub struct BadPayload {
    /// `X-GitHub-Event`.
    pub event: String,
    /// serde's message, with its line and column.
    pub reason: String,
}

impl Event {
    /// Reads the payload of `event`: `Ok(None)` for an event `prow-hook` ignores.
    pub fn parse(event: &str, body: &[u8]) -> Result<Option<Event>, BadPayload> {
        fn read<T: for<'de> Deserialize<'de>>(event: &str, body: &[u8]) -> Result<T, BadPayload> {
            serde_json::from_slice(body).map_err(|e| BadPayload {
                event: event.to_string(),
                reason: e.to_string(),
            })
        }
        Ok(Some(match event {
            "pull_request" => Event::PullRequest(read(event, body)?),
            "issue_comment" => Event::IssueComment(read(event, body)?),
            "pull_request_review" => Event::Review(read(event, body)?),
            "push" => Event::Push(read(event, body)?),
            _ => return Ok(None),
        }))
    }

    /// The repository the event is about.
    pub fn repository(&self) -> &Repository {
        match self {
            Event::PullRequest(e) => &e.repository,
            Event::IssueComment(e) => &e.repository,
            Event::Review(e) => &e.repository,
            Event::Push(e) => &e.repository,
        }
    }
}

/// A GitHub account.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The login (`octocat`, `dependabot[bot]`).
    #[serde(default)]
    pub login: String,
    /// The profile page.
    #[serde(default)]
    pub html_url: String,
}

/// A repository.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Repository {
    /// `repo`.
    pub name: String,
    /// `org/repo`.
    #[serde(default)]
    pub full_name: String,
    /// The organisation or user that owns it.
    pub owner: User,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
    /// Its default branch.
    #[serde(default)]
    pub default_branch: String,
}

impl Repository {
    /// The owner's login (`org`).
    pub fn org(&self) -> &str {
        &self.owner.login
    }
}

/// A label.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Label {
    /// Its name.
    pub name: String,
}

/// One side of a pull request.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Branch {
    /// The branch name.
    #[serde(rename = "ref", default)]
    pub name: String,
    /// Its commit.
    #[serde(default)]
    pub sha: String,
}

/// A pull request.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number.
    pub number: i64,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// Its description.
    #[serde(default)]
    pub body: Option<String>,
    /// Who opened it.
    pub user: User,
    /// Its labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// The branch and commit tested.
    pub head: Branch,
    /// The branch it merges into.
    pub base: Branch,
    /// Whether it is a draft.
    #[serde(default)]
    pub draft: bool,
    /// Whether it merged.
    #[serde(default)]
    pub merged: bool,
    /// Whether GitHub can merge it; `None` while GitHub has not decided.
    #[serde(default)]
    pub mergeable: Option<bool>,
}

impl PullRequest {
    /// Whether it carries the label `name`.
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l.name == name)
    }
}

/// `pull_request`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PullRequestEvent {
    /// `opened`, `synchronize`, `labeled`, ...
    pub action: String,
    /// The pull request's number.
    #[serde(default)]
    pub number: i64,
    /// The pull request, as it is now.
    pub pull_request: PullRequest,
    /// Its repository.
    pub repository: Repository,
    /// Who did it.
    #[serde(default)]
    pub sender: User,
    /// The label added or removed (`labeled`, `unlabeled`).
    #[serde(default)]
    pub label: Option<Label>,
    /// What an `edited` changed: `{"base": {...}}` when the base branch changed.
    #[serde(default)]
    pub changes: Option<serde_json::Value>,
}

impl PullRequestEvent {
    /// Whether an `edited` event changed the base branch.
    pub fn base_changed(&self) -> bool {
        self.changes
            .as_ref()
            .and_then(|c| c.get("base"))
            .is_some_and(|b| !b.is_null())
    }
}

/// The issue (or pull request) a comment is on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Issue {
    /// Its number.
    pub number: i64,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: String,
    /// Who opened it.
    #[serde(default)]
    pub user: User,
    /// Its labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
}

impl Issue {
    /// Whether the issue is a pull request.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|p| !p.is_null())
    }
}

/// A comment.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Comment {
    /// Its ID.
    #[serde(default)]
    pub id: i64,
    /// Its text.
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub user: User,
}

/// `issue_comment`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct IssueCommentEvent {
    /// `created`, `edited` or `deleted`.
    pub action: String,
    /// The issue or pull request.
    pub issue: Issue,
    /// The comment.
    pub comment: Comment,
    /// Its repository.
    pub repository: Repository,
}

/// A review.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Review {
    /// Its text.
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub user: User,
}

/// `pull_request_review`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ReviewEvent {
    /// `submitted`, `edited` or `dismissed`.
    pub action: String,
    /// The review.
    pub review: Review,
    /// The pull request reviewed.
    pub pull_request: PullRequest,
    /// Its repository.
    pub repository: Repository,
}

/// A commit of a push.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Commit {
    /// Its SHA.
    #[serde(default)]
    pub id: String,
    /// Files it added.
    #[serde(default)]
    pub added: Vec<String>,
    /// Files it removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Files it changed.
    #[serde(default)]
    pub modified: Vec<String>,
}

/// `push`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PushEvent {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit before.
    #[serde(default)]
    pub before: String,
    /// The commit after: all zeros when the ref was deleted.
    #[serde(default)]
    pub after: String,
    /// Whether the ref was deleted.
    #[serde(default)]
    pub deleted: bool,
    /// The comparison page.
    #[serde(default)]
    pub compare: String,
    /// The commits pushed.
    #[serde(default)]
    pub commits: Vec<Commit>,
    /// Its repository.
    pub repository: Repository,
    /// Who pushed.
    #[serde(default)]
    pub sender: User,
}

impl PushEvent {
    /// The branch or tag pushed: `refs/heads/` or `refs/tags/` taken off.
    pub fn branch(&self) -> &str {
        self.git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| self.git_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&self.git_ref)
    }

    /// Whether the push deleted its ref (it starts nothing).
    pub fn is_deletion(&self) -> bool {
        self.deleted || self.after.is_empty() || self.after.bytes().all(|b| b == b'0')
    }

    /// Every file the pushed commits touched, once each, in order.
    pub fn changed_files(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut files = Vec::new();
        for commit in &self.commits {
            for file in commit
                .added
                .iter()
                .chain(&commit.removed)
                .chain(&commit.modified)
            {
                if seen.insert(file.as_str()) {
                    files.push(file.clone());
                }
            }
        }
        files
    }
}
