//! The operator's parts: configuration, the reconcilers and their work queue, leader election,
//! metrics and retention. Process plumbing shared with the webhook lives in `prow-runtime`.

/// The operator's name on everything it writes: the field manager of its writes, the
/// reporting controller of its Events, the manager label of the objects it owns.
pub const MANAGER: &str = "prow-operator";

pub mod advertise;
pub mod compat;
pub mod config;
pub mod controller;
pub mod definitions;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
#[cfg(test)]
pub(crate) mod mock;
pub mod presets;
pub mod prowjob;
pub mod queue;
pub mod retention;
pub mod testclusters;
