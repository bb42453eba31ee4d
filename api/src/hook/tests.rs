use std::collections::BTreeSet;

use super::commands::Commands;
use super::events::{Event, PullRequestEvent, PushEvent};
use super::report::{self, CommentChange};
use super::runs::{self, REPORTER};
use super::select::{self, Filter};
use super::trust::{self, HookConfig, PullRequestStep};
use crate::jobdefinition::JobDefinition;
use crate::{ProwJobState, ProwJobStatus};

/// A presubmit (or another type) of acme/widgets with the fields given as YAML.
fn def(name: &str, fields: &str) -> JobDefinition {
    let kind = if fields.contains("type:") {
        ""
    } else {
        "  type: presubmit\n"
    };
    let yaml = format!(
        "metadata: {{name: {name}, namespace: jobs}}\nspec:\n{kind}  repo: acme/widgets\n  \
         spec: {{containers: [{{image: busybox}}]}}\n{}",
        fields
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let mut d: JobDefinition = serde_yaml::from_str(&yaml).expect("definition");
    d.metadata.namespace = Some("jobs".into());
    d
}

fn pr_event(action: &str, extra: serde_json::Value) -> PullRequestEvent {
    let mut v = serde_json::json!({
        "action": action, "number": 7,
        "pull_request": {"number": 7, "html_url": "https://github.com/acme/widgets/pull/7",
            "title": "Fix it", "user": {"login": "alice", "html_url": "https://github.com/alice"},
            "head": {"ref": "fix", "sha": "aaaa"}, "base": {"ref": "main", "sha": "bbbb"},
            "labels": []},
        "repository": {"name": "widgets", "full_name": "acme/widgets", "owner": {"login": "acme"},
            "html_url": "https://github.com/acme/widgets"},
        "sender": {"login": "alice"}
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            v.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("event")
}

fn names(defs: &[&JobDefinition]) -> Vec<String> {
    defs.iter().map(|d| d.job_name().to_string()).collect()
}

fn files(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn events_are_read_and_others_ignored() {
    assert_eq!(Event::parse("ping", b"{}").unwrap(), None);
    assert_eq!(Event::parse("check_run", b"not even json").unwrap(), None);
    let err = Event::parse("pull_request", b"{\"action\": 1}").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the pull_request payload is not valid"),
        "{err}"
    );
    let push: PushEvent = serde_json::from_value(serde_json::json!({
        "ref": "refs/tags/v1.0", "after": "0000000000000000000000000000000000000000",
        "repository": {"name": "w", "owner": {"login": "acme"}},
        "commits": [{"id": "1", "added": ["a", "b"], "modified": ["c"]},
                    {"id": "2", "removed": ["a"], "modified": ["d"]}]
    }))
    .unwrap();
    assert_eq!(push.branch(), "v1.0");
    assert!(push.is_deletion());
    assert_eq!(push.changed_files(), files(&["a", "b", "c", "d"]));
    let edited = pr_event(
        "edited",
        serde_json::json!({"changes": {"base": {"ref": {"from": "x"}}}}),
    );
    assert!(edited.base_changed());
    assert!(!pr_event("edited", serde_json::json!({"changes": {"title": {}}})).base_changed());
}

#[test]
fn commands_are_read_per_line_outside_code_blocks() {
    let cases: &[(&str, [bool; 6])] = &[
        // ok, cancel, all, retest, required, list
        ("/ok-to-test", [true, false, false, false, false, false]),
        (
            "/ok-to-test cancel\n",
            [false, true, false, false, false, false],
        ),
        (
            "looks good\n/test all\n",
            [false, false, true, false, false, false],
        ),
        ("/retest", [false, false, false, true, false, false]),
        ("/retest\r\n", [false, false, false, true, false, false]),
        (
            "/retest-required",
            [false, false, false, false, true, false],
        ),
        ("/test", [false, false, false, false, false, true]),
        ("please /retest", [false, false, false, false, false, false]),
        (
            "```\n/retest\n/test all\n```\n",
            [false, false, false, false, false, false],
        ),
        ("```\n/retest\n", [false, false, false, false, false, false]),
        ("/retesting", [false, false, false, false, false, false]),
    ];
    for (text, want) in cases {
        let c = Commands::parse(text);
        let got = [
            c.ok_to_test,
            c.ok_to_test_cancel,
            c.test_all,
            c.retest,
            c.retest_required,
            c.list_jobs,
        ];
        assert_eq!(&got, want, "{text:?}");
    }
    let many = "/test unit\n".repeat(1000);
    let c = Commands::parse(&many);
    assert!(c.has_commands());
    assert!(!Commands::parse("no commands here").has_commands());
}

#[test]
fn a_jobs_trigger_is_its_own_or_upstreams_default() {
    let unit = def("unit", "always_run: true");
    let custom = def("e2e", "trigger: '(?m)^/run-e2e$'\nrerun_command: /run-e2e");
    let cases = [
        (&unit, "/test unit", true),
        (&unit, "/test lint unit", true),
        (&unit, "/test unit, lint", true),
        (&unit, "/test unit-slow", false),
        (&unit, "/test units", false),
        (&unit, "x /test unit", false),
        (&unit, "```\n/test unit\n```", false),
        (&custom, "/run-e2e", true),
        (&custom, "/test e2e", false),
    ];
    for (d, text, want) in cases {
        assert_eq!(
            super::commands::triggers(d, &Commands::parse(text)),
            want,
            "{} {text:?}",
            d.job_name()
        );
    }
    assert_eq!(super::commands::rerun_command_of(&unit), "/test unit");
    assert_eq!(super::commands::rerun_command_of(&custom), "/run-e2e");
}

#[test]
fn branches_are_unanchored_and_skip_wins() {
    let cases = [
        ("", "main", true),
        ("branches: [main]", "main", true),
        ("branches: [main]", "main-old", true),
        ("branches: ['^main$']", "main-old", false),
        ("branches: ['^release-.*$']", "release-1.0", true),
        ("skip_branches: [release]", "release-1.0", false),
        ("branches: [main]\nskip_branches: [main]", "main", false),
        ("branches: ['^v\\d']", "v1.2", true),
    ];
    for (fields, branch, want) in cases {
        assert_eq!(
            select::branch_matches(&def("j", fields), branch),
            Ok(want),
            "{fields} on {branch}"
        );
    }
    assert!(select::branch_matches(&def("j", "branches: ['(']"), "main").is_err());
}

fn choose(defs: &[JobDefinition], filter: &Filter, changes: &[&str]) -> (Vec<String>, bool) {
    let refs: Vec<&JobDefinition> = defs.iter().collect();
    let (candidates, errors) = select::candidates(&refs, "main", filter);
    assert!(errors.is_empty(), "{errors:?}");
    let needed = select::needs_changes(&candidates);
    let changes = files(changes);
    let (run, errors) = select::decide(candidates, needed.then_some(changes.as_slice()));
    assert!(errors.is_empty(), "{errors:?}");
    (names(&run), needed)
}

fn repo_jobs() -> Vec<JobDefinition> {
    vec![
        def("unit", "always_run: true"),
        def("docs", "run_if_changed: '^docs/'"),
        def("code", "skip_if_only_changed: '\\.md$'"),
        def("manual", ""),
        def("old-branch", "always_run: true\nbranches: ['^release-1$']"),
        def("lint", "always_run: true\noptional: true"),
        def("periodic", "type: periodic\ninterval: 1h"),
    ]
}

#[test]
fn automatic_jobs_run_by_their_files() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["main.go"], &["unit", "code", "lint"]),
        (&["docs/a.md"], &["unit", "docs", "lint"]),
        (&["docs/a.md", "x.go"], &["unit", "docs", "code", "lint"]),
        (&["README.md"], &["unit", "lint"]),
        (&[], &["unit", "lint"]),
    ];
    for (changed, want) in cases {
        let (run, needed) = choose(&repo_jobs(), &Filter::Automatic, changed);
        assert!(needed, "docs and code need the files");
        assert_eq!(run, files(want), "{changed:?}");
    }
    let only_always = [def("unit", "always_run: true"), def("manual", "")];
    assert_eq!(
        choose(&only_always, &Filter::Automatic, &[]),
        (files(&["unit"]), false)
    );
}

