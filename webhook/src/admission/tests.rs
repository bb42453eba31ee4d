use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{json, Value};

use super::*;
use prow_runtime::kubeconfigs::KubeconfigClients;

fn admitter(presets: Vec<Value>) -> Admitter {
    let (store, mut writer) = reflector::store::<Preset>();
    for p in presets {
        let preset: Preset = serde_json::from_value(p).expect("preset");
        writer.apply_watcher_event(&watcher::Event::Apply(preset));
    }
    Admitter {
        presets: store,
        definitions: reflector::store().0,
        job_queues: None,
        build_clusters: None,
        deep_check: None,
    }
}

fn gcp_preset() -> Value {
    json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
           "metadata": {"name": "gcp", "namespace": "prow", "resourceVersion": "11"},
           "spec": {"selector": {"preset-gcp": "true"},
                    "env": [{"name": "GCP_KEY", "value": "/etc/gcp/key.json"}],
                    "volumes": [{"name": "gcp", "secret": {"secretName": "gcp"}}],
                    "volumeMounts": [{"name": "gcp", "mountPath": "/etc/gcp"}]}})
}

fn job(labels: Value, spec_patch: Value) -> Value {
    let mut spec = json!({"type": "periodic", "agent": "kubernetes", "job": "ci-unit",
                          "pod_spec": {"containers": [{"name": "", "image": "busybox", "command": ["true"]}]}});
    if let (Some(s), Some(p)) = (spec.as_object_mut(), spec_patch.as_object()) {
        s.extend(p.clone());
    }
    json!({"apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
           "metadata": {"name": "j", "namespace": "prow", "labels": labels}, "spec": spec})
}

fn review(kind: (&str, &str, &str), operation: &str, object: Value, old: Value) -> Vec<u8> {
    let (group, version, kind) = kind;
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "req-1",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": "j", "namespace": "prow", "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object, "oldObject": old, "dryRun": false,
        }
    }))
    .expect("body")
}

const PROWJOB: (&str, &str, &str) = ("prow.k8s.io", "v1", "ProwJob");

