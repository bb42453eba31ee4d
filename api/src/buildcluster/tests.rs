use serde_json::{json, Value};

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("time")
}

/// A job of cluster `cluster` created at 12:00:00 with `status`.
fn job(cluster: &str, status: Value, extra: Value) -> ProwJob {
    let mut spec =
        json!({"type": "periodic", "agent": "kubernetes", "job": "ci", "cluster": cluster});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "j", "namespace": "prow", "creationTimestamp": "2024-05-01T12:00:00Z"},
        "spec": spec, "status": status,
    }))
    .expect("job")
}

fn down(since: &str) -> Reach {
    Reach::Down {
        since: at(since),
        reason: "connection refused".into(),
    }
}

fn starting(since: &str) -> Reach {
    Reach::Starting {
        since: at(since),
        reason: "its job pods are not listed yet".into(),
    }
}

#[test]
fn a_job_without_a_cluster_runs_in_default() {
    assert_eq!(alias_of(&job("", json!({}), json!({}))), "default");
    assert_eq!(alias_of(&job("b1", json!({}), json!({}))), "b1");
}

#[test]
fn what_a_job_does_about_its_cluster() {
    let timeouts = Timeouts {
        unscheduled: Duration::from_secs(60),
        ..Timeouts::default()
    };
    let triggered = json!({"state": "triggered"});
    let pending = json!({"state": "pending", "pod_name": "j"});
    let pending_again = pending.clone();
    let waited_pending = json!({"state": "pending", "pod_name": "j",
        "description": "Waiting for build cluster \"b2\": connection refused"});
    let done = json!({"state": "success", "completionTime": "2024-05-01T12:00:30Z"});
    let job_timeout = json!({"decoration_config": {"pod_unscheduled_timeout": "10s"}});
    let wait = |recheck| Gate::Wait {
        description: Some("Waiting for build cluster \"b2\": connection refused".into()),
        recheck: Duration::from_secs(recheck),
    };
    let ended = "Build cluster \"b2\" was unreachable for 60s, the job's pod_unscheduled_timeout: connection refused";
    let cases: Vec<(&str, ProwJob, Reach, &str, Gate)> = vec![
        (
            "a missing alias ends a triggered job at once, naming it",
            job("gone", triggered.clone(), json!({})),
            Reach::Missing,
            "2024-05-01T12:00:01Z",
            Gate::End("Build cluster \"gone\" does not exist: no BuildCluster of that name (spec.cluster).".into()),
        ),
        (
            "and a pending one",
            job("gone", pending.clone(), json!({})),
            Reach::Missing,
            "2024-05-01T12:00:01Z",
            Gate::End("Build cluster \"gone\" does not exist: no BuildCluster of that name (spec.cluster).".into()),
        ),
        (
            "a finished job goes on whatever its cluster",
            job("gone", done, json!({})),
            Reach::Missing,
            "2024-05-01T12:00:01Z",
            Gate::Go { restore: None },
        ),
        (
            "a cluster that is up lets the job go on",
            job("b2", triggered.clone(), json!({})),
            Reach::Up,
            "2024-05-01T12:00:01Z",
            Gate::Go { restore: None },
        ),
        (
            "a pending job that waited gets its description back",
            job("b2", waited_pending, json!({})),
            Reach::Up,
            "2024-05-01T12:00:01Z",
            Gate::Go { restore: Some("Job triggered.".into()) },
        ),
        (
            "an outage older than the job counts from the job's creation",
            job("b2", triggered.clone(), json!({})),
            down("2024-05-01T11:00:00Z"),
            "2024-05-01T12:00:20Z",
            wait(5),
        ),
        (
            "the recheck is the deadline when it is sooner",
            job("b2", triggered.clone(), json!({})),
            down("2024-05-01T11:00:00Z"),
            "2024-05-01T12:00:58Z",
            wait(2),
        ),
        (
            "at the unscheduled timeout the job ends, saying why",
            job("b2", triggered.clone(), json!({})),
            down("2024-05-01T11:00:00Z"),
            "2024-05-01T12:01:00Z",
            Gate::End(ended.into()),
        ),
        (
            "a running job's timeout counts from the outage's start",
            job("b2", pending.clone(), json!({})),
            down("2024-05-01T12:10:00Z"),
            "2024-05-01T12:10:59Z",
            wait(1),
        ),
        (
            "and it ends when the outage lasts",
            job("b2", pending, json!({})),
            down("2024-05-01T12:10:00Z"),
            "2024-05-01T12:11:00Z",
            Gate::End(ended.into()),
        ),
        (
            "the job's own pod_unscheduled_timeout counts",
            job("b2", triggered, job_timeout),
            down("2024-05-01T12:00:00Z"),
            "2024-05-01T12:00:10Z",
            Gate::End("Build cluster \"b2\" was unreachable for 10s, the job's pod_unscheduled_timeout: connection refused".into()),
        ),
        (
            "a cluster being listed makes the job wait without a word",
            job("b2", pending_again.clone(), json!({})),
            starting("2024-05-01T12:10:00Z"),
            "2024-05-01T12:10:02Z",
            Gate::Wait { description: None, recheck: Duration::from_secs(5) },
        ),
        (
            "but not for longer than the unscheduled timeout",
            job("b2", pending_again, json!({})),
            starting("2024-05-01T12:10:00Z"),
            "2024-05-01T12:11:00Z",
            Gate::End("Build cluster \"b2\" was not ready for 60s, the job's pod_unscheduled_timeout: its job pods are not listed yet".into()),
        ),
    ];
    for (name, job, reach, now, want) in cases {
        assert_eq!(gate(&job, &reach, at(now), timeouts), want, "{name}");
    }
}

