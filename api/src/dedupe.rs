//! Upstream's presubmit dedupe: among unfinished presubmits of the same job on the same
//! repository, base and set of pulls, only the newest runs on.

use std::collections::BTreeSet;

use crate::{ProwJob, ProwJobType};

/// What identifies "the same presubmit": job name, org, repo, base ref and the set of pulls.
fn identity(job: &ProwJob) -> Option<(&str, &str, &str, &str, BTreeSet<i64>)> {
    if job.spec.job_type != Some(ProwJobType::Presubmit) {
        return None;
    }
    let refs = job.spec.refs.as_ref()?;
    Some((
        job.spec.job.as_str(),
        refs.org.as_str(),
        refs.repo.as_str(),
        refs.base_ref.as_str(),
        refs.pulls.iter().map(|p| p.number).collect(),
    ))
}

/// When the job was started, for "newest": its `startTime`, else its creation.
fn started(job: &ProwJob) -> (Option<k8s_openapi::jiff::Timestamp>, Option<&str>) {
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    (start, job.metadata.name.as_deref())
}

/// The newer unfinished presubmit that supersedes `job`, if there is one. Batches and
/// postsubmits are never superseded.
pub fn superseded_by<'a>(
    job: &ProwJob,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
) -> Option<&'a ProwJob> {
    if job.is_complete() {
        return None;
    }
    let id = identity(job)?;
    jobs.into_iter().find(|other| {
        !other.is_complete()
            && other.metadata.uid != job.metadata.uid
            && identity(other).as_ref() == Some(&id)
            && started(other) > started(job)
    })
}

/// The older unfinished presubmits that `job` supersedes (each would find `job` with
/// [`superseded_by`]).
pub fn supersedes<'a>(
    job: &'a ProwJob,
    jobs: impl IntoIterator<Item = &'a ProwJob>,
) -> Vec<&'a ProwJob> {
    if job.is_complete() || identity(job).is_none() {
        return Vec::new();
    }
    jobs.into_iter()
        .filter(|older| superseded_by(older, [job]).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn presubmit(name: &str, started: &str, pulls: &[i64], base: &str) -> ProwJob {
        let pulls: Vec<_> = pulls
            .iter()
            .map(|n| json!({"number": n, "sha": "s"}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "uid": name},
            "spec": {"type": "presubmit", "job": "pull-unit",
                     "refs": {"org": "o", "repo": "r", "base_ref": base, "pulls": pulls}},
            "status": {"state": "pending", "startTime": format!("2024-01-01T00:00:{started}Z")},
        }))
        .expect("job")
    }

    #[test]
    fn a_newer_run_of_the_same_pulls_supersedes_an_older_one() {
        let old = presubmit("old", "01", &[1, 2], "main");
        let new = presubmit("new", "02", &[2, 1], "main");
        let jobs = [old.clone(), new.clone()];
        assert_eq!(
            superseded_by(&old, &jobs).and_then(|j| j.metadata.name.as_deref()),
            Some("new")
        );
        assert!(superseded_by(&new, &jobs).is_none(), "the newest runs on");
        let older: Vec<_> = supersedes(&new, &jobs)
            .iter()
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        assert_eq!(older, ["old"]);
        assert!(supersedes(&old, &jobs).is_empty());
    }

    #[test]
    fn different_pulls_base_or_type_or_a_finished_newer_run_do_not_supersede() {
        let old = presubmit("old", "01", &[1], "main");
        let other_pulls = presubmit("a", "02", &[1, 2], "main");
        let other_base = presubmit("b", "02", &[1], "release-1.0");
        let mut batch = presubmit("c", "02", &[1], "main");
        batch.spec.job_type = Some(ProwJobType::Batch);
        let mut finished = presubmit("d", "02", &[1], "main");
        if let Some(s) = finished.status.as_mut() {
            s.completion_time = s.start_time.clone();
        }
        let jobs = [
            old.clone(),
            other_pulls,
            other_base,
            batch.clone(),
            finished,
        ];
        assert!(superseded_by(&old, &jobs).is_none());
        assert!(
            superseded_by(&batch, &[batch.clone(), presubmit("e", "03", &[1], "main")]).is_none()
        );
    }
}
