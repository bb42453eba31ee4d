//! The real-node tier: jobs run as real containers on a kubelet (Docker's engine), so every
//! outcome here is the kubelet's, not a test's patch of pod status. Runs against the control
//! plane of `control-plane.sh up DIR --node` (`PROW_TEST_NODE_KUBECONFIG`); skipped with one
//! line where there is none, and failed under `CI=true`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::pods::PodTracker;
use kind_tests::webhook::{register, start_webhook};
use kind_tests::TestEnv;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use prow_api::{Preset, ProwJob, ProwJobState};
use serde_json::{json, Value};

/// The image `control-plane.sh up --node` builds: busybox, kubectl and git.
const TOOLBOX: &str = "prow-operator.local/toolbox:v1";
/// Pods on a real node take seconds to start and stop.
const WAIT: Duration = Duration::from_secs(90);

fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": TOOLBOX, "imagePullPolicy": "Never",
           "command": ["sh", "-c", script]})
}

fn job(name: &str, containers: Vec<Value>, decoration: Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": format!("ci-{name}"),
                 "decoration_config": decoration,
                 "pod_spec": {"containers": containers, "terminationGracePeriodSeconds": 2}},
    }))
    .expect("job")
}

fn kubectl_logs(env: &TestEnv, pod: &str, container: &str) -> String {
    env.kubectl(&["logs", pod, "-c", container])
        .unwrap_or_else(|e| format!("<no log: {e}>"))
}

/// Waits until the job `name` is complete.
async fn ended(jobs: &Api<ProwJob>, name: &str) -> ProwJob {
    wait_for_job(jobs, name, WAIT, ProwJob::is_complete)
        .await
        .expect("the job ends")
}

/// Creates `job` and waits until it is complete.
async fn run_to_end(jobs: &Api<ProwJob>, job: &ProwJob) -> ProwJob {
    jobs.create(&PostParams::default(), job)
        .await
        .expect("job created");
    ended(jobs, job.metadata.name.as_deref().unwrap_or_default()).await
}

/// The operator for a real-node test (deleting pods without a grace period: the API object
/// goes at once and the kubelet kills the container).
fn operator(env: &TestEnv, extra: &[&str]) -> kind_tests::process::Running {
    start_operator(env, extra).expect("operator")
}

/// Names of the running Docker containers of a pod's container `container`, as the kubelet
/// names them (`k8s_CONTAINER_POD_NAMESPACE_...`).
fn docker_containers(env: &TestEnv, pod: &str, container: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name=k8s_{container}_{pod}_{}_", env.namespace),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn real_exit_codes_decide_success_and_failure_and_the_logs_say_why() {
    let Some(env) = TestEnv::on_node("node-exit").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let passing = job(
        "passes",
        vec![container("test", "echo 'all 10 tests passed'; exit 0")],
        json!({}),
    );
    let failing = job(
        "fails",
        vec![container(
            "test",
            "echo 'FAIL: 3 of 10 tests failed (TestLease, TestHold, TestExpiry)'; exit 3",
        )],
        json!({}),
    );
    for j in [&passing, &failing] {
        jobs.create(&PostParams::default(), j).await.expect("job");
    }
    let passed = ended(&jobs, "passes").await;
    assert_eq!(passed.state(), ProwJobState::Success, "{:?}", passed.status);
    let failed = ended(&jobs, "fails").await;
    assert_eq!(failed.state(), ProwJobState::Failure, "{:?}", failed.status);
    assert_eq!(
        failed.status.as_ref().map(|s| s.description.as_str()),
        Some("Job failed: the test exited with code 3"),
        "decorated: the entrypoint says why"
    );
    let pod = env.api::<Pod>().get("fails").await.expect("pod kept");
    let code = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == "test"))
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code);
    assert_eq!(code, Some(3), "the container's real exit code");
    let log = kubectl_logs(&env, "fails", "test");
    assert!(log.contains("FAIL: 3 of 10 tests failed"), "{log}");
    assert!(kubectl_logs(&env, "passes", "test").contains("all 10 tests passed"));
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed_and_the_job_errors() {
    let Some(env) = TestEnv::on_node("node-oom").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let mut hungry = container(
        "test",
        // 200 MB in a shell variable, against a 32 MiB limit.
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    hungry["resources"] = json!({"limits": {"memory": "32Mi"}, "requests": {"memory": "32Mi"}});
    let done = run_to_end(&jobs, &job("hungry", vec![hungry], json!({}))).await;
    assert_eq!(done.state(), ProwJobState::Error, "{:?}", done.status);
    let description = done.status.map(|s| s.description).unwrap_or_default();
    assert!(description.contains("OOM killed"), "{description}");
}

#[tokio::test]
async fn aborting_a_running_job_really_kills_its_container() {
    let Some(env) = TestEnv::on_node("node-abort").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    let _operator = operator(&env, &[]);
    jobs.create(
        &PostParams::default(),
        &job(
            "long",
            vec![container("test", "echo started; sleep 600")],
            json!({}),
        ),
    )
    .await
    .expect("job");
    running(&pods, "long").await;
    assert_eq!(
        docker_containers(&env, "long", "test").len(),
        1,
        "the container runs on the engine"
    );
    jobs.patch_status(
        "long",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"state": "aborted", "description": "Stopped by a person."}}),
        ),
    )
    .await
    .expect("aborted");
    let done = ended(&jobs, "long").await;
    assert_eq!(done.state(), ProwJobState::Aborted);
    eventually("the pod and its container gone", WAIT, || {
        let pods = pods.clone();
        let env = &env;
        async move {
            let gone = pods.get_opt("long").await?.is_none()
                && docker_containers(env, "long", "test").is_empty();
            Ok(gone.then_some(()))
        }
    })
    .await
    .expect("killed");
}

