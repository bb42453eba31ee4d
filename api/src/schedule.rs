//! When a periodic runs: horologium's rules, as one pure function of the definition, its runs
//! and the time.
//!
//! - `interval`: a run is due `interval` after the previous scheduled run was created;
//!   `minimum_interval`: `minimum_interval` after the latest run ended; either with no run yet
//!   is due when the definition was created (at once). `cron`: due at the first tick after the
//!   previous scheduled run was created (after the definition's creation for the first), so
//!   ticks missed while a run went on are folded into one.
//! - A due run starts only when no run of the definition is unfinished; until then the
//!   definition is late, and says which run holds it up.
//! - `retry`: after a failed run, up to `attempts` more runs, each `interval` after the
//!   previous attempt ended (with `run_all`, all of them once one failed).
//!
//! A run's name is the definition's name and the time it was due (and the attempt), all read
//! from stored objects, so every replica, and a restart that lost what it was doing, names the
//! same run the same way and the API server's "already exists" stops a second start.

use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::jobdefinition::JobDefinitionSpec;

/// A periodic's schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// `interval`.
    Interval(Duration),
    /// `minimum_interval`.
    MinimumInterval(Duration),
    /// `cron`, in its time zone.
    Cron(Box<CronSchedule>),
}

/// A parsed `cron` field.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    zone: TimeZone,
}

impl CronSchedule {
    /// Parses upstream's cron syntax: five fields or a descriptor (`@daily`), optionally after
    /// `CRON_TZ=Zone ` or `TZ=Zone ` (an IANA zone); UTC otherwise.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (zone, pattern) = match text
            .strip_prefix("CRON_TZ=")
            .or_else(|| text.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (name, pattern) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| "has a time zone but no schedule after it".to_string())?;
                let zone = TimeZone::get(name).map_err(|_| {
                    format!(
                        "time zone {name:?} is not known: use an IANA name such as Europe/Berlin"
                    )
                })?;
                (zone, pattern.trim())
            }
            None => (TimeZone::UTC, text),
        };
        if pattern.starts_with("@every") {
            return Err("@every is not supported: use interval instead".into());
        }
        if !pattern.starts_with('@') && pattern.split_whitespace().count() != 5 {
            return Err(format!(
                "{pattern:?} is not a cron schedule: give five fields (minute hour day-of-month month day-of-week) or a descriptor such as @daily"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("{pattern:?} is not a cron schedule: {e}"))?;
        Ok(Self { cron, zone })
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// The schedule fields of a spec, or what is wrong with them (field, message).
pub fn schedule_of(spec: &JobDefinitionSpec) -> Result<Schedule, (String, String)> {
    let given: Vec<&str> = [
        ("interval", &spec.interval),
        ("minimum_interval", &spec.minimum_interval),
        ("cron", &spec.cron),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, _)| k)
    .collect();
    match given.as_slice() {
        ["interval"] => positive("spec.interval", &spec.interval).map(Schedule::Interval),
        ["minimum_interval"] => {
            positive("spec.minimum_interval", &spec.minimum_interval).map(Schedule::MinimumInterval)
        }
        ["cron"] => CronSchedule::parse(&spec.cron)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| ("spec.cron".into(), e)),
        [] => Err((
            "spec".into(),
            "a periodic needs one of interval, minimum_interval or cron".into(),
        )),
        several => Err((
            format!("spec.{}", several[1]),
            format!(
                "only one of interval, minimum_interval and cron may be set, not {}",
                several.join(" and ")
            ),
        )),
    }
}

/// A retry's policy, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most retries after the first run.
    pub attempts: u32,
    /// Time from an attempt's end to the next.
    pub interval: Duration,
    /// Whether all attempts run once one failed.
    pub run_all: bool,
}

/// The retry of a spec, or what is wrong with it (field, message).
pub fn retry_of(spec: &JobDefinitionSpec) -> Result<Option<RetryPolicy>, (String, String)> {
    let Some(retry) = spec.retry.as_ref() else {
        return Ok(None);
    };
    let attempts = u32::try_from(retry.attempts).map_err(|_| {
        (
            "spec.retry.attempts".to_string(),
            "must be 0 or more".to_string(),
        )
    })?;
    let interval = if retry.interval.is_empty() {
        Duration::ZERO
    } else {
        crate::duration::parse(&retry.interval)
            .map_err(|e| ("spec.retry.interval".to_string(), e.to_string()))?
    };
    Ok(Some(RetryPolicy {
        attempts,
        interval,
        run_all: retry.run_all,
    }))
}

