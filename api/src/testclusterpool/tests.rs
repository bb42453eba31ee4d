use serde_json::{json, Value};

use super::*;

fn spec(value: Value) -> TestClusterPoolSpec {
    serde_json::from_value(value).expect("spec")
}

#[test]
fn a_pool_without_settings_has_the_defaults_and_settings_override_them() {
    let defaults = spec(json!({})).policy().expect("defaults");
    assert_eq!(defaults, PoolPolicy::default());
    assert_eq!(defaults.default_hold, Duration::from_secs(6 * 3600));

    let set = spec(json!({"holdDuration": "2h", "maxHoldDuration": "12h",
                          "maxLeaseDuration": "90m", "cleanupJob": {"job": "wipe"}}))
    .policy()
    .expect("policy");
    assert_eq!(set.default_hold, Duration::from_secs(2 * 3600));
    assert_eq!(set.max_hold, Duration::from_secs(12 * 3600));
    assert_eq!(set.max_caller_lease, Duration::from_secs(90 * 60));
    assert!(set.cleanup, "a clean-up job turns cleaning on");
}

#[test]
fn bad_settings_are_refused_with_their_field() {
    let cases = [
        (json!({"holdDuration": "six hours"}), "spec.holdDuration"),
        (json!({"maxLeaseDuration": "-1h"}), "spec.maxLeaseDuration"),
        (
            json!({"holdDuration": "30h", "maxHoldDuration": "24h"}),
            "spec.holdDuration",
        ),
    ];
    for (value, field) in cases {
        let err = spec(value.clone()).policy().expect_err("refused");
        assert_eq!(err.field, field, "{value}");
    }
}

#[test]
fn the_status_counts_clusters_by_phase_and_the_line() {
    let cluster = |name: &str, pool: &str, phase: Option<&str>| -> TestCluster {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": name, "namespace": "ci"},
            "spec": {"pool": pool},
            "status": phase.map(|p| json!({"phase": p})),
        }))
        .expect("cluster")
    };
    let clusters = [
        cluster("a", "e2e", None),
        cluster("b", "e2e", Some("Vacant")),
        cluster("c", "e2e", Some("Held")),
        cluster("d", "e2e", Some("Disabled")),
        cluster("e", "e2e", Some("Cleaning")),
        cluster("f", "gpu", Some("Vacant")),
    ];
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let job = |name: &str, created: &str, pool: &str| -> ProwJob {
        serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "ci", "uid": name, "creationTimestamp": created,
                         "labels": {"prow-operator.dev/test-cluster-pool": pool}},
            "spec": {"type": "periodic", "agent": "kubernetes", "job": "e2e"},
            "status": {"state": "triggered"},
        }))
        .expect("job")
    };
    let jobs = [
        job("later", "2024-01-01T00:05:00Z", "e2e"),
        job("first", "2024-01-01T00:01:00Z", "e2e"),
        job("elsewhere", "2024-01-01T00:00:00Z", "gpu"),
    ];
    let status = pool_status(
        &Pool {
            namespace: "ci",
            name: "e2e",
            default_pod_namespace: "ci",
        },
        &refs,
        jobs.iter(),
    );
    assert_eq!(
        status.clusters,
        PhaseCounts {
            vacant: 2,
            leased: 0,
            held: 1,
            cleaning: 1,
            disabled: 1
        }
    );
    assert_eq!(status.waiting, 2);
    assert_eq!(
        status.oldest_wait,
        Some(Time("2024-01-01T00:01:00Z".parse().expect("time")))
    );
    let empty = pool_status(
        &Pool {
            namespace: "ci",
            name: "none",
            default_pod_namespace: "ci",
        },
        &refs,
        jobs.iter(),
    );
    assert_eq!(empty.waiting, 0);
    assert_eq!(empty.oldest_wait, None);
}

