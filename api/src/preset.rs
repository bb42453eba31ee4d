//! The Preset kind, `prow-operator.dev/v1alpha1`: env, volumes, mounts and tolerations that the
//! mutating webhook adds to every ProwJob whose labels match the selector.

// kube's derive takes one `printcolumn(...)` per column, whose keys clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Toleration, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
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
