//! The one view of a pod that the job state machine reads and the operator keeps in memory.
//! A full `Pod` is 2 KB of struct before any of its strings; the view is read straight off the
//! wire (watch events, direct reads) with only what the rules read, so the operator never
//! builds a full pod to decide, and tests write pods as the API server sends them.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

use crate::labels;

/// The pod condition Kubernetes (1.26 and later) sets before it disrupts a pod: an eviction
/// through the Eviction API, a preemption, a taint, the kubelet. Older API servers delete an
/// evicted pod without a word, which reads as "Pod got deleted unexpectedly", as upstream.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";

/// A pod as the job state machine reads it and the operator keeps it: identity, the three
/// labels and annotations it reads, how many containers it has and how far each one got.
///
/// Read off the wire as a [`WirePod`] and converted at once (also when parsed straight into a
/// `PodView`): the operator keeps 100,000 of these, and kube's `ObjectMeta` alone is 360 bytes
/// of struct before any of its strings, where [`PodMeta`] is what is read.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "WirePod")]
pub struct PodView {
    /// Name, namespace, UID, times, the build ID and the job annotations.
    pub metadata: PodMeta,
    /// The number of containers.
    pub spec: ViewSpec,
    /// Phase, reason, start time, container states.
    pub status: ViewStatus,
}

/// What a pod view keeps of a pod's metadata (the names match `ObjectMeta`'s).
#[derive(Clone, Debug, Default)]
pub struct PodMeta {
    /// The pod's name.
    pub name: Option<String>,
    /// The pod's namespace (one shared copy per namespace, [`shared`]).
    pub namespace: Option<Arc<str>>,
    /// The pod's UID.
    pub uid: Option<String>,
    /// When it was created.
    pub creation_timestamp: Option<Time>,
    /// Set once it is being deleted.
    pub deletion_timestamp: Option<Time>,
    /// The UID of the pod's job (annotation [`labels::JOB_UID`]).
    pub job_uid: Option<Box<str>>,
    /// The namespace of the pod's job ([`labels::JOB_NAMESPACE`]; shared like `namespace`).
    pub job_namespace: Option<Arc<str>>,
    /// The build ID ([`labels::BUILD_ID`]).
    pub build_id: Option<Box<str>>,
}

/// The one shared copy of `name` (a namespace): 100,000 cached pods live in a few namespaces,
/// and each kept its own two copies (its own and its job's) before.
pub fn shared(name: String) -> Arc<str> {
    static NAMES: Mutex<BTreeSet<Arc<str>>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name.as_str()) {
        return known.clone();
    }
    let new: Arc<str> = name.into();
    names.insert(new.clone());
    new
}

/// A pod as the watch and direct reads parse it: full metadata (without managed fields) and
/// the parts of spec and status a [`PodView`] keeps, which it becomes through `From`.
#[derive(Clone, Debug, Deserialize)]
pub struct WirePod {
    /// The pod's metadata.
    #[serde(default, deserialize_with = "crate::wire::meta_without_managed_fields")]
    pub metadata: ObjectMeta,
    /// The number of containers.
    #[serde(default)]
    pub spec: ViewSpec,
    /// Phase, reason, start time, container states.
    #[serde(default)]
    pub status: ViewStatus,
}

impl From<WirePod> for PodView {
    fn from(pod: WirePod) -> Self {
        let meta = pod.metadata;
        let mut labels = meta.labels.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        let boxed = |v: Option<String>| v.map(String::into_boxed_str);
        Self {
            metadata: PodMeta {
                name: meta.name,
                namespace: meta.namespace.map(shared),
                uid: meta.uid,
                creation_timestamp: meta.creation_timestamp,
                deletion_timestamp: meta.deletion_timestamp,
                job_uid: boxed(annotations.remove(labels::JOB_UID)),
                job_namespace: annotations.remove(labels::JOB_NAMESPACE).map(shared),
                build_id: boxed(labels.remove(labels::BUILD_ID)),
            },
            spec: pod.spec,
            status: pod.status,
        }
    }
}

/// The part of a pod spec the operator reads: how many containers it declares (whether every
/// one of them has ended is the only question the rules ask of the spec).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewSpec {
    /// The number of containers.
    #[serde(default, deserialize_with = "count")]
    pub containers: u32,
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let items: Option<Vec<serde::de::IgnoredAny>> = Option::deserialize(d)?;
    Ok(items.map_or(0, |v| u32::try_from(v.len()).unwrap_or(u32::MAX)))
}

