//! Many acquirers, few clusters: jobs and cimaster callers together never share a cluster and
//! never hold two, even when the operator is killed (SIGKILL) in the middle of leasing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::cimaster::call;
use kind_tests::fixtures::job;
use kind_tests::operator::{eventually, start_operator};
use kind_tests::process::{free_port, Running};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use prow_api::{labels, ClusterPhase, ProwJob, TestCluster, TestClusterStatus};
use serde_json::json;

const CLUSTERS: usize = 5;
const JOBS: usize = 25;
const CALLERS: usize = 25;
const WAIT: Duration = Duration::from_secs(120);

/// Every status each cluster went through, in order, as the watch delivered them.
type History = Arc<Mutex<HashMap<String, Vec<TestClusterStatus>>>>;

fn record(clusters: kube::Api<TestCluster>) -> History {
    let history: History = Arc::default();
    let seen = history.clone();
    tokio::spawn(async move {
        let events = watcher(clusters, watcher::Config::default()).applied_objects();
        futures::pin_mut!(events);
        while let Some(Ok(cluster)) = events.next().await {
            let status = cluster.status.clone().unwrap_or_default();
            let mut all = seen.lock().expect("history");
            let list = all.entry(cluster.name_any()).or_default();
            if list.last() != Some(&status) {
                list.push(status);
            }
        }
    });
    history
}

/// A lease, as (holder, holder UID, since): two statuses with the same key are one lease.
fn lease_key(status: &TestClusterStatus) -> Option<(String, Option<String>, String)> {
    let lease = status.lease.as_ref()?;
    Some((
        lease.holder.clone(),
        lease.holder_uid.clone(),
        lease.since.0.to_string(),
    ))
}

/// Checks that every cluster's leases followed one another with the cluster free in between;
/// returns each job UID's number of leases, and the number of leases in all.
fn check(history: &History) -> (BTreeMap<String, usize>, usize) {
    let all = history.lock().expect("history");
    let mut per_job: BTreeMap<String, usize> = BTreeMap::new();
    let mut leases = 0;
    for (cluster, statuses) in all.iter() {
        let mut current: Option<(String, Option<String>, String)> = None;
        for status in statuses {
            let phase = status.phase.unwrap_or(ClusterPhase::Vacant);
            match (phase, lease_key(status)) {
                (ClusterPhase::Leased | ClusterPhase::Held, Some(key)) => {
                    if let Some(before) = &current {
                        assert_eq!(
                            before.0, key.0,
                            "cluster {cluster} went from one holder to another without being free: {statuses:#?}"
                        );
                        if phase == ClusterPhase::Leased {
                            assert_eq!(
                                before, &key,
                                "cluster {cluster} leased twice without being free: {statuses:#?}"
                            );
                        }
                    } else {
                        leases += 1;
                        if let Some(uid) = &key.1 {
                            *per_job.entry(uid.clone()).or_default() += 1;
                        }
                    }
                    current = Some(key);
                }
                _ => current = None,
            }
        }
    }
    (per_job, leases)
}

fn pool_job(name: &str) -> ProwJob {
    let mut j = job(name, "periodic");
    j.metadata.labels = Some(BTreeMap::from([(
        labels::TEST_CLUSTER_POOL.to_string(),
        "e2e".to_string(),
    )]));
    j
}

