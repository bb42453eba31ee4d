//! The admission webhook's parts, shared by the `prow-webhook` binary and the benchmark (which
//! serves a bare echo over the same TLS stack as its reference): the admission rules applied to
//! reviews, the HTTP routes, TLS serving with certificate reload and metrics. The offline validator
//! (`prow-webhook validate`) is `prow_runtime::manifests`, the same code as `prowctl validate`.

pub mod admission;
pub mod certs;
pub mod fuzzing;
pub mod metrics;
pub mod selftls;
pub mod server;
pub mod tls;
