//! Declarative leases: a job that names a pool gets a TestCluster before its pod starts, keeps
//! it while it runs, and gives it to the next job in line when it ends (or is deleted).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kind_tests::fixtures::{container_env, create_test_cluster, job};
use kind_tests::operator::{description, eventually, start_operator, wait_for_job};
use kind_tests::pod_driver::PodDriver;
use kind_tests::process::http_get;
use kind_tests::TestEnv;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use prow_api::{labels, ClusterPhase, ProwJob, ProwJobState, TestCluster};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters: []\n";

fn pool_job(name: &str) -> ProwJob {
    let mut j = job(name, "periodic");
    j.metadata.labels = Some(BTreeMap::from([(
        labels::TEST_CLUSTER_POOL.to_string(),
        "e2e".to_string(),
    )]));
    j
}

async fn create_cluster(env: &TestEnv, name: &str) {
    create_test_cluster(env, name, "e2e", Some("eu-west"), "config", KUBECONFIG).await;
}

async fn holder_of(clusters: &Api<TestCluster>, name: &str) -> Option<String> {
    let c = clusters.get_opt(name).await.ok()??;
    Some(c.status?.lease?.holder)
}

fn env_of(pod: &Pod) -> BTreeMap<String, String> {
    container_env(pod.spec.as_ref().expect("spec"), 0)
}