fn comment(text: &str, failed: &[&str], all: &[&str]) -> Filter {
    let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    Filter::Comment {
        commands: Commands::parse(text),
        failed: set(failed),
        all: set(all),
    }
}

#[test]
fn comments_start_the_jobs_they_name_and_retests_the_failed_ones() {
    let everything = ["unit", "docs", "code", "lint"];
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        // text, failed contexts, contexts present, changed files, runs
        ("/test manual", &[], &everything, &["x.go"], &["manual"]),
        ("/test docs", &[], &everything, &["x.go"], &["docs"]),
        ("/test old-branch", &[], &everything, &["x.go"], &[]),
        (
            "/test manual unit",
            &[],
            &everything,
            &["x.go"],
            &["unit", "manual"],
        ),
        (
            "/test all",
            &[],
            &everything,
            &["x.go"],
            &["unit", "code", "lint"],
        ),
        (
            "/retest",
            &["unit", "lint"],
            &everything,
            &["x.go"],
            &["unit", "lint"],
        ),
        (
            "/retest",
            &["unit"],
            &["unit"],
            &["x.go"],
            &["unit", "code", "lint"],
        ),
        (
            "/retest-required",
            &["unit", "lint"],
            &everything,
            &["x.go"],
            &["unit"],
        ),
        ("/retest", &[], &everything, &["x.go"], &[]),
        ("/test", &[], &everything, &["x.go"], &[]),
        ("lgtm", &[], &everything, &["x.go"], &[]),
        ("```\n/test manual\n```", &[], &everything, &["x.go"], &[]),
    ];
    for (text, failed, all, changed, want) in cases {
        let (run, _) = choose(&repo_jobs(), &comment(text, failed, all), changed);
        assert_eq!(run, files(want), "{text:?} failed={failed:?}");
    }
}

