//! A definition's status from its runs and the schedule's decision: the latest runs, when it
//! last and next runs, and whether a due run is late and why.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{same, with_transitions, ConditionFacts};
use crate::jobdefinition::{
    JobDefinition, JobDefinitionStatus, RunSummary, ATTEMPT_ANNOTATION, DEFINITION_LABEL,
    TRIGGER_LABEL,
};
use crate::schedule::{Next, Run, Trigger};
use crate::{ProwJob, ProwJobState};

/// How many runs the status lists.
pub const LATEST_RUNS: usize = 5;

/// Whether `job` is a run of `def` (same namespace, labelled with its name).
pub fn is_run_of(job: &ProwJob, def: &JobDefinition) -> bool {
    job.metadata.namespace == def.metadata.namespace
        && job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(DEFINITION_LABEL))
            .is_some_and(|n| Some(n) == def.metadata.name.as_ref())
}

/// What the schedule needs of a run.
pub fn run_of(job: &ProwJob) -> Run {
    let label = |key: &str| {
        job.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let attempt = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ATTEMPT_ANNOTATION))
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let status = job.status.as_ref();
    Run {
        name: job.metadata.name.clone().unwrap_or_default(),
        trigger: Trigger::from_label(&label(TRIGGER_LABEL)),
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        completed: status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0),
        succeeded: job.state() == ProwJobState::Success,
        attempt,
    }
}

/// The status `def` should have, given its runs, the schedule's decision (periodics; `Err`
/// with the reason when its schedule does not read) and the time; `None` when the stored
/// status already says so.
pub fn status_update(
    def: &JobDefinition,
    runs: &[&ProwJob],
    next: Option<Result<&Next, &str>>,
    now: Timestamp,
) -> Option<JobDefinitionStatus> {
    let stored = def.status.clone().unwrap_or_default();
    let mut sorted: Vec<&ProwJob> = runs.to_vec();
    sorted.sort_by(|a, b| {
        let key = |j: &ProwJob| {
            (
                j.metadata.creation_timestamp.clone().map(|t| t.0),
                j.metadata.name.clone(),
            )
        };
        key(b).cmp(&key(a))
    });
    let latest_runs: Vec<RunSummary> = sorted
        .iter()
        .take(LATEST_RUNS)
        .map(|job| RunSummary {
            name: job.metadata.name.clone().unwrap_or_default(),
            state: job.state().as_str().to_owned(),
            trigger: job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TRIGGER_LABEL))
                .cloned()
                .unwrap_or_default(),
            start_time: job.metadata.creation_timestamp.clone(),
            completion_time: job.status.as_ref().and_then(|s| s.completion_time.clone()),
        })
        .collect();
    let next_run_time = match next {
        Some(Ok(Next::Wait { until })) => Some(*until),
        Some(Ok(Next::Blocked { due, .. })) => *due,
        Some(Ok(Next::Start { due, .. })) => Some(*due),
        _ => None,
    }
    .filter(|t| *t < Timestamp::MAX)
    .map(Time);
    let facts = conditions(next, runs, now);
    let wanted_conditions = with_transitions(
        &stored.conditions,
        facts,
        def.metadata.generation,
        &Time(now),
    );
    let wanted = JobDefinitionStatus {
        observed_generation: def.metadata.generation,
        last_run_time: latest_runs.first().and_then(|r| r.start_time.clone()),
        next_run_time,
        latest_runs,
        last_manual_trigger: stored.last_manual_trigger.clone(),
        conditions: wanted_conditions,
    };
    let fresh = stored.observed_generation == wanted.observed_generation
        && stored.last_run_time == wanted.last_run_time
        && stored.next_run_time == wanted.next_run_time
        && stored.latest_runs == wanted.latest_runs
        && same(&stored.conditions, &wanted.conditions);
    (!fresh).then_some(wanted)
}

