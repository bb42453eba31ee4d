//! prow-hook: GitHub's side of the CI loop, in place of upstream's `hook` (with its trigger
//! plugin) and `crier`'s GitHub reporter. Deliveries come in through [`intake`], the
//! [`trigger`] turns them into ProwJobs by upstream's rules (`prow_api::hook`), and the
//! [`reporter`], on the elected replica only, reports every run's states back to GitHub.

pub mod github;
pub mod intake;
pub mod metrics;
pub mod reporter;
pub mod trigger;

/// prow-hook's name on what it writes (field manager).
pub const MANAGER: &str = "prow-hook";
