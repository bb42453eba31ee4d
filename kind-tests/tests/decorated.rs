//! Decorated jobs on the real node: the pod utilities clone from a real Git server, run the
//! test under the entrypoint and upload to a real S3 server (SeaweedFS), in upstream's layout.
//! Needs the node (`PROW_TEST_NODE_KUBECONFIG`), the servers (`PROW_TEST_S3_*`,
//! `PROW_TEST_GIT_*`, from `ci-services.sh`) and the utility image (`image.sh`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kind_tests::operator::{description, eventually, start_operator, wait_for_job};
use kind_tests::services::Services;
use kind_tests::TestEnv;
use kube::api::{DeleteParams, PostParams};
use prow_api::{ProwJob, ProwJobState};
use prow_runtime::storage::Store;
use serde_json::{json, Value};

const TOOLBOX: &str = "prow-operator.local/toolbox:v1";
const WAIT: Duration = Duration::from_secs(120);
const CREDENTIALS: &str = "s3-credentials";
/// Upstream's kind of `job_url_template`: the run's folder under a viewer's prefix.
const URL_TEMPLATE: &str = concat!(
    "--job-url-template=http://172.17.0.1:8090/view/s3/prow-logs/",
    r#"{{if eq .Spec.Type "presubmit"}}pr-logs/pull/{{.Spec.Refs.Org}}_{{.Spec.Refs.Repo}}/"#,
    r#"{{with index .Spec.Refs.Pulls 0}}{{.Number}}{{end}}{{else}}logs{{end}}"#,
    "/{{.Spec.Job}}/{{.Status.BuildID}}/"
);

/// The environment, the servers and the operator, or None where the tier is skipped.
async fn setup(prefix: &str) -> Option<(TestEnv, Services, kind_tests::process::Running)> {
    let env = TestEnv::on_node(prefix).await.expect("env")?;
    let services = Services::from_env().expect("services")?;
    services
        .credentials_secret(&env, CREDENTIALS)
        .await
        .expect("credentials");
    let operator = start_operator(&env, &[URL_TEMPLATE]).expect("operator");
    Some((env, services, operator))
}

/// Decoration writing to the test bucket.
fn decoration(services: &Services, extra: Value) -> Value {
    let mut d = json!({
        "timeout": "2m", "grace_period": "3s",
        "gcs_configuration": {"bucket": format!("s3://{}", services.bucket),
                              "path_strategy": "explicit"},
        "s3_credentials_secret": CREDENTIALS,
    });
    if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        d.extend(extra.clone());
    }
    d
}

fn job(name: &str, spec: Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("job")
}

