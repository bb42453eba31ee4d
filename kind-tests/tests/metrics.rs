//! Metrics: jobs by state and type, reconciles, start latency, errors and conflicts.

use std::time::Duration;

use kind_tests::fixtures::job;
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::process::http_get;
use kind_tests::TestEnv;
use kube::api::PostParams;
use prow_api::{ProwJob, ProwJobState};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn metrics_count_jobs_by_state_and_type() {
    let env = TestEnv::new("recover-metrics").await.expect("env");
    let operator = start_operator(&env, &[]).expect("operator");
    let jobs = env.api::<ProwJob>();
    jobs.create(&PostParams::default(), &job("counted", "postsubmit"))
        .await
        .expect("job");
    wait_for_job(&jobs, "counted", WAIT, |j| {
        j.state() == ProwJobState::Pending
    })
    .await
    .expect("pending");
    // The gauge counts the operator's cache, which follows the API server a moment later.
    let body = eventually("the pending job in the metrics", WAIT, || async {
        let (status, body) = http_get(&operator.health, "/metrics")?;
        assert_eq!(status, 200);
        let pending = r#"prow_operator_prowjobs{state="pending",type="postsubmit"} 1"#;
        Ok(body.contains(pending).then_some(body))
    })
    .await
    .expect("metrics");
    assert!(
        body.contains("prow_operator_reconcile_duration_seconds_count"),
        "{body}"
    );
    assert!(
        body.contains("prow_operator_job_start_latency_seconds_count 1"),
        "{body}"
    );
    assert!(
        body.contains("prow_operator_reconcile_errors_total 0"),
        "{body}"
    );
}
