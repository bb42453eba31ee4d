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
    /// Serialising a request body failed.
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
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
