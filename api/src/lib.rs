//! The prow-operator kinds and the pure rules about them. No I/O lives here: every decision the
//! operator and the webhook take is a function of its inputs, tested with tables.

pub mod buildcluster;
pub mod cluster_plan;
pub mod compat;
pub mod concurrency;
pub mod conditions;
pub mod crd;
pub mod dashboard;
pub mod decorate;
pub mod dedupe;
pub mod definition_status;
pub mod duration;
pub mod hook;
pub mod job_url;
pub mod jobdefinition;
pub mod labels;
pub mod lease;
pub mod lifecycle;
pub mod plan;
pub mod pod;
pub mod pod_view;
pub mod pool;
pub mod preset;
pub mod prowjob;
pub mod retention;
pub mod schedule;
pub mod schema;
pub mod testcluster;
pub mod testclusterpool;
mod upstream;
pub mod validate;
pub mod wire;

pub use preset::{Preset, PresetSpec, PresetStatus};
pub use prowjob::{
    DecorationConfig, ProwJob, ProwJobAgent, ProwJobSpec, ProwJobState, ProwJobStatus, ProwJobType,
    Pull, Refs,
};
pub use testcluster::{
    ClusterLease, ClusterPhase, TestCluster, TestClusterSpec, TestClusterStatus,
};
