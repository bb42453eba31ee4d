//! Hostile input and failures: one test per finding of the robustness review (issue
//! "Robustness"). Each fails without its fix.

use std::time::{Duration, Instant};

use kind_tests::control_plane::PrivateControlPlane;
use kind_tests::fixtures::create_review;
use kind_tests::https::{closed_within, connect, post, post_chunked};
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::process::http_get;
use kind_tests::webhook::{register, start_webhook, start_webhook_with_file_limit};
use kind_tests::{PodDriver, TestEnv};
use kube::api::PostParams;
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn job(name: &str, decoration: Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": format!("ci-{name}"),
                 "decoration_config": decoration,
                 "pod_spec": {"containers": [{"image": "busybox", "command": ["true"]}]}},
    }))
    .expect("job")
}

/// Finding 1: `pod_running_timeout: 20000h` once panicked the work queue's timer, and no job
/// was reconciled again while the probes stayed green.
#[tokio::test]
async fn a_job_with_an_absurd_timeout_does_not_stop_later_jobs() {
    let env = TestEnv::new("absurd-timeout").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let operator = start_operator(&env, &[]).expect("operator");
    // Created straight through the API: the webhook refuses it, but it may be stored while the
    // webhook is off.
    jobs.create(
        &PostParams::default(),
        &job("long", json!({"pod_running_timeout": "20000h"})),
    )
    .await
    .expect("job");
    wait_for_job(&jobs, "long", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("long job started");
    driver.run("long").await.expect("its pod runs");
    // The reconcile after the pod runs is the one that asked for a 20000 h requeue.
    tokio::time::sleep(Duration::from_secs(1)).await;

    jobs.create(&PostParams::default(), &job("later", json!({})))
        .await
        .expect("job");
    wait_for_job(&jobs, "later", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("a later job still gets its pod");
    driver.succeed("long").await.expect("pod ends");
    wait_for_job(&jobs, "long", WAIT, |j| j.state() == ProwJobState::Success)
        .await
        .expect("the long job follows its pod");
    assert_eq!(
        http_get(&operator.health, "/healthz").expect("healthz").0,
        200
    );
}

/// Finding 7: a restarted leader waited out its own lease (12-16 s), because each process
/// had a new identity.
#[tokio::test]
async fn a_restarted_leader_with_the_same_identity_takes_over_at_once() {
    let env = TestEnv::new("leader-identity").await.expect("env");
    let identity = "--leader-election-identity=prow-operator-7d9f-abcde";
    let first = start_operator(&env, &[identity]).expect("operator");
    // SIGKILL: the Lease is not released and stays valid for 15 s.
    drop(first);
    let started = Instant::now();
    let second = start_operator(&env, &[identity]).expect("the same pod, restarted");
    let took = started.elapsed();
    println!("restarted leader ready after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: a restarted leader must not wait out its own lease"
    );
    drop(second);
}

/// Finding 6: after an API server restart both binaries needed 11-14 s to resume and said
/// they were ready throughout.
#[tokio::test]
async fn readiness_drops_during_an_api_server_outage_and_returns_within_seconds() {
    let plane = PrivateControlPlane::up().expect("a control plane of this test's own");
    let env = plane.env("outage").await.expect("env");
    let operator = start_operator(&env, &[]).expect("operator");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    let probes = [("operator", &operator), ("webhook", &webhook.process)];

    plane.stop_apiserver().expect("outage");
    for (name, process) in probes {
        eventually(
            &format!("{name} /readyz to fail during the outage"),
            Duration::from_secs(15),
            || async move {
                let (code, body) = http_get(&process.health, "/readyz")?;
                Ok((code == 503).then_some(body))
            },
        )
        .await
        .expect("not ready while its watches fail");
        assert_eq!(
            http_get(&process.health, "/healthz").expect("healthz").0,
            200,
            "{name} stays alive"
        );
    }
    // An outage of a few seconds, as in the review.
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane.start_apiserver().expect("back");
    let back = Instant::now();
    for (name, process) in probes {
        eventually(
            &format!("{name} ready again"),
            Duration::from_secs(20),
            || async move { Ok((http_get(&process.health, "/readyz")?.0 == 200).then_some(())) },
        )
        .await
        .expect("ready again");
        let took = back.elapsed();
        println!("{name} ready {took:?} after the API server");
        assert!(took < Duration::from_secs(8), "{name} took {took:?}");
    }
    // And it works: a job created now gets its pod.
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job("after-outage", json!({})))
        .await
        .expect("job");
    wait_for_job(&jobs, "after-outage", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("reconciled after the restart");
}

/// Finding 2 (first half): bare TCP connections, idle TLS connections and half-sent headers
/// were all still open after 150 s.
#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new("webhook-idle").await.expect("env");
    let webhook = start_webhook(
        &env,
        &[
            "--handshake-timeout=1s",
            "--header-timeout=1s",
            "--idle-timeout=2s",
        ],
    )
    .expect("webhook");
    let bound = Duration::from_secs(6);

    let mut bare = tokio::net::TcpStream::connect(("127.0.0.1", webhook.port))
        .await
        .expect("tcp");
    let closed = closed_within(&mut bare, bound).await;
    assert!(
        closed.is_some(),
        "a connection that never shakes hands is closed"
    );

    let mut idle = webhook.connect().await.expect("tls");
    assert!(
        closed_within(&mut idle, bound).await.is_some(),
        "an idle TLS connection is closed"
    );

    let mut slow = webhook.connect().await.expect("tls");
    slow.write_all(b"POST /validate/prowjobs HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half the headers");
    assert!(
        closed_within(&mut slow, bound).await.is_some(),
        "half-sent headers are cut off"
    );

    // A connection in use is not idle: requests spaced below the idle timeout keep it.
    let mut busy = webhook.connect().await.expect("tls");
    let review = serde_json::to_vec(&create_review(&env.namespace, ok_job())).expect("json");
    for _ in 0..4 {
        let (code, _) = post(&mut busy, "/validate/prowjobs", &review)
            .await
            .expect("kept alive");
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

fn ok_job() -> Value {
    serde_json::to_value(job("ok", json!({}))).expect("json")
}

/// Finding 2 (second half): at its open-file limit the webhook spun and stopped answering.
/// Here it runs with 512 files and a flood of 1,500 connections.
#[tokio::test]
async fn a_flood_of_connections_does_not_stop_admissions() {
    let env = TestEnv::new("webhook-flood").await.expect("env");
    let webhook = start_webhook_with_file_limit(
        &env,
        &["--max-connections=100000", "--handshake-timeout=1s"],
        512,
    )
    .expect("webhook");
    let review = serde_json::to_vec(&create_review(&env.namespace, ok_job())).expect("json");
    // The API server's connection, open before the flood.
    let mut kept = webhook.connect().await.expect("tls");
    assert_eq!(
        post(&mut kept, "/validate/prowjobs", &review)
            .await
            .expect("admitted")
            .0,
        200
    );

    let mut flood = Vec::new();
    for _ in 0..1500 {
        match tokio::net::TcpStream::connect(("127.0.0.1", webhook.port)).await {
            Ok(stream) => flood.push(stream),
            Err(_) => break,
        }
    }
    println!("flood: {} connections open", flood.len());
    for _ in 0..20 {
        let started = Instant::now();
        let (code, _) = post(&mut kept, "/validate/prowjobs", &review)
            .await
            .expect("the kept connection still admits");
        assert_eq!(code, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // A new client gets through once flooders are culled by the handshake timeout.
    let fresh = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = webhook.connect().await?;
        post(&mut stream, "/validate/prowjobs", &review).await
    })
    .await
    .expect("a new connection within 20 s")
    .expect("admitted");
    assert_eq!(fresh.0, 200);
    assert_eq!(
        http_get(&webhook.process.health, "/healthz")
            .expect("alive")
            .0,
        200
    );
    drop(flood);
}

/// Finding 3: a 2.9 MB review with 100,000 duplicate env entries held the only worker thread
/// for up to 320 ms, and was denied with 9.3 MB.
#[tokio::test]
async fn a_large_review_does_not_stall_small_ones() {
    let env = TestEnv::new("webhook-large").await.expect("env");
    let webhook = start_webhook(&env, &["--deep-check=false"]).expect("webhook");
    let env_entries: Vec<Value> = (0..100_000)
        .map(|_| json!({"name": "DUPLICATE", "value": "x"}))
        .collect();
    let mut large_job = ok_job();
    large_job["spec"]["pod_spec"]["containers"][0]["env"] = json!(env_entries);
    let large = serde_json::to_vec(&create_review(&env.namespace, large_job)).expect("json");
    println!("large review: {} bytes", large.len());
    let small = serde_json::to_vec(&create_review(&env.namespace, ok_job())).expect("json");

    let stop = tokio_util::sync::CancellationToken::new();
    // The senders run in tasks of their own, so they connect by port and CA file.
    let ca = webhook.certs.cert.with_file_name("ca.crt");
    let mut senders = Vec::new();
    for _ in 0..2 {
        let (large, ca, stop) = (large.clone(), ca.clone(), stop.clone());
        let port = webhook.port;
        senders.push(tokio::spawn(async move {
            let mut stream = connect(port, &ca).await.expect("tls");
            let mut denial = 0;
            while !stop.is_cancelled() {
                let (code, body) = post(&mut stream, "/validate/prowjobs", &large)
                    .await
                    .expect("large review answered");
                assert_eq!(code, 200);
                denial = body.len();
            }
            denial
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stream = webhook.connect().await.expect("tls");
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let started = Instant::now();
        let (code, _) = post(&mut stream, "/validate/prowjobs", &small)
            .await
            .expect("small review");
        assert_eq!(code, 200);
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let mut denial = 0;
    for sender in senders {
        denial = sender.await.expect("sender");
    }
    latencies.sort();
    let p90 = latencies[latencies.len() * 9 / 10];
    println!(
        "small admissions beside large ones: {} sent, p50 {:?}, p90 {p90:?}, max {:?}; denial {denial} bytes",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(
        denial > 0 && denial < 10_000,
        "the denial is capped: {denial} bytes"
    );
    // Stated bound: while two clients send 3.3 MB reviews back to back, nine small
    // admissions in ten are answered within 150 ms. Measured in this test (debug build, 2
    // cores shared with the test's own TLS client): p50 45 ms, p90 49 ms; with every review
    // decided on the serving thread, p50 278 ms, p90 537 ms.
    assert!(p90 < Duration::from_millis(150), "p90 {p90:?}");
}

/// Finding 5: a chunked review (no Content-Length) was answered 405 "use POST".
#[tokio::test]
async fn a_chunked_review_is_admitted_and_an_oversized_one_refused() {
    let env = TestEnv::new("webhook-chunked").await.expect("env");
    let webhook = start_webhook(&env, &["--deep-check=false"]).expect("webhook");
    let review = serde_json::to_vec(&create_review(&env.namespace, ok_job())).expect("json");
    let mut stream = webhook.connect().await.expect("tls");
    let (code, body) = post_chunked(&mut stream, "/validate/prowjobs", &review, 100)
        .await
        .expect("answered");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("a review");
    assert_eq!(answer["response"]["allowed"], true);

    let huge = vec![b' '; 5 * 1024 * 1024];
    let mut stream = webhook.connect().await.expect("tls");
    let (code, _) = post_chunked(&mut stream, "/validate/prowjobs", &huge, 64 * 1024)
        .await
        .unwrap_or((413, Vec::new()));
    assert_eq!(code, 413, "over the 4 MiB limit, chunked or not");
}

/// Finding 4: a wrongly typed field was denied by the mutating webhook without its path,
/// hiding the API server's own error.
#[tokio::test]
async fn type_errors_carry_their_field_paths() {
    let env = TestEnv::new("webhook-types").await.expect("env");
    let webhook = start_webhook(&env, &["--deep-check=false"]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    let create = |object: Value| {
        let env = &env;
        async move {
            let jobs: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
                env.client.clone(),
                &env.namespace,
                &kube::discovery::ApiResource::erase::<ProwJob>(&()),
            );
            let object: kube::core::DynamicObject = serde_json::from_value(object)?;
            jobs.create(&PostParams::default(), &object)
                .await
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    // The API server takes a moment to use new webhook configurations.
    let mut typed = ok_job();
    typed["metadata"]["name"] = json!("typed");
    typed["spec"]["decoration_config"] = json!({"timeout": 5});
    let denial = eventually("the webhook to answer", WAIT, || {
        let typed = typed.clone();
        let create = &create;
        async move {
            match create(typed).await {
                Ok(()) => anyhow::bail!("a job with timeout: 5 was admitted"),
                Err(e) if e.to_string().contains("timeout") => Ok(Some(e.to_string())),
                Err(_) => Ok(None),
            }
        }
    })
    .await
    .expect("denied");
    assert!(
        denial.contains("spec.decoration_config.timeout"),
        "{denial}"
    );
    assert!(!denial.contains("line 1 column"), "{denial}");

    let mut container = ok_job();
    container["metadata"]["name"] = json!("container");
    container["spec"]["pod_spec"]["containers"][0]["name"] = json!(5);
    let denial = create(container).await.expect_err("denied").to_string();
    assert!(
        denial.contains("spec.pod_spec.containers[0].name"),
        "{denial}"
    );
}