#[test]
fn a_push_starts_the_postsubmits_of_its_branch() {
    let cases = [
        ("", "main", &["x"][..], true),
        ("branches: ['^main$']", "main", &["x"][..], true),
        ("branches: ['^main$']", "dev", &["x"][..], false),
        ("branches: ['^v.*']", "v1.0", &["x"][..], true),
        ("run_if_changed: '^docs/'", "main", &["x"][..], false),
        ("run_if_changed: '^docs/'", "main", &["docs/a"][..], true),
        ("always_run: false", "main", &["x"][..], false),
        (
            "always_run: false\nrun_if_changed: x",
            "main",
            &["x"][..],
            true,
        ),
    ];
    for (fields, branch, changed, want) in cases {
        let d = def("post", &format!("type: postsubmit\n{fields}"));
        assert_eq!(
            select::postsubmit_runs(&d, branch, &files(changed)),
            Ok(want),
            "{fields} {branch}"
        );
    }
    assert_eq!(
        select::postsubmit_runs(&def("pre", "always_run: true"), "main", &[]),
        Ok(false)
    );
}

#[test]
fn the_job_list_answers_a_bare_test() {
    let jobs = repo_jobs();
    let refs: Vec<&JobDefinition> = jobs.iter().collect();
    let text = select::job_list(&refs, "main", "bob");
    assert!(
        text.starts_with("@bob: `/test` needs the name of a job."),
        "{text}"
    );
    for line in [
        "* `/test unit`",
        "* `/test manual`",
        "* `/test lint`",
        "* docs",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("old-branch"), "{text}");
    assert!(select::job_list(&[], "main", "bob").contains("no presubmit"));
}

