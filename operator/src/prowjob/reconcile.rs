//! One ProwJob reconcile: fetch (from the caches) -> decide (`prow_api::lifecycle`) -> apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prow_api::dedupe::{superseded_by, supersedes};
use prow_api::lifecycle::{self, decide, Step};
use prow_api::pod::{pod_for, pod_namespace};
use prow_api::{labels, ProwJob, ProwJobState};
use serde_json::{json, Value};
use tracing::Instrument;

use super::ledger::Grant;
use super::Context;
use crate::error::{api_code, is_request_error, Error, Result};
use crate::queue::Action;
use crate::MANAGER;

/// How long a waiting job waits before it checks its limits again by itself; a finished job of
/// the same name or queue wakes it sooner.
const WAITING_RECHECK: Duration = Duration::from_secs(60);

/// How long a job whose cached copy predates our own status write waits for the watch to
/// deliver the new copy before it is decided on anyway.
const STALE_RECHECK: Duration = Duration::from_secs(2);

/// Reconciles one ProwJob.
pub async fn reconcile(job: Arc<ProwJob>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", job = %job.name_any(), namespace = job.namespace().unwrap_or_default());
    let result = reconcile_job(&job, &ctx).instrument(span).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    result
}

/// What happens after a failed reconcile: a lost race is decided again at once, anything else
/// after the job's backoff (doubling with each failure in a row), with a Warning Event on the
/// job.
pub fn error_policy(job: Arc<ProwJob>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Conflict(_) = error {
        ctx.metrics.write_conflicts.inc();
        return Action::requeue(Duration::from_millis(100));
    }
    ctx.metrics.reconcile_errors.inc();
    tracing::warn!(job = %job.name_any(), error = %error, "reconcile failed");
    publish(
        &ctx,
        &job,
        EventType::Warning,
        "ReconcileError",
        error.to_string(),
    );
    Action::retry()
}

async fn reconcile_job(job: &ProwJob, ctx: &Context) -> Result<Action> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if ctx.ledger.is_superseded(
        &uid,
        job.metadata.resource_version.as_deref().unwrap_or_default(),
    ) {
        // Our own status write replaced this copy; its watch event brings the new one (the
        // queue runs the job at once then). The delay is only a fallback.
        return Ok(Action::requeue(STALE_RECHECK));
    }
    let pod_ns = pod_namespace(job, &ctx.settings.pod_namespace).to_string();
    let name = job.name_any();
    let mut pod = ctx
        .pods
        .get(&ObjectRef::new(&name).within(&pod_ns))
        .map(|p| p.to_pod());
    let state = job.state();
    if state != ProwJobState::Triggered {
        ctx.ledger.forget_start(&uid);
    }
    if job.is_complete() {
        ctx.ledger.forget_finish(&uid);
    }
    match pod {
        // The cache has caught up with the pod we created.
        Some(_) => ctx.ledger.forget_pod(&uid),
        // A pod we created a moment ago, not in the cache yet.
        None => pod = ctx.ledger.created_pod(&uid),
    }
    let just_started = state == ProwJobState::Triggered && ctx.ledger.is_started(&uid);
    let should_exist = state == ProwJobState::Pending && !job.is_complete();
    if pod.is_none() && (just_started || should_exist) {
        // The pod cache lags the job cache: before deciding the pod is missing, which would
        // end the job, read it directly. Rare, so no hot-path cost.
        pod = pods(ctx, &pod_ns).get_opt(&name).await?;
    }
    // One clock reading per reconcile: every time this pass decides or writes is the same.
    let now = Timestamp::now();
    let mut step = decide(job, pod.as_ref(), now, &ctx.settings.policy);
    let eviction = evicted_since(job, pod.as_ref(), &pod_ns, now, ctx).await;
    if eviction.is_some() {
        step = lifecycle::lost(job, lifecycle::EVICTED, &ctx.settings.policy);
    }
    let presubmit = job.spec.job_type == Some(prow_api::ProwJobType::Presubmit);
    let running = matches!(
        step,
        Step::Start | Step::Adopt | Step::WaitFor(_) | Step::Idle
    );
    if presubmit && running && !job.is_complete() {
        let jobs = ctx.jobs.state();
        // A new run wakes the older ones it supersedes; they abort themselves.
        for older in supersedes(job, jobs.iter().map(|j| j.as_ref())) {
            let _ = ctx.wake.send(ObjectRef::from_obj(older));
        }
        if let Some(newer) = superseded_by(job, jobs.iter().map(|j| j.as_ref())) {
            step = Step::Finish {
                state: ProwJobState::Aborted,
                description: format!(
                    "Aborted as the newer version of this job is running ({}).",
                    newer.name_any()
                ),
                delete_pod: pod.is_some(),
            };
        }
    }
    tracing::debug!(?step, "decided");
    let action = apply(job, pod.as_ref(), step, now, ctx).await?;
    if let Some(since) = eviction {
        // Acted on: the same eviction does not revive the next pod.
        ctx.evictions.take(&pod_ns, &name, since);
    }
    Ok(action)
}