fn conditions(
    next: Option<Result<&Next, &str>>,
    runs: &[&ProwJob],
    now: Timestamp,
) -> Vec<ConditionFacts> {
    let next = match next {
        None => return Vec::new(),
        Some(Err(why)) => {
            return vec![(
                "Scheduled",
                "False",
                "InvalidSchedule",
                format!("No run is scheduled: {why}"),
            )]
        }
        Some(Ok(next)) => next,
    };
    let scheduled = (
        "Scheduled",
        "True",
        "Scheduled",
        "Runs are started by the schedule.".to_string(),
    );
    let late = match next {
        Next::Blocked { due: Some(due), by } if next.is_late(now) => {
            let blocker = runs
                .iter()
                .find(|j| j.metadata.name.as_deref() == Some(by.as_str()));
            let state = blocker.map_or(ProwJobState::Triggered, |j| j.state());
            let since = blocker
                .and_then(|j| j.metadata.creation_timestamp.as_ref())
                .map(|t| format!(" since {}", t.0))
                .unwrap_or_default();
            (
                "Late",
                "True",
                "PreviousRunNotFinished",
                format!(
                    "The run due at {due} has not started: run {by} is still {}{since}.",
                    state.as_str()
                ),
            )
        }
        _ => (
            "Late",
            "False",
            "OnTime",
            "No due run is held up.".to_string(),
        ),
    };
    vec![scheduled, late]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProwJobSpec, ProwJobStatus};

    fn job(name: &str, created: &str, state: Option<ProwJobState>) -> ProwJob {
        let mut j = ProwJob::new(name, ProwJobSpec::default());
        j.metadata.namespace = Some("jobs".into());
        j.metadata.creation_timestamp = Some(Time(created.parse().expect("time")));
        j.metadata.labels = Some(
            [
                (DEFINITION_LABEL.to_string(), "nightly".to_string()),
                (TRIGGER_LABEL.to_string(), "schedule".to_string()),
            ]
            .into(),
        );
        j.status = state.map(|s| ProwJobStatus {
            state: Some(s),
            completion_time: s
                .is_complete()
                .then(|| Time(created.parse().expect("time"))),
            ..Default::default()
        });
        j
    }

    fn def() -> JobDefinition {
        let mut d = JobDefinition::new("nightly", Default::default());
        d.metadata.namespace = Some("jobs".into());
        d.metadata.generation = Some(3);
        d
    }

    #[test]
    fn a_blocked_due_run_is_late_and_says_which_run_holds_it_up() {
        let stuck = job(
            "nightly-1",
            "2026-01-01T00:00:00Z",
            Some(ProwJobState::Pending),
        );
        let now: Timestamp = "2026-01-01T02:00:00Z".parse().expect("now");
        let next = Next::Blocked {
            due: Some("2026-01-01T01:00:00Z".parse().expect("due")),
            by: "nightly-1".into(),
        };
        let status = status_update(&def(), &[&stuck], Some(Ok(&next)), now).expect("changed");
        let late = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Late")
            .expect("late");
        assert_eq!(late.status, "True");
        assert!(
            late.message.contains("run nightly-1 is still pending"),
            "{}",
            late.message
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.latest_runs[0].state, "pending");
        assert_eq!(
            status.next_run_time.as_ref().map(|t| t.0.to_string()),
            Some("2026-01-01T01:00:00Z".into())
        );

        let mut stored = def();
        stored.status = Some(status.clone());
        assert_eq!(
            status_update(&stored, &[&stuck], Some(Ok(&next)), now),
            None,
            "nothing changed: no write"
        );
    }

    #[test]
    fn latest_runs_are_newest_first_and_at_most_five() {
        let jobs: Vec<ProwJob> = (0..7)
            .map(|i| {
                job(
                    &format!("nightly-{i}"),
                    &format!("2026-01-01T0{i}:00:00Z"),
                    Some(ProwJobState::Success),
                )
            })
            .collect();
        let refs: Vec<&ProwJob> = jobs.iter().collect();
        let next = Next::Wait {
            until: "2026-01-01T09:00:00Z".parse().expect("t"),
        };
        let status = status_update(
            &def(),
            &refs,
            Some(Ok(&next)),
            "2026-01-01T08:00:00Z".parse().expect("t"),
        )
        .expect("status");
        let names: Vec<&str> = status.latest_runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nightly-6",
                "nightly-5",
                "nightly-4",
                "nightly-3",
                "nightly-2"
            ]
        );
        assert_eq!(
            status.last_run_time.map(|t| t.0.to_string()),
            Some("2026-01-01T06:00:00Z".into())
        );
        assert!(status
            .conditions
            .iter()
            .any(|c| c.type_ == "Late" && c.status == "False"));
    }

    #[test]
    fn a_schedule_that_does_not_read_is_said_in_a_condition() {
        let status = status_update(
            &def(),
            &[],
            Some(Err("spec.cron: bad")),
            Timestamp::UNIX_EPOCH,
        )
        .expect("status");
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].reason, "InvalidSchedule");
    }
}