#[test]
fn rights_read_as_kubectl_names_them() {
    let rights: Vec<String> = required_rights().iter().map(Right::to_string).collect();
    assert!(rights.contains(&"create pods".to_string()), "{rights:?}");
    assert!(rights.contains(&"watch pods".to_string()), "{rights:?}");
    assert!(
        rights.contains(&"create poddisruptionbudgets.policy".to_string()),
        "{rights:?}"
    );
    assert!(
        rights.contains(&"create events.events.k8s.io".to_string()),
        "{rights:?}"
    );
}

fn condition<'a>(status: &'a BuildClusterStatus, kind: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .expect("condition")
}

#[test]
fn status_of_what_a_probe_found() {
    let t1 = Time(at("2024-05-01T12:00:00Z"));
    let t2 = Time(at("2024-05-01T12:05:00Z"));
    let good = Findings {
        version: Ok("v1.20.2".into()),
        missing: Some(vec![]),
        namespace: "pods".into(),
        running: 3,
        pending: 1,
    };
    let first = status(None, &good, Some(1), &t1);
    assert_eq!(condition(&first, REACHABLE).status, "True");
    assert_eq!(condition(&first, PERMISSIONS_OK).status, "True");
    assert_eq!(first.kubernetes_version.as_deref(), Some("v1.20.2"));
    assert_eq!((first.running_pods, first.pending_pods), (3, 1));

    // Unreachable: the condition flips with the reason; the last version and counts stay.
    let gone = Findings {
        version: Err("connection refused".into()),
        missing: None,
        ..good.clone()
    };
    let second = status(Some(&first), &gone, Some(1), &t2);
    let reachable = condition(&second, REACHABLE);
    assert_eq!(
        (reachable.status.as_str(), reachable.message.as_str()),
        ("False", "connection refused")
    );
    assert_eq!(reachable.last_transition_time, t2);
    assert_eq!(condition(&second, PERMISSIONS_OK).status, "Unknown");
    assert_eq!(second.kubernetes_version.as_deref(), Some("v1.20.2"));
    assert_eq!((second.running_pods, second.pending_pods), (3, 1));

    // Still up: the transition time stays.
    let third = status(Some(&first), &good, Some(1), &t2);
    assert_eq!(condition(&third, REACHABLE).last_transition_time, t1);

    // Too few rights: named.
    let poor = Findings {
        missing: Some(vec![Right {
            verb: "create",
            group: "",
            resource: "pods",
        }]),
        ..good
    };
    let fourth = status(Some(&first), &poor, Some(1), &t2);
    let rights = condition(&fourth, PERMISSIONS_OK);
    assert_eq!(rights.status, "False");
    assert_eq!(rights.reason, "MissingPermissions");
    assert_eq!(
        rights.message,
        "Missing in namespace \"pods\": create pods."
    );
}

#[test]
fn the_kind_reads_a_secret_key_with_its_default() {
    let bc: BuildCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "BuildCluster",
        "metadata": {"name": "b1", "namespace": "prow"},
        "spec": {"kubeconfigSecretRef": {"name": "b1-kubeconfig"}},
    }))
    .expect("parses");
    assert_eq!(bc.spec.kubeconfig_secret_ref.key, "kubeconfig");
}
