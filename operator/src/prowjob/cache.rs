//! What the operator keeps of ProwJobs and pods in memory. Finished jobs are most of a cluster's
//! jobs and need little of themselves, so they are stripped before they enter the store; pods
//! are read straight into [`SlimPod`], which holds only what the state machine reads (a full
//! `Pod` is 2 KB of struct before any of its strings).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
    PodSpec, PodStatus,
};
use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::watcher;
use prow_api::wire::{self, LeanJob};
use prow_api::{labels, ProwJob, ProwJobState};
use serde::{Deserialize, Deserializer};

/// A pod as the operator keeps it: identity, the labels and annotations it reads, container
/// names and how far each container got.
#[derive(Clone, Debug, Deserialize)]
pub struct SlimPod {
    /// Name, namespace, UID, times, the build-ID label and the job annotations.
    #[serde(default, deserialize_with = "wire::meta_without_managed_fields")]
    pub metadata: ObjectMeta,
    /// Container names.
    #[serde(default)]
    pub spec: SlimSpec,
    /// Phase, reason, start time, container states.
    #[serde(default)]
    pub status: SlimStatus,
}

/// The part of a pod spec the operator reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimSpec {
    /// The containers, by name.
    #[serde(default)]
    pub containers: Vec<Named>,
}

/// Something with a name.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Named {
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// The part of a pod status the operator reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimStatus {
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<String>,
    /// Evicted, NodeLost, ...
    pub reason: Option<String>,
    /// When the kubelet accepted the pod.
    pub start_time: Option<Time>,
    /// Whether each container terminated, by name.
    #[serde(default)]
    pub container_statuses: Vec<SlimContainerStatus>,
    /// Whether each init container terminated, by name.
    #[serde(default)]
    pub init_container_statuses: Vec<SlimContainerStatus>,
    /// Why the pod is being disrupted (eviction, preemption, ...), from a true
    /// `DisruptionTarget` condition: the only condition the rules read.
    #[serde(default, rename = "conditions", deserialize_with = "disruption_reason")]
    pub disrupted: Option<String>,
}

fn disruption_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Condition<'a> {
        #[serde(rename = "type", borrow)]
        type_: Cow<'a, str>,
        #[serde(borrow)]
        status: Cow<'a, str>,
        #[serde(default, borrow)]
        reason: Option<Cow<'a, str>>,
    }
    let conditions: Option<Vec<Condition<'de>>> = Option::deserialize(d)?;
    Ok(conditions.into_iter().flatten().find_map(|c| {
        (c.type_ == prow_api::lifecycle::DISRUPTION_TARGET && c.status == "True")
            .then(|| c.reason.map(Cow::into_owned).unwrap_or_default())
    }))
}

/// A container's name and whether it terminated.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimContainerStatus {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Its state; only `terminated` is kept.
    #[serde(default)]
    pub state: SlimState,
}

/// Whether a container terminated, and how.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimState {
    /// Set once the container ended.
    pub terminated: Option<Terminated>,
}

/// How a container ended.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    /// Its exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// Whether the kernel killed it for exceeding its memory limit (reason `OOMKilled`): the
    /// only reason the rules read, so a flag rather than a string for every cached container.
    #[serde(default, rename = "reason", deserialize_with = "reason_is_oom")]
    pub oom_killed: bool,
}

fn reason_is_oom<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let reason: Option<Cow<'de, str>> = Option::deserialize(d)?;
    Ok(reason.as_deref() == Some(OOM_KILLED))
}

const OOM_KILLED: &str = "OOMKilled";

impl kube::Resource for SlimPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl SlimPod {
    /// Drops every label and annotation the operator does not read, and managed fields.
    pub fn strip(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        meta.owner_references = None;
        meta.finalizers = None;
        if let Some(l) = meta.labels.as_mut() {
            l.retain(|k, _| k == labels::BUILD_ID);
        }
        if let Some(a) = meta.annotations.as_mut() {
            a.retain(|k, _| k == labels::JOB_UID || k == labels::JOB_NAMESPACE);
        }
    }

