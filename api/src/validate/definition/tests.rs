use serde_json::{json, Value};

use super::*;

fn def(name: &str, spec: Value) -> JobDefinition {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": name, "namespace": "jobs"},
        "spec": spec,
    }))
    .expect("definition")
}

fn with(base: Value, patch: Value) -> Value {
    let mut base = base;
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn periodic() -> Value {
    json!({"type": "periodic", "interval": "1h", "spec": {"containers": [{"image": "busybox"}]}})
}

fn presubmit() -> Value {
    json!({"type": "presubmit", "repo": "acme/widgets", "spec": {"containers": [{"image": "busybox"}]}})
}

fn fields(d: &JobDefinition) -> Vec<(String, String)> {
    definition(d, &Config::default())
        .into_iter()
        .map(|v| (v.field, v.message))
        .collect()
}

#[test]
fn good_definitions_pass() {
    for spec in [
        periodic(),
        presubmit(),
        with(
            presubmit(),
            json!({"trigger": "(?m)^/test unit$", "rerun_command": "/test unit", "branches": ["^main$"], "run_if_changed": "^src/"}),
        ),
        with(
            periodic(),
            json!({"interval": "", "cron": "CRON_TZ=Europe/Berlin 0 3 * * *", "retry": {"attempts": 2, "interval": "5m"}}),
        ),
        json!({"type": "postsubmit", "repo": "acme/widgets", "skip_branches": ["^release-"], "spec": {"containers": [{"image": "busybox"}]}}),
    ] {
        let d = def("ok", spec.clone());
        assert_eq!(fields(&d), Vec::<(String, String)>::new(), "{spec}");
    }
}

#[test]
fn each_rule_names_its_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(periodic(), json!({"name": "bad name"})),
            "spec.name",
            "not a valid job name",
        ),
        (
            with(periodic(), json!({"repo": "acme/widgets"})),
            "spec.repo",
            "presubmits and postsubmits",
        ),
        (
            with(periodic(), json!({"interval": ""})),
            "spec",
            "one of interval",
        ),
        (
            with(periodic(), json!({"cron": "0 * * * *"})),
            "spec.cron",
            "only one of",
        ),
        (
            with(periodic(), json!({"interval": "", "cron": "0 25 * * *"})),
            "spec.cron",
            "not a cron schedule",
        ),
        (
            with(
                periodic(),
                json!({"interval": "", "minimum_interval": "soon"}),
            ),
            "spec.minimum_interval",
            "invalid duration",
        ),
        (
            with(
                periodic(),
                json!({"retry": {"attempts": 1, "interval": "later"}}),
            ),
            "spec.retry.interval",
            "invalid duration",
        ),
        (
            with(periodic(), json!({"branches": ["main"]})),
            "spec.branches",
            "presubmits and postsubmits only",
        ),
        (
            with(periodic(), json!({"trigger": "x"})),
            "spec.trigger",
            "presubmits only",
        ),
        (
            with(periodic(), json!({"run_if_changed": "^a"})),
            "spec.run_if_changed",
            "presubmits and postsubmits only",
        ),
        (
            with(presubmit(), json!({"repo": "widgets"})),
            "spec.repo",
            "not org/repo",
        ),
        (
            with(presubmit(), json!({"interval": "1h"})),
            "spec.interval",
            "periodics only",
        ),
        (
            with(presubmit(), json!({"retry": {"attempts": 1}})),
            "spec.retry",
            "periodics only",
        ),
        (
            with(presubmit(), json!({"trigger": "/test x"})),
            "spec.rerun_command",
            "is required when trigger",
        ),
        (
            with(presubmit(), json!({"rerun_command": "/test x"})),
            "spec.trigger",
            "is required when rerun_command",
        ),
        (
            with(
                presubmit(),
                json!({"trigger": "(unclosed", "rerun_command": "/test x"}),
            ),
            "spec.trigger",
            "does not compile",
        ),
        (
            with(
                presubmit(),
                json!({"trigger": "^/test a$", "rerun_command": "/test b"}),
            ),
            "spec.rerun_command",
            "does not match trigger",
        ),
        (
            with(presubmit(), json!({"branches": ["main", "(bad"]})),
            "spec.branches[1]",
            "does not compile",
        ),
        (
            with(presubmit(), json!({"skip_branches": ["[z-a]"]})),
            "spec.skip_branches[0]",
            "does not compile",
        ),
        (
            with(presubmit(), json!({"run_if_changed": "(x"})),
            "spec.run_if_changed",
            "does not compile",
        ),
        (
            with(presubmit(), json!({"skip_if_only_changed": "(x"})),
            "spec.skip_if_only_changed",
            "does not compile",
        ),
        (
            with(
                presubmit(),
                json!({"always_run": true, "run_if_changed": "^a"}),
            ),
            "spec.run_if_changed",
            "mutually exclusive",
        ),
        (
            with(
                presubmit(),
                json!({"always_run": true, "skip_if_only_changed": "^a"}),
            ),
            "spec.skip_if_only_changed",
            "mutually exclusive",
        ),
        (
            with(
                presubmit(),
                json!({"run_if_changed": "^a", "skip_if_only_changed": "^b"}),
            ),
            "spec.skip_if_only_changed",
            "mutually exclusive",
        ),
        (
            with(presubmit(), json!({"agent": "mystery"})),
            "spec.agent",
            "not an agent",
        ),
        // The ProwJob rules, on the definition's own fields.
        (
            with(periodic(), json!({"max_concurrency": -1})),
            "spec.max_concurrency",
            "0 (unlimited) or more",
        ),
        (
            with(periodic(), json!({"labels": {"bad key!": "x"}})),
            "spec.labels[bad key!]",
            "not a valid key",
        ),
        (
            with(periodic(), json!({"annotations": {"bad key!": "x"}})),
            "spec.annotations[bad key!]",
            "not a valid key",
        ),
        (
            with(
                periodic(),
                json!({"decorate": true, "decoration_config": {"timeout": "forever"}}),
            ),
            "spec.decoration_config.timeout",
            "invalid duration",
        ),
        (
            with(
                periodic(),
                json!({"extra_refs": [{"org": "", "repo": "x"}]}),
            ),
            "spec.extra_refs[0].org",
            "is required",
        ),
        (
            with(periodic(), json!({"spec": {"containers": []}})),
            "spec.spec.containers",
            "at least one container",
        ),
        (
            with(
                periodic(),
                json!({"spec": {"containers": [{"image": "x", "env": [{"name": "JOB_NAME", "value": "x"}]}]}}),
            ),
            "spec.spec.containers[0].env[0].name",
            "set by Prow",
        ),
        (
            with(
                periodic(),
                json!({"spec": {"containers": [{"image": "x", "resources": {"limits": {"cpu": "two"}}}]}}),
            ),
            "spec.spec.containers[0].resources.limits[cpu]",
            "not a quantity",
        ),
        (
            with(
                periodic(),
                json!({"spec": {"containers": [{"image": "x", "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}]}}),
            ),
            "spec.spec.containers[0].resources.requests[memory]",
            "more than the limit",
        ),
        (
            with(periodic(), json!({"spec": null})),
            "spec.spec",
            "is required for agent kubernetes",
        ),
    ];
    for (spec, field, message) in cases {
        let found = fields(&def("job", spec.clone()));
        assert!(
            found.iter().any(|(f, m)| f == field && m.contains(message)),
            "{spec}: wanted {field}: {message}; got {found:?}"
        );
    }
}

#[test]
fn duplicate_jobs_and_contexts_of_overlapping_definitions_collide() {
    let a = def(
        "a",
        with(presubmit(), json!({"name": "unit", "branches": ["main"]})),
    );
    let same_name = def("b", with(presubmit(), json!({"name": "unit"})));
    let other_branch = def(
        "c",
        with(
            presubmit(),
            json!({"name": "unit", "branches": ["release-1"]}),
        ),
    );
    let other_repo = def(
        "d",
        with(presubmit(), json!({"name": "unit", "repo": "acme/other"})),
    );
    let same_context = def(
        "e",
        with(presubmit(), json!({"name": "unit-v2", "context": "unit"})),
    );
    let skips_main = def(
        "f",
        with(
            presubmit(),
            json!({"name": "unit", "skip_branches": ["^main$"]}),
        ),
    );
    let found = definition_collisions(
        &a,
        [
            &a,
            &same_name,
            &other_branch,
            &other_repo,
            &same_context,
            &skips_main,
        ],
    );
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|v| (v.field.as_str(), v.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].0 == "spec.name" && found[0].1.contains("JobDefinition b"),
        "{found:?}"
    );
    assert!(
        found[1].0 == "spec.context" && found[1].1.contains("JobDefinition e"),
        "{found:?}"
    );

    let p1 = def("p1", with(periodic(), json!({"name": "nightly"})));
    let p2 = def("p2", with(periodic(), json!({"name": "nightly"})));
    let found = definition_collisions(&p1, [&p2]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, "spec.name");
}

#[test]
fn branch_overlap_follows_upstream() {
    let b = |branches: Value, skip: Value| {
        def(
            "x",
            with(
                presubmit(),
                json!({"branches": branches, "skip_branches": skip}),
            ),
        )
    };
    let cases = [
        (b(json!([]), json!([])), b(json!(["main"]), json!([])), true),
        (
            b(json!(["main"]), json!([])),
            b(json!(["main", "dev"]), json!([])),
            true,
        ),
        (
            b(json!(["main"]), json!([])),
            b(json!(["dev"]), json!([])),
            false,
        ),
        (
            b(json!(["main"]), json!([])),
            b(json!([]), json!(["^main$"])),
            false,
        ),
        (
            b(json!(["release-1"]), json!([])),
            b(json!([]), json!(["^main$"])),
            true,
        ),
        (b(json!([]), json!(["a"])), b(json!([]), json!(["b"])), true),
    ];
    for (x, y, want) in cases {
        assert_eq!(
            branches_overlap(&x, &y),
            want,
            "{:?} / {:?}",
            x.spec,
            y.spec
        );
        assert_eq!(branches_overlap(&y, &x), want, "reversed");
    }
}
