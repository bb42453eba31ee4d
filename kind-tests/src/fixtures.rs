//! Objects the tests and benchmarks share: minimal jobs for tests, jobs shaped like upstream's
//! decorated jobs for benchmarks, admission reviews, test clusters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Secret};
use k8s_openapi::ByteString;
use kube::api::PostParams;
use prow_api::TestCluster;
use serde_json::{json, Value};

use crate::TestEnv;

/// A minimal ProwJob named `name` of type `kind` (`periodic`, `postsubmit`, ...): job
/// `ci-NAME`, one busybox container.
pub fn job(name: &str, kind: &str) -> prow_api::ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": kind, "agent": "kubernetes", "job": format!("ci-{name}"),
                 "pod_spec": {"containers": [{"image": "busybox"}]}},
    }))
    .expect("a valid job")
}

/// A ProwJob named `name` with `spec` plus the decoration config and pod spec of a typical
/// upstream job (kubekins image, utility images, resources), so sizes are realistic.
pub fn decorated_job(name: &str, labels: Value, spec: Value) -> Value {
    let mut job = json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {"agent": "kubernetes", "report": true,
                 "decoration_config": {"timeout": "2h0m0s", "grace_period": "15m0s",
                     "utility_images": {"clonerefs": "gcr.io/k8s-prow/clonerefs:v20241015",
                                        "initupload": "gcr.io/k8s-prow/initupload:v20241015",
                                        "entrypoint": "gcr.io/k8s-prow/entrypoint:v20241015",
                                        "sidecar": "gcr.io/k8s-prow/sidecar:v20241015"},
                     "gcs_configuration": {"bucket": "kubernetes-jenkins", "path_strategy": "explicit"}},
                 "pod_spec": {"containers": [{
                     "image": "gcr.io/k8s-staging-test-infra/kubekins-e2e:v20241015-go1.23",
                     "command": ["runner.sh"], "args": ["make", "test", "WHAT=./pkg/...", "-j4"],
                     "env": [{"name": "GO111MODULE", "value": "on"}, {"name": "GOFLAGS", "value": "-mod=vendor"}],
                     "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}]}},
    });
    if let (Some(base), Value::Object(extra)) = (job["spec"].as_object_mut(), spec) {
        base.extend(extra);
    }
    job
}

/// The AdmissionReview the API server sends for a CREATE of a ProwJob `object`.
pub fn create_review(namespace: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "0b2b7c4e-5c6e-4bde-a2a0-3f1b6c0d9e11",
                    "kind": {"group": "prow.k8s.io", "version": "v1", "kind": "ProwJob"},
                    "resource": {"group": "prow.k8s.io", "version": "v1", "resource": "prowjobs"},
                    "name": object["metadata"]["name"], "namespace": namespace, "operation": "CREATE",
                    "userInfo": {"username": "alice@example.com"},
                    "object": object, "oldObject": null, "dryRun": false},
    })
}

/// Creates, in the test's namespace, a Secret `NAME-kubeconfig` holding `kubeconfig` under
/// `key`, and the TestCluster `name` of `pool` (in `region`, if given) that names it.
pub async fn create_test_cluster(
    env: &TestEnv,
    name: &str,
    pool: &str,
    region: Option<&str>,
    key: &str,
    kubeconfig: &str,
) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{name}-kubeconfig")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(kubeconfig.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let cluster: TestCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": name},
        "spec": {"pool": pool, "region": region,
                 "kubeconfigSecretRef": {"name": format!("{name}-kubeconfig"), "key": key}},
    }))
    .expect("cluster");
    env.api::<TestCluster>()
        .create(&PostParams::default(), &cluster)
        .await
        .expect("cluster");
}

/// The env of container `index` of `spec`, by name.
pub fn container_env(spec: &PodSpec, index: usize) -> BTreeMap<String, String> {
    spec.containers[index]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decorated_job_keeps_the_given_spec_and_the_common_parts() {
        let value = decorated_job(
            "j",
            json!({"a": "b"}),
            json!({"type": "periodic", "job": "ci-x"}),
        );
        let job: prow_api::ProwJob = serde_json::from_value(value).expect("reads as a ProwJob");
        assert_eq!(job.spec.job, "ci-x");
        assert_eq!(job.spec.job_type, Some(prow_api::ProwJobType::Periodic));
        assert!(job.spec.decoration_config.is_some() && job.spec.pod_spec.is_some());
        assert_eq!(job.metadata.labels.expect("labels")["a"], "b");
    }
}
