//! sidecar: streams the test's log to the bucket while it runs (so a log is never lost with its
//! pod and can be followed from storage), waits for every marker, then uploads the final
//! `build-log.txt`, the artifacts and `finished.json`, every byte scrubbed of mounted Secret
//! values.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use prow_api::decorate::options::{SidecarOptions, WrapperOptions, SIDECAR_OPTIONS};

use crate::censor::Censor;
use crate::report::{env_json, revision, unix_now, Destination, Finished};

/// How often the running log is uploaded (`PROW_UTILS_STREAM_SECONDS`, default 3).
fn stream_interval() -> Duration {
    std::env::var("PROW_UTILS_STREAM_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(3))
}

/// The build log: one container's log as it is, several each under a header.
/// Whether every test has ended: its wrapper wrote its marker, or died without writing one (a
/// test whose wrapper the OOM killer took would otherwise keep the pod, and its job, waiting).
fn all_ended(entries: &[WrapperOptions]) -> bool {
    entries.iter().all(|e| {
        Path::new(&e.marker_file).exists() || crate::entrypoint::died_without_marker(&e.marker_file)
    })
}

fn build_log(entries: &[WrapperOptions]) -> Vec<u8> {
    if let [only] = entries {
        return std::fs::read(&only.process_log).unwrap_or_default();
    }
    let mut out = Vec::new();
    for e in entries {
        out.extend(format!("==== {} ====\n", e.container_name).into_bytes());
        out.extend(std::fs::read(&e.process_log).unwrap_or_default());
    }
    out
}

/// Every file under `item` (a directory or a file), with its name relative to `item`.
fn files(item: &Path) -> Vec<(PathBuf, String)> {
    if item.is_file() {
        let name = item
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return vec![(item.to_path_buf(), name)];
    }
    let mut out = Vec::new();
    let mut stack = vec![item.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(item) {
                out.push((p.clone(), rel.to_string_lossy().into_owned()));
            }
        }
    }
    out.sort();
    out
}

/// The role.
pub async fn run() -> anyhow::Result<ExitCode> {
    let options: SidecarOptions = env_json(SIDECAR_OPTIONS)?;
    let dest = Destination::open(options.gcs_options.clone())?;
    let censoring = options.censoring_options.clone().unwrap_or_default();
    let censor = Censor::load(
        &censoring.secret_directories,
        censoring.minimum_secret_length.unwrap_or(1),
    );
    // SIGTERM (the pod is being deleted) ends the wait: what was written is uploaded.
    let stop = prow_runtime::shutdown::on_signal();
    let stopping = || !options.ignore_interrupts && stop.is_cancelled();

    // While the test runs: upload the log whenever it grew.
    let mut uploaded_len = None;
    let interval = stream_interval();
    let interrupted = loop {
        if all_ended(&options.entries) {
            break false;
        }
        if stopping() {
            break true;
        }
        let log = build_log(&options.entries);
        if Some(log.len()) != uploaded_len {
            match dest.put("build-log.txt", censor.scrub(&log)).await {
                Ok(()) => uploaded_len = Some(log.len()),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "streaming the log failed"),
            }
        }
        let wait = tokio::time::sleep(interval);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stopping() || all_ended(&options.entries) {
                        break;
                    }
                }
            }
        }
    };

    let codes: Vec<Option<i32>> = options
        .entries
        .iter()
        .map(|e| {
            std::fs::read_to_string(&e.marker_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .collect();
    let passed = !interrupted && codes.iter().all(|c| *c == Some(0));
    let mut metadata = serde_json::Map::new();
    for e in &options.entries {
        if let Ok(text) = std::fs::read(&e.metadata_file) {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&text) {
                metadata.extend(map);
            }
        }
    }
    dest.put("build-log.txt", censor.scrub(&build_log(&options.entries)))
        .await?;
    for item in &options.gcs_options.items {
        for (file, name) in files(Path::new(item)) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            dest.put(&format!("artifacts/{name}"), censor.scrub(&bytes))
                .await?;
        }
    }
    let finished = Finished {
        timestamp: unix_now(),
        passed,
        result: if interrupted {
            "ABORTED"
        } else if passed {
            "SUCCESS"
        } else {
            "FAILURE"
        },
        revision: revision(&dest.spec),
        metadata,
    };
    dest.put("finished.json", serde_json::to_vec_pretty(&finished)?)
        .await?;
    tracing::info!(passed, location = %dest.url(), "uploaded the results");
    if options.entry_error && !passed {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
