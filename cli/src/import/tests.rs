use std::path::Path;

use super::*;

/// `lines` has one starting with `prefix`.
fn assert_note(lines: &[String], prefix: &str) {
    assert!(
        lines.iter().any(|l| l.starts_with(prefix)),
        "no line starts with {prefix:?}: {lines:#?}"
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream")
}

fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        out: PathBuf::from(name),
        text: text.into(),
    }
}

fn fixture_sources() -> (Source, Vec<Source>) {
    let root = fixtures();
    let read = |rel: &str| {
        let text = std::fs::read_to_string(root.join(rel)).expect("fixture");
        source(rel, &text)
    };
    let config = read("config.yaml");
    let jobs = [
        "jobs/acme/infra/periodics.yaml",
        "jobs/acme/widgets/widgets-postsubmits.yaml",
        "jobs/acme/widgets/widgets-presubmits.yaml",
    ]
    .map(read)
    .to_vec();
    (config, jobs)
}

fn imported() -> Imported {
    let (config, jobs) = fixture_sources();
    import(&config, &jobs, &Options::default())
}

fn by_job<'a>(imported: &'a Imported, kind: &str, job: &str, repo: &str) -> &'a Value {
    let found: Vec<&Value> = imported
        .objects()
        .filter(|o| o["kind"] == kind)
        .filter(|o| o["spec"]["name"] == job || (kind == "Preset" && o["metadata"]["name"] == job))
        .filter(|o| repo.is_empty() || o["spec"]["repo"] == repo)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {job} {repo}: {found:#?}");
    found[0]
}

#[test]
fn the_fixtures_make_every_preset_and_job_once_in_the_file_they_came_from() {
    let imported = imported();
    assert_eq!(
        imported.counts,
        Counts {
            presets: 2,
            presubmits: 4,
            postsubmits: 2,
            periodics: 4,
        }
    );
    let names = |file: &str| -> Vec<String> {
        imported.files[Path::new(file)]
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names("config.yaml"),
        [
            "Preset/preset-service-account",
            "JobDefinition/ci-acme-janitor"
        ]
    );
    assert_eq!(
        names("jobs/acme/widgets/widgets-postsubmits.yaml"),
        [
            "JobDefinition/post-widgets-publish",
            "JobDefinition/post-widgets-docs"
        ]
    );
    // Two repositories define pull-lint: each object's name says which one it is.
    let presubmits = names("jobs/acme/widgets/widgets-presubmits.yaml");
    let lint: Vec<&String> = presubmits
        .iter()
        .filter(|n| n.starts_with("JobDefinition/pull-lint-"))
        .collect();
    assert_eq!(lint.len(), 2, "{presubmits:?}");
    assert_ne!(lint[0], lint[1]);
    for object in imported.objects() {
        assert_eq!(object["apiVersion"], API_VERSION);
        // config.yaml's prowjob_namespace is where upstream's jobs lived.
        assert_eq!(object["metadata"]["namespace"], "prow", "{object}");
        let source = &object["metadata"]["annotations"][SOURCE_ANNOTATION];
        assert!(
            source.as_str().is_some_and(|s| s.ends_with(".yaml")),
            "{object}"
        );
    }
}

#[test]
fn decoration_defaults_apply_as_upstream_applies_them_and_the_job_wins() {
    let imported = imported();
    let unit = by_job(
        &imported,
        "JobDefinition",
        "pull-widgets-unit",
        "acme/widgets",
    );
    let d = &unit["spec"]["decoration_config"];
    assert_eq!(d["timeout"], "40m", "the job's own value wins: {d}");
    assert_eq!(d["grace_period"], "15s", "from the entry for all: {d}");
    assert_eq!(
        d["gcs_configuration"]["bucket"], "acme-widgets-logs",
        "the acme/widgets entry applies later: {d}"
    );
    assert_eq!(
        d["gcs_configuration"]["path_strategy"], "explicit",
        "maps merge field by field: {d}"
    );
    assert_eq!(
        d["utility_images"]["sidecar"],
        "prow-operator.local/sidecar:v20261101"
    );

    // A periodic matches by its first extra ref.
    let nightly = by_job(&imported, "JobDefinition", "ci-widgets-nightly", "");
    assert_eq!(nightly["spec"]["decoration_config"]["timeout"], "3h");
    let janitor = by_job(&imported, "JobDefinition", "ci-acme-janitor", "");
    assert_eq!(janitor["spec"]["decoration_config"]["timeout"], "2h");
    assert_eq!(
        janitor["spec"]["decoration_config"]["gcs_configuration"]["bucket"],
        "acme-ci-logs"
    );

    // An undecorated job gets no decoration.
    let lint = imported
        .objects()
        .find(|o| o["spec"]["repo"] == "acme/gadgets")
        .expect("gadgets lint");
    assert!(lint["spec"].get("decoration_config").is_none(), "{lint}");
}

