//! Which jobs an event starts, as upstream's `ShouldRun`: the branch filter (`branches`,
//! `skip_branches`: unanchored regexes, skip wins), then `always_run`, then a command that
//! forces the job, then `run_if_changed` / `skip_if_only_changed` on the changed files, else the
//! filter's default. Two steps, so the changed files are fetched at most once per event and only
//! when a job's decision depends on them: [`candidates`] then [`decide`].

use std::collections::BTreeSet;

use regex::Regex;

use super::commands::{self, Commands};
use crate::jobdefinition::{DefinitionType, JobDefinition};

/// Whether a job may run against `branch` at all.
pub fn branch_matches(def: &JobDefinition, branch: &str) -> Result<bool, String> {
    let any = |patterns: &[String]| -> Result<bool, String> {
        let re = Regex::new(&patterns.join("|"))
            .map_err(|e| format!("branches of {}: {e}", def.job_name()))?;
        Ok(re.is_match(branch))
    };
    let s = &def.spec;
    if !s.skip_branches.is_empty() && any(&s.skip_branches)? {
        return Ok(false);
    }
    Ok(s.branches.is_empty() || any(&s.branches)?)
}

/// Whether the job has a file filter (`run_if_changed` or `skip_if_only_changed`).
pub fn has_file_filter(def: &JobDefinition) -> bool {
    !def.spec.run_if_changed.is_empty() || !def.spec.skip_if_only_changed.is_empty()
}

/// Whether a presubmit runs only when asked for by name (upstream's `NeedsExplicitTrigger`).
pub fn needs_explicit_trigger(def: &JobDefinition) -> bool {
    def.spec.always_run != Some(true) && !has_file_filter(def)
}

/// What the file filter decides for `changes`; `None` when the job has none.
pub fn files_decide(def: &JobDefinition, changes: &[String]) -> Result<Option<bool>, String> {
    let s = &def.spec;
    let compile = |pattern: &str, field: &str| {
        Regex::new(pattern).map_err(|e| format!("{field} of {}: {e}", def.job_name()))
    };
    if !s.run_if_changed.is_empty() {
        let re = compile(&s.run_if_changed, "run_if_changed")?;
        return Ok(Some(changes.iter().any(|f| re.is_match(f))));
    }
    if !s.skip_if_only_changed.is_empty() {
        let re = compile(&s.skip_if_only_changed, "skip_if_only_changed")?;
        return Ok(Some(changes.iter().any(|f| !re.is_match(f))));
    }
    Ok(None)
}

/// Why a set of presubmits is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// An event that runs what runs by itself (opened, synchronize, `/ok-to-test`, `/test all`):
    /// jobs that need no explicit trigger.
    Automatic,
    /// A comment: jobs its commands name (each job's trigger), `/test all`, `/retest` and
    /// `/retest-required` against the pull request's contexts.
    Comment {
        /// The comment's commands.
        commands: Commands,
        /// Contexts whose status is `failure` or `error`.
        failed: BTreeSet<String>,
        /// Every context with a status.
        all: BTreeSet<String>,
    },
}

/// A presubmit an event may start, with how its decision is made.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// The job.
    pub def: &'a JobDefinition,
    /// Named by a command: runs whatever its files (upstream's `forced`).
    pub forced: bool,
    /// What a job with no file filter does (upstream's `defaults`).
    pub default: bool,
}

