//! JobDefinitions on a real API server: periodics run on time and never twice at once (also
//! across a crash between the create and the status write, and with two replicas racing), cron
//! fires, minimum_interval waits, retry retries, and the run annotation starts exactly one run
//! per value.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kind_tests::operator::{eventually, finish_job, start_operator};
use kind_tests::{PodDriver, TestEnv};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use prow_api::jobdefinition::{
    prowjob_for, run_name, JobDefinition, RunRequest, DEFINITION_LABEL, RUN_ANNOTATION,
};
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn periodic(name: &str, schedule: Value) -> JobDefinition {
    let mut spec = json!({
        "type": "periodic",
        "labels": {"preset-none": "true"},
        "spec": {"containers": [{"name": "test", "image": "busybox", "command": ["true"]}]},
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), schedule.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("definition")
}

async fn runs(jobs: &Api<ProwJob>, def: &str) -> Vec<ProwJob> {
    let mut list = jobs
        .list(&ListParams::default().labels(&format!("{DEFINITION_LABEL}={def}")))
        .await
        .expect("runs")
        .items;
    list.sort_by_key(|j| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    });
    list
}

async fn wait_for_runs(
    jobs: &Api<ProwJob>,
    def: &str,
    count: usize,
    within: Duration,
) -> Vec<ProwJob> {
    eventually(&format!("{count} runs of {def}"), within, || async {
        let found = runs(jobs, def).await;
        Ok((found.len() >= count).then_some(found))
    })
    .await
    .expect("runs")
}

/// Ends a run's pod with `code` once it is pending; the run once it is complete.
async fn finish(driver: &PodDriver, jobs: &Api<ProwJob>, name: &str, code: i32) -> ProwJob {
    finish_job(driver, jobs, name, code, WAIT)
        .await
        .expect("the run ends")
}

fn created(job: &ProwJob) -> Timestamp {
    job.metadata.creation_timestamp.as_ref().expect("created").0
}

#[tokio::test]
async fn an_interval_periodic_runs_on_time_never_twice_at_once_and_says_when_it_is_late() {
    let env = TestEnv::new("def-interval").await.expect("env");
    let defs = env.api::<JobDefinition>();
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let _operator = start_operator(&env, &[]).expect("operator");
    let def = defs
        .create(
            &PostParams::default(),
            &periodic("every-3s", json!({"interval": "3s"})),
        )
        .await
        .expect("definition");

    // The first run starts at once, named after the definition's creation.
    let first = wait_for_runs(&jobs, "every-3s", 1, WAIT).await.remove(0);
    let def_created = def.metadata.creation_timestamp.clone().expect("created").0;
    assert_eq!(
        first.name_any(),
        run_name("every-3s", &def_created.as_second().to_string())
    );
    assert!(created(&first).duration_since(def_created).as_secs_f64() < 5.0);
    finish(&driver, &jobs, &first.name_any(), 0).await;

    // The second is due 3 s after the first started.
    let second = wait_for_runs(&jobs, "every-3s", 2, WAIT).await.remove(1);
    let gap = created(&second)
        .duration_since(created(&first))
        .as_secs_f64();
    assert!(
        (3.0..6.0).contains(&gap),
        "second run {gap}s after the first"
    );

    // While it goes on, no third run starts, and the definition says it is late and why.
    let late = eventually("the Late condition", WAIT, || async {
        let d = defs.get("every-3s").await?;
        let cond = d
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Late" && c.status == "True");
        Ok(cond)
    })
    .await
    .expect("late");
    assert!(
        late.message.contains(&second.name_any()),
        "{}",
        late.message
    );
    assert_eq!(
        runs(&jobs, "every-3s").await.len(),
        2,
        "a third run started while the second ran"
    );

    finish(&driver, &jobs, &second.name_any(), 0).await;
    let third = wait_for_runs(&jobs, "every-3s", 3, WAIT).await.remove(2);
    assert!(created(&third) > created(&second));
    let status = eventually("the status lists three runs", WAIT, || async {
        let s = defs.get("every-3s").await?.status.unwrap_or_default();
        Ok((s.latest_runs.len() >= 3).then_some(s))
    })
    .await
    .expect("status");
    assert_eq!(status.latest_runs[0].name, third.name_any(), "newest first");
    assert!(status.next_run_time.is_some());
}

