//! Helpers for tests of the admission webhook: certificates, the process, and webhook
//! configurations registered with the API server by URL, scoped to one test's namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::process::{free_port, Running};
use crate::TestEnv;

/// Label put on a test's namespace so that only its webhook configurations apply there.
const SCOPE_LABEL: &str = "prow-operator.dev/webhook-test";

/// A CA and a serving certificate for 127.0.0.1, made with openssl in `dir`.
pub struct Certs {
    /// CA certificate (PEM), the webhook configurations' caBundle.
    pub ca: Vec<u8>,
    /// Serving certificate file.
    pub cert: PathBuf,
    /// Serving key file.
    pub key: PathBuf,
}

/// Makes a fresh CA and a serving certificate for `127.0.0.1` and `localhost` in `dir`.
pub fn make_certs(dir: &Path) -> anyhow::Result<Certs> {
    std::fs::create_dir_all(dir)?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .context("running openssl")?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=webhook-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=prow-webhook",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ])?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
    ])?;
    Ok(Certs {
        ca: std::fs::read(dir.join("ca.crt"))?,
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    })
}

/// A running webhook and where it listens.
pub struct Webhook {
    /// The process.
    pub process: Running,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its HTTPS port.
    pub port: u16,
    /// Its certificates.
    pub certs: Certs,
}

/// Starts `prow-webhook` over TLS for one test, with `extra` flags.
pub fn start_webhook(env: &TestEnv, extra: &[&str]) -> anyhow::Result<Webhook> {
    start(env, extra, None)
}

/// [`start_webhook`] with the process's open-file limit set to `files`.
pub fn start_webhook_with_file_limit(
    env: &TestEnv,
    extra: &[&str],
    files: u64,
) -> anyhow::Result<Webhook> {
    start(env, extra, Some(files))
}

fn start(env: &TestEnv, extra: &[&str], files: Option<u64>) -> anyhow::Result<Webhook> {
    let dir = std::env::temp_dir().join(crate::env::unique_name("webhook-certs"));
    let certs = make_certs(&dir)?;
    let port = free_port()?;
    let mut args = vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--tls-cert-file={}", certs.cert.display()),
        format!("--tls-key-file={}", certs.key.display()),
        format!("--pod-namespace={}", env.namespace),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = match files {
        None => {
            Running::start_with_probes("prow-webhook", "--probe-listen", &env.kubeconfig, &args)?
        }
        Some(files) => Running::start_with_probes_and_file_limit(
            "prow-webhook",
            "--probe-listen",
            &env.kubeconfig,
            &args,
            files,
        )?,
    };
    Ok(Webhook {
        process,
        url: format!("https://127.0.0.1:{port}"),
        port,
        certs,
    })
}

impl Webhook {
    /// A TLS connection to it (HTTP/1.1 by ALPN), trusting its CA.
    pub async fn connect(
        &self,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        crate::https::connect(self.port, &self.certs.cert.with_file_name("ca.crt")).await
    }
}

/// Registers the webhook with the API server for this test's namespace only: mutation of
/// ProwJobs, validation of ProwJobs, Presets and TestClusters.
pub async fn register(env: &TestEnv, webhook: &Webhook) -> anyhow::Result<()> {
    let ns = &env.namespace;
    Api::<Namespace>::all(env.client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {SCOPE_LABEL: ns}}})),
        )
        .await?;
    let hook = |name: &str, path: &str, group: &str, resource: &str, operations: &[&str]| {
        json!({
            "name": format!("{name}.prow-operator.dev"),
            "clientConfig": {"url": format!("{}{path}", webhook.url)},
            "rules": [{"apiGroups": [group], "apiVersions": ["*"], "resources": [resource],
                       "operations": operations, "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {SCOPE_LABEL: ns}},
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
        })
    };
    let mut mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": format!("prow-{ns}")},
        "webhooks": [hook("mutate-prowjobs", "/mutate/prowjobs", "prow.k8s.io", "prowjobs", &["CREATE"])],
    }))?;
    for w in mutating.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = Some(ByteString(webhook.certs.ca.clone()));
    }
    let mut validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": format!("prow-{ns}")},
        "webhooks": [
            hook("validate-prowjobs", "/validate/prowjobs", "prow.k8s.io", "prowjobs", &["CREATE", "UPDATE"]),
            hook("validate-presets", "/validate/presets", "prow-operator.dev", "presets", &["CREATE", "UPDATE"]),
            hook("validate-testclusters", "/validate/testclusters", "prow-operator.dev", "testclusters", &["CREATE", "UPDATE", "DELETE"]),
            hook("validate-testclusterpools", "/validate/testclusterpools", "prow-operator.dev", "testclusterpools", &["CREATE", "UPDATE"]),
            hook("validate-jobdefinitions", "/validate/jobdefinitions", "prow-operator.dev", "jobdefinitions", &["CREATE", "UPDATE"]),
        ],
    }))?;
    for w in validating.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = Some(ByteString(webhook.certs.ca.clone()));
    }
    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &mutating)
        .await?;
    Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &validating)
        .await?;
    Ok(())
}