/// Whether the Eviction API deleted a pending job's pod, which the API server (before 1.26)
/// records only in the operator's PodDisruptionBudget: the pod is being deleted, or gone, and
/// the budget recorded it after the pod was created. Returns the time the eviction must be
/// newer than.
async fn evicted_since(
    job: &ProwJob,
    pod: Option<&Pod>,
    pod_ns: &str,
    now: Timestamp,
    ctx: &Context,
) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    if job.state() != ProwJobState::Pending || job.is_complete() || status.pod_name.is_empty() {
        return None;
    }
    let since = match pod {
        Some(p) if p.metadata.deletion_timestamp.is_some() => p.metadata.creation_timestamp.clone(),
        Some(_) => return None,
        None => status.pending_time.clone(),
    }
    .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    if ctx.evictions.contains(pod_ns, &status.pod_name, since) {
        return Some(since);
    }
    if pod.is_none() {
        // Gone before the budget's watch brought the record: read the budget itself.
        for (name, at) in ctx.budgets.read(pod_ns).await {
            ctx.evictions.record(pod_ns, &name, at, now);
        }
        if ctx.evictions.contains(pod_ns, &status.pod_name, since) {
            return Some(since);
        }
    }
    None
}

async fn apply(
    job: &ProwJob,
    pod: Option<&Pod>,
    step: Step,
    now: Timestamp,
    ctx: &Context,
) -> Result<Action> {
    match step {
        Step::Idle => Ok(Action::await_change()),
        Step::WaitFor(after) => Ok(Action::requeue(
            after.saturating_add(Duration::from_millis(200)),
        )),
        Step::Start => start(job, now, ctx).await,
        Step::Adopt => {
            match pod {
                Some(pod) => adopt(job, pod, now, ctx).await,
                // `decide` adopts only a pod it was given.
                None => Ok(Action::requeue(Duration::ZERO)),
            }
        }
        Step::Restart => {
            let build_id = job
                .status
                .as_ref()
                .map(|s| s.build_id.clone())
                .unwrap_or_default();
            let created = create_pod(job, &build_id, ctx).await;
            match created {
                Ok(pod) => {
                    patch_status(ctx, job, json!({"pod_name": pod.name_any()})).await?;
                    Ok(Action::await_change())
                }
                // Created by an earlier pass whose write the caches do not show yet.
                Err(Error::Kube(e)) if api_code(&e) == Some(409) => {
                    Ok(Action::requeue(Duration::from_millis(200)))
                }
                Err(e) => fail_creation(job, e, now, ctx).await,
            }
        }
        Step::DeleteStalePod => {
            if let Some(pod) = pod {
                delete_pod(pod, ctx).await?;
            }
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Step::Revive { description } => {
            let count = job.status.as_ref().map_or(0, |s| s.pod_revival_count) + 1;
            // The count is stored before the pod goes, so a crash in between cannot revive twice
            // for one loss; `pod_name: null` marks "recreate once the old pod is gone".
            patch_status(
                ctx,
                job,
                json!({"pod_revival_count": count, "pod_name": null, "description": description}),
            )
            .await?;
            if let Some(pod) = pod {
                delete_pod(pod, ctx).await?;
            }
            publish(ctx, job, EventType::Warning, "PodRevived", description);
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Step::Finish {
            state,
            description,
            delete_pod: delete,
        } => {
            finish(job, state, &description, now, ctx).await?;
            if let (true, Some(pod)) = (delete, pod) {
                delete_pod(pod, ctx).await?;
            }
            Ok(Action::await_change())
        }
    }
}

/// Starts a triggered job if its limits allow: allocate a build ID, create the pod, record it.
async fn start(job: &ProwJob, now: Timestamp, ctx: &Context) -> Result<Action> {
    let now_millis = now.as_millisecond().max(0) as u64;
    let build_id = match ctx
        .ledger
        .try_start(job, &ctx.jobs, &ctx.settings.limits, now_millis)
    {
        Grant::Start(id) => id,
        Grant::Refuse(why) => {
            finish(job, ProwJobState::Error, &why, now, ctx).await?;
            return Ok(Action::await_change());
        }
        Grant::Wait(why) => {
            mark_waiting(job, &why, now, ctx).await?;
            return Ok(Action::requeue(WAITING_RECHECK));
        }
    };
    match create_pod(job, &build_id, ctx).await {
        Ok(pod) => {
            ctx.ledger
                .created(job.metadata.uid.as_deref().unwrap_or_default(), &pod);
            if let Some(created) = job.metadata.creation_timestamp.as_ref() {
                // An observation, not a decision: measured when the pod exists.
                let waited = Timestamp::now().duration_since(created.0);
                ctx.metrics
                    .start_latency
                    .observe(waited.as_secs_f64().max(0.0));
            }
            record_pending(job, &pod, &build_id, now, ctx).await?;
            Ok(Action::await_change())
        }
        Err(Error::Kube(e)) if api_code(&e) == Some(409) => {
            // Pod name = job name: "already exists" after a crash or retry means adopt it.
            let ns = pod_namespace(job, &ctx.settings.pod_namespace).to_string();
            let existing = pods(ctx, &ns).get_opt(&job.name_any()).await?;
            let step = decide(job, existing.as_ref(), now, &ctx.settings.policy);
            match (step, existing) {
                (Step::Adopt, Some(pod)) => adopt(job, &pod, now, ctx).await,
                (_, Some(pod)) => {
                    ctx.ledger
                        .forget_start(job.metadata.uid.as_deref().unwrap_or_default());
                    delete_pod(&pod, ctx).await?;
                    Ok(Action::requeue(Duration::from_secs(1)))
                }
                (_, None) => Ok(Action::requeue(Duration::ZERO)),
            }
        }
        Err(e) => {
            ctx.ledger
                .forget_start(job.metadata.uid.as_deref().unwrap_or_default());
            fail_creation(job, e, now, ctx).await
        }
    }
}

/// A pod creation failed: a pod that cannot be built from the job, or that the API server
/// refuses, ends the job in error with the reason; anything else is retried.
async fn fail_creation(job: &ProwJob, e: Error, now: Timestamp, ctx: &Context) -> Result<Action> {
    let message = match &e {
        Error::Pod(e) => e.to_string(),
        Error::Kube(refused) if is_request_error(refused) => match refused {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        },
        _ => return Err(e),
    };
    finish(
        job,
        ProwJobState::Error,
        &format!("Pod can not be created: {message}"),
        now,
        ctx,
    )
    .await?;
    Ok(Action::await_change())
}

async fn create_pod(job: &ProwJob, build_id: &str, ctx: &Context) -> Result<Pod> {
    let ns = pod_namespace(job, &ctx.settings.pod_namespace).to_string();
    let pod = pod_for(job, build_id, &ns)?;
    ctx.budgets.ensure(&ns).await;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    Ok(pods(ctx, &ns).create(&params, &pod).await?)
}

/// Records a created pod on its job: pending, with its name, build ID and times.
async fn record_pending(
    job: &ProwJob,
    pod: &Pod,
    build_id: &str,
    now: Timestamp,
    ctx: &Context,
) -> Result<()> {
    let now = Time(now);
    let mut status = json!({
        "state": "pending",
        "pendingTime": pod.metadata.creation_timestamp.clone().unwrap_or(now.clone()),
        "pod_name": pod.name_any(),
        "build_id": build_id,
        "description": "Job triggered.",
    });
    if job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none()
    {
        status["startTime"] = json!(now);
    }
    patch_status(ctx, job, status).await?;
    publish(
        ctx,
        job,
        EventType::Normal,
        "Pending",
        format!("Pod {} created for build {build_id}.", pod.name_any()),
    );
    Ok(())
}

/// A job whose pod exists but whose status does not say so: record the pod's build.
async fn adopt(job: &ProwJob, pod: &Pod, now: Timestamp, ctx: &Context) -> Result<Action> {
    let build_id = pod
        .labels()
        .get(labels::BUILD_ID)
        .cloned()
        .unwrap_or_default();
    record_pending(job, pod, &build_id, now, ctx).await?;
    Ok(Action::await_change())
}

/// Says on a triggered job why it waits, writing only when that changes.
async fn mark_waiting(job: &ProwJob, why: &str, now: Timestamp, ctx: &Context) -> Result<()> {
    let status = job.status.clone().unwrap_or_default();
    if status.state == Some(ProwJobState::Triggered) && status.description == why {
        return Ok(());
    }
    let mut patch = json!({"state": "triggered", "description": why});
    if status.start_time.is_none() {
        patch["startTime"] = json!(Time(now));
    }
    patch_status(ctx, job, patch).await?;
    Ok(())
}

/// Ends a job: final state, description, `completionTime` (written once: the write carries the
/// resourceVersion the decision was made on). Wakes jobs that may wait for its slot.
async fn finish(
    job: &ProwJob,
    state: ProwJobState,
    description: &str,
    now: Timestamp,
    ctx: &Context,
) -> Result<()> {
    let mut status = json!({
        "state": state,
        "description": description,
        "completionTime": Time(now),
    });
    if job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none()
    {
        status["startTime"] = status["completionTime"].clone();
    }
    patch_status(ctx, job, status).await?;
    ctx.ledger
        .finished(job.metadata.uid.as_deref().unwrap_or_default());
    let kind = if matches!(state, ProwJobState::Success | ProwJobState::Aborted) {
        EventType::Normal
    } else {
        EventType::Warning
    };
    let reason = match state {
        ProwJobState::Success => "Succeeded",
        ProwJobState::Failure => "Failed",
        ProwJobState::Aborted => "Aborted",
        _ => "Errored",
    };
    publish(ctx, job, kind, reason, description.to_string());
    wake_waiting(job, ctx);
    Ok(())
}

/// Asks for every triggered job that shares a limit with `job` to be reconciled again.
fn wake_waiting(job: &ProwJob, ctx: &Context) {
    let global = ctx.settings.limits.global > 0;
    for other in ctx.jobs.state() {
        let shares = global
            || other.spec.job == job.spec.job
            || (!job.spec.job_queue_name.is_empty()
                && other.spec.job_queue_name == job.spec.job_queue_name);
        if shares
            && other.state() == ProwJobState::Triggered
            && other.metadata.uid != job.metadata.uid
        {
            let _ = ctx.wake.send(ObjectRef::from_obj(other.as_ref()));
        }
    }
}

/// Patches the job's status, guarded by the resourceVersion the decision was made on.
async fn patch_status(ctx: &Context, job: &ProwJob, status: Value) -> Result<()> {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<ProwJob> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "metadata": {"resourceVersion": job.resource_version()},
        "status": status,
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&job.name_any(), &params, &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            ctx.ledger.wrote_status(
                job.metadata.uid.as_deref().unwrap_or_default(),
                job.metadata.resource_version.as_deref().unwrap_or_default(),
            );
            Ok(())
        }
        Err(e) if api_code(&e) == Some(409) => Err(Error::Conflict(job.name_any())),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a pod, only the one that was decided on (UID precondition); already gone is fine.
async fn delete_pod(pod: &Pod, ctx: &Context) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: ctx.settings.pod_deletion_grace_seconds.map(|s| s as u32),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods(ctx, &ns).delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pods(ctx: &Context, namespace: &str) -> Api<Pod> {
    Api::namespaced(ctx.client.clone(), namespace)
}

/// Publishes an Event on the job without holding up the reconcile.
fn publish(ctx: &Context, job: &ProwJob, kind: EventType, reason: &str, note: String) {
    let recorder = ctx.recorder.clone();
    let reference = job.object_ref(&());
    let event = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "publishing event");
        }
    });
}
