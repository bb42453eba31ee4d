//! initupload: records the start of a run in its bucket (`started.json`, the clone's log and
//! records, the presubmit pointer, `latest-build.txt`) and, when the clone failed, its end as
//! well (`build-log.txt` with the clone log, `finished.json` failed), then fails the pod with
//! the reason.

use std::process::ExitCode;

use anyhow::Context as _;
use prow_api::decorate::options::{InitUploadOptions, INITUPLOAD_OPTIONS};
use prow_api::decorate::paths;

use crate::clonerefs::{format_log, Record};
use crate::report::{env_json, revision, unix_now, Destination, Finished, Started};

/// The role.
pub async fn run() -> anyhow::Result<ExitCode> {
    let options: InitUploadOptions = env_json(INITUPLOAD_OPTIONS)?;
    let dest = Destination::open(options.upload)?;
    let records: Option<Vec<Record>> = if options.log.is_empty() {
        None
    } else {
        let text = std::fs::read(&options.log).with_context(|| {
            format!(
                "reading the clone record {}: clonerefs did not finish",
                options.log
            )
        })?;
        Some(serde_json::from_slice(&text).with_context(|| format!("reading {}", options.log))?)
    };
    dest.put(
        "started.json",
        serde_json::to_vec_pretty(&Started::of(&dest.spec))?,
    )
    .await?;
    let gcs = &dest.options.gcs_configuration;
    if let Some(alias) = paths::alias_path(&dest.spec, gcs) {
        dest.put_at(&alias, dest.url().into_bytes()).await?;
    }
    for latest in paths::latest_build_paths(&dest.spec, gcs) {
        dest.put_at(&latest, dest.spec.buildid.clone().into_bytes())
            .await?;
    }
    let Some(records) = records else {
        return Ok(ExitCode::SUCCESS);
    };
    let log = format_log(&records);
    dest.put("clone-log.txt", log.clone().into_bytes()).await?;
    dest.put("clone-records.json", serde_json::to_vec_pretty(&records)?)
        .await?;
    let failures: Vec<String> = records
        .iter()
        .filter(|r| r.failed)
        .filter_map(Record::failure)
        .collect();
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    dest.put("build-log.txt", log.into_bytes()).await?;
    let finished = Finished {
        timestamp: unix_now(),
        passed: false,
        result: "FAILURE",
        revision: revision(&dest.spec),
        metadata: Default::default(),
    };
    dest.put("finished.json", serde_json::to_vec_pretty(&finished)?)
        .await?;
    anyhow::bail!("clone failed: {}", failures.join("; "))
}
