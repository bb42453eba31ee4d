//! Build clusters on the local planes: the shared control plane is the operator's own
//! (`default`), the plane with the real node is `b1` (its pods really run), and a private plane
//! with the stand-in kubelet is `b2`. Jobs run where their `spec.cluster` says; a missing,
//! deleted, unreachable or under-privileged cluster shows on the job and the BuildCluster; a
//! SIGKILLed operator loses nothing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kind_tests::browser::Dashboard;
use kind_tests::build_clusters::{
    account_token, add_build_cluster, condition_message, kubeconfig_text, namespace_in,
    put_kubeconfig, wait_for_condition,
};
use kind_tests::control_plane::PrivateControlPlane;
use kind_tests::fixtures::create_review;
use kind_tests::https::post;
use kind_tests::operator::{description, eventually, start_operator, wait_for_job};
use kind_tests::process::{http_get, Running};
use kind_tests::webhook::start_webhook;
use kind_tests::{PodDriver, TestEnv};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prow_api::buildcluster::{BuildCluster, PERMISSIONS_OK, REACHABLE};
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

/// The image `control-plane.sh up --node` builds.
const TOOLBOX: &str = "prow-operator.local/toolbox:v1";
/// Pods on a real node take seconds to start and stop.
const WAIT: Duration = Duration::from_secs(90);
/// What a person waits for a failure to show: "within seconds".
const SHOWS: Duration = Duration::from_secs(15);

/// A plain job for `cluster` running `script` (on the real node's toolbox image; the stand-in
/// kubelet reads `sleep N` and `exit N` from it).
fn job(name: &str, cluster: &str, script: &str) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": format!("ci-{name}"),
                 "cluster": cluster,
                 "pod_spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                     "name": "test", "image": TOOLBOX, "imagePullPolicy": "Never",
                     "command": ["sh", "-c", script]}]}},
    }))
    .expect("job")
}

/// The stand-in kubelet on one plane, stopped when dropped.
struct FakeKubelet(Child);

impl FakeKubelet {
    fn start(kubeconfig: &std::path::Path) -> Self {
        let binary = kind_tests::process::binary("fake-kubelet").expect("fake-kubelet built");
        let child = Command::new(binary)
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-kubelet starts");
        Self(child)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn client_of(kubeconfig: &std::path::Path) -> Client {
    prow_runtime::client::client(Some(kubeconfig))
        .await
        .expect("client")
}

/// A private plane as a build cluster: the test's namespace there, and its admin kubeconfig.
async fn private_build_cluster(env: &TestEnv) -> (PrivateControlPlane, Client, String) {
    let plane = PrivateControlPlane::up().expect("a private plane");
    let client = client_of(&plane.kubeconfig()).await;
    namespace_in(&client, &env.namespace, false)
        .await
        .expect("namespace");
    let text = kubeconfig_text(&plane.kubeconfig(), None).expect("kubeconfig");
    (plane, client, text)
}

/// The operator reading BuildClusters from the test's namespace, with `extra` flags.
fn operator(env: &TestEnv, extra: &[&str]) -> Running {
    let namespace = format!("--build-cluster-namespace={}", env.namespace);
    let mut args = vec![namespace.as_str()];
    args.extend_from_slice(extra);
    start_operator(env, &args).expect("operator")
}

async fn ended(jobs: &Api<ProwJob>, name: &str, within: Duration) -> ProwJob {
    wait_for_job(jobs, name, within, ProwJob::is_complete)
        .await
        .expect("the job ends")
}

/// Waits until BuildCluster `b2` is Reachable, then runs a job `name` there to success.
async fn succeeds_in_b2(env: &TestEnv, name: &str) {
    wait_for_condition(env, "b2", REACHABLE, "True", SHOWS)
        .await
        .expect("b2 reachable");
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job(name, "b2", "sleep 1"))
        .await
        .expect("job");
    let end = ended(&jobs, name, WAIT).await;
    assert_eq!(
        end.state(),
        ProwJobState::Success,
        "{name}: {:?}",
        end.status
    );
}

/// The dashboard shows the pods of the runs `on-default`, `on-b1` and `on-b2` of the first
/// test, each read in the cluster it ran in, and the log of b1's (the real node's) pod.
fn the_dashboard_reads_each_pod_in_its_cluster(env: &TestEnv) {
    let ns = &env.namespace;
    let flag = format!("--build-cluster-namespace={ns}");
    let dashboard = Dashboard::start(env, None, &[&flag]).expect("dashboard");
    let address = &dashboard.process.health;
    for alias in ["default", "b1", "b2"] {
        let (code, page) = http_get(address, &format!("/jobs/{ns}/on-{alias}")).expect("page");
        assert_eq!(code, 200, "{page}");
        assert!(
            page.contains(&format!("on-{alias} (Succeeded)")),
            "the page of on-{alias} shows its pod where it ran: {page}"
        );
    }
    let (code, log) = http_get(address, &format!("/jobs/{ns}/on-b1?raw")).expect("log");
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("running in b1"), "b1's pod log: {log}");
}

