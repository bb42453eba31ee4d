//! Helpers for tests of prow-hook: GitHub's real webhook payloads (the npm package
//! `@octokit/webhooks-examples`, found through `PROW_TEST_WEBHOOK_EXAMPLES`) rewritten to a
//! test's repository and users, prow-hook started against the GitHub stand-in, and signed
//! deliveries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::github::FakeGitHub;
use crate::process::Running;
use crate::TestEnv;

/// The variable naming `api.github.com/index.json` of `@octokit/webhooks-examples`.
pub const EXAMPLES_VAR: &str = "PROW_TEST_WEBHOOK_EXAMPLES";

/// GitHub's example payloads, by event.
pub struct Examples(Vec<Value>);

impl Examples {
    /// Reads the examples; `None`, after one line, where they are not installed (an error under
    /// `CI=true`: kind-tests/scripts/test.sh installs them).
    pub fn load() -> anyhow::Result<Option<Examples>> {
        let Some(path) = std::env::var_os(EXAMPLES_VAR) else {
            anyhow::ensure!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{EXAMPLES_VAR} is not set under CI=true: kind-tests/scripts/test.sh installs \
                 @octokit/webhooks-examples"
            );
            eprintln!("prow-hook test skipped: {EXAMPLES_VAR} is not set (run the test command)");
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", PathBuf::from(&path).display()))?;
        let events: Vec<Value> = serde_json::from_str(&text)?;
        Ok(Some(Examples(events)))
    }

