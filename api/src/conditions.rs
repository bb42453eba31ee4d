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
