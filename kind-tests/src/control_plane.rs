//! A control plane of a test's own (etcd + kube-apiserver), for tests that stop the API server:
//! the shared one serves every other test of the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::Api;

use crate::TestEnv;

/// A private control plane, stopped when dropped.
pub struct PrivateControlPlane {
    dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh")
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(script());
    command.args(args);
    let what = format!("control-plane.sh {}", args.join(" "));
    Ok(crate::process::stdout_of(command, &what)?
        .trim()
        .to_string())
}

impl PrivateControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports (about 5 s).
    pub fn up() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(crate::env::unique_name("private-cp"));
        std::fs::create_dir_all(&dir)?;
        let plane = Self { dir };
        run(&["up", &plane.dir.display().to_string()])?;
        Ok(plane)
    }

    /// Its kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A test environment on it: the CRDs installed and a fresh namespace.
    pub async fn env(&self, prefix: &str) -> anyhow::Result<TestEnv> {
        prow_runtime::process::install_crypto_provider();
        let kubeconfig = self.kubeconfig();
        let client = prow_runtime::client::client(Some(&kubeconfig)).await?;
        crate::env::install_crds(client.clone()).await?;
        let namespace = crate::env::unique_name(prefix);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(TestEnv {
            client,
            namespace,
            kubeconfig,
        })
    }

    /// Stops kube-apiserver (etcd keeps the data).
    pub fn stop_apiserver(&self) -> anyhow::Result<()> {
        run(&["apiserver-stop", &self.dir.display().to_string()]).map(drop)
    }

    /// Starts kube-apiserver again and waits until it answers `/readyz`.
    pub fn start_apiserver(&self) -> anyhow::Result<()> {
        run(&["apiserver-start", &self.dir.display().to_string()]).map(drop)
    }
}

/// Stops the kube-apiserver of the plane whose state `control-plane.sh up` keeps in `dir` and
/// starts it again (etcd keeps the data), waiting until it answers `/readyz`.
pub fn restart_apiserver(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.display().to_string();
    run(&["apiserver-stop", &dir])?;
    run(&["apiserver-start", &dir]).map(drop)
}

impl Drop for PrivateControlPlane {
    fn drop(&mut self) {
        let _ = run(&["down", &self.dir.display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
