//! The CRDs install, each kind can be created, its status patched, and `kubectl get` prints it
//! with its columns.

use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use prow_api::{Preset, ProwJob, TestCluster};
use serde_json::json;

async fn create_and_patch_status<K>(
    env: &TestEnv,
    object: serde_json::Value,
    status: serde_json::Value,
) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    <K as kube::Resource>::DynamicType: Default,
{
    let api = env.api::<K>();
    let object: K = serde_json::from_value(object).expect("object reads");
    let name = object.meta().name.clone().expect("named");
    api.create(&PostParams::default(), &object)
        .await
        .expect("created");
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("status patched")
}

/// The column names of a `kubectl get` table.
fn columns(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect()
}

#[tokio::test]
async fn prowjob_is_created_status_patched_and_printed_with_upstream_columns() {
    let env = TestEnv::new("smoke-prowjob").await.expect("env");
    let job: ProwJob = create_and_patch_status(
        &env,
        json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "smoke-1"},
            "spec": {"type": "presubmit", "agent": "kubernetes", "job": "pull-unit",
                     "refs": {"org": "acme", "repo": "widgets", "base_ref": "main",
                              "pulls": [{"number": 42, "author": "a", "sha": "abc"}]},
                     "pod_spec": {"containers": [{"image": "busybox"}]}},
        }),
        json!({"state": "pending", "startTime": "2024-01-01T00:00:00Z", "build_id": "7"}),
    )
    .await;
    assert_eq!(
        job.status.and_then(|s| s.build_id.parse::<u32>().ok()),
        Some(7)
    );

    let table = env
        .kubectl(&["get", "prowjobs", "smoke-1"])
        .expect("kubectl get");
    let header = columns(&table);
    assert_eq!(
        header,
        [
            "NAME",
            "JOB",
            "BUILDID",
            "TYPE",
            "ORG",
            "REPO",
            "PULLS",
            "STARTTIME",
            "COMPLETIONTIME",
            "STATE"
        ]
    );
    let row = table.lines().nth(1).expect("row");
    for value in ["pull-unit", "presubmit", "acme", "widgets", "42", "pending"] {
        assert!(row.contains(value), "{value} missing from {row:?}");
    }
}

#[tokio::test]
async fn preset_is_created_status_patched_and_printed_by_short_name() {
    let env = TestEnv::new("smoke-preset").await.expect("env");
    let preset: Preset = create_and_patch_status(
        &env,
        json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": "gcp-creds"},
            "spec": {"selector": {"preset-gcp": "true"},
                     "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/key.json"}],
                     "volumes": [{"name": "gcp", "secret": {"secretName": "gcp"}}],
                     "volumeMounts": [{"name": "gcp", "mountPath": "/etc/gcp", "readOnly": true}],
                     "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
        }),
        json!({"observedGeneration": 1, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Accepted", "message": "in force",
            "lastTransitionTime": "2024-01-01T00:00:00Z"}]}),
    )
    .await;
    assert_eq!(preset.spec.volumes[0].name, "gcp");
    assert_eq!(preset.spec.volume_mounts[0].mount_path, "/etc/gcp");

    let table = env
        .kubectl(&["get", "pst", "gcp-creds"])
        .expect("kubectl get pst");
    let header = columns(&table);
    assert_eq!(header, ["NAME", "SELECTOR", "READY", "AGE"]);
    assert!(table.contains("True"), "{table}");
}

#[tokio::test]
async fn testcluster_is_created_status_patched_and_printed_by_short_name() {
    let env = TestEnv::new("smoke-testcluster").await.expect("env");
    let cluster: TestCluster = create_and_patch_status(
        &env,
        json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": "e2e-1"},
            "spec": {"pool": "gke-e2e", "region": "europe-west4",
                     "kubeconfigSecretRef": {"name": "e2e-1-kubeconfig"}},
        }),
        json!({"phase": "Held", "lease": {"holder": "alice", "since": "2024-01-01T00:00:00Z",
                                          "until": "2024-01-01T06:00:00Z"}}),
    )
    .await;
    assert_eq!(
        cluster
            .spec
            .kubeconfig_secret_ref
            .as_ref()
            .map(|s| s.key.as_str()),
        Some("kubeconfig"),
        "the key defaults"
    );

    let table = env
        .kubectl(&["get", "tc", "e2e-1"])
        .expect("kubectl get tc");
    let header = columns(&table);
    assert_eq!(
        header,
        ["NAME", "POOL", "REGION", "PHASE", "HOLDER", "SINCE", "UNTIL", "AGE"],
        "pool, phase, holder, since, until"
    );
    let row = table.lines().nth(1).expect("row");
    for value in ["gke-e2e", "europe-west4", "Held", "alice"] {
        assert!(row.contains(value), "{value} missing from {row:?}");
    }
}

#[tokio::test]
async fn schema_refuses_a_testcluster_without_a_pool() {
    let env = TestEnv::new("smoke-schema").await.expect("env");
    let bad = json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "no-pool", "namespace": env.namespace},
        "spec": {"kubeconfigSecretRef": {"name": "x"}},
    });
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &kube::api::ApiResource::erase::<TestCluster>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(bad).expect("reads");
    let err = api
        .create(&PostParams::default(), &obj)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("spec.pool"), "{err}");
}
