//! Where a run's files go: the bucket a job names and upstream's layout inside it
//! (`pkg/pod-utils/gcs`), so tools that read Prow buckets read ours.

use super::options::{GcsConfiguration, JobSpec};

/// Top folder of periodic and postsubmit runs.
pub const NON_PR_LOGS: &str = "logs";
/// Top folder of presubmit and batch runs.
pub const PR_LOGS: &str = "pr-logs";

/// A storage location a job names in `gcs_configuration.bucket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// `gs://NAME` or a bare name.
    Gcs(String),
    /// `s3://NAME`.
    S3(String),
    /// `file:///PATH`: a directory.
    File(String),
}

impl Bucket {
    /// Reads `gs://B`, `s3://B`, `file:///PATH` or a bare GCS bucket name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("gs", text),
        };
        let name_ok = |name: &str| {
            !name.is_empty()
                && !name.contains('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match scheme {
            "gs" if name_ok(rest) => Ok(Self::Gcs(rest.to_string())),
            "s3" if name_ok(rest) => Ok(Self::S3(rest.to_string())),
            "gs" | "s3" => Err(format!(
                "{text:?}: a bucket name is letters, digits, '-', '_' and '.', with no path"
            )),
            "file" if rest.starts_with('/') => Ok(Self::File(rest.to_string())),
            "file" => Err(format!(
                "{text:?}: a file bucket is an absolute path, file:///PATH"
            )),
            other => Err(format!(
                "{text:?}: unknown storage scheme {other:?}: use gs://, s3:// or file://"
            )),
        }
    }

    /// The bucket as a URL (`gs://B`, `s3://B`, `file:///PATH`).
    pub fn url(&self) -> String {
        match self {
            Self::Gcs(name) => format!("gs://{name}"),
            Self::S3(name) => format!("s3://{name}"),
            Self::File(path) => format!("file://{path}"),
        }
    }
}

/// How `org/repo` appears in a presubmit's path under `path_strategy` (upstream's
/// `RepoPathBuilder`): `explicit` always `org_repo`; `single` leaves out the default repository;
/// `legacy` also leaves out the default org.
pub fn repo_segment(gcs: &GcsConfiguration, org: &str, repo: &str) -> String {
    let explicit = || {
        let org = org.trim_start_matches("https://");
        format!("{org}_{}", repo.replace('/', "_"))
    };
    match gcs.path_strategy.as_str() {
        "legacy" if org == gcs.default_org && repo == gcs.default_repo => String::new(),
        "legacy" if org == gcs.default_org => repo.to_string(),
        "single" if org == gcs.default_org && repo == gcs.default_repo => String::new(),
        _ => explicit(),
    }
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// The first pull's number, as a path segment.
fn first_pull(spec: &JobSpec) -> Option<String> {
    spec.refs
        .as_ref()
        .and_then(|r| r.pulls.first())
        .map(|p| p.number.to_string())
}

/// The run's folder inside the bucket: `logs/<job>/<build>` for periodics and postsubmits,
/// `pr-logs/pull/<org_repo>/<pr>/<job>/<build>` for presubmits, `pr-logs/pull/batch/<job>/<build>`
/// for batches, under `path_prefix`. None for a presubmit without refs or pulls.
pub fn run_path(spec: &JobSpec, gcs: &GcsConfiguration) -> Option<String> {
    let prefix = gcs.path_prefix.as_str();
    match spec.job_type.as_str() {
        "periodic" | "postsubmit" => Some(join(&[prefix, NON_PR_LOGS, &spec.job, &spec.buildid])),
        "presubmit" => {
            let refs = spec.refs.as_ref()?;
            let segment = repo_segment(gcs, &refs.org, &refs.repo);
            Some(join(&[
                prefix,
                PR_LOGS,
                "pull",
                &segment,
                &first_pull(spec)?,
                &spec.job,
                &spec.buildid,
            ]))
        }
        "batch" => Some(join(&[
            prefix,
            PR_LOGS,
            "pull",
            "batch",
            &spec.job,
            &spec.buildid,
        ])),
        _ => None,
    }
}

/// The pointer a presubmit leaves at `pr-logs/directory/<job>/<build>.txt`, holding the run's
/// full location.
pub fn alias_path(spec: &JobSpec, gcs: &GcsConfiguration) -> Option<String> {
    (spec.job_type == "presubmit").then(|| {
        join(&[
            &gcs.path_prefix,
            PR_LOGS,
            "directory",
            &spec.job,
            &format!("{}.txt", spec.buildid),
        ])
    })
}

/// Every `latest-build.txt` the run updates.
pub fn latest_build_paths(spec: &JobSpec, gcs: &GcsConfiguration) -> Vec<String> {
    let prefix = gcs.path_prefix.as_str();
    match spec.job_type.as_str() {
        "periodic" | "postsubmit" => {
            vec![join(&[prefix, NON_PR_LOGS, &spec.job, "latest-build.txt"])]
        }
        "presubmit" => {
            let mut out = vec![join(&[
                prefix,
                PR_LOGS,
                "directory",
                &spec.job,
                "latest-build.txt",
            ])];
            if let (Some(refs), Some(pull)) = (spec.refs.as_ref(), first_pull(spec)) {
                let segment = repo_segment(gcs, &refs.org, &refs.repo);
                out.push(join(&[
                    prefix,
                    PR_LOGS,
                    "pull",
                    &segment,
                    &pull,
                    &spec.job,
                    "latest-build.txt",
                ]));
            }
            out
        }
        "batch" => vec![join(&[
            prefix,
            PR_LOGS,
            "directory",
            &spec.job,
            "latest-build.txt",
        ])],
        _ => Vec::new(),
    }
}
