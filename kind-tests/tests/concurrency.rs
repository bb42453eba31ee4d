//! max_concurrency is never overshot, oldest jobs start first, and a killed operator's
//! successor carries on from what the API server stores.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kind_tests::operator::{eventually, start_operator};
use kind_tests::pods::{alive, PodTracker};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{ListParams, PostParams};
use kube::ResourceExt;
use prow_api::{ProwJob, ProwJobState};
use serde_json::json;

const JOBS: usize = 30;
const LIMIT: usize = 3;

#[tokio::test]
async fn thirty_jobs_with_limit_three_never_overshoot_even_when_the_operator_is_killed() {
    let env = TestEnv::new("concurrency").await.expect("env");
    let tracker = PodTracker::start(env.api::<Pod>());

    let mut operator = Some(start_operator(&env, &[]).expect("operator"));
    let jobs = env.api::<ProwJob>();
    for i in 0..JOBS {
        let job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": format!("run-{i:02}")},
            "spec": {"type": "periodic", "agent": "kubernetes", "job": "ci-limited",
                     "max_concurrency": LIMIT,
                     "pod_spec": {"containers": [{"image": "busybox"}]}},
        }))
        .expect("job");
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("created");
    }

    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let pods = env.api::<Pod>();
    for finished in 0..JOBS {
        if finished == JOBS / 2 {
            // Kill -9 mid-run; the successor must rebuild every count from the API server.
            drop(operator.take());
            operator = Some(start_operator(&env, &[]).expect("operator restarted"));
        }
        let expected = LIMIT.min(JOBS - finished);
        let running = eventually(
            &format!("{expected} pods running after {finished} finished"),
            Duration::from_secs(30),
            || async {
                let list = pods.list(&ListParams::default()).await?;
                let mut alive: Vec<Pod> = list.items.into_iter().filter(alive).collect();
                assert!(
                    alive.len() <= LIMIT,
                    "{} pods alive at once: overshoot",
                    alive.len()
                );
                alive.sort_by_key(|p| p.name_any());
                Ok((alive.len() == expected).then_some(alive))
            },
        )
        .await
        .expect("slots filled");
        // Give a would-be overshoot time to show, then finish the oldest.
        tokio::time::sleep(Duration::from_millis(150)).await;
        driver
            .succeed(&running[0].name_any())
            .await
            .expect("pod finished");
    }

    let all = eventually("every job complete", Duration::from_secs(30), || async {
        let list = jobs.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .all(|j| j.is_complete())
            .then_some(list.items))
    })
    .await
    .expect("all complete");
    let states: BTreeMap<_, _> = all.iter().map(|j| (j.name_any(), j.state())).collect();
    assert!(
        states.values().all(|s| *s == ProwJobState::Success),
        "{states:?}"
    );
    let build_ids: Vec<u64> = {
        let mut by_name: Vec<_> = all.iter().collect();
        by_name.sort_by_key(|j| j.name_any());
        by_name
            .iter()
            .map(|j| {
                j.status
                    .as_ref()
                    .expect("status")
                    .build_id
                    .parse()
                    .expect("numeric")
            })
            .collect()
    };
    // The first LIMIT jobs start together (their reconciles run in parallel, in any order);
    // every later one starts only when a slot frees, one after another, so its build ID is
    // above every earlier job's.
    let first = LIMIT;
    let unique: std::collections::BTreeSet<_> = build_ids.iter().collect();
    assert_eq!(
        unique.len(),
        build_ids.len(),
        "build ids are unique: {build_ids:?}"
    );
    let first_batch_max = build_ids[..first].iter().max().copied().unwrap_or_default();
    assert!(
        build_ids[first..].iter().all(|id| *id > first_batch_max)
            && build_ids[first..].windows(2).all(|w| w[0] < w[1]),
        "build ids increase in start order: {build_ids:?}"
    );

    let seen = tracker.stop();
    assert!(
        seen.max_alive <= LIMIT,
        "the watch saw {} pods alive at once",
        seen.max_alive
    );
    // The first LIMIT start together (in any order); after that each freed slot goes to the
    // oldest waiting job.
    let mut first: Vec<String> = seen.created[..LIMIT].to_vec();
    first.sort();
    assert_eq!(
        first,
        ["run-00", "run-01", "run-02"],
        "the oldest start first"
    );
    let rest = &seen.created[LIMIT..];
    let mut in_name_order = rest.to_vec();
    in_name_order.sort();
    assert_eq!(
        rest, in_name_order,
        "freed slots go to the oldest waiting job"
    );
    assert_eq!(seen.created.len(), JOBS, "one pod per job, none recreated");
}

