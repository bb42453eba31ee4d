//! The pod driver moves pods through the phases the kubelet would, on a control plane without one.

use k8s_openapi::api::core::v1::Pod;
use kind_tests::{PodDriver, TestEnv};
use kube::api::PostParams;
use serde_json::json;

async fn pod(env: &TestEnv, name: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "test", "image": "busybox"},
            {"name": "sidecar", "image": "busybox"},
        ]},
    }))
    .expect("pod");
    env.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("created")
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn exit_codes(pod: &Pod) -> Vec<(String, i32)> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    Some((c.name.clone(), code))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pod_goes_scheduled_running_then_failed_with_chosen_exit_codes() {
    let env = TestEnv::new("driver-lifecycle").await.expect("env");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    pod(&env, "p1").await;

    let scheduled = driver.schedule("p1").await.expect("scheduled");
    assert_eq!(phase(&scheduled), "Pending");
    assert!(scheduled
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_some());
    let bound = env.api::<Pod>().get("p1").await.expect("get");
    assert_eq!(
        bound.spec.and_then(|s| s.node_name).as_deref(),
        Some(kind_tests::pod_driver::NODE)
    );

    let running = driver.run("p1").await.expect("running");
    assert_eq!(phase(&running), "Running");

    let done = driver
        .finish("p1", |c| if c == "sidecar" { 3 } else { 0 })
        .await
        .expect("finished");
    assert_eq!(phase(&done), "Failed");
    assert_eq!(
        exit_codes(&done),
        [("test".to_string(), 0), ("sidecar".to_string(), 3)]
    );
}

#[tokio::test]
async fn pod_succeeds_when_every_container_exits_zero() {
    let env = TestEnv::new("driver-success").await.expect("env");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    pod(&env, "p2").await;
    // Straight from created to finished: the driver schedules it on the way.
    let done = driver.succeed("p2").await.expect("succeeded");
    assert_eq!(phase(&done), "Succeeded");
    assert_eq!(exit_codes(&done).len(), 2);
}

#[tokio::test]
async fn pod_can_be_evicted_lost_or_unknown() {
    let env = TestEnv::new("driver-lost").await.expect("env");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    for name in ["evicted", "lost", "unknown"] {
        pod(&env, name).await;
    }
    let evicted = driver.evict("evicted").await.expect("evicted");
    assert_eq!(phase(&evicted), "Failed");
    assert_eq!(
        evicted.status.and_then(|s| s.reason).as_deref(),
        Some("Evicted")
    );

    let lost = driver.lose_node("lost").await.expect("lost");
    assert_eq!(
        lost.status.and_then(|s| s.reason).as_deref(),
        Some("NodeLost")
    );

    let unknown = driver.mark_unknown("unknown").await.expect("unknown");
    assert_eq!(phase(&unknown), "Unknown");
}
