use kube::ResourceExt;
use serde_json::{json, Value};

use super::*;

fn job(name: &str, created: &str, pool: Option<&str>, state: &str) -> ProwJob {
    let labels = pool.map_or(json!({}), |p| json!({labels::TEST_CLUSTER_POOL: p}));
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "namespace": "ci", "uid": format!("uid-{name}"),
                     "creationTimestamp": created, "labels": labels},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": "e2e"},
        "status": {"state": state},
    }))
    .expect("job")
}

fn cluster(name: &str, pool: &str, status: Value) -> TestCluster {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {"pool": pool, "kubeconfigSecretRef": {"name": format!("{name}-kubeconfig")}},
        "status": status,
    }))
    .expect("cluster")
}

const E2E: Pool = Pool {
    namespace: "ci",
    name: "e2e",
    default_pod_namespace: "ci",
};

fn names<T: ResourceExt>(items: &[&T]) -> Vec<String> {
    items.iter().map(|i| i.name_any()).collect()
}

#[test]
fn the_line_is_first_come_first_served_and_skips_jobs_that_hold_or_run() {
    let holder = cluster(
        "c-held",
        "e2e",
        json!({"phase": "Leased", "lease": {"holder": "ci/holds", "holderUid": "uid-holds",
                                            "since": "2024-01-01T00:00:00Z"}}),
    );
    let jobs = [
        job("late", "2024-01-01T00:03:00Z", Some("e2e"), "triggered"),
        job("early", "2024-01-01T00:01:00Z", Some("e2e"), "triggered"),
        job(
            "same-time-b",
            "2024-01-01T00:02:00Z",
            Some("e2e"),
            "triggered",
        ),
        job(
            "same-time-a",
            "2024-01-01T00:02:00Z",
            Some("e2e"),
            "triggered",
        ),
        job("holds", "2024-01-01T00:00:00Z", Some("e2e"), "triggered"),
        job("running", "2024-01-01T00:00:00Z", Some("e2e"), "pending"),
        job(
            "other-pool",
            "2024-01-01T00:00:00Z",
            Some("gpu"),
            "triggered",
        ),
        job("no-pool", "2024-01-01T00:00:00Z", None, "triggered"),
        {
            let mut elsewhere = job(
                "elsewhere",
                "2024-01-01T00:00:00Z",
                Some("e2e"),
                "triggered",
            );
            elsewhere.spec.namespace = "other".into();
            elsewhere
        },
    ];
    let line = line(&E2E, jobs.iter(), &[&holder]);
    assert_eq!(
        names(&line),
        ["early", "same-time-a", "same-time-b", "late"],
        "by creation time, then name"
    );
    assert_eq!(
        lease_of(&jobs[4], [&holder]).map(|c| c.name_any()),
        Some("c-held".into())
    );
    let mut recreated = jobs[4].clone();
    recreated.metadata.uid = Some("uid-other".into());
    assert!(
        lease_of(&recreated, [&holder]).is_none(),
        "by UID, not name"
    );
}

#[test]
fn the_first_in_line_get_the_leasable_clusters_and_no_one_jumps_the_line() {
    let clusters = [
        cluster("c2", "e2e", json!({"phase": "Vacant"})),
        cluster("c1", "e2e", json!(null)),
        cluster(
            "c3",
            "e2e",
            json!({"phase": "Disabled", "disabledReason": "x"}),
        ),
        cluster(
            "c4",
            "e2e",
            json!({"phase": "Vacant", "conditions": [{"type": "Healthy",
            "status": "False", "reason": "ReadyzFailed", "message": "refused",
            "lastTransitionTime": "2024-01-01T00:00:00Z"}]}),
        ),
        cluster("c5", "gpu", json!({"phase": "Vacant"})),
        cluster("c6", "e2e", json!({"phase": "Cleaning"})),
    ];
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let jobs = [
        job("second", "2024-01-01T00:02:00Z", Some("e2e"), "triggered"),
        job("first", "2024-01-01T00:01:00Z", Some("e2e"), "triggered"),
        job("third", "2024-01-01T00:03:00Z", Some("e2e"), "triggered"),
    ];
    let given: Vec<(String, String)> = assign(&E2E, jobs.iter(), &refs)
        .into_iter()
        .map(|(j, c)| (j.name_any(), c.name_any()))
        .collect();
    assert_eq!(
        given,
        [
            ("first".to_string(), "c1".to_string()),
            ("second".to_string(), "c2".to_string()),
        ],
        "two leasable clusters (no status reads as vacant); the third job waits"
    );
    assert!(assign(
        &Pool {
            name: "none",
            ..E2E
        },
        jobs.iter(),
        &refs
    )
    .is_empty());
}

#[test]
fn a_job_names_its_pool_with_a_label_and_says_where_it_waits() {
    let j = job("a", "2024-01-01T00:00:00Z", Some("e2e"), "triggered");
    assert_eq!(pool_of(&j), Some("e2e"));
    assert_eq!(
        pool_of(&job("b", "2024-01-01T00:00:00Z", Some(""), "triggered")),
        None
    );
    assert_eq!(
        pool_of(&job("c", "2024-01-01T00:00:00Z", None, "triggered")),
        None
    );
    assert_eq!(
        waiting_description("e2e", 2),
        "Waiting for a test cluster of pool \"e2e\": number 2 in line."
    );
}

#[test]
fn a_cluster_being_deleted_is_not_leased_and_a_pod_learns_name_region_and_kubeconfig() {
    let mut going = cluster("c1", "e2e", json!({"phase": "Vacant"}));
    assert!(leasable(&going, "e2e"));
    going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2024-01-01T00:00:00Z".parse().expect("time"),
    ));
    assert!(!leasable(&going, "e2e"));
    let mut c = cluster("c1", "e2e", json!(null));
    c.spec.region = Some("eu-west".into());
    let leased = LeasedCluster::of(&c);
    assert_eq!(leased.name, "c1");
    assert_eq!(leased.region, "eu-west");
    assert_eq!(
        leased.kubeconfig.map(|k| k.name),
        Some("c1-kubeconfig".into())
    );
}