#[test]
fn a_pool_turns_its_health_check_on_with_defaults_or_its_own_timings() {
    let spec = |check: Value| -> TestClusterPoolSpec {
        serde_json::from_value(json!({"healthCheck": check})).expect("spec")
    };
    assert_eq!(
        TestClusterPoolSpec::default()
            .policy()
            .expect("policy")
            .health,
        None
    );
    let on = spec(json!({}))
        .policy()
        .expect("policy")
        .health
        .expect("on");
    assert_eq!(on, crate::lease::HealthPolicy::default());
    let own = spec(json!({"timeout": "2s", "retryInterval": "5s"}))
        .policy()
        .expect("policy")
        .health
        .expect("on");
    assert_eq!(
        (own.timeout, own.interval),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    let bad = spec(json!({"timeout": "soon"})).policy().expect_err("bad");
    assert_eq!(bad.field, "spec.healthCheck.timeout");
}

#[test]
fn a_clean_up_job_runs_beside_its_cluster_with_its_name_region_and_kubeconfig() {
    let template = json!({"type": "periodic", "agent": "kubernetes", "job": "clean-e2e",
        "pod_spec": {"containers": [{"image": "toolbox", "env": [{"name": "TEST_CLUSTER", "value": "x"}]}]}});
    let cluster: TestCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c1", "namespace": "test-pods"},
        "spec": {"pool": "e2e", "region": "eu", "kubeconfigSecretRef": {"name": "c1-kc", "key": "config"}},
    }))
    .expect("cluster");
    let job = cleanup_job(&template, &cluster).expect("job");
    assert_eq!(job.metadata.generate_name.as_deref(), Some("c1-cleanup-"));
    assert_eq!(
        job.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::labels::CLEANS))
            .map(String::as_str),
        Some("c1")
    );
    assert_eq!(
        job.spec.namespace, "test-pods",
        "beside the cluster's Secret"
    );
    let pod = job.spec.pod_spec.as_ref().expect("pod spec");
    let env: BTreeMap<String, String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["TEST_CLUSTER"], "c1",
        "the cluster, not the template's value"
    );
    assert_eq!(env["TEST_CLUSTER_REGION"], "eu");
    assert_eq!(env["KUBECONFIG"], "/etc/test-cluster/config");
    let volume = &pod.volumes.as_ref().expect("volumes")[0];
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("c1-kc")
    );
    let made = create_cluster_job(&template, "e2e", "carol", "main").expect("job");
    assert_eq!(
        made.metadata.generate_name.as_deref(),
        Some("create-cluster-e2e-")
    );
    let env: Vec<String> = made.spec.pod_spec.expect("pod").containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
        .collect();
    assert!(env.contains(&"REQUESTED_BY=carol".to_string()), "{env:?}");
    assert!(env.contains(&"BRANCH=main".to_string()), "{env:?}");
    assert!(cleanup_job(&json!({"type": 7}), &cluster).is_err());
}

#[test]
fn a_pool_grows_while_jobs_wait_with_nothing_vacant_below_its_maximum() {
    let spec: TestClusterPoolSpec = serde_json::from_value(json!({
        "createClusterJob": {"type": "periodic", "agent": "kubernetes", "job": "make"},
        "maxSize": 3,
    }))
    .expect("spec");
    let status = |vacant: i32, leased: i32, waiting: i32| TestClusterPoolStatus {
        clusters: PhaseCounts {
            vacant,
            leased,
            ..PhaseCounts::default()
        },
        waiting,
        ..TestClusterPoolStatus::default()
    };
    assert!(should_grow(&spec, &status(0, 2, 1), 0));
    assert!(!should_grow(&spec, &status(0, 2, 0), 0), "nobody waits");
    assert!(
        !should_grow(&spec, &status(1, 1, 1), 0),
        "a cluster is vacant"
    );
    assert!(
        !should_grow(&spec, &status(0, 2, 1), 1),
        "one is being built"
    );
    assert!(!should_grow(&spec, &status(0, 3, 4), 0), "at its maximum");
    let no_max = TestClusterPoolSpec {
        max_size: None,
        ..spec.clone()
    };
    assert!(
        !should_grow(&no_max, &status(0, 2, 1), 0),
        "no maximum: never grows by itself"
    );
    let no_template = TestClusterPoolSpec {
        create_cluster_job: None,
        ..spec
    };
    assert!(!should_grow(&no_template, &status(0, 2, 1), 0));
}

