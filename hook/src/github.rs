//! A thin typed client of the GitHub REST API calls prow-hook makes, over reqwest: a token read
//! from its file at each call (so a rotated Secret is picked up), or a GitHub App's installation
//! tokens (one per organisation, made with the app's JWT and made again 5 minutes before they
//! expire), upstream's retry rules (8 tries
//! from a 2 s backoff that doubles for connection errors and 5xx; `Retry-After` obeyed; a 403 or
//! 429 with `X-RateLimit-Remaining: 0` waits for `X-RateLimit-Reset`), and one error type that
//! says which call failed and what GitHub said.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// The longest a call waits for GitHub's rate limit to reset before it gives up.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// Pull request files GitHub lists at most (30 pages of 100).
const MAX_FILE_PAGES: usize = 30;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub answered with an error.
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Status {
        /// The method.
        method: Method,
        /// The path called.
        path: String,
        /// The HTTP status.
        status: u16,
        /// GitHub's `message`, or the body.
        message: String,
    },
    /// GitHub could not be reached.
    #[error("calling GitHub ({method} {path}): {reason}")]
    Transport {
        /// The method.
        method: Method,
        /// The path called.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token file could not be read.
    #[error("reading the GitHub token {path}: {reason}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The GitHub App could not get a token for an organisation.
    #[error("the GitHub App has no token for {org}: {reason}")]
    App {
        /// The organisation.
        org: String,
        /// Why.
        reason: String,
    },
}

impl GitHubError {
    /// The HTTP status GitHub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a status report failing so is final and harmless, as upstream treats it: the
    /// commit is gone (a force-push), or it has GitHub's maximum number of statuses.
    pub fn ignorable_for_status(&self) -> bool {
        match self {
            GitHubError::Status {
                status, message, ..
            } => {
                *status == 404
                    || message.contains("No commit found for SHA")
                    || message.contains("maximum number of statuses")
            }
            _ => false,
        }
    }
}

/// How long to wait before trying a call again that GitHub answered with `status` and
/// `headers`, at `now` (seconds since the epoch); `None` when it is not a limit to wait out.
pub fn rate_limit_wait(status: u16, headers: &HeaderMap, now: u64) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(seconds) = header("retry-after") {
        return Some(Duration::from_secs(seconds).min(MAX_RATE_LIMIT_WAIT));
    }
    if header("x-ratelimit-remaining") == Some(0) {
        let reset = header("x-ratelimit-reset").unwrap_or(now + 60);
        return Some(
            Duration::from_secs(reset.saturating_sub(now).max(1)).min(MAX_RATE_LIMIT_WAIT),
        );
    }
    (status == 429).then(|| Duration::from_secs(60))
}

/// How the client authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A token in a file (a bot account's personal access token).
    Token(PathBuf),
    /// A GitHub App: its ID and its private key (PEM).
    App {
        /// The app's ID.
        id: String,
        /// Its private key file.
        key: PathBuf,
    },
}

/// The client's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The API's base URL (`https://api.github.com`, a GitHub Enterprise `/api/v3`, a stand-in).
    pub endpoint: String,
    /// How calls authenticate.
    pub auth: Auth,
    /// Tries per call.
    pub tries: u32,
    /// The first backoff, doubled each try.
    pub backoff: Duration,
    /// Each request's time limit.
    pub timeout: Duration,
}

/// A GitHub API client.
pub struct GitHub {
    http: reqwest::Client,
    settings: Settings,
    bot: OnceCell<String>,
    app: Option<App>,
}

/// A GitHub App's signing key and its installation tokens by organisation.
struct App {
    id: String,
    key: jsonwebtoken::EncodingKey,
    tokens: tokio::sync::Mutex<HashMap<String, (String, u64)>>,
}

/// Seconds before an installation token's expiry at which it is made again.
const TOKEN_MARGIN: u64 = 300;

impl App {
    /// The app's JWT (RS256, issued a minute ago against clock drift, valid 9 minutes), as
    /// GitHub asks.
    fn jwt(&self, now: u64) -> Result<String, GitHubError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iat: u64,
            exp: u64,
            iss: &'a str,
        }
        let claims = Claims {
            iat: now.saturating_sub(60),
            exp: now + 540,
            iss: &self.id,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| GitHubError::App {
            org: String::new(),
            reason: format!("signing the app's JWT: {e}"),
        })
    }
}

