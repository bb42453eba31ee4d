//! What every prow-operator process does the same way, whatever it reconciles or serves:
//! logging, process set-up, the health server and readiness, shutdown on signals, supervised
//! tasks, API clients, watches that recover quickly, the work queue reconcilers run on, leader election, store readiness, the settings both
//! binaries take with one grammar, and the offline validator's reading of manifest files. The operator and the webhook both build on it; neither
//! depends on the other.

pub mod client;
pub mod health;
pub mod kubeconfig_dir;
pub mod kubeconfigs;
pub mod leader;
pub mod list_items;
pub mod manifests;
pub mod process;
pub mod queue;
pub mod reflect;
pub mod settings;
pub mod shutdown;
#[cfg(feature = "storage")]
pub mod storage;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod watch;
pub mod watcher;

/// Locks `mutex`, going on with its data if a holder panicked: every lock here guards
/// bookkeeping that stays consistent between statements, and a panic in one reconcile must
/// not stop the others.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
