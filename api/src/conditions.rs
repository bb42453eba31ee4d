//! Status conditions as Kubernetes conventions want them: a condition whose status is unchanged
//! keeps its `lastTransitionTime`; a new or flipped one takes the time of the change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What a condition says: `(type, status, reason, message)`.
pub type ConditionFacts = (&'static str, &'static str, &'static str, String);

/// The conditions `facts` describe, keeping the transition times of `previous` whose status
/// did not change.
pub fn with_transitions(
    previous: &[Condition],
    facts: Vec<ConditionFacts>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    facts
        .into_iter()
        .map(|(kind, state, reason, message)| {
            let since = previous
                .iter()
                .find(|c| c.type_ == kind)
                .filter(|c| c.status == state)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: kind.to_string(),
                status: state.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether two lists of conditions say the same, transition times aside.
pub fn same(stored: &[Condition], wanted: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    stored.len() == wanted.len()
        && wanted
            .iter()
            .all(|w| stored.iter().any(|c| key(c) == key(w)))
}

/// The condition a failed reconcile sets to "False" on kinds with conditions (with the error
/// as its message); the next reconcile that succeeds takes it away.
pub const RECONCILED: &str = "Reconciled";

/// `conditions` with [`RECONCILED`] "False" saying `error` (its transition time kept while it
/// stays False).
pub fn with_failure(conditions: &[Condition], error: &str, now: &Time) -> Vec<Condition> {
    let mut kept: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != RECONCILED)
        .cloned()
        .collect();
    kept.extend(with_transitions(
        conditions,
        vec![(RECONCILED, "False", "ReconcileError", error.to_string())],
        None,
        now,
    ));
    kept
}

/// `conditions` without [`RECONCILED`], when they have it.
pub fn without_failure(conditions: &[Condition]) -> Option<Vec<Condition>> {
    conditions.iter().any(|c| c.type_ == RECONCILED).then(|| {
        conditions
            .iter()
            .filter(|c| c.type_ != RECONCILED)
            .cloned()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Time {
        Time(text.parse().expect("time"))
    }

    #[test]
    fn a_failure_is_one_condition_that_keeps_its_time_and_goes_on_success() {
        let healthy = with_transitions(
            &[],
            vec![("Healthy", "True", "ok", String::new())],
            None,
            &at("2024-05-01T10:00:00Z"),
        );
        let failed = with_failure(&healthy, "forbidden", &at("2024-05-01T11:00:00Z"));
        assert_eq!(failed.len(), 2);
        let mark = failed
            .iter()
            .find(|c| c.type_ == RECONCILED)
            .expect("marked");
        assert_eq!(
            (mark.status.as_str(), mark.message.as_str()),
            ("False", "forbidden")
        );
        let again = with_failure(&failed, "still forbidden", &at("2024-05-01T12:00:00Z"));
        assert_eq!(again.len(), 2, "replaced, not added");
        let mark = again
            .iter()
            .find(|c| c.type_ == RECONCILED)
            .expect("marked");
        assert_eq!(mark.message, "still forbidden");
        assert_eq!(mark.last_transition_time, at("2024-05-01T11:00:00Z"));
        assert_eq!(without_failure(&again), Some(healthy.clone()));
        assert_eq!(without_failure(&healthy), None);
    }
}