fn definition(spec: Value) -> JobDefinition {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
        "metadata": {"name": "make-cluster", "namespace": "prow"},
        "spec": spec,
    }))
    .expect("definition")
}

#[test]
fn a_named_definition_builds_clusters_as_a_manual_run_told_who_asked_and_which_branch() {
    let pod = json!({"containers": [{"name": "make", "image": "maker"}]});
    let env_of = |job: &ProwJob| -> Vec<String> {
        job.spec.pod_spec.as_ref().expect("pod").containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| format!("{}={}", e.name, e.value.clone().unwrap_or_default()))
            .collect()
    };

    let periodic = definition(json!({"type": "periodic", "interval": "24h", "spec": pod}));
    let job = create_cluster_run(&periodic, "e2e", "carol", "").expect("run");
    assert_eq!(job.metadata.name, None);
    assert_eq!(
        job.metadata.generate_name.as_deref(),
        Some("create-cluster-e2e-")
    );
    let job_labels = job.metadata.labels.clone().expect("labels");
    assert_eq!(job_labels[labels::CREATES_CLUSTER_FOR], "e2e");
    assert_eq!(
        job_labels[crate::jobdefinition::DEFINITION_LABEL],
        "make-cluster"
    );
    assert_eq!(job_labels[crate::jobdefinition::TRIGGER_LABEL], "manual");
    assert_eq!(job.spec.job, "make-cluster");
    let env = env_of(&job);
    for expected in ["CLUSTER_POOL=e2e", "REQUESTED_BY=carol", "BRANCH="] {
        assert!(
            env.contains(&expected.to_string()),
            "{expected} not in {env:?}"
        );
    }

    // A postsubmit builds from the branch asked for, else its one literal branch.
    let post = definition(json!({"type": "postsubmit", "repo": "acme/clusters",
                                 "branches": ["^main$"], "spec": pod}));
    let job = create_cluster_run(&post, "e2e", "carol", "release-1.2").expect("run");
    assert_eq!(
        job.spec.refs.as_ref().expect("refs").base_ref,
        "release-1.2"
    );
    let job = create_cluster_run(&post, "e2e", "pool", "").expect("run");
    assert_eq!(job.spec.refs.as_ref().expect("refs").base_ref, "main");
    let any_branch =
        definition(json!({"type": "postsubmit", "repo": "acme/clusters", "spec": pod}));
    assert!(
        create_cluster_run(&any_branch, "e2e", "pool", "").is_err(),
        "no branch to build from"
    );

    let pre = definition(json!({"type": "presubmit", "repo": "acme/clusters", "spec": pod}));
    let refused = create_cluster_run(&pre, "e2e", "carol", "main").expect_err("presubmit");
    assert!(refused.contains("presubmit"), "{refused}");
}

#[test]
fn a_pool_with_a_create_cluster_definition_grows_like_one_with_a_job() {
    let spec: TestClusterPoolSpec = serde_json::from_value(json!({
        "createClusterDefinition": "make-cluster",
        "maxSize": 2,
    }))
    .expect("spec");
    let status = TestClusterPoolStatus {
        clusters: PhaseCounts {
            leased: 1,
            ..PhaseCounts::default()
        },
        waiting: 1,
        ..TestClusterPoolStatus::default()
    };
    assert!(should_grow(&spec, &status, 0));
    assert!(!should_grow(&spec, &status, 1));
}
