//! AdmissionReview v1 handling: decode, dispatch by endpoint to the pure rules in
//! `prow_api::validate` and `prow_api::preset`, answer. Never panics on input: a body that is
//! not an AdmissionReview is a 400 with the reason; an object of the wrong kind is denied.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prow_api::preset::{applied_annotation, inject, APPLIED_ANNOTATION};
use prow_api::validate::{self, explain, Violation};
use prow_api::{Preset, ProwJob, ProwJobAgent, TestCluster};

/// The admission endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/mutate/prowjobs`: inject presets.
    MutateProwJobs,
    /// `/validate/prowjobs`.
    ValidateProwJobs,
    /// `/validate/presets`.
    ValidatePresets,
    /// `/validate/testclusters`.
    ValidateTestClusters,
}

impl Endpoint {
    /// The kind the endpoint admits.
    pub fn kind(self) -> &'static str {
        match self {
            Self::MutateProwJobs | Self::ValidateProwJobs => "ProwJob",
            Self::ValidatePresets => "Preset",
            Self::ValidateTestClusters => "TestCluster",
        }
    }
}

/// The server-side dry run of a job's pod ("deep check").
#[derive(Clone)]
pub struct DeepCheck {
    /// Client for the dry run.
    pub client: Client,
    /// Namespace of pods of jobs without `spec.namespace`.
    pub pod_namespace: String,
    /// How long the dry run may take before the job is admitted with a warning.
    pub timeout: Duration,
}

/// Everything the handlers read.
#[derive(Clone)]
pub struct Admitter {
    /// Presets, kept by a watch.
    pub presets: Store<Preset>,
    /// Configured job queues, if known.
    pub job_queues: Option<BTreeSet<String>>,
    /// The deep check, when enabled.
    pub deep_check: Option<DeepCheck>,
}

/// The outcome of one review, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed as is.
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// Denied.
    Denied,
}

/// A body that is not an AdmissionReview.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl Admitter {
    /// Reviews one request body; returns the response review, the operation and the verdict.
    pub async fn review(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<(AdmissionReview<DynamicObject>, Operation, Verdict), BadRequest> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
            .map_err(|e| BadRequest(format!("body is not an AdmissionReview: {e}")))?;
        let request: AdmissionRequest<DynamicObject> = review
            .try_into()
            .map_err(|_| BadRequest("AdmissionReview has no request".into()))?;
        let operation = request.operation.clone();
        let response = self.respond(endpoint, &request).await;
        let verdict = match (response.allowed, response.patch.is_some()) {
            (false, _) => Verdict::Denied,
            (true, true) => Verdict::Patched,
            (true, false) => Verdict::Allowed,
        };
        Ok((response.into_review(), operation, verdict))
    }

    async fn respond(
        &self,
        endpoint: Endpoint,
        req: &AdmissionRequest<DynamicObject>,
    ) -> AdmissionResponse {
        let allowed = AdmissionResponse::from(req);
        if req.kind.kind != endpoint.kind() {
            return allowed.deny(format!(
                "this endpoint admits {} objects, not {}: fix the webhook configuration's rules",
                endpoint.kind(),
                req.kind.kind
            ));
        }
        let result = match endpoint {
            Endpoint::MutateProwJobs => self.mutate_prowjob(req, allowed.clone()),
            Endpoint::ValidateProwJobs => self.validate_prowjob(req, allowed.clone()).await,
            Endpoint::ValidatePresets => self.validate_preset(req, allowed.clone()),
            Endpoint::ValidateTestClusters => self.validate_testcluster(req, allowed.clone()),
        };
        result.unwrap_or_else(|message| allowed.deny(message))
    }

    fn mutate_prowjob(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        allowed: AdmissionResponse,
    ) -> Result<AdmissionResponse, String> {
        if req.operation != Operation::Create {
            return Ok(allowed);
        }
        let original = object_json(req.object.as_ref())?;
        let mut job: ProwJob = typed(&original)?;
        if job.spec.agent.is_none() {
            job.spec.agent = Some(ProwJobAgent::Kubernetes);
        }
        let namespace = req
            .namespace
            .clone()
            .or_else(|| job.namespace())
            .unwrap_or_default();
        let presets: Vec<_> = self
            .presets
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
            .collect();
        let labels = job.metadata.labels.clone().unwrap_or_default();
        if let Some(pod) = job.spec.pod_spec.as_mut() {
            match inject(pod, &labels, presets.iter().map(|p| p.as_ref())) {
                Ok(applied) if !applied.is_empty() => {
                    job.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(APPLIED_ANNOTATION.into(), applied_annotation(&applied));
                }
                Ok(_) => {}
                Err(conflicts) => {
                    let lines: Vec<String> = conflicts
                        .iter()
                        .map(|c| format!("spec.pod_spec: {c}"))
                        .collect();
                    return Err(lines.join("; "));
                }
            }
        }
        let mutated = serde_json::to_value(&job).map_err(|e| e.to_string())?;
        let patch = json_patch::diff(&original, &mutated);
        if patch.0.is_empty() {
            return Ok(allowed);
        }
        allowed.with_patch(patch).map_err(|e| e.to_string())
    }

    async fn validate_prowjob(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        allowed: AdmissionResponse,
    ) -> Result<AdmissionResponse, String> {
        if req.operation == Operation::Delete || req.operation == Operation::Connect {
            return Ok(allowed);
        }
        let job: ProwJob = typed(&object_json(req.object.as_ref())?)?;
        let config = validate::Config {
            job_queues: self.job_queues.clone(),
        };
        let mut violations = validate::prowjob(&job, &config);
        if req.operation == Operation::Update {
            if let Some(old) = req.old_object.as_ref() {
                let old: ProwJob = typed(&object_json(Some(old))?)?;
                violations.extend(validate::prowjob_update(&old, &job));
            }
        }
        deny_if(&violations)?;
        if req.operation != Operation::Create {
            return Ok(allowed);
        }
        match self.deep_check.as_ref() {
            Some(deep) => deep_check(deep, &job, allowed).await,
            None => Ok(allowed),
        }
    }

    fn validate_preset(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        allowed: AdmissionResponse,
    ) -> Result<AdmissionResponse, String> {
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return Ok(allowed);
        }
        let mut preset: Preset = typed(&object_json(req.object.as_ref())?)?;
        if preset.metadata.namespace.is_none() {
            preset.metadata.namespace = req.namespace.clone();
        }
        let mut violations = validate::preset(&preset);
        let others = self.presets.state();
        violations.extend(validate::preset_collisions(
            &preset,
            others.iter().map(|p| p.as_ref()),
        ));
        deny_if(&violations)?;
        Ok(allowed)
    }

    fn validate_testcluster(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        allowed: AdmissionResponse,
    ) -> Result<AdmissionResponse, String> {
        let violations = match req.operation {
            Operation::Create | Operation::Update => {
                validate::testcluster(&typed::<TestCluster>(&object_json(req.object.as_ref())?)?)
            }
            Operation::Delete => match req.old_object.as_ref() {
                Some(old) => validate::testcluster_delete(&typed(&object_json(Some(old))?)?),
                None => Vec::new(),
            },
            Operation::Connect => Vec::new(),
        };
        deny_if(&violations)?;
        Ok(allowed)
    }
}

