use serde_json::{json, Value};

use super::*;

fn preset(name: &str, spec: Value) -> Preset {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": name, "namespace": "prow", "resourceVersion": "7"},
        "spec": spec,
    }))
    .expect("preset")
}

fn gcp() -> Preset {
    preset(
        "gcp",
        json!({"selector": {"preset-gcp": "true"},
               "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/key.json"}],
               "volumes": [{"name": "gcp", "secret": {"secretName": "gcp"}}],
               "volumeMounts": [{"name": "gcp", "mountPath": "/etc/gcp", "readOnly": true}],
               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]}),
    )
}

fn pod() -> PodSpec {
    serde_json::from_value(json!({
        "containers": [{"name": "test", "image": "x", "env": [{"name": "A", "value": "1"}]},
                       {"name": "db", "image": "y"}],
        "initContainers": [{"name": "proxy", "image": "z", "restartPolicy": "Always"}],
    }))
    .expect("pod")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_matching_preset_reaches_every_container_and_the_pod() {
    let mut spec = pod();
    let presets = [gcp()];
    let applied = inject(&mut spec, &labels(&[("preset-gcp", "true")]), &presets).expect("merged");
    assert_eq!(applied.len(), 1);
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let env = c.env.as_ref().expect("env");
        assert!(
            env.iter()
                .any(|e| e.name == "GOOGLE_APPLICATION_CREDENTIALS"),
            "{}",
            c.name
        );
        assert_eq!(
            c.volume_mounts.as_ref().expect("mounts")[0].mount_path,
            "/etc/gcp",
            "{}",
            c.name
        );
    }
    assert_eq!(spec.volumes.as_ref().expect("volumes")[0].name, "gcp");
    assert_eq!(
        spec.tolerations.as_ref().expect("tolerations")[0]
            .key
            .as_deref(),
        Some("dedicated")
    );
    assert_eq!(applied_annotation(&applied), "gcp@7");
}

#[test]
fn presets_select_only_jobs_with_all_their_labels() {
    let p = preset("p", json!({"selector": {"a": "1", "b": "2"}}));
    let cases = [
        (labels(&[("a", "1"), ("b", "2"), ("c", "3")]), true),
        (labels(&[("a", "1")]), false),
        (labels(&[("a", "1"), ("b", "3")]), false),
        (labels(&[]), false),
    ];
    for (job_labels, expected) in cases {
        assert_eq!(selects(&p.spec, &job_labels), expected, "{job_labels:?}");
    }
    let empty = preset("e", json!({"selector": {}}));
    assert!(
        !selects(&empty.spec, &labels(&[("a", "1")])),
        "an empty selector selects nothing"
    );
}

#[test]
fn injecting_twice_changes_nothing() {
    let mut once = pod();
    let presets = [gcp()];
    let job = labels(&[("preset-gcp", "true")]);
    inject(&mut once, &job, &presets).expect("first");
    let mut twice = once.clone();
    inject(&mut twice, &job, &presets).expect("second");
    assert_eq!(once, twice);
}

#[test]
fn an_equal_item_already_in_the_job_is_left_alone() {
    let mut spec = pod();
    spec.containers[0].env.as_mut().expect("env").push(EnvVar {
        name: "GOOGLE_APPLICATION_CREDENTIALS".into(),
        value: Some("/etc/gcp/key.json".into()),
        value_from: None,
    });
    let presets = [gcp()];
    inject(&mut spec, &labels(&[("preset-gcp", "true")]), &presets).expect("merged");
    let count = spec.containers[0]
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "GOOGLE_APPLICATION_CREDENTIALS")
        .count();
    assert_eq!(count, 1);
}

#[test]
fn a_different_value_from_the_job_or_another_preset_is_a_conflict_naming_both() {
    let mut spec = pod();
    spec.containers[0].env.as_mut().expect("env").push(EnvVar {
        name: "GOOGLE_APPLICATION_CREDENTIALS".into(),
        value: Some("/other".into()),
        value_from: None,
    });
    let presets = [gcp()];
    let conflicts =
        inject(&mut spec, &labels(&[("preset-gcp", "true")]), &presets).expect_err("conflict");
    assert_eq!(conflicts[0].kind, "env var");
    assert_eq!(conflicts[0].existing, "the job");
    assert_eq!(conflicts[0].preset, "preset \"gcp\"");

    let other = preset(
        "zz-other",
        json!({"selector": {"preset-gcp": "true"}, "volumes": [{"name": "gcp", "emptyDir": {}}]}),
    );
    let presets = [gcp(), other];
    let conflicts =
        inject(&mut pod(), &labels(&[("preset-gcp", "true")]), &presets).expect_err("conflict");
    let message = conflicts[0].to_string();
    assert!(message.contains("volume \"gcp\""), "{message}");
    assert!(
        message.contains("preset \"zz-other\"") && message.contains("preset \"gcp\""),
        "{message}"
    );
}

