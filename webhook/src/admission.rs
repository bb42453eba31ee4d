//! AdmissionReview v1 handling: decode, dispatch by endpoint to the pure rules in
//! `prow_api::validate` and `prow_api::preset`, answer. Never panics on input: a body that is
//! not an AdmissionReview is a 400 with the reason; an object of the wrong kind is denied.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prow_api::buildcluster::{alias_of, BuildCluster, DEFAULT_ALIAS};
use prow_api::jobdefinition::JobDefinition;
use prow_api::preset::{applied_annotation, inject, APPLIED_ANNOTATION};
use prow_api::testclusterpool::TestClusterPool;
use prow_api::validate::{self, explain, Validate, Violation};
use prow_api::wire::LeanJob;
use prow_api::{labels, Preset, ProwJob, ProwJobAgent, TestCluster};
use prow_runtime::kubeconfigs::KubeconfigClients;
use serde_json::json;

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
    /// `/validate/testclusterpools`.
    ValidateTestClusterPools,
    /// `/validate/jobdefinitions`.
    ValidateJobDefinitions,
}

impl Endpoint {
    /// Every endpoint; the chart and the demo register the hooks of
    /// `charts/prow-operator/files/admission-hooks.json`, which names exactly these.
    pub const ALL: [Endpoint; 6] = [
        Self::MutateProwJobs,
        Self::ValidateProwJobs,
        Self::ValidatePresets,
        Self::ValidateTestClusters,
        Self::ValidateTestClusterPools,
        Self::ValidateJobDefinitions,
    ];

    /// The path it is served at.
    pub fn path(self) -> &'static str {
        match self {
            Self::MutateProwJobs => "/mutate/prowjobs",
            Self::ValidateProwJobs => "/validate/prowjobs",
            Self::ValidatePresets => "/validate/presets",
            Self::ValidateTestClusters => "/validate/testclusters",
            Self::ValidateTestClusterPools => "/validate/testclusterpools",
            Self::ValidateJobDefinitions => "/validate/jobdefinitions",
        }
    }

    /// The endpoint served at `/{prefix}/{resource}`, if any.
    pub fn at(prefix: &str, resource: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| {
            e.path().strip_prefix('/').and_then(|p| p.split_once('/')) == Some((prefix, resource))
        })
    }

    /// The kind the endpoint admits.
    pub fn kind(self) -> &'static str {
        match self {
            Self::MutateProwJobs | Self::ValidateProwJobs => "ProwJob",
            Self::ValidatePresets => "Preset",
            Self::ValidateTestClusters => "TestCluster",
            Self::ValidateTestClusterPools => "TestClusterPool",
            Self::ValidateJobDefinitions => "JobDefinition",
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
    /// Clients for the BuildClusters' kubeconfigs: the pod of a job for another build cluster
    /// is dry-run there. `None` (`--deep-check-build-clusters=false`, or no BuildClusters
    /// read): such a job is admitted with a warning.
    pub kubeconfigs: Option<Arc<KubeconfigClients>>,
}

/// Everything the handlers read.
#[derive(Clone)]
pub struct Admitter {
    /// Presets, kept by a watch.
    pub presets: Store<Preset>,
    /// JobDefinitions, kept by a watch (a new one must not repeat another's job or context).
    pub definitions: Store<JobDefinition>,
    /// Configured job queues, if known.
    pub job_queues: Option<BTreeSet<String>>,
    /// The build clusters a new job may name, when they are known.
    pub build_clusters: Option<BuildClusters>,
    /// The deep check, when enabled.
    pub deep_check: Option<DeepCheck>,
}

/// The build cluster aliases: the BuildClusters, kept by a watch, and `--kubeconfig-dir`'s.
#[derive(Clone)]
pub struct BuildClusters {
    /// The BuildClusters.
    pub declared: Store<BuildCluster>,
    /// The contexts of `--kubeconfig-dir`.
    pub fixed: BTreeSet<String>,
}

impl BuildClusters {
    /// Whether `alias` is the webhook's own cluster: `default`, unless a BuildCluster (or a
    /// context of `--kubeconfig-dir`) named `default` says otherwise.
    fn is_own(&self, alias: &str) -> bool {
        alias == DEFAULT_ALIAS
            && !self.fixed.contains(DEFAULT_ALIAS)
            && self.declared_as(DEFAULT_ALIAS).is_none()
    }

    /// The BuildCluster named `alias`, if one is declared.
    fn declared_as(&self, alias: &str) -> Option<Arc<BuildCluster>> {
        self.declared
            .find(|b| b.metadata.name.as_deref() == Some(alias))
    }