fn test_container(script: &str) -> Value {
    json!({"image": TOOLBOX, "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

async fn run(env: &TestEnv, job: &ProwJob) -> ProwJob {
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), job).await.expect("job");
    let name = job.metadata.name.as_deref().unwrap_or_default();
    wait_for_job(&jobs, name, WAIT, ProwJob::is_complete)
        .await
        .expect("the job ends")
}

async fn text(store: &Store, key: &str) -> String {
    let bytes = store
        .get(key)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{key} is not in the bucket"));
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn json_of(store: &Store, key: &str) -> Value {
    serde_json::from_str(&text(store, key).await).expect("json")
}

/// Deletes the pod `name` and waits until it is gone.
async fn delete_pod(env: &TestEnv, name: &str) {
    let pods = env.api::<Pod>();
    pods.delete(name, &DeleteParams::default())
        .await
        .expect("delete the pod");
    eventually("the pod to be gone", WAIT, || async {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
    .expect("gone");
}

fn build_id(job: &ProwJob) -> String {
    job.status
        .as_ref()
        .map(|s| s.build_id.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_presubmit_merges_its_pull_runs_the_repositorys_script_and_leaves_upstreams_layout() {
    let Some((env, services, _operator)) = setup("deco-pre").await else {
        return;
    };
    let repo_name = env.namespace.clone();
    let repo = services
        .repo(
            &repo_name,
            "printf 'cat changed.txt\\necho \"on $(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo main)\"\\n' > test.sh
             echo 'the base text' > changed.txt
             git add . && git commit -qm base
             git checkout -qb pull-1 && echo 'text from pull 1' > changed.txt && git commit -qam 'pull 1'",
        )
        .expect("repo");
    let base = repo.sha("main").expect("base");
    let head = repo.sha("pull-1").expect("head");
    let j = job(
        "pre",
        json!({"type": "presubmit", "agent": "kubernetes", "job": "pull-unit",
               "refs": {"org": "acme", "repo": repo_name, "base_ref": "main", "base_sha": base,
                        "clone_uri": repo.url,
                        "pulls": [{"number": 1, "author": "al", "sha": head}]},
               "decoration_config": decoration(&services, json!({})),
               "pod_spec": {"containers": [test_container("sh ./test.sh")]}}),
    );
    let done = run(&env, &j).await;
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);

    let store = services.store().expect("store");
    let dir = format!(
        "pr-logs/pull/acme_{repo_name}/1/pull-unit/{}",
        build_id(&done)
    );
    let log = text(&store, &format!("{dir}/build-log.txt")).await;
    assert!(
        log.contains("text from pull 1"),
        "the pull's change was merged: {log}"
    );
    assert_eq!(
        done.status.as_ref().map(|s| s.url.as_str()),
        Some(format!("http://172.17.0.1:8090/view/s3/prow-logs/{dir}/").as_str()),
        "status.url from --job-url-template"
    );
    let started = json_of(&store, &format!("{dir}/started.json")).await;
    assert_eq!(started["pull"], "1");
    assert_eq!(
        started["repos"][format!("acme/{repo_name}")],
        format!("main:{base},1:{head}")
    );
    let finished = json_of(&store, &format!("{dir}/finished.json")).await;
    assert_eq!(finished["passed"], true);
    assert_eq!(finished["result"], "SUCCESS");
    assert_eq!(finished["revision"], head.as_str());
    let records = json_of(&store, &format!("{dir}/clone-records.json")).await;
    let record = &records[0];
    assert_ne!(record["failed"], true);
    let commands = record["commands"].to_string();
    assert!(
        commands.contains("pull/1/head") && commands.contains("merge --no-ff"),
        "{commands}"
    );
    assert_eq!(record["final_sha"].as_str().map(str::len), Some(40));
    assert!(text(&store, &format!("{dir}/clone-log.txt"))
        .await
        .contains("git merge"));
    let stored = json_of(&store, &format!("{dir}/prowjob.json")).await;
    assert_eq!(stored["status"]["state"], "success", "the job as it ended");
    let podinfo = json_of(&store, &format!("{dir}/podinfo.json")).await;
    assert_eq!(podinfo["pod"]["metadata"]["name"], "pre");
    let pointer = text(
        &store,
        &format!("pr-logs/directory/pull-unit/{}.txt", build_id(&done)),
    )
    .await;
    assert_eq!(pointer, format!("s3://{}/{dir}", services.bucket));
    assert_eq!(
        text(&store, "pr-logs/directory/pull-unit/latest-build.txt").await,
        build_id(&done)
    );
}

#[tokio::test]
async fn a_periodic_clones_two_extra_refs_into_their_path_aliases() {
    let Some((env, services, _operator)) = setup("deco-extra").await else {
        return;
    };
    let a = services
        .repo(
            &format!("{}-a", env.namespace),
            "echo alpha > a.txt && git add . && git commit -qm a",
        )
        .expect("repo a");
    let b = services
        .repo(
            &format!("{}-b", env.namespace),
            "echo beta > b.txt && git add . && git commit -qm b",
        )
        .expect("repo b");
    let j = job(
        "extra",
        json!({"type": "periodic", "agent": "kubernetes", "job": format!("ci-extra-{}", env.namespace),
               "extra_refs": [
                   {"org": "acme", "repo": "a", "base_ref": "main", "clone_uri": a.url,
                    "path_alias": "example.org/alpha"},
                   {"org": "acme", "repo": "b", "base_ref": "main", "clone_uri": b.url,
                    "path_alias": "example.org/beta", "workdir": true}],
               "decoration_config": decoration(&services, json!({})),
               "pod_spec": {"containers": [test_container(
                   "pwd; cat b.txt; cat /home/prow/go/src/example.org/alpha/a.txt")]}}),
    );
    let done = run(&env, &j).await;
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);
    let store = services.store().expect("store");
    let log = text(
        &store,
        &format!(
            "logs/ci-extra-{}/{}/build-log.txt",
            env.namespace,
            build_id(&done)
        ),
    )
    .await;
    assert!(
        log.contains("/home/prow/go/src/example.org/beta"),
        "workdir: {log}"
    );
    assert!(log.contains("beta") && log.contains("alpha"), "{log}");
}

#[tokio::test]
async fn clone_failures_fail_the_job_with_the_reason_and_the_clone_log_uploaded() {
    let Some((env, services, _operator)) = setup("deco-clone").await else {
        return;
    };
    let repo_name = env.namespace.clone();
    let repo = services
        .repo(
            &repo_name,
            "echo base > README && git add . && git commit -qm base
             git checkout -qb pull-2 && echo theirs > README && git commit -qam two
             git checkout -q main && echo ours > README && git commit -qam later",
        )
        .expect("repo");
    let spec = |job_name: &str, refs: Value| {
        json!({"type": "postsubmit", "agent": "kubernetes", "job": job_name, "refs": refs,
               "decoration_config": decoration(&services, json!({})),
               "pod_spec": {"containers": [test_container("echo never runs")]}})
    };
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        (
            "conflict",
            json!({"org": "acme", "repo": repo_name, "base_ref": "main", "clone_uri": repo.url,
                   "pulls": [{"number": 2}]}),
            "merge --no-ff",
        ),
        (
            "unknown-sha",
            json!({"org": "acme", "repo": repo_name, "base_ref": "main", "base_sha": unknown,
                   "clone_uri": repo.url}),
            unknown,
        ),
        (
            "unreachable",
            json!({"org": "acme", "repo": repo_name, "base_ref": "main",
                   "clone_uri": format!("{}/no-such-repo.git", services.git_url)}),
            "no-such-repo",
        ),
    ];
    let jobs = env.api::<ProwJob>();
    for (name, refs, _) in &cases {
        jobs.create(
            &PostParams::default(),
            &job(name, spec(&format!("post-{name}"), refs.clone())),
        )
        .await
        .expect("job");
    }
    let store = services.store().expect("store");
    for (name, _, reason) in cases {
        let done = wait_for_job(&jobs, name, WAIT, ProwJob::is_complete)
            .await
            .expect("ends");
        assert_eq!(
            done.state(),
            ProwJobState::Failure,
            "{name}: {:?}",
            done.status
        );
        let why = description(&done);
        assert!(
            why.contains("clone failed") && why.contains(reason),
            "{name}: {why}"
        );
        let dir = format!("logs/post-{name}/{}", build_id(&done));
        let log = text(&store, &format!("{dir}/build-log.txt")).await;
        assert!(
            log.contains("$ git"),
            "{name}: the clone log is the build log: {log}"
        );
        assert!(text(&store, &format!("{dir}/clone-log.txt"))
            .await
            .contains("# failed"));
        assert_eq!(
            json_of(&store, &format!("{dir}/finished.json")).await["passed"],
            false
        );
    }
}

#[tokio::test]
async fn a_test_past_its_timeout_gets_sigint_then_is_killed_and_what_it_wrote_is_uploaded() {
    let Some((env, services, _operator)) = setup("deco-timeout").await else {
        return;
    };
    let script = "trap 'echo interrupted > $ARTIFACTS/interrupted.txt; trap \"\" INT; while :; do sleep 1; done' INT
                  echo started; while :; do sleep 0.2; done";
    let j = job(
        "slow",
        json!({"type": "periodic", "agent": "kubernetes", "job": format!("ci-slow-{}", env.namespace),
               "decoration_config": decoration(&services, json!({"timeout": "4s", "grace_period": "3s"})),
               "pod_spec": {"containers": [test_container(script)]}}),
    );
    let done = run(&env, &j).await;
    assert_eq!(done.state(), ProwJobState::Failure, "{:?}", done.status);
    let why = description(&done);
    assert!(why.contains("timed out after 4s"), "{why}");
    let store = services.store().expect("store");
    let dir = format!("logs/ci-slow-{}/{}", env.namespace, build_id(&done));
    assert_eq!(
        text(&store, &format!("{dir}/artifacts/interrupted.txt"))
            .await
            .trim(),
        "interrupted",
        "the script's SIGINT trap ran and its file was uploaded"
    );
    let log = text(&store, &format!("{dir}/build-log.txt")).await;
    assert!(
        log.contains("started") && log.contains("did not finish before 4s"),
        "{log}"
    );
}

#[tokio::test]
async fn a_secret_value_the_test_prints_never_reaches_the_bucket() {
    let Some((env, services, _operator)) = setup("deco-censor").await else {
        return;
    };
    let value = format!("hunter2-{}", env.namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "api-token"}, "stringData": {"token": value}}))
    .expect("secret");
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let mut container = test_container(
        "echo \"token is $(cat /etc/api/token)\"; echo \"encoded $(cat /etc/api/token | base64)\"; cp /etc/api/token $ARTIFACTS/copy.txt",
    );
    container["volumeMounts"] = json!([{"name": "token", "mountPath": "/etc/api"}]);
    let j = job(
        "censored",
        json!({"type": "periodic", "agent": "kubernetes", "job": format!("ci-censor-{}", env.namespace),
               "decoration_config": decoration(&services, json!({"censor_secrets": true})),
               "pod_spec": {"containers": [container],
                            "volumes": [{"name": "token", "secret": {"secretName": "api-token"}}]}}),
    );
    let done = run(&env, &j).await;
    assert_eq!(done.state(), ProwJobState::Success, "{:?}", done.status);
    let store = services.store().expect("store");
    let dir = format!("logs/ci-censor-{}/{}", env.namespace, build_id(&done));
    let log = text(&store, &format!("{dir}/build-log.txt")).await;
    assert!(log.contains("token is ****"), "{log}");
    assert!(!log.contains(&value) && !log.contains("aHVudGVy"), "{log}");
    let copy = text(&store, &format!("{dir}/artifacts/copy.txt")).await;
    assert!(!copy.contains(&value), "{copy}");
}

