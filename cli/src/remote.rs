//! Calls of the operator's cimaster-compatible HTTP API (`--compat-listen`; the chart's
//! `testClusterApi`): holds, releases and manual triggers, with the caller's bearer token.

use std::time::Duration;

use anyhow::Context as _;
use prow_api::jobdefinition::DefinitionType;
use serde_json::json;

/// Where the API is and who calls it.
#[derive(Clone, Debug)]
pub struct Remote {
    /// `http://HOST:PORT` of the API.
    pub server: String,
    /// Bearer token; none calls anonymously (served only with `--compat-allow-anonymous`).
    pub token: Option<String>,
}

/// An answer that is not a success: the status and the API's reason.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {status}: {reason}")]
pub struct Refused {
    /// The call.
    pub call: String,
    /// Its HTTP status.
    pub status: u16,
    /// What the API said.
    pub reason: String,
}

/// A manual run as the manual-trigger request names it.
#[derive(Clone, Debug)]
pub struct Trigger {
    /// The job's name.
    pub job: String,
    /// Its type.
    pub kind: DefinitionType,
    /// `org/repo`, for presubmits and postsubmits.
    pub repo: Option<String>,
    /// Branch the run tests.
    pub base_ref: Option<String>,
    /// Who asks, recorded beside the authenticated caller.
    pub user: Option<String>,
}

impl Remote {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.server.trim_end_matches('/'))
    }

    fn finish(
        &self,
        call: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<String> {
        let mut response = response.with_context(|| format!("calling {}", self.url(call)))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {call}"))?;
        let text = text.trim().to_string();
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(Refused {
                call: call.to_string(),
                status,
                reason: text,
            }
            .into())
        }
    }

    /// `GET /{call}?{params}`: the plain-text answer of a success.
    pub fn call(&self, call: &str, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut request = Self::agent().get(self.url(call));
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        self.finish(call, request.call())
    }

    /// `POST /manual-trigger`: `NAMESPACE/RUN` of the run it created.
    pub fn trigger(&self, t: &Trigger) -> anyhow::Result<String> {
        let (org, repo) = match &t.repo {
            Some(r) => r
                .split_once('/')
                .with_context(|| format!("--repo {r:?} is not org/repo"))?,
            None => ("", ""),
        };
        let body = json!({
            "org": org,
            "repo": repo,
            "base_ref": t.base_ref.clone().unwrap_or_default(),
            "prowtype": t.kind,
            "prowjob": t.job,
            "user": t.user.clone().unwrap_or_default(),
        });
        let mut request = Self::agent()
            .post(self.url("manual-trigger"))
            .content_type("application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        self.finish("manual-trigger", request.send(body.to_string()))
    }
}
