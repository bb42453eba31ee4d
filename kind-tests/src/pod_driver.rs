//! Stands in for the kubelet: the test control plane has no scheduler and no kubelet, so tests
//! move pods through their phases by binding them and patching `pods/status`, as envtest-based
//! suites do.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The node pods are bound to; it need not exist.
pub const NODE: &str = "fake-node";

/// Moves pods of one namespace through scheduled -> running -> succeeded / failed, and can
/// evict them or mark them lost.
#[derive(Clone)]
pub struct PodDriver {
    pods: Api<Pod>,
}

impl PodDriver {
    /// A driver for the pods of `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            pods: Api::namespaced(client, namespace),
        }
    }

    /// Binds the pod to a node and records that the kubelet accepted it (`startTime`), as a
    /// scheduled pod whose containers are still being created.
    pub async fn schedule(&self, name: &str) -> anyhow::Result<Pod> {
        let pod = self.pods.get(name).await?;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        {
            let binding = Binding {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(NODE.into()),
                    api_version: Some("v1".into()),
                    ..Default::default()
                },
            };
            self.pods
                .create_subresource::<Binding, Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .with_context(|| format!("binding pod {name}"))?;
        }
        let waiting = container_states(
            &pod,
            |_| json!({"waiting": {"reason": "ContainerCreating"}}),
        );
        self.status(
            name,
            json!({
                "phase": "Pending",
                "startTime": now(),
                "conditions": [condition("PodScheduled", "True", None)],
                "containerStatuses": waiting,
            }),
        )
        .await
    }

    /// Starts every container.
    pub async fn run(&self, name: &str) -> anyhow::Result<Pod> {
        let pod = self.schedule_if_needed(name).await?;
        let started = now();
        let running = container_states(&pod, |_| json!({"running": {"startedAt": started}}));
        self.status(
            name,
            json!({
                "phase": "Running",
                "conditions": [
                    condition("PodScheduled", "True", None),
                    condition("Ready", "True", None),
                ],
                "containerStatuses": running,
            }),
        )
        .await
    }

    /// Ends every container with exit code 0.
    pub async fn succeed(&self, name: &str) -> anyhow::Result<Pod> {
        self.finish(name, |_| 0).await
    }

    /// Ends every container with the exit code `exit_code(container name)`; the pod succeeds
    /// when all are 0 and fails otherwise, as the kubelet decides for `restartPolicy: Never`.
    pub async fn finish(&self, name: &str, exit_code: impl Fn(&str) -> i32) -> anyhow::Result<Pod> {
        let pod = self.schedule_if_needed(name).await?;
        let finished = now();
        let mut failed = false;
        let states = container_states(&pod, |container| {
            let code = exit_code(container);
            failed |= code != 0;
            json!({"terminated": {
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": finished,
                "finishedAt": finished,
            }})
        });
        let phase = if failed { "Failed" } else { "Succeeded" };
        self.status(
            name,
            json!({
                "phase": phase,
                "conditions": [
                    condition("PodScheduled", "True", None),
                    condition("Ready", "False", Some("PodCompleted")),
                ],
                "containerStatuses": states,
            }),
        )
        .await
    }

    /// Evicts the pod, as the kubelet does under node pressure.
    pub async fn evict(&self, name: &str) -> anyhow::Result<Pod> {
        self.schedule_if_needed(name).await?;
        self.status(
            name,
            json!({
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
            }),
        )
        .await
    }

    /// Marks the pod's node lost.
    pub async fn lose_node(&self, name: &str) -> anyhow::Result<Pod> {
        self.schedule_if_needed(name).await?;
        self.status(
            name,
            json!({"reason": "NodeLost", "message": "Node fake-node which was running the pod is unresponsive"}),
        )
        .await
    }

    /// Puts the pod in phase Unknown, as when its node stops reporting.
    pub async fn mark_unknown(&self, name: &str) -> anyhow::Result<Pod> {
        self.schedule_if_needed(name).await?;
        self.status(name, json!({"phase": "Unknown"})).await
    }

    async fn schedule_if_needed(&self, name: &str) -> anyhow::Result<Pod> {
        let pod = self.pods.get(name).await?;
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some();
        if scheduled {
            Ok(pod)
        } else {
            self.schedule(name).await
        }
    }

    async fn status(&self, name: &str, status: Value) -> anyhow::Result<Pod> {
        self.pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .with_context(|| format!("patching status of pod {name}"))
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn condition(kind: &str, status: &str, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": status, "lastTransitionTime": now()});
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    c
}

/// One container status per container of the pod, with the state `state(container name)`.
fn container_states(pod: &Pod, mut state: impl FnMut(&str) -> Value) -> Vec<Value> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .map(|c| {
            let s = state(&c.name);
            let ready = s.get("running").is_some();
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "state": s,
            })
        })
        .collect()
}