#[tokio::test]
async fn the_log_streams_to_the_bucket_while_the_test_runs_and_survives_the_pods_deletion() {
    let Some((env, services, _operator)) = setup("deco-stream").await else {
        return;
    };
    let job_name = format!("ci-stream-{}", env.namespace);
    let j = job(
        "stream",
        json!({"type": "periodic", "agent": "kubernetes", "job": job_name,
               "decoration_config": decoration(&services, json!({})),
               "pod_spec": {"containers": [test_container(
                   "echo 'line before the wait'; sleep 100; echo 'never printed'")]}}),
    );
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &j).await.expect("job");
    let pending = wait_for_job(&jobs, "stream", WAIT, |j| {
        !j.status.as_ref().is_none_or(|s| s.build_id.is_empty())
    })
    .await
    .expect("started");
    let store = services.store().expect("store");
    let key = format!("logs/{job_name}/{}/build-log.txt", build_id(&pending));
    let partial = eventually("the running job's log in the bucket", WAIT, || async {
        Ok(store
            .get(&key)
            .await?
            .filter(|b| String::from_utf8_lossy(b).contains("line before")))
    })
    .await
    .expect("streamed");
    assert!(
        !wait_for_job(&jobs, "stream", Duration::ZERO, |_| true)
            .await
            .expect("job")
            .is_complete(),
        "the log was there before the job ended: {}",
        String::from_utf8_lossy(&partial)
    );
    delete_pod(&env, "stream").await;
    let after = text(&store, &key).await;
    assert!(after.contains("line before the wait"), "{after}");
    assert!(!after.contains("never printed"));
}