/// The organisation a call is about, from its path (`/repos/ORG/...`, `/orgs/ORG/...`).
pub fn org_of(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split(['/', '?']);
    match (parts.next(), parts.next()) {
        (Some("repos" | "orgs"), Some(org)) if !org.is_empty() => Some(org),
        _ => None,
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An answer that was not retried.
struct Answer {
    status: u16,
    body: bytes::Bytes,
}

impl GitHub {
    /// A client with `settings`.
    pub fn new(settings: Settings) -> anyhow::Result<GitHub> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("prow-hook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let app = match &settings.auth {
            Auth::Token(path) => {
                std::fs::metadata(path).map_err(|e| {
                    anyhow::anyhow!("the GitHub token {} cannot be read: {e}", path.display())
                })?;
                None
            }
            Auth::App { id, key } => {
                let pem = std::fs::read(key).map_err(|e| {
                    anyhow::anyhow!("the GitHub App's key {} cannot be read: {e}", key.display())
                })?;
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                    anyhow::anyhow!(
                        "the GitHub App's key {} is not an RSA key in PEM: {e}",
                        key.display()
                    )
                })?;
                Some(App {
                    id: id.clone(),
                    key,
                    tokens: tokio::sync::Mutex::new(HashMap::new()),
                })
            }
        };
        Ok(GitHub {
            app,
            http,
            settings: Settings {
                endpoint: settings.endpoint.trim_end_matches('/').to_string(),
                ..settings
            },
            bot: OnceCell::new(),
        })
    }

    /// The bearer token of a call to `path`: the token file's; or, for a GitHub App, the app's
    /// JWT for `/app...` and the organisation's installation token for the rest.
    async fn bearer(&self, path: &str) -> Result<String, GitHubError> {
        let Some(app) = &self.app else {
            let Auth::Token(file) = &self.settings.auth else {
                unreachable!("no app: a token file")
            };
            return std::fs::read_to_string(file)
                .map(|t| t.trim().to_string())
                .map_err(|e| GitHubError::Token {
                    path: file.clone(),
                    reason: e.to_string(),
                });
        };
        let now = now_seconds();
        let Some(org) = org_of(path).filter(|_| !path.starts_with("/app")) else {
            return app.jwt(now);
        };
        let mut tokens = app.tokens.lock().await;
        if let Some((token, expires)) = tokens.get(org) {
            if now + TOKEN_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, expires) = self.installation_token(app, org, now).await?;
        tokens.insert(org.to_string(), (token.clone(), expires));
        Ok(token)
    }

    /// A new installation token of the app for `org`, and when it expires.
    async fn installation_token(
        &self,
        app: &App,
        org: &str,
        now: u64,
    ) -> Result<(String, u64), GitHubError> {
        #[derive(serde::Deserialize)]
        struct Installation {
            id: i64,
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
            expires_at: String,
        }
        let failed = |reason: String| GitHubError::App {
            org: org.to_string(),
            reason,
        };
        let jwt = app.jwt(now)?;
        let mut installation = None;
        for path in [
            format!("/orgs/{org}/installation"),
            format!("/users/{org}/installation"),
        ] {
            let answer = self.send(Method::GET, &path, None, &jwt).await?;
            if answer.status == 200 {
                installation = serde_json::from_slice::<Installation>(&answer.body).ok();
                break;
            }
        }
        let installation =
            installation.ok_or_else(|| failed("the app is not installed there".into()))?;
        let path = format!("/app/installations/{}/access_tokens", installation.id);
        let answer = self.send(Method::POST, &path, None, &jwt).await?;
        if answer.status != 201 && answer.status != 200 {
            return Err(failed(format!("{path} answered {}", answer.status)));
        }
        let token: Token =
            serde_json::from_slice(&answer.body).map_err(|e| failed(format!("{path}: {e}")))?;
        let expires = token
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second().max(0) as u64)
            .unwrap_or(now + 3600);
        tracing::info!(
            org,
            installation = installation.id,
            "made a GitHub App installation token"
        );
        Ok((token.token, expires))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, GitHubError> {
        let bearer = self.bearer(path).await?;
        self.send(method, path, body, &bearer).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: &str,
    ) -> Result<Answer, GitHubError> {
        let url = format!("{}{path}", self.settings.endpoint);
        let mut backoff = self.settings.backoff;
        let tries = self.settings.tries.max(1);
        for attempt in 1..=tries {
            let last = attempt == tries;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .bearer_auth(bearer);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if !last => {
                    tracing::debug!(%method, path, error = %e, "GitHub call failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(e) => {
                    return Err(GitHubError::Transport {
                        method,
                        path: path.to_string(),
                        reason: e.to_string(),
                    })
                }
            };
            let status = response.status().as_u16();
            let now = now_seconds();
            if !last {
                if let Some(wait) = rate_limit_wait(status, response.headers(), now) {
                    tracing::warn!(%method, path, status, wait_seconds = wait.as_secs(), "GitHub's rate limit: waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                if status >= 500 {
                    tracing::debug!(%method, path, status, "GitHub failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
            }
            let body = response.bytes().await.unwrap_or_default();
            return Ok(Answer { status, body });
        }
        unreachable!("the last try returns")
    }

    /// A call whose answer must be 2xx.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, GitHubError> {
        let answer = self.call(method.clone(), path, body).await?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let message = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect()
            });
        Err(GitHubError::Status {
            method,
            path: path.to_string(),
            status: answer.status,
            message,
        })
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, GitHubError> {
        let body = self.ok(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|e| GitHubError::Status {
            method: Method::GET,
            path: path.to_string(),
            status: 200,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// A DELETE where gone already (404) is as good as deleted.
    async fn delete(&self, path: &str) -> Result<(), GitHubError> {
        match self.ok(Method::DELETE, path, None).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(drop),
        }
    }

    /// A yes/no question GitHub answers with 204 or 404.
    async fn yes_no(&self, path: &str) -> Result<bool, GitHubError> {
        let answer = self.call(Method::GET, path, None).await?;
        match answer.status {
            204 | 200 => Ok(true),
            404 | 302 => Ok(false),
            status => Err(GitHubError::Status {
                method: Method::GET,
                path: path.to_string(),
                status,
                message: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect(),
            }),
        }
    }

    /// The login the token acts as (the bot), asked once: the token's user, or a GitHub App's
    /// `slug[bot]`.
    pub async fn bot_login(&self) -> Result<String, GitHubError> {
        #[derive(Deserialize)]
        struct Me {
            login: String,
        }
        #[derive(Deserialize)]
        struct AppInfo {
            slug: String,
        }
        self.bot
            .get_or_try_init(|| async {
                if self.app.is_some() {
                    let app: AppInfo = self.get("/app").await?;
                    Ok(format!("{}[bot]", app.slug))
                } else {
                    self.get::<Me>("/user").await.map(|m| m.login)
                }
            })
            .await
            .cloned()
    }

    /// Whether `user` is a member of `org`.
    pub async fn is_member(&self, org: &str, user: &str) -> Result<bool, GitHubError> {
        self.yes_no(&format!("/orgs/{org}/members/{user}")).await
    }

    /// Whether `user` is a collaborator of `org/repo`.
    pub async fn is_collaborator(
        &self,
        org: &str,
        repo: &str,
        user: &str,
    ) -> Result<bool, GitHubError> {
        self.yes_no(&format!("/repos/{org}/{repo}/collaborators/{user}"))
            .await
    }

    /// The commit `branch` points at now.
    pub async fn branch_head(
        &self,
        org: &str,
        repo: &str,
        branch: &str,
    ) -> Result<String, GitHubError> {
        #[derive(Deserialize)]
        struct Ref {
            object: Object,
        }
        #[derive(Deserialize)]
        struct Object {
            sha: String,
        }
        let r: Ref = self
            .get(&format!("/repos/{org}/{repo}/git/ref/heads/{branch}"))
            .await?;
        Ok(r.object.sha)
    }

    /// Every page of the list at `path`, up to 30 pages of 100.
    async fn paged<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<Vec<T>, GitHubError> {
        let mut all = Vec::new();
        for page in 1..=MAX_FILE_PAGES {
            let batch: Vec<T> = self
                .get(&format!("{path}?per_page=100&page={page}"))
                .await?;
            let full = batch.len() == 100;
            all.extend(batch);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// The files a pull request changes (a renamed file under both names), every page.
    pub async fn pull_files(
        &self,
        org: &str,
        repo: &str,
        number: i64,
    ) -> Result<Vec<String>, GitHubError> {
        #[derive(Deserialize)]
        struct File {
            filename: String,
            #[serde(default)]
            previous_filename: Option<String>,
        }
        let files: Vec<File> = self
            .paged(&format!("/repos/{org}/{repo}/pulls/{number}/files"))
            .await?;
        Ok(files
            .into_iter()
            .flat_map(|f| f.previous_filename.into_iter().chain([f.filename]))
            .collect())
    }

    /// A pull request as it is now.
    pub async fn pull_request(
        &self,
        org: &str,
        repo: &str,
        number: i64,
    ) -> Result<prow_api::hook::events::PullRequest, GitHubError> {
        self.get(&format!("/repos/{org}/{repo}/pulls/{number}"))
            .await
    }

    /// The contexts of `sha`'s statuses with their states.
    pub async fn statuses(
        &self,
        org: &str,
        repo: &str,
        sha: &str,
    ) -> Result<Vec<(String, String)>, GitHubError> {
        #[derive(Deserialize)]
        struct Combined {
            #[serde(default)]
            statuses: Vec<One>,
        }
        #[derive(Deserialize)]
        struct One {
            context: String,
            state: String,
        }
        let c: Combined = self
            .get(&format!(
                "/repos/{org}/{repo}/commits/{sha}/status?per_page=100"
            ))
            .await?;
        Ok(c.statuses
            .into_iter()
            .map(|s| (s.context, s.state))
            .collect())
    }

    /// Adds `label` to issue or pull request `number`.
    pub async fn add_label(
        &self,
        org: &str,
        repo: &str,
        number: i64,
        label: &str,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{org}/{repo}/issues/{number}/labels");
        self.ok(Method::POST, &path, Some(&json!({"labels": [label]})))
            .await
            .map(drop)
    }

    /// Takes `label` off issue or pull request `number` (absent already is fine).
    pub async fn remove_label(
        &self,
        org: &str,
        repo: &str,
        number: i64,
        label: &str,
    ) -> Result<(), GitHubError> {
        self.delete(&format!(
            "/repos/{org}/{repo}/issues/{number}/labels/{label}"
        ))
        .await
    }

    /// Comments on issue or pull request `number`.
    pub async fn comment(
        &self,
        org: &str,
        repo: &str,
        number: i64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{org}/{repo}/issues/{number}/comments");
        self.ok(Method::POST, &path, Some(&json!({"body": body})))
            .await
            .map(drop)
    }

    /// The comments of issue or pull request `number` as (id, author, body), every page.
    pub async fn comments(
        &self,
        org: &str,
        repo: &str,
        number: i64,
    ) -> Result<Vec<(i64, String, String)>, GitHubError> {
        #[derive(Deserialize)]
        struct C {
            id: i64,
            #[serde(default)]
            user: Option<prow_api::hook::events::User>,
            #[serde(default)]
            body: Option<String>,
        }
        let comments: Vec<C> = self
            .paged(&format!("/repos/{org}/{repo}/issues/{number}/comments"))
            .await?;
        Ok(comments
            .into_iter()
            .map(|c| {
                (
                    c.id,
                    c.user.map(|u| u.login).unwrap_or_default(),
                    c.body.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Replaces comment `id`'s text.
    pub async fn edit_comment(
        &self,
        org: &str,
        repo: &str,
        id: i64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{org}/{repo}/issues/comments/{id}");
        self.ok(Method::PATCH, &path, Some(&json!({"body": body})))
            .await
            .map(drop)
    }

    /// Deletes comment `id` (gone already is fine).
    pub async fn delete_comment(&self, org: &str, repo: &str, id: i64) -> Result<(), GitHubError> {
        self.delete(&format!("/repos/{org}/{repo}/issues/comments/{id}"))
            .await
    }

    /// The check runs of `sha` as (name, external_id, id, conclusion), every one or those named
    /// `name`.
    pub async fn check_runs(
        &self,
        org: &str,
        repo: &str,
        sha: &str,
        name: Option<&str>,
    ) -> Result<Vec<(String, String, i64, Option<String>)>, GitHubError> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            check_runs: Vec<Run>,
        }
        #[derive(Deserialize)]
        struct Run {
            id: i64,
            name: String,
            #[serde(default)]
            external_id: Option<String>,
            #[serde(default)]
            conclusion: Option<String>,
        }
        let filter = name
            .map(|n| format!("&check_name={}", encode(n)))
            .unwrap_or_default();
        let list: List = self
            .get(&format!(
                "/repos/{org}/{repo}/commits/{sha}/check-runs?per_page=100{filter}"
            ))
            .await?;
        Ok(list
            .check_runs
            .into_iter()
            .map(|r| {
                (
                    r.name,
                    r.external_id.unwrap_or_default(),
                    r.id,
                    r.conclusion,
                )
            })
            .collect())
    }

    /// Creates the check run of `check`'s ProwJob, or updates it (found by its `external_id`),
    /// with `text` as its output's text.
    pub async fn upsert_check_run(
        &self,
        check: &prow_api::hook::report::CheckRun,
        text: Option<String>,
    ) -> Result<(), GitHubError> {
        let (org, repo) = (check.org.as_str(), check.repo.as_str());
        let existing = self
            .check_runs(org, repo, &check.head_sha, Some(&check.name))
            .await?
            .into_iter()
            .find(|(_, external, _, _)| *external == check.external_id);
        let mut body = json!({
            "name": check.name,
            "external_id": check.external_id,
            "status": check.status,
            "output": {"title": check.title, "summary": check.title},
        });
        if let Some(conclusion) = check.conclusion {
            body["conclusion"] = json!(conclusion);
        }
        if !check.details_url.is_empty() {
            body["details_url"] = json!(check.details_url);
        }
        if let Some(text) = text {
            body["output"]["text"] = json!(text);
        }
        match existing {
            Some((_, _, id, _)) => {
                let path = format!("/repos/{org}/{repo}/check-runs/{id}");
                self.ok(Method::PATCH, &path, Some(&body)).await.map(drop)
            }
            None => {
                body["head_sha"] = json!(check.head_sha);
                let path = format!("/repos/{org}/{repo}/check-runs");
                self.ok(Method::POST, &path, Some(&body)).await.map(drop)
            }
        }
    }

    /// Posts a commit status.
    pub async fn create_status(
        &self,
        status: &prow_api::hook::report::Status,
    ) -> Result<(), GitHubError> {
        let path = format!(
            "/repos/{}/{}/statuses/{}",
            status.org, status.repo, status.sha
        );
        let mut body = json!({
            "state": status.state,
            "context": status.context,
            "description": status.description,
        });
        if !status.target_url.is_empty() {
            body["target_url"] = json!(status.target_url);
        }
        self.ok(Method::POST, &path, Some(&body)).await.map(drop)
    }
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("pull-unit_1.x~"), "pull-unit_1.x~");
        assert_eq!(encode("e2e / gce&x=é"), "e2e%20%2F%20gce%26x%3D%C3%A9");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn limits_are_waited_out_as_github_says() {
        let now = 1_000;
        let cases = [
            (403, headers(&[("retry-after", "7")]), Some(7)),
            (429, headers(&[("retry-after", "2")]), Some(2)),
            (
                403,
                headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1030"),
                ]),
                Some(30),
            ),
            (
                403,
                headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")]),
                Some(1),
            ),
            (
                403,
                headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "99999999"),
                ]),
                Some(3600),
            ),
            (403, headers(&[("x-ratelimit-remaining", "12")]), None),
            (403, headers(&[]), None),
            (429, headers(&[]), Some(60)),
            (500, headers(&[("retry-after", "7")]), None),
            (200, headers(&[("x-ratelimit-remaining", "0")]), None),
        ];
        for (status, h, want) in cases {
            assert_eq!(
                rate_limit_wait(status, &h, now).map(|d| d.as_secs()),
                want,
                "{status} {h:?}"
            );
        }
    }

    #[test]
    fn the_organisation_of_a_call_is_read_from_its_path() {
        let cases = [
            ("/repos/acme/widgets/statuses/abc", Some("acme")),
            ("/orgs/acme/members/alice", Some("acme")),
            ("/repos/acme?x=1", Some("acme")),
            ("/user", None),
            ("/app/installations/1/access_tokens", None),
            ("/repos//x", None),
        ];
        for (path, want) in cases {
            assert_eq!(org_of(path), want, "{path}");
        }
    }

    #[test]
    fn only_gone_commits_and_full_status_lists_are_ignored() {
        let err = |status, message: &str| GitHubError::Status {
            method: Method::POST,
            path: "/x".into(),
            status,
            message: message.into(),
        };
        assert!(err(422, "No commit found for SHA: abc").ignorable_for_status());
        assert!(err(404, "Not Found").ignorable_for_status());
        assert!(err(
            422,
            "This SHA and context has reached the maximum number of statuses."
        )
        .ignorable_for_status());
        assert!(!err(422, "Validation Failed").ignorable_for_status());
        assert!(!err(401, "Bad credentials").ignorable_for_status());
    }
}
