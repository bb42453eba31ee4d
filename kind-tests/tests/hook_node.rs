//! The CI loop end to end on the real node: GitHub's payloads into prow-hook, JobDefinitions
//! decorated to clone from the Git server, the operator running their pods, statuses back to
//! the GitHub stand-in. A member's pull request runs its always_run presubmit and the
//! run_if_changed one whose files changed, not a third; the runs clone and merge the pull; the
//! statuses go pending then success and failure; `/retest` reruns only the failed one; a new
//! commit aborts the older runs; an outsider's pull request waits for `/ok-to-test`; a push to
//! main runs the postsubmit.

use std::collections::BTreeSet;
use std::time::Duration;

use kind_tests::hook::{push_event, Examples, Hook, Pr};
use kind_tests::operator::{eventually, start_operator};
use kind_tests::services::Services;
use kind_tests::TestEnv;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use prow_api::jobdefinition::JobDefinition;
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(150);
const CREDENTIALS: &str = "s3-credentials";
const ORG: &str = "acme";

fn state(job: &ProwJob) -> Option<ProwJobState> {
    job.status.as_ref().and_then(|s| s.state)
}

async fn runs_of(env: &TestEnv, job: &str) -> Vec<ProwJob> {
    let api: Api<ProwJob> = env.api();
    let mut items: Vec<ProwJob> = api
        .list(&ListParams::default())
        .await
        .expect("runs")
        .items
        .into_iter()
        .filter(|j| j.spec.job == job)
        .collect();
    items.sort_by_key(|j| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    });
    items
}

/// Waits until `job` has `count` runs, all ended; the runs.
async fn ended(env: &TestEnv, job: &str, count: usize) -> Vec<ProwJob> {
    eventually(&format!("{count} ended run(s) of {job}"), WAIT, || async {
        let runs = runs_of(env, job).await;
        Ok((runs.len() == count && runs.iter().all(|j| j.is_complete())).then_some(runs))
    })
    .await
    .unwrap()
}

