//! The real parts decorated jobs talk to, started by `kind-tests/scripts/ci-services.sh up`
//! (the test command does it): an S3 server (SeaweedFS) with one bucket, and a Git server of
//! bare repositories over dumb HTTP, both on the Docker bridge where the node's pods reach
//! them. Tests find them through `PROW_TEST_S3_*` and `PROW_TEST_GIT_*`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use prow_runtime::storage::{Credentials, S3Credentials, Store};
use serde_json::json;

use crate::TestEnv;

/// The S3 server and the Git server.
#[derive(Clone, Debug)]
pub struct Services {
    /// `host:port` of the S3 API.
    pub s3_endpoint: String,
    /// The bucket jobs write to.
    pub bucket: String,
    /// Credentials of the S3 API.
    pub access_key: String,
    /// ...
    pub secret_key: String,
    /// Directory of the bare repositories the Git server serves.
    pub git_dir: PathBuf,
    /// URL the Git server serves `git_dir` at.
    pub git_url: String,
}

impl Services {
    /// The services from the environment; None (after a line saying why) where they were not
    /// started, an error under `CI=true`.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(s3_endpoint) = var("PROW_TEST_S3_ENDPOINT") else {
            anyhow::ensure!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PROW_TEST_S3_ENDPOINT is not set under CI=true: kind-tests/scripts/test.sh starts \
                 the S3 and Git servers (ci-services.sh); see its log for why it did not"
            );
            eprintln!(
                "decorated-job test skipped: PROW_TEST_S3_ENDPOINT is not set (start the servers \
                 with `kind-tests/scripts/ci-services.sh up DIR`, or run the test command)"
            );
            return Ok(None);
        };
        let need = |name: &str| var(name).with_context(|| format!("{name} is not set"));
        Ok(Some(Self {
            s3_endpoint,
            bucket: need("PROW_TEST_S3_BUCKET")?,
            access_key: need("PROW_TEST_S3_ACCESS_KEY")?,
            secret_key: need("PROW_TEST_S3_SECRET_KEY")?,
            git_dir: need("PROW_TEST_GIT_DIR")?.into(),
            git_url: need("PROW_TEST_GIT_URL")?,
        }))
    }

    /// Upstream's S3 `service-account.json` for this server.
    pub fn service_account_json(&self) -> String {
        json!({"region": "us-east-1", "endpoint": self.s3_endpoint, "insecure": true,
               "s3_force_path_style": true, "access_key": self.access_key,
               "secret_key": self.secret_key})
        .to_string()
    }

    /// Creates the Secret `name` in the test's namespace holding the credentials.
    pub async fn credentials_secret(&self, env: &TestEnv, name: &str) -> anyhow::Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"service-account.json": self.service_account_json()},
        }))?;
        env.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// The bucket, opened as the tests read it.
    pub fn store(&self) -> anyhow::Result<Store> {
        let creds = Credentials::S3(S3Credentials {
            region: "us-east-1".into(),
            endpoint: self.s3_endpoint.clone(),
            insecure: true,
            s3_force_path_style: true,
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        });
        Store::open(
            &prow_api::decorate::paths::Bucket::S3(self.bucket.clone()),
            &creds,
        )
    }

    /// A new bare repository `name` (served at [`Repo::url`]), filled by `script` run in a
    /// work tree on branch `main`; `refs/pull/N/head` are pushed as the script creates
    /// branches named `pull-N`.
    pub fn repo(&self, name: &str, script: &str) -> anyhow::Result<Repo> {
        let bare = self.git_dir.join(format!("{name}.git"));
        let work = self.git_dir.join(format!("{name}.work"));
        let _ = std::fs::remove_dir_all(&bare);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        sh(&work, &format!("git init -q -b main . && {script}"))?;
        sh(
            &work,
            &format!(
                "git checkout -q main
                 git init -q --bare {bare}
                 git push -q {bare} main
                 for b in $(git for-each-ref --format='%(refname:short)' refs/heads/ | grep '^pull-'); do
                   git push -q {bare} \"$b:refs/pull/${{b#pull-}}/head\"
                 done
                 git -C {bare} symbolic-ref HEAD refs/heads/main
                 git -C {bare} update-server-info",
                bare = bare.display()
            ),
        )?;
        Ok(Repo {
            url: format!("{}/{name}.git", self.git_url),
            work,
        })
    }
}

/// A repository on the Git server.
pub struct Repo {
    /// Its clone URL.
    pub url: String,
    /// The work tree it was made from.
    pub work: PathBuf,
}

impl Repo {
    /// The commit `rev` names in the work tree.
    pub fn sha(&self, rev: &str) -> anyhow::Result<String> {
        sh(&self.work, &format!("git rev-parse {rev}"))
    }
}

/// Runs `script` with `sh -e` in `dir` as a fixed author; its trimmed output.
pub fn sh(dir: &Path, script: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.org")
        .output()
        .context("running sh")?;
    anyhow::ensure!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
