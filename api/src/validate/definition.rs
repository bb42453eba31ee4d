//! Rules for JobDefinitions: upstream checkconfig's rules that apply to job config (trigger and
//! rerun command, branch and change regexes, the schedule), every ProwJob rule applied to the
//! run the definition makes (reused: a definition is checked by building its run and mapping
//! the run's field paths back to the definition's), and the rules between definitions
//! (duplicate jobs, contexts of overlapping presubmits).

use regex::Regex;

use super::{is_valid_job_name, prowjob, Config, Report, Violation};
use crate::jobdefinition::{agent_named, prowjob_for, DefinitionType, JobDefinition, RunRequest};
use crate::schedule::{retry_of, schedule_of};
use crate::Pull;

/// Every rule a JobDefinition must pass on its own.
pub fn definition(def: &JobDefinition, config: &Config) -> Vec<Violation> {
    let mut r = Report::new();
    let s = &def.spec;
    if !is_valid_job_name(def.job_name()) {
        r.add(
            "spec.name",
            format!(
                "{:?} is not a valid job name: use 1-63 letters, digits, '-', '.' or '_'",
                def.job_name()
            ),
        );
    }
    match s.job_type {
        DefinitionType::Periodic => {
            if !s.repo.is_empty() {
                r.add(
                    "spec.repo",
                    "is for presubmits and postsubmits: a periodic checks out extra_refs",
                );
            }
            if let Err((field, message)) = schedule_of(s) {
                r.add(field, message);
            }
            if let Err((field, message)) = retry_of(s) {
                r.add(field, message);
            }
        }
        DefinitionType::Presubmit | DefinitionType::Postsubmit => {
            if def.org_repo().is_none() {
                r.add(
                    "spec.repo",
                    format!(
                        "{:?} is not org/repo: name the repository the job belongs to",
                        s.repo
                    ),
                );
            }
            for (field, value) in [
                ("interval", &s.interval),
                ("minimum_interval", &s.minimum_interval),
                ("cron", &s.cron),
            ] {
                if !value.is_empty() {
                    r.add(
                        format!("spec.{field}"),
                        "is for periodics only: drop it or make the job a periodic",
                    );
                }
            }
            if s.retry.is_some() {
                r.add(
                    "spec.retry",
                    "is for periodics only: drop it or make the job a periodic",
                );
            }
        }
    }
    trigger_rules(def, &mut r);
    brancher_rules(def, &mut r);
    change_rules(def, &mut r);
    run_rules(def, config, &mut r);
    r.done()
}

fn trigger_rules(def: &JobDefinition, r: &mut Report) {
    let s = &def.spec;
    if s.job_type != DefinitionType::Presubmit {
        for (field, value) in [("trigger", &s.trigger), ("rerun_command", &s.rerun_command)] {
            if !value.is_empty() && s.job_type == DefinitionType::Periodic {
                r.add(format!("spec.{field}"), "is for presubmits only: drop it");
            }
        }
        return;
    }
    match (s.trigger.is_empty(), s.rerun_command.is_empty()) {
        (false, true) => r.add(
            "spec.rerun_command",
            "is required when trigger is set: give the command that matches trigger",
        ),
        (true, false) => r.add(
            "spec.trigger",
            "is required when rerun_command is set: give the regex that matches it",
        ),
        (false, false) => match Regex::new(&s.trigger) {
            Err(e) => r.add(
                "spec.trigger",
                format!("does not compile: {}", first_line(&e)),
            ),
            Ok(re) if !re.is_match(&s.rerun_command) => r.add(
                "spec.rerun_command",
                format!(
                    "{:?} does not match trigger {:?}: make the command trigger the job",
                    s.rerun_command, s.trigger
                ),
            ),
            Ok(_) => {}
        },
        (true, true) => {}
    }
}

fn brancher_rules(def: &JobDefinition, r: &mut Report) {
    let s = &def.spec;
    for (field, list) in [
        ("branches", &s.branches),
        ("skip_branches", &s.skip_branches),
    ] {
        if !list.is_empty() && s.job_type == DefinitionType::Periodic {
            r.add(
                format!("spec.{field}"),
                "is for presubmits and postsubmits only: drop it",
            );
        }
        for (i, branch) in list.iter().enumerate() {
            if let Err(e) = Regex::new(branch) {
                r.add(
                    format!("spec.{field}[{i}]"),
                    format!("{branch:?} does not compile: {}", first_line(&e)),
                );
            }
        }
    }
}

fn change_rules(def: &JobDefinition, r: &mut Report) {
    let s = &def.spec;
    for (field, value) in [
        ("run_if_changed", &s.run_if_changed),
        ("skip_if_only_changed", &s.skip_if_only_changed),
    ] {
        if value.is_empty() {
            continue;
        }
        if s.job_type == DefinitionType::Periodic {
            r.add(
                format!("spec.{field}"),
                "is for presubmits and postsubmits only: drop it",
            );
        }
        if let Err(e) = Regex::new(value) {
            r.add(
                format!("spec.{field}"),
                format!("does not compile: {}", first_line(&e)),
            );
        }
    }
    let always = s.always_run == Some(true);
    let exclusive = [
        ("always_run", always),
        ("run_if_changed", !s.run_if_changed.is_empty()),
        ("skip_if_only_changed", !s.skip_if_only_changed.is_empty()),
    ];
    let set: Vec<&str> = exclusive
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| *k)
        .collect();
    if set.len() > 1 {
        r.add(
            format!("spec.{}", set[1]),
            format!("{} are mutually exclusive: keep one", set.join(" and ")),
        );
    }
}

