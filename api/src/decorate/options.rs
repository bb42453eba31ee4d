//! The pod utilities' option shapes, as upstream writes them into `CLONEREFS_OPTIONS`,
//! `INITUPLOAD_OPTIONS`, `ENTRYPOINT_OPTIONS`, `SIDECAR_OPTIONS` and `JOB_SPEC`, so upstream's
//! utility images read what the operator writes and ours read what upstream writes; and the
//! typed view of the `decoration_config` fields decoration reads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{DecorationConfig, Refs};

/// Env var of the clone options.
pub const CLONEREFS_OPTIONS: &str = "CLONEREFS_OPTIONS";
/// Env var of the start-upload options.
pub const INITUPLOAD_OPTIONS: &str = "INITUPLOAD_OPTIONS";
/// Env var of the wrapper's options.
pub const ENTRYPOINT_OPTIONS: &str = "ENTRYPOINT_OPTIONS";
/// Env var of the sidecar's options.
pub const SIDECAR_OPTIONS: &str = "SIDECAR_OPTIONS";
/// Env var of the job's description (upstream's downward API).
pub const JOB_SPEC: &str = "JOB_SPEC";

/// Upstream's `downwardapi.JobSpec`: what a run is, as the utilities and the test read it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JobSpec {
    /// presubmit, postsubmit, periodic or batch.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub job_type: String,
    /// The job's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// The run's build id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub buildid: String,
    /// The ProwJob's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prowjobid: String,
    /// The repository and pulls tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Refs>,
    /// Further repositories cloned beside it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_refs: Vec<Refs>,
    /// The job's decoration settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoration_config: Option<DecorationConfig>,
}

/// Images of the four utilities; an empty one means the operator's `--utility-image`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UtilityImages {
    /// Image of the `clonerefs` init container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clonerefs: String,
    /// Image of the `initupload` init container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub initupload: String,
    /// Image of the `place-entrypoint` init container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entrypoint: String,
    /// Image of the `sidecar` container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sidecar: String,
}

/// Where logs and artifacts go: upstream's `GCSConfiguration` (any backend despite the name).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsConfiguration {
    /// `gs://B`, `s3://B`, `file:///PATH`, or a bare name (GCS).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// A prefix inside the bucket before upstream's layout.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// `explicit`, `single` or `legacy`: how the repository appears in presubmit paths.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_strategy: String,
    /// The repository a `single`/`legacy` strategy leaves out of paths: its org.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_org: String,
    /// ... and its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_repo: String,
    /// Content types by file extension.
    #[serde(
        rename = "mediaTypes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub media_types: BTreeMap<String, String>,
    /// Upstream's local mode (pj-on-kind); kept as written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_output_dir: String,
    /// Extensions upstream compresses before upload; kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compress_file_types: Vec<String>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key in it.
    pub key: String,
}

/// Resources of the utility containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct UtilityResources {
    /// Of `clonerefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clonerefs: Option<ResourceRequirements>,
    /// Of `initupload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initupload: Option<ResourceRequirements>,
    /// Of `place-entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_entrypoint: Option<ResourceRequirements>,
    /// Of `sidecar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<ResourceRequirements>,
}

/// The `decoration_config` fields decoration reads, typed. Read with [`Decoration::of`], which
/// names the field a malformed value sits in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoration {
    /// Longest the test may run.
    pub timeout: std::time::Duration,
    /// How long the test gets after SIGINT before SIGKILL.
    pub grace_period: std::time::Duration,
    /// The utilities' images as the job sets them.
    pub utility_images: UtilityImages,
    /// Where logs and artifacts go.
    pub gcs_configuration: GcsConfiguration,
    /// Secret with GCS's `service-account.json`.
    pub gcs_credentials_secret: String,
    /// Secret with the S3 `service-account.json`.
    pub s3_credentials_secret: String,
    /// Secrets with SSH keys for the clone.
    pub ssh_key_secrets: Vec<String>,
    /// Known host lines for SSH clones.
    pub ssh_host_fingerprints: Vec<String>,
    /// The Secret key holding a token for HTTPS clones.
    pub oauth_token_secret: Option<SecretKey>,
    /// Whether mounted Secret values are scrubbed from uploads.
    pub censor_secrets: bool,
    /// Whether the clone is skipped.
    pub skip_cloning: bool,
    /// Service account of a pod that names none.
    pub default_service_account_name: String,
    /// Pod security settings applied where the pod sets none.
    pub run_as_user: Option<i64>,
    /// ...
    pub run_as_group: Option<i64>,
    /// ...
    pub fs_group: Option<i64>,
    /// Resources of the utility containers.
    pub resources: UtilityResources,
    /// Whether the sidecar goes on uploading after SIGINT/SIGTERM.
    pub upload_ignores_interrupts: bool,
}