/// The phases a pod goes through, kept as one static string each instead of one copy per pod.
const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

fn phase<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'static, str>>, D::Error> {
    let phase: Option<Cow<'de, str>> = Option::deserialize(d)?;
    Ok(phase.map(known_phase))
}

fn known_phase(phase: impl AsRef<str> + Into<String>) -> Cow<'static, str> {
    match PHASES.iter().find(|p| **p == phase.as_ref()) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(phase.into()),
    }
}

/// The part of a pod status the operator reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewStatus {
    /// Pending, Running, Succeeded, Failed or Unknown.
    #[serde(default, deserialize_with = "phase")]
    pub phase: Option<Cow<'static, str>>,
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

impl kube::Resource for WirePod {
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
    /// The pod's name ("" if it has none).
    pub fn name_any(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> Option<String> {
        self.metadata.namespace.as_deref().map(str::to_string)
    }

    /// The pod's UID.
    pub fn uid(&self) -> Option<String> {
        self.metadata.uid.clone()
    }

    /// The UID of the pod's job, from its annotation.
    pub fn job_uid(&self) -> Option<&str> {
        self.metadata.job_uid.as_deref()
    }

    /// The namespace of the pod's job, from its annotation.
    pub fn job_namespace(&self) -> Option<&str> {
        self.metadata.job_namespace.as_deref()
    }

    /// The pod's build ID, from its label.
    pub fn build_id(&self) -> Option<&str> {
        self.metadata.build_id.as_deref()
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
        Self::from(WirePod {
            metadata: pod.metadata.clone(),
            spec: ViewSpec {
                containers: pod
                    .spec
                    .as_ref()
                    .map_or(0, |s| u32::try_from(s.containers.len()).unwrap_or(u32::MAX)),
            },
            status: ViewStatus {
                phase: status.and_then(|s| s.phase.as_deref()).map(known_phase),
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
        })
    }
}

/// The key of a pod in a reflector store: its name and namespace only. kube's own key (for a
/// `Resource`) adds the resourceVersion and the UID, two more strings for every stored pod.
#[cfg(feature = "store")]
impl kube::runtime::reflector::Lookup for PodView {
    type DynamicType = ();

    fn kind(dt: &()) -> Cow<'_, str> {
        <WirePod as kube::Resource>::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        <WirePod as kube::Resource>::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        <WirePod as kube::Resource>::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        <WirePod as kube::Resource>::plural(dt)
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        self.metadata.name.as_deref().map(Cow::Borrowed)
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.metadata.namespace.as_deref().map(Cow::Borrowed)
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_view_keeps_a_container_count_and_a_shared_phase() {
        let view: PodView = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "p", "uid": "u",
                         "labels": {"prow.k8s.io/build-id": "7", "other": "x"},
                         "annotations": {"prow-operator.dev/job-uid": "j",
                                         "prow-operator.dev/job-namespace": "ci"}},
            "spec": {"containers": [{"name": "test", "image": "i"}, {"name": "side", "image": "i"}]},
            "status": {"phase": "Running"},
        }))
        .expect("view");
        assert_eq!(view.spec.containers, 2);
        assert!(matches!(view.status.phase, Some(Cow::Borrowed("Running"))));
        assert_eq!(
            (view.job_uid(), view.job_namespace(), view.build_id()),
            (Some("j"), Some("ci"), Some("7"))
        );
        assert_eq!(view.metadata.uid.as_deref(), Some("u"));
        let odd: PodView =
            serde_json::from_value(json!({"status": {"phase": "Hibernating"}})).expect("view");
        assert_eq!(odd.status.phase.as_deref(), Some("Hibernating"));
        assert_eq!(odd.spec.containers, 0);
    }

    #[test]
    fn pods_of_one_namespace_share_its_name() {
        let pod = |name: &str| -> PodView {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "test-pods-shared",
                             "annotations": {"prow-operator.dev/job-namespace": "test-pods-shared"}},
            }))
            .expect("view")
        };
        let (a, b) = (pod("a"), pod("b"));
        let (na, nb) = (
            a.metadata.namespace.clone().expect("ns"),
            b.metadata.namespace.clone().expect("ns"),
        );
        assert!(Arc::ptr_eq(&na, &nb), "one copy for both pods");
        let job_ns = a.metadata.job_namespace.clone().expect("job ns");
        assert!(Arc::ptr_eq(&na, &job_ns), "and for their jobs' namespace");
        assert_eq!(&*na, "test-pods-shared");
        assert_eq!(b.namespace().as_deref(), Some("test-pods-shared"));
    }
}