#[test]
fn collisions_need_overlapping_selectors_and_different_values() {
    let a = gcp();
    let same_name_other_value = preset(
        "b",
        json!({"selector": {"team": "x"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/x"}]}),
    );
    let exclusive = preset(
        "c",
        json!({"selector": {"preset-gcp": "false"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/x"}]}),
    );
    let equal = preset(
        "d",
        json!({"selector": {"team": "x"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/key.json"}]}),
    );
    assert_eq!(collisions(&a.spec, &same_name_other_value.spec).len(), 1);
    assert!(
        collisions(&a.spec, &exclusive.spec).is_empty(),
        "no job matches both"
    );
    assert!(
        collisions(&a.spec, &equal.spec).is_empty(),
        "equal values do not collide"
    );
}

#[test]
fn conditions_say_ready_and_name_the_colliding_preset() {
    let a = gcp();
    let b = preset(
        "b",
        json!({"selector": {"team": "x"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/x"}]}),
    );
    let facts = conditions(&a, [&a, &b]);
    assert_eq!((facts[0].0, facts[0].1), ("Ready", "True"));
    assert_eq!(
        (facts[1].0, facts[1].1, facts[1].2),
        ("Conflicting", "True", "Collision")
    );
    assert!(facts[1].3.contains("preset \"b\""), "{}", facts[1].3);
    let alone = conditions(&a, [&a]);
    assert_eq!((alone[1].1, alone[1].2), ("False", "NoCollision"));
    let empty = preset("e", json!({"selector": {}}));
    assert_eq!(conditions(&empty, [&empty])[0].1, "False");
}

/// Every way a preset's stored status can stand against what its namespace says.
#[test]
fn status_update_table() {
    let at = |s: &str| Time(s.parse().expect("time"));
    let now = at("2026-01-02T00:00:00Z");
    let before = at("2026-01-01T00:00:00Z");
    let with_status = |mut p: Preset, generation: i64, status: Value| {
        p.metadata.generation = Some(generation);
        p.status = serde_json::from_value(status).expect("status");
        p
    };
    let ready_true = json!({"type": "Ready", "status": "True", "reason": "Selecting",
        "message": "The preset is injected into new jobs whose labels match its selector.",
        "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let no_conflict = json!({"type": "Conflicting", "status": "False", "reason": "NoCollision",
        "message": "No other preset gives a job a different value for the same item.",
        "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let clash = preset(
        "other",
        json!({"selector": {"preset-gcp": "true"},
               "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/elsewhere"}]}),
    );

    // (case, preset, its peers, the conditions' (type, status, since) wanted; None: no write)
    type Want = Option<Vec<(&'static str, &'static str, Time)>>;
    let cases: Vec<(&str, Preset, Vec<Preset>, Want)> = vec![
        (
            "no status yet: both conditions, since now",
            with_status(gcp(), 2, json!(null)),
            vec![],
            Some(vec![
                ("Ready", "True", now.clone()),
                ("Conflicting", "False", now.clone()),
            ]),
        ),
        (
            "up to date: nothing to write",
            with_status(
                gcp(),
                2,
                json!({"observedGeneration": 2, "conditions": [ready_true, no_conflict]}),
            ),
            vec![],
            None,
        ),
        (
            "a new generation: rewritten, the unchanged conditions keep their time",
            with_status(
                gcp(),
                3,
                json!({"observedGeneration": 2, "conditions": [ready_true, no_conflict]}),
            ),
            vec![],
            Some(vec![
                ("Ready", "True", before.clone()),
                ("Conflicting", "False", before.clone()),
            ]),
        ),
        (
            "a peer starts to collide: Conflicting flips, since now",
            with_status(
                gcp(),
                2,
                json!({"observedGeneration": 2, "conditions": [ready_true, no_conflict]}),
            ),
            vec![clash.clone()],
            Some(vec![
                ("Ready", "True", before.clone()),
                ("Conflicting", "True", now.clone()),
            ]),
        ),
        (
            "a condition missing from the stored status is added",
            with_status(
                gcp(),
                2,
                json!({"observedGeneration": 2, "conditions": [ready_true]}),
            ),
            vec![],
            Some(vec![
                ("Ready", "True", before.clone()),
                ("Conflicting", "False", now.clone()),
            ]),
        ),
    ];
    for (case, preset, peers, want) in cases {
        let got = status_update(&preset, peers.iter().chain([&preset]), now.clone());
        let got = got.map(|s| {
            assert_eq!(s.observed_generation, preset.metadata.generation, "{case}");
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.as_str().to_owned(),
                        c.status.clone(),
                        c.last_transition_time.clone(),
                    )
                })
                .collect::<Vec<_>>()
        });
        let want = want.map(|w| {
            w.into_iter()
                .map(|(t, s, since)| (t.to_owned(), s.to_owned(), since))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want, "{case}");
    }
}
