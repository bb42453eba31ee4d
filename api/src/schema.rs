//! Schema helpers that keep the CRDs small: large embedded Kubernetes types are stored as objects
//! with preserved unknown fields, and the webhook validates them properly.

use schemars::{json_schema, Schema, SchemaGenerator};

/// An object the API server stores as given (no pruning, no schema of its own).
pub fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of objects the API server stores as given.
pub fn preserved_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// A map of label keys to values.
pub fn string_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" },
    })
}
