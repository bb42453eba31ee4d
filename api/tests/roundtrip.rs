//! ProwJobs written by upstream tooling read into our types and write back with every field intact.

use prow_api::{ProwJob, ProwJobState, ProwJobType};

const FIXTURES: [(&str, &str); 4] = [
    ("presubmit", include_str!("fixtures/presubmit.yaml")),
    ("postsubmit", include_str!("fixtures/postsubmit.yaml")),
    ("periodic", include_str!("fixtures/periodic.yaml")),
    ("batch", include_str!("fixtures/batch.yaml")),
];

fn as_json(yaml: &str) -> serde_json::Value {
    serde_yaml::from_str(yaml).expect("fixture is YAML")
}

#[test]
fn upstream_prowjobs_round_trip_without_losing_a_field() {
    for (name, yaml) in FIXTURES {
        let written = as_json(yaml);
        let job: ProwJob = serde_json::from_value(written.clone())
            .unwrap_or_else(|e| panic!("{name}: does not read: {e}"));
        let read_back = serde_json::to_value(&job).expect("serialises");
        if let Some(diff) = first_difference(&written, &read_back, "") {
            panic!("{name}: a field changed on the way through: {diff}");
        }
    }
}

/// The first path at which two JSON values differ, for a message a person can act on.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => first_difference(l, r, &format!("{path}.{k}")),
                    (l, r) => Some(format!("{path}.{k}: {l:?} became {r:?}")),
                })
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| format!("{path}: {a} became {b}")),
    }
}

#[test]
fn fixtures_cover_every_job_type_with_refs_pulls_extra_refs_decoration_and_status() {
    let jobs: Vec<ProwJob> = FIXTURES
        .iter()
        .map(|(_, y)| serde_json::from_value(as_json(y)).expect("reads"))
        .collect();
    let types: Vec<_> = jobs.iter().filter_map(|j| j.spec.job_type).collect();
    for t in [
        ProwJobType::Presubmit,
        ProwJobType::Postsubmit,
        ProwJobType::Periodic,
        ProwJobType::Batch,
    ] {
        assert!(types.contains(&t), "no fixture of type {t:?}");
    }
    assert!(jobs
        .iter()
        .any(|j| j.spec.refs.as_ref().is_some_and(|r| r.pulls.len() > 1)));
    assert!(jobs.iter().any(|j| !j.spec.extra_refs.is_empty()));
    assert!(jobs.iter().all(|j| j.spec.decoration_config.is_some()));
    assert!(jobs
        .iter()
        .all(|j| j.status.as_ref().and_then(|s| s.state).is_some()));
}

#[test]
fn decoration_timeouts_are_typed_and_the_rest_is_kept() {
    let job: ProwJob = serde_json::from_value(as_json(FIXTURES[0].1)).expect("reads");
    let dc = job.spec.decoration_config.expect("decorated");
    assert_eq!(dc.pod_pending_timeout.as_deref(), Some("15m0s"));
    assert_eq!(dc.pod_unscheduled_timeout.as_deref(), Some("5m0s"));
    assert_eq!(
        dc.other["gcs_configuration"]["bucket"],
        "kubernetes-jenkins"
    );
}

#[test]
fn state_and_completion_follow_upstream_rules() {
    let mut job: ProwJob = serde_json::from_value(as_json(FIXTURES[1].1)).expect("reads");
    assert_eq!(job.state(), ProwJobState::Pending);
    assert!(!job.is_complete());
    job.status = None;
    assert_eq!(
        job.state(),
        ProwJobState::Triggered,
        "no status reads as triggered"
    );
    let done: ProwJob = serde_json::from_value(as_json(FIXTURES[2].1)).expect("reads");
    assert!(done.is_complete());
    assert!(done.state().is_complete());
}
