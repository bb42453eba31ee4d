//! The operator's configuration: one typed struct with defaults, filled from flags or the
//! environment (every flag has a `PROW_OPERATOR_*` variable), printed at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

use crate::telemetry::LogFormat;

/// prow-operator: runs ProwJobs as pods, leases TestClusters, keeps Presets' status.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "prow-operator", version, about)]
pub struct OperatorConfig {
    /// Address of the health and metrics server (/healthz, /readyz, /metrics).
    #[arg(long, env = "PROW_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_OPERATOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace whose ProwJobs, Presets and TestClusters are watched; empty watches all.
    #[arg(long, env = "PROW_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Namespace a job's pod goes to when its `spec.namespace` is empty.
    #[arg(long, env = "PROW_OPERATOR_POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,

    /// Log line format.
    #[arg(long, env = "PROW_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl OperatorConfig {
    /// The configuration as one JSON line, for the start-up log.
    pub fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

/// Builds a client from an explicit kubeconfig file, or by the usual rules when none is given.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let cfg = OperatorConfig::try_parse_from(["prow-operator"]).expect("parses");
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cfg.pod_namespace, "default");
        assert_eq!(cfg.watch_namespace, None);
        assert_eq!(cfg.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_override_defaults_and_print_as_json() {
        let cfg = OperatorConfig::try_parse_from([
            "prow-operator",
            "--listen=127.0.0.1:9999",
            "--pod-namespace=test-pods",
            "--log-format=json",
        ])
        .expect("parses");
        let printed: serde_json::Value = serde_json::from_str(&cfg.describe()).expect("JSON");
        assert_eq!(printed["listen"], "127.0.0.1:9999");
        assert_eq!(printed["pod_namespace"], "test-pods");
        assert_eq!(printed["log_format"], "json");
    }

    #[test]
    fn a_bad_listen_address_is_refused() {
        let err = OperatorConfig::try_parse_from(["prow-operator", "--listen=nowhere"])
            .expect_err("refused");
        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
