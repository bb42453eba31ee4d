//! prow-hook against a real API server and the GitHub stand-in, fed GitHub's real payloads
//! (`@octokit/webhooks-examples`): pull requests, comments and pushes start the right ProwJobs
//! with upstream's refs; outsiders wait for `/ok-to-test`; new commits and closing abort older
//! runs; `/retest` reruns the failed; each state is reported once, also across a restart; the
//! failure comment follows the jobs; hostile deliveries are answered clearly and start nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use kind_tests::hook::{push_event, Examples, Hook, Pr};
use kind_tests::operator::eventually;
use kind_tests::TestEnv;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use prow_api::hook::events::Event;
use prow_api::jobdefinition::JobDefinition;
use prow_api::{ProwJob, ProwJobState};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const ORG: &str = "acme";
const REPO: &str = "widgets";

fn definition(name: &str, fields: Value) -> JobDefinition {
    let mut spec = json!({
        "type": "presubmit",
        "repo": format!("{ORG}/{REPO}"),
        "spec": {"containers": [{"name": "test", "image": "busybox", "command": ["true"]}]},
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), fields.as_object()) {
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

/// always_run `unit`, `docs` when docs/ changed, `api` when api/ changed, `e2e` only on demand,
/// `lint` always and optional, and a postsubmit `post-main` on main.
async fn define_jobs(env: &TestEnv) {
    let api: Api<JobDefinition> = env.api();
    for def in [
        definition("unit", json!({"always_run": true})),
        definition("docs", json!({"run_if_changed": "^docs/"})),
        definition("api", json!({"run_if_changed": "^api/"})),
        definition("e2e", json!({})),
        definition("lint", json!({"always_run": true, "optional": true})),
        definition(
            "post-main",
            json!({"type": "postsubmit", "branches": ["^main$"]}),
        ),
    ] {
        api.create(&PostParams::default(), &def)
            .await
            .expect("definition");
    }
}

fn pr(number: i64, author: &str, sha: &str) -> Pr {
    Pr {
        org: ORG.into(),
        repo: REPO.into(),
        number,
        author: author.into(),
        sha: sha.into(),
        base: "main".into(),
        labels: Vec::new(),
        draft: false,
    }
}

/// Starts the hook once the definitions are in its cache (a delivery before that would find no
/// job).
async fn hook(env: &TestEnv, config: &str) -> Hook {
    let hook = Hook::start(env, config, &[]).await.expect("prow-hook");
    hook.github.with(|s| {
        s.members
            .entry(ORG.into())
            .or_default()
            .insert("alice".into());
    });
    hook
}

async fn runs(env: &TestEnv) -> Vec<ProwJob> {
    let api: Api<ProwJob> = env.api();
    let mut items = api.list(&ListParams::default()).await.expect("runs").items;
    items.sort_by_key(|j| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    });
    items
}

fn jobs_of(runs: &[ProwJob]) -> BTreeSet<String> {
    runs.iter().map(|j| j.spec.job.clone()).collect()
}

/// Waits until exactly the runs of `want` exist (and stay so for a moment).
async fn expect_jobs(env: &TestEnv, want: &[&str]) -> Vec<ProwJob> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let found = eventually("the runs", WAIT, || async {
        let now = runs(env).await;
        Ok((jobs_of(&now) == want).then_some(now))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: want {want:?}, have {:?}", jobs_of(&futures_now(env))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = runs(env).await;
    assert_eq!(
        after.len(),
        found.len(),
        "no more runs than {want:?}: {:?}",
        jobs_of(&after)
    );
    after
}

fn futures_now(env: &TestEnv) -> Vec<ProwJob> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(runs(env)))
}

fn state(job: &ProwJob) -> Option<ProwJobState> {
    job.status.as_ref().and_then(|s| s.state)
}

async fn set_state(env: &TestEnv, name: &str, state: &str) {
    let api: Api<ProwJob> = env.api();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": state, "description": format!("Job {state}."), "url": format!("https://prow.example/view/{name}")}})),
    )
    .await
    .expect("status");
}

/// Waits until `github` was sent a status `state` for `context`.
async fn reported(github: &kind_tests::github::FakeGitHub, context: &str, state: &str) {
    eventually(&format!("{context} {state}"), WAIT, || async {
        Ok(github
            .statuses()
            .iter()
            .any(|s| s.context == context && s.state == state)
            .then_some(()))
    })
    .await
    .unwrap()
}

fn setup() -> Option<Examples> {
    Examples::load().expect("examples")
}

