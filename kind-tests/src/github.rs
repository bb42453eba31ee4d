//! A stand-in of the GitHub REST API calls prow-hook makes, for tests: it serves what the test
//! sets (the bot's login, organisation members, collaborators, branch heads, pull requests,
//! their changed files, labels and comments) and records every call, every status, label and
//! comment. A test double for request shapes only: the behaviour under test is asserted on the
//! API server's ProwJobs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use warp::http::{Method, StatusCode};
use warp::Filter;

/// A status GitHub was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `org/repo`.
    pub repo: String,
    /// The commit.
    pub sha: String,
    /// pending, success, failure or error.
    pub state: String,
    /// The context.
    pub context: String,
    /// The description.
    pub description: String,
    /// The link.
    pub target_url: String,
}

/// A check run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckRun {
    /// Its ID.
    pub id: i64,
    /// `org/repo`.
    pub repo: String,
    /// The commit.
    pub head_sha: String,
    /// Its name (the context).
    pub name: String,
    /// The ProwJob's name.
    pub external_id: String,
    /// Every (status, conclusion) it was given, in order.
    pub states: Vec<(String, String)>,
    /// Its output's text.
    pub text: String,
    /// Its link.
    pub details_url: String,
}

/// A comment on an issue or pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Its ID.
    pub id: i64,
    /// `org/repo#number`.
    pub on: String,
    /// Who wrote it.
    pub user: String,
    /// Its text.
    pub body: String,
}

/// One call as it arrived.
#[derive(Clone, Debug)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The path and query.
    pub path: String,
    /// The JSON body, if any.
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

/// What the stand-in knows and was told.
#[derive(Default)]
pub struct State {
    /// The token calls must carry.
    pub token: String,
    /// The bot's login (`GET /user`).
    pub bot: String,
    /// Members by organisation.
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Collaborators by `org/repo`.
    pub collaborators: BTreeMap<String, BTreeSet<String>>,
    /// Branch heads by `org/repo:branch`.
    pub branches: BTreeMap<String, String>,
    /// Pull requests by `org/repo#number` (GitHub's JSON; its labels are kept in `labels`).
    pub pulls: BTreeMap<String, Value>,
    /// Changed files by `org/repo#number`.
    pub files: BTreeMap<String, Vec<String>>,
    /// Labels by `org/repo#number`.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Every comment made (deleted ones removed).
    pub comments: Vec<Comment>,
    /// Every status posted, in order.
    pub statuses: Vec<Status>,
    /// Check runs as they are now, and every state each went through.
    pub checks: Vec<CheckRun>,
    /// Commits that are gone (a status on one is answered 422 "No commit found for SHA").
    pub gone: BTreeSet<String>,
    /// Answers to give the next calls instead of the real one (a 502, a rate limit).
    pub fail_next: VecDeque<u16>,
    /// Every call.
    pub calls: Vec<Call>,
    /// A GitHub App whose JWTs and installation tokens are accepted too.
    pub app: Option<AppState>,
    next_id: i64,
}

/// A GitHub App the stand-in knows.
pub struct AppState {
    /// Its ID (the JWT's `iss`).
    pub id: String,
    /// Its slug (the bot is `slug[bot]`).
    pub slug: String,
    /// Its public key, to check JWTs.
    pub key: jsonwebtoken::DecodingKey,
    /// Installation IDs by organisation.
    pub installations: BTreeMap<String, i64>,
    /// Seconds an installation token lives.
    pub token_seconds: u64,
    /// Installation tokens issued: token -> (organisation, expiry in seconds since the epoch).
    pub issued: BTreeMap<String, (String, u64)>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Whether `bearer` may make the call to `path`: the token, or for an app, its JWT (for
/// `/app...` and installation look-ups) or an unexpired installation token of the path's
/// organisation.
fn authorised(s: &State, path: &str, bearer: &str) -> bool {
    if !s.token.is_empty() && bearer == s.token {
        return true;
    }
    let Some(app) = &s.app else {
        return false;
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let wants_jwt = parts.first() == Some(&"app")
        || matches!(parts.as_slice(), ["orgs" | "users", _, "installation"]);
    if wants_jwt {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[app.id.as_str()]);
        return jsonwebtoken::decode::<Value>(bearer, &app.key, &validation).is_ok();
    }
    let org = match parts.as_slice() {
        ["repos" | "orgs", org, ..] => *org,
        _ => return false,
    };
    app.issued
        .get(bearer)
        .is_some_and(|(for_org, expires)| for_org == org && *expires > now())
}

/// The running stand-in.
#[derive(Clone)]
pub struct FakeGitHub {
    /// Its address.
    pub address: SocketAddr,
    /// Its state, for the test to set and read.
    pub state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    /// Starts one on a free loopback port, accepting `token`, with `bot` as its login.
    pub async fn start(token: &str, bot: &str) -> anyhow::Result<FakeGitHub> {
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            bot: bot.into(),
            next_id: 1000,
            ..State::default()
        }));
        let shared = state.clone();
        let route = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut s = shared.lock().unwrap();
                    let full = if query.is_empty() {
                        path.as_str().to_string()
                    } else {
                        format!("{}?{query}", path.as_str())
                    };
                    s.calls.push(Call {
                        method: method.clone(),
                        path: full,
                        body: body.clone(),
                        status: 0,
                    });
                    let bearer = auth
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    let (status, answer) = if !authorised(&s, path.as_str(), bearer) {
                        (401, json!({"message": "Bad credentials"}))
                    } else if let Some(code) = s.fail_next.pop_front() {
                        (code, json!({"message": "injected"}))
                    } else {
                        serve(&mut s, &method, path.as_str(), &query, &body)
                    };
                    if let Some(call) = s.calls.last_mut() {
                        call.status = status;
                    }
                    let mut reply = warp::reply::with_status(
                        warp::reply::json(&answer),
                        StatusCode::from_u16(status).unwrap(),
                    )
                    .into_response();
                    if status == 429 || status == 403 {
                        reply
                            .headers_mut()
                            .insert("retry-after", "1".parse().unwrap());
                    }
                    reply
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Ok(FakeGitHub { address, state })
    }

    /// Its base URL, for `--github-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The statuses posted so far.
    pub fn statuses(&self) -> Vec<Status> {
        self.with(|s| s.statuses.clone())
    }

    /// The comments on `org/repo#number` now.
    pub fn comments_on(&self, on: &str) -> Vec<Comment> {
        self.with(|s| s.comments.iter().filter(|c| c.on == on).cloned().collect())
    }

    /// The labels of `org/repo#number` now.
    pub fn labels_of(&self, on: &str) -> Vec<String> {
        self.with(|s| s.labels.get(on).cloned().unwrap_or_default())
    }
}