/// The ProwJob rules, on a run of the definition.
fn run_rules(def: &JobDefinition, config: &Config, r: &mut Report) {
    let sample = RunRequest {
        name: "validation".into(),
        trigger: "schedule".into(),
        base_ref: "main".into(),
        pulls: vec![Pull {
            number: 1,
            sha: Some("0".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let Ok(job) = prowjob_for(def, &sample) else {
        // An unknown agent or a bad repo: said above or below.
        if agent_named(&def.spec.agent).is_none() {
            r.add(
                "spec.agent",
                format!("{:?} is not an agent: use kubernetes", def.spec.agent),
            );
        }
        return;
    };
    for v in prowjob(&job, config) {
        // The run's name, refs and Prow's own labels are the sample's, not the user's.
        if v.field.starts_with("spec.refs") || v.field == "spec.job" {
            continue;
        }
        r.add(definition_field(&v.field), v.message);
    }
}

/// The definition's field that a field of its run comes from.
fn definition_field(run_field: &str) -> String {
    const MOVED: [(&str, &str); 3] = [
        ("spec.pod_spec", "spec.spec"),
        ("metadata.labels", "spec.labels"),
        ("metadata.annotations", "spec.annotations"),
    ];
    for (from, to) in MOVED {
        if let Some(rest) = run_field.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    run_field.to_string()
}

fn first_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Definitions that [`definition_collisions`] can find colliding share this key (their type,
/// and a periodic's job name or the others' repository), so a check of many definitions
/// compares each only with those of its group.
pub fn collision_group(def: &JobDefinition) -> (DefinitionType, &str) {
    match def.spec.job_type {
        DefinitionType::Periodic => (DefinitionType::Periodic, def.job_name()),
        other => (other, def.spec.repo.as_str()),
    }
}

/// Collisions of a definition with the others of its namespace: the same job name for the
/// same repository (or among periodics) on branches both run against, and the same context
/// for two presubmits of a repository on branches both run against.
pub fn definition_collisions<'a>(
    def: &JobDefinition,
    others: impl IntoIterator<Item = &'a JobDefinition>,
) -> Vec<Violation> {
    let mut r = Report::new();
    let me = def.metadata.name.as_deref().unwrap_or_default();
    for other in others {
        let them = other.metadata.name.as_deref().unwrap_or_default();
        if them == me || other.spec.job_type != def.spec.job_type {
            continue;
        }
        let same_repo =
            def.spec.job_type == DefinitionType::Periodic || other.spec.repo == def.spec.repo;
        if !same_repo || !branches_overlap(def, other) {
            continue;
        }
        if other.job_name() == def.job_name() {
            r.add(
                "spec.name",
                format!(
                    "job {:?} is already defined by JobDefinition {them}{}: job names must be unique",
                    def.job_name(),
                    repo_words(def)
                ),
            );
        } else if def.spec.job_type == DefinitionType::Presubmit && context(other) == context(def) {
            r.add(
                "spec.context",
                format!(
                    "context {:?} is already reported by JobDefinition {them}{}: give each presubmit its own context",
                    context(def),
                    repo_words(def)
                ),
            );
        }
    }
    r.done()
}

fn repo_words(def: &JobDefinition) -> String {
    match def.spec.job_type {
        DefinitionType::Periodic => String::new(),
        _ => format!(" for {} on overlapping branches", def.spec.repo),
    }
}

fn context(def: &JobDefinition) -> &str {
    if def.spec.context.is_empty() {
        def.job_name()
    } else {
        &def.spec.context
    }
}

/// Upstream's `Brancher.Intersects`: whether some branch runs both jobs.
pub fn branches_overlap(a: &JobDefinition, b: &JobDefinition) -> bool {
    let all = |d: &JobDefinition| d.spec.branches.is_empty() && d.spec.skip_branches.is_empty();
    if all(a) || all(b) {
        return true;
    }
    if !a.spec.branches.is_empty() {
        if !b.spec.branches.is_empty() {
            return a.spec.branches.iter().any(|x| b.spec.branches.contains(x));
        }
        return a.spec.branches.iter().any(|x| runs_on(b, x));
    }
    if b.spec.branches.is_empty() {
        // Both only skip branches: some branch is skipped by neither.
        return true;
    }
    branches_overlap(b, a)
}

/// Upstream's `Brancher.ShouldRun`: skip_branches win over branches; regexes unanchored.
fn runs_on(def: &JobDefinition, branch: &str) -> bool {
    let matches = |list: &[String]| Regex::new(&list.join("|")).is_ok_and(|re| re.is_match(branch));
    if !def.spec.skip_branches.is_empty() && matches(&def.spec.skip_branches) {
        return false;
    }
    def.spec.branches.is_empty() || matches(&def.spec.branches)
}

#[cfg(test)]
mod tests;