#[tokio::test]
async fn a_job_that_really_sleeps_past_its_running_timeout_is_aborted() {
    let Some(env) = TestEnv::on_node("node-timeout").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let done = run_to_end(
        &jobs,
        &job(
            "sleepy",
            vec![container("test", "sleep 600")],
            json!({"pod_running_timeout": "5s"}),
        ),
    )
    .await;
    assert_eq!(done.state(), ProwJobState::Aborted, "{:?}", done.status);
    assert_eq!(
        done.status.map(|s| s.description).as_deref(),
        Some("Pod running timeout.")
    );
}

#[tokio::test]
async fn a_job_with_several_containers_fails_when_one_of_them_fails() {
    let Some(env) = TestEnv::on_node("node-multi").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let containers = vec![
        container("unit", "echo unit ok; exit 0"),
        container("lint", "echo 'lint: 2 problems'; exit 1"),
    ];
    let done = run_to_end(&jobs, &job("multi", containers, json!({"timeout": "10m"}))).await;
    assert_eq!(done.state(), ProwJobState::Failure, "{:?}", done.status);
    assert!(kubectl_logs(&env, "multi", "lint").contains("lint: 2 problems"));
    assert!(kubectl_logs(&env, "multi", "unit").contains("unit ok"));
}

#[tokio::test]
async fn presets_injected_by_the_webhook_are_seen_inside_the_running_container() {
    let Some(env) = TestEnv::on_node("node-preset").await.expect("env") else {
        return;
    };
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    let _operator = operator(&env, &[]);
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "greeting"},
        "data": {"message": "hello from a preset volume"},
    }))
    .expect("config map");
    env.api::<ConfigMap>()
        .create(&PostParams::default(), &config)
        .await
        .expect("config map");
    let preset: Preset = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": "greeting"},
        "spec": {"selector": {"preset-greeting": "true"},
                 "env": [{"name": "GREETING", "value": "hello from a preset env var"}],
                 "volumes": [{"name": "greeting", "configMap": {"name": "greeting"}}],
                 "volumeMounts": [{"name": "greeting", "mountPath": "/etc/greeting"}]},
    }))
    .expect("preset");
    env.api::<Preset>()
        .create(&PostParams::default(), &preset)
        .await
        .expect("preset");
    let mut greeted = job(
        "greeted",
        vec![container(
            "test",
            "echo \"env: $GREETING\"; echo \"file: $(cat /etc/greeting/message)\"",
        )],
        json!({}),
    );
    greeted.metadata.labels = Some([("preset-greeting".to_string(), "true".to_string())].into());
    let jobs = env.api::<ProwJob>();
    // The API server takes a moment to call a newly registered webhook, and the webhook's
    // preset cache follows the API server by a watch: retry until the job comes back injected.
    eventually("the job created with the preset injected", WAIT, || {
        let (jobs, greeted) = (jobs.clone(), greeted.clone());
        async move {
            let created = jobs.create(&PostParams::default(), &greeted).await?;
            let injected = created
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("prow-operator.dev/presets"));
            if !injected {
                jobs.delete("greeted", &Default::default()).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(injected.then_some(()))
        }
    })
    .await
    .expect("injected");
    let done = ended(&jobs, "greeted").await;
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);
    let log = kubectl_logs(&env, "greeted", "test");
    assert!(log.contains("env: hello from a preset env var"), "{log}");
    assert!(log.contains("file: hello from a preset volume"), "{log}");
}

