//! The cimaster handlers against a mock API server: which writes a call makes, and what it
//! answers. The whole API against a real API server is in kind-tests (cimaster.rs).

use http::Method;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use prow_api::testclusterpool::TestClusterPool;
use prow_api::TestCluster;
use serde_json::{json, Value};

use super::*;
use crate::mock::{failure, serve_until_quiet, success};

fn cluster(name: &str, status: Value) -> TestCluster {
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": name, "namespace": "pods", "resourceVersion": "3"},
        "spec": {"pool": "e2e", "kubeconfigSecretRef": {"name": format!("{name}-kubeconfig")}},
        "status": status,
    }))
    .expect("cluster")
}

/// The API over a mock server, with `clusters` in pool `e2e` (health-checked when `checked`).
fn compat(
    clusters: &[TestCluster],
    checked: bool,
) -> (Compat, crate::mock::Server, Writer<TestCluster>) {
    let (client, server) = crate::mock::client();
    let (store, mut writer) = reflector::store();
    for c in clusters {
        writer.apply_watcher_event(&Event::Apply(c.clone()));
    }
    let (pools, mut pools_writer) = reflector::store();
    let spec = if checked {
        json!({"healthCheck": {}})
    } else {
        json!({})
    };
    let pool: TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "e2e", "namespace": "pods"}, "spec": spec,
    }))
    .expect("pool");
    pools_writer.apply_watcher_event(&Event::Apply(pool));
    let compat = Compat {
        client: client.clone(),
        clusters: Clusters::from_stores(store, pools),
        jobs: reflector::store().0,
        definitions: reflector::store().0,
        settings: Settings {
            listen: "127.0.0.1:0".parse().expect("address"),
            namespace: "pods".into(),
            pool: "e2e".into(),
            allow_anonymous: true,
            default_pod_namespace: "pods".into(),
        },
        recorder: crate::events::recorder(client),
    };
    (compat, server, writer)
}

fn written(_: &Method, _: &str, body: &Value) -> Value {
    let mut object = body.clone();
    object["metadata"]["resourceVersion"] = json!("4");
    object
}

#[tokio::test]
async fn getvacant_leases_the_first_vacant_cluster_with_a_guarded_replace() {
    let (api, server, _w) = compat(
        &[
            cluster("c2", json!({"phase": "Vacant"})),
            cluster("c1", json!({"phase": "Vacant"})),
        ],
        false,
    );
    let seen = serve_until_quiet(server, written);
    let answer = api.answer("getvacant", "build=1&job=e2e", None, b"").await;
    assert_eq!(answer, Answer::ok("c1".into()));
    let seen = seen.await.expect("server");
    let writes: Vec<_> = seen.iter().filter(|(m, _, _)| *m == Method::PUT).collect();
    assert_eq!(writes.len(), 1, "{seen:?}");
    let (_, path, body) = writes[0];
    assert!(path.contains("/testclusters/c1/status"), "{path}");
    assert_eq!(body["metadata"]["resourceVersion"], "3");
    assert_eq!(body["status"]["phase"], "Leased");
}

#[tokio::test]
async fn getvacant_never_hands_out_a_cluster_its_pool_has_not_checked_yet() {
    let (api, server, _w) = compat(&[cluster("c1", json!({"phase": "Vacant"}))], true);
    let seen = serve_until_quiet(server, written);
    let answer = api.answer("getvacant", "build=1&job=e2e", None, b"").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text.contains("has not been health-checked yet"),
        "{answer:?}"
    );
    let seen = seen.await.expect("server");
    assert!(seen.iter().all(|(m, _, _)| *m != Method::PUT), "{seen:?}");
}

/// Another writer leased the cluster but the cache does not show it yet: each attempt decides
/// again on a new view and loses again; the caller is told to try again, and no second holder
/// is ever written.
#[tokio::test]
async fn a_lost_race_is_decided_again_up_to_the_attempts_then_the_caller_retries() {
    let (api, server, _w) = compat(&[cluster("c1", json!({"phase": "Vacant"}))], false);
    let seen = serve_until_quiet(server, |method, _, _| match *method {
        Method::PUT => failure(409, "Conflict", "modified"),
        _ => success(),
    });
    let answer = api.answer("getvacant", "build=1&job=e2e", None, b"").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text.contains("taken while this call ran"),
        "{answer:?}"
    );
    let seen = seen.await.expect("server");
    let puts: Vec<_> = seen
        .iter()
        .filter(|(m, _, body)| *m == Method::PUT && body["metadata"]["resourceVersion"] == "3")
        .collect();
    assert_eq!(puts.len(), ATTEMPTS, "{seen:?}");
}