fn simple_job(name: &str, job: &str, queue: &str) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": job, "job_queue_name": queue,
                 "pod_spec": {"containers": [{"image": "busybox"}]}},
    }))
    .expect("job")
}

async fn alive_pods(env: &TestEnv) -> Vec<String> {
    let list = env
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .expect("pods");
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| alive(p))
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_global_limit_counts_every_job_name() {
    let env = TestEnv::new("concurrency-global").await.expect("env");
    let _operator = start_operator(&env, &["--max-concurrency=2"]).expect("operator");
    let jobs = env.api::<ProwJob>();
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        jobs.create(
            &PostParams::default(),
            &simple_job(name, &format!("ci-{i}"), ""),
        )
        .await
        .expect("job");
    }
    eventually("two pods", Duration::from_secs(20), || async {
        Ok((alive_pods(&env).await.len() == 2).then_some(()))
    })
    .await
    .expect("two started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alive = alive_pods(&env).await;
    assert_eq!(alive.len(), 2, "{alive:?}");
    let waiting = eventually(
        "a waiting job saying why",
        Duration::from_secs(20),
        || async {
            let list = jobs.list(&ListParams::default()).await?;
            Ok(list.items.into_iter().find(|j| {
                j.state() == ProwJobState::Triggered
                    && j.status.as_ref().is_some_and(|s| !s.description.is_empty())
            }))
        },
    )
    .await
    .expect("waiting");
    let why = waiting.status.expect("status").description;
    assert!(why.contains("global max_concurrency 2"), "{why}");

    PodDriver::new(env.client.clone(), &env.namespace)
        .succeed(&alive[0])
        .await
        .expect("done");
    eventually("a third job to start", Duration::from_secs(20), || async {
        let pods = env
            .api::<Pod>()
            .list(&ListParams::default())
            .await?
            .items
            .len();
        Ok((pods == 3).then_some(()))
    })
    .await
    .expect("third");
    assert_eq!(alive_pods(&env).await.len(), 2, "still two alive at once");
}

#[tokio::test]
async fn job_queues_limit_their_jobs_and_an_unknown_queue_errors() {
    let env = TestEnv::new("concurrency-queue").await.expect("env");
    let _operator = start_operator(&env, &["--job-queue=gpu=1"]).expect("operator");
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &simple_job("g1", "ci-train", "gpu"))
        .await
        .expect("g1");
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation times have 1 s resolution
    jobs.create(&PostParams::default(), &simple_job("g2", "ci-infer", "gpu"))
        .await
        .expect("g2");
    jobs.create(&PostParams::default(), &simple_job("lost", "ci-x", "nope"))
        .await
        .expect("lost");

    let lost = kind_tests::operator::wait_for_job(
        &jobs,
        "lost",
        Duration::from_secs(20),
        ProwJob::is_complete,
    )
    .await
    .expect("errored");
    assert_eq!(lost.state(), ProwJobState::Error);
    assert_eq!(
        lost.status.expect("status").description,
        "Job queue \"nope\" is not configured."
    );

    let g2 = kind_tests::operator::wait_for_job(&jobs, "g2", Duration::from_secs(20), |j| {
        j.status
            .as_ref()
            .is_some_and(|s| s.description.contains("queue \"gpu\""))
    })
    .await
    .expect("g2 waits for the queue");
    assert_eq!(g2.state(), ProwJobState::Triggered);
    assert_eq!(alive_pods(&env).await, ["g1"]);

    PodDriver::new(env.client.clone(), &env.namespace)
        .succeed("g1")
        .await
        .expect("g1 done");
    kind_tests::operator::wait_for_job(&jobs, "g2", Duration::from_secs(20), |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("g2 starts when g1 is done");
}
