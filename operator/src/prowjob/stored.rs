//! What the operator keeps of ProwJobs in memory. Finished jobs are most of a cluster's jobs
//! and need little of themselves, so they are stripped as they are read off the wire. (Pods
//! are kept as `prow_api::pod_view::PodView`, the view the state machine reads.)

use prow_api::jobdefinition::{ATTEMPT_ANNOTATION, DEFINITION_LABEL, TRIGGER_LABEL};
use prow_api::lifecycle::is_marked_completed;
use prow_api::wire::LeanJob;
use prow_api::ProwJob;
use serde::{Deserialize, Deserializer};

/// A ProwJob as the watch reads it: parsed without its managed fields and stripped
/// ([`strip_job`]) as soon as it is parsed. A list of 10,000 finished jobs then never holds
/// 10,000 full jobs at once, only the one being read.
#[derive(Clone, Debug)]
pub struct WireJob(pub ProwJob);

impl<'de> Deserialize<'de> for WireJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let LeanJob(mut job) = LeanJob::deserialize(deserializer)?;
        strip_job(&mut job);
        Ok(WireJob(job))
    }
}

prow_api::prowjob_newtype_resource!(WireJob);

/// The store key of `job`.
pub fn key_of(job: &ProwJob) -> kube::runtime::reflector::ObjectRef<Job> {
    kube::runtime::reflector::ObjectRef::new(job.metadata.name.as_deref().unwrap_or_default())
        .within(job.metadata.namespace.as_deref().unwrap_or_default())
}

impl From<WireJob> for Job {
    fn from(job: WireJob) -> Self {
        Job(job.0)
    }
}

/// A ProwJob as the operator's store keeps it (`Store<Job>`), read as a ProwJob through
/// `Deref`. Its store key is its name and namespace: kube's key for a `Resource` adds its
/// resourceVersion and UID, two more strings for each of 100,000 stored jobs (the key's slot
/// in the table is the same size either way).
#[derive(Clone, Debug)]
pub struct Job(pub ProwJob);

impl Job {
    /// Whether the job is marked [`prow_api::labels::COMPLETED`]: by its label, or, stripped
    /// and finished, by the empty label map [`strip_job`] leaves as the mark.
    pub fn marked(&self) -> bool {
        match &self.0.metadata.labels {
            Some(labels) => {
                labels
                    .get(prow_api::labels::COMPLETED)
                    .is_some_and(|v| v == "true")
                    || (labels.is_empty() && self.0.is_complete())
            }
            None => false,
        }
    }

    /// Whether a watch event of this job asks for a reconcile
    /// ([`prow_api::lifecycle::needs_reconcile`]).
    pub fn needs_reconcile(&self) -> bool {
        prow_api::lifecycle::needs_reconcile(&self.0, self.marked())
    }
}

impl std::ops::Deref for Job {
    type Target = ProwJob;

    fn deref(&self) -> &ProwJob {
        &self.0
    }
}

impl crate::controller::Object for Job {
    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        kube::Resource::object_ref(&self.0, &())
    }
}

impl prow_api::prowjob::JobRef for Job {
    fn job(&self) -> &ProwJob {
        &self.0
    }
}

impl kube::runtime::reflector::Lookup for Job {
    type DynamicType = ();

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        <ProwJob as kube::Resource>::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        <ProwJob as kube::Resource>::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        <ProwJob as kube::Resource>::version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        <ProwJob as kube::Resource>::plural(dt)
    }
    fn name(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0
            .metadata
            .name
            .as_deref()
            .map(std::borrow::Cow::Borrowed)
    }
    fn namespace(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0
            .metadata
            .namespace
            .as_deref()
            .map(std::borrow::Cow::Borrowed)
    }
    fn resource_version(&self) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
    fn uid(&self) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}

/// Labels a finished job keeps.
const KEPT_LABELS: [&str; 3] = [prow_api::labels::CLEANS, DEFINITION_LABEL, TRIGGER_LABEL];

