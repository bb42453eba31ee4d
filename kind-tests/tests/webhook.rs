//! The admission webhook registered with the real API server: `kubectl apply` of a bad job is
//! refused with the field path, presets are injected, colliding presets and pods the API server
//! would refuse are refused, and a leased TestCluster cannot be deleted.

use std::time::Duration;

use kind_tests::operator::eventually;
use kind_tests::webhook::{register, start_webhook};
use kind_tests::TestEnv;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use prow_api::{ProwJob, TestCluster};
use serde_json::json;

/// `kubectl apply -f -` of `yaml`; Ok(stdout) or Err(stderr).
fn apply(env: &TestEnv, yaml: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &env.kubeconfig)
        .args(["--namespace", &env.namespace, "apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl ran");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const BAD_JOB: &str = "apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata:
  name: bad
spec:
  type: presubmit
  agent: kubernetes
  job: pull-unit
  refs: {org: acme, repo: widgets, base_ref: main, pulls: [{number: 1, sha: abc}]}
  pod_spec:
    containers:
    - {name: build, image: busybox, command: [make]}
    - {name: sidecar, image: busybox, command: [make]}
";

#[tokio::test]
async fn the_api_server_refuses_bad_jobs_and_injects_presets_through_the_webhook() {
    let env = TestEnv::new("webhook").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");

    // The API server picks up new webhook configurations within a second or so.
    let refusal = eventually(
        "the webhook to refuse a bad job",
        Duration::from_secs(20),
        || async { Ok(apply(&env, BAD_JOB).err()) },
    )
    .await
    .expect("refused");
    assert!(refusal.contains("denied the request"), "{refusal}");
    assert!(
        refusal.contains(
            "spec.pod_spec.containers[1].name: \"sidecar\" is reserved for the pod utilities"
        ),
        "{refusal}"
    );

    // Decoration the pod utilities could not carry out is refused with its field.
    let bad_decoration = "apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata: {name: bad-decoration}
spec:
  type: periodic
  agent: kubernetes
  job: ci-unit
  decoration_config:
    gcs_configuration: {bucket: 'minio://logs', path_strategy: explicit}
    utility_images: [clonerefs:v1]
  pod_spec:
    containers: [{image: busybox, command: [make]}]
";
    let refusal = apply(&env, bad_decoration).expect_err("refused");
    for field in [
        "spec.decoration_config.gcs_configuration.bucket: \"minio://logs\": unknown storage scheme",
        "spec.decoration_config.utility_images:",
    ] {
        assert!(refusal.contains(field), "{field}: {refusal}");
    }

    let preset = format!(
        "apiVersion: prow-operator.dev/v1alpha1
kind: Preset
metadata: {{name: gcp, namespace: {ns}}}
spec:
  selector: {{preset-gcp: \"true\"}}
  env: [{{name: GCP_KEY, value: /etc/gcp/key.json}}]
  volumes: [{{name: gcp, emptyDir: {{}}}}]
  volumeMounts: [{{name: gcp, mountPath: /etc/gcp}}]
",
        ns = env.namespace
    );
    apply(&env, &preset).expect("preset stored");
    // The webhook's preset cache follows the API server by a watch.
    let good = "apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata:
  name: good
  labels: {preset-gcp: \"true\"}
spec:
  type: periodic
  job: ci-unit
  pod_spec:
    containers: [{image: busybox, command: [make]}]
";
    tokio::time::sleep(Duration::from_millis(500)).await;
    apply(&env, good).expect("good job stored");
    let stored = env.api::<ProwJob>().get("good").await.expect("get");
    let pod = stored.spec.pod_spec.expect("pod spec");
    let env_names: Vec<_> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env_names, ["GCP_KEY"], "preset injected");
    assert_eq!(pod.volumes.expect("volumes")[0].name, "gcp");
    assert!(stored.spec.agent.is_some(), "agent defaulted");
    let annotations = stored.metadata.annotations.expect("annotations");
    assert!(
        annotations["prow-operator.dev/presets"].starts_with("gcp@"),
        "{annotations:?}"
    );

    // A second preset that gives GCP_KEY another value to jobs that may match both.
    let clash = format!(
        "apiVersion: prow-operator.dev/v1alpha1
kind: Preset
metadata: {{name: other, namespace: {ns}}}
spec:
  selector: {{team: infra}}
  env: [{{name: GCP_KEY, value: /somewhere/else}}]
",
        ns = env.namespace
    );
    let refusal = apply(&env, &clash).expect_err("collision refused");
    assert!(refusal.contains("preset \"gcp\""), "{refusal}");

    // The spec is immutable.
    let refusal = env
        .api::<ProwJob>()
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"max_concurrency": 2}})),
        )
        .await
        .expect_err("refused");
    assert!(
        refusal.to_string().contains("spec: is immutable"),
        "{refusal}"
    );

    // The operator's mark of a finished job: taken off a new job, refused on an unfinished one,
    // fine once the job's status says it finished.
    let marked = "apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata:
  name: marked
  labels: {prow-operator.dev/completed: \"true\", team: a}
spec:
  type: periodic
  job: ci-unit
  pod_spec:
    containers: [{image: busybox, command: [make]}]
";
    apply(&env, marked).expect("created");
    let jobs = env.api::<ProwJob>();
    let stored = jobs.get("marked").await.expect("get");
    assert_eq!(
        stored.metadata.labels,
        Some([("team".to_string(), "a".to_string())].into()),
        "the mark is taken off at creation"
    );
    let mark = json!({"metadata": {"labels": {"prow-operator.dev/completed": "true"}}});
    let refusal = jobs
        .patch("marked", &PatchParams::default(), &Patch::Merge(&mark))
        .await
        .expect_err("refused on an unfinished job");
    assert!(
        refusal
            .to_string()
            .contains("metadata.labels[prow-operator.dev/completed]: is set by the operator"),
        "{refusal}"
    );
    let done = json!({"status": {"state": "success", "startTime": "2024-01-01T00:00:00Z",
                                 "completionTime": "2024-01-01T00:01:00Z"}});
    jobs.patch_status("marked", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("finished");
    jobs.patch("marked", &PatchParams::default(), &Patch::Merge(&mark))
        .await
        .expect("a finished job takes the mark");
}

#[tokio::test]
async fn the_deep_check_refuses_a_pod_the_api_server_would_refuse() {
    let env = TestEnv::new("webhook-deep").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    // Passes the job rules, but the API server refuses the pod: a container port out of range.
    let job = "apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata: {name: deep}
spec:
  type: periodic
  agent: kubernetes
  job: ci-deep
  pod_spec:
    containers: [{image: busybox, command: [make], ports: [{containerPort: 70000}]}]
";
    let refusal = eventually(
        "the deep check to refuse",
        Duration::from_secs(20),
        || async { Ok(apply(&env, job).err()) },
    )
    .await
    .expect("refused");
    assert!(
        refusal.contains("the API server would refuse this job's pod"),
        "{refusal}"
    );
    assert!(
        refusal.contains("containerPort"),
        "the API server's own message: {refusal}"
    );
}

#[tokio::test]
async fn a_leased_testcluster_cannot_be_deleted_and_a_bad_one_not_created() {
    let env = TestEnv::new("webhook-tc").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    let bad = "apiVersion: prow-operator.dev/v1alpha1
kind: TestCluster
metadata: {name: bad}
spec: {pool: Not A Pool, kubeconfigSecretRef: {name: s}}
";
    let refusal = eventually(
        "the webhook to refuse a bad cluster",
        Duration::from_secs(20),
        || async { Ok(apply(&env, bad).err()) },
    )
    .await
    .expect("refused");
    assert!(refusal.contains("spec.pool"), "{refusal}");
    let bad_pool = "apiVersion: prow-operator.dev/v1alpha1
kind: TestClusterPool
metadata: {name: e2e}
spec: {holdDuration: 30h, maxHoldDuration: 24h}
";
    let refusal = apply(&env, bad_pool).expect_err("a hold past its maximum is refused");
    assert!(refusal.contains("spec.holdDuration"), "{refusal}");
    let good_pool = "apiVersion: prow-operator.dev/v1alpha1
kind: TestClusterPool
metadata: {name: e2e}
spec: {holdDuration: 2h}
";
    apply(&env, good_pool).expect("a good pool is admitted");

    let clusters = env.api::<TestCluster>();
    let good: TestCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "e2e-1"}, "spec": {"pool": "e2e", "kubeconfigSecretRef": {"name": "s"}},
    }))
    .expect("cluster");
    clusters
        .create(&PostParams::default(), &good)
        .await
        .expect("created");
    clusters
        .patch_status(
            "e2e-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Leased", "lease": {"holder": "prow/job-1", "since": "2024-01-01T00:00:00Z"}}})),
        )
        .await
        .expect("leased");
    let refusal = clusters
        .delete("e2e-1", &DeleteParams::default())
        .await
        .expect_err("refused");
    assert!(
        refusal.to_string().contains("leased by prow/job-1"),
        "{refusal}"
    );
    clusters
        .patch_status(
            "e2e-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Vacant", "lease": null}})),
        )
        .await
        .expect("released");
    clusters
        .delete("e2e-1", &DeleteParams::default())
        .await
        .expect("deleted once released");
}

