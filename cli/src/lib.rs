//! prowctl's parts: the offline validator (also `prow-webhook validate`), the import of an
//! upstream Prow configuration, the Kubernetes-native manual trigger and the calls of the
//! operator's cimaster-compatible HTTP API.

pub mod cluster;
pub mod import;
pub mod remote;
pub mod validate;