#[test]
fn what_has_no_counterpart_is_reported_one_line_each_and_nothing_is_refused() {
    let imported = imported();
    let lines: Vec<String> = imported.notes.iter().map(ToString::to_string).collect();
    for item in [
        "tide",
        "sinker",
        "plank.job_url_prefix_config",
        "plank.report_templates",
        "pod_namespace",
        "prowjob_namespace",
    ] {
        assert_note(&lines, &format!("config.yaml: {item}: "));
    }
    assert_eq!(lines.len(), 6, "{lines:#?}");
}

/// Both ways: every field of `a` is in `b` with the same value, and the other way round.
fn same(a: &Value, b: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    differences("", a, Some(b), &mut out);
    differences("", b, Some(a), &mut out);
    out
}

#[test]
fn the_import_round_trips_every_fixture_job_and_preset() {
    let imported = imported();
    let back = export(imported.objects());

    // What upstream reads: the fixtures, with the decoration defaults config.yaml applies.
    let (config, jobs) = fixture_sources();
    let mut expected = json!({"presets": [], "presubmits": {}, "postsubmits": {}, "periodics": []});
    for file in std::iter::once(&config).chain(&jobs) {
        let value: Value = serde_yaml::from_str(&file.text).expect("yaml");
        for (key, v) in value.as_object().expect("map") {
            match (key.as_str(), v) {
                ("presets" | "periodics", Value::Array(items)) => {
                    expected[key].as_array_mut().unwrap().extend(items.clone());
                }
                ("presubmits" | "postsubmits", Value::Object(by_repo)) => {
                    for (repo, list) in by_repo {
                        let slot = expected[key]
                            .as_object_mut()
                            .unwrap()
                            .entry(repo.clone())
                            .or_insert(json!([]));
                        slot.as_array_mut()
                            .unwrap()
                            .extend(list.as_array().unwrap().clone());
                    }
                }
                _ => {}
            }
        }
    }
    let defaults = json!({
        "grace_period": "15s",
        "utility_images": {
            "clonerefs": "prow-operator.local/clonerefs:v20261101",
            "initupload": "prow-operator.local/initupload:v20261101",
            "entrypoint": "prow-operator.local/entrypoint:v20261101",
            "sidecar": "prow-operator.local/sidecar:v20261101",
        },
        "gcs_configuration": {"path_strategy": "explicit"},
        "gcs_credentials_secret": "gcs-credentials",
    });
    let decorate = |job: &mut Value, timeout: &str, bucket: &str| {
        let own = job.get("decoration_config").cloned().unwrap_or(json!({}));
        let mut d = merge_over(
            &defaults,
            &json!({"timeout": timeout, "gcs_configuration": {"bucket": bucket}}),
        );
        d = merge_over(&d, &own);
        job["decoration_config"] = d;
    };
    for job in expected["presubmits"]["acme/widgets"]
        .as_array_mut()
        .unwrap()
    {
        if job["decorate"] == true {
            decorate(job, "3h", "acme-widgets-logs");
        }
    }
    for job in expected["postsubmits"]["acme/widgets"]
        .as_array_mut()
        .unwrap()
    {
        if job["decorate"] == true {
            decorate(job, "3h", "acme-widgets-logs");
        }
    }
    for job in expected["periodics"].as_array_mut().unwrap() {
        match job["name"].as_str().unwrap() {
            "ci-widgets-nightly" => decorate(job, "3h", "acme-widgets-logs"),
            "ci-acme-janitor" => decorate(job, "2h", "acme-ci-logs"),
            _ => {}
        }
    }
    assert_eq!(
        back["presubmits"]["acme/widgets"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        same(&expected, &back),
        Vec::<(String, String)>::new(),
        "{back:#}"
    );
    // The pull-widgets-unit fixture names its own 40m timeout: the default did not win.
    assert_eq!(
        back["presubmits"]["acme/widgets"][0]["decoration_config"]["timeout"],
        "40m"
    );
}

#[test]
fn a_field_the_kinds_lack_is_named_and_the_rest_of_the_job_still_comes() {
    let jobs = source(
        "jobs/odd.yaml",
        "periodics:\n- name: odd\n  interval: 1h\n  frobnicate: yes\n  spec:\n    containers:\n    - image: busybox\n      colour: blue\npresets:\n- labels: {preset-x: \"true\"}\n  env: [{name: X, value: \"1\"}]\n  sidecars: [a]\nbranch-protection: {}\n",
    );
    let imported = import(&source("config.yaml", ""), &[jobs], &Options::default());
    let lines: Vec<String> = imported.notes.iter().map(ToString::to_string).collect();
    assert!(lines.contains(&"jobs/odd.yaml: periodics[0] (odd): frobnicate: not carried: the kind has no such field".to_string()), "{lines:#?}");
    assert!(lines.contains(&"jobs/odd.yaml: periodics[0] (odd): spec.containers[0].colour: not carried: the kind has no such field".to_string()), "{lines:#?}");
    assert!(
        lines.contains(
            &"jobs/odd.yaml: presets[0]: sidecars: not carried: the kind has no such field"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert_note(&lines, "jobs/odd.yaml: branch-protection: not carried");
    assert_eq!(imported.counts.periodics, 1);
    assert_eq!(imported.counts.presets, 1);
    let odd = by_job(&imported, "JobDefinition", "odd", "");
    assert_eq!(odd["spec"]["interval"], "1h");
    assert!(
        odd["metadata"].get("namespace").is_none(),
        "no namespace unless asked: {odd}"
    );
}

#[test]
fn a_job_that_does_not_read_is_left_out_with_the_reason_and_broken_yaml_reads_as_nothing() {
    let jobs = [
        source("jobs/bad.yaml", "periodics:\n- name: bad\n  interval: 1h\n  spec: [not, a, pod]\n- name: good\n  interval: 1h\n  spec: {containers: [{name: t, image: busybox}]}\n"),
        source("jobs/broken.yaml", "presubmits: [unclosed\n"),
    ];
    let imported = import(
        &source("config.yaml", ""),
        &jobs,
        &Options {
            namespace: Some("ci".into()),
        },
    );
    let lines: Vec<String> = imported.notes.iter().map(ToString::to_string).collect();
    assert_note(&lines, "jobs/bad.yaml: periodics[0] (bad): not imported: ");
    assert_note(&lines, "jobs/broken.yaml: (file): is not valid YAML");
    assert_eq!(imported.counts.periodics, 1);
    let good = by_job(&imported, "JobDefinition", "good", "");
    assert_eq!(good["metadata"]["namespace"], "ci");
}

#[test]
fn a_job_the_webhook_would_refuse_is_imported_and_the_report_says_why() {
    let jobs = source(
        "jobs/twice.yaml",
        "periodics:\n- name: twice\n  interval: 1h\n  cron: '0 * * * *'\n  spec: {containers: [{name: t, image: busybox}]}\npresubmits:\n  acme/w:\n  - name: pull-w\n    trigger: '/test w'\n    spec: {containers: [{name: t, image: busybox}]}\n",
    );
    let imported = import(&source("config.yaml", ""), &[jobs], &Options::default());
    let lines: Vec<String> = imported.notes.iter().map(ToString::to_string).collect();
    assert_note(
        &lines,
        "jobs/twice.yaml: periodics[0] (twice): the webhook will refuse it: spec.",
    );
    assert_note(&lines, "jobs/twice.yaml: presubmits[acme/w][0] (pull-w): the webhook will refuse it: spec.rerun_command");
    assert_eq!(imported.counts.periodics + imported.counts.presubmits, 2);

    // The same periodic in two files: both are imported (under two names), both refused.
    let twice = "periodics:\n- name: nightly\n  interval: 24h\n  spec: {containers: [{name: t, image: busybox}]}\n";
    let imported = import(
        &source("config.yaml", ""),
        &[source("jobs/a.yaml", twice), source("jobs/b.yaml", twice)],
        &Options::default(),
    );
    let refused: Vec<String> = imported
        .notes
        .iter()
        .map(ToString::to_string)
        .filter(|l| {
            l.contains("the webhook will refuse it: spec.name: job \"nightly\" is already defined")
        })
        .collect();
    assert_eq!(refused.len(), 2, "{:#?}", imported.notes);
}

#[test]
fn object_names_are_dns_labels() {
    for (job, name) in [
        ("pull-widgets-unit", "pull-widgets-unit"),
        ("Pull_Widgets.Unit", "pull-widgets-unit"),
        ("__x__", "x"),
        ("...", "job"),
    ] {
        assert_eq!(dns_label(job), name, "{job}");
    }
    let long = "a".repeat(100);
    let name = dns_label(&long);
    assert_eq!(name.len(), 63);
    assert_ne!(
        name,
        dns_label(&"a".repeat(101)),
        "a cut name ends with a hash of the whole"
    );
    assert_eq!(with_suffix(&"b".repeat(63), "abcdef").len(), 63);
}

#[test]
fn the_older_forms_of_decoration_defaults_apply_too() {
    let config = source(
        "config.yaml",
        "decorate_all_jobs: true\nplank:\n  default_decoration_configs:\n    acme/w: {timeout: 5h}\n    '*': {timeout: 1h, grace_period: 10s}\n    acme: {grace_period: 20s}\n",
    );
    let jobs = source(
        "jobs/w.yaml",
        "postsubmits:\n  acme/w:\n  - name: post-w\n    spec: {containers: [{name: t, image: busybox}]}\n  - name: post-w-plain\n    decorate: false\n    spec: {containers: [{name: t, image: busybox}]}\n",
    );
    let imported = import(&config, &[jobs], &Options::default());
    let post = by_job(&imported, "JobDefinition", "post-w", "acme/w");
    assert_eq!(post["spec"]["decorate"], true, "decorate_all_jobs");
    assert_eq!(
        post["spec"]["decoration_config"],
        json!({"timeout": "5h", "grace_period": "20s"})
    );
    let plain = by_job(&imported, "JobDefinition", "post-w-plain", "acme/w");
    assert!(plain["spec"].get("decoration_config").is_none(), "{plain}");
}