/// Whether `pods` (of one cluster, in the test's namespace) has a pod `name`.
async fn has_pod(pods: &Api<Pod>, name: &str) -> bool {
    pods.get_opt(name).await.expect("read pods").is_some()
}

#[tokio::test]
async fn jobs_run_in_the_build_cluster_they_name_and_a_sigkill_loses_nothing() {
    let Some(node_kubeconfig) = std::env::var_os(kind_tests::env::NODE_KUBECONFIG_VAR) else {
        // Says why, and fails under CI=true: the tier cannot be skipped there.
        assert!(TestEnv::on_node("bc").await.expect("env").is_none());
        return;
    };
    let node_kubeconfig = PathBuf::from(node_kubeconfig);
    let env = TestEnv::new("bc-run").await.expect("env");
    let ns = env.namespace.clone();
    let node = client_of(&node_kubeconfig).await;
    namespace_in(&node, &ns, true)
        .await
        .expect("namespace on b1");
    let (b2, b2_client, b2_text) = private_build_cluster(&env).await;
    let _kubelet = FakeKubelet::start(&b2.kubeconfig());
    let b1_text = kubeconfig_text(&node_kubeconfig, None).expect("kubeconfig");
    add_build_cluster(&env, "b1", &b1_text).await.expect("b1");
    add_build_cluster(&env, "b2", &b2_text).await.expect("b2");
    let mut first = Some(operator(&env, &[]));

    for alias in ["b1", "b2"] {
        let bc = wait_for_condition(&env, alias, REACHABLE, "True", SHOWS)
            .await
            .expect("reachable");
        let version = bc
            .status
            .as_ref()
            .and_then(|s| s.kubernetes_version.clone());
        assert_eq!(version.as_deref(), Some("v1.20.2"), "{alias}");
        let bc = wait_for_condition(&env, alias, PERMISSIONS_OK, "True", SHOWS)
            .await
            .expect("rights");
        assert!(
            condition_message(&bc, PERMISSIONS_OK).contains(&ns),
            "checked in the pods' namespace: {:?}",
            bc.status
        );
    }
    let table = env
        .kubectl(&["get", "buildclusters"])
        .expect("kubectl get buildclusters");
    assert!(
        table.contains("REACHABLE") && table.contains("PERMISSIONS") && table.contains("v1.20.2"),
        "{table}"
    );

    let jobs = env.api::<ProwJob>();
    let clusters = [
        ("default", env.api::<Pod>()),
        ("b1", Api::<Pod>::namespaced(node.clone(), &ns)),
        ("b2", Api::<Pod>::namespaced(b2_client.clone(), &ns)),
    ];
    let driver = PodDriver::new(env.client.clone(), &ns);
    for (alias, _) in &clusters {
        let cluster = if *alias == "default" { "" } else { alias };
        let script = format!("echo running in {alias}; sleep 1");
        jobs.create(
            &PostParams::default(),
            &job(&format!("on-{alias}"), cluster, &script),
        )
        .await
        .expect("job");
    }
    // The operator's own cluster has no kubelet: the test plays it.
    kind_tests::operator::finish_job(&driver, &jobs, "on-default", 0, WAIT)
        .await
        .expect("default runs");
    for (alias, pods) in &clusters {
        let name = format!("on-{alias}");
        let done = ended(&jobs, &name, WAIT).await;
        assert_eq!(
            done.state(),
            ProwJobState::Success,
            "{name}: {:?}",
            done.status
        );
        for (other, other_pods) in &clusters {
            assert_eq!(
                has_pod(other_pods, &name).await,
                other == alias,
                "the pod of {name} is in {alias} only (looked in {other})"
            );
        }
        assert!(has_pod(pods, &name).await);
    }
    let on_node = clusters[1].1.get("on-b1").await.expect("pod on b1");
    assert!(
        on_node.spec.and_then(|s| s.node_name).is_some(),
        "b1's pod really ran on its node"
    );
    the_dashboard_reads_each_pod_in_its_cluster(&env);

    // SIGKILL while jobs start in all three clusters: nothing lost, no second pod.
    for (alias, _) in &clusters {
        let cluster = if *alias == "default" { "" } else { alias };
        jobs.create(
            &PostParams::default(),
            &job(&format!("kill-{alias}"), cluster, "sleep 4"),
        )
        .await
        .expect("job");
    }
    wait_for_job(&jobs, "kill-b1", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("b1's job started");
    let pid = first.as_ref().expect("running").pid();
    // SAFETY: a plain kill(2) of the child this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    drop(first.take());
    let mut before = Vec::new();
    for (alias, pods) in &clusters {
        let uid = pods
            .get_opt(&format!("kill-{alias}"))
            .await
            .expect("read")
            .and_then(|p| p.uid());
        before.push(uid);
    }
    let _operator = operator(&env, &[]);
    kind_tests::operator::finish_job(&driver, &jobs, "kill-default", 0, WAIT)
        .await
        .expect("default runs");
    for ((alias, pods), uid) in clusters.iter().zip(before) {
        let name = format!("kill-{alias}");
        let done = ended(&jobs, &name, WAIT).await;
        assert_eq!(
            done.state(),
            ProwJobState::Success,
            "{name}: {:?}",
            done.status
        );
        let revived = done.status.as_ref().map_or(0, |s| s.pod_revival_count);
        assert_eq!(revived, 0, "{name}");
        let pod = pods.get(&name).await.expect("its pod");
        if let Some(uid) = uid {
            assert_eq!(pod.uid(), Some(uid), "{name}: the pod from before the kill");
        }
    }
}

#[tokio::test]
async fn a_restarted_operator_lists_a_build_cluster_without_rewriting_its_running_jobs() {
    let env = TestEnv::new("bc-restart").await.expect("env");
    let (b2, _b2_client, b2_text) = private_build_cluster(&env).await;
    let _kubelet = FakeKubelet::start(&b2.kubeconfig());
    add_build_cluster(&env, "b2", &b2_text).await.expect("b2");
    let alone = ["--leader-election=false"];
    let first = operator(&env, &alone);
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job("long", "b2", "sleep 12"))
        .await
        .expect("job");
    wait_for_job(&jobs, "long", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("its pod runs in b2");

    // Every description the job has from here on.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = said.clone();
    let config = kube::runtime::watcher::Config::default().fields("metadata.name=long");
    let watched = jobs.clone();
    let watch = tokio::spawn(async move {
        use futures::StreamExt;
        let mut events = kube::runtime::watcher(watched, config).boxed();
        while let Some(event) = events.next().await {
            if let Ok(
                kube::runtime::watcher::Event::Apply(j)
                | kube::runtime::watcher::Event::InitApply(j),
            ) = event
            {
                record.lock().expect("lock").push(description(&j));
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The new operator lists b2's pods only after its own caches: meanwhile the job waits for
    // that list without a status write ("Waiting for build cluster ..." is for outages).
    drop(first);
    let _second = operator(&env, &alone);
    let done = ended(&jobs, "long", WAIT).await;
    watch.abort();
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);
    assert_eq!(
        done.status.as_ref().map_or(0, |s| s.pod_revival_count),
        0,
        "the pod from before the restart"
    );
    let said = said.lock().expect("lock").clone();
    assert!(!said.is_empty(), "the watch saw the job");
    assert!(
        said.iter()
            .all(|d| !d.starts_with("Waiting for build cluster")),
        "no waiting written across the restart: {said:?}"
    );
}

#[tokio::test]
async fn an_unreachable_build_cluster_holds_up_only_its_own_jobs_until_their_timeout() {
    let env = TestEnv::new("bc-down").await.expect("env");
    let (b2, _b2_client, b2_text) = private_build_cluster(&env).await;
    let mut kubelet = FakeKubelet::start(&b2.kubeconfig());
    add_build_cluster(&env, "b2", &b2_text).await.expect("b2");
    let _operator = operator(&env, &["--pod-unscheduled-timeout=6s"]);
    succeeds_in_b2(&env, "warm").await;
    let jobs = env.api::<ProwJob>();

    b2.stop_apiserver().expect("outage");
    let down = wait_for_condition(&env, "b2", REACHABLE, "False", SHOWS)
        .await
        .expect("the outage shows on the BuildCluster");
    assert!(
        !condition_message(&down, REACHABLE).is_empty(),
        "says why: {:?}",
        down.status
    );
    let created = Instant::now();
    jobs.create(&PostParams::default(), &job("stuck", "b2", "sleep 1"))
        .await
        .expect("job");
    jobs.create(&PostParams::default(), &job("meanwhile", "", "sleep 1"))
        .await
        .expect("job");
    // The other cluster goes on: its job starts while b2 is down.
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let done = kind_tests::operator::finish_job(&driver, &jobs, "meanwhile", 0, SHOWS)
        .await
        .expect("default is not held up");
    assert_eq!(done.state(), ProwJobState::Success);
    let waiting = wait_for_job(&jobs, "stuck", SHOWS, |j| {
        description(j).starts_with("Waiting for build cluster \"b2\"")
    })
    .await
    .expect("the job says what it waits for");
    assert_eq!(waiting.state(), ProwJobState::Triggered);
    let stuck = ended(&jobs, "stuck", SHOWS).await;
    let waited = created.elapsed();
    assert_eq!(stuck.state(), ProwJobState::Error, "{:?}", stuck.status);
    assert!(
        description(&stuck).contains("\"b2\" was unreachable for 6s"),
        "{}",
        description(&stuck)
    );
    assert!(waited >= Duration::from_secs(5), "ended after {waited:?}");

    b2.start_apiserver().expect("back");
    // The stand-in kubelet's own watch backs off through the outage for longer than the
    // operator's: a fresh one, so that the 6 s scheduling timeout measures the operator.
    drop(kubelet);
    kubelet = FakeKubelet::start(&b2.kubeconfig());
    succeeds_in_b2(&env, "again").await;
    drop(kubelet);
}

#[tokio::test]
async fn missing_clusters_and_too_few_rights_show_on_the_job_and_the_build_cluster() {
    let env = TestEnv::new("bc-bad").await.expect("env");
    let ns = env.namespace.clone();
    let (b2, b2_client, b2_admin) = private_build_cluster(&env).await;
    // A ServiceAccount there that may only read pods.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }))
    .expect("role");
    Api::<Role>::namespaced(b2_client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let token = account_token(&b2_client, &ns, "reader")
        .await
        .expect("token");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(b2_client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let limited = kubeconfig_text(&b2.kubeconfig(), Some(&token)).expect("kubeconfig");
    add_build_cluster(&env, "b2", &limited).await.expect("b2");
    // A cluster nobody answers for: a closed port on loopback.
    let closed = kind_tests::process::free_port().expect("port");
    let nowhere = b2_admin.replace(
        &server_of(&b2_admin),
        &format!("https://127.0.0.1:{closed}"),
    );
    add_build_cluster(&env, "gone", &nowhere)
        .await
        .expect("gone");
    // A ServiceAccount there with no rights at all: the pods' list is refused.
    let nobody = account_token(&b2_client, &ns, "nobody")
        .await
        .expect("token");
    let blind = kubeconfig_text(&b2.kubeconfig(), Some(&nobody)).expect("kubeconfig");
    add_build_cluster(&env, "blind", &blind)
        .await
        .expect("blind");
    let _operator = operator(&env, &[]);

    // Too few rights: named.
    let poor = wait_for_condition(&env, "b2", PERMISSIONS_OK, "False", SHOWS)
        .await
        .expect("rights checked");
    let message = condition_message(&poor, PERMISSIONS_OK);
    assert!(message.contains("create pods"), "{message}");
    assert!(message.contains("delete pods"), "{message}");
    assert!(
        !message.contains("watch pods"),
        "the Role grants watch: {message}"
    );
    assert_eq!(
        poor.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == REACHABLE))
            .map(|c| c.status.as_str()),
        Some("True")
    );
    // Rotated to a kubeconfig of the ServiceAccount the chart's manifest grants: taken up
    // without a restart, and the manifest's rights are enough.
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/prow-operator/files/build-cluster-access.yaml"),
    )
    .expect("the chart's manifest")
    .replace("namespace: test-pods", &format!("namespace: {ns}"));
    let file = std::env::temp_dir().join(format!("{ns}-access.yaml"));
    std::fs::write(&file, manifest).expect("write");
    let mut kubectl = Command::new("kubectl");
    kubectl
        .arg("--kubeconfig")
        .arg(b2.kubeconfig())
        .arg("apply")
        .arg("-f")
        .arg(&file);
    kind_tests::process::stdout_of(kubectl, "kubectl apply the access manifest in b2")
        .expect("applied");
    let _ = std::fs::remove_file(&file);
    let granted = kind_tests::build_clusters::token_of(&b2_client, &ns, "prow-operator")
        .await
        .expect("token");
    let granted = kubeconfig_text(&b2.kubeconfig(), Some(&granted)).expect("kubeconfig");
    put_kubeconfig(&env, "b2", &granted).await.expect("rotate");
    wait_for_condition(&env, "b2", PERMISSIONS_OK, "True", SHOWS)
        .await
        .expect("the rotated kubeconfig is used");

    let jobs = env.api::<ProwJob>();
    // An alias nothing names, past admission: the job ends at once, naming it.
    let started = Instant::now();
    jobs.create(&PostParams::default(), &job("lost", "nowhere", "true"))
        .await
        .expect("job");
    let lost = ended(&jobs, "lost", SHOWS).await;
    assert_eq!(lost.state(), ProwJobState::Error);
    assert!(
        description(&lost).contains("Build cluster \"nowhere\" does not exist"),
        "{}",
        description(&lost)
    );
    println!("an unknown alias ended its job in {:?}", started.elapsed());

    // A job of a cluster that refuses the operator its pods' list waits, saying the answer.
    jobs.create(&PostParams::default(), &job("unlisted", "blind", "true"))
        .await
        .expect("job");
    let unlisted = wait_for_job(&jobs, "unlisted", SHOWS, |j| {
        description(j).starts_with("Waiting for build cluster \"blind\": listing its job pods:")
    })
    .await
    .expect("the job says the list was refused");
    assert!(
        description(&unlisted).contains("forbidden"),
        "{}",
        description(&unlisted)
    );

    // A job of the unreachable cluster waits, saying so; its BuildCluster deleted, it ends.
    jobs.create(&PostParams::default(), &job("orphan", "gone", "true"))
        .await
        .expect("job");
    wait_for_job(&jobs, "orphan", SHOWS, |j| {
        description(j).starts_with("Waiting for build cluster \"gone\"")
    })
    .await
    .expect("waits");
    let gone = wait_for_condition(&env, "gone", REACHABLE, "False", SHOWS)
        .await
        .expect("unreachable shows");
    assert!(!condition_message(&gone, REACHABLE).is_empty());
    env.api::<BuildCluster>()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    let deleted = Instant::now();
    let orphan = ended(&jobs, "orphan", SHOWS).await;
    assert_eq!(orphan.state(), ProwJobState::Error);
    assert!(
        description(&orphan).contains("\"gone\" does not exist"),
        "{}",
        description(&orphan)
    );
    println!(
        "a deleted BuildCluster ended its job in {:?}",
        deleted.elapsed()
    );

    // Admission: an unknown alias is refused at spec.cluster; b2 and default pass.
    let webhook_args = [format!("--build-cluster-namespace={ns}")];
    let webhook_args: Vec<&str> = webhook_args.iter().map(String::as_str).collect();
    let webhook = start_webhook(&env, &webhook_args).expect("webhook");
    let mut stream = webhook.connect().await.expect("tls");
    for (cluster, allowed) in [("nowhere", false), ("b2", true), ("", true)] {
        let object: Value = serde_json::to_value(job("admitted", cluster, "true")).expect("json");
        let review = serde_json::to_vec(&create_review(&ns, object)).expect("json");
        let (code, body) = post(&mut stream, "/validate/prowjobs", &review)
            .await
            .expect("answer");
        assert_eq!(code, 200);
        let answer: Value = serde_json::from_slice(&body).expect("review");
        assert_eq!(
            answer["response"]["allowed"], allowed,
            "{cluster}: {answer}"
        );
        if !allowed {
            let message = answer["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(
                message.contains("spec.cluster: build cluster \"nowhere\" does not exist"),
                "{message}"
            );
        }
    }
    // The deep check dry-runs a job's pod in the cluster it runs in: a quota of no pods in
    // b2 refuses b2's job (by b2's own message), not the same job for the operator's cluster.
    // (The planes run no quota controller: the quota's status is written here.)
    let quotas =
        Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(b2_client.clone(), &ns);
    let quota = serde_json::from_value(json!({
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}},
    }))
    .expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota in b2");
    let status = json!({"status": {"hard": {"pods": "0"}, "used": {"pods": "0"}}});
    quotas
        .patch_status(
            "no-pods",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("quota status");
    for (cluster, allowed) in [("b2", false), ("", true)] {
        let object: Value = serde_json::to_value(job("checked", cluster, "true")).expect("json");
        let review = serde_json::to_vec(&create_review(&ns, object)).expect("json");
        let (_, body) = post(&mut stream, "/validate/prowjobs", &review)
            .await
            .expect("answer");
        let answer: Value = serde_json::from_slice(&body).expect("review");
        assert_eq!(
            answer["response"]["allowed"], allowed,
            "{cluster}: {answer}"
        );
        if !allowed {
            let message = answer["response"]["status"]["message"].to_string();
            assert!(
                message.contains(&format!("in namespace {ns} of build cluster b2"))
                    && message.contains("exceeded quota: no-pods"),
                "{message}"
            );
        }
    }
}

/// The `server:` of a kubeconfig's text.
fn server_of(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server")
        .trim()
        .to_string()
}

#[tokio::test]
async fn limits_count_every_cluster_and_a_jobs_secrets_and_budget_go_to_its_cluster() {
    let env = TestEnv::new("bc-cap").await.expect("env");
    let ns = env.namespace.clone();
    let (b2, b2_client, b2_text) = private_build_cluster(&env).await;
    add_build_cluster(&env, "b2", &b2_text).await.expect("b2");
    // A test cluster whose kubeconfig the job's pod gets: the copy goes where the pod is.
    kind_tests::fixtures::create_test_cluster(&env, "tc1", "e2e", None, "kubeconfig", "kc-text")
        .await;
    // Copies of jobs that no longer exist: one of this operator's jobs' namespace, one of
    // another operator's that shares the pod namespace. Only the first is this one's to tidy.
    let secrets_b2: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(b2_client.clone(), &ns);
    for (name, jobs_namespace) in [("stray-ours", ns.as_str()), ("stray-theirs", "elsewhere")] {
        let stray = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "created-by-prow": "true",
                "prow-operator.dev/test-cluster-holder": "no-such-job-uid",
                "prow-operator.dev/test-cluster-holder-namespace": jobs_namespace}},
            "data": {"kubeconfig": "a2M="},
        }))
        .expect("secret");
        secrets_b2
            .create(&PostParams::default(), &stray)
            .await
            .expect("stray copy");
    }
    let _operator = operator(&env, &["--max-concurrency=1"]);
    wait_for_condition(&env, "b2", REACHABLE, "True", SHOWS)
        .await
        .expect("reachable");
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job("first", "", "sleep 1"))
        .await
        .expect("job");
    wait_for_job(&jobs, "first", SHOWS, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("first starts");
    let mut second = job("second", "b2", "sleep 1");
    second.metadata.labels = Some(
        [(
            prow_api::labels::TEST_CLUSTER_POOL.to_string(),
            "e2e".to_string(),
        )]
        .into(),
    );
    jobs.create(&PostParams::default(), &second)
        .await
        .expect("job");
    // The global cap of 1 holds across clusters: b2's job waits for default's.
    let waiting = wait_for_job(&jobs, "second", SHOWS, |j| !description(j).is_empty())
        .await
        .expect("says why");
    assert_eq!(
        waiting.state(),
        ProwJobState::Triggered,
        "{:?}",
        waiting.status
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        jobs.get("second").await.expect("job").state(),
        ProwJobState::Triggered,
        "never overshot"
    );
    let pods_b2: Api<Pod> = Api::namespaced(b2_client.clone(), &ns);
    assert!(!has_pod(&pods_b2, "second").await);

    let driver = PodDriver::new(env.client.clone(), &ns);
    driver.succeed("first").await.expect("first ends");
    let started = wait_for_job(&jobs, "second", SHOWS, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("second starts once first ended");
    assert_eq!(
        started
            .status
            .as_ref()
            .and_then(|s| s.test_cluster.as_deref()),
        Some("tc1")
    );
    let pod = pods_b2.get("second").await.expect("the pod is in b2");
    // The kubeconfig copy the pod mounts is beside it in b2, not in the operator's cluster.
    let copy = prow_api::pool::kubeconfig_copy_name("second");
    assert!(secrets_b2.get_opt(&copy).await.expect("read").is_some());
    assert!(env
        .api::<k8s_openapi::api::core::v1::Secret>()
        .get_opt(&copy)
        .await
        .expect("read")
        .is_none());
    let mounts = serde_json::to_string(&pod.spec).expect("json");
    assert!(mounts.contains(&copy), "the pod mounts the copy: {mounts}");
    // So is the eviction budget.
    let mut kubectl = Command::new("kubectl");
    kubectl.arg("--kubeconfig").arg(b2.kubeconfig()).args([
        "--namespace",
        &ns,
        "get",
        "poddisruptionbudgets",
        "-o",
        "name",
    ]);
    let budgets = kind_tests::process::stdout_of(kubectl, "kubectl get pdb in b2").expect("b2");
    assert!(budgets.contains("prow-job-pods"), "{budgets}");
    // And the Event on the job says where the pod is.
    let events = env
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=second",
        ])
        .expect("events");
    assert!(events.contains("in build cluster b2"), "{events}");
    // The job's Events follow it to b2: recorded on its pod there too, naming the job.
    let wanted = format!("ProwJob {ns}/second: Pod second created for build");
    let on_pod = eventually("the job's Event on its pod in b2", SHOWS, || async {
        let mut kubectl = Command::new("kubectl");
        kubectl.arg("--kubeconfig").arg(b2.kubeconfig()).args([
            "--namespace",
            &ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Pod,involvedObject.name=second",
        ]);
        let events = kind_tests::process::stdout_of(kubectl, "kubectl get events in b2")?;
        Ok(events.contains(&wanted).then_some(events))
    })
    .await
    .expect("the Event is on the pod in b2");
    assert!(on_pod.contains("Pending"), "{on_pod}");
    // Deleted while it holds the lease, the job leaves no credentials behind: the lease is
    // reclaimed and its kubeconfig copy deleted in b2, where the job's pod was.
    jobs.delete("second", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the copy in b2 deleted", SHOWS, || async {
        Ok(secrets_b2.get_opt(&copy).await?.is_none().then_some(()))
    })
    .await
    .expect("no copy left");

    // Deleted while b2 is down, a job's copy there outlives the reclaimed lease only until b2
    // is back (and the copy is past its 30 s grace).
    let mut third = second.clone();
    third.metadata.name = Some("third".into());
    jobs.create(&PostParams::default(), &third)
        .await
        .expect("job");
    let copy = prow_api::pool::kubeconfig_copy_name("third");
    eventually("the copy for third in b2", SHOWS, || async {
        Ok(secrets_b2.get_opt(&copy).await?.map(|_| ()))
    })
    .await
    .expect("copied");
    b2.stop_apiserver().expect("outage");
    wait_for_condition(&env, "b2", REACHABLE, "False", SHOWS)
        .await
        .expect("b2 down");
    jobs.delete("third", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("third gone and tc1 free", SHOWS, || async {
        let gone = jobs.get_opt("third").await?.is_none();
        let tc1 = env.api::<prow_api::TestCluster>().get("tc1").await?;
        let free = tc1.status.and_then(|s| s.lease).is_none();
        Ok((gone && free).then_some(()))
    })
    .await
    .expect("the lease is reclaimed while b2 is down");
    b2.start_apiserver().expect("back");
    let started = Instant::now();
    eventually(
        "the copy left in b2 deleted once b2 is back",
        WAIT,
        || async {
            // Until b2 answers again, a failed read is "not yet".
            Ok(matches!(secrets_b2.get_opt(&copy).await, Ok(None)).then_some(()))
        },
    )
    .await
    .expect("the left-over copy is deleted");
    println!(
        "left-over copy deleted {:?} after b2 came back",
        started.elapsed()
    );
    eventually(
        "the stray copy of this operator's namespace deleted",
        WAIT,
        || async { Ok(matches!(secrets_b2.get_opt("stray-ours").await, Ok(None)).then_some(())) },
    )
    .await
    .expect("tidied");
    assert!(
        secrets_b2
            .get_opt("stray-theirs")
            .await
            .expect("read")
            .is_some(),
        "another operator's copy is not this one's to delete"
    );
    drop(b2);
}

