//! What the operator keeps of ProwJobs and pods in memory. Finished jobs are most of a cluster's
//! jobs and need little of themselves, so they are stripped before they enter the store; pods
//! keep only what the state machine reads.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use prow_api::{labels, ProwJob};

/// Drops from a job what no decision reads: managed fields and the last-applied annotation
/// always; the pod spec and every agent or reporter setting once the job is complete.
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
        job.metadata.annotations = None;
        if let Some(status) = job.status.as_mut() {
            status.prev_report_states.clear();
            status.url.clear();
        }
    }
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
