//! prowctl's parts: the import of an upstream Prow configuration, the Kubernetes-native manual trigger and the calls of the
//! operator's cimaster-compatible HTTP API. The offline validator is
//! `prow_runtime::manifests`, shared with `prow-webhook validate`.

pub mod cluster;
pub mod import;
pub mod logs;
pub mod remote;