    /// Every example of `event`.
    pub fn all(&self, event: &str) -> Vec<Value> {
        self.0
            .iter()
            .find(|e| e["name"] == event)
            .and_then(|e| e["examples"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The first example of `event` with `action` (any action when `None`).
    pub fn one(&self, event: &str, action: Option<&str>) -> Value {
        self.all(event)
            .into_iter()
            .find(|e| action.is_none_or(|a| e["action"] == a))
            .unwrap_or_else(|| panic!("no {event} example with action {action:?}"))
    }
}

/// The repository and pull request a test's payloads are about.
#[derive(Clone, Debug)]
pub struct Pr {
    /// Organisation.
    pub org: String,
    /// Repository.
    pub repo: String,
    /// Number.
    pub number: i64,
    /// Its author.
    pub author: String,
    /// Its head commit.
    pub sha: String,
    /// Its base branch.
    pub base: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Whether it is a draft.
    pub draft: bool,
}

impl Pr {
    /// `org/repo#number`, as the stand-in keys it.
    pub fn key(&self) -> String {
        format!("{}/{}#{}", self.org, self.repo, self.number)
    }

    fn repository(&self, mut repo: Value) -> Value {
        repo["name"] = json!(self.repo);
        repo["full_name"] = json!(format!("{}/{}", self.org, self.repo));
        repo["owner"]["login"] = json!(self.org);
        repo["html_url"] = json!(format!("https://github.com/{}/{}", self.org, self.repo));
        repo
    }

    /// The pull request object GitHub would show.
    pub fn pull_request(&self, mut pr: Value) -> Value {
        pr["number"] = json!(self.number);
        pr["state"] = json!("open");
        pr["draft"] = json!(self.draft);
        pr["merged"] = json!(false);
        pr["mergeable"] = Value::Null;
        pr["title"] = json!(format!("Change {}", self.number));
        pr["html_url"] = json!(format!(
            "https://github.com/{}/{}/pull/{}",
            self.org, self.repo, self.number
        ));
        pr["user"]["login"] = json!(self.author);
        pr["head"]["sha"] = json!(self.sha);
        pr["head"]["ref"] = json!(format!("change-{}", self.number));
        pr["base"]["ref"] = json!(self.base);
        pr["base"]["repo"] = self.repository(pr["base"]["repo"].clone());
        pr["labels"] = json!(self
            .labels
            .iter()
            .map(|l| json!({"name": l}))
            .collect::<Vec<_>>());
        pr["body"] = json!("A change.");
        pr
    }

    /// GitHub's `pull_request` example for `action`, rewritten to this pull request, sent by
    /// `sender`.
    pub fn event(&self, examples: &Examples, action: &str, sender: &str) -> Value {
        let mut e = examples.one("pull_request", Some(action));
        e["number"] = json!(self.number);
        e["pull_request"] = self.pull_request(e["pull_request"].clone());
        e["repository"] = self.repository(e["repository"].clone());
        e["sender"]["login"] = json!(sender);
        e
    }

    /// GitHub's `issue_comment` `created` example, rewritten to a comment by `user` on this
    /// pull request.
    pub fn comment(&self, examples: &Examples, user: &str, body: &str) -> Value {
        let mut e = examples
            .all("issue_comment")
            .into_iter()
            .find(|e| e["action"] == "created" && !e["issue"]["pull_request"].is_null())
            .unwrap_or_else(|| examples.one("issue_comment", Some("created")));
        e["issue"]["number"] = json!(self.number);
        e["issue"]["state"] = json!("open");
        e["issue"]["user"]["login"] = json!(self.author);
        e["issue"]["pull_request"] = json!({"url": format!("https://api.github.com/repos/{}/{}/pulls/{}", self.org, self.repo, self.number)});
        e["comment"]["user"]["login"] = json!(user);
        e["comment"]["body"] = json!(body);
        e["repository"] = self.repository(e["repository"].clone());
        e["sender"]["login"] = json!(user);
        e
    }

    /// Tells the stand-in about this pull request (as `GET .../pulls/N` shows it) with its
    /// changed `files`, and the base branch's head.
    pub fn publish(
        &self,
        github: &FakeGitHub,
        examples: &Examples,
        files: &[&str],
        base_head: &str,
    ) {
        let pr =
            self.pull_request(examples.one("pull_request", Some("opened"))["pull_request"].clone());
        github.with(|s| {
            s.pulls.insert(self.key(), pr);
            s.files
                .insert(self.key(), files.iter().map(|f| f.to_string()).collect());
            s.labels.insert(self.key(), self.labels.clone());
            s.branches.insert(
                format!("{}/{}:{}", self.org, self.repo, self.base),
                base_head.to_string(),
            );
        });
    }
}

/// GitHub's `push` example rewritten to a push of `after` to `git_ref` of `org/repo` that
/// changed `files`.
pub fn push_event(
    examples: &Examples,
    org: &str,
    repo: &str,
    git_ref: &str,
    after: &str,
    files: &[&str],
) -> Value {
    let mut e = examples
        .all("push")
        .into_iter()
        .find(|e| e["deleted"] == false)
        .unwrap_or_else(|| examples.one("push", None));
    e["ref"] = json!(git_ref);
    e["after"] = json!(after);
    e["deleted"] = json!(false);
    e["repository"]["name"] = json!(repo);
    e["repository"]["full_name"] = json!(format!("{org}/{repo}"));
    e["repository"]["owner"]["login"] = json!(org);
    e["repository"]["owner"]["name"] = json!(org);
    e["repository"]["html_url"] = json!(format!("https://github.com/{org}/{repo}"));
    e["commits"] = json!([{"id": after, "added": files, "removed": [], "modified": []}]);
    e
}

/// prow-hook started for one test against its own GitHub stand-in.
pub struct Hook {
    /// The stand-in.
    pub github: FakeGitHub,
    /// The process.
    pub process: Running,
    /// The HMAC secret.
    pub secret: String,
    /// Its files (secret, token, configuration), removed when dropped.
    pub dir: Files,
    http: reqwest::Client,
}

/// A directory removed when dropped.
pub struct Files(pub PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static DELIVERIES: AtomicU64 = AtomicU64::new(1);

/// A new delivery ID.
pub fn guid() -> String {
    format!(
        "{:08x}-test-{}-{}",
        std::process::id(),
        DELIVERIES.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    )
}

impl Hook {
    /// Starts a stand-in (bot `prow-bot`, token `test-token`) and prow-hook for `env`'s
    /// namespace, with `plugin_config` as its `--plugin-config` when not empty.
    pub async fn start(env: &TestEnv, plugin_config: &str, extra: &[&str]) -> anyhow::Result<Hook> {
        let github = FakeGitHub::start("test-token", "prow-bot").await?;
        Self::start_with(env, github, plugin_config, extra).await
    }

    /// Starts prow-hook against `github`, which the test set up (a GitHub App, say).
    pub async fn start_with(
        env: &TestEnv,
        github: FakeGitHub,
        plugin_config: &str,
        extra: &[&str],
    ) -> anyhow::Result<Hook> {
        let dir = std::env::temp_dir().join(format!("prow-hook-{}-{}", env.namespace, guid()));
        std::fs::create_dir_all(&dir)?;
        let secret = format!("hmac-{}", env.namespace);
        std::fs::write(dir.join("hmac"), &secret)?;
        std::fs::write(dir.join("token"), "test-token\n")?;
        let mut args = vec![
            format!("--hmac-secret-file={}", dir.join("hmac").display()),
            format!("--github-token-path={}", dir.join("token").display()),
            format!("--github-endpoint={}", github.endpoint()),
            "--github-backoff=50ms".to_string(),
            "--github-tries=4".to_string(),
            format!("--namespace={}", env.namespace),
            format!("--leader-election-namespace={}", env.namespace),
        ];
        if !plugin_config.is_empty() {
            std::fs::write(dir.join("plugins.yaml"), plugin_config)?;
            args.push(format!(
                "--plugin-config={}",
                dir.join("plugins.yaml").display()
            ));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process =
            tokio::task::block_in_place(|| Running::start("prow-hook", &env.kubeconfig, &args))?;
        Ok(Hook {
            github,
            process,
            secret,
            dir: Files(dir),
            http: reqwest::Client::new(),
        })
    }

    /// The hook's URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.process.health)
    }

    /// Sends `payload` as event `event` with delivery ID `guid`, signed; the status and body.
    pub async fn deliver_as(
        &self,
        event: &str,
        guid: &str,
        payload: &Value,
    ) -> anyhow::Result<(u16, String)> {
        let answer = self.send(event, guid, payload).await?;
        Ok((answer.status().as_u16(), answer.text().await?))
    }

    /// Sends `payload` as event `event` with delivery ID `guid`, signed; the whole answer.
    pub async fn send(
        &self,
        event: &str,
        guid: &str,
        payload: &Value,
    ) -> anyhow::Result<reqwest::Response> {
        let body = serde_json::to_vec(payload)?;
        let signature = prow_hook::intake::sign(&self.secret, &body);
        Ok(self
            .http
            .post(self.url())
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", guid)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await?)
    }

    /// Sends `payload` as `event` with a new delivery ID; fails unless answered 200.
    pub async fn deliver(&self, event: &str, payload: &Value) -> anyhow::Result<String> {
        let id = guid();
        let (status, body) = self.deliver_as(event, &id, payload).await?;
        anyhow::ensure!(status == 200, "{event} answered {status}: {body}");
        Ok(id)
    }

    /// A raw request to the hook, for hostile-input tests.
    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.http.request(method, self.url())
    }
}
