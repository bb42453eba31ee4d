//! The operator library's error type.

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write lost a race with another writer (its resourceVersion was stale): decide again.
    #[error("conflict writing {0}: decide again from fresh state")]
    Conflict(String),
    /// The job's pod could not be built.
    #[error("building the pod: {0}")]
    Pod(#[from] prow_api::pod::PodError),
    /// The job's build cluster is not there to act in (it went away during the reconcile).
    #[error("build cluster {0:?} is not reached")]
    NoCluster(String),
    /// Serialising a request body failed.
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// What kind of failure it is, for metrics and logs: `conflict` (a lost race, decided
    /// again), `refused` (the API server refused the request: 4xx), `unavailable` (the API
    /// server could not be reached or failed: connection errors, timeouts, 5xx, 429), `pod`
    /// (the job's pod cannot be built), `encoding` (a body could not be serialised).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Conflict(_) => "conflict",
            Error::Kube(e) if api_code(e).is_some_and(|c| c == 409) => "conflict",
            Error::Kube(e) if is_request_error(e) => "refused",
            Error::Kube(_) | Error::NoCluster(_) => "unavailable",
            Error::Pod(_) => "pod",
            Error::Json(_) => "encoding",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an API error is the server refusing the request itself (4xx other than conflict and
/// rate limiting), which retrying the same request cannot fix.
pub fn is_request_error(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429)
}

/// The HTTP status code of an API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("m", "r")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn every_error_has_a_category() {
        let cases = [
            (Error::Conflict("j".into()), "conflict"),
            (api(409), "conflict"),
            (api(403), "refused"),
            (api(422), "refused"),
            (api(429), "unavailable"),
            (api(503), "unavailable"),
            (Error::Pod(prow_api::pod::PodError::NoPodSpec), "pod"),
            (
                Error::Json(serde_json::from_str::<u8>("x").unwrap_err()),
                "encoding",
            ),
        ];
        for (error, category) in cases {
            assert_eq!(error.category(), category, "{error}");
        }
    }
}