async fn start(env: &TestEnv, api: &str) -> Running {
    let args = [
        format!("--compat-listen={api}"),
        "--compat-pool=e2e".to_string(),
        "--compat-allow-anonymous".to_string(),
        "--leader-election=false".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_operator(env, &args).expect("operator")
}

/// One round: `JOBS` jobs and `CALLERS` callers contend for the clusters; with `kills`, the
/// operator is killed that many times along the way and restarted.
async fn round(env: &TestEnv, api: &str, operator: &mut Option<Running>, tag: &str, kills: usize) {
    let jobs = env.api::<ProwJob>();
    for i in 0..JOBS {
        jobs.create(&PostParams::default(), &pool_job(&format!("{tag}-{i:02}")))
            .await
            .expect("job");
    }
    // Callers: getvacant until served, hold a moment, finishtest. Each records its interval.
    let intervals: Arc<Mutex<Vec<(String, Instant, Instant)>>> = Arc::default();
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let (api, intervals) = (api.to_string(), intervals.clone());
        callers.push(tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + WAIT;
            loop {
                assert!(Instant::now() < deadline, "caller {i} never served");
                let path = format!("/getvacant?build={i}&job=contention");
                match call(&api, "GET", &path, None, None) {
                    Ok(reply) if reply.status == 200 => {
                        let cluster = reply.text().to_string();
                        let from = Instant::now();
                        std::thread::sleep(Duration::from_millis(20 + (i as u64 * 7) % 60));
                        let to = Instant::now();
                        intervals
                            .lock()
                            .expect("intervals")
                            .push((cluster.clone(), from, to));
                        let finish = format!("/finishtest?cluster={cluster}");
                        loop {
                            match call(&api, "GET", &finish, None, None) {
                                Ok(r) if r.status == 200 => return,
                                Ok(r) => panic!("finishtest of {cluster} refused: {r:?}"),
                                // The operator is restarting.
                                Err(_) => std::thread::sleep(Duration::from_millis(100)),
                            }
                        }
                    }
                    _ => std::thread::sleep(Duration::from_millis(30)),
                }
            }
        }));
    }
    // Jobs: succeed each pod a moment after it appears; kill the operator along the way.
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let pods = env.api::<Pod>();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    let mut killed = 0;
    while done.len() < JOBS {
        assert!(started.elapsed() < WAIT, "jobs never all ran: {done:?}");
        if killed < kills && done.len() >= (killed + 1) * JOBS / (kills + 1) {
            drop(operator.take());
            *operator = Some(start(env, api).await);
            killed += 1;
        }
        let list = pods.list(&ListParams::default()).await.expect("pods");
        for pod in list.items {
            let name = pod.name_any();
            if name.starts_with(tag)
                && !done.contains(&name)
                && pod.metadata.deletion_timestamp.is_none()
            {
                driver.succeed(&name).await.expect("succeed");
                done.insert(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for caller in callers {
        caller.await.expect("caller");
    }
    // Callers that share one identity never held the same cluster at the same time.
    let intervals = intervals.lock().expect("intervals").clone();
    assert_eq!(intervals.len(), CALLERS);
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            let overlap = a.0 == b.0 && a.1 < b.2 && b.1 < a.2;
            assert!(!overlap, "two callers held {} at once", a.0);
        }
    }
}

#[tokio::test]
async fn fifty_acquirers_never_share_a_cluster_even_when_the_operator_is_killed() {
    let env = TestEnv::new("contention").await.expect("env");
    let clusters = env.api::<TestCluster>();
    let history = record(clusters.clone());
    for i in 0..CLUSTERS {
        let cluster: TestCluster = serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": format!("c{i}")},
            "spec": {"pool": "e2e"},
        }))
        .expect("cluster");
        clusters
            .create(&PostParams::default(), &cluster)
            .await
            .expect("cluster");
    }
    let api = format!("127.0.0.1:{}", free_port().expect("port"));
    let mut operator = Some(start(&env, &api).await);

    round(&env, &api, &mut operator, "calm", 0).await;
    round(&env, &api, &mut operator, "killed", 3).await;

    let jobs = env.api::<ProwJob>();
    eventually(
        "every job finished and every cluster free",
        WAIT,
        || async {
            let all = jobs.list(&ListParams::default()).await?;
            let free = clusters
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .all(|c| c.status.as_ref().and_then(|s| s.phase) == Some(ClusterPhase::Vacant));
            Ok((free && all.items.iter().all(|j| j.is_complete())).then_some(()))
        },
    )
    .await
    .expect("settled: nothing leaked");
    let (per_job, leases) = check(&history);
    assert_eq!(
        leases,
        2 * (JOBS + CALLERS),
        "every acquirer of both rounds leased once"
    );
    let all = jobs.list(&ListParams::default()).await.expect("jobs");
    for j in &all.items {
        let uid = j.uid().expect("uid");
        assert_eq!(
            per_job.get(&uid),
            Some(&1),
            "job {} held exactly one lease",
            j.name_any()
        );
        assert!(
            j.status
                .as_ref()
                .and_then(|s| s.test_cluster.as_ref())
                .is_some(),
            "job {} records its cluster",
            j.name_any()
        );
    }
    let copies = env
        .api::<k8s_openapi::api::core::v1::Secret>()
        .list(&ListParams::default().labels("prow-operator.dev/test-cluster-holder"))
        .await
        .expect("secrets");
    assert!(copies.items.is_empty(), "no kubeconfig copy left behind");
}