    /// The pod as the pure rules take it, with only the fields kept here.
    pub fn to_pod(&self) -> Pod {
        let statuses = |list: &[SlimContainerStatus]| {
            list.iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    state: Some(ContainerState {
                        terminated: c.state.terminated.map(|t| ContainerStateTerminated {
                            exit_code: t.exit_code,
                            reason: t.oom_killed.then(|| OOM_KILLED.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        };
        Pod {
            metadata: self.metadata.clone(),
            spec: Some(PodSpec {
                containers: self
                    .spec
                    .containers
                    .iter()
                    .map(|c| Container {
                        name: c.name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: self.status.phase.clone(),
                reason: self.status.reason.clone(),
                start_time: self.status.start_time.clone(),
                container_statuses: Some(statuses(&self.status.container_statuses)),
                init_container_statuses: Some(statuses(&self.status.init_container_statuses)),
                conditions: self.status.disrupted.as_ref().map(|reason| {
                    vec![PodCondition {
                        type_: prow_api::lifecycle::DISRUPTION_TARGET.into(),
                        status: "True".into(),
                        reason: Some(reason.clone()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }
}

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

/// The same watch event with the job it carries.
pub fn unwrap_job_event(event: watcher::Event<WireJob>) -> watcher::Event<ProwJob> {
    use watcher::Event::*;
    match event {
        Apply(job) => Apply(job.0),
        Delete(job) => Delete(job.0),
        Init => Init,
        InitApply(job) => InitApply(job.0),
        InitDone => InitDone,
    }
}

/// Drops from a job what no decision reads: managed fields and the last-applied annotation
/// always; the pod spec, every agent or reporter setting, labels and annotations once the job
/// is complete.
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
        let meta = &mut job.metadata;
        meta.annotations = None;
        meta.labels = None;
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

/// Whether a job from the watch needs a reconcile: every unfinished job, and finished jobs that
/// were aborted or errored (their pod may still run). Succeeded and failed jobs are done.
pub fn needs_reconcile(job: &ProwJob) -> bool {
    !job.is_complete() || matches!(job.state(), ProwJobState::Aborted | ProwJobState::Error)
}

/// Keeps of a pod its identity, its job annotations, container names and its status.
pub fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.owner_references = None;
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.retain(|k, _| k == labels::JOB_UID || k == labels::JOB_NAMESPACE);
    }
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ..Default::default()
                })
                .collect(),
            node_name: spec.node_name,
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.pod_ips = None;
        status.host_ips = None;
        status.message = None;
        for cs in status
            .container_statuses
            .iter_mut()
            .flatten()
            .chain(status.init_container_statuses.iter_mut().flatten())
        {
            cs.image.clear();
            cs.image_id.clear();
            cs.last_state = None;
        }
    }
}

#[cfg(test)]
mod tests {
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

        let event = unwrap_job_event(watcher::Event::Apply(done));
        assert!(matches!(event, watcher::Event::Apply(j) if j.spec.job == "j"));
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

    #[test]
    fn a_slim_pod_decides_like_the_full_one() {
        let job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "a", "namespace": "prow", "uid": "u"},
            "spec": {"agent": "kubernetes", "job": "j", "pod_spec": {"containers": [{"name": "t"}]}},
            "status": {"state": "pending", "pod_name": "a", "startTime": "2024-01-01T00:00:00Z"},
        }))
        .expect("job");
        let pod = |status: serde_json::Value| {
            json!({"metadata": {"name": "a", "namespace": "p", "creationTimestamp": "2024-01-01T00:00:00Z",
                                "labels": {"prow.k8s.io/build-id": "9", "x": "y"},
                                "annotations": {"prow-operator.dev/job-uid": "u", "big": "z"}},
                   "spec": {"containers": [{"name": "test", "image": "i", "env": [{"name": "A", "value": "1"}]},
                                           {"name": "side", "image": "i"}]},
                   "status": status})
        };
        let terminated =
            |code: i32| json!({"terminated": {"exitCode": code, "reason": "Completed"}});
        let cases = [
            json!({"phase": "Pending"}),
            json!({"phase": "Running", "startTime": "2024-01-01T00:00:00Z"}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)},
                {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)}]}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": terminated(0)}]}),
            json!({"phase": "Failed", "reason": "Evicted"}),
            json!({"phase": "Running", "startTime": "2024-01-01T00:00:00Z", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]}),
            json!({"phase": "Failed", "containerStatuses": [
                {"name": "test", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
            json!({"phase": "Unknown"}),
        ];
        let now: k8s_openapi::jiff::Timestamp = "2024-01-01T00:01:00Z".parse().expect("time");
        let policy = prow_api::lifecycle::Policy::default();
        for status in cases {
            let full: Pod = serde_json::from_value(pod(status.clone())).expect("pod");
            let mut slim: SlimPod = serde_json::from_value(pod(status.clone())).expect("slim");
            slim.strip();
            assert_eq!(
                prow_api::lifecycle::decide(&job, Some(&slim.to_pod()), now, &policy),
                prow_api::lifecycle::decide(&job, Some(&full), now, &policy),
                "{status}"
            );
        }
        let mut slim: SlimPod = serde_json::from_value(pod(json!({}))).expect("slim");
        slim.strip();
        let labels = slim.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.len(), 1, "only the build id is kept");
        assert_eq!(
            slim.metadata
                .annotations
                .as_ref()
                .expect("annotations")
                .len(),
            1
        );
    }

    #[test]
    fn pods_keep_container_names_uid_annotation_and_status() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "annotations": {"prow-operator.dev/job-uid": "u", "big": "x"}},
            "spec": {"containers": [{"name": "test", "image": "i", "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Running", "startTime": "2024-01-01T00:00:00Z"},
        }))
        .expect("pod");
        strip_pod(&mut pod);
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.containers[0].name, "test");
        assert!(spec.containers[0].env.is_none());
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.len(), 1);
        assert!(pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some());
    }
}
