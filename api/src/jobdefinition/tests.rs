use super::*;

fn definition(yaml: &str) -> JobDefinition {
    serde_yaml::from_str(yaml).expect("definition")
}

const PERIODIC: &str = r#"
apiVersion: prow-operator.dev/v1alpha1
kind: JobDefinition
metadata: {name: ci-nightly, namespace: jobs}
spec:
  type: periodic
  interval: 24h
  decorate: true
  decoration_config: {timeout: 2h}
  labels: {preset-dind-enabled: "true"}
  annotations: {testgrid-dashboards: sig-testing}
  extra_refs:
  - {org: kubernetes, repo: test-infra, base_ref: master, path_alias: k8s.io/test-infra}
  spec:
    containers:
    - image: busybox
      command: [sh, -c, "true"]
"#;

const PRESUBMIT: &str = r#"
apiVersion: prow-operator.dev/v1alpha1
kind: JobDefinition
metadata: {name: pull-unit, namespace: jobs}
spec:
  type: presubmit
  repo: acme/widgets
  always_run: true
  skip_report: true
  path_alias: acme.dev/widgets
  spec:
    containers: [{image: busybox}]
"#;

fn request(name: &str) -> RunRequest {
    RunRequest {
        name: name.into(),
        trigger: "schedule".into(),
        ..Default::default()
    }
}

#[test]
fn a_periodic_run_carries_the_definition_labels_refs_and_decoration() {
    let def = definition(PERIODIC);
    let job = prowjob_for(&def, &request("ci-nightly-1767225600")).expect("job");
    assert_eq!(job.metadata.name.as_deref(), Some("ci-nightly-1767225600"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("jobs"));
    assert_eq!(job.spec.job, "ci-nightly");
    assert_eq!(job.spec.job_type, Some(ProwJobType::Periodic));
    assert_eq!(job.spec.agent, Some(ProwJobAgent::Kubernetes));
    assert!(job.spec.refs.is_none());
    assert_eq!(job.spec.extra_refs[0].path_alias, "k8s.io/test-infra");
    assert!(job.spec.report, "reported unless skip_report");
    assert_eq!(job.spec.context, "", "periodics have no context");
    assert_eq!(
        job.spec
            .decoration_config
            .as_ref()
            .and_then(|d| d.timeout.as_deref()),
        Some("2h")
    );
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("preset-dind-enabled").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get(labels::JOB).map(String::as_str),
        Some("ci-nightly")
    );
    assert_eq!(
        labels.get(labels::TYPE).map(String::as_str),
        Some("periodic")
    );
    assert_eq!(
        labels.get(DEFINITION_LABEL).map(String::as_str),
        Some("ci-nightly")
    );
    assert_eq!(
        labels.get(TRIGGER_LABEL).map(String::as_str),
        Some("schedule")
    );
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("testgrid-dashboards").map(String::as_str),
        Some("sig-testing")
    );
    assert_eq!(
        annotations.get(labels::JOB).map(String::as_str),
        Some("ci-nightly")
    );
}

#[test]
fn an_undecorated_definition_keeps_its_decoration_config_off_the_run() {
    let mut def = definition(PERIODIC);
    def.spec.decorate = None;
    let job = prowjob_for(&def, &request("x")).expect("job");
    assert!(job.spec.decoration_config.is_none());
}

#[test]
fn a_presubmit_run_needs_refs_and_gets_its_context_and_rerun_command() {
    let def = definition(PRESUBMIT);
    let mut req = request("pull-unit-run-1");
    req.trigger = "manual".into();
    req.user = Some("alice".into());
    assert_eq!(
        prowjob_for(&def, &req).expect_err("no base").0,
        "a run needs the branch it tests (base_ref)"
    );
    req.base_ref = "main".into();
    assert!(prowjob_for(&def, &req)
        .expect_err("no pull")
        .0
        .contains("pull request"));
    req.pulls = vec![Pull {
        number: 7,
        sha: Some("abc".into()),
        ..Default::default()
    }];
    let job = prowjob_for(&def, &req).expect("job");
    let refs = job.spec.refs.as_ref().expect("refs");
    assert_eq!((refs.org.as_str(), refs.repo.as_str()), ("acme", "widgets"));
    assert_eq!(refs.path_alias, "acme.dev/widgets");
    assert_eq!(job.spec.context, "pull-unit");
    assert_eq!(job.spec.rerun_command, "/test pull-unit");
    assert!(!job.spec.report);
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(labels::REFS_PULL).map(String::as_str), Some("7"));
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGERED_BY_ANNOTATION))
            .map(String::as_str),
        Some("alice")
    );
}

#[test]
fn spec_name_overrides_the_object_name_and_a_bad_repo_or_agent_is_refused() {
    let mut def = definition(PRESUBMIT);
    def.spec.name = "pull-unit-v2".into();
    assert_eq!(def.job_name(), "pull-unit-v2");
    def.spec.repo = "widgets".into();
    let mut req = request("x");
    req.base_ref = "main".into();
    assert!(prowjob_for(&def, &req)
        .expect_err("repo")
        .0
        .contains("org/repo"));
    let mut def = definition(PERIODIC);
    def.spec.agent = "mystery".into();
    assert!(prowjob_for(&def, &request("x"))
        .expect_err("agent")
        .0
        .contains("mystery"));
}

#[test]
fn run_names_are_at_most_63_characters_and_stay_distinct() {
    assert_eq!(
        run_name("ci-nightly", "1767225600"),
        "ci-nightly-1767225600"
    );
    let long = "a".repeat(80);
    let other = format!("{}b", "a".repeat(79));
    let (x, y) = (
        run_name(&long, "1767225600-r2"),
        run_name(&other, "1767225600-r2"),
    );
    assert!(x.len() <= 63 && y.len() <= 63, "{x} {y}");
    assert_ne!(x, y);
    assert!(x.ends_with("-1767225600-r2"));
    assert_eq!(manual_suffix("2026-11-24"), manual_suffix("2026-11-24"));
    assert_ne!(manual_suffix("a"), manual_suffix("b"));
}

#[test]
fn an_upstream_entry_pastes_into_spec_and_round_trips() {
    let def = definition(PERIODIC);
    let back: serde_json::Value = serde_json::to_value(&def).expect("json");
    let again: JobDefinition = serde_json::from_value(back.clone()).expect("reads back");
    assert_eq!(again, def);
    assert_eq!(back["spec"]["interval"], "24h");
    assert_eq!(back["spec"]["decorate"], true);
    assert_eq!(back["spec"]["spec"]["containers"][0]["image"], "busybox");
}

#[test]
fn the_literal_branch_is_the_one_branch_named_without_a_pattern() {
    for (branches, expected) in [
        (serde_json::json!(["main"]), Some("main")),
        (serde_json::json!(["^main$"]), Some("main")),
        (serde_json::json!(["release-1.2"]), Some("release-1.2")),
        (serde_json::json!(["^release-.*$"]), None),
        (serde_json::json!(["main", "dev"]), None),
        (serde_json::json!([]), None),
        (serde_json::json!(["^$"]), None),
    ] {
        let def: JobDefinition = serde_json::from_value(serde_json::json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
            "metadata": {"name": "d"},
            "spec": {"type": "postsubmit", "repo": "a/b", "branches": branches},
        }))
        .expect("definition");
        assert_eq!(def.literal_branch().as_deref(), expected, "{branches}");
    }
}
