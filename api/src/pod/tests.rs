use serde_json::json;

use super::*;

fn job(spec: serde_json::Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "abc-123", "namespace": "prow", "uid": "u-1",
                     "labels": {"team": "infra"}, "annotations": {"note": "x"}},
        "spec": spec,
    }))
    .expect("job")
}

fn presubmit() -> ProwJob {
    job(json!({
        "type": "presubmit", "agent": "kubernetes", "job": "pull-unit", "namespace": "test-pods",
        "context": "unit",
        "refs": {"org": "acme", "repo": "widgets", "base_ref": "main", "base_sha": "b1",
                 "pulls": [{"number": 7, "author": "al", "sha": "p7", "title": "Fix it",
                            "head_ref": "fix"},
                           {"number": 9, "author": "bo", "sha": "p9", "ref": "refs/pull/9/head"}]},
        "pod_spec": {"containers": [{"name": "", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]},
    }))
}

fn env_of(pod: &Pod, container: usize) -> BTreeMap<String, String> {
    pod.spec.as_ref().expect("spec").containers[container]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn pod_is_named_after_the_job_in_its_pod_namespace_and_never_restarts() {
    let pod = pod_for(&presubmit(), "42", "default").expect("pod");
    assert_eq!(pod.metadata.name.as_deref(), Some("abc-123"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("test-pods"));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.containers[0].name, "test",
        "a single container is renamed"
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
}

#[test]
fn empty_spec_namespace_uses_the_configured_default() {
    let mut j = presubmit();
    j.spec.namespace.clear();
    let pod = pod_for(&j, "1", "ci-pods").expect("pod");
    assert_eq!(pod.metadata.namespace.as_deref(), Some("ci-pods"));
}

#[test]
fn several_containers_keep_their_names_and_all_get_the_env() {
    let mut j = presubmit();
    let spec = j.spec.pod_spec.as_mut().expect("spec");
    let mut second = spec.containers[0].clone();
    spec.containers[0].name = "build".into();
    second.name = "db".into();
    spec.containers.push(second);
    let pod = pod_for(&j, "1", "d").expect("pod");
    let names: Vec<_> = pod
        .spec
        .as_ref()
        .expect("spec")
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["build", "db"]);
    assert_eq!(env_of(&pod, 1)["JOB_NAME"], "pull-unit");
}

#[test]
fn a_named_service_account_keeps_its_token() {
    let mut j = presubmit();
    j.spec.pod_spec.as_mut().expect("spec").service_account_name = Some("runner".into());
    let pod = pod_for(&j, "1", "d").expect("pod");
    assert_eq!(
        pod.spec.expect("spec").automount_service_account_token,
        None
    );
}

#[test]
fn labels_and_annotations_follow_upstream() {
    let pod = pod_for(&presubmit(), "42", "d").expect("pod");
    let l = pod.metadata.labels.expect("labels");
    let expected = [
        ("created-by-prow", "true"),
        ("prow.k8s.io/job", "pull-unit"),
        ("prow.k8s.io/type", "presubmit"),
        ("prow.k8s.io/id", "abc-123"),
        ("prow.k8s.io/build-id", "42"),
        ("prow.k8s.io/context", "unit"),
        ("prow.k8s.io/refs.org", "acme"),
        ("prow.k8s.io/refs.repo", "widgets"),
        ("prow.k8s.io/refs.base_ref", "main"),
        ("prow.k8s.io/refs.pull", "7"),
        ("team", "infra"),
    ];
    for (k, v) in expected {
        assert_eq!(l.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let a = pod.metadata.annotations.expect("annotations");
    assert_eq!(a["prow.k8s.io/job"], "pull-unit");
    assert_eq!(a[labels::JOB_NAMESPACE], "prow");
    assert_eq!(a[labels::JOB_UID], "u-1");
    assert_eq!(a["note"], "x");
}

#[test]
fn invalid_label_values_are_dropped_and_long_job_names_cut() {
    let mut j = presubmit();
    j.spec.job = format!("{}-tail", "j".repeat(70));
    j.spec.context = "has spaces".into();
    let l = pod_labels(&j, "1");
    assert_eq!(l["prow.k8s.io/job"], "j".repeat(63));
    assert!(!l.contains_key("prow.k8s.io/context"));
    let pod = pod_for(&j, "1", "d").expect("pod");
    assert_eq!(
        pod.metadata.annotations.expect("a")["prow.k8s.io/job"],
        j.spec.job,
        "annotation keeps the full name"
    );
}

#[test]
fn presubmit_env_has_everything_sorted_after_the_containers_own() {
    let pod = pod_for(&presubmit(), "42", "d").expect("pod");
    let names: Vec<_> = pod.spec.as_ref().expect("spec").containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names[0], "A", "the container's own env stays first");
    let mut sorted = names[1..].to_vec();
    sorted.sort();
    assert_eq!(names[1..], sorted[..]);
    let env = env_of(&pod, 0);
    let expected = [
        ("CI", "true"),
        ("JOB_NAME", "pull-unit"),
        ("JOB_TYPE", "presubmit"),
        ("BUILD_ID", "42"),
        ("BUILD_NUMBER", "42"),
        ("PROW_JOB_ID", "abc-123"),
        ("REPO_OWNER", "acme"),
        ("REPO_NAME", "widgets"),
        ("PULL_BASE_REF", "main"),
        ("PULL_BASE_SHA", "b1"),
        ("PULL_REFS", "main:b1,7:p7,9:p9:refs/pull/9/head"),
        ("PULL_NUMBER", "7"),
        ("PULL_PULL_SHA", "p7"),
        ("PULL_HEAD_REF", "fix"),
        ("PULL_TITLE", "Fix it"),
    ];
    for (k, v) in expected {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "env {k}");
    }
    let spec: serde_json::Value = serde_json::from_str(&env["JOB_SPEC"]).expect("JOB_SPEC is JSON");
    assert_eq!(spec["type"], "presubmit");
    assert_eq!(spec["job"], "pull-unit");
    assert_eq!(spec["buildid"], "42");
    assert_eq!(spec["prowjobid"], "abc-123");
    assert_eq!(spec["refs"]["pulls"][0]["number"], 7);
}

#[test]
fn env_by_type_adds_only_what_the_type_has() {
    let cases = [
        ("periodic", false, false),
        ("postsubmit", true, false),
        ("batch", true, false),
        ("presubmit", true, true),
    ];
    for (kind, repo_env, pull_env) in cases {
        let mut j = presubmit();
        j.spec.job_type = serde_json::from_value(json!(kind)).expect("type");
        let env: BTreeMap<_, _> = downward_env(&j, "1")
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        assert_eq!(
            env.contains_key("REPO_OWNER"),
            repo_env,
            "{kind}: REPO_OWNER"
        );
        assert_eq!(env.contains_key("PULL_REFS"), repo_env, "{kind}: PULL_REFS");
        assert_eq!(
            env.contains_key("PULL_NUMBER"),
            pull_env,
            "{kind}: PULL_NUMBER"
        );
        assert!(env.contains_key("JOB_SPEC"), "{kind}: JOB_SPEC");
    }
}

#[test]
fn pull_refs_without_base_sha_is_just_the_base_ref() {
    let refs = Refs {
        base_ref: "main".into(),
        ..Default::default()
    };
    assert_eq!(pull_refs(&refs), "main");
}

#[test]
fn a_job_without_pod_spec_or_identity_has_no_pod() {
    let mut j = presubmit();
    j.spec.pod_spec = None;
    assert_eq!(pod_for(&j, "1", "d"), Err(PodError::NoPodSpec));
    let mut j = presubmit();
    j.metadata.uid = None;
    assert_eq!(pod_for(&j, "1", "d"), Err(PodError::Unnamed));
}

#[test]
fn a_leased_cluster_reaches_every_container_as_env_and_a_mounted_kubeconfig() {
    let mut pod = pod_for(&presubmit(), "42", "default").expect("pod");
    let cluster = LeasedCluster {
        name: "c1".into(),
        region: "eu".into(),
        kubeconfig: Some(crate::testcluster::SecretKeyRef {
            name: "c1-kubeconfig".into(),
            key: "config".into(),
        }),
    };
    pod.spec.as_mut().expect("spec").containers[0]
        .env
        .get_or_insert_with(Vec::new)
        .push(EnvVar {
            name: "TEST_CLUSTER".into(),
            value: Some("chosen-by-the-job".into()),
            value_from: None,
        });
    with_test_cluster(&mut pod, &cluster);
    let env = env_of(&pod, 0);
    assert_eq!(
        env["TEST_CLUSTER"], "c1",
        "the lease wins over the job's own value"
    );
    assert_eq!(env["TEST_CLUSTER_REGION"], "eu");
    assert_eq!(env["KUBECONFIG"], "/etc/test-cluster/kubeconfig");
    let spec = pod.spec.as_ref().expect("spec");
    let volume = &spec.volumes.as_ref().expect("volumes")[0];
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("abc-123-test-cluster"),
        "the copy in the pod's namespace, not the cluster's own Secret"
    );
    let mount = &spec.containers[0].volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(mount.mount_path, "/etc/test-cluster");
    assert_eq!(mount.read_only, Some(true));

    let mut bare = pod_for(&presubmit(), "42", "default").expect("pod");
    with_test_cluster(
        &mut bare,
        &LeasedCluster {
            name: "cimaster-1".into(),
            region: String::new(),
            kubeconfig: None,
        },
    );
    let env = env_of(&bare, 0);
    assert_eq!(env["TEST_CLUSTER"], "cimaster-1");
    assert!(
        !env.contains_key("KUBECONFIG"),
        "no kubeconfig, only name and region"
    );
    assert!(bare.spec.as_ref().expect("spec").volumes.is_none());
}