/// ServiceAccount tokens work: a job's pod reaches the API server on the bridge with its own
/// token, and RBAC holds (the namespace's default account may not list pods).
#[tokio::test]
async fn a_pod_reaches_the_api_server_as_its_service_account() {
    let Some(env) = TestEnv::on_node("node-token").await.expect("env") else {
        return;
    };
    let server = kube::config::Kubeconfig::read_from(&env.kubeconfig)
        .expect("kubeconfig")
        .clusters
        .into_iter()
        .find_map(|c| c.cluster.and_then(|c| c.server))
        .expect("server");
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("host:port");
    let mut caller = container(
        "test",
        "kubectl get --raw /readyz; echo; kubectl get pods 2>&1 | head -1; true",
    );
    caller["env"] = json!([{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                           {"name": "KUBERNETES_SERVICE_PORT", "value": port}]);
    let mut with_token = job("with-token", vec![caller], json!({}));
    if let Some(pod) = with_token.spec.pod_spec.as_mut() {
        pod.service_account_name = Some("default".into());
    }
    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let done = run_to_end(&jobs, &with_token).await;
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);
    let log = kubectl_logs(&env, "with-token", "test");
    assert!(log.starts_with("ok"), "{log}");
    let account = format!("system:serviceaccount:{}:default", env.namespace);
    assert!(log.contains(&account) && log.contains("forbidden"), "{log}");
}

