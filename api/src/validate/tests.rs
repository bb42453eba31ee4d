use serde_json::{json, Value};

use super::*;
use crate::{Preset, TestCluster};

fn job(patch: Value) -> ProwJob {
    let mut base = json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "j", "labels": {"created-by-prow": "true"}},
        "spec": {"type": "presubmit", "agent": "kubernetes", "job": "pull-unit",
                 "refs": {"org": "acme", "repo": "widgets", "base_ref": "main",
                          "pulls": [{"number": 1, "sha": "abc"}]},
                 "pod_spec": {"containers": [{"image": "busybox", "command": ["make"]}]}},
    });
    merge(&mut base, patch);
    serde_json::from_value(base).expect("job")
}

/// JSON merge patch, enough for tests: objects merge, anything else replaces, null removes.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn fields(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(|v| v.field.clone()).collect()
}

fn check(patch: Value) -> Vec<String> {
    fields(&prowjob(&job(patch), &Config::default()))
}

#[test]
fn a_good_job_passes() {
    assert_eq!(check(json!({})), Vec::<String>::new());
}

#[test]
fn each_rule_names_its_field() {
    let two = |a: Value, b: Value| json!({"spec": {"pod_spec": {"containers": [a, b]}}});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "job name charset",
            json!({"spec": {"job": "bad name"}}),
            "spec.job",
        ),
        (
            "job name length",
            json!({"spec": {"job": "x".repeat(64)}}),
            "spec.job",
        ),
        (
            "type required",
            json!({"spec": {"type": null}}),
            "spec.type",
        ),
        (
            "agent required",
            json!({"spec": {"agent": null}}),
            "spec.agent",
        ),
        (
            "max_concurrency",
            json!({"spec": {"max_concurrency": -1}}),
            "spec.max_concurrency",
        ),
        (
            "presubmit needs refs",
            json!({"spec": {"refs": null}}),
            "spec.refs",
        ),
        (
            "presubmit needs pulls",
            json!({"spec": {"refs": {"pulls": []}}}),
            "spec.refs.pulls",
        ),
        (
            "pull needs sha",
            json!({"spec": {"refs": {"pulls": [{"number": 1}]}}}),
            "spec.refs.pulls[0].sha",
        ),
        (
            "pull number positive",
            json!({"spec": {"refs": {"pulls": [{"number": 0, "sha": "s"}]}}}),
            "spec.refs.pulls[0].number",
        ),
        (
            "base_ref required",
            json!({"spec": {"refs": {"base_ref": ""}}}),
            "spec.refs.base_ref",
        ),
        (
            "periodic has no refs",
            json!({"spec": {"type": "periodic"}}),
            "spec.refs",
        ),
        (
            "postsubmit needs refs",
            json!({"spec": {"type": "postsubmit", "refs": null}}),
            "spec.refs",
        ),
        (
            "org required",
            json!({"spec": {"refs": {"org": ""}}}),
            "spec.refs.org",
        ),
        (
            "extra_refs repo required",
            json!({"spec": {"extra_refs": [{"org": "o", "repo": ""}]}}),
            "spec.extra_refs[0].repo",
        ),
        (
            "extra_refs repeat a repo",
            json!({"spec": {"extra_refs": [{"org": "acme", "repo": "widgets"}]}}),
            "spec.extra_refs[0]",
        ),
        (
            "pod spec required",
            json!({"spec": {"pod_spec": null}}),
            "spec.pod_spec",
        ),
        (
            "a container",
            json!({"spec": {"pod_spec": {"containers": []}}}),
            "spec.pod_spec.containers",
        ),
        (
            "names unique",
            two(
                json!({"name": "a", "command": ["x"]}),
                json!({"name": "a", "command": ["x"]}),
            ),
            "spec.pod_spec.containers[1].name",
        ),
        (
            "names given",
            two(
                json!({"name": "a", "command": ["x"]}),
                json!({"command": ["x"]}),
            ),
            "spec.pod_spec.containers[1].name",
        ),
        (
            "names not reserved",
            two(
                json!({"name": "a", "command": ["x"]}),
                json!({"name": "sidecar", "command": ["x"]}),
            ),
            "spec.pod_spec.containers[1].name",
        ),
        (
            "command or args",
            two(json!({"name": "a", "command": ["x"]}), json!({"name": "b"})),
            "spec.pod_spec.containers[1]",
        ),
        (
            "no init containers",
            json!({"spec": {"pod_spec": {"initContainers": [{"name": "i"}]}}}),
            "spec.pod_spec.initContainers[0]",
        ),
        (
            "env unique",
            json!({"spec": {"pod_spec": {"containers": [{"env": [{"name": "X"}, {"name": "X"}]}]}}}),
            "spec.pod_spec.containers[0].env[1].name",
        ),
        (
            "env not reserved",
            json!({"spec": {"pod_spec": {"containers": [{"env": [{"name": "PULL_NUMBER"}]}]}}}),
            "spec.pod_spec.containers[0].env[0].name",
        ),
        (
            "volume not reserved",
            json!({"spec": {"pod_spec": {"volumes": [{"name": "logs", "emptyDir": {}}]}}}),
            "spec.pod_spec.volumes[0].name",
        ),
        (
            "volume unique",
            json!({"spec": {"pod_spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}}}),
            "spec.pod_spec.volumes[1].name",
        ),
        (
            "mount names a volume",
            json!({"spec": {"pod_spec": {"containers": [{"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}}}),
            "spec.pod_spec.containers[0].volumeMounts[0].name",
        ),
        (
            "mount path not reserved",
            json!({"spec": {"pod_spec": {"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"volumeMounts": [{"name": "v", "mountPath": "/logs"}]}]}}}),
            "spec.pod_spec.containers[0].volumeMounts[0].mountPath",
        ),
        (
            "label value",
            json!({"metadata": {"labels": {"team": "has space"}}}),
            "metadata.labels[team]",
        ),
        (
            "label key",
            json!({"metadata": {"labels": {"bad key!": "x"}}}),
            "metadata.labels[bad key!]",
        ),
        (
            "prow type label agrees",
            json!({"metadata": {"labels": {"prow.k8s.io/type": "periodic"}}}),
            "metadata.labels[prow.k8s.io/type]",
        ),
        (
            "prow job label agrees",
            json!({"metadata": {"labels": {"prow.k8s.io/job": "other"}}}),
            "metadata.labels[prow.k8s.io/job]",
        ),
        (
            "test cluster pool label names a pool",
            json!({"metadata": {"labels": {"prow-operator.dev/test-cluster-pool": "E2E_pool"}}}),
            "metadata.labels[prow-operator.dev/test-cluster-pool]",
        ),
        (
            "rerun auth",
            json!({"spec": {"rerun_auth_config": {"allow_anyone": true, "github_users": ["a"]}}}),
            "spec.rerun_auth_config",
        ),
        (
            "durations parse",
            json!({"spec": {"decoration_config": {"timeout": "2 hours"}}}),
            "spec.decoration_config.timeout",
        ),
        (
            "timeouts are at most 30 days",
            json!({"spec": {"decoration_config": {"pod_running_timeout": "20000h"}}}),
            "spec.decoration_config.pod_running_timeout",
        ),
        (
            "a bucket of an unknown scheme is refused",
            json!({"spec": {"decoration_config": {"gcs_configuration": {"bucket": "ftp://logs"}}}}),
            "spec.decoration_config.gcs_configuration.bucket",
        ),
        (
            "utility images are four named images",
            json!({"spec": {"decoration_config": {"utility_images": ["clonerefs:v1"]}}}),
            "spec.decoration_config.utility_images",
        ),
    ];
    for (rule, patch, field) in cases {
        let found = check(patch);
        assert!(
            found.contains(&field.to_string()),
            "{rule}: expected {field}, got {found:?}"
        );
    }
}

#[test]
fn fine_variations_pass() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "mount under a reserved path",
            json!({"spec": {"pod_spec": {"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"volumeMounts": [{"name": "v", "mountPath": "/logs/artifacts"}]}]}}}),
        ),
        (
            "a sidecar init container",
            json!({"spec": {"pod_spec": {"initContainers": [{"name": "i", "restartPolicy": "Always"}]}}}),
        ),
        (
            "a periodic with extra_refs",
            json!({"spec": {"type": "periodic", "refs": null, "extra_refs": [{"org": "o", "repo": "r", "base_ref": "main"}]}}),
        ),
        (
            "PULL_NUMBER in a periodic",
            json!({"spec": {"type": "periodic", "refs": null, "pod_spec": {"containers": [{"env": [{"name": "PULL_NUMBER"}]}]}}}),
        ),
        (
            "agreeing prow labels",
            json!({"metadata": {"labels": {"prow.k8s.io/type": "presubmit", "prow.k8s.io/job": "pull-unit"}}}),
        ),
        (
            "allow_anyone alone",
            json!({"spec": {"rerun_auth_config": {"allow_anyone": true}}}),
        ),
    ];
    for (what, patch) in cases {
        assert_eq!(check(patch), Vec::<String>::new(), "{what}");
    }
}

#[test]
fn several_violations_are_reported_together_with_a_fix() {
    let found = prowjob(
        &job(json!({"spec": {"job": "bad name", "max_concurrency": -2}})),
        &Config::default(),
    );
    assert_eq!(found.len(), 2);
    let text = explain(&found);
    assert!(
        text.contains("spec.job: \"bad name\" is not a valid job name: use"),
        "{text}"
    );
}

#[test]
fn job_queues_must_be_configured_when_the_list_is_known() {
    let j = job(json!({"spec": {"job_queue_name": "gpu"}}));
    assert!(
        prowjob(&j, &Config::default()).is_empty(),
        "unknown configuration: skipped"
    );
    let config = Config {
        job_queues: Some(["cpu".to_string()].into()),
    };
    assert_eq!(fields(&prowjob(&j, &config)), ["spec.job_queue_name"]);
}

#[test]
fn the_spec_is_immutable() {
    let old = job(json!({}));
    let mut new = old.clone();
    new.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert!(prowjob_update(&old, &new).is_empty(), "metadata may change");
    new.spec.max_concurrency = 4;
    assert_eq!(fields(&prowjob_update(&old, &new)), ["spec"]);
}

#[test]
fn only_a_finished_job_carries_the_completed_mark() {
    let marked = |value: &str, status: Value| {
        job(
            json!({"metadata": {"labels": {"prow-operator.dev/completed": value}},
                   "status": status}),
        )
    };
    let config = Config::default();
    let field = ["metadata.labels[prow-operator.dev/completed]"];
    let cases = [
        // (value, status, refused)
        ("true", json!(null), true),
        (
            "true",
            json!({"state": "pending", "startTime": "2026-01-01T00:00:00Z"}),
            true,
        ),
        (
            "true",
            json!({"state": "success", "startTime": "2026-01-01T00:00:00Z",
                        "completionTime": "2026-01-01T00:01:00Z"}),
            false,
        ),
        ("false", json!(null), false),
    ];
    for (value, status, refused) in cases {
        let j = marked(value, status.clone());
        let found = fields(&prowjob(&j, &config));
        let want: &[&str] = if refused { &field } else { &[] };
        assert_eq!(found, want, "{value} on {status}");
        // The same through an update's whole check (label added to a stored job).
        let old = job(json!({"status": status}));
        assert_eq!(
            fields(&j.check(&config, Some(&old), [])),
            want,
            "update: {value}"
        );
    }
    let unmarked = job(json!({}));
    let found = unmarked.check(&config, Some(&marked("true", json!(null))), []);
    assert!(found.is_empty(), "taking the mark off: {found:?}");
}

#[test]
fn presets_need_a_selector_and_valid_names_and_must_not_collide() {
    let p = |name: &str, spec: Value| -> Preset {
        serde_json::from_value(
            json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": name, "namespace": "prow"}, "spec": spec}),
        )
        .expect("preset")
    };
    let bad = p(
        "bad",
        json!({"selector": {}, "env": [{"name": "1X"}], "volumes": [{"name": "Bad_Vol"}],
                              "volumeMounts": [{"name": "v", "mountPath": "relative"}]}),
    );
    assert_eq!(
        fields(&preset(&bad)),
        [
            "spec.selector",
            "spec.env[0].name",
            "spec.volumes[0].name",
            "spec.volumeMounts[0].mountPath"
        ]
    );
    let a = p(
        "a",
        json!({"selector": {"x": "1"}, "env": [{"name": "E", "value": "1"}]}),
    );
    let b = p(
        "b",
        json!({"selector": {"y": "1"}, "env": [{"name": "E", "value": "2"}]}),
    );
    let found = preset_collisions(&a, [&a, &b]);
    assert_eq!(fields(&found), ["spec.env[0]"]);
    assert!(
        found[0].message.contains("preset \"b\""),
        "{}",
        found[0].message
    );
}

#[test]
fn testclusters_need_a_pool_and_a_secret_and_cannot_be_deleted_while_leased() {
    let tc = |spec: Value, status: Value| -> TestCluster {
        serde_json::from_value(
            json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": "c"}, "spec": spec, "status": status}),
        )
        .expect("cluster")
    };
    let bad = tc(
        json!({"pool": "Bad Pool", "kubeconfigSecretRef": {"name": "", "key": ""}}),
        json!({}),
    );
    assert_eq!(
        fields(&testcluster(&bad)),
        [
            "spec.pool",
            "spec.kubeconfigSecretRef.name",
            "spec.kubeconfigSecretRef.key"
        ]
    );
    let good = json!({"pool": "e2e", "kubeconfigSecretRef": {"name": "s"}});
    assert!(testcluster(&tc(good.clone(), json!({}))).is_empty());
    assert!(
        testcluster(&tc(json!({"pool": "e2e"}), json!({}))).is_empty(),
        "a cluster without a kubeconfig (added through the cimaster API) is valid"
    );
    let leased = tc(
        good.clone(),
        json!({"phase": "Leased", "lease": {"holder": "prow/j", "since": "2024-01-01T00:00:00Z"}}),
    );
    assert!(testcluster_delete(&leased)[0]
        .message
        .contains("leased by prow/j"));
    assert!(testcluster_delete(&tc(good, json!({"phase": "Vacant"}))).is_empty());
}

#[test]
fn a_denial_lists_twenty_violations_and_counts_the_rest() {
    let many: Vec<Violation> = (0..100_000)
        .map(|i| Violation {
            field: format!("spec.pod_spec.containers[0].env[{i}].name"),
            message: "\"A\" is set twice in this container: keep one".into(),
        })
        .collect();
    let text = explain(&many);
    assert!(text.len() < 3_000, "{} bytes", text.len());
    assert_eq!(text.matches("is set twice").count(), MOST_EXPLAINED);
    assert!(
        text.ends_with(
            "and 99980 more violations (run `prow-webhook validate` on the file to list all)"
        ),
        "{text}"
    );
    assert_eq!(
        explain(&many[..2]).matches("; ").count(),
        1,
        "two are listed as they are"
    );
}

#[test]
fn testclusterpools_need_a_pool_name_and_settings_that_read() {
    let pool = |name: &str, spec: Value| -> crate::testclusterpool::TestClusterPool {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("pool")
    };
    assert!(testclusterpool(&pool("e2e", json!({}))).is_empty());
    assert!(testclusterpool(&pool(
        "e2e",
        json!({"holdDuration": "2h", "healthCheck": {"timeout": "5s"}, "maxSize": 4})
    ))
    .is_empty());
    let bad = pool(
        "E2E",
        json!({"maxHoldDuration": "a day", "healthCheck": {"retryInterval": "often"}, "maxSize": -1}),
    );
    assert_eq!(
        fields(&testclusterpool(&bad)),
        [
            "metadata.name",
            "spec.maxHoldDuration",
            "spec.healthCheck.retryInterval",
            "spec.maxSize"
        ]
    );
    assert!(testclusterpool(&pool(
        "e2e",
        json!({"createClusterDefinition": "make-cluster"})
    ))
    .is_empty());
    let both = pool(
        "e2e",
        json!({"createClusterDefinition": "Make_Cluster", "createClusterJob": {"job": "make"}}),
    );
    let violations = testclusterpool(&both);
    assert_eq!(
        fields(&violations),
        [
            "spec.createClusterDefinition",
            "spec.createClusterDefinition"
        ]
    );
    assert!(violations[0].message.contains("keep one"), "{violations:?}");
}

#[test]
fn a_new_job_names_a_build_cluster_that_exists() {
    let known: BTreeSet<String> = ["b1".to_string(), "b2".to_string()].into();
    let cases = [
        ("no cluster is default", json!({}), None),
        ("default always exists", json!({"spec": {"cluster": "default"}}), None),
        ("a BuildCluster", json!({"spec": {"cluster": "b2"}}), None),
        (
            "an unknown alias is refused, naming the field and the choices",
            json!({"spec": {"cluster": "b9"}}),
            Some("build cluster \"b9\" does not exist: use one of [b1, b2, default], or create its BuildCluster first"),
        ),
    ];
    for (name, patch, want) in cases {
        let got = build_cluster(&job(patch), &known);
        match want {
            None => assert!(got.is_empty(), "{name}: {got:?}"),
            Some(message) => {
                assert_eq!(got.len(), 1, "{name}");
                assert_eq!(got[0].field, "spec.cluster", "{name}");
                assert_eq!(got[0].message, message, "{name}");
            }
        }
    }
}