/// The test's timeout when the job sets none (upstream's usual default).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
/// The grace period when the job sets none.
pub const DEFAULT_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);

/// A malformed `decoration_config` field: its name and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("decoration_config.{field}: {message}")]
pub struct DecorationError {
    /// The field under `decoration_config`, dotted.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl DecorationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Decoration {
    /// Reads the fields decoration uses from `dc`; every other field is left alone.
    pub fn of(dc: &DecorationConfig) -> Result<Self, DecorationError> {
        let duration = |name: &str, value: &Option<String>, default| match value.as_deref() {
            None | Some("") => Ok(default),
            Some(text) => {
                crate::duration::parse_timeout(text).map_err(|e| DecorationError::new(name, e))
            }
        };
        // serde would also read a list into the struct, by position: only a map is meant.
        if let Some(value) = dc
            .other
            .get("utility_images")
            .filter(|v| !v.is_null() && !v.is_object())
        {
            return Err(DecorationError::new(
                "utility_images",
                format!("{value} is not a map of clonerefs, initupload, entrypoint and sidecar to images"),
            ));
        }
        let utility_images: UtilityImages = read(&dc.other, "utility_images")?;
        for (role, image) in [
            ("clonerefs", &utility_images.clonerefs),
            ("initupload", &utility_images.initupload),
            ("entrypoint", &utility_images.entrypoint),
            ("sidecar", &utility_images.sidecar),
        ] {
            if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(DecorationError::new(
                    format!("utility_images.{role}"),
                    format!("{image:?} is not an image reference (it holds white space)"),
                ));
            }
        }
        let gcs_configuration: GcsConfiguration = read(&dc.other, "gcs_configuration")?;
        if !gcs_configuration.bucket.is_empty() {
            super::paths::Bucket::parse(&gcs_configuration.bucket)
                .map_err(|e| DecorationError::new("gcs_configuration.bucket", e))?;
        }
        match gcs_configuration.path_strategy.as_str() {
            "" | "explicit" | "single" | "legacy" => {}
            other => {
                return Err(DecorationError::new(
                    "gcs_configuration.path_strategy",
                    format!("{other:?} is not one of explicit, single, legacy"),
                ))
            }
        }
        let flag = |name: &str| -> Result<bool, DecorationError> {
            Ok(read::<Option<bool>>(&dc.other, name)?.unwrap_or(false))
        };
        Ok(Self {
            timeout: duration("timeout", &dc.timeout, DEFAULT_TIMEOUT)?,
            grace_period: duration("grace_period", &dc.grace_period, DEFAULT_GRACE_PERIOD)?,
            utility_images,
            gcs_configuration,
            gcs_credentials_secret: read(&dc.other, "gcs_credentials_secret")?,
            s3_credentials_secret: read(&dc.other, "s3_credentials_secret")?,
            ssh_key_secrets: read(&dc.other, "ssh_key_secrets")?,
            ssh_host_fingerprints: read(&dc.other, "ssh_host_fingerprints")?,
            oauth_token_secret: read(&dc.other, "oauth_token_secret")?,
            censor_secrets: flag("censor_secrets")?,
            skip_cloning: flag("skip_cloning")?,
            default_service_account_name: read(&dc.other, "default_service_account_name")?,
            run_as_user: read(&dc.other, "run_as_user")?,
            run_as_group: read(&dc.other, "run_as_group")?,
            fs_group: read(&dc.other, "fs_group")?,
            resources: read(&dc.other, "resources")?,
            upload_ignores_interrupts: flag("upload_ignores_interrupts")?,
        })
    }
}