/// The fingerprint of the certificate the server at `address` presents, via openssl s_client.
fn served_fingerprint(address: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_fingerprint(path: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let env = TestEnv::new("webhook-rotate").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    let address = webhook.url.trim_start_matches("https://").to_string();
    let first = served_fingerprint(&address);
    assert_eq!(
        first,
        file_fingerprint(&webhook.certs.cert),
        "serves the configured certificate"
    );

    // Rotate: a new CA and certificate written over the same files.
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("rotated"));
    let rotated = kind_tests::webhook::make_certs(&dir).expect("new certs");
    std::fs::copy(&rotated.key, &webhook.certs.key).expect("key");
    std::fs::copy(&rotated.cert, &webhook.certs.cert).expect("cert");
    let expected = file_fingerprint(&rotated.cert);
    assert_ne!(expected, first);
    let served = eventually(
        "the new certificate to be served",
        Duration::from_secs(15),
        || async {
            let now = served_fingerprint(&address);
            Ok((now == expected).then_some(now))
        },
    )
    .await
    .expect("rotated");
    assert_eq!(served, expected);
    assert!(
        webhook.process.terminate().expect("stops"),
        "still the same process, exiting cleanly"
    );
}

#[tokio::test]
async fn bad_job_definitions_are_refused_with_their_field_and_a_repeated_job_too() {
    let env = TestEnv::new("webhook-def").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    let bad = "apiVersion: prow-operator.dev/v1alpha1
kind: JobDefinition
metadata: {name: bad}
spec:
  type: presubmit
  repo: acme/widgets
  always_run: true
  run_if_changed: ^docs/
  trigger: (?m)^/test unit$
  spec:
    containers:
    - image: busybox
      resources: {limits: {cpu: lots}}
";
    let refusal = eventually(
        "the webhook to refuse a bad definition",
        Duration::from_secs(20),
        || async { Ok(apply(&env, bad).err()) },
    )
    .await
    .expect("refused");
    for field in [
        "spec.run_if_changed",
        "spec.rerun_command",
        "spec.spec.containers[0].resources.limits[cpu]",
    ] {
        assert!(refusal.contains(field), "{field}: {refusal}");
    }
    let good = "apiVersion: prow-operator.dev/v1alpha1
kind: JobDefinition
metadata: {name: unit}
spec:
  type: presubmit
  repo: acme/widgets
  always_run: true
  spec: {containers: [{image: busybox}]}
";
    apply(&env, good).expect("a good definition is admitted");
    let again = good
        .replace("name: unit}", "name: unit-copy}\n")
        .replace("always_run: true", "name: unit\n  always_run: true");
    let refusal = eventually(
        "the webhook to see the first definition",
        Duration::from_secs(20),
        || async { Ok(apply(&env, &again).err()) },
    )
    .await
    .expect("a second definition of the same job is refused");
    assert!(
        refusal.contains("spec.name") && refusal.contains("JobDefinition unit"),
        "{refusal}"
    );
}
