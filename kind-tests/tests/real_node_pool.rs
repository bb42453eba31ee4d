//! The TestCluster pool for real: two extra API servers on the Docker bridge play the test
//! clusters, jobs run in the toolbox image on the real node, reach their leased cluster through
//! the mounted kubeconfig and create something in it; a third job waits for a cluster, and the
//! pool's clean-up job runs in between. Skipped with one line where there is no node (failed
//! under `CI=true`, as the rest of the real-node tier).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kind_tests::fixtures::create_test_cluster;
use kind_tests::operator::{start_operator, wait_for_job};
use kind_tests::TestEnv;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use prow_api::testclusterpool::TestClusterPool;
use prow_api::{labels, ProwJob, ProwJobState};
use serde_json::json;

const TOOLBOX: &str = "prow-operator.local/toolbox:v1";
const WAIT: Duration = Duration::from_secs(120);

/// An API server on the Docker bridge, stopped when dropped.
struct ExtraCluster {
    dir: PathBuf,
    kubeconfig: String,
}

impl ExtraCluster {
    fn up(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("prow-operator-extra-{name}-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(script())
            .args(["up", dir.to_str().expect("dir"), "--bridge"])
            .output()
            .expect("control-plane.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Pods have the CA only if the kubeconfig carries it.
        let text = std::fs::read_to_string(dir.join("kubeconfig")).expect("kubeconfig");
        let encoded = Command::new("base64")
            .arg("-w0")
            .arg(dir.join("ca.crt"))
            .output()
            .expect("base64");
        assert!(encoded.status.success() && !encoded.stdout.is_empty());
        let kubeconfig = text
            .lines()
            .map(
                |line| match line.trim_start().strip_prefix("certificate-authority: ") {
                    Some(_) => format!(
                        "    certificate-authority-data: {}",
                        String::from_utf8_lossy(&encoded.stdout)
                    ),
                    None => line.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("\n");
        Self { dir, kubeconfig }
    }

    async fn client(&self) -> Client {
        let config = kube::config::Kubeconfig::from_yaml(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
            .await
            .expect("config");
        Client::try_from(config).expect("client")
    }
}

impl Drop for ExtraCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", self.dir.to_str().unwrap_or_default()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh")
}

fn toolbox_spec(job: &str, script: &str) -> serde_json::Value {
    json!({"type": "periodic", "agent": "kubernetes", "job": job,
           "pod_spec": {"containers": [{"name": "test", "image": TOOLBOX, "imagePullPolicy": "Never",
                                          "command": ["sh", "-c", script]}],
                        "terminationGracePeriodSeconds": 2}})
}

fn pool_job(name: &str, script: &str) -> ProwJob {
    let mut job: ProwJob = serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": toolbox_spec(&format!("ci-{name}"), script),
    }))
    .expect("job");
    job.metadata.labels = Some(BTreeMap::from([(
        labels::TEST_CLUSTER_POOL.to_string(),
        "e2e".to_string(),
    )]));
    job
}

#[tokio::test]
async fn jobs_on_the_real_node_lease_real_clusters_in_turn_with_a_clean_up_between() {
    let Some(env) = TestEnv::on_node("realpool").await.expect("env") else {
        return;
    };
    let extra = [ExtraCluster::up("alpha"), ExtraCluster::up("beta")];
    for (name, cluster) in ["alpha", "beta"].iter().zip(&extra) {
        create_test_cluster(
            &env,
            name,
            "e2e",
            Some("bridge"),
            "kubeconfig",
            &cluster.kubeconfig,
        )
        .await;
    }
    // The clean-up job empties the cluster's default namespace of what jobs made.
    let pool: TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "e2e"},
        "spec": {"healthCheck": {"timeout": "5s", "retryInterval": "10s"},
                 "cleanupJob": toolbox_spec("clean-e2e",
                     "kubectl get --raw /readyz && kubectl -n default delete configmap -l made-by=job")},
    }))
    .expect("pool");
    env.api::<TestClusterPool>()
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    let _operator = start_operator(&env, &[]).expect("operator");

    let work = "set -e; kubectl get --raw /readyz; echo \"on $TEST_CLUSTER in $TEST_CLUSTER_REGION\"; \
                kubectl -n default create configmap \"from-$PROW_JOB_ID\" --from-literal=cluster=\"$TEST_CLUSTER\"; \
                kubectl -n default label configmap \"from-$PROW_JOB_ID\" made-by=job; sleep 4";
    let jobs = env.api::<ProwJob>();
    for name in ["first", "second", "third"] {
        jobs.create(&PostParams::default(), &pool_job(name, work))
            .await
            .expect("job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ended = BTreeMap::new();
    for name in ["first", "second", "third"] {
        let done = wait_for_job(&jobs, name, WAIT, ProwJob::is_complete)
            .await
            .expect("the job ends");
        assert_eq!(
            done.state(),
            ProwJobState::Success,
            "{name}: {:?}; log: {}",
            done.status,
            env.kubectl(&["logs", name]).unwrap_or_default()
        );
        ended.insert(name, done);
    }
    let cluster_of = |name: &str| {
        ended[name]
            .status
            .as_ref()
            .and_then(|s| s.test_cluster.clone())
            .expect("a cluster")
    };
    assert_ne!(
        cluster_of("first"),
        cluster_of("second"),
        "two clusters, two jobs at once"
    );
    let log = env.kubectl(&["logs", "first"]).expect("log");
    assert!(
        log.contains(&format!("on {} in bridge", cluster_of("first"))),
        "{log}"
    );

    // The third waited for a cluster: it started after the first or second ended, and after
    // that cluster's clean-up job.
    let time = |job: &ProwJob, pending: bool| {
        let s = job.status.as_ref().expect("status");
        if pending {
            s.pending_time.clone().expect("pending").0
        } else {
            s.completion_time.clone().expect("completion").0
        }
    };
    let third_started = time(&ended["third"], true);
    let third_cluster = cluster_of("third");
    let before = ["first", "second"]
        .into_iter()
        .find(|n| cluster_of(n) == third_cluster)
        .expect("the third reused a cluster");
    assert!(time(&ended[before], false) <= third_started);
    let cleanups = jobs
        .list(&ListParams::default().labels(&format!("{}={third_cluster}", labels::CLEANS)))
        .await
        .expect("clean-up jobs");
    let cleanup = cleanups
        .items
        .iter()
        .find(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .is_some_and(|t| t.0 <= third_started)
        })
        .unwrap_or_else(|| {
            panic!(
                "a clean-up of {third_cluster} ended before the third started: {:?}",
                cleanups
                    .items
                    .iter()
                    .map(|j| (j.name_any(), j.status.clone()))
                    .collect::<Vec<_>>()
            )
        });
    assert_eq!(cleanup.state(), ProwJobState::Success);

    // In the clusters themselves: each job created its ConfigMap through the mounted
    // kubeconfig, and the clean-up after each lease removed it.
    let log = env.kubectl(&["logs", "third"]).expect("log");
    assert!(log.contains("configmap/from-third created"), "{log}");
    for cluster in &extra {
        let made: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
        kind_tests::operator::eventually("every job's ConfigMap cleaned up", WAIT, || async {
            let left = made
                .list(&ListParams::default().labels("made-by=job"))
                .await?
                .items;
            Ok(left.is_empty().then_some(()))
        })
        .await
        .expect("cleaned");
    }
}