impl Decoration {
    /// Every malformed field of `dc`, not only the first (for admission's report).
    pub fn problems(dc: &DecorationConfig) -> Vec<DecorationError> {
        let mut dc = dc.clone();
        let mut out = Vec::new();
        while let Err(e) = Self::of(&dc) {
            let top = e.field.split('.').next().unwrap_or_default().to_string();
            let dropped = match top.as_str() {
                "timeout" => dc.timeout.take().is_some(),
                "grace_period" => dc.grace_period.take().is_some(),
                _ => dc.other.remove(&top).is_some(),
            };
            out.push(e);
            if !dropped {
                break;
            }
        }
        out
    }
}

/// Reads `name` from the kept fields, its default when absent or null.
fn read<T: DeserializeOwned + Default>(
    other: &BTreeMap<String, serde_json::Value>,
    name: &str,
) -> Result<T, DecorationError> {
    match other.get(name) {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| DecorationError::new(name, e.to_string())),
    }
}

/// Upstream's `clonerefs.Options`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CloneRefsOptions {
    /// Root the repositories are cloned under (`<src_root>/src/<host>/<org>/<repo>`).
    pub src_root: String,
    /// Where the clone record is written.
    pub log: String,
    /// Committer name of merge commits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_user_name: String,
    /// Committer email of merge commits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_user_email: String,
    /// What to clone, in order.
    #[serde(rename = "refs", default)]
    pub git_refs: Vec<Refs>,
    /// SSH keys (directories or files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_files: Vec<String>,
    /// File holding a token for HTTPS clones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oauth_token_file: String,
    /// Known host lines for SSH.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_fingerprints: Vec<String>,
    /// Whether a failed clone fails the container (upstream records it and goes on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail: bool,
    /// A cookie file for the clone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cookie_path: String,
    /// GitHub API endpoints (upstream's GitHub App flow; kept as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github_api_endpoints: Vec<String>,
}

/// Upstream's `gcsupload.Options`: where and what to upload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Files and directories uploaded under `artifacts/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// A subdirectory of the run's path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_dir: String,
    /// The bucket and layout.
    #[serde(flatten)]
    pub gcs_configuration: GcsConfiguration,
    /// GCS credentials file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gcs_credentials_file: String,
    /// S3 credentials file (`service-account.json`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub s3_credentials_file: String,
    /// Whether nothing is uploaded.
    #[serde(default)]
    pub dry_run: bool,
}

/// Upstream's `initupload.Options`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct InitUploadOptions {
    /// Where to upload.
    #[serde(flatten)]
    pub upload: UploadOptions,
    /// The clone record to read and upload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
}

/// Upstream's `wrapper.Options`: one wrapped process and its files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WrapperOptions {
    /// The test's command and arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The container it runs in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    /// Its output, as it is written.
    pub process_log: String,
    /// Its exit code, once it ends.
    pub marker_file: String,
    /// Metadata the test may write for `finished.json`.
    pub metadata_file: String,
}

/// Upstream's `entrypoint.Options`. Durations are Go's: integer nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EntrypointOptions {
    /// Longest the test may run, in nanoseconds.
    pub timeout: u64,
    /// Time between SIGINT and SIGKILL, in nanoseconds.
    pub grace_period: u64,
    /// `ARTIFACTS`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_dir: String,
    /// A marker to wait for before starting (upstream's multi-stage jobs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_marker: String,
    /// Whether the wrapper always exits 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_zero: bool,
    /// Whether the test's own exit code is passed on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub propagate_error_code: bool,
    /// Whether the wrapper only copies itself into place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy_mode_only: bool,
    /// Where it copies itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_dst: String,
    /// The process it wraps.
    #[serde(flatten)]
    pub wrapper: WrapperOptions,
}

/// Upstream's `sidecar.CensoringOptions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CensoringOptions {
    /// Mount paths of Secrets whose values are scrubbed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_directories: Vec<String>,
    /// Secrets shorter than this are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_secret_length: Option<usize>,
}

/// Upstream's `sidecar.Options`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SidecarOptions {
    /// Where to upload.
    pub gcs_options: UploadOptions,
    /// The wrapped processes to wait for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<WrapperOptions>,
    /// Whether a failed entry fails the sidecar.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entry_error: bool,
    /// Whether SIGINT/SIGTERM are ignored while waiting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_interrupts: bool,
    /// What to scrub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_options: Option<CensoringOptions>,
}
