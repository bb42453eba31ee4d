//! What the uploading roles share: options from the environment, the run's place in the bucket,
//! `started.json` and `finished.json` in upstream's shapes, the termination message.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prow_api::decorate::options::{JobSpec, UploadOptions, JOB_SPEC};
use prow_api::decorate::paths::{self, Bucket};
use prow_api::Refs;
use prow_runtime::storage::{Credentials, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads a JSON options env var.
pub fn env_json<T: DeserializeOwned>(name: &str) -> anyhow::Result<T> {
    let text = std::env::var(name).with_context(|| format!("{name} is not set"))?;
    serde_json::from_str(&text).with_context(|| format!("{name} is not valid: {text}"))
}

/// Runs an uploading role on a small runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<std::process::ExitCode>>>(
    future: F,
) -> anyhow::Result<std::process::ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(future)
}

/// Writes the container's termination message, which the operator shows as the job's
/// description (kubelet reads it from this file).
pub fn termination_message(message: &str) {
    let path = std::env::var("PROW_UTILS_TERMINATION_LOG")
        .unwrap_or_else(|_| "/dev/termination-log".into());
    // Only where kubelet mounted it; a run outside a pod has no such file.
    if std::path::Path::new(&path).exists() {
        let short: String = message.chars().take(3500).collect();
        let _ = std::fs::write(&path, short);
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The commit a run tests, as upstream names it: the first pull's head, else the base commit,
/// else the base branch.
pub fn revision(spec: &JobSpec) -> String {
    let refs = spec.refs.as_ref().or(spec.extra_refs.first());
    let Some(refs) = refs else {
        return String::new();
    };
    if let Some(sha) = refs.pulls.first().and_then(|p| p.sha.clone()) {
        return sha;
    }
    if !refs.base_sha.is_empty() {
        return refs.base_sha.clone();
    }
    refs.base_ref.clone()
}

/// Upstream's `started.json`.
#[derive(Serialize)]
pub struct Started {
    /// When the run started.
    pub timestamp: u64,
    /// The first pull's number, for presubmits.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull: String,
    /// `org/repo` -> `base_ref:base_sha,N:sha`.
    pub repos: BTreeMap<String, String>,
    /// The commit tested.
    #[serde(rename = "repo-commit", skip_serializing_if = "String::is_empty")]
    pub repo_commit: String,
    /// The same, under upstream's older name.
    #[serde(rename = "repo-version", skip_serializing_if = "String::is_empty")]
    pub repo_version: String,
    /// The same, under the name `finished.json` uses.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
}

impl Started {
    /// What `started.json` says of `spec`, now.
    pub fn of(spec: &JobSpec) -> Self {
        let all: Vec<&Refs> = spec.refs.iter().chain(spec.extra_refs.iter()).collect();
        let repos = all
            .iter()
            .map(|r| (format!("{}/{}", r.org, r.repo), prow_api::pod::pull_refs(r)))
            .collect();
        let pull = spec
            .refs
            .as_ref()
            .and_then(|r| r.pulls.first())
            .map(|p| p.number.to_string())
            .unwrap_or_default();
        let revision = revision(spec);
        Self {
            timestamp: unix_now(),
            pull,
            repos,
            repo_commit: revision.clone(),
            repo_version: revision.clone(),
            revision,
        }
    }
}

/// Upstream's `finished.json`.
#[derive(Serialize)]
pub struct Finished {
    /// When the run ended.
    pub timestamp: u64,
    /// Whether it passed.
    pub passed: bool,
    /// SUCCESS, FAILURE or ABORTED.
    pub result: &'static str,
    /// The commit tested.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// What the test wrote to its metadata file(s).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A run's place in its bucket, opened.
pub struct Destination {
    /// The bucket; None for a dry run (no bucket configured).
    pub store: Option<Store>,
    /// The run's folder.
    pub path: String,
    /// The job.
    pub spec: JobSpec,
    /// Where it goes.
    pub options: UploadOptions,
}

impl Destination {
    /// Opens the bucket `options` name for the run `JOB_SPEC` describes.
    pub fn open(options: UploadOptions) -> anyhow::Result<Self> {
        let spec: JobSpec = env_json(JOB_SPEC)?;
        let gcs = &options.gcs_configuration;
        let path = paths::run_path(&spec, gcs).with_context(|| {
            format!("no storage path for a {:?} job without refs", spec.job_type)
        })?;
        let path = if options.sub_dir.is_empty() {
            path
        } else {
            format!("{path}/{}", options.sub_dir.trim_matches('/'))
        };
        let store = if options.dry_run || gcs.bucket.is_empty() {
            tracing::info!("no bucket configured: nothing is uploaded");
            None
        } else {
            let bucket = Bucket::parse(&gcs.bucket).map_err(anyhow::Error::msg)?;
            let credentials = Credentials::from_files(
                &options.s3_credentials_file,
                &options.gcs_credentials_file,
            )?;
            Some(Store::open(&bucket, &credentials)?)
        };
        Ok(Self {
            store,
            path,
            spec,
            options,
        })
    }

    /// Writes `name` under the run's folder, retrying a failing store a few times.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.put_at(&format!("{}/{name}", self.path), bytes).await
    }

    /// Writes `key` (from the bucket's root), retrying a failing store a few times.
    pub async fn put_at(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let Some(store) = self.store.as_ref() else {
            return Ok(());
        };
        let mut delay = Duration::from_millis(250);
        let mut tries = 0;
        loop {
            tries += 1;
            match store.put(key, bytes.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 4 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), key, "upload failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// The run's full location, as the presubmit pointer holds it.
    pub fn url(&self) -> String {
        match self.store.as_ref() {
            Some(store) => format!("{}/{}", store.url(), self.path),
            None => self.path.clone(),
        }
    }
}
