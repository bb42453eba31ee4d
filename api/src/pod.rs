//! The pod a ProwJob runs as: upstream plank's pod shape, built without I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Pod, PodSpec, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use crate::decorate::options::JobSpec;
use crate::decorate::{self, options::DecorationError};
use crate::labels::{self, is_valid_label_value};
use crate::pool::{
    kubeconfig_copy_name, LeasedCluster, KUBECONFIG_DIR, KUBECONFIG_KEY, KUBECONFIG_VOLUME,
};
pub use crate::prowjob::pod_namespace;
use crate::{ProwJob, ProwJobType, Refs};

/// Why a job has no pod to run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodError {
    /// The job has no `pod_spec`.
    #[error("the job has no pod_spec")]
    NoPodSpec,
    /// The job has no name or UID yet (it was not read from the API server).
    #[error("the job has no name or uid")]
    Unnamed,
    /// The leased TestCluster's kubeconfig Secret lacks the key it names.
    #[error("the test cluster's kubeconfig Secret {secret} has no key {key:?}")]
    NoKubeconfig {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// The job's `decoration_config` cannot be applied.
    #[error(transparent)]
    Decoration(#[from] DecorationError),
    /// A Secret the decorated pod would mount does not exist (the pod would wait for it).
    #[error("decoration_config.{field}: Secret {namespace}/{secret} does not exist")]
    MissingSecret {
        /// The `decoration_config` field naming it.
        field: String,
        /// Its namespace (the pod's).
        namespace: String,
        /// Its name.
        secret: String,
    },
}

/// Name of the single container of a one-container job, as upstream renames it.
pub const TEST_CONTAINER: &str = "test";

/// The pod that runs `job` as build `build_id`: named after the job, in the job's pod
/// namespace, labelled and annotated as upstream does, with the downward-API env on every
/// container, `restartPolicy: Never`, and no service-account token unless the job names a
/// service account.
pub fn pod_for(job: &ProwJob, build_id: &str, default_namespace: &str) -> Result<Pod, PodError> {
    let name = job.metadata.name.clone().ok_or(PodError::Unnamed)?;
    let uid = job.metadata.uid.clone().ok_or(PodError::Unnamed)?;
    let mut spec = job.spec.pod_spec.clone().ok_or(PodError::NoPodSpec)?;

    spec.restart_policy = Some("Never".into());
    if spec.containers.len() == 1 {
        spec.containers[0].name = TEST_CONTAINER.into();
    }
    let env = downward_env(job, build_id);
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container
            .env
            .get_or_insert_with(Vec::new)
            .extend(env.iter().cloned());
    }
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && spec.automount_service_account_token.is_none()
    {
        spec.automount_service_account_token = Some(false);
    }

    let mut annotations = job.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert(labels::JOB.into(), job.spec.job.clone());
    if !job.spec.context.is_empty() {
        annotations.insert(labels::CONTEXT.into(), job.spec.context.clone());
    }
    annotations.insert(
        labels::JOB_NAMESPACE.into(),
        job.metadata.namespace.clone().unwrap_or_default(),
    );
    annotations.insert(labels::JOB_UID.into(), uid);

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(pod_namespace(job, default_namespace).to_string()),
            labels: Some(pod_labels(job, build_id)),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(*spec),
        status: None,
    })
}

/// The pod of `job` as [`pod_for`] builds it, decorated when the job has a `decoration_config`
/// (see [`decorate`]), the utilities the job's `utility_images` leaves out running
/// `utility_image`.
pub fn decorated_pod_for(
    job: &ProwJob,
    build_id: &str,
    default_namespace: &str,
    utility_image: &str,
) -> Result<Pod, PodError> {
    let mut pod = pod_for(job, build_id, default_namespace)?;
    if let Some(spec) = pod.spec.as_mut() {
        let job_spec = serde_json::to_string(&job_spec(job, build_id)).unwrap_or_default();
        decorate::decorate(spec, job, &job_spec, utility_image)?;
    }
    Ok(pod)
}

/// Gives every container of a job's pod the cluster leased to the job: `TEST_CLUSTER`,
/// `TEST_CLUSTER_REGION`, and, when the cluster has a kubeconfig, the copy of its Secret in the
/// pod's namespace mounted read-only with `KUBECONFIG` pointing at it. A name the job already
/// sets is replaced, so the lease is what the job sees.
pub fn with_test_cluster(pod: &mut Pod, cluster: &LeasedCluster) {
    let copy = kubeconfig_copy_name(pod.metadata.name.as_deref().unwrap_or_default());
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let kubeconfig = cluster
        .kubeconfig
        .as_ref()
        .map(|_| (copy.as_str(), KUBECONFIG_KEY));
    give_test_cluster(spec, &cluster.name, &cluster.region, kubeconfig);
}

/// Gives every container of `spec` the test cluster `name` in `region`: `TEST_CLUSTER`,
/// `TEST_CLUSTER_REGION`, and with `kubeconfig` (a Secret of the pod's namespace and its key)
/// that Secret mounted read-only at [`KUBECONFIG_DIR`] with `KUBECONFIG` pointing at the key.
pub fn give_test_cluster(
    spec: &mut PodSpec,
    name: &str,
    region: &str,
    kubeconfig: Option<(&str, &str)>,
) {
    let mut env = vec![
        ("TEST_CLUSTER", name.to_string()),
        ("TEST_CLUSTER_REGION", region.to_string()),
    ];
    if let Some((secret, key)) = kubeconfig {
        env.push(("KUBECONFIG", format!("{KUBECONFIG_DIR}/{key}")));
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: KUBECONFIG_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        });
        for container in &mut spec.containers {
            container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: KUBECONFIG_VOLUME.into(),
                    mount_path: KUBECONFIG_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                });
        }
    }
    set_env(spec, &env);
}

