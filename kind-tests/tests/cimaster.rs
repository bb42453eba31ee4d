//! The cimaster-compatible HTTP API: cimaster's calls and plain-text answers over the lease
//! rules, behind a TokenReview and a SubjectAccessReview.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kind_tests::cimaster::{call, Reply};
use kind_tests::operator::{eventually, start_operator};
use kind_tests::process::{free_port, Running};
use kind_tests::TestEnv;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use prow_api::{ClusterPhase, ProwJob, TestCluster};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A ServiceAccount `name` and a token for it; with `allowed`, a Role that lets it lease, add
/// and delete TestClusters, and create ProwJobs (`createcluster`).
async fn account(env: &TestEnv, name: &str, allowed: bool) -> String {
    let accounts: Api<ServiceAccount> = env.api();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &sa)
        .await
        .expect("service account");
    if allowed {
        let role = Role {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec!["prow-operator.dev".into()]),
                    resources: Some(vec!["testclusters".into()]),
                    verbs: vec!["update".into(), "create".into(), "delete".into()],
                    ..Default::default()
                },
                PolicyRule {
                    api_groups: Some(vec!["prow.k8s.io".into()]),
                    resources: Some(vec!["prowjobs".into()]),
                    verbs: vec!["create".into()],
                    ..Default::default()
                },
            ]),
        };
        env.api::<Role>()
            .create(&PostParams::default(), &role)
            .await
            .expect("role");
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(env.namespace.clone()),
                ..Default::default()
            }]),
        };
        env.api::<RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await
            .expect("binding");
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .expect("token status")
        .token
}

/// Creates the postsubmit JobDefinition `name` of acme/widgets.
async fn postsubmit_definition(env: &TestEnv, name: &str) {
    let def: prow_api::jobdefinition::JobDefinition = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
        "metadata": {"name": name},
        "spec": {"type": "postsubmit", "repo": "acme/widgets",
                 "spec": {"containers": [{"image": "busybox", "command": ["true"]}]}},
    }))
    .expect("definition");
    env.api()
        .create(&PostParams::default(), &def)
        .await
        .expect("definition");
}

async fn phase(clusters: &Api<TestCluster>, name: &str) -> Option<ClusterPhase> {
    clusters
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.status?.phase)
}

