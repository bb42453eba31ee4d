use serde_json::json;

use super::*;

fn job(name: &str, job: &str, created: &str, state: Option<&str>) -> ProwJob {
    let mut status = json!({});
    if let Some(s) = state {
        status = json!({"state": s});
        if ["success", "failure", "aborted", "error"].contains(&s) {
            status["completionTime"] = json!("2024-01-01T01:00:00Z");
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "uid": format!("uid-{name}"),
                     "creationTimestamp": format!("2024-01-01T00:00:{created}Z")},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": job, "max_concurrency": 2},
        "status": status,
    }))
    .expect("job")
}

fn none() -> InFlight {
    InFlight::default()
}

fn is_wait(a: &Admission) -> bool {
    matches!(a, Admission::Wait(_))
}

#[test]
fn max_concurrency_two_starts_oldest_two_jobs_first() {
    let jobs = [
        job("a", "j", "01", None),
        job("b", "j", "02", None),
        job("c", "j", "03", None),
        job("d", "j", "04", None),
    ];
    let decisions: Vec<bool> = jobs
        .iter()
        .map(|j| admit(j, &jobs, &none(), &Limits::default()) == Admission::Start)
        .collect();
    assert_eq!(decisions, [true, true, false, false]);
}

#[test]
fn pending_jobs_hold_slots_and_completed_jobs_do_not() {
    let jobs = [
        job("a", "j", "01", Some("pending")),
        job("b", "j", "02", Some("success")),
        job("c", "j", "03", Some("error")),
        job("d", "j", "04", None),
    ];
    assert_eq!(
        admit(&jobs[3], &jobs, &none(), &Limits::default()),
        Admission::Start
    );
    let more = [
        jobs[0].clone(),
        job("e", "j", "00", Some("pending")),
        jobs[3].clone(),
    ];
    assert!(is_wait(&admit(
        &more[2],
        &more,
        &none(),
        &Limits::default()
    )));
}

#[test]
fn starts_the_cache_has_not_shown_yet_count() {
    // a and b were started a moment ago; the cache still says triggered.
    let jobs = [
        job("a", "j", "01", None),
        job("b", "j", "02", None),
        job("c", "j", "03", None),
    ];
    let in_flight = InFlight {
        started: ["uid-a".to_string(), "uid-b".to_string()].into(),
        ..InFlight::default()
    };
    let verdict = admit(&jobs[2], &jobs, &in_flight, &Limits::default());
    assert_eq!(
        verdict,
        Admission::Wait(
            "Waiting: 2 runs of j are pending or ahead in line (max_concurrency 2).".into()
        )
    );
}

#[test]
fn finishes_the_cache_has_not_shown_yet_free_their_slot() {
    let jobs = [
        job("a", "j", "01", Some("pending")),
        job("b", "j", "02", Some("pending")),
        job("c", "j", "03", None),
    ];
    assert!(is_wait(&admit(
        &jobs[2],
        &jobs,
        &none(),
        &Limits::default()
    )));
    let in_flight = InFlight {
        finished: ["uid-a".to_string()].into(),
        ..InFlight::default()
    };
    assert_eq!(
        admit(&jobs[2], &jobs, &in_flight, &Limits::default()),
        Admission::Start
    );
}

#[test]
fn other_job_names_do_not_count_and_zero_is_unlimited() {
    let mut jobs = vec![
        job("a", "other", "01", Some("pending")),
        job("b", "other", "02", Some("pending")),
        job("c", "j", "03", None),
    ];
    assert_eq!(
        admit(&jobs[2], &jobs, &none(), &Limits::default()),
        Admission::Start
    );
    for j in &mut jobs {
        j.spec.job = "j".into();
        j.spec.max_concurrency = 0;
    }
    assert_eq!(
        admit(&jobs[2], &jobs, &none(), &Limits::default()),
        Admission::Start
    );
}

