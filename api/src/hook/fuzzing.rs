//! The fuzz target of prow-hook's intake (`fuzz/fuzz_targets/hook_delivery.rs`) and the test
//! that replays its seeds and corpus on every `cargo test`: any bytes as a delivery of any event
//! go through every rule a delivery reaches after its signature (reading the payload, the
//! repository for the secret, the commands, which jobs run, the runs, the reports), which must
//! never panic.

use std::collections::BTreeSet;

use super::commands::Commands;
use super::events::{Event, PullRequest, Repository};
use super::select::{self, Filter};
use super::{report, runs, secrets, trust};
use crate::jobdefinition::JobDefinition;

const EVENTS: [&str; 5] = [
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "push",
    "ping",
];

fn definitions() -> Vec<JobDefinition> {
    let yaml = |name: &str, fields: &str| {
        serde_yaml::from_str::<JobDefinition>(&format!(
            "metadata: {{name: {name}, namespace: jobs}}\nspec:\n  repo: acme/widgets\n  \
             spec: {{containers: [{{image: busybox}}]}}\n{fields}"
        ))
        .expect("a fixed definition")
    };
    vec![
        yaml("unit", "  type: presubmit\n  always_run: true\n"),
        yaml(
            "docs",
            "  type: presubmit\n  run_if_changed: '^docs/'\n  branches: [main]\n",
        ),
        yaml(
            "code",
            "  type: presubmit\n  skip_if_only_changed: '\\.md$'\n  optional: true\n",
        ),
        yaml("e2e", "  type: presubmit\n  trigger: '(?m)^/run-e2e'\n"),
        yaml(
            "post",
            "  type: postsubmit\n  skip_branches: ['^release']\n",
        ),
    ]
}

/// One delivery: the first byte picks the event, the rest is its body.
pub fn delivery(data: &[u8]) {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(*pick) % EVENTS.len()];
    let _ = secrets::payload_repository(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = secrets::Secrets::parse(text).map(|s| s.tokens_for("acme/widgets").len());
        let _ = trust::HookConfig::parse(text).map(|c| c.trigger_for("acme", "widgets"));
    }
    let defs = definitions();
    let refs: Vec<&JobDefinition> = defs.iter().collect();
    match Event::parse(event, body) {
        Ok(Some(Event::PullRequest(e))) => {
            let _ = trust::pull_request_step(&e, "bot");
            let text = e.pull_request.body.clone().unwrap_or_default();
            pull_request(&refs, &e.repository, &e.pull_request, &text);
        }
        Ok(Some(Event::IssueComment(e))) => {
            let pr = PullRequest {
                number: e.issue.number,
                user: e.issue.user.clone(),
                ..PullRequest::default()
            };
            let text = e.comment.body.clone().unwrap_or_default();
            pull_request(&refs, &e.repository, &pr, &text);
        }
        Ok(Some(Event::Review(e))) => {
            let text = e.review.body.clone().unwrap_or_default();
            pull_request(&refs, &e.repository, &e.pull_request, &text);
        }
        Ok(Some(Event::Push(e))) => {
            let changes = e.changed_files();
            for def in &refs {
                if select::postsubmit_runs(def, e.branch(), &changes) == Ok(true) {
                    let _ = runs::postsubmit_run(def, &e, "fuzz").map(|job| report::due(&job));
                }
            }
        }
        Ok(None) | Err(_) => {}
    }
}

fn pull_request(defs: &[&JobDefinition], repo: &Repository, pr: &PullRequest, text: &str) {
    let commands = Commands::parse(text);
    let _ = select::job_list(defs, &pr.base.name, &pr.user.login);
    let contexts: BTreeSet<String> = text.lines().take(8).map(str::to_string).collect();
    for filter in [
        Filter::Automatic,
        Filter::Comment {
            commands,
            failed: contexts.clone(),
            all: contexts,
        },
    ] {
        let (candidates, _) = select::candidates(defs, &pr.base.name, &filter);
        let changes: Vec<String> = text
            .split_whitespace()
            .take(64)
            .map(str::to_string)
            .collect();
        let (chosen, _) = select::decide(candidates, Some(&changes));
        for def in chosen {
            if let Ok(mut job) = runs::presubmit_run(def, repo, pr, &pr.base.sha, "fuzz") {
                let _ = report::due(&job);
                job.status = Some(crate::ProwJobStatus {
                    state: Some(crate::ProwJobState::Failure),
                    ..Default::default()
                });
                let _ = report::comment_change(Some(text), &job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_hook_fuzz_seeds_and_corpus_replay_without_a_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for dir in ["seeds/hook_delivery", "corpus/hook_delivery"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
                continue;
            };
            for entry in entries {
                let body = std::fs::read(entry.expect("entry").path()).expect("readable");
                super::delivery(&body);
                replayed += 1;
            }
        }
        assert!(
            replayed >= 4,
            "only {replayed} inputs under {}",
            fuzz.display()
        );
    }
}