/// The presubmits of `defs` (those of the pull request's repository) `filter` may start against
/// `branch`, before the changed files are looked at. Errors are the jobs whose regexes do not
/// compile (admission refuses them; these are logged and the job skipped).
pub fn candidates<'a>(
    defs: &[&'a JobDefinition],
    branch: &str,
    filter: &Filter,
) -> (Vec<Candidate<'a>>, Vec<String>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for def in defs.iter().copied() {
        if def.spec.job_type != DefinitionType::Presubmit {
            continue;
        }
        let wanted = match filter {
            Filter::Automatic => (!needs_explicit_trigger(def)).then_some((false, false)),
            Filter::Comment {
                commands: c,
                failed,
                all,
            } => {
                let context = context_of(def);
                let automatic = !needs_explicit_trigger(def);
                let retest = failed.contains(context) || (automatic && !all.contains(context));
                if commands::triggers(def, c) {
                    Some((true, true))
                } else if c.test_all || c.ok_to_test {
                    automatic.then_some((false, false))
                } else if (c.retest && retest)
                    || (c.retest_required && retest && !def.spec.optional)
                {
                    Some((false, true))
                } else {
                    None
                }
            }
        };
        let Some((forced, default)) = wanted else {
            continue;
        };
        match branch_matches(def, branch) {
            Ok(true) => out.push(Candidate {
                def,
                forced,
                default,
            }),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// Whether any candidate's decision needs the changed files.
pub fn needs_changes(candidates: &[Candidate<'_>]) -> bool {
    candidates
        .iter()
        .any(|c| c.def.spec.always_run != Some(true) && !c.forced && has_file_filter(c.def))
}

/// The candidates that run, given the changed files (`None` when [`needs_changes`] was false).
pub fn decide<'a>(
    candidates: Vec<Candidate<'a>>,
    changes: Option<&[String]>,
) -> (Vec<&'a JobDefinition>, Vec<String>) {
    let (mut run, mut errors) = (Vec::new(), Vec::new());
    for c in candidates {
        let yes = if c.def.spec.always_run == Some(true) || c.forced {
            true
        } else {
            match files_decide(c.def, changes.unwrap_or_default()) {
                Ok(Some(decided)) => decided,
                Ok(None) => c.default,
                Err(e) => {
                    errors.push(e);
                    false
                }
            }
        };
        if yes {
            run.push(c.def);
        }
    }
    (run, errors)
}

/// Whether a postsubmit runs for a push to `branch` that changed `changes` (upstream's
/// `Postsubmit.ShouldRun`): the branch filter, then the file filter, then `always_run` unless
/// it is set false.
pub fn postsubmit_runs(
    def: &JobDefinition,
    branch: &str,
    changes: &[String],
) -> Result<bool, String> {
    if def.spec.job_type != DefinitionType::Postsubmit || !branch_matches(def, branch)? {
        return Ok(false);
    }
    Ok(match files_decide(def, changes)? {
        Some(decided) => decided,
        None => def.spec.always_run != Some(false),
    })
}

/// A job's status context: `spec.context`, else its name.
pub fn context_of(def: &JobDefinition) -> &str {
    if def.spec.context.is_empty() {
        def.job_name()
    } else {
        &def.spec.context
    }
}

/// The answer to `/test` alone: the jobs of the repository that may run against `branch`, the
/// required ones and the optional ones with their commands, and those that run by themselves.
pub fn job_list(defs: &[&JobDefinition], branch: &str, author: &str) -> String {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    let mut automatic = Vec::new();
    for def in defs.iter().copied() {
        if def.spec.job_type != DefinitionType::Presubmit || branch_matches(def, branch) != Ok(true)
        {
            continue;
        }
        let line = format!("* `{}`", commands::rerun_command_of(def));
        if def.spec.optional {
            optional.push(line);
        } else {
            required.push(line);
        }
        if !needs_explicit_trigger(def) {
            automatic.push(format!("* {}", def.job_name()));
        }
    }
    if required.is_empty() && optional.is_empty() {
        return format!("@{author}: no presubmit may run against the branch `{branch}`.");
    }
    let mut text = format!("@{author}: `/test` needs the name of a job.\n");
    for (heading, lines) in [
        ("These commands run a required job:", &required),
        ("These commands run an optional job:", &optional),
        (
            "`/test all` runs the jobs that run by themselves:",
            &automatic,
        ),
    ] {
        if !lines.is_empty() {
            text.push_str(&format!("\n{heading}\n{}\n", lines.join("\n")));
        }
    }
    text
}