/// Starts the operator with the API on a free port; returns it and the API's address once it
/// answers.
async fn operator_with_api(env: &TestEnv, extra: &[&str]) -> (Running, String) {
    let address = format!("127.0.0.1:{}", free_port().expect("port"));
    let mut args = vec![
        format!("--compat-listen={address}"),
        "--compat-pool=e2e".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = start_operator(env, &args).expect("operator");
    let probe = address.clone();
    eventually("the API answers", WAIT, || {
        let probe = probe.clone();
        async move {
            Ok(call(&probe, "GET", "/getvacant", None, None)
                .ok()
                .map(|_| ()))
        }
    })
    .await
    .expect("listening");
    (operator, address)
}

#[tokio::test]
async fn the_cimaster_calls_lease_hold_disable_and_manage_clusters_for_an_authorized_caller() {
    let env = TestEnv::new("cimaster").await.expect("env");
    let clusters = env.api::<TestCluster>();
    let token = account(&env, "e2e", true).await;
    let stranger = account(&env, "stranger", false).await;
    let (_operator, api) = operator_with_api(&env, &[]).await;
    let ns = env.namespace.clone();
    let get = |path: &str| call(&api, "GET", path, Some(&token), None).expect("call");
    let expect = |reply: Reply, status: u16, says: &str| {
        assert_eq!(reply.status, status, "{reply:?}");
        assert!(reply.text().contains(says), "{says:?} in {reply:?}");
        reply
    };

    // Who may call.
    expect(
        call(&api, "GET", "/getvacant?build=1&job=e2e", None, None).expect("call"),
        401,
        "bearer token is required",
    );
    expect(
        call(
            &api,
            "GET",
            "/getvacant?build=1&job=e2e",
            Some("not-a-token"),
            None,
        )
        .expect("call"),
        401,
        "not accepted",
    );
    expect(
        call(
            &api,
            "GET",
            "/addcluster?cluster=c1&region=eu&name=al",
            Some(&stranger),
            None,
        )
        .expect("call"),
        403,
        &format!("system:serviceaccount:{ns}:stranger may not create testclusters"),
    );

    // addcluster makes a TestCluster of the pool, without a kubeconfig.
    expect(
        get("/addcluster?cluster=c1&region=eu-west&name=alice"),
        200,
        "c1",
    );
    expect(
        get("/addcluster?cluster=c1&region=eu-west&name=alice"),
        409,
        "already exists",
    );
    let added = clusters.get("c1").await.expect("c1");
    assert_eq!(added.spec.pool, "e2e");
    assert_eq!(added.spec.region.as_deref(), Some("eu-west"));
    assert!(added.spec.kubeconfig_secret_ref.is_none());

    // getvacant -> finishtest.
    let leased = eventually("c1 leasable", WAIT, || async {
        let reply = call(
            &api,
            "GET",
            "/getvacant?build=123&job=e2e-test",
            Some(&token),
            None,
        )?;
        Ok((reply.status == 200).then_some(reply))
    })
    .await
    .expect("a lease");
    assert_eq!(
        leased.text(),
        "c1",
        "the answer is the cluster's name alone"
    );
    assert_eq!(phase(&clusters, "c1").await, Some(ClusterPhase::Leased));
    let holder = clusters
        .get("c1")
        .await
        .expect("c1")
        .status
        .expect("status")
        .lease
        .expect("lease");
    assert_eq!(holder.holder, format!("system:serviceaccount:{ns}:e2e"));
    assert!(
        holder.until.is_some(),
        "a getvacant lease has a longest life"
    );
    let none = expect(
        get("/getvacant?build=124&job=e2e-test"),
        503,
        "no vacant cluster in pool e2e",
    );
    assert!(none.header("retry-after").is_some(), "{none:?}");
    expect(
        call(&api, "GET", "/finishtest?cluster=c1", Some(&stranger), None).expect("call"),
        403,
        "may not update",
    );
    expect(get("/finishtest?cluster=c1"), 200, "Vacant");
    assert_eq!(phase(&clusters, "c1").await, Some(ClusterPhase::Vacant));
    expect(get("/finishtest?cluster=c1"), 409, "is not leased");

    // getvacant -> holdcluster -> releasecluster; a held cluster is not finished.
    expect(get("/getvacant?build=2&job=e2e"), 200, "c1");
    expect(
        get("/holdcluster?cluster=c1&name=alice&duration=48h"),
        409,
        "at most 24h",
    );
    expect(
        get("/holdcluster?cluster=c1&name=alice&duration=2h"),
        200,
        "Held by alice",
    );
    expect(get("/finishtest?cluster=c1"), 409, "releasecluster");
    expect(
        get("/holdcluster?cluster=c1&name=bob"),
        409,
        "not leased by a getvacant caller",
    );
    expect(get("/releasecluster?cluster=c1"), 200, "Vacant");

    // A hold expires by itself.
    expect(get("/getvacant?build=3&job=e2e"), 200, "c1");
    let held_at = std::time::Instant::now();
    expect(
        get("/holdcluster?cluster=c1&name=alice&duration=2s"),
        200,
        "Held",
    );
    eventually("the short hold ran out", WAIT, || async {
        Ok((phase(&clusters, "c1").await == Some(ClusterPhase::Vacant)).then_some(()))
    })
    .await
    .expect("expired");
    assert!(
        held_at.elapsed() >= Duration::from_millis(1500),
        "held for its duration, not less: {:?}",
        held_at.elapsed()
    );

    // disable -> enable; a disabled cluster is not leased.
    expect(get("/disablecluster?cluster=c1"), 200, "Disabled");
    let c1 = clusters.get("c1").await.expect("c1");
    assert!(c1
        .status
        .and_then(|s| s.disabled_reason)
        .expect("reason")
        .contains("disablecluster"));
    expect(get("/getvacant?build=4&job=e2e"), 503, "no vacant cluster");
    expect(get("/enablecluster?cluster=c1"), 200, "Vacant");

    // POST with a form body works as GET does; deletecluster refuses a cluster in use.
    let posted = call(
        &api,
        "POST",
        "/getvacant",
        Some(&token),
        Some("build=5&job=e2e"),
    )
    .expect("post");
    expect(posted, 200, "c1");
    expect(get("/deletecluster?cluster=c1"), 409, "released");
    expect(get("/finishtest?cluster=c1"), 200, "Vacant");
    expect(get("/deletecluster?cluster=c1"), 200, "deleted");
    eventually("c1 gone", WAIT, || async {
        Ok(clusters.get_opt("c1").await?.is_none().then_some(()))
    })
    .await
    .expect("deleted");

    // Bad calls.
    expect(get("/finishtest?cluster=c1"), 404, "no cluster c1");
    expect(get("/finishtest"), 400, "needs the parameter \"cluster\"");
    expect(get("/getvacant?job=e2e"), 400, "\"build\"");
    expect(
        get("/holdcluster?cluster=c1&name=al&duration=later"),
        400,
        "not a duration",
    );
    expect(get("/stealcluster?cluster=c1"), 404, "no such call");
    expect(
        get("/createcluster?user=al&branch=main"),
        501,
        "no create-cluster job",
    );
}

#[tokio::test]
async fn anonymous_callers_are_served_only_when_allowed() {
    let env = TestEnv::new("cimasteranon").await.expect("env");
    let (_operator, api) = operator_with_api(&env, &["--compat-allow-anonymous"]).await;
    let reply = call(
        &api,
        "GET",
        "/addcluster?cluster=c1&region=r&name=n",
        None,
        None,
    )
    .expect("call");
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = eventually("leased anonymously", WAIT, || {
        let api = api.clone();
        async move {
            let reply = call(&api, "GET", "/getvacant?build=1&job=j", None, None)?;
            Ok((reply.status == 200).then_some(reply))
        }
    })
    .await
    .expect("lease");
    assert_eq!(reply.text(), "c1");
    let reply = call(&api, "GET", "/finishtest?cluster=c1", None, None).expect("call");
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn a_pools_settings_bound_holds_and_its_status_counts_clusters_and_waiting_jobs() {
    let env = TestEnv::new("cimasterpool").await.expect("env");
    let pool: prow_api::testclusterpool::TestClusterPool =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
            "metadata": {"name": "e2e"},
            "spec": {"holdDuration": "30m", "maxHoldDuration": "1h",
                 "createClusterJob": {"type": "periodic", "agent": "kubernetes", "job": "make-e2e",
                                      "pod_spec": {"containers": [{"image": "busybox"}]}}},
        }))
        .expect("pool");
    let pools = env.api::<prow_api::testclusterpool::TestClusterPool>();
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    let (_operator, api) = operator_with_api(&env, &["--compat-allow-anonymous"]).await;
    let get = |path: &str| call(&api, "GET", path, None, None).expect("call");
    assert_eq!(get("/addcluster?cluster=c1&region=r&name=n").status, 200);
    assert_eq!(get("/addcluster?cluster=c2&region=r&name=n").status, 200);
    eventually("c1 leasable", WAIT, || async {
        let reply = call(&api, "GET", "/getvacant?build=1&job=j", None, None)?;
        Ok((reply.status == 200).then_some(()))
    })
    .await
    .expect("lease");
    // The second cluster is leasable once its reconcile has marked it free, which may be a
    // moment after the first's on a busy machine.
    let leased = eventually("c2 leasable", WAIT, || async {
        let reply = call(&api, "GET", "/getvacant?build=2&job=j", None, None)?;
        Ok((reply.status == 200).then_some(reply))
    })
    .await
    .expect("second lease");
    let too_long = get(&format!(
        "/holdcluster?cluster={}&name=al&duration=2h",
        leased.text()
    ));
    assert_eq!(too_long.status, 409, "{too_long:?}");
    assert!(too_long.text().contains("at most 1h"), "{too_long:?}");
    let held = get(&format!("/holdcluster?cluster={}&name=al", leased.text()));
    assert_eq!(held.status, 200, "{held:?}");
    let clusters = env.api::<TestCluster>();
    let lease = clusters
        .get(leased.text())
        .await
        .expect("cluster")
        .status
        .and_then(|s| s.lease)
        .expect("held");
    let held_for = lease.until.expect("until").0.duration_since(lease.since.0);
    assert!(
        (29 * 60..=31 * 60).contains(&held_for.as_secs()),
        "the pool's default hold: {held_for:?}"
    );
    let status = eventually("the pool counts its clusters", WAIT, || async {
        let p = pools.get("e2e").await?;
        Ok(p.status
            .filter(|s| s.clusters.leased == 1 && s.clusters.held == 1))
    })
    .await
    .expect("status");
    assert_eq!(status.clusters.vacant, 0);
    assert_eq!(status.waiting, 0);
    let printed = env
        .kubectl(&["get", "testclusterpools", "e2e"])
        .expect("kubectl");
    assert!(printed.contains("WAITING"), "{printed}");

    // createcluster runs the pool's template for the caller.
    let made = get("/createcluster?user=carol&branch=release-1.2");
    assert_eq!(made.status, 200, "{made:?}");
    assert!(made.text().contains("create-cluster job"), "{made:?}");
    let jobs = env
        .api::<prow_api::ProwJob>()
        .list(&kube::api::ListParams::default().labels("prow-operator.dev/create-cluster-for=e2e"))
        .await
        .expect("jobs");
    assert_eq!(jobs.items.len(), 1);
    let env_of_job =
        kind_tests::fixtures::container_env(jobs.items[0].spec.pod_spec.as_ref().expect("pod"), 0);
    assert_eq!(
        env_of_job.get("REQUESTED_BY").map(String::as_str),
        Some("carol"),
        "{env_of_job:?}"
    );
    assert_eq!(
        env_of_job.get("BRANCH").map(String::as_str),
        Some("release-1.2"),
        "{env_of_job:?}"
    );
}