#[tokio::test]
async fn a_crash_between_the_create_and_the_status_write_and_two_replicas_start_each_run_once() {
    let env = TestEnv::new("def-race").await.expect("env");
    let defs = env.api::<JobDefinition>();
    let jobs = env.api::<ProwJob>();
    let def = defs
        .create(
            &PostParams::default(),
            &periodic("raced", json!({"interval": "2s"})),
        )
        .await
        .expect("definition");
    // What a replica leaves when it dies right after creating the first run: the run, and no
    // status. (The run is made by the same rules, under the same name.)
    let due = def.metadata.creation_timestamp.clone().expect("created").0;
    let request = RunRequest {
        name: run_name("raced", &due.as_second().to_string()),
        trigger: "schedule".into(),
        annotations: [
            ("prow-operator.dev/due".to_string(), due.to_string()),
            ("prow-operator.dev/attempt".to_string(), "0".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let orphaned = prowjob_for(&def, &request).expect("run");
    jobs.create(&PostParams::default(), &orphaned)
        .await
        .expect("created before the crash");

    // Two replicas without leader election race for every run from here on.
    let _a = start_operator(&env, &["--leader-election=false"]).expect("replica a");
    let _b = start_operator(&env, &["--leader-election=false"]).expect("replica b");
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let mut finished = BTreeSet::new();
    for round in 0..4 {
        let all = wait_for_runs(&jobs, "raced", round + 1, WAIT).await;
        let unfinished: Vec<_> = all
            .iter()
            .filter(|j| !j.is_complete())
            .map(|j| j.name_any())
            .collect();
        assert!(unfinished.len() <= 1, "two runs at once: {unfinished:?}");
        let fresh: Vec<String> = all
            .iter()
            .map(|j| j.name_any())
            .filter(|n| !finished.contains(n))
            .collect();
        for name in fresh {
            finish(&driver, &jobs, &name, 0).await;
            finished.insert(name);
        }
    }
    let all = runs(&jobs, "raced").await;
    assert_eq!(
        all[0].name_any(),
        orphaned.name_any(),
        "the run from before the crash was adopted"
    );
    let names: BTreeSet<_> = all.iter().map(|j| j.name_any()).collect();
    assert_eq!(names.len(), all.len());
    for pair in all.windows(2) {
        let gap = created(&pair[1])
            .duration_since(created(&pair[0]))
            .as_secs_f64();
        assert!(
            gap >= 1.0,
            "runs {} and {} started {gap}s apart",
            pair[0].name_any(),
            pair[1].name_any()
        );
    }
}

#[tokio::test]
async fn minimum_interval_waits_after_the_end_and_a_failed_run_is_retried() {
    let env = TestEnv::new("def-retry").await.expect("env");
    let defs = env.api::<JobDefinition>();
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let _operator = start_operator(&env, &[]).expect("operator");
    defs.create(
        &PostParams::default(),
        &periodic(
            "gapped",
            json!({"minimum_interval": "4s", "retry": {"attempts": 1, "interval": "1s"}}),
        ),
    )
    .await
    .expect("definition");

    let first = wait_for_runs(&jobs, "gapped", 1, WAIT).await.remove(0);
    let ended = finish(&driver, &jobs, &first.name_any(), 1).await;
    assert_eq!(ended.state(), ProwJobState::Failure);
    let end = ended
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("end")
        .0;

    // The retry comes 1 s after the failure, as attempt 1.
    let retry = wait_for_runs(&jobs, "gapped", 2, WAIT).await.remove(1);
    assert_eq!(
        retry
            .labels()
            .get("prow-operator.dev/trigger")
            .map(String::as_str),
        Some("retry")
    );
    assert_eq!(
        retry
            .annotations()
            .get("prow-operator.dev/attempt")
            .map(String::as_str),
        Some("1")
    );
    assert!(created(&retry).duration_since(end).as_secs_f64() >= 1.0);
    let retried = finish(&driver, &jobs, &retry.name_any(), 1).await;
    let end = retried
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("end")
        .0;

    // No second retry; the schedule goes on 4 s after the retry ended.
    let next = wait_for_runs(&jobs, "gapped", 3, WAIT).await.remove(2);
    assert_eq!(
        next.labels()
            .get("prow-operator.dev/trigger")
            .map(String::as_str),
        Some("schedule")
    );
    let gap = created(&next).duration_since(end).as_secs_f64();
    assert!(gap >= 4.0, "the next run came {gap}s after the end");
}

#[tokio::test]
async fn cron_fires_at_its_tick() {
    let env = TestEnv::new("def-cron").await.expect("env");
    let defs = env.api::<JobDefinition>();
    let jobs = env.api::<ProwJob>();
    let _operator = start_operator(&env, &[]).expect("operator");
    let def = defs
        .create(
            &PostParams::default(),
            &periodic("minutely", json!({"cron": "* * * * *"})),
        )
        .await
        .expect("definition");
    let first = wait_for_runs(&jobs, "minutely", 1, Duration::from_secs(90))
        .await
        .remove(0);
    let tick = created(&first);
    assert_eq!(
        first.name_any(),
        run_name(
            "minutely",
            &(def.metadata.creation_timestamp.expect("c").0.as_second() / 60 * 60 + 60).to_string()
        )
    );
    assert!(
        tick.as_second() % 60 < 5,
        "created at {tick}, not at the minute"
    );
}

#[tokio::test]
async fn each_value_of_the_run_annotation_starts_exactly_one_run() {
    let env = TestEnv::new("def-manual").await.expect("env");
    let defs = env.api::<JobDefinition>();
    let jobs = env.api::<ProwJob>();
    let _operator = start_operator(&env, &[]).expect("operator");
    let mut post: JobDefinition = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": "post-deploy"},
        "spec": {"type": "postsubmit", "repo": "acme/widgets", "branches": ["main"],
                 "spec": {"containers": [{"image": "busybox", "command": ["true"]}]}},
    }))
    .expect("definition");
    post.metadata.annotations = None;
    defs.create(&PostParams::default(), &post)
        .await
        .expect("created");
    let annotate = |value: &str| {
        let defs = defs.clone();
        let patch = json!({"metadata": {"annotations": {RUN_ANNOTATION: value}}});
        async move {
            defs.patch(
                "post-deploy",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("annotated");
        }
    };
    annotate("first").await;
    let run = wait_for_runs(&jobs, "post-deploy", 1, WAIT).await.remove(0);
    let refs = run.spec.refs.clone().expect("refs");
    assert_eq!(
        (
            refs.org.as_str(),
            refs.repo.as_str(),
            refs.base_ref.as_str()
        ),
        ("acme", "widgets", "main")
    );
    assert_eq!(
        run.labels()
            .get("prow-operator.dev/trigger")
            .map(String::as_str),
        Some("manual")
    );
    eventually("the trigger recorded", WAIT, || async {
        let s = defs.get("post-deploy").await?.status.unwrap_or_default();
        Ok((s.last_manual_trigger.as_deref() == Some("first")).then_some(()))
    })
    .await
    .expect("recorded");

    // The same value again, and unrelated changes, start nothing more.
    annotate("first").await;
    defs.patch(
        "post-deploy",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .expect("touched");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&jobs, "post-deploy").await.len(), 1);

    annotate("second").await;
    let both = wait_for_runs(&jobs, "post-deploy", 2, WAIT).await;
    assert_ne!(both[0].name_any(), both[1].name_any());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&jobs, "post-deploy").await.len(), 2);
}
