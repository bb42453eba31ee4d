//! The watcher every process caches through (`prow_runtime::watcher`), which reads a list as it
//! arrives instead of whole: against the real API server, a list in one response and a paged
//! one give every object exactly as stored, whatever characters their JSON has, and the watch
//! that follows brings changes and deletions.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kind_tests::TestEnv;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;
use serde_json::json;

const LABEL: &str = "watcher-test";

/// Data whose JSON has every character the list reader must step over: brackets and braces
/// in strings, escaped quotes and backslashes, non-ASCII text.
fn tricky(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("brackets".into(), format!("}}]{i}[{{")),
        ("quotes".into(), format!("a \"quoted\" \\\"{i}\\\" value\\")),
        ("text".into(), format!("é ✓ 😀 {i}")),
        ("json".into(), json!({"items": [i, {"k": "]"}]}).to_string()),
    ])
}

async fn next(
    events: &mut (impl futures::Stream<Item = watcher::Result<Event<ConfigMap>>> + Unpin),
) -> Event<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event within 30 s")
        .expect("the stream goes on")
        .expect("no error")
}

/// The first list's objects, by name, through a watcher with `config`.
async fn first_list(
    events: &mut (impl futures::Stream<Item = watcher::Result<Event<ConfigMap>>> + Unpin),
) -> BTreeMap<String, BTreeMap<String, String>> {
    assert!(matches!(next(events).await, Event::Init), "Init first");
    let mut listed = BTreeMap::new();
    loop {
        match next(events).await {
            Event::InitApply(cm) => {
                let name = cm.name_any();
                let data = cm.data.unwrap_or_default();
                assert!(listed.insert(name, data).is_none(), "each object once");
            }
            Event::InitDone => return listed,
            other => panic!("unexpected event during the list: {other:?}"),
        }
    }
}

#[tokio::test]
async fn lists_in_one_response_and_in_pages_give_every_object_as_stored_then_watch() {
    let env = TestEnv::new("watcher").await.expect("test env");
    let api = env.api::<ConfigMap>();
    let count = 23;
    let mut stored = BTreeMap::new();
    for i in 0..count {
        let name = format!("cm-{i:02}");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {LABEL: "yes"}},
            "data": tricky(i),
        }))
        .expect("config map");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("created");
        stored.insert(name, tricky(i));
    }
    // One not selected: the label selector reaches the API server.
    let other: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "unselected"}})).expect("cm");
    api.create(&PostParams::default(), &other)
        .await
        .expect("created");

    let selected = watcher::Config::default().labels(&format!("{LABEL}=yes"));
    let configs = [
        (
            "one response from the watch cache",
            watcher::Config {
                page_size: None,
                ..selected.clone().any_semantic()
            },
        ),
        ("pages of 5 from etcd", selected.clone().page_size(5)),
    ];
    for (round, (what, config)) in configs.into_iter().enumerate() {
        let (patched, deleted) = (
            format!("cm-{:02}", 2 * round),
            format!("cm-{:02}", 2 * round + 1),
        );
        let mut events = prow_runtime::watcher::watcher(api.clone(), config).boxed();
        let listed = first_list(&mut events).await;
        assert_eq!(listed, stored, "{what}: every object, exactly as stored");

        // Then the watch: a change, a new object, a deletion, in order.
        let changed = json!({"data": {"text": format!("changed by {what}")}});
        api.patch(&patched, &PatchParams::default(), &Patch::Merge(&changed))
            .await
            .expect("patched");
        match next(&mut events).await {
            Event::Apply(cm) => {
                assert_eq!(cm.name_any(), patched);
                assert_eq!(
                    cm.data.unwrap_or_default().get("text").map(String::as_str),
                    Some(format!("changed by {what}").as_str())
                );
            }
            other => panic!("{what}: expected the change, got {other:?}"),
        }
        api.delete(&deleted, &DeleteParams::default())
            .await
            .expect("deleted");
        match next(&mut events).await {
            Event::Delete(cm) => assert_eq!(cm.name_any(), deleted),
            other => panic!("{what}: expected the deletion, got {other:?}"),
        }
        // What the next configuration's list must find.
        stored.remove(&deleted);
        stored
            .get_mut(&patched)
            .expect("patched one")
            .insert("text".into(), format!("changed by {what}"));
    }
}

#[tokio::test]
async fn an_empty_list_ends_at_once_and_a_forbidden_one_fails() {
    let env = TestEnv::new("watcher-empty").await.expect("test env");
    let api = env.api::<ConfigMap>();
    let config = watcher::Config::default().labels("nothing-has=this");
    let mut events = prow_runtime::watcher::watcher(api, config).boxed();
    assert!(first_list(&mut events).await.is_empty());

    // A resource the API server does not serve: the list fails with its answer, not a hang or
    // a parse of an error page as a list.
    let missing = kube::discovery::ApiResource {
        group: "nowhere.example".into(),
        version: "v1".into(),
        api_version: "nowhere.example/v1".into(),
        kind: "Nothing".into(),
        plural: "nothings".into(),
    };
    let api: kube::Api<kube::core::DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), &env.namespace, &missing);
    let mut events = prow_runtime::watcher::watcher(api, watcher::Config::default()).boxed();
    let first = events.next().await.expect("an event");
    assert!(matches!(first, Ok(Event::Init)), "Init before the request");
    match tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an answer within 30 s")
    {
        Some(Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))) => {
            assert_eq!(status.code, 404, "{status:?}")
        }
        other => panic!("expected the list's 404, got {other:?}"),
    }
}
