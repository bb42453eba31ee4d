//! What every prow-operator process does the same way, whatever it reconciles or serves:
//! logging, process set-up, the health server and readiness, shutdown on signals, supervised
//! tasks, API clients, watches that recover quickly, store readiness, and the settings both
//! binaries take with one grammar. The operator and the webhook both build on it; neither
//! depends on the other.

pub mod client;
pub mod health;
pub mod process;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod watch;
