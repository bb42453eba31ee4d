//! The operator's parts: configuration, the reconcilers, metrics and retention. Process plumbing
//! shared with the webhook and prow-hook (the work queue and leader election among it) lives in
//! `prow-runtime`, re-exported here under its old paths.

/// The operator's name on everything it writes: the field manager of its writes, the
/// reporting controller of its Events, the manager label of the objects it owns.
pub const MANAGER: &str = "prow-operator";

/// Parameters of a patch the operator makes: it is the field manager of what it writes.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Parameters of a create the operator makes: it is the field manager of what it writes.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

pub mod advertise;
pub mod buildclusters;
pub mod compat;
pub mod config;
pub mod controller;
pub mod definitions;
pub mod error;
pub mod events;
pub mod metrics;
#[cfg(test)]
pub(crate) mod mock;
pub mod presets;
pub mod prowjob;
pub mod retention;
pub mod testclusters;

pub use prow_runtime::{leader, queue};