#[tokio::test]
async fn a_curl_only_script_goes_through_every_cimaster_transition() {
    let env = TestEnv::new("cimasterflow").await.expect("env");
    let (_operator, api) = operator_with_api(&env, &["--compat-allow-anonymous"]).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cimaster-flow.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args([&api, &env.namespace])
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("the script runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("cimaster-flow: ok"), "{said}");
    for seen in [
        "flow-1: Disabled",
        "flow-1: Leased",
        "flow-1: Held",
        "flow-1: deleted",
    ] {
        assert!(said.contains(seen), "{seen} in {said}");
    }
}

#[tokio::test]
async fn the_manual_trigger_creates_one_run_for_an_authorized_caller_and_refuses_others() {
    use prow_api::jobdefinition::{DEFINITION_LABEL, TRIGGERED_BY_ANNOTATION};
    let env = TestEnv::new("manual-trigger").await.expect("env");
    let token = account(&env, "releaser", true).await;
    let stranger = account(&env, "stranger", false).await;
    let (_operator, api) = operator_with_api(&env, &[]).await;
    postsubmit_definition(&env, "deploy").await;
    let body = r#"{"org":"acme","repo":"widgets","base_ref":"main","prowtype":"postsubmit","prowjob":"deploy","user":"cluster-pool"}"#;
    let jobs = env.api::<ProwJob>();
    let runs = || async {
        jobs.list(&kube::api::ListParams::default().labels(&format!("{DEFINITION_LABEL}=deploy")))
            .await
            .expect("runs")
            .items
    };

    // The caller's rights are asked in the definition's namespace, so the definition must be in
    // the operator's cache first: until then the answer is 404, never anything else.
    let refused = eventually("the stranger refused", WAIT, || async {
        let r = call(&api, "POST", "/manual-trigger", Some(&stranger), Some(body))?;
        assert!(
            matches!(r.status, 403 | 404),
            "a stranger's trigger: {} {}",
            r.status,
            r.text()
        );
        Ok((r.status == 403).then_some(r))
    })
    .await
    .expect("403");
    assert!(
        refused.text().contains("may not create"),
        "{}",
        refused.text()
    );
    let anonymous = call(&api, "POST", "/manual-trigger", None, Some(body)).expect("call");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let unknown = body.replace("\"deploy\"", "\"nope\"");
    let missing = eventually("the definition cached", WAIT, || async {
        let r = call(
            &api,
            "POST",
            "/manual-trigger",
            Some(&token),
            Some(&unknown),
        )?;
        Ok((r.status == 404).then_some(r))
    })
    .await
    .expect("404");
    assert!(
        missing.text().contains("no postsubmit nope"),
        "{}",
        missing.text()
    );
    assert!(runs().await.is_empty(), "a refused trigger created a run");

    let created = eventually("the trigger accepted", WAIT, || async {
        let r = call(&api, "POST", "/manual-trigger", Some(&token), Some(body))?;
        Ok((r.status == 200).then_some(r))
    })
    .await
    .expect("created");
    let all = runs().await;
    assert_eq!(all.len(), 1, "one request, one run");
    let run = &all[0];
    assert_eq!(
        created.text(),
        format!(
            "{}/{}",
            env.namespace,
            run.metadata.name.clone().unwrap_or_default()
        )
    );
    let refs = run.spec.refs.clone().expect("refs");
    assert_eq!(
        (
            refs.org.as_str(),
            refs.repo.as_str(),
            refs.base_ref.as_str()
        ),
        ("acme", "widgets", "main")
    );
    let by = run
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGERED_BY_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        by,
        format!(
            "system:serviceaccount:{}:releaser (for cluster-pool)",
            env.namespace
        )
    );
}