    /// Every alias known now.
    fn aliases(&self) -> BTreeSet<String> {
        let mut all = self.fixed.clone();
        all.extend(self.declared.state().iter().map(|b| b.name_any()));
        all
    }
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

/// A review decoded for one endpoint: its request, or the answer already decided (wrong kind,
/// malformed object).
enum Decoded<K: kube::Resource> {
    Request(Box<AdmissionRequest<K>>),
    Answered(Operation, Box<AdmissionResponse>),
}

/// What the rules decided; a new job that passed them may still need the deep check, the one
/// part that waits on the API server.
enum Answer {
    Done(AdmissionResponse),
    DeepCheck(Box<ProwJob>, AdmissionResponse),
}

/// A review decided by the rules, before the deep check.
pub struct Decided {
    operation: Operation,
    answer: Answer,
}

/// Reviews larger than this (a `kubectl apply` of a decorated job is about 4 KiB) are decided
/// on tokio's blocking pool, so that a multi-megabyte review does not hold the thread serving
/// every other admission: a 2.9 MB review took 67-320 ms to read and check.
pub const OFFLOAD_ABOVE: usize = 64 * 1024;

/// Large reviews decided at once: one, so that however many arrive, they take one core and
/// leave the others to small admissions, and hold little memory (each is at most the 4 MiB
/// body limit, a few times that parsed).
static LARGE_REVIEWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

impl Admitter {
    /// Reviews one request body; returns the response review, the operation and the verdict.
    /// The object is parsed once, straight into its kind; only a body that does not parse that
    /// way is read again loosely, to say why.
    pub async fn review(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<(AdmissionReview<DynamicObject>, Operation, Verdict), BadRequest> {
        let decided = self.decide(endpoint, body)?;
        Ok(self.finish(decided).await)
    }

    /// [`Admitter::review`] for a body the caller gives away: one over [`OFFLOAD_ABOVE`] is
    /// decided on the blocking pool, one at a time.
    pub async fn review_owned(
        &self,
        endpoint: Endpoint,
        body: bytes::Bytes,
    ) -> Result<(AdmissionReview<DynamicObject>, Operation, Verdict), BadRequest> {
        if body.len() <= OFFLOAD_ABOVE {
            return self.review(endpoint, &body).await;
        }
        let _turn = LARGE_REVIEWS
            .acquire()
            .await
            .map_err(|_| BadRequest("the webhook is stopping".into()))?;
        let admitter = self.clone();
        let decided = tokio::task::spawn_blocking(move || admitter.decide(endpoint, &body))
            .await
            .map_err(|e| BadRequest(format!("the review could not be decided: {e}")))??;
        Ok(self.finish(decided).await)
    }

    /// Applies the rules to one review; no I/O.
    pub fn decide(&self, endpoint: Endpoint, body: &[u8]) -> Result<Decided, BadRequest> {
        let (operation, answer) = match endpoint {
            Endpoint::MutateProwJobs | Endpoint::ValidateProwJobs => {
                match decode::<LeanJob>(endpoint, body)? {
                    Decoded::Request(mut req) => {
                        let answer = if endpoint == Endpoint::MutateProwJobs {
                            Answer::Done(self.mutate_prowjob(&req))
                        } else {
                            self.validate_prowjob(&mut req)
                        };
                        (req.operation.clone(), answer)
                    }
                    Decoded::Answered(operation, response) => (operation, Answer::Done(*response)),
                }
            }
            Endpoint::ValidatePresets => self.admit(endpoint, body, &self.presets.state())?,
            Endpoint::ValidateTestClusters => self.admit::<TestCluster>(endpoint, body, &[])?,
            Endpoint::ValidateTestClusterPools => {
                self.admit::<TestClusterPool>(endpoint, body, &[])?
            }
            Endpoint::ValidateJobDefinitions => {
                self.admit(endpoint, body, &self.definitions.state())?
            }
        };
        Ok(Decided { operation, answer })
    }

    /// Runs the deep check where the rules asked for it, and builds the response review.
    pub async fn finish(
        &self,
        decided: Decided,
    ) -> (AdmissionReview<DynamicObject>, Operation, Verdict) {
        let response = match (decided.answer, self.deep_check.as_ref()) {
            (Answer::Done(response), _) => response,
            (Answer::DeepCheck(job, allowed), Some(deep)) => {
                let alias = alias_of(&job);
                let own = match &self.build_clusters {
                    Some(clusters) => clusters.is_own(alias),
                    None => alias == DEFAULT_ALIAS,
                };
                if own {
                    deep_check(&deep.client, deep, "", *job, allowed).await
                } else {
                    // Asked in the job's own cluster: namespaces, quotas and pod security
                    // differ between clusters, so the webhook's could refuse a good job.
                    match self.build_cluster_client(deep, alias).await {
                        Ok(client) => {
                            let place = format!(" of build cluster {alias}");
                            deep_check(&client, deep, &place, *job, allowed).await
                        }
                        Err(why) => {
                            let mut response = allowed;
                            response.warnings = Some(vec![format!(
                                "the pod of this job was not checked by a dry run in build cluster {alias}: {why}"
                            )]);
                            response
                        }
                    }
                }
            }
            (Answer::DeepCheck(_, allowed), None) => allowed,
        };
        let verdict = match (response.allowed, response.patch.is_some()) {
            (false, _) => Verdict::Denied,
            (true, true) => Verdict::Patched,
            (true, false) => Verdict::Allowed,
        };
        (response.into_review(), decided.operation, verdict)
    }

    /// The client for build cluster `alias` (a BuildCluster's kubeconfig), within the deep
    /// check's timeout, or why there is none.
    async fn build_cluster_client(&self, deep: &DeepCheck, alias: &str) -> Result<Client, String> {
        let Some(kubeconfigs) = &deep.kubeconfigs else {
            return Err(
                "the webhook reads no BuildCluster kubeconfigs (--deep-check-build-clusters)"
                    .into(),
            );
        };
        let declared = self
            .build_clusters
            .as_ref()
            .and_then(|b| b.declared_as(alias));
        let Some(cluster) = declared else {
            return Err(
                "it is no BuildCluster (the webhook does not read --kubeconfig-dir's kubeconfigs)"
                    .into(),
            );
        };
        tokio::time::timeout(deep.timeout, kubeconfigs.of(&cluster))
            .await
            .map_err(|_| format!("its kubeconfig was not read within {:?}", deep.timeout))?
    }

    fn mutate_prowjob(&self, req: &AdmissionRequest<LeanJob>) -> AdmissionResponse {
        let allowed = AdmissionResponse::from(req);
        let (Operation::Create, Some(LeanJob(job))) = (&req.operation, req.object.as_ref()) else {
            return allowed;
        };
        let patch = self.preset_patch(req, job).map(|mut ops| {
            ops.extend(unmark_completed(job));
            ops
        });
        match patch {
            Ok(ops) if ops.is_empty() => allowed,
            Ok(ops) => {
                let denied = allowed.clone();
                allowed
                    .with_patch(json_patch::Patch(ops))
                    .unwrap_or_else(|e| denied.deny(e.to_string()))
            }
            Err(message) => allowed.deny(message),
        }
    }

    /// The operations that default the agent and inject the job's presets: only what changes,
    /// so nothing else of the job is rewritten.
    fn preset_patch(
        &self,
        req: &AdmissionRequest<LeanJob>,
        job: &ProwJob,
    ) -> Result<Vec<PatchOperation>, String> {
        let mut ops = Vec::new();
        if job.spec.agent.is_none() {
            ops.push(add(&["spec", "agent"], json!(ProwJobAgent::Kubernetes)));
        }
        let Some(original) = job.spec.pod_spec.as_deref() else {
            return Ok(ops);
        };
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
        let empty = Default::default();
        let labels = job.metadata.labels.as_ref().unwrap_or(&empty);
        let mut pod = original.clone();
        let applied =
            inject(&mut pod, labels, presets.iter().map(|p| p.as_ref())).map_err(|conflicts| {
                let violations: Vec<Violation> = conflicts
                    .iter()
                    .map(|c| Violation {
                        field: "spec.pod_spec".into(),
                        message: c.to_string(),
                    })
                    .collect();
                explain(&violations)
            })?;
        if applied.is_empty() {
            return Ok(ops);
        }
        match pod_patch::appended(original, &pod) {
            Some(appends) => ops.extend(appends),
            None => ops.push(PatchOperation::Replace(ReplaceOperation {
                path: PointerBuf::from_tokens(["spec", "pod_spec"]),
                value: serde_json::to_value(&pod).map_err(|e| e.to_string())?,
            })),
        }
        let record = applied_annotation(&applied);
        match job.metadata.annotations.as_ref() {
            None => ops.push(add(
                &["metadata", "annotations"],
                json!({ APPLIED_ANNOTATION: record }),
            )),
            Some(a) if a.get(APPLIED_ANNOTATION) != Some(&record) => ops.push(add(
                &["metadata", "annotations", APPLIED_ANNOTATION],
                json!(record),
            )),
            Some(_) => {}
        }
        Ok(ops)
    }

    /// The rules for a job; a new job that passes them is moved out of `req` for the deep
    /// check, which needs it after the request is done with.
    fn validate_prowjob(&self, req: &mut AdmissionRequest<LeanJob>) -> Answer {
        let allowed = AdmissionResponse::from(&*req);
        if req.operation == Operation::Delete || req.operation == Operation::Connect {
            return Answer::Done(allowed);
        }
        let Some(LeanJob(job)) = req.object.as_ref() else {
            return Answer::Done(allowed.deny("the request carries no object"));
        };
        let old = match (&req.operation, req.old_object.as_ref()) {
            (Operation::Update, Some(LeanJob(old))) => Some(old),
            _ => None,
        };
        let mut violations = job.check(&self.config(), old, []);
        if let (Operation::Create, Some(clusters)) = (&req.operation, &self.build_clusters) {
            violations.extend(validate::build_cluster(job, &clusters.aliases()));
        }
        if !violations.is_empty() {
            return Answer::Done(allowed.deny(explain(&violations)));
        }
        match (&req.operation, self.deep_check.as_ref(), req.object.take()) {
            (Operation::Create, Some(_), Some(LeanJob(job))) => {
                Answer::DeepCheck(Box::new(job), allowed)
            }
            _ => Answer::Done(allowed),
        }
    }

    /// The one admission path of every kind but ProwJob (whose new jobs may also get the deep
    /// check): decode the review as `K`, then [`Admitter::check`] it against the `stored`
    /// objects of the kind.
    fn admit<K>(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        stored: &[Arc<K>],
    ) -> Result<(Operation, Answer), BadRequest>
    where
        K: Validate + Clone + serde::de::DeserializeOwned,
    {
        Ok(match decode::<K>(endpoint, body)? {
            Decoded::Request(req) => (
                req.operation.clone(),
                Answer::Done(self.check(&req, stored)),
            ),
            Decoded::Answered(operation, response) => (operation, Answer::Done(*response)),
        })
    }

    /// A create or update against the kind's rules, the object it replaces and its peers among
    /// `stored` (the others of its namespace); a delete against the kind's delete rules.
    fn check<K: Validate + Clone>(
        &self,
        req: &AdmissionRequest<K>,
        stored: &[Arc<K>],
    ) -> AdmissionResponse {
        let allowed = AdmissionResponse::from(req);
        let violations = match written(req) {
            Ok(Some(object)) => object.check(
                &self.config(),
                req.old_object.as_ref(),
                stored.iter().map(Arc::as_ref),
            ),
            Ok(None) if req.operation == Operation::Delete => req
                .old_object
                .as_ref()
                .map(K::delete_rules)
                .unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(why) => return allowed.deny(why),
        };
        answer(allowed, &violations)
    }

    fn config(&self) -> validate::Config {
        validate::Config {
            job_queues: self.job_queues.clone(),
        }
    }
}

/// The object a create or update writes, in the request's namespace when it names none;
/// `None` for other operations, which these rules do not judge.
fn written<K>(req: &AdmissionRequest<K>) -> Result<Option<K>, &'static str>
where
    K: kube::Resource + Clone,
{
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let mut object = req.object.clone().ok_or("the request carries no object")?;
    if object.meta().namespace.is_none() {
        object.meta_mut().namespace = req.namespace.clone();
    }
    Ok(Some(object))
}

/// Parses a review straight into `K`. A body that does not parse that way is read again as
/// any object: not an AdmissionReview at all is a [`BadRequest`]; an object of another kind is
/// denied with the reason; a malformed object is denied naming the field, except by the
/// mutating endpoint, which lets it through untouched: mutating webhooks run before the API
/// server's schema validation, whose error names the field in the user's terms.
fn decode<K>(endpoint: Endpoint, body: &[u8]) -> Result<Decoded<K>, BadRequest>
where
    K: kube::Resource + serde::de::DeserializeOwned,
{
    if let Ok(review) = serde_json::from_slice::<AdmissionReview<K>>(body) {
        let req: AdmissionRequest<K> = review
            .try_into()
            .map_err(|_| BadRequest("AdmissionReview has no request".into()))?;
        if req.kind.kind != endpoint.kind() {
            let response = AdmissionResponse::from(&req).deny(wrong_kind(endpoint, &req.kind.kind));
            return Ok(Decoded::Answered(req.operation.clone(), Box::new(response)));
        }
        return Ok(Decoded::Request(Box::new(req)));
    }
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("body is not an AdmissionReview: {e}")))?;
    let req: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadRequest("AdmissionReview has no request".into()))?;
    let allowed = AdmissionResponse::from(&req);
    let response = if req.kind.kind != endpoint.kind() {
        allowed.deny(wrong_kind(endpoint, &req.kind.kind))
    } else if endpoint == Endpoint::MutateProwJobs {
        let mut allowed = allowed;
        allowed.warnings = Some(vec![format!(
            "presets were not injected: the object is malformed ({})",
            malformed_field::<K>(body)
        )]);
        allowed
    } else {
        allowed.deny(format!(
            "the object is malformed: {}",
            malformed_field::<K>(body)
        ))
    };
    Ok(Decoded::Answered(req.operation.clone(), Box::new(response)))
}

