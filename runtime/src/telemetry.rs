//! Logging: the subscriber and its default filter.

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

/// Installs a text subscriber writing to stderr, for processes whose stdout is someone else's
/// (the pod utilities: the test's output goes to stdout).
pub fn init_stderr() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}