/// Sets `env` in every container of `spec`, replacing a variable of the same name.
pub fn set_env(spec: &mut PodSpec, env: &[(&str, String)]) {
    for container in &mut spec.containers {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.retain(|v| !env.iter().any(|(name, _)| v.name == *name));
        vars.extend(env.iter().map(|(name, value)| EnvVar {
            name: (*name).into(),
            value: Some(value.clone()),
            value_from: None,
        }));
    }
}

/// The pod's labels: the job's own, then Prow's, keeping only valid label values.
pub fn pod_labels(job: &ProwJob, build_id: &str) -> BTreeMap<String, String> {
    let mut out = job.metadata.labels.clone().unwrap_or_default();
    let mut set = |key: &str, value: Option<String>| match value {
        Some(v) if is_valid_label_value(&v) => {
            out.insert(key.to_string(), v);
        }
        _ => {
            out.remove(key);
        }
    };
    set(labels::CREATED_BY_PROW, Some("true".into()));
    set(labels::JOB, labels::job_label_value(&job.spec.job));
    set(labels::TYPE, job.spec.job_type.map(|t| type_name(t).into()));
    set(labels::ID, job.metadata.name.clone());
    set(labels::BUILD_ID, Some(build_id.into()));
    if !job.spec.context.is_empty() {
        set(labels::CONTEXT, Some(job.spec.context.clone()));
    }
    if let Some(refs) = job.main_refs() {
        set(labels::REFS_ORG, Some(refs.org.clone()));
        set(labels::REFS_REPO, Some(refs.repo.clone()));
        set(labels::REFS_BASE_REF, Some(refs.base_ref.clone()));
        if let Some(pull) = refs.pulls.first() {
            set(labels::REFS_PULL, Some(pull.number.to_string()));
        }
    }
    out
}

/// The job's type as upstream spells it.
pub fn type_name(t: ProwJobType) -> &'static str {
    match t {
        ProwJobType::Presubmit => "presubmit",
        ProwJobType::Postsubmit => "postsubmit",
        ProwJobType::Periodic => "periodic",
        ProwJobType::Batch => "batch",
    }
}

/// The run as upstream's `downwardapi.JobSpec` describes it: what `JOB_SPEC` holds.
pub fn job_spec(job: &ProwJob, build_id: &str) -> JobSpec {
    JobSpec {
        job_type: job
            .spec
            .job_type
            .map(type_name)
            .unwrap_or_default()
            .to_string(),
        job: job.spec.job.clone(),
        buildid: build_id.to_string(),
        prowjobid: job.metadata.name.clone().unwrap_or_default(),
        refs: job.spec.refs.as_deref().cloned(),
        extra_refs: job.spec.extra_refs.clone(),
        decoration_config: job.spec.decoration_config.as_deref().cloned(),
    }
}

/// The downward-API environment of a run, sorted by name: `CI`, `JOB_*`, `BUILD_ID`, ...; for
/// postsubmits and batches the repository and base, for presubmits also the first pull.
pub fn downward_env(job: &ProwJob, build_id: &str) -> Vec<EnvVar> {
    let job_type = job.spec.job_type.map(type_name);
    let prowjob_id = job.metadata.name.as_deref().unwrap_or_default();
    let spec = job_spec(job, build_id);
    let mut env = BTreeMap::from([
        ("CI", "true".to_string()),
        ("JOB_NAME", job.spec.job.clone()),
        ("JOB_TYPE", job_type.unwrap_or_default().to_string()),
        ("JOB_SPEC", serde_json::to_string(&spec).unwrap_or_default()),
        ("BUILD_ID", build_id.to_string()),
        ("BUILD_NUMBER", build_id.to_string()),
        ("PROW_JOB_ID", prowjob_id.to_string()),
    ]);
    if decorate::is_decorated(job) {
        env.insert("ARTIFACTS", decorate::ARTIFACTS_DIR.to_string());
        env.insert("GOPATH", decorate::CODE_MOUNT.to_string());
    }
    let with_refs = matches!(
        job.spec.job_type,
        Some(ProwJobType::Postsubmit | ProwJobType::Batch | ProwJobType::Presubmit)
    );
    if let (true, Some(refs)) = (with_refs, job.main_refs()) {
        env.insert("REPO_OWNER", refs.org.clone());
        env.insert("REPO_NAME", refs.repo.clone());
        env.insert("PULL_BASE_REF", refs.base_ref.clone());
        env.insert("PULL_BASE_SHA", refs.base_sha.clone());
        env.insert("PULL_REFS", pull_refs(refs));
        if job.spec.job_type == Some(ProwJobType::Presubmit) {
            if let Some(pull) = refs.pulls.first() {
                env.insert("PULL_NUMBER", pull.number.to_string());
                env.insert("PULL_PULL_SHA", pull.sha.clone().unwrap_or_default());
                env.insert("PULL_HEAD_REF", pull.head_ref.clone());
                env.insert("PULL_TITLE", pull.title.clone());
            }
        }
    }
    env.into_iter()
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        })
        .collect()
}

/// `base_ref:base_sha,number:sha[:ref],...`, upstream's `Refs.String()`.
pub fn pull_refs(refs: &Refs) -> String {
    let mut parts = vec![if refs.base_sha.is_empty() {
        refs.base_ref.clone()
    } else {
        format!("{}:{}", refs.base_ref, refs.base_sha)
    }];
    for pull in &refs.pulls {
        let mut part = format!(
            "{}:{}",
            pull.number,
            pull.sha.as_deref().unwrap_or_default()
        );
        if !pull.git_ref.is_empty() {
            part = format!("{part}:{}", pull.git_ref);
        }
        parts.push(part);
    }
    parts.join(",")
}

#[cfg(test)]
mod tests;