/// The entries of `map` under `keys`; `None` when there are none.
fn keep(
    map: Option<std::collections::BTreeMap<String, String>>,
    keys: &[&str],
) -> Option<std::collections::BTreeMap<String, String>> {
    let kept: std::collections::BTreeMap<String, String> = map?
        .into_iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Drops from a job what no decision reads: managed fields and the last-applied annotation
/// always; the pod spec, every agent or reporter setting, labels and annotations once the job
/// is complete. A complete job marked [`prow_api::labels::COMPLETED`] keeps the mark: in its
/// label map if it keeps other labels, else as an empty map ([`Job::marked`]).
pub fn strip_job(job: &mut ProwJob) {
    job.metadata.managed_fields = None;
    if let Some(a) = job.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if job.is_complete() {
        let spec = &mut job.spec;
        spec.pod_spec = None;
        spec.decoration_config = None;
        spec.reporter_config = None;
        spec.rerun_auth_config = None;
        spec.jenkins_spec = None;
        spec.pipeline_run_spec = None;
        spec.tekton_pipeline_run_spec = None;
        spec.prowjob_defaults = None;
        spec.extra_refs.clear();
        spec.refs = None;
        let marked = is_marked_completed(job);
        let meta = &mut job.metadata;
        // A clean-up job's end is read by its cluster's reconciler, which finds it by label; a
        // definition's run is found by its labels, and its attempt counts retries.
        meta.labels = keep(meta.labels.take(), &KEPT_LABELS);
        if marked {
            // The mark costs no map of its own: one entry allocates a whole B-tree node
            // (about 600 bytes; 60 MB over 100,000 jobs, and even 8 bytes more on every stored
            // job moved the operator's RSS up by 18 MB). An empty map allocates nothing.
            let labels = meta.labels.get_or_insert_with(Default::default);
            if !labels.is_empty() {
                labels.insert(prow_api::labels::COMPLETED.into(), "true".into());
            }
        }
        meta.annotations = keep(meta.annotations.take(), &[ATTEMPT_ANNOTATION]);
        meta.owner_references = None;
        meta.finalizers = None;
        meta.generate_name = None;
        meta.self_link = None;
        if let Some(status) = job.status.as_mut() {
            status.prev_report_states.clear();
            status.url.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn finished_jobs_lose_their_pod_spec_but_keep_what_retention_reads() {
        let mut job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "a", "annotations": {"x": "y"}},
            "spec": {"type": "periodic", "job": "j", "pod_spec": {"containers": [{"name": "t"}]},
                     "decoration_config": {"timeout": "1h"}},
            "status": {"state": "success", "completionTime": "2024-01-01T00:00:00Z",
                       "startTime": "2024-01-01T00:00:00Z", "build_id": "5"},
        }))
        .expect("job");
        strip_job(&mut job);
        assert!(job.spec.pod_spec.is_none());
        assert!(job.spec.decoration_config.is_none());
        assert_eq!(job.spec.job, "j");
        assert!(job.is_complete());
        assert_eq!(job.status.as_ref().map(|s| s.build_id.as_str()), Some("5"));
        assert!(Job(job.clone()).needs_reconcile(), "not marked yet");
        job.labels_mut()
            .insert(prow_api::labels::COMPLETED.into(), "true".into());
        assert!(!Job(job.clone()).needs_reconcile());
        let wire: WireJob = serde_json::from_value(serde_json::to_value(&job).expect("json"))
            .expect("read as a watch reads it");
        let marked = Job::from(wire);
        assert!(
            !marked.needs_reconcile(),
            "the mark is kept: a marked job is not reconciled (nor marked) again"
        );
        assert_eq!(
            marked.metadata.labels,
            Some(Default::default()),
            "an empty map (no allocation), not a map of its own"
        );
        // With other labels kept, the mark is one of them.
        job.labels_mut()
            .insert(TRIGGER_LABEL.into(), "retry".into());
        strip_job(&mut job);
        let kept = Job(job);
        assert!(kept.marked() && !kept.needs_reconcile());
        assert_eq!(kept.labels().len(), 2);
        // A finished job without the mark keeps no map at all.
        let mut unmarked = kept.0.clone();
        unmarked.labels_mut().clear();
        strip_job(&mut unmarked);
        assert_eq!(unmarked.metadata.labels, None);
        assert!(!Job(unmarked).marked());
    }

    #[test]
    fn a_finished_run_keeps_what_its_definition_reads() {
        let mut job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "a",
                         "labels": {DEFINITION_LABEL: "nightly", TRIGGER_LABEL: "retry", "preset-x": "true"},
                         "annotations": {ATTEMPT_ANNOTATION: "2", "note": "long text"}},
            "spec": {"type": "periodic", "job": "j"},
            "status": {"state": "failure", "completionTime": "2024-01-01T00:00:00Z"},
        }))
        .expect("job");
        strip_job(&mut job);
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(labels.get(TRIGGER_LABEL).map(String::as_str), Some("retry"));
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert_eq!(
            annotations.get(ATTEMPT_ANNOTATION).map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn jobs_are_read_without_managed_fields_and_stripped_as_they_are_read() {
        let job = |status: serde_json::Value| {
            json!({
                "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
                "metadata": {"name": "a", "namespace": "prow", "uid": "u", "resourceVersion": "7",
                             "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"l": "v"},
                             "managedFields": [{"manager": "m", "operation": "Update",
                                                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
                "spec": {"type": "periodic", "job": "j", "pod_spec": {"containers": [{"name": "t"}]}},
                "status": status,
            })
        };
        let running: WireJob =
            serde_json::from_value(job(json!({"state": "pending"}))).expect("running");
        let meta = &running.0.metadata;
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.uid.as_deref(), Some("u"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.creation_timestamp.is_some());
        assert!(meta.managed_fields.is_none());
        assert!(
            meta.labels.is_some(),
            "a running job's labels go on its pod"
        );
        assert!(running.0.spec.pod_spec.is_some());

        let done: WireJob = serde_json::from_value(job(json!({
            "state": "success", "completionTime": "2024-01-01T00:10:00Z", "build_id": "3"})))
        .expect("done");
        assert!(done.0.spec.pod_spec.is_none());
        assert!(done.0.metadata.labels.is_none());
        assert_eq!(done.0.spec.job, "j");
        assert!(done.0.is_complete());

        let stored = Job::from(done);
        assert_eq!(stored.spec.job, "j", "read through the wrapper");
        let key = kube::runtime::reflector::Lookup::to_object_ref(&stored, ());
        assert_eq!(key, key_of(&stored));
        assert!(
            key.extra.uid.is_none() && key.extra.resource_version.is_none(),
            "the store's key is name and namespace only"
        );
    }

    #[test]
    fn unfinished_jobs_keep_their_pod_spec() {
        let mut job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "a"},
            "spec": {"job": "j", "pod_spec": {"containers": [{"name": "t"}]}},
        }))
        .expect("job");
        strip_job(&mut job);
        assert!(job.spec.pod_spec.is_some());
    }
}
