//! The Preset kind, `prow-operator.dev/v1alpha1`: env, volumes, mounts and tolerations that the
//! mutating webhook adds to every ProwJob whose labels match the selector.

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, PodSpec, Toleration, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{preserved_objects, string_map};

/// What a Preset adds to the pods of the jobs it selects.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "prow-operator.dev",
    version = "v1alpha1",
    kind = "Preset",
    namespaced,
    status = "PresetStatus",
    shortname = "pst",
    category = "prow",
    derive = "PartialEq",
    derive = "Default",
    doc = "Preset adds env, volumes, mounts and tolerations to every ProwJob whose labels match its selector.",
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".spec.selector",
        description = "Labels a job must carry"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the preset is in force"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PresetSpec {
    /// Labels a ProwJob must carry, every one with the same value, for the preset to apply.
    #[schemars(schema_with = "string_map")]
    pub selector: BTreeMap<String, String>,
    /// Environment variables added to every container (core/v1 EnvVar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects")]
    pub env: Vec<EnvVar>,
    /// Volumes added to the pod (core/v1 Volume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects")]
    pub volumes: Vec<Volume>,
    /// Volume mounts added to every container (core/v1 VolumeMount).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Tolerations added to the pod (core/v1 Toleration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects")]
    pub tolerations: Vec<Toleration>,
}

/// Whether a Preset is in force and whether it collides with another.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Conflicting conditions, Kubernetes style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Annotation on a ProwJob listing the presets injected into it, as `name@resourceVersion`.
pub const APPLIED_ANNOTATION: &str = "prow-operator.dev/presets";

/// Whether the preset applies to a job with `labels`: every selector label matches.
pub fn selects(spec: &PresetSpec, labels: &BTreeMap<String, String>) -> bool {
    !spec.selector.is_empty() && spec.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether some job could match both selectors: they agree on every label they share.
pub fn overlaps(a: &PresetSpec, b: &PresetSpec) -> bool {
    a.selector
        .iter()
        .all(|(k, v)| b.selector.get(k).is_none_or(|w| w == v))
}

/// An item two presets define differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    /// "env var", "volume", "volume mount" or "toleration".
    pub kind: &'static str,
    /// The item's name (a toleration's key).
    pub item: String,
    /// Field path of the item in the first preset.
    pub field: String,
}

/// Items `a` and `b` both define with different values, when a job could match both.
pub fn collisions(a: &PresetSpec, b: &PresetSpec) -> Vec<Collision> {
    let mut out = Vec::new();
    if !overlaps(a, b) {
        return out;
    }
    let mut check = |kind, field: String, item: &str, differs: bool| {
        if differs {
            out.push(Collision {
                kind,
                item: item.to_string(),
                field,
            });
        }
    };
    for (i, e) in a.env.iter().enumerate() {
        let other = b.env.iter().find(|o| o.name == e.name);
        check(
            "env var",
            format!("spec.env[{i}]"),
            &e.name,
            other.is_some_and(|o| o != e),
        );
    }
    for (i, v) in a.volumes.iter().enumerate() {
        let other = b.volumes.iter().find(|o| o.name == v.name);
        check(
            "volume",
            format!("spec.volumes[{i}]"),
            &v.name,
            other.is_some_and(|o| o != v),
        );
    }
    for (i, m) in a.volume_mounts.iter().enumerate() {
        let other = b.volume_mounts.iter().find(|o| o.name == m.name);
        check(
            "volume mount",
            format!("spec.volumeMounts[{i}]"),
            &m.name,
            other.is_some_and(|o| o != m),
        );
    }
    for (i, t) in a.tolerations.iter().enumerate() {
        let key = t.key.clone().unwrap_or_default();
        let other = b.tolerations.iter().find(|o| o.key == t.key);
        check(
            "toleration",
            format!("spec.tolerations[{i}]"),
            &key,
            other.is_some_and(|o| o != t),
        );
    }
    out
}

/// An item a preset would add under a name the pod already uses for something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeConflict {
    /// "env var", "volume", "volume mount" or "toleration".
    pub kind: &'static str,
    /// The item's name.
    pub item: String,
    /// Where the existing item came from: `the job` or `preset "x"`.
    pub existing: String,
    /// The preset whose item differs.
    pub preset: String,
}

impl std::fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} from {} differs from the one in {}: rename one or make them equal",
            self.kind, self.item, self.preset, self.existing
        )
    }
}

/// Adds one item unless an equal one is there; a different one under the same name is a
/// conflict. `sources` remembers where each name came from.
fn merge_item<T: PartialEq + Clone>(
    items: &mut Vec<T>,
    sources: &mut BTreeMap<String, String>,
    item: &T,
    name: String,
    (kind, preset): (&'static str, &str),
    same_name: impl Fn(&T) -> bool,
    conflicts: &mut Vec<MergeConflict>,
) {
    match items.iter().find(|existing| same_name(existing)) {
        Some(existing) if existing == item => {}
        Some(_) => conflicts.push(MergeConflict {
            kind,
            item: name.clone(),
            existing: sources
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "the job".into()),
            preset: preset.to_string(),
        }),
        None => {
            items.push(item.clone());
            sources.insert(name, preset.to_string());
        }
    }
}