fn deny_if(violations: &[Violation]) -> Result<(), String> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(explain(violations))
    }
}

fn object_json(object: Option<&DynamicObject>) -> Result<serde_json::Value, String> {
    let object = object.ok_or("the request carries no object")?;
    serde_json::to_value(object).map_err(|e| format!("the object does not serialise: {e}"))
}

fn typed<K: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<K, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("the object is malformed: {e}"))
}

/// Dry-runs the job's pod on the API server. Refused -> the job is refused with the server's
/// message; not possible (namespace missing, timeout, server error) -> admitted with a warning.
async fn deep_check(
    deep: &DeepCheck,
    job: &ProwJob,
    allowed: AdmissionResponse,
) -> Result<AdmissionResponse, String> {
    let mut probe = job.clone();
    if probe.metadata.name.is_none() {
        probe.metadata.name = Some("dry-run".into());
    }
    probe.metadata.uid.get_or_insert_with(|| "dry-run".into());
    let Ok(pod) = prow_api::pod::pod_for(&probe, "0", &deep.pod_namespace) else {
        return Ok(allowed);
    };
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(deep.client.clone(), &namespace);
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let attempt = tokio::time::timeout(deep.timeout, pods.create(&params, &pod)).await;
    let warning = match attempt {
        Ok(Ok(_)) => return Ok(allowed),
        Ok(Err(kube::Error::Api(s))) if matches!(s.code, 400 | 403 | 422) => {
            return Err(format!(
                "spec.pod_spec: the API server would refuse this job's pod in namespace {namespace}: {}",
                s.message
            ));
        }
        Ok(Err(e)) => format!("the pod of this job could not be checked by a dry run in namespace {namespace}: {e}"),
        Err(_) => format!(
            "the pod of this job could not be checked by a dry run in namespace {namespace}: no answer in {:?}",
            deep.timeout
        ),
    };
    let mut response = allowed;
    response.warnings = Some(vec![warning]);
    Ok(response)
}

#[cfg(test)]
mod tests;