#[test]
fn global_limit_counts_pending_jobs_of_every_name() {
    let jobs = [
        job("a", "x", "01", Some("pending")),
        job("b", "y", "02", Some("pending")),
        job("c", "z", "03", None),
    ];
    let limits = Limits {
        global: 2,
        ..Limits::default()
    };
    assert!(is_wait(&admit(&jobs[2], &jobs, &none(), &limits)));
    let limits = Limits {
        global: 3,
        ..Limits::default()
    };
    assert_eq!(admit(&jobs[2], &jobs, &none(), &limits), Admission::Start);
}

#[test]
fn job_queues_block_limit_or_refuse() {
    let mut jobs = vec![
        job("a", "x", "01", Some("pending")),
        job("b", "y", "02", None),
    ];
    for j in &mut jobs {
        j.spec.job_queue_name = "gpu".into();
        j.spec.max_concurrency = 0;
    }
    let with = |c: i64| Limits {
        global: 0,
        queues: [("gpu".to_string(), c)].into(),
    };
    let cases = [(1, false), (2, true), (0, false), (-1, true)];
    for (capacity, starts) in cases {
        let verdict = admit(&jobs[1], &jobs, &none(), &with(capacity));
        assert_eq!(
            verdict == Admission::Start,
            starts,
            "capacity {capacity}: {verdict:?}"
        );
    }
    assert_eq!(
        admit(&jobs[1], &jobs, &none(), &Limits::default()),
        Admission::Refuse("Job queue \"gpu\" is not configured.".into())
    );
}

#[test]
fn build_ids_increase_per_job_name() {
    assert_eq!(next_build_id(1_000, None), 1_000);
    assert_eq!(next_build_id(1_000, Some(999)), 1_000);
    assert_eq!(
        next_build_id(1_000, Some(1_000)),
        1_001,
        "two starts in one millisecond"
    );
    assert_eq!(next_build_id(900, Some(1_000)), 1_001, "clock stepped back");
}

/// Who a finish wakes: the first waiting job of each job name that shared a limit with it.
#[test]
fn a_finish_wakes_the_head_of_each_line_it_shared() {
    let at = |name: &str, job_name: &str, created: &str, state: &str, queue: &str| {
        let mut j: ProwJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": name, "namespace": "prow", "uid": name,
                         "creationTimestamp": created},
            "spec": {"type": "periodic", "agent": "kubernetes", "job": job_name,
                     "job_queue_name": queue},
            "status": {"state": state},
        }))
        .expect("job");
        j.metadata.namespace = Some("prow".into());
        j
    };
    let done = at("done", "a", "2024-01-01T00:00:00Z", "success", "gpu");
    let jobs = [
        at("a-late", "a", "2024-01-01T00:03:00Z", "triggered", ""),
        at("a-early", "a", "2024-01-01T00:01:00Z", "triggered", ""),
        at("a-running", "a", "2024-01-01T00:00:30Z", "pending", ""),
        at("b-queued", "b", "2024-01-01T00:02:00Z", "triggered", "gpu"),
        at(
            "b-queued-later",
            "b",
            "2024-01-01T00:04:00Z",
            "triggered",
            "gpu",
        ),
        at("c-elsewhere", "c", "2024-01-01T00:00:10Z", "triggered", ""),
    ];
    let names = |limits: &Limits| -> Vec<String> {
        let mut woken: Vec<String> = to_wake(&done, jobs.iter().chain([&done]), limits)
            .into_iter()
            .map(|j| j.metadata.name.clone().unwrap_or_default())
            .collect();
        woken.sort();
        woken
    };
    // Its name's line and its queue's line: one head each.
    assert_eq!(names(&Limits::default()), ["a-early", "b-queued"]);
    // A global limit: every name's line shares it.
    let global = Limits {
        global: 3,
        ..Limits::default()
    };
    assert_eq!(names(&global), ["a-early", "b-queued", "c-elsewhere"]);
}