/// Injects the presets that select `labels` into `pod`, in name order: env and volume mounts into
/// every container and init container, volumes and tolerations into the pod. Idempotent: an
/// equal item already present is left alone. Returns the presets applied, or every conflict.
pub fn inject<'a>(
    pod: &mut PodSpec,
    labels: &BTreeMap<String, String>,
    presets: impl IntoIterator<Item = &'a Preset>,
) -> Result<Vec<&'a Preset>, Vec<MergeConflict>> {
    let mut chosen: Vec<&Preset> = presets
        .into_iter()
        .filter(|p| selects(&p.spec, labels))
        .collect();
    chosen.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut conflicts = Vec::new();
    let mut volume_sources = BTreeMap::new();
    let mut toleration_sources = BTreeMap::new();
    let mut container_sources: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)> =
        Vec::new();
    for preset in &chosen {
        let source = format!(
            "preset {:?}",
            preset.metadata.name.clone().unwrap_or_default()
        );
        let spec = &preset.spec;
        for v in &spec.volumes {
            let volumes = pod.volumes.get_or_insert_with(Vec::new);
            merge_item(
                volumes,
                &mut volume_sources,
                v,
                v.name.clone(),
                ("volume", &source),
                |o| o.name == v.name,
                &mut conflicts,
            );
        }
        for t in &spec.tolerations {
            let tolerations = pod.tolerations.get_or_insert_with(Vec::new);
            let key = t.key.clone().unwrap_or_default();
            merge_item(
                tolerations,
                &mut toleration_sources,
                t,
                key,
                ("toleration", &source),
                |o| o.key == t.key,
                &mut conflicts,
            );
        }
        let containers = pod
            .containers
            .iter_mut()
            .chain(pod.init_containers.iter_mut().flatten());
        for (i, c) in containers.enumerate() {
            if container_sources.len() <= i {
                container_sources.push(Default::default());
            }
            let (env_sources, mount_sources) = &mut container_sources[i];
            for e in &spec.env {
                let env = c.env.get_or_insert_with(Vec::new);
                merge_item(
                    env,
                    env_sources,
                    e,
                    e.name.clone(),
                    ("env var", &source),
                    |o| o.name == e.name,
                    &mut conflicts,
                );
            }
            for m in &spec.volume_mounts {
                let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
                merge_item(
                    mounts,
                    mount_sources,
                    m,
                    m.name.clone(),
                    ("volume mount", &source),
                    |o| o.name == m.name,
                    &mut conflicts,
                );
            }
        }
    }
    conflicts.dedup();
    if conflicts.is_empty() {
        Ok(chosen)
    } else {
        Err(conflicts)
    }
}

/// The value of [`APPLIED_ANNOTATION`] for these presets: `name@resourceVersion,...`.
pub fn applied_annotation(presets: &[&Preset]) -> String {
    presets
        .iter()
        .map(|p| {
            format!(
                "{}@{}",
                p.metadata.name.as_deref().unwrap_or_default(),
                p.metadata.resource_version.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;

pub use crate::conditions::ConditionFacts;

/// The Ready and Conflicting conditions of `preset` among the presets of its namespace.
pub fn conditions<'a>(
    preset: &Preset,
    others: impl IntoIterator<Item = &'a Preset>,
) -> Vec<ConditionFacts> {
    let name = preset.metadata.name.clone().unwrap_or_default();
    let mut clashes: Vec<String> = Vec::new();
    for other in others {
        let other_name = other.metadata.name.clone().unwrap_or_default();
        if other_name == name || other.metadata.namespace != preset.metadata.namespace {
            continue;
        }
        for c in collisions(&preset.spec, &other.spec) {
            clashes.push(format!(
                "{} {:?} differs from preset {other_name:?}",
                c.kind, c.item
            ));
        }
    }
    clashes.sort();
    let ready = if preset.spec.selector.is_empty() {
        (
            "Ready",
            "False",
            "EmptySelector",
            "The selector names no label, so the preset applies to no job.".to_string(),
        )
    } else {
        (
            "Ready",
            "True",
            "Selecting",
            "The preset is injected into new jobs whose labels match its selector.".to_string(),
        )
    };
    let conflicting = if clashes.is_empty() {
        (
            "Conflicting",
            "False",
            "NoCollision",
            "No other preset gives a job a different value for the same item.".to_string(),
        )
    } else {
        (
            "Conflicting",
            "True",
            "Collision",
            format!("{}; a job matching both is refused.", clashes.join("; ")),
        )
    };
    vec![ready, conflicting]
}

/// The status `preset` should have among the presets of its namespace, if its stored status
/// says something else; `None` when it is up to date (nothing to write). A condition whose
/// status is unchanged keeps its `lastTransitionTime`; a new or flipped one takes `now`.
pub fn status_update<'a>(
    preset: &Preset,
    others: impl IntoIterator<Item = &'a Preset>,
    now: Time,
) -> Option<PresetStatus> {
    let status = preset.status.clone().unwrap_or_default();
    let generation = preset.metadata.generation;
    let wanted = crate::conditions::with_transitions(
        &status.conditions,
        conditions(preset, others),
        generation,
        &now,
    );
    let fresh = status.observed_generation == generation
        && crate::conditions::same(&status.conditions, &wanted);
    (!fresh).then_some(PresetStatus {
        observed_generation: generation,
        conditions: wanted,
    })
}
