//! Logging set-up shared by the operator and the webhook.

use clap::ValueEnum;
use serde::Serialize;
use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// The default filter: `info`, but rustls only for errors. kube-client turns rustls's logging
/// on, and rustls warns once per handshake about what a client sent (an IP address as SNI,
/// say): any client could then write a log line per connection, a flood waiting to happen.
/// The webhook logs failed handshakes itself, at debug.
pub const DEFAULT_LOG_FILTER: &str = "info,rustls=error";

/// Installs the global subscriber; `RUST_LOG` overrides [`DEFAULT_LOG_FILTER`].
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = fmt().with_env_filter(filter).with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Installs rustls' process-wide crypto provider. Both `ring` and `aws-lc-rs` can end up in the
/// dependency graph, and rustls then refuses to choose one by itself at the first TLS handshake.
pub fn install_crypto_provider() {
    // An Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Makes the allocator hand large buffers (initial list bodies of tens of MB) back to the system
/// when they are freed. glibc otherwise raises its mmap threshold after the first such free, so
/// later list buffers come from the heap and the process keeps their pages after start-up.
pub fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start, before other
    // threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
