//! prow-utils: the pod utilities of a decorated job, one static binary with four roles.
//!
//! - `clonerefs` (init container): clones the job's refs and merges its pulls, writing a record
//!   of every command to `/logs/clone.json`.
//! - `initupload` (init container): uploads `started.json` and the clone's record and log; fails
//!   the pod, with the reason, when the clone failed.
//! - `entrypoint` (copied to `/tools/entrypoint` by `place-entrypoint`, then the test
//!   container's command): runs the test, tees its output to the log, enforces the timeout
//!   (SIGINT, then SIGKILL after the grace period), writes the exit code to the marker file.
//! - `sidecar` (container): uploads the log while the test runs, then the final log,
//!   `finished.json` and the artifacts, with every mounted Secret's value scrubbed.
//!
//! Each role reads upstream's options env var (`CLONEREFS_OPTIONS`, ...), so the pod the
//! operator builds runs upstream's images or this one alike. Invoked as `entrypoint` (its file
//! name), the binary takes that role without a subcommand.

mod censor;
mod clonerefs;
mod entrypoint;
mod initupload;
mod report;
mod sidecar;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "prow-utils",
    version,
    about = "The pod utilities of decorated jobs"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Clone the refs in CLONEREFS_OPTIONS.
    Clonerefs,
    /// Upload started.json and the clone record (INITUPLOAD_OPTIONS, JOB_SPEC).
    Initupload,
    /// Run the test in ENTRYPOINT_OPTIONS with its timeout and record its exit code.
    Entrypoint {
        /// Only copy this binary to /tools/entrypoint (the place-entrypoint container).
        #[arg(long)]
        copy_mode_only: bool,
    },
    /// Upload the log while the test runs, then the results (SIDECAR_OPTIONS, JOB_SPEC).
    Sidecar,
}

fn main() -> ExitCode {
    prow_runtime::telemetry::init_stderr();
    prow_runtime::process::install_crypto_provider();
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let role = if invoked_as == "entrypoint" {
        Role::Entrypoint {
            copy_mode_only: std::env::args().any(|a| a == "--copy-mode-only"),
        }
    } else {
        Cli::parse().role
    };
    let result = match role {
        Role::Clonerefs => clonerefs::run(),
        Role::Initupload => report::block_on(initupload::run()),
        Role::Entrypoint { copy_mode_only } => entrypoint::run(copy_mode_only),
        Role::Sidecar => report::block_on(sidecar::run()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(error = %message, "failed");
            report::termination_message(&message);
            ExitCode::FAILURE
        }
    }
}