/// The first field of `body`'s object that does not read as `K`, with why: parsed again with
/// the path tracked, which only a malformed object pays for.
fn malformed_field<K>(body: &[u8]) -> String
where
    K: kube::Resource + serde::de::DeserializeOwned,
{
    let mut reader = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, AdmissionReview<K>>(&mut reader) {
        Ok(_) => "it does not read as this kind".into(),
        Err(e) => {
            let path = e.path().to_string();
            let field = path.strip_prefix("request.object.").unwrap_or(&path);
            // serde_json's position ("at line 1 column 1098") means nothing to the user.
            let reason = e.inner().to_string();
            let reason = reason
                .rsplit_once(" at line ")
                .map_or(reason.as_str(), |(r, _)| r);
            format!("{field}: {reason}")
        }
    }
}

fn wrong_kind(endpoint: Endpoint, kind: &str) -> String {
    format!(
        "this endpoint admits {} objects, not {kind}: fix the webhook configuration's rules",
        endpoint.kind()
    )
}

/// A new job never starts finished (the API server drops a created job's status), so the
/// operator's mark of a finished job is taken off one that is created with it: a job restored
/// from a backup is marked again once its status says it is finished, and no unfinished job
/// hides from the short list a restarting operator reads first.
fn unmark_completed(job: &ProwJob) -> Option<PatchOperation> {
    let marks = job.metadata.labels.as_ref()?;
    marks.contains_key(labels::COMPLETED).then(|| {
        PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", labels::COMPLETED]),
        })
    })
}