/// Runs the prowctl binary; its exit code, stdout and stderr.
fn prowctl(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(kind_tests::process::binary("prowctl").expect("prowctl"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("PROWCTL_SERVER")
        .env_remove("PROWCTL_TOKEN")
        .output()
        .expect("prowctl runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Runs prowctl with `args` until `done` holds for what it returned (the operator's caches
/// catch up with the objects the test made), and returns that.
async fn prowctl_until(
    what: &str,
    args: &[&str],
    done: impl Fn(&(Option<i32>, String, String)) -> bool,
) -> (Option<i32>, String, String) {
    eventually(what, WAIT, || async {
        let r = prowctl(args);
        Ok(done(&r).then_some(r))
    })
    .await
    .expect(what)
}

#[tokio::test]
async fn prowctl_holds_a_vacant_cluster_releases_it_and_triggers_a_run_over_http() {
    use prow_api::jobdefinition::DEFINITION_LABEL;
    let env = TestEnv::new("prowctl-http").await.expect("env");
    let token = account(&env, "person", true).await;
    let stranger = account(&env, "passerby", false).await;
    let (_operator, api) = operator_with_api(&env, &[]).await;
    let server = format!("http://{api}");
    let add = call(
        &api,
        "GET",
        "/addcluster?cluster=c1&region=eu&name=ops",
        Some(&token),
        None,
    )
    .expect("call");
    assert_eq!(add.status, 200, "{add:?}");
    let clusters = env.api::<TestCluster>();

    // A caller without the right is refused with the API's reason, and nothing is held.
    let (code, _, err) = prowctl(&[
        "hold", "--server", &server, "--token", &stranger, "--name", "mallory", "c1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("holdcluster: 403"), "{err}");

    // A hold longer than the pool allows is refused, and the lease taken for it goes back.
    let too_long = prowctl_until(
        "refused as too long",
        &[
            "hold",
            "--server",
            &server,
            "--token",
            &token,
            "--name",
            "alice",
            "--duration",
            "100h",
        ],
        |r| r.2.contains("holdcluster: 409"),
    )
    .await;
    assert_eq!(too_long.0, Some(2), "{}", too_long.2);
    eventually("given back", WAIT, || async {
        Ok((phase(&clusters, "c1").await == Some(ClusterPhase::Vacant)).then_some(()))
    })
    .await
    .expect("the lease went back");

    // Without a cluster, hold leases a vacant one of the pool and holds it for the person.
    let (code, out, err) = prowctl_until(
        "held",
        &[
            "hold",
            "--server",
            &server,
            "--token",
            &token,
            "--name",
            "alice",
            "--duration",
            "2h",
        ],
        |r| r.0 == Some(0),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("cluster c1 is Held by alice until "),
        "{out}"
    );
    let held = clusters
        .get("c1")
        .await
        .expect("c1")
        .status
        .expect("status");
    assert_eq!(held.phase, Some(ClusterPhase::Held));
    assert_eq!(held.lease.expect("lease").holder, "alice");

    let (code, out, err) = prowctl(&["release", "--server", &server, "--token", &token, "c1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Vacant"), "{out}");
    eventually("vacant", WAIT, || async {
        Ok((phase(&clusters, "c1").await == Some(ClusterPhase::Vacant)).then_some(()))
    })
    .await
    .expect("vacant");

    // trigger --server sends the manual-trigger request.
    postsubmit_definition(&env, "publish").await;
    let (code, out, err) = prowctl_until(
        "triggered",
        &[
            "trigger",
            "--server",
            &server,
            "--token",
            &token,
            "--type",
            "postsubmit",
            "--repo",
            "acme/widgets",
            "--base-ref",
            "main",
            "--user",
            "alice",
            "publish",
        ],
        |r| r.0 == Some(0),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let runs = env
        .api::<ProwJob>()
        .list(&kube::api::ListParams::default().labels(&format!("{DEFINITION_LABEL}=publish")))
        .await
        .expect("runs")
        .items;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        out,
        format!(
            "{}/{}",
            env.namespace,
            runs[0].metadata.name.clone().unwrap_or_default()
        )
    );
}
