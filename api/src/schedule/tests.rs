use super::*;
use crate::jobdefinition::{JobDefinitionSpec, Retry};

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn run(
    name: &str,
    trigger: Trigger,
    created: &str,
    completed: Option<&str>,
    ok: bool,
    attempt: u32,
) -> Run {
    Run {
        name: name.into(),
        trigger,
        created: at(created),
        completed: completed.map(at),
        succeeded: ok,
        attempt,
    }
}

fn sched(spec: JobDefinitionSpec) -> Schedule {
    schedule_of(&spec).expect("schedule")
}

fn interval(d: &str) -> Schedule {
    sched(JobDefinitionSpec {
        interval: d.into(),
        ..Default::default()
    })
}

fn cron(c: &str) -> Schedule {
    sched(JobDefinitionSpec {
        cron: c.into(),
        ..Default::default()
    })
}

const CREATED: &str = "2026-01-01T00:00:00Z";

fn start(due: &str, trigger: Trigger, attempt: u32) -> Next {
    let due = at(due);
    let suffix = match trigger {
        Trigger::Retry => format!("{}-r{attempt}", due.as_second()),
        _ => due.as_second().to_string(),
    };
    Next::Start {
        suffix,
        due,
        trigger,
        attempt,
    }
}

#[test]
fn interval_and_minimum_interval_start_at_once_and_cron_at_its_first_tick() {
    let now = at("2026-01-01T00:00:05Z");
    assert_eq!(
        next(at(CREATED), &interval("1h"), None, &[], now),
        start(CREATED, Trigger::Schedule, 0)
    );
    let min = sched(JobDefinitionSpec {
        minimum_interval: "1h".into(),
        ..Default::default()
    });
    assert_eq!(
        next(at(CREATED), &min, None, &[], now),
        start(CREATED, Trigger::Schedule, 0)
    );
    assert_eq!(
        next(at(CREATED), &cron("*/10 * * * *"), None, &[], now),
        Next::Wait {
            until: at("2026-01-01T00:10:00Z")
        }
    );
    assert_eq!(
        next(
            at(CREATED),
            &cron("*/10 * * * *"),
            None,
            &[],
            at("2026-01-01T00:10:00Z")
        ),
        start("2026-01-01T00:10:00Z", Trigger::Schedule, 0)
    );
}

#[test]
fn interval_counts_from_the_previous_start_and_waits_for_its_end() {
    let done = [run(
        "a",
        Trigger::Schedule,
        "2026-01-01T00:00:01Z",
        Some("2026-01-01T00:20:00Z"),
        true,
        0,
    )];
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            None,
            &done,
            at("2026-01-01T00:30:00Z")
        ),
        Next::Wait {
            until: at("2026-01-01T01:00:01Z")
        }
    );
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            None,
            &done,
            at("2026-01-01T01:00:01Z")
        ),
        start("2026-01-01T01:00:01Z", Trigger::Schedule, 0)
    );
    let running = [run(
        "a",
        Trigger::Schedule,
        "2026-01-01T00:00:01Z",
        None,
        false,
        0,
    )];
    let late = next(
        at(CREATED),
        &interval("1h"),
        None,
        &running,
        at("2026-01-01T02:00:00Z"),
    );
    assert_eq!(
        late,
        Next::Blocked {
            due: Some(at("2026-01-01T01:00:01Z")),
            by: "a".into()
        }
    );
    assert!(late.is_late(at("2026-01-01T02:00:00Z")));
}

#[test]
fn a_manual_run_that_has_not_ended_holds_up_the_schedule_but_does_not_move_it() {
    let runs = [
        run(
            "a",
            Trigger::Schedule,
            "2026-01-01T00:00:01Z",
            Some("2026-01-01T00:01:00Z"),
            true,
            0,
        ),
        run("m", Trigger::Manual, "2026-01-01T00:30:00Z", None, false, 0),
    ];
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            None,
            &runs,
            at("2026-01-01T01:10:00Z")
        ),
        Next::Blocked {
            due: Some(at("2026-01-01T01:00:01Z")),
            by: "m".into()
        }
    );
}

#[test]
fn minimum_interval_counts_from_the_end_of_the_latest_run() {
    let min = sched(JobDefinitionSpec {
        minimum_interval: "10m".into(),
        ..Default::default()
    });
    let running = [run("a", Trigger::Schedule, CREATED, None, false, 0)];
    let blocked = next(
        at(CREATED),
        &min,
        None,
        &running,
        at("2026-01-01T05:00:00Z"),
    );
    assert_eq!(
        blocked,
        Next::Blocked {
            due: None,
            by: "a".into()
        }
    );
    assert!(
        !blocked.is_late(at("2026-01-01T05:00:00Z")),
        "a running run is not late"
    );
    let ended = [run(
        "a",
        Trigger::Schedule,
        CREATED,
        Some("2026-01-01T05:00:00Z"),
        false,
        0,
    )];
    assert_eq!(
        next(at(CREATED), &min, None, &ended, at("2026-01-01T05:09:59Z")),
        Next::Wait {
            until: at("2026-01-01T05:10:00Z")
        }
    );
    assert_eq!(
        next(at(CREATED), &min, None, &ended, at("2026-01-01T05:10:00Z")),
        start("2026-01-01T05:10:00Z", Trigger::Schedule, 0)
    );
}

