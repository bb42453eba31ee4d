//! TestClusters: what time or a vanished job ends, the operator releases.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kind_tests::fixtures::job;
use kind_tests::operator::{eventually, start_operator};
use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use prow_api::{ClusterPhase, ProwJob, TestCluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn cluster(name: &str) -> TestCluster {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": name},
        "spec": {"pool": "e2e", "kubeconfigSecretRef": {"name": format!("{name}-kubeconfig")}},
    }))
    .expect("cluster")
}

/// Creates a cluster whose status is `status`, as a lease writer would leave it.
async fn with_status(clusters: &kube::Api<TestCluster>, name: &str, status: Value) {
    clusters
        .create(&PostParams::default(), &cluster(name))
        .await
        .expect("created");
    clusters
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .expect("status");
}

async fn phase_of(clusters: &kube::Api<TestCluster>, name: &str) -> Option<ClusterPhase> {
    let c = clusters.get(name).await.expect("cluster");
    c.status.and_then(|s| s.phase)
}

#[tokio::test]
async fn a_hold_that_runs_out_is_released_and_a_gone_jobs_lease_reclaimed() {
    let env = TestEnv::new("clusters").await.expect("env");
    let clusters = env.api::<TestCluster>();
    let running = env
        .api::<ProwJob>()
        .create(&PostParams::default(), &job("holder", "periodic"))
        .await
        .expect("job");
    let soon = Timestamp::now() + std::time::Duration::from_secs(3);
    let later = Timestamp::now() + std::time::Duration::from_secs(3600);
    with_status(
        &clusters,
        "held-short",
        json!({"phase": "Held", "lease": {
        "holder": "alice", "since": Timestamp::now().to_string(), "until": soon.to_string()}}),
    )
    .await;
    with_status(
        &clusters,
        "held-long",
        json!({"phase": "Held", "lease": {
        "holder": "bob", "since": Timestamp::now().to_string(), "until": later.to_string()}}),
    )
    .await;
    with_status(&clusters, "orphaned", json!({"phase": "Leased", "lease": {
        "holder": "ci/deleted-job", "holderUid": "no-such-uid", "since": Timestamp::now().to_string()}})).await;
    with_status(
        &clusters,
        "in-use",
        json!({"phase": "Leased", "lease": {
        "holder": format!("{}/holder", env.namespace), "holderUid": running.uid().expect("uid"),
        "since": Timestamp::now().to_string()}}),
    )
    .await;
    let _operator = start_operator(&env, &[]).expect("operator");

    eventually("the orphaned lease reclaimed", WAIT, || async {
        Ok((phase_of(&clusters, "orphaned").await == Some(ClusterPhase::Vacant)).then_some(()))
    })
    .await
    .expect("reclaimed");
    eventually("the short hold released once it ran out", WAIT, || async {
        Ok((phase_of(&clusters, "held-short").await == Some(ClusterPhase::Vacant)).then_some(()))
    })
    .await
    .expect("expired");
    let released = clusters.get("held-short").await.expect("cluster");
    assert!(
        released.status.expect("status").lease.is_none(),
        "the holder is gone with the hold"
    );
    assert_eq!(
        phase_of(&clusters, "held-long").await,
        Some(ClusterPhase::Held)
    );
    assert_eq!(
        phase_of(&clusters, "in-use").await,
        Some(ClusterPhase::Leased),
        "its job still runs"
    );
}
