//! The one view of a pod that the job state machine reads and the operator keeps in memory.
//! A full `Pod` is 2 KB of struct before any of its strings; the view is read straight off the
//! wire (watch events, direct reads) with only what the rules read, so the operator never
//! builds a full pod to decide, and tests write pods as the API server sends them.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

use crate::labels;

/// The pod condition Kubernetes (1.26 and later) sets before it disrupts a pod: an eviction
/// through the Eviction API, a preemption, a taint, the kubelet. Older API servers delete an
/// evicted pod without a word, which reads as "Pod got deleted unexpectedly", as upstream.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";

/// A pod as the job state machine reads it and the operator keeps it: identity, the labels and
/// annotations it reads, container names and how far each container got.
#[derive(Clone, Debug, Deserialize)]
pub struct PodView {
    /// Name, namespace, UID, times, the build-ID label and the job annotations.
    #[serde(default, deserialize_with = "crate::wire::meta_without_managed_fields")]
    pub metadata: ObjectMeta,
    /// Container names.
    #[serde(default)]
    pub spec: ViewSpec,
    /// Phase, reason, start time, container states.
    #[serde(default)]
    pub status: ViewStatus,
    /// The job annotations and the build-ID label, taken out of the metadata's maps by
    /// [`PodView::strip`]: a map holds a 544-byte node for even one entry, twice per pod, which
    /// was half of a kept pod's memory.
    #[serde(skip)]
    pub kept: Kept,
}

/// What a stripped pod keeps of its labels and annotations.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    /// The UID of the pod's job (annotation `prow.k8s.io/job-uid`... see [`labels::JOB_UID`]).
    pub job_uid: Option<Box<str>>,
    /// The namespace of the pod's job ([`labels::JOB_NAMESPACE`]).
    pub job_namespace: Option<Box<str>>,
    /// The build ID ([`labels::BUILD_ID`]).
    pub build_id: Option<Box<str>>,
}

/// The part of a pod spec the operator reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewSpec {
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
pub struct ViewStatus {
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<String>,
    /// Evicted, NodeLost, ...
    pub reason: Option<String>,
    /// When the kubelet accepted the pod.
    pub start_time: Option<Time>,
    /// Whether each container terminated, by name.
    #[serde(default)]
    pub container_statuses: Vec<ViewContainerStatus>,
    /// Whether each init container terminated, by name.
    #[serde(default)]
    pub init_container_statuses: Vec<ViewContainerStatus>,
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
        (c.type_ == DISRUPTION_TARGET && c.status == "True")
            .then(|| c.reason.map(Cow::into_owned).unwrap_or_default())
    }))
}

/// A container's name and whether it terminated.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewContainerStatus {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Its state; only `terminated` is kept.
    #[serde(default)]
    pub state: ViewState,
}

/// Whether a container terminated, and how.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewState {
    /// Set once the container ended.
    pub terminated: Option<Terminated>,
}

/// How a container ended.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    /// Its exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// Whether the kernel killed it for exceeding its memory limit (reason `OOMKilled`): the
    /// only reason the rules read, so a flag rather than a string for every cached container.
    #[serde(default, rename = "reason", deserialize_with = "reason_is_oom")]
    pub oom_killed: bool,
    /// What the container wrote to its termination message, when it failed (the pod
    /// utilities say there why a clone failed or a test timed out); kept only for a failure.
    #[serde(default)]
    pub message: Option<String>,
}

fn reason_is_oom<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let reason: Option<Cow<'de, str>> = Option::deserialize(d)?;
    Ok(reason.as_deref() == Some(OOM_KILLED))
}

const OOM_KILLED: &str = "OOMKilled";

impl kube::Resource for PodView {
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

impl PodView {
    /// Keeps of the labels and annotations only what the operator reads ([`Kept`]), and drops
    /// managed fields.
    pub fn strip(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        meta.owner_references = None;
        meta.finalizers = None;
        let mut labels = meta.labels.take().unwrap_or_default();
        let mut annotations = meta.annotations.take().unwrap_or_default();
        let boxed = |v: Option<String>| v.map(String::into_boxed_str);
        self.kept = Kept {
            job_uid: boxed(annotations.remove(labels::JOB_UID)).or(self.kept.job_uid.take()),
            job_namespace: boxed(annotations.remove(labels::JOB_NAMESPACE))
                .or(self.kept.job_namespace.take()),
            build_id: boxed(labels.remove(labels::BUILD_ID)).or(self.kept.build_id.take()),
        };
    }

    /// The UID of the pod's job, from its annotation.
    pub fn job_uid(&self) -> Option<&str> {
        self.kept
            .job_uid
            .as_deref()
            .or_else(|| self.annotation(labels::JOB_UID))
    }

    /// The namespace of the pod's job, from its annotation.
    pub fn job_namespace(&self) -> Option<&str> {
        self.kept
            .job_namespace
            .as_deref()
            .or_else(|| self.annotation(labels::JOB_NAMESPACE))
    }

    /// The pod's build ID, from its label.
    pub fn build_id(&self) -> Option<&str> {
        self.kept.build_id.as_deref().or_else(|| {
            self.metadata
                .labels
                .as_ref()?
                .get(labels::BUILD_ID)
                .map(String::as_str)
        })
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// The view of a full pod (one the operator just created).
    pub fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let containers =
            |list: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
                list.into_iter()
                    .flatten()
                    .map(|c| ViewContainerStatus {
                        name: c.name.clone(),
                        state: ViewState {
                            terminated: c.state.as_ref().and_then(|s| s.terminated.as_ref()).map(
                                |t| Terminated {
                                    exit_code: t.exit_code,
                                    oom_killed: t.reason.as_deref() == Some(OOM_KILLED),
                                    message: t.message.clone().filter(|_| t.exit_code != 0),
                                },
                            ),
                        },
                    })
                    .collect()
            };
        let mut view = Self {
            metadata: pod.metadata.clone(),
            spec: ViewSpec {
                containers: pod
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .map(|c| Named {
                        name: c.name.clone(),
                    })
                    .collect(),
            },
            status: ViewStatus {
                phase: status.and_then(|s| s.phase.clone()),
                reason: status.and_then(|s| s.reason.clone()),
                start_time: status.and_then(|s| s.start_time.clone()),
                container_statuses: containers(status.and_then(|s| s.container_statuses.as_ref())),
                init_container_statuses: containers(
                    status.and_then(|s| s.init_container_statuses.as_ref()),
                ),
                disrupted: status
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .find(|c| c.type_ == DISRUPTION_TARGET && c.status == "True")
                    .map(|c| c.reason.clone().unwrap_or_default()),
            },
            kept: Kept::default(),
        };
        view.strip();
        view
    }
}