async fn run(a: &Admitter, endpoint: Endpoint, body: &[u8]) -> (Value, Verdict) {
    let (review, _, verdict) = a.review(endpoint, body).await.expect("a review");
    (
        serde_json::to_value(review).expect("json")["response"].clone(),
        verdict,
    )
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn mutation_injects_matching_presets_and_records_them() {
    let a = admitter(vec![gcp_preset()]);
    let original = job(json!({"preset-gcp": "true"}), json!({}));
    let (response, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", original.clone(), Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Patched);
    assert_eq!(response["uid"], "req-1");
    assert_eq!(response["patchType"], "JSONPatch");
    // kube serialises the patch bytes as a JSON array, which the API server decodes as []byte.
    let raw: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("JSON patch");
    let mut patched = original;
    json_patch::patch(&mut patched, &patch).expect("applies");
    let container = &patched["spec"]["pod_spec"]["containers"][0];
    assert_eq!(container["env"][0]["name"], "GCP_KEY");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/gcp");
    assert_eq!(patched["spec"]["pod_spec"]["volumes"][0]["name"], "gcp");
    assert_eq!(
        patched["metadata"]["annotations"]["prow-operator.dev/presets"],
        "gcp@11"
    );
}

#[tokio::test]
async fn mutation_touches_only_what_it_changes_and_a_second_pass_changes_nothing() {
    let a = admitter(vec![gcp_preset()]);
    let mut original = job(json!({"preset-gcp": "true"}), json!({}));
    original["metadata"]["annotations"] = json!({"owner": "team-a"});
    original["spec"]["some_future_field"] = json!({"kept": true});
    original["spec"]["pod_spec"]["aFieldFromANewerKubernetes"] = json!({"kept": true});
    let (response, _) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", original.clone(), Value::Null),
    )
    .await;
    let raw: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("JSON patch");
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/spec/pod_spec/volumes",
            "/spec/pod_spec/containers/0/env",
            "/spec/pod_spec/containers/0/volumeMounts",
            "/metadata/annotations/prow-operator.dev~1presets"
        ]
    );
    let mut patched = original;
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(patched["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(patched["spec"]["some_future_field"]["kept"], true);
    assert_eq!(
        patched["spec"]["pod_spec"]["aFieldFromANewerKubernetes"]["kept"], true,
        "a pod spec field the typed model does not know survives injection"
    );

    // The API server may call the webhook again (reinvocation): the job is already complete.
    let (response, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", patched, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed, "{response}");
}

#[tokio::test]
async fn mutation_defaults_the_agent_and_leaves_unmatched_jobs_alone() {
    let a = admitter(vec![gcp_preset()]);
    let unmatched = job(json!({"team": "x"}), json!({}));
    let (_, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", unmatched, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed, "nothing to change");
    let mut no_agent = job(json!({}), json!({}));
    no_agent["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("agent");
    let (response, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", no_agent, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Patched, "{response}");
}

#[tokio::test]
async fn a_preset_conflicting_with_the_job_denies_it_naming_both() {
    let a = admitter(vec![gcp_preset()]);
    let clash = job(
        json!({"preset-gcp": "true"}),
        json!({"pod_spec": {"containers": [{"name": "", "image": "b", "env": [{"name": "GCP_KEY", "value": "/mine"}]}]}}),
    );
    let (response, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", clash, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    let text = message(&response);
    assert!(
        text.contains("env var \"GCP_KEY\" from preset \"gcp\" differs from the one in the job"),
        "{text}"
    );
}

#[tokio::test]
async fn validation_denies_with_every_field_path() {
    let a = admitter(vec![]);
    let bad = job(json!({}), json!({"job": "bad name", "max_concurrency": -1}));
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "CREATE", bad, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    let text = message(&response);
    assert!(
        text.contains("spec.job:") && text.contains("spec.max_concurrency:"),
        "{text}"
    );
    let good = job(json!({}), json!({}));
    let (_, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "CREATE", good, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed);
}

#[tokio::test]
async fn updates_may_not_change_the_spec() {
    let a = admitter(vec![]);
    let old = job(json!({}), json!({}));
    let new = job(json!({}), json!({"max_concurrency": 3}));
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "UPDATE", new, old.clone()),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    assert!(
        message(&response).starts_with("spec: is immutable"),
        "{response}"
    );
    let relabelled = job(json!({"x": "y"}), json!({}));
    let (_, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "UPDATE", relabelled, old),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed);
}

#[tokio::test]
async fn the_completed_mark_is_taken_off_a_new_job_and_refused_on_an_unfinished_one() {
    let a = admitter(vec![]);
    let marked = job(
        json!({"team": "x", "prow-operator.dev/completed": "true"}),
        json!({}),
    );
    let (response, verdict) = run(
        &a,
        Endpoint::MutateProwJobs,
        &review(PROWJOB, "CREATE", marked.clone(), Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Patched, "{response}");
    let raw: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("JSON patch");
    let mut created = marked.clone();
    json_patch::patch(&mut created, &patch).expect("applies");
    assert_eq!(created["metadata"]["labels"], json!({"team": "x"}));

    // Added to a stored job that has not finished: refused, naming the label.
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "UPDATE", marked.clone(), created.clone()),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    assert!(
        message(&response).starts_with("metadata.labels[prow-operator.dev/completed]: "),
        "{response}"
    );
    // On a finished job (the operator's own write) it is fine.
    let finished = json!({"state": "success", "startTime": "2026-01-01T00:00:00Z",
                          "completionTime": "2026-01-01T00:01:00Z"});
    let (mut old, mut new) = (created, marked);
    old["status"] = finished.clone();
    new["status"] = finished;
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "UPDATE", new, old),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed, "{response}");
}

/// Validates the creation of a job for build cluster `cluster`.
async fn create_for_cluster(a: &Admitter, cluster: &str) -> (Value, Verdict) {
    let job = job(json!({}), json!({"cluster": cluster}));
    let body = review(PROWJOB, "CREATE", job, Value::Null);
    run(a, Endpoint::ValidateProwJobs, &body).await
}

/// The build clusters of a BuildCluster named `declared` and the `--kubeconfig-dir` contexts
/// `fixed`.
fn build_clusters(declared: &str, fixed: &[&str]) -> BuildClusters {
    let (store, mut writer) = reflector::store::<BuildCluster>();
    let cluster: BuildCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "BuildCluster",
        "metadata": {"name": declared, "namespace": "prow-system"},
        "spec": {"kubeconfigSecretRef": {"name": declared}},
    }))
    .expect("a BuildCluster");
    writer.apply_watcher_event(&watcher::Event::Apply(cluster));
    BuildClusters {
        declared: store,
        fixed: fixed.iter().map(|c| c.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_new_job_for_an_unknown_build_cluster_is_denied_naming_the_field() {
    let a = Admitter {
        build_clusters: Some(build_clusters("b1", &["old"])),
        ..admitter(vec![])
    };
    for (cluster, allowed) in [
        ("", true),
        ("default", true),
        ("b1", true),
        ("old", true),
        ("b9", false),
    ] {
        let (response, verdict) = create_for_cluster(&a, cluster).await;
        if allowed {
            assert_eq!(verdict, Verdict::Allowed, "{cluster}: {response}");
        } else {
            assert_eq!(verdict, Verdict::Denied, "{cluster}");
            let message = message(&response);
            assert!(
                message.contains("spec.cluster: build cluster \"b9\" does not exist: use one of [b1, default, old]"),
                "{message}"
            );
        }
    }
    // A job stored before its BuildCluster went away may still be updated (labels, status).
    let old = job(json!({}), json!({"cluster": "b9"}));
    let relabelled = job(json!({"x": "y"}), json!({"cluster": "b9"}));
    let (_, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(PROWJOB, "UPDATE", relabelled, old),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed);
}

#[tokio::test]
async fn the_deep_check_asks_the_cluster_each_job_runs_in() {
    // An API server that is not there: a dry run that is tried fails, and says so.
    let nowhere = || {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    };
    let deep = |kubeconfigs: Option<KubeconfigClients>| DeepCheck {
        client: nowhere(),
        pod_namespace: "pods".into(),
        timeout: std::time::Duration::from_secs(5),
        kubeconfigs: kubeconfigs.map(std::sync::Arc::new),
    };
    let reading = Admitter {
        build_clusters: Some(build_clusters("b2", &["old"])),
        deep_check: Some(deep(Some(KubeconfigClients::new(nowhere())))),
        ..admitter(vec![])
    };
    let not_reading = Admitter {
        deep_check: Some(deep(None)),
        ..reading.clone()
    };
    for (a, cluster, warning) in [
        // b2's kubeconfig Secret is read (and here cannot be) to dry-run its pod there.
        (
            &reading,
            "b2",
            "not checked by a dry run in build cluster b2: build cluster \"b2\": ",
        ),
        (
            &reading,
            "old",
            "in build cluster old: it is no BuildCluster",
        ),
        (
            &not_reading,
            "b2",
            "in build cluster b2: the webhook reads no BuildCluster kubeconfigs",
        ),
        (
            &reading,
            "",
            "could not be checked by a dry run in namespace pods: ",
        ),
        (
            &reading,
            "default",
            "could not be checked by a dry run in namespace pods: ",
        ),
    ] {
        let (response, verdict) = create_for_cluster(a, cluster).await;
        assert_eq!(verdict, Verdict::Allowed, "{cluster}: {response}");
        let warnings = response["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(warnings.contains(warning), "{cluster}: {warnings}");
    }
}

#[tokio::test]
async fn presets_that_collide_with_an_existing_one_are_denied() {
    let a = admitter(vec![gcp_preset()]);
    let clash = json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": "other", "namespace": "prow"},
        "spec": {"selector": {"team": "a"}, "env": [{"name": "GCP_KEY", "value": "/elsewhere"}]}});
    let kind = ("prow-operator.dev", "v1alpha1", "Preset");
    let (response, verdict) = run(
        &a,
        Endpoint::ValidatePresets,
        &review(kind, "CREATE", clash, Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    assert!(message(&response).contains("preset \"gcp\""), "{response}");
    // Updating the existing preset itself is no collision with itself.
    let (_, verdict) = run(
        &a,
        Endpoint::ValidatePresets,
        &review(kind, "UPDATE", gcp_preset(), gcp_preset()),
    )
    .await;
    assert_eq!(verdict, Verdict::Allowed);
}

#[tokio::test]
async fn a_leased_testcluster_cannot_be_deleted() {
    let a = admitter(vec![]);
    let kind = ("prow-operator.dev", "v1alpha1", "TestCluster");
    let leased = json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c", "namespace": "prow"},
        "spec": {"pool": "e2e", "kubeconfigSecretRef": {"name": "s"}},
        "status": {"phase": "Leased", "lease": {"holder": "prow/job-1", "since": "2024-01-01T00:00:00Z"}}});
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateTestClusters,
        &review(kind, "DELETE", Value::Null, leased),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    assert!(
        message(&response).contains("leased by prow/job-1"),
        "{response}"
    );
}

#[tokio::test]
async fn the_wrong_kind_is_denied_with_a_reason() {
    let a = admitter(vec![]);
    let kind = ("prow-operator.dev", "v1alpha1", "Preset");
    let (response, verdict) = run(
        &a,
        Endpoint::ValidateProwJobs,
        &review(kind, "CREATE", json!({}), Value::Null),
    )
    .await;
    assert_eq!(verdict, Verdict::Denied);
    assert!(
        message(&response).contains("admits ProwJob objects, not Preset"),
        "{response}"
    );
}

#[tokio::test]
async fn a_malformed_job_passes_mutation_untouched_and_validation_names_the_field() {
    let a = admitter(vec![gcp_preset()]);
    let mut typed = job(json!({"preset-gcp": "true"}), json!({}));
    typed["spec"]["decoration_config"] = json!({"timeout": 5});
    typed["spec"]["pod_spec"]["containers"][0]["name"] = json!(7);
    let body = review(PROWJOB, "CREATE", typed, Value::Null);

    let (response, verdict) = run(&a, Endpoint::MutateProwJobs, &body).await;
    assert_eq!(verdict, Verdict::Allowed, "{response}");
    assert!(response["patch"].is_null(), "no patch: {response}");
    let warning = response["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("presets were not injected"), "{response}");

    let (response, verdict) = run(&a, Endpoint::ValidateProwJobs, &body).await;
    assert_eq!(verdict, Verdict::Denied);
    let text = message(&response);
    assert!(
        text.starts_with("the object is malformed: spec.decoration_config.timeout: invalid type: integer `5`, expected a string")
            || text.starts_with("the object is malformed: spec.pod_spec.containers[0].name: invalid type"),
        "{text}"
    );
    assert!(!text.contains("line 1 column"), "{text}");
}

#[tokio::test]
async fn large_reviews_get_the_same_answer_off_the_serving_thread() {
    let a = admitter(vec![]);
    let mut big = job(json!({}), json!({}));
    let env: Vec<Value> = (0..5_000)
        .map(|_| json!({"name": "DUP", "value": "x"}))
        .collect();
    big["spec"]["pod_spec"]["containers"][0]["env"] = json!(env);
    let body = review(PROWJOB, "CREATE", big, Value::Null);
    assert!(body.len() > OFFLOAD_ABOVE);
    let inline = run(&a, Endpoint::ValidateProwJobs, &body).await;
    let (review, _, verdict) = a
        .review_owned(Endpoint::ValidateProwJobs, bytes::Bytes::from(body))
        .await
        .expect("a review");
    let offloaded = serde_json::to_value(review).expect("json")["response"].clone();
    assert_eq!((offloaded, verdict), inline);
    assert_eq!(verdict, Verdict::Denied);
    let text = message(&inline.0);
    assert!(text.contains("and 4979 more violations"), "{text}");
}

/// A small deterministic fuzzer over the decoding path: every truncation of a valid review,
/// and byte flips across it, must give a 400 or an answer, never a panic.
#[tokio::test]
async fn mangled_bodies_never_panic() {
    let a = admitter(vec![gcp_preset()]);
    let body = review(
        PROWJOB,
        "CREATE",
        job(json!({"preset-gcp": "true"}), json!({})),
        Value::Null,
    );
    let endpoints = [
        Endpoint::MutateProwJobs,
        Endpoint::ValidateProwJobs,
        Endpoint::ValidatePresets,
        Endpoint::ValidateTestClusters,
    ];
    let mut answered = 0;
    let mut refused = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for cut in (0..body.len()).step_by(7) {
        for endpoint in endpoints {
            match a.review(endpoint, &body[..cut]).await {
                Ok(_) => answered += 1,
                Err(e) => {
                    assert!(!e.0.is_empty());
                    refused += 1;
                }
            }
        }
    }
    for _ in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut mangled = body.clone();
        let at = (seed as usize) % mangled.len();
        mangled[at] = (seed >> 32) as u8;
        for endpoint in endpoints {
            match a.review(endpoint, &mangled).await {
                Ok(_) => answered += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert!(
        refused > 0 && answered > 0,
        "both outcomes exercised: {answered} answered, {refused} refused"
    );
    let not_json = a
        .review(Endpoint::ValidateProwJobs, b"not json")
        .await
        .expect_err("400");
    assert!(
        not_json.0.starts_with("body is not an AdmissionReview"),
        "{}",
        not_json.0
    );
    let no_request = a
        .review(
            Endpoint::ValidateProwJobs,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        )
        .await;
    assert!(no_request.is_err());
}

/// The chart and the demo register the hooks of one file; it names exactly the endpoints the
/// webhook serves, each with its kind's resource.
#[test]
fn the_registered_hooks_are_exactly_the_served_endpoints() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/prow-operator/files/admission-hooks.json");
    let hooks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("hooks file")).expect("json");
    let mut registered = Vec::new();
    for (list, prefix) in [("mutating", "mutate"), ("validating", "validate")] {
        for hook in hooks[list].as_array().expect("a list") {
            let resource = hook["resource"].as_str().expect("resource");
            let endpoint = Endpoint::at(prefix, resource)
                .unwrap_or_else(|| panic!("/{prefix}/{resource} is not served"));
            assert_eq!(
                format!("{}s", endpoint.kind().to_lowercase()),
                resource,
                "{hook}"
            );
            registered.push(endpoint);
        }
    }
    assert_eq!(registered, Endpoint::ALL);
    assert_eq!(Endpoint::at("validate", "pods"), None);
}