#[tokio::test]
async fn a_missing_credentials_secret_or_a_malformed_decoration_ends_the_job_error_without_a_pod() {
    let Some((env, services, _operator)) = setup("deco-nocreds").await else {
        return;
    };
    // The second reaches the operator because no webhook stands in front here: the operator
    // names the field itself.
    let cases = [
        (
            "nocreds",
            json!({"s3_credentials_secret": "missing-creds"}),
            ["s3_credentials_secret", "missing-creds"],
        ),
        (
            "badbucket",
            json!({"gcs_configuration": {"bucket": "ftp://logs"}}),
            ["gcs_configuration.bucket", "unknown storage scheme"],
        ),
    ];
    for (name, extra, words) in cases {
        let j = job(
            name,
            json!({"type": "periodic", "agent": "kubernetes", "job": format!("ci-{name}"),
                   "decoration_config": decoration(&services, extra),
                   "pod_spec": {"containers": [test_container("true")]}}),
        );
        let done = run(&env, &j).await;
        assert_eq!(
            done.state(),
            ProwJobState::Error,
            "{name}: {:?}",
            done.status
        );
        let why = description(&done);
        assert!(words.iter().all(|w| why.contains(w)), "{name}: {why}");
        let pod = env.api::<Pod>().get_opt(name).await.expect("get");
        assert!(pod.is_none(), "{name}: no pod waits for what cannot come");
    }
}