fn add(path: &[&str], value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

fn answer(allowed: AdmissionResponse, violations: &[Violation]) -> AdmissionResponse {
    if violations.is_empty() {
        allowed
    } else {
        allowed.deny(explain(violations))
    }
}

/// Dry-runs the job's pod on the API server. Refused -> the job is refused with the server's
/// message; not possible (namespace missing, timeout, server error) -> admitted with a warning.
async fn deep_check(
    client: &Client,
    deep: &DeepCheck,
    place: &str,
    mut probe: ProwJob,
    allowed: AdmissionResponse,
) -> AdmissionResponse {
    if probe.metadata.name.is_none() {
        probe.metadata.name = Some("dry-run".into());
    }
    probe.metadata.uid.get_or_insert_with(|| "dry-run".into());
    let utility_image = prow_runtime::settings::DEFAULT_UTILITY_IMAGE;
    let Ok(pod) = prow_api::pod::decorated_pod_for(&probe, "0", &deep.pod_namespace, utility_image)
    else {
        return allowed;
    };
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let attempt = tokio::time::timeout(deep.timeout, pods.create(&params, &pod)).await;
    let warning = match attempt {
        Ok(Ok(_)) => return allowed,
        Ok(Err(kube::Error::Api(s))) if matches!(s.code, 400 | 403 | 422) => {
            return allowed.deny(format!(
                "spec.pod_spec: the API server would refuse this job's pod in namespace {namespace}{place}: {}",
                s.message
            ));
        }
        Ok(Err(e)) => format!("the pod of this job could not be checked by a dry run in namespace {namespace}{place}: {e}"),
        Err(_) => format!(
            "the pod of this job could not be checked by a dry run in namespace {namespace}{place}: no answer in {:?}",
            deep.timeout
        ),
    };
    let mut response = allowed;
    response.warnings = Some(vec![warning]);
    response
}

mod pod_patch;

#[cfg(test)]
mod tests;