#[test]
fn runs_carry_upstreams_refs_labels_and_a_name_per_delivery() {
    let event = pr_event("opened", serde_json::json!({}));
    let d = def("pull-unit", "always_run: true\noptional: true");
    let job = runs::presubmit_run(
        &d,
        &event.repository,
        &event.pull_request,
        "cccc",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
    .unwrap();
    let again = runs::presubmit_run(
        &d,
        &event.repository,
        &event.pull_request,
        "cccc",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
    .unwrap();
    let other = runs::presubmit_run(
        &d,
        &event.repository,
        &event.pull_request,
        "cccc",
        "another",
    )
    .unwrap();
    assert_eq!(job.metadata.name, again.metadata.name);
    assert_ne!(job.metadata.name, other.metadata.name);
    assert!(job
        .metadata
        .name
        .as_ref()
        .unwrap()
        .starts_with("pull-unit-gh-"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["event-GUID"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(labels["prow.k8s.io/refs.pull"], "7");
    assert_eq!(labels["prow.k8s.io/type"], "presubmit");
    assert_eq!(labels["prow-operator.dev/trigger"], "github");
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[runs::OPTIONAL_ANNOTATION],
        "true"
    );
    let refs = job.spec.refs.as_ref().unwrap();
    assert_eq!(
        (refs.base_ref.as_str(), refs.base_sha.as_str()),
        ("main", "cccc")
    );
    assert_eq!(
        refs.base_link,
        "https://github.com/acme/widgets/commit/cccc"
    );
    let pull = &refs.pulls[0];
    assert_eq!(
        (pull.number, pull.sha.as_deref(), pull.author.as_deref()),
        (7, Some("aaaa"), Some("alice"))
    );
    assert_eq!(
        pull.commit_link,
        "https://github.com/acme/widgets/pull/7/commits/aaaa"
    );
    assert_eq!(job.spec.context, "pull-unit");

    let patch = runs::abort_patch("newer");
    assert_eq!(patch["status"]["state"], "aborted");
    assert_eq!(patch["status"]["prev_report_states"][REPORTER], "aborted");
    assert_eq!(
        runs::pull_selector("acme", "widgets", 7),
        "prow.k8s.io/type=presubmit,prow.k8s.io/refs.org=acme,prow.k8s.io/refs.repo=widgets,prow.k8s.io/refs.pull=7"
    );

    let push: PushEvent = serde_json::from_value(serde_json::json!({
        "ref": "refs/heads/main", "after": "dddd",
        "repository": {"name": "widgets", "owner": {"login": "acme"}, "html_url": "https://github.com/acme/widgets"}
    })).unwrap();
    let post = runs::postsubmit_run(&def("post", "type: postsubmit"), &push, "g").unwrap();
    let refs = post.spec.refs.as_ref().unwrap();
    assert_eq!(
        (
            refs.base_ref.as_str(),
            refs.base_sha.as_str(),
            refs.pulls.len()
        ),
        ("main", "dddd", 0)
    );
}

fn reported(state: ProwJobState, prev: Option<ProwJobState>, description: &str) -> crate::ProwJob {
    let event = pr_event("opened", serde_json::json!({}));
    let mut job = runs::presubmit_run(
        &def("pull-unit", "always_run: true"),
        &event.repository,
        &event.pull_request,
        "cccc",
        "g",
    )
    .unwrap();
    let mut status = ProwJobStatus {
        state: Some(state),
        description: description.into(),
        url: "https://prow.example/view/1".into(),
        ..Default::default()
    };
    if let Some(prev) = prev {
        status.prev_report_states.insert(REPORTER.into(), prev);
    }
    job.status = Some(status);
    job
}

#[test]
fn each_state_is_reported_once_as_upstream_maps_it() {
    let cases = [
        (ProwJobState::Triggered, None, Some("pending")),
        (
            ProwJobState::Pending,
            Some(ProwJobState::Triggered),
            Some("pending"),
        ),
        (ProwJobState::Pending, Some(ProwJobState::Pending), None),
        (
            ProwJobState::Success,
            Some(ProwJobState::Pending),
            Some("success"),
        ),
        (ProwJobState::Failure, None, Some("failure")),
        (ProwJobState::Aborted, None, Some("failure")),
        (ProwJobState::Aborted, Some(ProwJobState::Aborted), None),
        (ProwJobState::Error, None, Some("error")),
    ];
    for (state, prev, want) in cases {
        let status = report::due(&reported(state, prev, "Job ran."));
        assert_eq!(
            status.as_ref().map(|s| s.state),
            want,
            "{state:?} after {prev:?}"
        );
        if let Some(s) = status {
            assert_eq!(
                (s.org.as_str(), s.repo.as_str(), s.sha.as_str()),
                ("acme", "widgets", "aaaa")
            );
            assert_eq!(s.context, "pull-unit");
            assert_eq!(s.description, "Job ran. BaseSHA:cccc");
            assert_eq!(s.target_url, "https://prow.example/view/1");
        }
    }
    let mut quiet = reported(ProwJobState::Success, None, "");
    quiet.spec.report = false;
    assert_eq!(report::due(&quiet), None);
    let mut periodic = reported(ProwJobState::Success, None, "");
    periodic.spec.job_type = Some(crate::ProwJobType::Periodic);
    assert_eq!(report::due(&periodic), None);
    assert_eq!(
        report::due(&reported(ProwJobState::Success, None, ""))
            .unwrap()
            .description,
        "Job succeeded. BaseSHA:cccc"
    );
}

#[test]
fn descriptions_fit_in_140_characters_with_the_base_sha_whole() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let long = format!("start {} end", "x".repeat(300));
    let text = report::with_base_sha(&long, sha);
    assert_eq!(text.chars().count(), 140);
    assert!(
        text.starts_with("start ") && text.ends_with(&format!("end BaseSHA:{sha}")),
        "{text}"
    );
    assert!(text.contains(" ... "));
    assert_eq!(report::with_base_sha("short", ""), "short");
    let wide = "é".repeat(200);
    assert_eq!(report::with_base_sha(&wide, "").chars().count(), 140);
}

#[test]
fn the_failure_comment_follows_the_jobs() {
    let fail = reported(ProwJobState::Failure, None, "");
    let CommentChange::Create(first) = report::comment_change(None, &fail) else {
        panic!("a failure makes a comment");
    };
    assert!(first.starts_with("@alice: "), "{first}");
    assert!(
        first.contains(
            "pull-unit | aaaa | [link](https://prow.example/view/1) | true | `/test pull-unit`"
        ),
        "{first}"
    );
    assert!(first.trim_end().ends_with(report::MARKER));
    assert_eq!(report::rows_of(&first).len(), 1);
    // The same failure again changes nothing; a failure of another job recreates it with both.
    assert_eq!(
        report::comment_change(Some(&first), &fail),
        CommentChange::Nothing
    );
    let mut lint = reported(ProwJobState::Error, None, "");
    lint.spec.context = "pull-lint".into();
    lint.spec.job = "pull-lint".into();
    let CommentChange::Create(both) = report::comment_change(Some(&first), &lint) else {
        panic!("a new failure recreates the comment");
    };
    assert_eq!(report::rows_of(&both).len(), 2);
    // One passing: edited down to the other; the last passing: deleted.
    let pass = reported(ProwJobState::Success, None, "");
    let CommentChange::Edit(one) = report::comment_change(Some(&both), &pass) else {
        panic!("a job passing edits the comment");
    };
    let rows = report::rows_of(&one);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].context, "pull-lint");
    let mut lint_pass = pass.clone();
    lint_pass.spec.context = "pull-lint".into();
    assert_eq!(
        report::comment_change(Some(&one), &lint_pass),
        CommentChange::Delete
    );
    // Running, aborted, passing without a row, and postsubmits change nothing.
    assert_eq!(
        report::comment_change(Some(&one), &reported(ProwJobState::Pending, None, "")),
        CommentChange::Nothing
    );
    assert_eq!(
        report::comment_change(Some(&one), &reported(ProwJobState::Aborted, None, "")),
        CommentChange::Nothing
    );
    assert_eq!(report::comment_change(None, &pass), CommentChange::Nothing);
}

#[test]
fn each_pull_request_action_takes_upstreams_step() {
    let ok = serde_json::json!({"label": {"name": "ok-to-test"}, "sender": {"login": "carol"}});
    let by_bot =
        serde_json::json!({"label": {"name": "ok-to-test"}, "sender": {"login": "Prow-Bot"}});
    let other_label = serde_json::json!({"label": {"name": "lgtm"}, "sender": {"login": "carol"}});
    let base = serde_json::json!({"changes": {"base": {"ref": {"from": "old"}}}});
    let cases = [
        ("opened", serde_json::json!({}), PullRequestStep::Opened),
        (
            "reopened",
            serde_json::json!({}),
            PullRequestStep::RunIfTrusted { abort_first: false },
        ),
        (
            "ready_for_review",
            serde_json::json!({}),
            PullRequestStep::RunIfTrusted { abort_first: false },
        ),
        (
            "synchronize",
            serde_json::json!({}),
            PullRequestStep::RunIfTrusted { abort_first: true },
        ),
        (
            "edited",
            base,
            PullRequestStep::RunIfTrusted { abort_first: true },
        ),
        (
            "edited",
            serde_json::json!({"changes": {"title": {"from": "x"}}}),
            PullRequestStep::Nothing,
        ),
        ("labeled", ok, PullRequestStep::OkToTestLabeled),
        ("labeled", by_bot, PullRequestStep::Nothing),
        ("labeled", other_label, PullRequestStep::Nothing),
        ("closed", serde_json::json!({}), PullRequestStep::Abort),
        (
            "converted_to_draft",
            serde_json::json!({}),
            PullRequestStep::Abort,
        ),
        ("assigned", serde_json::json!({}), PullRequestStep::Nothing),
    ];
    for (action, extra, want) in cases {
        assert_eq!(
            trust::pull_request_step(&pr_event(action, extra), "prow-bot"),
            want,
            "{action}"
        );
    }
}

#[test]
fn settings_are_found_by_repository_then_organisation() {
    let config = HookConfig::parse(
        "plugins: {acme: [trigger]}\ntriggers:\n- repos: [acme]\n  trusted_apps: [dependabot]\n- repos: [acme/secret]\n  only_org_members: true\n  ignore_ok_to_test: true\n",
    )
    .unwrap();
    assert!(config.trigger_for("acme", "secret").only_org_members);
    assert_eq!(
        config.trigger_for("acme", "widgets").trusted_apps,
        ["dependabot"]
    );
    assert_eq!(config.trigger_for("other", "x"), Default::default());
    let acme = config.trigger_for("acme", "widgets");
    assert_eq!(trust::app_trust("dependabot[bot]", &acme), Some(true));
    assert_eq!(trust::app_trust("renovate[bot]", &acme), Some(false));
    assert_eq!(trust::app_trust("alice", &acme), None);
    let err = HookConfig::parse("triggers:\n- repos: [a]\n  trusted_app: [x]\n").unwrap_err();
    assert!(err.contains("trusted_app"), "{err}");
    assert_eq!(HookConfig::parse("").unwrap(), HookConfig::default());
    assert!(trust::welcome("eve", "acme", &acme).contains("@eve"));
}

#[test]
fn check_runs_follow_the_job_and_carry_the_logs_tail() {
    let cases = [
        (ProwJobState::Triggered, ("queued", None)),
        (ProwJobState::Pending, ("in_progress", None)),
        (ProwJobState::Success, ("completed", Some("success"))),
        (ProwJobState::Failure, ("completed", Some("failure"))),
        (ProwJobState::Error, ("completed", Some("failure"))),
        (ProwJobState::Aborted, ("completed", Some("cancelled"))),
    ];
    for (state, (status, conclusion)) in cases {
        let check = report::check_due(&reported(state, None, "Job ran.")).expect("due");
        assert_eq!(
            (check.status, check.conclusion),
            (status, conclusion),
            "{state:?}"
        );
        assert_eq!(
            (check.head_sha.as_str(), check.name.as_str()),
            ("aaaa", "pull-unit")
        );
        assert_eq!(check.title, "Job ran.");
        assert!(check.external_id.starts_with("pull-unit-gh-"));
    }
    assert_eq!(
        report::check_due(&reported(
            ProwJobState::Success,
            Some(ProwJobState::Success),
            ""
        )),
        None
    );

    let log: String = (1..=500).map(|i| format!("line {i}\n")).collect();
    let tail = report::log_tail(&log, 100);
    assert!(
        tail.starts_with("The last 100 lines of the log (400 before them left out):"),
        "{tail}"
    );
    assert!(
        tail.contains("line 401\n") && tail.contains("line 500\n```"),
        "{tail}"
    );
    assert!(!tail.contains("line 400\n"));
    assert_eq!(
        report::log_tail("short\n", 100),
        "The log:\n\n```\nshort\n```\n"
    );
    let wide = format!("{}\n```evil\n", "é".repeat(100_000));
    let tail = report::log_tail(&wide, 100);
    assert!(tail.len() <= report::MAX_CHECK_TEXT, "{}", tail.len());
    assert_eq!(
        tail.matches("```").count(),
        2,
        "the log cannot close the code block"
    );
}