#[test]
fn every_real_payload_of_the_events_acted_on_reads() {
    let Some(examples) = setup() else { return };
    let mut read = 0;
    for event in [
        "pull_request",
        "issue_comment",
        "pull_request_review",
        "push",
    ] {
        for example in examples.all(event) {
            let body = serde_json::to_vec(&example).unwrap();
            let parsed = Event::parse(event, &body).unwrap_or_else(|e| panic!("{e}"));
            assert!(parsed.is_some(), "{event} is acted on");
            read += 1;
        }
    }
    assert!(read >= 40, "{read} examples");
    assert_eq!(
        Event::parse(
            "check_run",
            &serde_json::to_vec(&examples.one("check_run", None)).unwrap()
        )
        .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_pull_request_runs_its_presubmits_by_their_files_with_upstreams_refs() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-open").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let change = pr(11, "alice", "a11");
    change.publish(
        &hook.github,
        &examples,
        &["docs/guide.md", "README.md"],
        "base-1",
    );
    let guid = hook
        .deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    let made = expect_jobs(&env, &["unit", "docs", "lint"]).await;
    for job in &made {
        let labels = job.labels();
        assert_eq!(labels["event-GUID"], guid);
        assert_eq!(labels["prow.k8s.io/refs.pull"], "11");
        assert_eq!(labels["prow.k8s.io/type"], "presubmit");
        let refs = job.spec.refs.as_ref().unwrap();
        assert_eq!(
            (
                refs.org.as_str(),
                refs.repo.as_str(),
                refs.base_ref.as_str()
            ),
            (ORG, REPO, "main")
        );
        assert_eq!(
            refs.base_sha, "base-1",
            "the base branch's head, asked of GitHub"
        );
        let pull = &refs.pulls[0];
        assert_eq!(
            (pull.number, pull.sha.as_deref(), pull.author.as_deref()),
            (11, Some("a11"), Some("alice"))
        );
        assert_eq!(pull.link, "https://github.com/acme/widgets/pull/11");
        assert!(job.spec.report);
    }
    // The changed files were asked for once.
    let asked = hook.github.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.contains("/pulls/11/files"))
            .count()
    });
    assert_eq!(asked, 1);
    // A redelivery of the same delivery starts nothing again.
    let payload = change.event(&examples, "opened", "alice");
    let (status, body) = hook
        .deliver_as("pull_request", &guid, &payload)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // `/test e2e` starts the job named; `/test` alone answers with the list.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "Please:\n/test e2e\n"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["unit", "docs", "lint", "e2e"]).await;
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/test"),
    )
    .await
    .unwrap();
    let listed = eventually("the job list", WAIT, || async {
        Ok(hook
            .github
            .comments_on(&change.key())
            .into_iter()
            .find(|c| c.body.contains("needs the name of a job")))
    })
    .await
    .unwrap();
    assert!(
        listed.body.contains("`/test e2e`") && listed.body.contains("`/test unit`"),
        "{}",
        listed.body
    );
    // A comment in a code block, and one by the bot, start nothing.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "```\n/test api\n```"),
    )
    .await
    .unwrap();
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "prow-bot", "/test api"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["unit", "docs", "lint", "e2e"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsiders_pull_request_waits_for_ok_to_test_from_a_member() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-outsider").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let change = pr(12, "mallory", "m12");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver(
        "pull_request",
        &change.event(&examples, "opened", "mallory"),
    )
    .await
    .unwrap();
    eventually("needs-ok-to-test", WAIT, || async {
        Ok(hook
            .github
            .labels_of(&change.key())
            .contains(&"needs-ok-to-test".to_string())
            .then_some(()))
    })
    .await
    .unwrap();
    let welcome = hook.github.comments_on(&change.key());
    assert!(
        welcome
            .iter()
            .any(|c| c.body.contains("@mallory") && c.body.contains("/ok-to-test")),
        "{welcome:?}"
    );
    // The outsider cannot start jobs, not even with /ok-to-test.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "mallory", "/ok-to-test\n/test all"),
    )
    .await
    .unwrap();
    eventually("the refusal", WAIT, || async {
        Ok(hook
            .github
            .comments_on(&change.key())
            .into_iter()
            .find(|c| c.body.contains("cannot be started")))
    })
    .await
    .unwrap();
    assert!(runs(&env).await.is_empty());
    // A member's /ok-to-test swaps the labels and runs what runs by itself.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/ok-to-test"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["unit", "lint"]).await;
    let labels = hook.github.labels_of(&change.key());
    assert!(
        labels.contains(&"ok-to-test".to_string())
            && !labels.contains(&"needs-ok-to-test".to_string()),
        "{labels:?}"
    );
    // Now trusted, the outsider may ask for a job.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "mallory", "/test e2e"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["unit", "lint", "e2e"]).await;
    // /ok-to-test cancel from a member swaps them back.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/ok-to-test cancel"),
    )
    .await
    .unwrap();
    eventually("labels swapped back", WAIT, || async {
        let labels = hook.github.labels_of(&change.key());
        Ok((labels.contains(&"needs-ok-to-test".to_string())
            && !labels.contains(&"ok-to-test".to_string()))
        .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn new_commits_and_closing_abort_older_runs_and_retest_reruns_the_failed() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-sync").await.expect("env");
    define_jobs(&env).await;
    // The operator aborts a run a newer one supersedes (a /retest), as upstream's plank; its
    // pods stay unscheduled here (no node), so the runs stay unfinished.
    let _operator = kind_tests::operator::start_operator(&env, &[]).expect("operator");
    // Not reporting: the test sets the pull request's statuses itself.
    let hook = Hook::start(&env, "", &["--report=false"])
        .await
        .expect("prow-hook");
    hook.github.with(|s| {
        s.members
            .entry(ORG.into())
            .or_default()
            .insert("alice".into());
    });
    let first = pr(13, "alice", "s1");
    first.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver("pull_request", &first.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    let old = expect_jobs(&env, &["unit", "lint"]).await;
    // A new commit: the old runs are aborted (and never reported), new ones made.
    let second = Pr {
        sha: "s2".into(),
        ..first.clone()
    };
    second.publish(&hook.github, &examples, &["main.go"], "base-2");
    hook.deliver(
        "pull_request",
        &second.event(&examples, "synchronize", "alice"),
    )
    .await
    .unwrap();
    let all = eventually("four runs", WAIT, || async {
        let now = runs(&env).await;
        Ok((now.len() == 4).then_some(now))
    })
    .await
    .unwrap();
    for job in &all {
        let is_old = old.iter().any(|o| o.name_any() == job.name_any());
        let sha = job.spec.refs.as_ref().unwrap().pulls[0]
            .sha
            .clone()
            .unwrap();
        if is_old {
            assert_eq!(
                state(job),
                Some(ProwJobState::Aborted),
                "{}",
                job.name_any()
            );
            assert_eq!(
                job.status.as_ref().unwrap().prev_report_states["github-reporter"],
                ProwJobState::Aborted
            );
        } else {
            assert_eq!(sha, "s2");
            assert_eq!(job.spec.refs.as_ref().unwrap().base_sha, "base-2");
            assert_ne!(state(job), Some(ProwJobState::Aborted));
        }
    }
    // unit fails and lint passes on s2: /retest reruns unit alone, and aborts the older unit.
    let newer: Vec<ProwJob> = all
        .iter()
        .filter(|j| state(j) != Some(ProwJobState::Aborted))
        .cloned()
        .collect();
    hook.github.with(|s| {
        for (context, state) in [("unit", "failure"), ("lint", "success")] {
            s.statuses.push(kind_tests::github::Status {
                repo: format!("{ORG}/{REPO}"),
                sha: "s2".into(),
                state: state.into(),
                context: context.into(),
                description: String::new(),
                target_url: String::new(),
            });
        }
    });
    // Which of two runs is newer is decided on their start times, which Kubernetes keeps to the
    // second: a rerun started in the same second as the run it replaces could go either way.
    // A person's /retest comes later than that; so does this one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    hook.deliver(
        "issue_comment",
        &second.comment(&examples, "alice", "/retest"),
    )
    .await
    .unwrap();
    let rerun = eventually("a rerun of unit", WAIT, || async {
        let now = runs(&env).await;
        Ok((now.len() == 5).then_some(now))
    })
    .await
    .unwrap();
    let units: Vec<&ProwJob> = rerun.iter().filter(|j| j.spec.job == "unit").collect();
    assert_eq!(units.len(), 3, "{:?}", jobs_of(&rerun));
    let first_unit_of_s2 = newer.iter().find(|j| j.spec.job == "unit").unwrap();
    let api: Api<ProwJob> = env.api();
    let replaced = eventually("the older unit run aborted", WAIT, || async {
        let job = api.get(&first_unit_of_s2.name_any()).await?;
        Ok((state(&job) == Some(ProwJobState::Aborted)).then_some(job))
    })
    .await
    .unwrap();
    assert_eq!(
        replaced.status.as_ref().unwrap().prev_report_states["github-reporter"],
        ProwJobState::Aborted,
        "never reported: the context keeps the rerun's state"
    );
    // Closing aborts everything unfinished.
    hook.deliver("pull_request", &second.event(&examples, "closed", "alice"))
        .await
        .unwrap();
    eventually("every run aborted", WAIT, || async {
        let now = runs(&env).await;
        Ok(now
            .iter()
            .all(|j| state(j) == Some(ProwJobState::Aborted))
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_main_starts_its_postsubmit_and_a_deleted_branch_nothing() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-push").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    hook.deliver(
        "push",
        &push_event(&examples, ORG, REPO, "refs/heads/dev", "d1", &["x"]),
    )
    .await
    .unwrap();
    let mut deleted = push_event(
        &examples,
        ORG,
        REPO,
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
        &["x"],
    );
    deleted["deleted"] = json!(true);
    hook.deliver("push", &deleted).await.unwrap();
    hook.deliver(
        "push",
        &push_event(&examples, ORG, REPO, "refs/heads/main", "p1", &["x"]),
    )
    .await
    .unwrap();
    let made = expect_jobs(&env, &["post-main"]).await;
    let refs = made[0].spec.refs.as_ref().unwrap();
    assert_eq!(
        (
            refs.base_ref.as_str(),
            refs.base_sha.as_str(),
            refs.pulls.len()
        ),
        ("main", "p1", 0)
    );
    assert_eq!(made[0].labels()["prow.k8s.io/type"], "postsubmit");
}

/// `PUSHES` pushes to main, each with its own commit `p<i>`, delivered at once.
async fn push_many(hook: &Hook, examples: &Examples) {
    let pushes: Vec<Value> = (0..PUSHES)
        .map(|i| {
            let sha = format!("p{i}");
            push_event(examples, ORG, REPO, "refs/heads/main", &sha, &["x"])
        })
        .collect();
    let answers =
        futures::future::join_all(pushes.iter().map(|push| hook.deliver("push", push))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

const PUSHES: usize = 40;

/// The commits the runs of `env` were made for.
async fn commits_run(env: &TestEnv) -> BTreeSet<String> {
    runs(env)
        .await
        .iter()
        .filter_map(|j| j.spec.refs.as_ref().map(|r| r.base_sha.clone()))
        .collect()
}

/// A rollout loses no delivery: what a stopping hook took in (answered 200 and queued) it
/// handles before it exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_hook_handles_every_delivery_it_took_in_before_it_exits() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-drain").await.expect("env");
    define_jobs(&env).await;
    // One worker and no delay, so that most pushes still wait in the queue at the signal.
    let hook = Hook::start(&env, "", &["--workers=1", "--grace-period=60s"])
        .await
        .expect("prow-hook");
    push_many(&hook, &examples).await;
    hook.process.signal_term().expect("SIGTERM");
    let at_signal = runs(&env).await.len();
    let exited =
        tokio::task::block_in_place(|| hook.process.exited_within(Duration::from_secs(60)));
    assert!(exited.expect("exited"), "a clean exit");
    // It exited: every run it was going to make is made.
    let commits = commits_run(&env).await;
    assert_eq!(
        commits.len(),
        PUSHES,
        "{at_signal} runs at SIGTERM; after the exit, runs of {commits:?}"
    );
    eprintln!("{at_signal} of {PUSHES} runs were made at SIGTERM; the rest after it");
}

/// Through its shutdown delay a stopping hook is unready, still takes deliveries, and asks
/// each connection to close after its answer (a proxy then dials a replica that stays).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_hook_takes_deliveries_through_its_delay_unready_closing_connections() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-delay").await.expect("env");
    define_jobs(&env).await;
    let hook = Hook::start(&env, "", &["--shutdown-delay=4s"])
        .await
        .expect("prow-hook");
    hook.process.signal_term().expect("SIGTERM");
    kind_tests::process::shutting_down(&hook.process.health).expect("/readyz during the delay");
    let late = hook
        .send(
            "push",
            &kind_tests::hook::guid(),
            &push_event(&examples, ORG, REPO, "refs/heads/main", "late", &["x"]),
        )
        .await
        .expect("a delivery during the delay");
    assert_eq!(late.status().as_u16(), 200);
    assert_eq!(
        late.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close"),
        "{:?}",
        late.headers()
    );
    let exited =
        tokio::task::block_in_place(|| hook.process.exited_within(Duration::from_secs(30)));
    assert!(exited.expect("exited"), "a clean exit");
    assert_eq!(
        commits_run(&env).await,
        BTreeSet::from(["late".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_state_is_reported_once_also_across_a_restart_and_the_failure_comment_follows() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-report").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let change = pr(14, "alice", "r14");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    let made = expect_jobs(&env, &["unit", "lint"]).await;
    let unit = made
        .iter()
        .find(|j| j.spec.job == "unit")
        .unwrap()
        .name_any();
    let lint = made
        .iter()
        .find(|j| j.spec.job == "lint")
        .unwrap()
        .name_any();
    // A job with no state yet is not reported; triggered then pending are, once each.
    set_state(&env, &unit, "triggered").await;
    set_state(&env, &lint, "triggered").await;
    reported(&hook.github, "unit", "pending").await;
    reported(&hook.github, "lint", "pending").await;
    set_state(&env, &unit, "failure").await;
    reported(&hook.github, "unit", "failure").await;
    let statuses = hook.github.statuses();
    let failure = statuses
        .iter()
        .find(|s| s.context == "unit" && s.state == "failure")
        .unwrap();
    assert_eq!(failure.sha, "r14");
    assert_eq!(failure.description, "Job failure. BaseSHA:base-1");
    assert_eq!(
        failure.target_url,
        format!("https://prow.example/view/{unit}")
    );
    let comment = eventually("the failure comment", WAIT, || async {
        Ok(hook
            .github
            .comments_on(&change.key())
            .into_iter()
            .find(|c| c.body.contains("<!-- test report -->")))
    })
    .await
    .unwrap();
    assert!(
        comment.body.contains("unit | r14 |") && comment.body.contains("`/test unit`"),
        "{}",
        comment.body
    );
    let api: Api<ProwJob> = env.api();
    eventually("recorded", WAIT, || async {
        let job = api.get(&unit).await?;
        Ok((job
            .status
            .unwrap()
            .prev_report_states
            .get("github-reporter")
            == Some(&ProwJobState::Failure))
        .then_some(()))
    })
    .await
    .unwrap();

    // Restarted, the hook reports nothing twice; a state reached while it was down is reported.
    let posted = hook.github.statuses().len();
    let Hook {
        github, process, ..
    } = hook;
    process.terminate().expect("stopped");
    set_state(&env, &lint, "success").await;
    let again = Hook::start(&env, "", &[]).await.expect("restarted");
    // The new hook has its own stand-in: copy the earlier comments so the failure comment is found.
    again
        .github
        .with(|s| s.comments = github.with(|old| old.comments.clone()));
    reported(&again.github, "lint", "success").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = again.github.statuses();
    assert_eq!(
        after.len(),
        1,
        "only lint's success, nothing twice: {after:?} (before: {posted})"
    );
    // unit passes: the failure comment goes.
    set_state(&env, &unit, "success").await;
    eventually("the comment deleted", WAIT, || async {
        Ok(again
            .github
            .comments_on(&change.key())
            .iter()
            .all(|c| !c.body.contains("<!-- test report -->"))
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_deliveries_get_clear_answers_and_start_nothing() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-hostile").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let change = pr(15, "alice", "h15");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    let payload = serde_json::to_vec(&change.event(&examples, "opened", "alice")).unwrap();
    let good = prow_hook::intake::sign(&hook.secret, &payload);
    let wrong = prow_hook::intake::sign("not-the-secret", &payload);
    let send = |method: reqwest::Method, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request = hook.request(method).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move {
            let answer = request.send().await.expect("answer");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        }
    };
    let full = |sig: &str| {
        vec![
            ("x-github-event", "pull_request".to_string()),
            ("x-github-delivery", kind_tests::hook::guid()),
            ("x-hub-signature-256", sig.to_string()),
            ("content-type", "application/json".to_string()),
        ]
    };
    let without = |name: &str| {
        full(&good)
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect::<Vec<_>>()
    };
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(reqwest::Method, Headers, Vec<u8>, u16, &str)> = vec![
        (
            reqwest::Method::GET,
            full(&good),
            Vec::new(),
            405,
            "only POST",
        ),
        (
            reqwest::Method::POST,
            without("x-github-event"),
            payload.clone(),
            400,
            "X-GitHub-Event",
        ),
        (
            reqwest::Method::POST,
            without("x-github-delivery"),
            payload.clone(),
            400,
            "X-GitHub-Delivery",
        ),
        (
            reqwest::Method::POST,
            without("x-hub-signature-256"),
            payload.clone(),
            403,
            "X-Hub-Signature-256",
        ),
        (
            reqwest::Method::POST,
            without("content-type"),
            payload.clone(),
            400,
            "content type",
        ),
        (
            reqwest::Method::POST,
            full(&wrong),
            payload.clone(),
            403,
            "does not match",
        ),
        (
            reqwest::Method::POST,
            full("sha256=nothex"),
            payload.clone(),
            403,
            "sha256=<hex>",
        ),
        (
            reqwest::Method::POST,
            full(&good),
            b"{\"action\": \"opened\"}".to_vec(),
            403,
            "does not match",
        ),
    ];
    for (method, headers, body, want, says) in cases {
        let (status, text) = send(method.clone(), headers.clone(), body).await;
        assert_eq!(status, want, "{method} {headers:?}: {text}");
        assert!(text.contains(says), "{text} should say {says}");
    }
    // 10 MB: over the limit.
    let big = vec![b' '; 10 * 1024 * 1024];
    let (status, text) = send(
        reqwest::Method::POST,
        full(&prow_hook::intake::sign(&hook.secret, &big)),
        big,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    // Malformed JSON, correctly signed: 400 with serde's reason.
    let bad = b"{\"action\": \"opened\", \"pull_request\": 7}".to_vec();
    let (status, text) = send(
        reqwest::Method::POST,
        full(&prow_hook::intake::sign(&hook.secret, &bad)),
        bad,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("pull_request payload is not valid"), "{text}");
    // An event not acted on: acknowledged.
    let ping = serde_json::to_vec(&examples.one("ping", None)).unwrap();
    let mut headers = full(&prow_hook::intake::sign(&hook.secret, &ping));
    headers[0].1 = "ping".into();
    let (status, text) = send(reqwest::Method::POST, headers, ping).await;
    assert_eq!(
        (status, text.contains("not acted on")),
        (200, true),
        "{text}"
    );
    assert!(runs(&env).await.is_empty(), "nothing started");
    // A comment with 1,000 /test lines starts each named job once.
    let many = "/test e2e\n".repeat(1000);
    hook.deliver("issue_comment", &change.comment(&examples, "alice", &many))
        .await
        .unwrap();
    expect_jobs(&env, &["e2e"]).await;
    // Still up.
    assert_eq!(
        kind_tests::process::http_status(&hook.process.health, "/healthz").unwrap(),
        200
    );
    let metrics = kind_tests::process::http_get(&hook.process.health, "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("prow_hook_refused_deliveries_total{code=\"403\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_app_calls_with_installation_tokens_made_again_before_they_expire() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-app").await.expect("env");
    define_jobs(&env).await;
    // An app's key as GitHub hands it out (PKCS#1 PEM), and its public half for the stand-in.
    let keys = kind_tests::hook::Files(std::env::temp_dir().join(format!("app-{}", env.namespace)));
    std::fs::create_dir_all(&keys.0).unwrap();
    let key = keys.0.join("app.pem");
    let public = keys.0.join("app.pub");
    for args in [
        vec![
            "genrsa",
            "-traditional",
            "-out",
            key.to_str().unwrap(),
            "2048",
        ],
        vec![
            "rsa",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let done = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    // No plain token is accepted: only the app's JWT and its installation tokens.
    let github = kind_tests::github::FakeGitHub::start("", "unused")
        .await
        .unwrap();
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_pem(&std::fs::read(&public).unwrap()).unwrap();
    github.with(|s| {
        s.app = Some(kind_tests::github::AppState {
            id: "4242".into(),
            slug: "prow-app".into(),
            key: decoding,
            installations: [(ORG.to_string(), 77)].into(),
            // 3 s of use before the hook's 5-minute margin makes it take a new one.
            token_seconds: 303,
            issued: Default::default(),
        });
        s.members
            .entry(ORG.into())
            .or_default()
            .insert("alice".into());
    });
    let args = [
        "--github-app-id=4242".to_string(),
        format!("--github-app-private-key-path={}", key.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let hook = Hook::start_with(&env, github, "", &args)
        .await
        .expect("prow-hook");
    let minted = |hook: &Hook| {
        hook.github.with(|s| {
            s.calls
                .iter()
                .filter(|c| c.path.ends_with("/access_tokens"))
                .count()
        })
    };
    let change = pr(16, "alice", "g16");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    expect_jobs(&env, &["unit", "lint"]).await;
    assert_eq!(
        minted(&hook),
        1,
        "one installation token for the event's calls"
    );
    let refused: Vec<String> = hook.github.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.status == 401)
            .map(|c| c.path.clone())
            .collect()
    });
    assert!(refused.is_empty(), "every call authenticated: {refused:?}");
    let jwt_calls = hook
        .github
        .with(|s| s.calls.iter().filter(|c| c.path == "/app").count());
    assert_eq!(
        jwt_calls, 1,
        "the bot's name asked once, with the app's JWT"
    );
    // The app's own comments are its bot's (`prow-app[bot]`): they start nothing.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "prow-app[bot]", "/test e2e"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    expect_jobs(&env, &["unit", "lint"]).await;
    // Past its margin the token is made again.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/test e2e"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["unit", "lint", "e2e"]).await;
    assert_eq!(
        minted(&hook),
        2,
        "a new token once the first was near its expiry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_report_as_checks_each_run_is_a_check_run_with_its_logs_tail_and_retest_reads_them() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-checks").await.expect("env");
    // A decorated presubmit whose logs are in a directory bucket.
    let bucket =
        kind_tests::hook::Files(std::env::temp_dir().join(format!("bucket-{}", env.namespace)));
    std::fs::create_dir_all(&bucket.0).unwrap();
    let decoration = json!({"gcs_configuration": {"bucket": format!("file://{}", bucket.0.display()),
                                                  "path_strategy": "explicit"}});
    let api: Api<JobDefinition> = env.api();
    api.create(
        &PostParams::default(),
        &definition(
            "unit",
            json!({"always_run": true, "decorate": true, "decoration_config": decoration}),
        ),
    )
    .await
    .unwrap();
    let hook = Hook::start(&env, "", &["--report-as=checks"])
        .await
        .expect("prow-hook");
    hook.github.with(|s| {
        s.members
            .entry(ORG.into())
            .or_default()
            .insert("alice".into());
    });
    let change = pr(17, "alice", "c17");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    let made = expect_jobs(&env, &["unit"]).await;
    let name = made[0].name_any();
    set_state(&env, &name, "triggered").await;
    eventually("the queued check run", WAIT, || async {
        Ok(hook
            .github
            .with(|s| s.checks.first().map(|c| c.states.clone())))
    })
    .await
    .unwrap();
    let jobs: Api<ProwJob> = env.api();
    jobs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": "pending", "build_id": "17", "description": "Job running."}})),
    )
    .await
    .unwrap();
    // The log where the pod utilities would have put it.
    let job = jobs.get(&name).await.unwrap();
    let gcs =
        prow_api::decorate::options::Decoration::of(job.spec.decoration_config.as_ref().unwrap())
            .unwrap()
            .gcs_configuration;
    let path =
        prow_api::decorate::paths::run_path(&prow_api::pod::job_spec(&job, "17"), &gcs).unwrap();
    let log: String =
        (1..=300).map(|i| format!("step {i}\n")).collect::<String>() + "FAIL: widgets_test.go:12\n";
    std::fs::create_dir_all(bucket.0.join(&path)).unwrap();
    std::fs::write(bucket.0.join(&path).join("build-log.txt"), log).unwrap();
    set_state(&env, &name, "failure").await;
    let check = eventually("the completed check run", WAIT, || async {
        Ok(hook.github.with(|s| {
            s.checks
                .iter()
                .find(|c| c.states.last().is_some_and(|(st, _)| st == "completed"))
                .cloned()
        }))
    })
    .await
    .unwrap();
    assert_eq!(
        (
            check.name.as_str(),
            check.head_sha.as_str(),
            check.external_id.as_str()
        ),
        ("unit", "c17", name.as_str())
    );
    let states: Vec<(&str, &str)> = check
        .states
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(states.first(), Some(&("queued", "")), "{states:?}");
    assert_eq!(states.last(), Some(&("completed", "failure")), "{states:?}");
    assert!(states.contains(&("in_progress", "")), "{states:?}");
    assert_eq!(
        hook.github.with(|s| s.checks.len()),
        1,
        "one check run, updated"
    );
    assert!(
        check.text.contains("FAIL: widgets_test.go:12") && check.text.contains("step 300"),
        "{}",
        check.text
    );
    assert!(!check.text.contains("step 50\n"), "only the tail");
    assert!(hook.github.statuses().is_empty(), "no commit statuses");
    // /retest finds the failed check run and reruns unit.
    hook.deliver(
        "issue_comment",
        &change.comment(&examples, "alice", "/retest"),
    )
    .await
    .unwrap();
    eventually("a second unit run", WAIT, || async {
        Ok((runs(&env).await.len() == 2).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_and_unmergeable_pull_requests_start_no_automatic_job() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-draft").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let draft = Pr {
        draft: true,
        ..pr(18, "alice", "d18")
    };
    draft.publish(&hook.github, &examples, &["main.go"], "base-1");
    hook.deliver("pull_request", &draft.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    // A job named in a comment still runs on a draft.
    hook.deliver(
        "issue_comment",
        &draft.comment(&examples, "alice", "/test e2e"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["e2e"]).await;
    // Ready for review: the automatic jobs run.
    let ready = Pr {
        draft: false,
        ..draft.clone()
    };
    hook.deliver(
        "pull_request",
        &ready.event(&examples, "ready_for_review", "alice"),
    )
    .await
    .unwrap();
    expect_jobs(&env, &["e2e", "unit", "lint"]).await;
    // A pull request GitHub cannot merge starts nothing, not even when asked.
    let conflicted = pr(19, "alice", "m19");
    conflicted.publish(&hook.github, &examples, &["main.go"], "base-1");
    let mut opened = conflicted.event(&examples, "opened", "alice");
    opened["pull_request"]["mergeable"] = json!(false);
    hook.deliver("pull_request", &opened).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let of_19 = runs(&env)
        .await
        .into_iter()
        .filter(|j| j.spec.refs.as_ref().unwrap().pulls[0].number == 19)
        .count();
    assert_eq!(of_19, 0, "no run for an unmergeable pull request");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_failures_and_limits_are_waited_out_and_a_gone_commit_is_not_retried() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-limits").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    let change = pr(20, "alice", "l20");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    // The next three calls fail: a 502, a 503, then a rate limit with Retry-After: 1.
    hook.github.with(|s| s.fail_next.extend([502, 503, 429]));
    let start = std::time::Instant::now();
    hook.deliver("pull_request", &change.event(&examples, "opened", "alice"))
        .await
        .unwrap();
    let made = expect_jobs(&env, &["unit", "lint"]).await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "the Retry-After was waited out"
    );
    let failed = hook
        .github
        .with(|s| s.calls.iter().filter(|c| c.status >= 429).count());
    assert_eq!(failed, 3, "each failure answered once and tried again");
    // A status for a commit that is gone (a force-push) is not tried again, and the state is
    // still recorded as reported.
    hook.github.with(|s| {
        s.gone.insert("l20".into());
    });
    let unit = made
        .iter()
        .find(|j| j.spec.job == "unit")
        .unwrap()
        .name_any();
    set_state(&env, &unit, "pending").await;
    let api: Api<ProwJob> = env.api();
    eventually("recorded though not posted", WAIT, || async {
        let job = api.get(&unit).await?;
        Ok((job
            .status
            .unwrap()
            .prev_report_states
            .get("github-reporter")
            == Some(&ProwJobState::Pending))
        .then_some(()))
    })
    .await
    .unwrap();
    let tries = hook.github.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.ends_with("/statuses/l20") && c.status == 422)
            .count()
    });
    assert_eq!(tries, 1, "not tried again");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_in_the_description_and_in_reviews_and_an_ok_to_test_label_start_jobs() {
    let Some(examples) = setup() else { return };
    let env = TestEnv::new("hook-bodies").await.expect("env");
    define_jobs(&env).await;
    let hook = hook(&env, "").await;
    // The description of a new pull request is read as a comment.
    let change = pr(21, "alice", "b21");
    change.publish(&hook.github, &examples, &["main.go"], "base-1");
    let mut opened = change.event(&examples, "opened", "alice");
    opened["pull_request"]["body"] = json!("Fixes the widgets.\n/test e2e\n");
    hook.deliver("pull_request", &opened).await.unwrap();
    expect_jobs(&env, &["unit", "lint", "e2e"]).await;
    // A submitted review's body is too.
    let mut review = examples.one("pull_request_review", Some("submitted"));
    review["review"]["body"] = json!("Looks right.\n/test api");
    review["review"]["user"]["login"] = json!("alice");
    review["pull_request"] = change.pull_request(review["pull_request"].clone());
    review["repository"] = opened["repository"].clone();
    hook.deliver("pull_request_review", &review).await.unwrap();
    expect_jobs(&env, &["unit", "lint", "e2e", "api"]).await;
    // A member labelling an outsider's pull request ok-to-test runs its automatic jobs.
    let outsider = pr(22, "mallory", "o22");
    outsider.publish(&hook.github, &examples, &["main.go"], "base-1");
    let mut labeled = Pr {
        labels: vec!["ok-to-test".into()],
        ..outsider.clone()
    }
    .event(&examples, "labeled", "alice");
    labeled["label"] = json!({"name": "ok-to-test"});
    hook.deliver("pull_request", &labeled).await.unwrap();
    let of_22 = eventually("the outsider's runs", WAIT, || async {
        let n = runs(&env)
            .await
            .into_iter()
            .filter(|j| j.spec.refs.as_ref().unwrap().pulls[0].number == 22)
            .count();
        Ok((n == 2).then_some(n))
    })
    .await
    .unwrap();
    assert_eq!(of_22, 2, "unit and lint");
}
