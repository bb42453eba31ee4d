//! The operator's building blocks: configuration, telemetry, the health server and shutdown.
//! The webhook binary shares the same blocks so both processes start and stop alike.

pub mod config;
pub mod error;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod presets;
pub mod prowjob;
pub mod queue;
pub mod retention;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
pub mod watch;
