//! Leader election: only the leader reconciles, and a standby takes over.

use std::time::Duration;

use kind_tests::fixtures::job;
use kind_tests::operator::{start_operator, wait_for_job};
use kind_tests::process::{http_get, Running};
use kind_tests::TestEnv;
use kube::api::PostParams;
use prow_api::{ProwJob, ProwJobState};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let env = TestEnv::new("recover-leader").await.expect("env");
    let jobs = env.api::<ProwJob>();
    let leader = start_operator(&env, &[]).expect("leader");
    // The standby is Ready while the leader holds the Lease (it can take over, and a rollout
    // waits for it), and says that it is a standby.
    let ns = env.namespace.as_str();
    let standby_args = [
        format!("--watch-namespace={ns}"),
        format!("--pod-namespace={ns}"),
        format!("--leader-election-namespace={ns}"),
    ];
    let standby_args: Vec<&str> = standby_args.iter().map(String::as_str).collect();
    let standby =
        Running::start_unready("prow-operator", &env.kubeconfig, &standby_args).expect("standby");
    jobs.create(&PostParams::default(), &job("first", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "first", WAIT, |j| j.state() == ProwJobState::Pending)
        .await
        .expect("leader runs it");
    let (status, body) = http_get(&standby.health, "/readyz").expect("readyz");
    assert_eq!((status, body.trim()), (200, "ok (standby)"));

    assert!(leader.terminate().expect("leader stops"), "clean exit");
    jobs.create(&PostParams::default(), &job("second", "periodic"))
        .await
        .expect("job");
    wait_for_job(&jobs, "second", Duration::from_secs(40), |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("the standby took over");
    let (status, body) = http_get(&standby.health, "/readyz").expect("readyz");
    assert_eq!(
        (status, body.trim()),
        (200, "ok"),
        "the new leader is no standby"
    );
}