use warp::Reply;

fn serve(s: &mut State, method: &Method, path: &str, query: &str, body: &Value) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let page = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1);
    let none = || (404, json!({"message": "Not Found"}));
    let yes_no = |yes: bool| {
        if yes {
            (204, Value::Null)
        } else {
            (404, json!({"message": "Not Found"}))
        }
    };
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) => (200, json!({"login": s.bot})),
        ("GET", ["app"]) => match &s.app {
            Some(app) => (200, json!({"id": app.id, "slug": app.slug})),
            None => none(),
        },
        ("GET", ["orgs" | "users", org, "installation"]) => {
            match s.app.as_ref().and_then(|a| a.installations.get(*org)) {
                Some(id) => (200, json!({"id": id})),
                None => none(),
            }
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            let Some(app) = s.app.as_mut() else {
                return none();
            };
            let Some(org) = app
                .installations
                .iter()
                .find(|(_, i)| i.to_string() == *id)
                .map(|(o, _)| o.clone())
            else {
                return none();
            };
            let token = format!("ghs_{}_{}", org, app.issued.len());
            let expires = now() + app.token_seconds;
            app.issued.insert(token.clone(), (org, expires));
            let at = jiff::Timestamp::from_second(expires as i64)
                .map(|t| t.to_string())
                .unwrap_or_default();
            (201, json!({"token": token, "expires_at": at}))
        }
        ("GET", ["orgs", org, "members", user]) => {
            yes_no(s.members.get(*org).is_some_and(|m| m.contains(*user)))
        }
        ("GET", ["repos", org, repo, "collaborators", user]) => yes_no(
            s.collaborators
                .get(&format!("{org}/{repo}"))
                .is_some_and(|m| m.contains(*user)),
        ),
        ("GET", ["repos", org, repo, "git", "ref", "heads", branch @ ..]) => {
            match s
                .branches
                .get(&format!("{org}/{repo}:{}", branch.join("/")))
            {
                Some(sha) => (
                    200,
                    json!({"ref": format!("refs/heads/{}", branch.join("/")), "object": {"sha": sha, "type": "commit"}}),
                ),
                None => none(),
            }
        }
        ("GET", ["repos", org, repo, "pulls", number]) => {
            let key = format!("{org}/{repo}#{number}");
            match s.pulls.get(&key) {
                Some(pr) => {
                    let mut pr = pr.clone();
                    let labels: Vec<Value> = s
                        .labels
                        .get(&key)
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|l| json!({"name": l}))
                        .collect();
                    pr["labels"] = json!(labels);
                    (200, pr)
                }
                None => none(),
            }
        }
        ("GET", ["repos", org, repo, "pulls", number, "files"]) => {
            let files = s
                .files
                .get(&format!("{org}/{repo}#{number}"))
                .cloned()
                .unwrap_or_default();
            let page: Vec<Value> = files
                .iter()
                .skip((page - 1) * 100)
                .take(100)
                .map(|f| json!({"filename": f, "status": "modified"}))
                .collect();
            (200, json!(page))
        }
        ("GET", ["repos", org, repo, "commits", sha, "check-runs"]) => {
            let name = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("check_name="))
                .map(|n| n.replace("%20", " ").replace("%2F", "/"));
            let repo = format!("{org}/{repo}");
            let runs: Vec<Value> = s
                .checks
                .iter()
                .filter(|c| c.repo == repo && c.head_sha == *sha && name.as_ref().is_none_or(|n| *n == c.name))
                .map(|c| {
                    let (status, conclusion) = c.states.last().cloned().unwrap_or_default();
                    json!({"id": c.id, "name": c.name, "external_id": c.external_id, "status": status,
                           "conclusion": if conclusion.is_empty() { Value::Null } else { json!(conclusion) }})
                })
                .collect();
            (200, json!({"total_count": runs.len(), "check_runs": runs}))
        }
        ("POST", ["repos", org, repo, "check-runs"]) => {
            s.next_id += 1;
            let text = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let run = CheckRun {
                id: s.next_id,
                repo: format!("{org}/{repo}"),
                head_sha: text("head_sha"),
                name: text("name"),
                external_id: text("external_id"),
                states: vec![(text("status"), text("conclusion"))],
                text: body["output"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                details_url: text("details_url"),
            };
            let id = run.id;
            s.checks.push(run);
            (201, json!({"id": id}))
        }
        ("PATCH", ["repos", _, _, "check-runs", id]) => {
            let id: i64 = id.parse().unwrap_or_default();
            let text = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            match s.checks.iter_mut().find(|c| c.id == id) {
                Some(run) => {
                    run.states.push((text("status"), text("conclusion")));
                    if let Some(t) = body["output"]["text"].as_str() {
                        run.text = t.to_string();
                    }
                    (200, json!({"id": id}))
                }
                None => none(),
            }
        }
        ("GET", ["repos", org, repo, "commits", sha, "status"]) => {
            let repo = format!("{org}/{repo}");
            let mut latest: BTreeMap<String, &Status> = BTreeMap::new();
            for st in s
                .statuses
                .iter()
                .filter(|st| st.repo == repo && st.sha == *sha)
            {
                latest.insert(st.context.clone(), st);
            }
            let statuses: Vec<Value> = latest
                .values()
                .map(|st| json!({"context": st.context, "state": st.state}))
                .collect();
            (200, json!({"sha": sha, "statuses": statuses}))
        }
        ("POST", ["repos", org, repo, "statuses", sha]) => {
            if s.gone.contains(*sha) {
                return (
                    422,
                    json!({"message": format!("No commit found for SHA: {sha}")}),
                );
            }
            let text = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            s.statuses.push(Status {
                repo: format!("{org}/{repo}"),
                sha: sha.to_string(),
                state: text("state"),
                context: text("context"),
                description: text("description"),
                target_url: text("target_url"),
            });
            (201, json!({}))
        }
        ("GET", ["repos", org, repo, "issues", number, "labels"]) => {
            let labels = s
                .labels
                .get(&format!("{org}/{repo}#{number}"))
                .cloned()
                .unwrap_or_default();
            (
                200,
                json!(labels
                    .iter()
                    .map(|l| json!({"name": l}))
                    .collect::<Vec<_>>()),
            )
        }
        ("POST", ["repos", org, repo, "issues", number, "labels"]) => {
            let labels = s
                .labels
                .entry(format!("{org}/{repo}#{number}"))
                .or_default();
            for l in body["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str())
            {
                if !labels.iter().any(|x| x == l) {
                    labels.push(l.to_string());
                }
            }
            (
                200,
                json!(labels
                    .iter()
                    .map(|l| json!({"name": l}))
                    .collect::<Vec<_>>()),
            )
        }
        ("DELETE", ["repos", org, repo, "issues", number, "labels", label]) => {
            let labels = s
                .labels
                .entry(format!("{org}/{repo}#{number}"))
                .or_default();
            let before = labels.len();
            labels.retain(|l| l != label);
            if labels.len() == before {
                none()
            } else {
                (200, json!([]))
            }
        }
        ("GET", ["repos", org, repo, "issues", number, "comments"]) => {
            let on = format!("{org}/{repo}#{number}");
            let all: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| c.on == on)
                .skip((page - 1) * 100)
                .take(100)
                .map(|c| json!({"id": c.id, "user": {"login": c.user}, "body": c.body}))
                .collect();
            (200, json!(all))
        }
        ("POST", ["repos", org, repo, "issues", number, "comments"]) => {
            s.next_id += 1;
            let comment = Comment {
                id: s.next_id,
                on: format!("{org}/{repo}#{number}"),
                user: s.bot.clone(),
                body: body["body"].as_str().unwrap_or_default().to_string(),
            };
            s.comments.push(comment.clone());
            (201, json!({"id": comment.id, "body": comment.body}))
        }
        ("PATCH", ["repos", _, _, "issues", "comments", id]) => {
            let id: i64 = id.parse().unwrap_or_default();
            match s.comments.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    c.body = body["body"].as_str().unwrap_or_default().to_string();
                    (200, json!({"id": id}))
                }
                None => none(),
            }
        }
        ("DELETE", ["repos", _, _, "issues", "comments", id]) => {
            let id: i64 = id.parse().unwrap_or_default();
            let before = s.comments.len();
            s.comments.retain(|c| c.id != id);
            if s.comments.len() == before {
                none()
            } else {
                (204, Value::Null)
            }
        }
        _ => none(),
    }
}