#[tokio::test]
async fn a_pool_job_leases_a_cluster_before_its_pod_and_hands_it_to_the_next_in_line() {
    let env = TestEnv::new("leases").await.expect("env");
    let (jobs, clusters, pods, secrets) = (
        env.api::<ProwJob>(),
        env.api::<TestCluster>(),
        env.api::<Pod>(),
        env.api::<Secret>(),
    );
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    create_cluster(&env, "c1").await;
    let operator = start_operator(&env, &[]).expect("operator");
    let ns = env.namespace.clone();

    jobs.create(&PostParams::default(), &pool_job("a"))
        .await
        .expect("a");
    let a = wait_for_job(&jobs, "a", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("a starts");
    assert_eq!(
        a.status.as_ref().and_then(|s| s.test_cluster.as_deref()),
        Some("c1"),
        "the job's status records its cluster"
    );
    let leased = clusters.get("c1").await.expect("c1");
    let lease = leased
        .status
        .as_ref()
        .and_then(|s| s.lease.clone())
        .expect("lease");
    assert_eq!(lease.holder, format!("{ns}/a"));
    assert_eq!(lease.holder_uid, a.uid());
    assert_eq!(
        leased.status.as_ref().and_then(|s| s.phase),
        Some(ClusterPhase::Leased)
    );
    assert!(
        leased
            .finalizers()
            .iter()
            .any(|f| f == "prow-operator.dev/lease"),
        "{:?}",
        leased.finalizers()
    );

    // The pod is given the cluster: name, region and a mounted copy of the kubeconfig.
    let pod = pods.get("a").await.expect("pod a");
    let env_a = env_of(&pod);
    assert_eq!(env_a["TEST_CLUSTER"], "c1");
    assert_eq!(env_a["TEST_CLUSTER_REGION"], "eu-west");
    assert_eq!(env_a["KUBECONFIG"], "/etc/test-cluster/kubeconfig");
    let copy = secrets
        .get("a-test-cluster")
        .await
        .expect("kubeconfig copy");
    assert_eq!(
        copy.data
            .as_ref()
            .and_then(|d| d.get("kubeconfig"))
            .map(|b| b.0.clone()),
        Some(KUBECONFIG.as_bytes().to_vec())
    );

    // Two more jobs wait in line, first come first served, and say so.
    jobs.create(&PostParams::default(), &pool_job("b"))
        .await
        .expect("b");
    tokio::time::sleep(Duration::from_millis(50)).await;
    jobs.create(&PostParams::default(), &pool_job("c"))
        .await
        .expect("c");
    let c = wait_for_job(&jobs, "c", WAIT, |j| {
        description(j).contains("number 2 in line")
    })
    .await
    .expect("c waits second");
    assert_eq!(c.state(), ProwJobState::Triggered);
    let b = wait_for_job(&jobs, "b", WAIT, |j| {
        description(j).contains("number 1 in line")
    })
    .await
    .expect("b is first in line");
    assert!(description(&b).contains("\"e2e\""), "names the pool");

    // a ends: its lease ends, its kubeconfig copy goes, and b (first in line) gets c1.
    driver.succeed("a").await.expect("a succeeds");
    wait_for_job(&jobs, "b", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("b starts on the freed cluster");
    assert_eq!(holder_of(&clusters, "c1").await, Some(format!("{ns}/b")));
    assert!(secrets
        .get_opt("a-test-cluster")
        .await
        .expect("get")
        .is_none());
    let c = jobs.get("c").await.expect("c");
    assert_eq!(c.state(), ProwJobState::Triggered, "c is still behind b");

    // The pool in the metrics: its clusters by phase, its line, the waits and the hand-off.
    let metrics = eventually("the pool in the metrics", WAIT, || async {
        let (_, body) = http_get(&operator.health, "/metrics")?;
        Ok(body
            .contains(&format!(
                "prow_operator_testcluster_waiting_jobs{{namespace=\"{ns}\",pool=\"e2e\"}} 1"
            ))
            .then_some(body))
    })
    .await
    .expect("metrics");
    assert!(
        metrics.contains(&format!(
            "prow_operator_testclusters{{namespace=\"{ns}\",pool=\"e2e\",phase=\"Leased\"}} 1"
        )),
        "{metrics}"
    );
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("prow_operator_testcluster_lease_wait_seconds_count"),
        2
    );
    assert_eq!(
        count("prow_operator_testcluster_handoff_seconds_count"),
        1,
        "a to b, with c still waiting"
    );

    // A deleted job's lease ends too, and c gets the cluster.
    jobs.delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    wait_for_job(&jobs, "c", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("c starts once b is gone");
    assert_eq!(holder_of(&clusters, "c1").await, Some(format!("{ns}/c")));

    // A delete that bypasses the webhook waits for the lease to end.
    clusters
        .delete("c1", &DeleteParams::default())
        .await
        .expect("delete c1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let going = clusters.get("c1").await.expect("still there while leased");
    assert!(going.metadata.deletion_timestamp.is_some());
    driver.succeed("c").await.expect("c succeeds");
    eventually("c1 gone once its lease ended", WAIT, || async {
        Ok(clusters.get_opt("c1").await?.is_none().then_some(()))
    })
    .await
    .expect("deleted");
}

#[tokio::test]
async fn the_line_survives_a_restart_and_clusters_out_of_service_are_never_leased() {
    let env = TestEnv::new("leaseline").await.expect("env");
    let (jobs, clusters) = (env.api::<ProwJob>(), env.api::<TestCluster>());
    create_cluster(&env, "off").await;
    clusters
        .patch_status(
            "off",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"phase": "Disabled",
                                                      "disabledReason": "broken"}})),
        )
        .await
        .expect("disable");
    let operator = start_operator(&env, &[]).expect("operator");
    for name in ["first", "second", "third"] {
        jobs.create(&PostParams::default(), &pool_job(name))
            .await
            .expect("job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_job(&jobs, "third", WAIT, |j| {
        description(j).contains("number 3 in line")
    })
    .await
    .expect("third in line");
    drop(operator);

    // Restarted, the operator rebuilds the line from the jobs alone; a new cluster goes to the
    // first in line.
    let _operator = start_operator(&env, &[]).expect("operator again");
    create_cluster(&env, "fresh").await;
    wait_for_job(&jobs, "first", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("first gets the new cluster");
    let second = wait_for_job(&jobs, "second", WAIT, |j| {
        description(j).contains("number 1 in line")
    })
    .await
    .expect("second moves up");
    assert_eq!(second.state(), ProwJobState::Triggered);
    assert_eq!(
        clusters
            .get("off")
            .await
            .expect("off")
            .status
            .and_then(|s| s.phase),
        Some(ClusterPhase::Disabled),
        "a disabled cluster is never leased"
    );
}

/// A TestCluster `name` of pool e2e whose kubeconfig Secret holds `kubeconfig`.
async fn cluster_with_kubeconfig(env: &TestEnv, name: &str, kubeconfig: &str) {
    create_test_cluster(env, name, "e2e", None, "kubeconfig", kubeconfig).await;
}

