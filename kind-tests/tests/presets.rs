//! Preset status: Ready, Conflicting naming the colliding preset, and back.

use std::time::Duration;

use kind_tests::operator::{eventually, start_operator};
use kind_tests::TestEnv;
use kube::api::PostParams;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn preset_status_says_ready_names_a_colliding_preset_and_clears_when_it_goes() {
    use prow_api::Preset;
    let env = TestEnv::new("recover-presets").await.expect("env");
    let _operator = start_operator(&env, &[]).expect("operator");
    let presets = env.api::<Preset>();
    let make = |name: &str, selector: serde_json::Value, value: &str| -> Preset {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": name},
            "spec": {"selector": selector, "env": [{"name": "KEY", "value": value}]},
        }))
        .expect("preset")
    };
    presets
        .create(&PostParams::default(), &make("a", json!({"x": "1"}), "one"))
        .await
        .expect("a");
    let condition = |p: &Preset, kind: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind).cloned())
    };
    eventually("preset a ready and without conflict", WAIT, || async {
        let p = presets.get("a").await?;
        let ok = condition(&p, "Ready").is_some_and(|c| c.status == "True")
            && condition(&p, "Conflicting").is_some_and(|c| c.status == "False")
            && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation;
        Ok(ok.then_some(()))
    })
    .await
    .expect("a ready");
    // No webhook here: the collision gets in, and both presets' status says so.
    presets
        .create(&PostParams::default(), &make("b", json!({"y": "1"}), "two"))
        .await
        .expect("b");
    for (name, other) in [("a", "b"), ("b", "a")] {
        let message = eventually(&format!("{name} conflicting"), WAIT, || async {
            let p = presets.get(name).await?;
            Ok(condition(&p, "Conflicting")
                .filter(|c| c.status == "True")
                .map(|c| c.message))
        })
        .await
        .expect("conflicting");
        assert!(
            message.contains(&format!("preset \"{other}\"")),
            "{message}"
        );
    }
    // The collision goes with the preset that caused it: a deletion re-derives its peers.
    presets
        .delete("b", &Default::default())
        .await
        .expect("b deleted");
    let since = eventually("a no longer conflicting", WAIT, || async {
        let p = presets.get("a").await?;
        Ok(condition(&p, "Conflicting")
            .filter(|c| c.status == "False")
            .map(|c| c.last_transition_time))
    })
    .await
    .expect("conflict cleared");
    let ready = condition(&presets.get("a").await.expect("a"), "Ready").expect("ready");
    assert!(
        ready.last_transition_time <= since,
        "Ready did not flip, so it keeps its earlier transition time"
    );
}