#[test]
fn the_kubeconfig_copy_is_named_after_the_job_and_always_a_valid_name() {
    assert_eq!(kubeconfig_copy_name("e2e-abc"), "e2e-abc-test-cluster");
    let long = "a".repeat(250);
    let copy = kubeconfig_copy_name(&long);
    assert_eq!(copy.len(), 253);
    assert!(copy.ends_with("-test-cluster"));
    let dashed = format!("{}-{}", "a".repeat(239), "b".repeat(20));
    assert!(
        !kubeconfig_copy_name(&dashed).contains("--"),
        "no dash left before the suffix"
    );
}

/// What a `getvacant` caller gets: only what the jobs in line leave, and never a cluster its
/// pool has not health-checked yet.
#[test]
fn a_caller_gets_a_checked_cluster_beyond_the_waiting_jobs_share() {
    let checked = |name: &str| {
        cluster(
            name,
            "e2e",
            json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "True",
                "reason": "ReadyzAnswered", "message": "ok", "lastTransitionTime": "2024-05-01T11:00:00Z"}]}),
        )
    };
    let unchecked = |name: &str| cluster(name, "e2e", json!({"phase": "Vacant"}));
    let waiting = job("w1", "2024-05-01T10:00:00Z", Some("e2e"), "triggered");
    let health = PoolPolicy {
        health: Some(crate::lease::HealthPolicy::default()),
        ..PoolPolicy::default()
    };
    let plain = PoolPolicy::default();
    type Want = Result<&'static str, &'static str>;
    type Case<'a> = (
        &'a str,
        Vec<TestCluster>,
        Vec<&'a ProwJob>,
        &'a PoolPolicy,
        Want,
    );
    let cases: Vec<Case> = vec![
        (
            "a vacant cluster",
            vec![unchecked("c1")],
            vec![],
            &plain,
            Ok("c1"),
        ),
        (
            "the first in name order",
            vec![unchecked("c2"), unchecked("c1")],
            vec![],
            &plain,
            Ok("c1"),
        ),
        (
            "none beyond the jobs' share",
            vec![unchecked("c1")],
            vec![&waiting],
            &plain,
            Err("no vacant cluster in pool e2e: 1 free, 1 jobs waiting; try again later"),
        ),
        (
            "the one the job leaves",
            vec![unchecked("c1"), unchecked("c2")],
            vec![&waiting],
            &plain,
            Ok("c2"),
        ),
        (
            "never checked in a checked pool",
            vec![unchecked("c1")],
            vec![],
            &health,
            Err("cluster c1 has not been health-checked yet; try again in a moment"),
        ),
        (
            "checked in a checked pool",
            vec![checked("c1")],
            vec![],
            &health,
            Ok("c1"),
        ),
        (
            "none at all",
            vec![],
            vec![],
            &plain,
            Err("no vacant cluster in pool e2e: 0 free, 0 jobs waiting; try again later"),
        ),
    ];
    for (case, clusters, jobs, policy, want) in cases {
        let members: Vec<&TestCluster> = clusters.iter().collect();
        let got = caller_share(&E2E, jobs, &members, policy).map(|c| c.name_any());
        assert_eq!(got.as_deref().map_err(String::as_str), want, "{case}");
    }
}

#[test]
fn only_a_never_checked_cluster_of_a_checked_pool_awaits_its_first_check() {
    let health = PoolPolicy {
        health: Some(crate::lease::HealthPolicy::default()),
        ..PoolPolicy::default()
    };
    let fresh = cluster("c1", "e2e", json!({"phase": "Vacant"}));
    let marked = cluster(
        "c1",
        "e2e",
        json!({"phase": "Vacant", "conditions": [{"type": "Healthy",
        "status": "Unknown", "reason": "Checking", "message": "m", "lastTransitionTime": "2024-05-01T11:00:00Z"}]}),
    );
    let mut no_kubeconfig = fresh.clone();
    no_kubeconfig.spec.kubeconfig_secret_ref = None;
    assert!(awaits_first_check(&fresh, &health).is_some());
    assert!(
        awaits_first_check(&marked, &health).is_none(),
        "being checked: not leasable anyway"
    );
    assert!(
        awaits_first_check(&no_kubeconfig, &health).is_none(),
        "nothing to check with"
    );
    assert!(awaits_first_check(&fresh, &PoolPolicy::default()).is_none());
}

#[test]
fn a_kubeconfig_copy_is_left_over_once_no_unfinished_job_holds_it_and_it_is_not_new() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let now: Timestamp = "2024-01-01T00:10:00Z".parse().unwrap();
    let ago = |s: i64| Some(now - SignedDuration::from_secs(s));
    let unfinished: std::collections::HashSet<&str> = ["running-uid"].into();
    let cases: [(&str, Option<Timestamp>, bool, &str); 6] = [
        ("gone-uid", ago(600), true, "its job finished or is gone"),
        ("gone-uid", ago(30), true, "exactly the grace old"),
        ("gone-uid", ago(29), false, "younger than the grace"),
        ("gone-uid", None, false, "no creation time: kept"),
        ("running-uid", ago(600), false, "its job still runs"),
        ("", ago(600), true, "an empty holder matches no job"),
    ];
    for (holder, created, left_over, why) in cases {
        assert_eq!(
            copy_is_left_over(holder, created, &unfinished, now),
            left_over,
            "{why}"
        );
    }
}