fn healthy(cluster: &TestCluster) -> Option<(String, String)> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")
        .map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn a_pool_with_a_health_check_leases_only_clusters_whose_api_answers() {
    let env = TestEnv::new("leasehealth").await.expect("env");
    let pool: prow_api::testclusterpool::TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "e2e"},
        "spec": {"healthCheck": {"timeout": "2s", "retryInterval": "2s"}},
    }))
    .expect("pool");
    env.api::<prow_api::testclusterpool::TestClusterPool>()
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    // The test's own API server plays the healthy cluster; nothing listens behind the other.
    let good = std::fs::read_to_string(&env.kubeconfig).expect("kubeconfig");
    let bad = "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: gone, user: u}\ncurrent-context: c\n";
    cluster_with_kubeconfig(&env, "a-broken", bad).await;
    cluster_with_kubeconfig(&env, "b-working", &good).await;
    let clusters = env.api::<TestCluster>();
    let jobs = env.api::<ProwJob>();
    let _operator = start_operator(&env, &[]).expect("operator");

    let broken = eventually("the broken cluster marked unhealthy", WAIT, || async {
        let c = clusters.get("a-broken").await?;
        Ok(healthy(&c).filter(|(status, _)| status == "False"))
    })
    .await
    .expect("unhealthy");
    assert!(broken.1.contains("/readyz"), "says why: {broken:?}");
    jobs.create(&PostParams::default(), &pool_job("j"))
        .await
        .expect("job");
    let j = wait_for_job(&jobs, "j", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("starts");
    assert_eq!(
        j.status.and_then(|s| s.test_cluster).as_deref(),
        Some("b-working"),
        "the cluster whose API answers, though the other sorts first"
    );
    let working = clusters.get("b-working").await.expect("cluster");
    assert_eq!(healthy(&working).map(|h| h.0).as_deref(), Some("True"));

    // Released, it is checked again before its next lease.
    PodDriver::new(env.client.clone(), &env.namespace)
        .succeed("j")
        .await
        .expect("succeed");
    eventually("checked again after the lease", WAIT, || async {
        let c = clusters.get("b-working").await?;
        let vacant = c.status.as_ref().and_then(|s| s.phase) == Some(ClusterPhase::Vacant);
        Ok((vacant && healthy(&c).map(|h| h.0).as_deref() == Some("True")).then_some(()))
    })
    .await
    .expect("healthy again");
}

/// The newest clean-up job of `cluster`, once there is one newer than `after` (by name).
async fn cleanup_job_of(jobs: &Api<ProwJob>, cluster: &str, after: Option<&str>) -> String {
    eventually("a clean-up job", WAIT, || async {
        let all = jobs
            .list(
                &kube::api::ListParams::default()
                    .labels(&format!("prow-operator.dev/cleans={cluster}")),
            )
            .await?;
        Ok(all
            .items
            .iter()
            .map(|j| j.name_any())
            .find(|n| Some(n.as_str()) != after))
    })
    .await
    .expect("clean-up job")
}

#[tokio::test]
async fn a_pool_cleans_a_cluster_between_leases_and_disables_it_when_the_clean_up_fails() {
    let env = TestEnv::new("leaseclean").await.expect("env");
    let pool: prow_api::testclusterpool::TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "e2e"},
        "spec": {"cleanupJob": {"type": "periodic", "agent": "kubernetes", "job": "clean-e2e",
                                "pod_spec": {"containers": [{"image": "busybox"}]}}},
    }))
    .expect("pool");
    env.api::<prow_api::testclusterpool::TestClusterPool>()
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    create_cluster(&env, "c1").await;
    let (jobs, clusters) = (env.api::<ProwJob>(), env.api::<TestCluster>());
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let _operator = start_operator(&env, &[]).expect("operator");
    for name in ["first", "second"] {
        jobs.create(&PostParams::default(), &pool_job(name))
            .await
            .expect("job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_job(&jobs, "first", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("first runs");
    driver.succeed("first").await.expect("first done");

    // The clean-up job runs against c1 before anyone else gets it.
    let cleanup = cleanup_job_of(&jobs, "c1", None).await;
    let cleaning = clusters.get("c1").await.expect("c1");
    assert_eq!(
        cleaning.status.as_ref().and_then(|s| s.phase),
        Some(ClusterPhase::Cleaning)
    );
    let second = jobs.get("second").await.expect("second");
    assert_eq!(
        second.state(),
        ProwJobState::Triggered,
        "waits for the clean-up"
    );
    wait_for_job(&jobs, &cleanup, WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("clean-up runs");
    let pod = env
        .api::<k8s_openapi::api::core::v1::Pod>()
        .get(&cleanup)
        .await
        .expect("pod");
    assert_eq!(env_of(&pod)["TEST_CLUSTER"], "c1");
    driver.succeed(&cleanup).await.expect("clean-up done");
    wait_for_job(&jobs, "second", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("second gets the cleaned cluster");

    // A failed clean-up takes the cluster out of the pool, saying why.
    driver.succeed("second").await.expect("second done");
    let failing = cleanup_job_of(&jobs, "c1", Some(&cleanup)).await;
    wait_for_job(&jobs, &failing, WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("clean-up runs");
    driver
        .finish(&failing, |_| 1)
        .await
        .expect("clean-up fails");
    let disabled = eventually("c1 disabled", WAIT, || async {
        let c = clusters.get("c1").await?;
        Ok(c.status.filter(|s| s.phase == Some(ClusterPhase::Disabled)))
    })
    .await
    .expect("disabled");
    let reason = disabled.disabled_reason.expect("reason");
    assert!(reason.contains(&failing), "{reason}");
}

/// Creates the TestClusterPool `e2e` with `spec`.
async fn create_pool(env: &TestEnv, spec: serde_json::Value) {
    let pool: prow_api::testclusterpool::TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "e2e"},
        "spec": spec,
    }))
    .expect("pool");
    env.api::<prow_api::testclusterpool::TestClusterPool>()
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
}