fn statuses_of(hook: &Hook, context: &str) -> Vec<String> {
    hook.github.with(|s| {
        s.statuses
            .iter()
            .filter(|st| st.context == context)
            .map(|st| st.state.clone())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_requests_and_pushes_run_decorated_jobs_on_the_node_and_report_back() {
    let Some(examples) = Examples::load().expect("examples") else {
        return;
    };
    let Some(env) = TestEnv::on_node("hook-node").await.expect("env") else {
        return;
    };
    let Some(services) = Services::from_env().expect("services") else {
        return;
    };
    services
        .credentials_secret(&env, CREDENTIALS)
        .await
        .expect("credentials");
    let repo_name = env.namespace.clone();
    // main; pull 1 (two commits: docs and the marker its unit job looks for); pull 2.
    let repo = services
        .repo(
            &repo_name,
            "echo base > base.txt && git add . && git commit -qm base
             git checkout -qb pull-1
             mkdir docs && echo guide > docs/guide.md && echo 'from pull 1' > marker.txt
             git add . && git commit -qm 'pull 1'
             echo more >> docs/guide.md && git commit -qam 'pull 1, again'
             git checkout -q main && git checkout -qb pull-2
             echo 'from pull 2' > marker.txt && git add . && git commit -qm 'pull 2'",
        )
        .expect("repo");
    let base = repo.sha("main").unwrap();
    let (first, second) = (repo.sha("pull-1~1").unwrap(), repo.sha("pull-1").unwrap());
    let outsider_sha = repo.sha("pull-2").unwrap();
    let decoration = json!({
        "timeout": "2m", "grace_period": "3s",
        "gcs_configuration": {"bucket": format!("s3://{}", services.bucket), "path_strategy": "explicit"},
        "s3_credentials_secret": CREDENTIALS,
    });
    let definition = |name: &str, fields: Value, script: &str| -> JobDefinition {
        let mut spec = json!({
            "type": "presubmit", "repo": format!("{ORG}/{repo_name}"), "clone_uri": repo.url,
            "decorate": true, "decoration_config": decoration,
            "spec": {"containers": [{"image": "prow-operator.local/toolbox:v1",
                                     "imagePullPolicy": "Never", "command": ["sh", "-c", script]}]},
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), fields.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(
            json!({"apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
                                      "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    };
    let defs: Api<JobDefinition> = env.api();
    for def in [
        // Passes only when the pull is merged in.
        definition(
            "unit",
            json!({"always_run": true}),
            "grep -q 'from pull' marker.txt",
        ),
        // Fails: its status goes to failure, and /retest reruns it.
        definition(
            "docs",
            json!({"run_if_changed": "^docs/"}),
            "echo 'docs are wrong'; exit 1",
        ),
        definition("api", json!({"run_if_changed": "^api/"}), "true"),
        definition(
            "post",
            json!({"type": "postsubmit", "branches": ["^main$"]}),
            "test -f base.txt",
        ),
    ] {
        defs.create(&PostParams::default(), &def)
            .await
            .expect("definition");
    }
    let _operator = start_operator(&env, &[]).expect("operator");
    let hook = Hook::start(&env, "", &[]).await.expect("prow-hook");
    hook.github.with(|s| {
        s.members
            .entry(ORG.into())
            .or_default()
            .insert("alice".into());
    });
    let change = Pr {
        org: ORG.into(),
        repo: repo_name.clone(),
        number: 1,
        author: "alice".into(),
        sha: first.clone(),
        base: "main".into(),
        labels: Vec::new(),
        draft: false,
    };
    change.publish(
        &hook.github,
        &examples,
        &["docs/guide.md", "marker.txt"],
        &base,
    );
    hook.deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();

    // unit and docs run (api does not: no file under api/), decorated, cloning the pull.
    let unit = ended(&env, "unit", 1).await;
    let docs = ended(&env, "docs", 1).await;
    let first_docs = docs[0].name_any();
    assert_eq!(
        state(&unit[0]),
        Some(ProwJobState::Success),
        "the pull was merged: {:?}",
        unit[0].status
    );
    assert_eq!(state(&docs[0]), Some(ProwJobState::Failure));
    assert!(runs_of(&env, "api").await.is_empty());
    assert_eq!(unit[0].spec.refs.as_ref().unwrap().base_sha, base);
    // Statuses: pending, then the end, on the pull's head.
    eventually("the statuses", WAIT, || async {
        let (u, d) = (statuses_of(&hook, "unit"), statuses_of(&hook, "docs"));
        Ok((u.last().map(String::as_str) == Some("success")
            && d.last().map(String::as_str) == Some("failure"))
        .then_some(()))
    })
    .await
    .unwrap();
    for context in ["unit", "docs"] {
        let seen = statuses_of(&hook, context);
        assert_eq!(
            seen.first().map(String::as_str),
            Some("pending"),
            "{context}: {seen:?}"
        );
        let distinct: BTreeSet<&String> = seen.iter().collect();
        assert!(
            seen.len() <= 3 && distinct.len() == 2,
            "each state once: {context}: {seen:?}"
        );
    }
    assert!(hook
        .github
        .with(|s| s.statuses.iter().all(|st| st.sha == first)));

    // /retest reruns docs alone.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/retest"),
    )
    .await
    .unwrap();
    let rerun = eventually("a second docs run", WAIT, || async {
        let runs = runs_of(&env, "docs").await;
        Ok((runs.len() == 2).then_some(runs))
    })
    .await
    .unwrap();
    assert_eq!(
        runs_of(&env, "unit").await.len(),
        1,
        "unit passed: not rerun"
    );
    // A new commit aborts the rerun if it has not ended, and runs both on the new head.
    let pushed = Pr {
        sha: second.clone(),
        ..change.clone()
    };
    pushed.publish(
        &hook.github,
        &examples,
        &["docs/guide.md", "marker.txt"],
        &base,
    );
    hook.deliver(
        "pull_request",
        &pushed.event(&examples, "synchronize", "alice"),
    )
    .await
    .unwrap();
    let on = |runs: &[ProwJob], sha: &str| -> Vec<ProwJob> {
        runs.iter()
            .filter(|j| j.spec.refs.as_ref().unwrap().pulls[0].sha.as_deref() == Some(sha))
            .cloned()
            .collect()
    };
    let unit = ended(&env, "unit", 2).await;
    let newest = on(&unit, &second);
    assert_eq!(newest.len(), 1, "one unit run on the new head");
    assert_eq!(state(&newest[0]), Some(ProwJobState::Success));
    let docs = ended(&env, "docs", 3).await;
    let api: Api<ProwJob> = env.api();
    let retest = rerun
        .iter()
        .find(|j| j.name_any() != first_docs)
        .expect("the rerun");
    let retest = api.get(&retest.name_any()).await.unwrap();
    assert!(retest.is_complete());
    if state(&retest) == Some(ProwJobState::Aborted) {
        assert!(
            kind_tests::operator::description(&retest).contains("changed"),
            "{:?}",
            retest.status
        );
    }
    assert_eq!(on(&docs, &second).len(), 1, "one docs run on the new head");

    // An outsider's pull request waits for a member's /ok-to-test.
    let outsider = Pr {
        number: 2,
        author: "mallory".into(),
        sha: outsider_sha,
        ..change.clone()
    };
    outsider.publish(&hook.github, &examples, &["marker.txt"], &base);
    hook.deliver(
        "pull_request",
        &outsider.event(&examples, "opened", "mallory"),
    )
    .await
    .unwrap();
    eventually("needs-ok-to-test", WAIT, || async {
        Ok(hook
            .github
            .labels_of(&outsider.key())
            .contains(&"needs-ok-to-test".to_string())
            .then_some(()))
    })
    .await
    .unwrap();
    let of_pull_2 = |runs: Vec<ProwJob>| {
        runs.into_iter()
            .filter(|j| j.spec.refs.as_ref().is_some_and(|r| r.pulls[0].number == 2))
            .count()
    };
    assert_eq!(
        of_pull_2(runs_of(&env, "unit").await),
        0,
        "no run before /ok-to-test"
    );
    hook.deliver(
        "issue_comment",
        &outsider.comment(&examples, "alice", "/ok-to-test"),
    )
    .await
    .unwrap();
    let unit = ended(&env, "unit", 3).await;
    assert_eq!(of_pull_2(unit.clone()), 1);
    let pull_2: Vec<&ProwJob> = unit
        .iter()
        .filter(|j| j.spec.refs.as_ref().unwrap().pulls[0].number == 2)
        .collect();
    assert_eq!(
        state(pull_2[0]),
        Some(ProwJobState::Success),
        "pull 2 merged too"
    );

    // A push to main runs the postsubmit on the pushed commit.
    hook.deliver(
        "push",
        &push_event(
            &examples,
            ORG,
            &repo_name,
            "refs/heads/main",
            &base,
            &["base.txt"],
        ),
    )
    .await
    .unwrap();
    let post = ended(&env, "post", 1).await;
    assert_eq!(
        state(&post[0]),
        Some(ProwJobState::Success),
        "{:?}",
        post[0].status
    );
}