fn positive(field: &str, text: &str) -> Result<Duration, (String, String)> {
    match crate::duration::parse(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err((
            field.into(),
            format!("{text:?} is too short: give at least 1s"),
        )),
        Err(e) => Err((field.into(), e.to_string())),
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule.
    Schedule,
    /// A retry of a failed scheduled run.
    Retry,
    /// A person or a tool.
    Manual,
}

impl Trigger {
    /// The value of the run's trigger label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Retry => "retry",
            Self::Manual => "manual",
        }
    }

    /// The trigger a label value names; unknown values count as manual.
    pub fn from_label(value: &str) -> Self {
        match value {
            "schedule" => Self::Schedule,
            "retry" => Self::Retry,
            _ => Self::Manual,
        }
    }
}

/// What the schedule needs of one run of the definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The ProwJob's name.
    pub name: String,
    /// What started it.
    pub trigger: Trigger,
    /// When it was created.
    pub created: Timestamp,
    /// When it finished, if it did.
    pub completed: Option<Timestamp>,
    /// Whether it finished with success.
    pub succeeded: bool,
    /// 0 for a scheduled run, 1.. for its retries.
    pub attempt: u32,
}

/// What to do about a periodic now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start this run now.
    Start {
        /// Suffix of the run's name (see [`crate::jobdefinition::run_name`]).
        suffix: String,
        /// When it was due.
        due: Timestamp,
        /// Schedule or retry.
        trigger: Trigger,
        /// Its attempt.
        attempt: u32,
    },
    /// Nothing is due before `until`.
    Wait {
        /// When the next run is due.
        until: Timestamp,
    },
    /// A run of the definition has not finished; a run is due at `due` (when known: a
    /// `minimum_interval` counts from the end of the run).
    Blocked {
        /// When the next run is due, if known.
        due: Option<Timestamp>,
        /// The unfinished run.
        by: String,
    },
}

impl Next {
    /// Whether a run is overdue because another has not finished.
    pub fn is_late(&self, now: Timestamp) -> bool {
        matches!(self, Self::Blocked { due: Some(due), .. } if *due <= now)
    }
}

/// The next step of a periodic created at `created` with `schedule` and `retry`, whose runs
/// are `runs` (any order).
pub fn next(
    created: Timestamp,
    schedule: &Schedule,
    retry: Option<RetryPolicy>,
    runs: &[Run],
    now: Timestamp,
) -> Next {
    let mut scheduled: Vec<&Run> = runs
        .iter()
        .filter(|r| r.trigger != Trigger::Manual)
        .collect();
    scheduled.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    let blocker = runs
        .iter()
        .filter(|r| r.completed.is_none())
        .min_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    let latest = scheduled.last().copied();
    let head_at = scheduled.iter().rposition(|r| r.attempt == 0);
    let head = head_at.map(|i| scheduled[i]);

    if let (Some(latest), Some(policy)) = (latest, retry) {
        if let Some(ended) = latest.completed {
            // The attempts since the latest scheduled run.
            let chain = &scheduled[head_at.unwrap_or(0)..];
            let chain_failed = chain.iter().any(|r| r.completed.is_some() && !r.succeeded);
            let wanted = latest.attempt < policy.attempts
                && (!latest.succeeded || (policy.run_all && chain_failed));
            if wanted {
                let due = plus(ended, policy.interval);
                let attempt = latest.attempt + 1;
                let suffix = format!("{}-r{attempt}", due.as_second());
                return decide(due, suffix, Trigger::Retry, attempt, blocker, now);
            }
        }
    }

    let due = match schedule {
        Schedule::Interval(every) => head.map_or(created, |h| plus(h.created, *every)),
        Schedule::MinimumInterval(gap) => match latest {
            None => created,
            Some(run) => match run.completed {
                Some(ended) => plus(ended, *gap),
                None => {
                    return Next::Blocked {
                        due: None,
                        by: run.name.clone(),
                    }
                }
            },
        },
        Schedule::Cron(cron) => match cron.next_after(head.map_or(created, |h| h.created)) {
            Some(tick) => tick,
            // A pattern with no future tick (Feb 30th) never runs.
            None => Timestamp::MAX,
        },
    };
    let suffix = due.as_second().to_string();
    decide(due, suffix, Trigger::Schedule, 0, blocker, now)
}

/// `at` plus `d`, the latest time when that is past the end of time.
fn plus(at: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn decide(
    due: Timestamp,
    suffix: String,
    trigger: Trigger,
    attempt: u32,
    blocker: Option<&Run>,
    now: Timestamp,
) -> Next {
    if due > now {
        return Next::Wait { until: due };
    }
    match blocker {
        Some(run) => Next::Blocked {
            due: Some(due),
            by: run.name.clone(),
        },
        None => Next::Start {
            suffix,
            due,
            trigger,
            attempt,
        },
    }
}

#[cfg(test)]
mod tests;
