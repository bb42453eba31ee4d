//! JSON-patch operations that turn a job's pod spec into its preset-injected copy by appending
//! only what the presets added. The pod spec is stored with unknown fields preserved, so a
//! whole-spec replace written from the typed `PodSpec` could drop fields this build does not
//! model; appends leave everything else as the user wrote it, and keep the patch small.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Serialize;

/// The operations from `original` to `merged`, or `None` when `merged` is not `original` with
/// items appended to its volumes, tolerations and containers' env and volumeMounts (then the
/// caller replaces the spec instead).
pub fn appended(original: &PodSpec, merged: &PodSpec) -> Option<Vec<PatchOperation>> {
    let mut ops = Vec::new();
    let root = ["spec", "pod_spec"];
    list(
        &root,
        "volumes",
        &original.volumes,
        &merged.volumes,
        &mut ops,
    )?;
    list(
        &root,
        "tolerations",
        &original.tolerations,
        &merged.tolerations,
        &mut ops,
    )?;
    containers(
        "containers",
        &original.containers,
        &merged.containers,
        &mut ops,
    )?;
    let no_init = Vec::new();
    containers(
        "initContainers",
        original.init_containers.as_ref().unwrap_or(&no_init),
        merged.init_containers.as_ref().unwrap_or(&no_init),
        &mut ops,
    )?;
    Some(ops)
}

fn containers(
    field: &str,
    original: &[Container],
    merged: &[Container],
    ops: &mut Vec<PatchOperation>,
) -> Option<()> {
    if original.len() != merged.len() {
        return None;
    }
    for (i, (o, m)) in original.iter().zip(merged).enumerate() {
        let index = i.to_string();
        let at = ["spec", "pod_spec", field, index.as_str()];
        list(&at, "env", &o.env, &m.env, ops)?;
        list(&at, "volumeMounts", &o.volume_mounts, &m.volume_mounts, ops)?;
    }
    Some(())
}

/// Appends `merged[original.len()..]` to the list at `parent/field`, or adds the whole list
/// when the original had none.
fn list<T: PartialEq + Serialize>(
    parent: &[&str],
    field: &str,
    original: &Option<Vec<T>>,
    merged: &Option<Vec<T>>,
    ops: &mut Vec<PatchOperation>,
) -> Option<()> {
    let pointer = |last: Option<&str>| {
        PointerBuf::from_tokens(parent.iter().copied().chain([field]).chain(last))
    };
    match (original.as_deref().unwrap_or_default(), merged.as_deref()) {
        (o, m) if o == m.unwrap_or_default() => {}
        (_, None) => return None,
        ([], Some(m)) if original.is_none() => ops.push(PatchOperation::Add(AddOperation {
            path: pointer(None),
            value: serde_json::to_value(m).ok()?,
        })),
        (o, Some(m)) if m.starts_with(o) => {
            for item in &m[o.len()..] {
                ops.push(PatchOperation::Add(AddOperation {
                    path: pointer(Some("-")),
                    value: serde_json::to_value(item).ok()?,
                }));
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec(value: Value) -> PodSpec {
        serde_json::from_value(value).expect("pod spec")
    }

    /// The patch applied to `original`'s JSON, as the API server applies it.
    fn applied(original: &Value, ops: Vec<PatchOperation>) -> Value {
        let mut job = json!({"spec": {"pod_spec": original}});
        json_patch::patch(&mut job, &json_patch::Patch(ops)).expect("applies");
        job["spec"]["pod_spec"].take()
    }

    #[test]
    fn appends_only_what_was_added_and_keeps_unknown_fields() {
        let original = json!({
            "containers": [
                {"name": "test", "image": "x", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "y"}],
            "initContainers": [{"name": "init", "image": "z"}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "aFieldFromANewerKubernetes": {"kept": true},
        });
        let merged = spec(json!({
            "containers": [
                {"name": "test", "image": "x",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                {"name": "side", "image": "y", "env": [{"name": "B", "value": "2"}],
                 "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "initContainers": [{"name": "init", "image": "z", "env": [{"name": "B", "value": "2"}]}],
            "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        }));
        let ops = appended(&spec(original.clone()), &merged).expect("appends");
        let paths: Vec<String> = ops.iter().map(|o| o.path().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/spec/pod_spec/volumes",
                "/spec/pod_spec/tolerations/-",
                "/spec/pod_spec/containers/0/env/-",
                "/spec/pod_spec/containers/0/volumeMounts",
                "/spec/pod_spec/containers/1/env",
                "/spec/pod_spec/containers/1/volumeMounts",
                "/spec/pod_spec/initContainers/0/env",
            ]
        );
        let patched = applied(&original, ops);
        assert_eq!(patched["aFieldFromANewerKubernetes"]["kept"], true);
        let mut expected = serde_json::to_value(&merged).unwrap();
        expected["aFieldFromANewerKubernetes"] = json!({"kept": true});
        assert_eq!(patched, expected);
    }

    #[test]
    fn nothing_added_is_no_operation() {
        let s = spec(json!({"containers": [{"name": "test", "image": "x"}]}));
        assert_eq!(appended(&s, &s).map(|o| o.len()), Some(0));
    }

    #[test]
    fn anything_but_an_append_asks_for_a_replace() {
        let original = spec(json!({"containers": [{"name": "test", "image": "x",
            "env": [{"name": "A", "value": "1"}]}]}));
        let changed = spec(json!({"containers": [{"name": "test", "image": "x",
            "env": [{"name": "A", "value": "2"}]}]}));
        assert!(appended(&original, &changed).is_none(), "an item changed");
        let removed = spec(json!({"containers": [{"name": "test", "image": "x"}]}));
        assert!(appended(&original, &removed).is_none(), "a list removed");
        let more = spec(json!({"containers": [{"name": "test", "image": "x",
            "env": [{"name": "A", "value": "1"}]}, {"name": "b", "image": "y"}]}));
        assert!(appended(&original, &more).is_none(), "a container added");
        let empty = spec(json!({"containers": [{"name": "test", "image": "x", "env": []}]}));
        let filled = spec(json!({"containers": [{"name": "test", "image": "x",
            "env": [{"name": "A", "value": "1"}]}]}));
        let ops = appended(&empty, &filled).expect("appends to an empty list");
        assert_eq!(
            ops[0].path().to_string(),
            "/spec/pod_spec/containers/0/env/-"
        );
    }
}