#[tokio::test]
async fn prowctl_logs_follows_a_running_job_then_reads_the_stored_log_once_the_pod_is_gone() {
    let Some((env, services, _operator)) = setup("deco-logs").await else {
        return;
    };
    let j = job(
        "followed",
        json!({"type": "periodic", "agent": "kubernetes", "job": format!("ci-logs-{}", env.namespace),
               "decoration_config": decoration(&services, json!({})),
               "pod_spec": {"containers": [test_container(
                   "echo 'first line'; sleep 4; echo 'second line'")]}}),
    );
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &j).await.expect("job");
    wait_for_job(&jobs, "followed", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("pending");
    let (kubeconfig, namespace) = (
        env.kubeconfig.to_string_lossy().into_owned(),
        env.namespace.clone(),
    );
    let prowctl = move |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--kubeconfig",
            kubeconfig.as_str(),
            "-n",
            namespace.as_str(),
        ]);
        std::process::Command::new(kind_tests::process::binary("prowctl").expect("prowctl"))
            .args(&all)
            .output()
            .expect("prowctl runs")
    };
    let followed = tokio::task::spawn_blocking({
        let prowctl = prowctl.clone();
        move || prowctl(&["logs", "followed", "-f"])
    });
    let out = followed.await.expect("joined");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("first line") && stdout.contains("second line"),
        "{stdout}"
    );
    assert!(stderr.contains("log from pod"), "{stderr}");

    wait_for_job(&jobs, "followed", WAIT, ProwJob::is_complete)
        .await
        .expect("ends");
    // What retention does to a finished job's pod.
    delete_pod(&env, "followed").await;
    let out = prowctl(&["logs", "followed"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("first line") && stdout.contains("second line"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "log from storage s3://{}/logs/ci-logs-",
            services.bucket
        )),
        "{stderr}"
    );

    let out = prowctl(&["logs", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ProwJob"));
}