#[tokio::test]
async fn a_pool_below_its_maximum_runs_its_create_cluster_job_when_jobs_wait() {
    let env = TestEnv::new("leasegrow").await.expect("env");
    create_pool(
        &env,
        json!({"maxSize": 1,
               "createClusterJob": {"type": "periodic", "agent": "kubernetes", "job": "make-e2e",
                                    "pod_spec": {"containers": [{"image": "busybox"}]}}}),
    )
    .await;
    let jobs = env.api::<ProwJob>();
    let _operator = start_operator(&env, &[]).expect("operator");
    jobs.create(&PostParams::default(), &pool_job("waits"))
        .await
        .expect("job");
    let builders = || async {
        let all = jobs
            .list(
                &kube::api::ListParams::default()
                    .labels("prow-operator.dev/create-cluster-for=e2e"),
            )
            .await?;
        Ok::<_, anyhow::Error>(all.items)
    };
    let made = eventually("a create-cluster job", WAIT, || async {
        let all = builders().await?;
        Ok((!all.is_empty()).then_some(all))
    })
    .await
    .expect("the pool grows");
    assert_eq!(made.len(), 1);
    let env_of_job = container_env(made[0].spec.pod_spec.as_ref().expect("pod"), 0);
    assert_eq!(
        env_of_job.get("CLUSTER_POOL").map(String::as_str),
        Some("e2e"),
        "{env_of_job:?}"
    );
    // One at a time: another tick of the pool makes no second one.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(builders().await.expect("list").len(), 1);
    // The job built a cluster (here the test adds it): the waiting job gets it.
    create_cluster(&env, "built").await;
    let waited = wait_for_job(&jobs, "waits", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("leases the new cluster");
    assert_eq!(
        waited.status.and_then(|s| s.test_cluster).as_deref(),
        Some("built")
    );
}

#[tokio::test]
async fn a_pool_grows_with_a_run_of_the_definition_it_names() {
    use prow_api::jobdefinition::{JobDefinition, DEFINITION_LABEL};
    let env = TestEnv::new("leasegrowdef").await.expect("env");
    let def: JobDefinition = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
        "metadata": {"name": "make-e2e"},
        "spec": {"type": "postsubmit", "repo": "acme/clusters", "branches": ["^main$"],
                 "spec": {"containers": [{"image": "busybox", "command": ["make-cluster"]}]}},
    }))
    .expect("definition");
    let defs = env.api::<JobDefinition>();
    defs.create(&PostParams::default(), &def)
        .await
        .expect("definition");
    create_pool(
        &env,
        json!({"maxSize": 1, "createClusterDefinition": "make-e2e"}),
    )
    .await;
    let jobs = env.api::<ProwJob>();
    let _operator = start_operator(&env, &[]).expect("operator");
    jobs.create(&PostParams::default(), &pool_job("waits"))
        .await
        .expect("job");
    let made = eventually("a run of make-e2e", WAIT, || async {
        let all = jobs
            .list(&kube::api::ListParams::default().labels(&format!(
                "prow-operator.dev/create-cluster-for=e2e,{DEFINITION_LABEL}=make-e2e"
            )))
            .await?
            .items;
        Ok((!all.is_empty()).then_some(all))
    })
    .await
    .expect("the pool grows with the definition");
    assert_eq!(made.len(), 1);
    let run = &made[0];
    assert_eq!(run.spec.job, "make-e2e");
    assert_eq!(run.spec.refs.as_ref().expect("refs").base_ref, "main");
    let env_of_job = container_env(run.spec.pod_spec.as_ref().expect("pod"), 0);
    assert_eq!(
        env_of_job.get("CLUSTER_POOL").map(String::as_str),
        Some("e2e")
    );
    // The definition lists the run among its latest.
    let run_name = run.metadata.name.clone().expect("name");
    eventually("the definition's status", WAIT, || async {
        let status = defs.get("make-e2e").await?.status.unwrap_or_default();
        Ok(status
            .latest_runs
            .iter()
            .any(|r| r.name == run_name)
            .then_some(()))
    })
    .await
    .expect("recorded on the definition");
}