#[test]
fn cron_folds_the_ticks_missed_while_a_run_went_on_into_one() {
    // The run of 00:10 was created late, at 00:35: the next is 00:40, not 00:20 or 00:30.
    let runs = [run(
        "a",
        Trigger::Schedule,
        "2026-01-01T00:35:00Z",
        Some("2026-01-01T00:36:00Z"),
        true,
        0,
    )];
    assert_eq!(
        next(
            at(CREATED),
            &cron("*/10 * * * *"),
            None,
            &runs,
            at("2026-01-01T00:37:00Z")
        ),
        Next::Wait {
            until: at("2026-01-01T00:40:00Z")
        }
    );
}

#[test]
fn cron_honours_its_time_zone() {
    // 09:00 in Berlin is 08:00 UTC in January.
    let berlin = cron("CRON_TZ=Europe/Berlin 0 9 * * *");
    assert_eq!(
        next(at(CREATED), &berlin, None, &[], at(CREATED)),
        Next::Wait {
            until: at("2026-01-01T08:00:00Z")
        }
    );
    let tz = cron("TZ=America/New_York @daily");
    assert_eq!(
        next(at(CREATED), &tz, None, &[], at(CREATED)),
        Next::Wait {
            until: at("2026-01-01T05:00:00Z")
        }
    );
}

#[test]
fn a_failed_run_is_retried_after_the_retry_interval_up_to_attempts() {
    let policy = Some(RetryPolicy {
        attempts: 2,
        interval: Duration::from_secs(60),
        run_all: false,
    });
    let failed = vec![run(
        "a",
        Trigger::Schedule,
        "2026-01-01T00:00:01Z",
        Some("2026-01-01T00:05:00Z"),
        false,
        0,
    )];
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            policy,
            &failed,
            at("2026-01-01T00:05:30Z")
        ),
        Next::Wait {
            until: at("2026-01-01T00:06:00Z")
        }
    );
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            policy,
            &failed,
            at("2026-01-01T00:06:00Z")
        ),
        start("2026-01-01T00:06:00Z", Trigger::Retry, 1)
    );
    let mut twice = failed.clone();
    twice.push(run(
        "b",
        Trigger::Retry,
        "2026-01-01T00:06:00Z",
        Some("2026-01-01T00:07:00Z"),
        false,
        1,
    ));
    twice.push(run(
        "c",
        Trigger::Retry,
        "2026-01-01T00:08:00Z",
        Some("2026-01-01T00:09:00Z"),
        false,
        2,
    ));
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            policy,
            &twice,
            at("2026-01-01T00:10:00Z")
        ),
        Next::Wait {
            until: at("2026-01-01T01:00:01Z")
        },
        "two retries were used: the schedule goes on from the first run"
    );
    let mut recovered = failed.clone();
    recovered.push(run(
        "b",
        Trigger::Retry,
        "2026-01-01T00:06:00Z",
        Some("2026-01-01T00:07:00Z"),
        true,
        1,
    ));
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            policy,
            &recovered,
            at("2026-01-01T00:10:00Z")
        ),
        Next::Wait {
            until: at("2026-01-01T01:00:01Z")
        },
        "a success ends the retries"
    );
    let run_all = policy.map(|p| RetryPolicy { run_all: true, ..p });
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            run_all,
            &recovered,
            at("2026-01-01T00:10:00Z")
        ),
        start("2026-01-01T00:08:00Z", Trigger::Retry, 2),
        "run_all runs every attempt once one failed"
    );
    let ok = [run(
        "a",
        Trigger::Schedule,
        "2026-01-01T00:00:01Z",
        Some("2026-01-01T00:05:00Z"),
        true,
        0,
    )];
    assert_eq!(
        next(
            at(CREATED),
            &interval("1h"),
            run_all,
            &ok,
            at("2026-01-01T00:10:00Z")
        ),
        Next::Wait {
            until: at("2026-01-01T01:00:01Z")
        },
        "nothing is retried when nothing failed"
    );
}

#[test]
fn schedule_fields_are_checked_with_their_field() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("", "", "", "spec", "needs one of"),
        ("1h", "", "0 * * * *", "spec.cron", "only one of"),
        ("1h", "1h", "", "spec.minimum_interval", "only one of"),
        ("1x", "", "", "spec.interval", "invalid duration"),
        ("0s", "", "", "spec.interval", "too short"),
        ("", "", "61 * * * *", "spec.cron", "not a cron schedule"),
        ("", "", "* * * *", "spec.cron", "five fields"),
        ("", "", "0 0 * * * *", "spec.cron", "five fields"),
        (
            "",
            "",
            "CRON_TZ=Mars/Olympus 0 * * * *",
            "spec.cron",
            "not known",
        ),
        ("", "", "@every 1h", "spec.cron", "interval instead"),
    ];
    for (interval, minimum, cron, field, message) in cases {
        let spec = JobDefinitionSpec {
            interval: interval.to_string(),
            minimum_interval: minimum.to_string(),
            cron: cron.to_string(),
            ..Default::default()
        };
        let (f, m) = schedule_of(&spec).expect_err(cron);
        assert_eq!(&f, field, "{interval}/{minimum}/{cron}: {m}");
        assert!(m.contains(message), "{interval}/{minimum}/{cron}: {m}");
    }
    for good in ["@hourly", "0 */2 * * 1-5", "CRON_TZ=UTC 30 4 1 * *"] {
        assert!(CronSchedule::parse(good).is_ok(), "{good}");
    }
    let bad_retry = JobDefinitionSpec {
        retry: Some(Retry {
            attempts: -1,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        retry_of(&bad_retry).expect_err("negative").0,
        "spec.retry.attempts"
    );
}