/// The kubelet evicts a pod whose emptyDir outgrows its limit (within seconds: the node
/// measures volumes every 5 s).
#[tokio::test]
async fn a_pod_the_kubelet_evicts_is_revived_up_to_max_revivals() {
    let Some(env) = TestEnv::on_node("node-evict").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    let _operator = operator(&env, &["--max-revivals=1"]);
    let mut filler = container(
        "test",
        "head -c 5000000 /dev/zero > /scratch/big; echo filled; sleep 600",
    );
    filler["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    let mut evicted = job("evicted", vec![filler], json!({}));
    if let Some(pod) = evicted.spec.pod_spec.as_mut() {
        pod.volumes = Some(vec![serde_json::from_value(
            json!({"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}),
        )
        .expect("volume")]);
    }
    jobs.create(&PostParams::default(), &evicted)
        .await
        .expect("job");
    let first = running(&pods, "evicted").await;
    let second = eventually("a second pod after the eviction", WAIT, || {
        let (pods, first) = (pods.clone(), first.clone());
        async move {
            let pod = pods.get_opt("evicted").await?;
            Ok(pod.filter(|p| p.metadata.uid != first.metadata.uid))
        }
    })
    .await
    .expect("revived");
    assert_ne!(second.metadata.uid, first.metadata.uid);
    ended_after_one_revival(&jobs, "evicted").await;
}

/// On 1.20 an eviction through the Eviction API leaves no mark on the pod; the operator's
/// PodDisruptionBudget records it, so the job is revived, while a plain deletion still ends
/// the job as upstream does.
#[tokio::test]
async fn a_pod_evicted_through_the_eviction_api_is_revived_and_a_deleted_one_is_not() {
    let Some(env) = TestEnv::on_node("node-api-evict").await.expect("env") else {
        return;
    };
    let jobs = env.api::<ProwJob>();
    let pods = env.api::<Pod>();
    let _operator = operator(&env, &["--max-revivals=1"]);
    for name in ["evicted", "deleted"] {
        let sleeper = job(
            name,
            vec![container("test", "echo up; sleep 600")],
            json!({}),
        );
        jobs.create(&PostParams::default(), &sleeper)
            .await
            .expect("job");
    }
    let first = running(&pods, "evicted").await;
    let deleted = running(&pods, "deleted").await;
    evict(&pods, "evicted").await;
    pods.delete("deleted", &Default::default())
        .await
        .expect("deleted");

    let second = eventually("a second pod after the eviction", WAIT, || {
        let (pods, first) = (pods.clone(), first.clone());
        async move {
            let pod = pods.get_opt("evicted").await?;
            Ok(pod.filter(|p| {
                p.metadata.uid != first.metadata.uid
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            }))
        }
    })
    .await
    .expect("revived");
    let revived = jobs.get("evicted").await.expect("job");
    assert_eq!(
        revived.state(),
        ProwJobState::Pending,
        "{:?}",
        revived.status
    );
    assert_eq!(
        revived.status.as_ref().map(|s| s.pod_revival_count),
        Some(1)
    );

    // A deleted pod is not revived: its killed container fails the job (or, gone before the
    // kubelet reports it, "Pod got deleted unexpectedly").
    let gone = ended(&jobs, "deleted").await;
    let status = gone.status.clone().expect("status");
    assert!(
        matches!(gone.state(), ProwJobState::Failure | ProwJobState::Error),
        "{status:?}"
    );
    assert_eq!(status.pod_revival_count, 0, "{status:?}");
    assert!(pods
        .get_opt("deleted")
        .await
        .expect("read")
        .is_none_or(|p| p.metadata.uid == deleted.metadata.uid));

    // The second eviction is one revival too many.
    evict(&pods, &second.name_any()).await;
    ended_after_one_revival(&jobs, "evicted").await;
}

/// Evicts a pod through the Eviction API, as `kubectl drain` does: retried while the
/// disruption controller has not yet counted the pod in the budget (429).
async fn evict(pods: &Api<Pod>, name: &str) {
    eventually(&format!("pod {name} evicted"), WAIT, || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            match pods.evict(&name, &Default::default()).await {
                Ok(_) => Ok(Some(())),
                Err(kube::Error::Api(s)) if s.code == 429 => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
    .expect("evicted");
}

#[tokio::test]
async fn thirty_real_jobs_with_limit_three_survive_a_sigkill_of_the_operator() {
    const JOBS: usize = 30;
    const LIMIT: usize = 3;
    let Some(env) = TestEnv::on_node("node-kill").await.expect("env") else {
        return;
    };
    let tracker = PodTracker::start(env.api::<Pod>());
    let mut operator = Some(operator(&env, &[]));
    let jobs = env.api::<ProwJob>();
    for i in 0..JOBS {
        let mut run = job(
            &format!("run-{i:02}"),
            vec![container("test", "echo working; sleep 2; echo done")],
            json!({}),
        );
        run.spec.job = "ci-limited".into();
        run.spec.max_concurrency = LIMIT as i64;
        jobs.create(&PostParams::default(), &run)
            .await
            .expect("created");
    }
    let completed = |list: &[ProwJob]| list.iter().filter(|j| j.is_complete()).count();
    eventually("half the jobs done", Duration::from_secs(120), || async {
        let list = jobs.list(&Default::default()).await?;
        Ok((completed(&list.items) >= JOBS / 2).then_some(()))
    })
    .await
    .expect("half done");
    // SIGKILL while jobs run; the successor rebuilds every count from the API server.
    drop(operator.take());
    let _successor = start_operator(&env, &[]).expect("operator restarted");
    let all = eventually("every job complete", Duration::from_secs(180), || async {
        let list = jobs.list(&Default::default()).await?;
        Ok((completed(&list.items) == JOBS).then_some(list.items))
    })
    .await
    .expect("all complete");
    let seen = tracker.stop();
    let failed: Vec<_> = all
        .iter()
        .filter(|j| j.state() != ProwJobState::Success)
        .map(|j| (j.name_any(), j.status.clone()))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        seen.max_alive <= LIMIT,
        "{} pods alive at once",
        seen.max_alive
    );
    let doubled: Vec<_> = seen.uids.iter().filter(|(_, u)| u.len() > 1).collect();
    assert!(doubled.is_empty(), "jobs with two pods: {doubled:?}");
    assert_eq!(seen.uids.len(), JOBS, "one pod per job");
}

/// Waits until the job ends, and checks it ended in error after its one revival (the operator
/// runs with `--max-revivals=1`) because its pod was evicted again.
async fn ended_after_one_revival(jobs: &Api<ProwJob>, name: &str) {
    let done = ended(jobs, name).await;
    assert_eq!(done.state(), ProwJobState::Error, "{:?}", done.status);
    let status = done.status.expect("status");
    assert_eq!(status.pod_revival_count, 1);
    assert!(
        status
            .description
            .contains("reached max revivals (1) after being stopped unexpectedly (evicted)"),
        "{}",
        status.description
    );
}

/// Waits until the pod's container really runs; returns the pod.
async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("pod {name} running"), WAIT, || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            let pod = pods.get_opt(&name).await?;
            Ok(pod
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
        }
    })
    .await
    .expect("running")
}

#[tokio::test]
async fn an_imported_periodic_really_runs_on_its_interval_one_run_at_a_time() {
    use prow_api::jobdefinition::{JobDefinition, DEFINITION_LABEL};
    let Some(env) = TestEnv::on_node("node-periodic").await.expect("env") else {
        return;
    };
    // An upstream job config, imported with prowctl and applied with kubectl.
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("upstream"));
    std::fs::create_dir_all(dir.join("jobs")).expect("dir");
    std::fs::write(dir.join("config.yaml"), "presets: []\n").expect("config");
    std::fs::write(
        dir.join("jobs/periodics.yaml"),
        format!(
            "periodics:\n- name: ci-tick\n  interval: 8s\n  decorate: true\n  decoration_config: {{timeout: 1m}}\n  spec:\n    terminationGracePeriodSeconds: 2\n    containers:\n    - image: {TOOLBOX}\n      imagePullPolicy: Never\n      command: [sh, -c, 'echo \"tick from $(hostname)\"; sleep 2']\n"
        ),
    )
    .expect("jobs");
    let out = std::process::Command::new(kind_tests::process::binary("prowctl").expect("prowctl"))
        .args(["import", "--config-path"])
        .arg(dir.join("config.yaml"))
        .arg("--job-config-path")
        .arg(dir.join("jobs"))
        .args(["--namespace", &env.namespace, "--strict"])
        .output()
        .expect("prowctl import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = dir.join("imported.yaml");
    std::fs::write(&yaml, &out.stdout).expect("imported");
    env.kubectl(&["apply", "-f", yaml.to_str().expect("path")])
        .expect("applied");
    let _ = std::fs::remove_dir_all(&dir);

    let jobs = env.api::<ProwJob>();
    let _operator = operator(&env, &[]);
    let runs = || async {
        let mut list = jobs
            .list(&kube::api::ListParams::default().labels(&format!("{DEFINITION_LABEL}=ci-tick")))
            .await?
            .items;
        list.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok::<_, anyhow::Error>(list)
    };
    let done = eventually("two runs ended", WAIT, || async {
        let list = runs().await?;
        let ended: Vec<ProwJob> = list.into_iter().filter(ProwJob::is_complete).collect();
        Ok((ended.len() >= 2).then_some(ended))
    })
    .await
    .expect("two runs");
    for run in &done[..2] {
        assert_eq!(run.state(), ProwJobState::Success, "{:?}", run.status);
        let log = kubectl_logs(&env, &run.name_any(), "test");
        assert!(log.contains("tick from"), "{}: {log}", run.name_any());
    }
    // The second started only after the first ended, 8 s or more after the first started.
    let (first, second) = (&done[0], &done[1]);
    let first_end = first
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("ended")
        .0;
    let second_start = second
        .metadata
        .creation_timestamp
        .clone()
        .expect("created")
        .0;
    assert!(second_start >= first_end, "runs overlapped");
    let first_start = first
        .metadata
        .creation_timestamp
        .clone()
        .expect("created")
        .0;
    assert!(second_start.duration_since(first_start).as_secs_f64() >= 7.0);
    let status = env
        .api::<JobDefinition>()
        .get("ci-tick")
        .await
        .expect("definition")
        .status
        .unwrap_or_default();
    assert!(status.next_run_time.is_some(), "{status:?}");
}
