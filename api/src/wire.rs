//! Reading objects off the wire without what no decision reads: the managed fields, which on a
//! job with a decorated pod spec are most of its metadata (and, in an admission review of a
//! `kubectl apply`, a fifth of the parse time).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

use crate::{ProwJob, ProwJobSpec, ProwJobStatus};

/// A ProwJob read without its managed fields; everything else as sent.
#[derive(Clone, Debug)]
pub struct LeanJob(pub ProwJob);

impl<'de> Deserialize<'de> for LeanJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default, deserialize_with = "meta_without_managed_fields")]
            metadata: ObjectMeta,
            spec: ProwJobSpec,
            #[serde(default)]
            status: Option<ProwJobStatus>,
        }
        let fields = Fields::deserialize(deserializer)?;
        Ok(LeanJob(ProwJob {
            metadata: fields.metadata,
            spec: fields.spec,
            status: fields.status,
        }))
    }
}

/// Implements `kube::Resource` for a newtype around [`ProwJob`] (`struct X(pub ProwJob)`), so
/// a watch or an admission review can read jobs through it as ProwJobs.
#[macro_export]
macro_rules! prowjob_newtype_resource {
    ($newtype:ty) => {
        impl ::kube::Resource for $newtype {
            type DynamicType = ();
            type Scope = ::k8s_openapi::NamespaceResourceScope;

            fn kind(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::ProwJob as ::kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::ProwJob as ::kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::ProwJob as ::kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::ProwJob as ::kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.0.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut ::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.0.metadata
            }
        }
    };
}

prowjob_newtype_resource!(LeanJob);

/// Reads object metadata field by field, skipping `managedFields` unparsed: on a job with a
/// decorated pod spec they are most of the metadata, and neither the operator nor the webhook reads them.
pub fn meta_without_managed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        annotations: Option<BTreeMap<String, String>>,
        creation_timestamp: Option<Time>,
        deletion_grace_period_seconds: Option<i64>,
        deletion_timestamp: Option<Time>,
        finalizers: Option<Vec<String>>,
        generate_name: Option<String>,
        generation: Option<i64>,
        labels: Option<BTreeMap<String, String>>,
        name: Option<String>,
        namespace: Option<String>,
        owner_references: Option<Vec<OwnerReference>>,
        resource_version: Option<String>,
        self_link: Option<String>,
        uid: Option<String>,
    }
    let m = Option::<Meta>::deserialize(deserializer)?;
    Ok(m.map(|m| ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
    .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lean_job_is_the_job_without_its_managed_fields() {
        let wire = json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "j", "namespace": "ci", "uid": "u", "resourceVersion": "7",
                         "labels": {"a": "b"}, "annotations": {"c": "d"},
                         "managedFields": [{"manager": "kubectl", "operation": "Update",
                                            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"type": "periodic", "job": "ci-j"},
            "status": {"state": "triggered"},
        });
        let LeanJob(lean) = serde_json::from_value(wire.clone()).expect("lean");
        let mut full: ProwJob = serde_json::from_value(wire).expect("full");
        assert!(full.metadata.managed_fields.is_some());
        full.metadata.managed_fields = None;
        assert_eq!(
            serde_json::to_value(&lean).unwrap(),
            serde_json::to_value(&full).unwrap()
        );
        let LeanJob(bare) =
            serde_json::from_value(json!({"spec": {"job": "x"}, "metadata": null})).expect("bare");
        assert_eq!(bare.metadata, ObjectMeta::default());
        assert!(bare.status.is_none());
    }
}