#[tokio::test]
async fn retention_deletes_pods_in_the_build_cluster_they_are_in() {
    let env = TestEnv::new("bc-sweep").await.expect("env");
    let (b2, b2_client, b2_text) = private_build_cluster(&env).await;
    let _kubelet = FakeKubelet::start(&b2.kubeconfig());
    add_build_cluster(&env, "b2", &b2_text).await.expect("b2");
    let _operator = operator(
        &env,
        &[
            "--sweep-interval=1s",
            "--terminated-pod-ttl=4s",
            "--orphan-pod-grace=1s",
        ],
    );
    succeeds_in_b2(&env, "swept").await;
    let jobs = env.api::<ProwJob>();
    let b2_pods: Api<Pod> = Api::namespaced(b2_client, &env.namespace);
    assert!(
        has_pod(&b2_pods, "swept").await,
        "the finished job's pod is kept for its TTL"
    );
    // A pod in b2 whose job never existed: an orphan there.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"created-by-prow": "true"},
                     "annotations": {"prow-operator.dev/job-namespace": env.namespace,
                                     "prow-operator.dev/job-uid": "gone"}},
        "spec": {"containers": [{"name": "test", "image": TOOLBOX, "command": ["sleep", "60"]}]},
    }))
    .expect("pod");
    b2_pods
        .create(&PostParams::default(), &orphan)
        .await
        .expect("orphan");

    eventually("b2's pods swept", SHOWS, || async {
        let left: Vec<String> = b2_pods
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        Ok(left.is_empty().then_some(()))
    })
    .await
    .expect("the finished job's pod after its TTL and the orphan are deleted in b2");
    let job = jobs.get("swept").await.expect("the job stays");
    assert_eq!(job.state(), ProwJobState::Success);
}
