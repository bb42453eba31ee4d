//! The commands of a comment (an issue comment, a review's body, a pull request's description
//! when it is opened), as upstream's trigger plugin reads them: one per line, at the start of
//! the line, with fenced code blocks ignored. Many repeats of a command are one command.

use std::sync::LazyLock;

use regex::Regex;

use crate::jobdefinition::JobDefinition;

/// The label of a pull request a trusted user allowed to be tested.
pub const OK_TO_TEST: &str = "ok-to-test";
/// The label of a pull request waiting for a trusted user's `/ok-to-test`.
pub const NEEDS_OK_TO_TEST: &str = "needs-ok-to-test";

static FENCED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)```.*?(```|\z)").unwrap());
static OK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?mi)^/ok-to-test[ \t]*\r?$").unwrap());
static OK_CANCEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?mi)^/ok-to-test[ \t]+cancel[ \t]*\r?$").unwrap());
static TEST_ALL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^/test all,?($|\s.*)").unwrap());
static RETEST: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^/retest[ \t]*\r?$").unwrap());
static RETEST_REQUIRED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^/retest-required[ \t]*\r?$").unwrap());
static TEST_BARE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^/test[ \t]*\r?$").unwrap());

/// What a comment asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// The text the commands were read from: fenced code blocks taken out.
    pub body: String,
    /// `/ok-to-test`.
    pub ok_to_test: bool,
    /// `/ok-to-test cancel`.
    pub ok_to_test_cancel: bool,
    /// `/test all`.
    pub test_all: bool,
    /// `/retest`.
    pub retest: bool,
    /// `/retest-required`.
    pub retest_required: bool,
    /// `/test` alone: the commenter asks which jobs there are.
    pub list_jobs: bool,
}

impl Commands {
    /// Reads the commands of `text`.
    pub fn parse(text: &str) -> Commands {
        let body = FENCED.replace_all(text, "").into_owned();
        Commands {
            ok_to_test: OK.is_match(&body),
            ok_to_test_cancel: OK_CANCEL.is_match(&body),
            test_all: TEST_ALL.is_match(&body),
            retest: RETEST.is_match(&body),
            retest_required: RETEST_REQUIRED.is_match(&body),
            list_jobs: TEST_BARE.is_match(&body),
            body,
        }
    }

    /// Whether the comment has a line a command could be on (one starting with `/`): a comment
    /// without one is not the trigger's.
    pub fn has_commands(&self) -> bool {
        self.body.lines().any(|l| l.starts_with('/'))
    }
}

/// A presubmit's trigger: `spec.trigger`, else upstream's default for its name, which matches
/// `/test NAME` (also among other names on the line).
pub fn trigger_of(def: &JobDefinition) -> Result<Regex, String> {
    let pattern = if def.spec.trigger.is_empty() {
        default_trigger(def.job_name())
    } else {
        def.spec.trigger.clone()
    };
    Regex::new(&pattern).map_err(|e| format!("trigger {pattern:?} of {}: {e}", def.job_name()))
}

/// Upstream's default trigger for a job named `name`.
pub fn default_trigger(name: &str) -> String {
    format!(r"(?m)^/test( | .* ){},?($|\s.*)", regex::escape(name))
}

/// A presubmit's rerun command: `spec.rerun_command`, else `/test NAME`.
pub fn rerun_command_of(def: &JobDefinition) -> String {
    if def.spec.rerun_command.is_empty() {
        format!("/test {}", def.job_name())
    } else {
        def.spec.rerun_command.clone()
    }
}

/// Whether `commands` name `def` through its trigger.
pub fn triggers(def: &JobDefinition, commands: &Commands) -> bool {
    trigger_of(def).is_ok_and(|re| re.is_match(&commands.body))
}
