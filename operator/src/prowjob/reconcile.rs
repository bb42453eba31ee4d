//! One ProwJob reconcile: fetch (from the caches) -> plan (`prow_api::plan`, pure) -> apply
//! the plan through one small interpreter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prow_api::lease::PoolPolicy;
use prow_api::plan::{
    after_refused_pod, in_build_cluster, plan, reads, refused_pod, Facts, JobEvent, Peers, Plan,
    PodChange,
};
use prow_api::pod::{decorated_pod_for, pod_namespace, with_test_cluster};
use prow_api::pod_view::{PodView, WirePod};
use prow_api::pool::{pool_of, LeasedCluster};
use prow_api::{ProwJob, ProwJobState, TestCluster};
use serde_json::{json, Value};
use tracing::Instrument;

use super::lease::{copy_kubeconfig, delete_kubeconfig_copy, write_lease};
use super::ledger::Granted;
use super::Context;
use crate::buildclusters::Member;
use crate::controller::{lost_race, Reconciler};
use crate::error::{api_code, is_request_error, Error, Result};
use crate::prowjob::stored::Job;
use crate::queue::Action;
use crate::testclusters::Claim;
use prow_api::buildcluster::{alias_of, gate, Reach};

/// How long a pool job waits for the TestCluster cache's first list before it is retried
/// later (its work slot is free meanwhile).
const SYNC_WAIT: Duration = Duration::from_secs(1);

/// How long a job whose cached copy predates our own status write waits for the watch to
/// deliver the new copy before it is decided on anyway.
const STALE_RECHECK: Duration = Duration::from_secs(2);

/// How long a job waits after its pod's name turned out to be taken (a pod of an earlier pass
/// or of a deleted job of the same name) before it is decided again, with that pod in view.
const NAME_TAKEN_RECHECK: Duration = Duration::from_millis(200);

/// Reconciles one ProwJob.
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", job = %job.name_any(), namespace = job.namespace().unwrap_or_default());
    let result = reconcile_job(&job, &ctx).instrument(span).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    result
}

impl Reconciler for Context {
    type Kind = Job;
    const KIND: &'static str = "ProwJob";

    async fn reconcile(self: Arc<Self>, job: Arc<Job>) -> Result<Action> {
        reconcile(job, self).await
    }

    fn events(&self) -> &crate::events::Events {
        &self.recorder
    }

    /// A finished job not yet marked completed has only bookkeeping left (its mark, a pod an
    /// abort left, a lease's end): after the jobs that are starting or running. At a first
    /// start on an installation's history, that is every finished job, 100,000 of them.
    fn later(&self, job: &Job) -> bool {
        job.is_complete() && !job.marked()
    }

    fn failed(&self, error: &Error) {
        if lost_race(error) {
            self.metrics.write_conflicts.inc();
        } else {
            self.metrics.count_error(error.category());
        }
    }
}

async fn reconcile_job(job: &Job, ctx: &Context) -> Result<Action> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if ctx.ledger.writes.is_superseded(
        &uid,
        job.metadata.resource_version.as_deref().unwrap_or_default(),
    ) {
        // Our own status write replaced this copy; its watch event brings the new one (the
        // queue runs the job at once then). The delay is only a fallback.
        return Ok(Action::requeue(STALE_RECHECK));
    }
    // Fetch.
    let pod_ns = pod_namespace(job, &ctx.settings.pod_namespace).to_string();
    let name = job.name_any();
    let alias = alias_of(job);
    let (member, reach) = ctx.builds.reach(alias);
    // A cluster that is not reached shows no pods: the job decides nothing from that.
    let member = member.filter(|_| reach == Reach::Up);
    let mut pod = member
        .as_ref()
        .and_then(|m| m.pods.get(&ObjectRef::new(&name).within(&pod_ns)));
    let state = job.state();
    if state != ProwJobState::Triggered {
        ctx.ledger.starts.forget_start(&uid);
    }
    if job.is_complete() {
        ctx.ledger.starts.forget_finish(&uid);
    }
    match pod {
        // The cache has caught up with the pod we created.
        Some(_) => ctx.ledger.pods.forget(&uid),
        // A pod we created a moment ago, not in the cache yet.
        None if member.is_some() => pod = ctx.ledger.pods.get(&uid),
        None => {}
    }
    let reads = reads(job, ctx.ledger.starts.is_started(&uid));
    if let (None, true, Some(member)) = (&pod, reads.pod_if_uncached, &member) {
        // Rare, so no hot-path cost.
        pod = Api::<WirePod>::namespaced(member.client.clone(), &pod_ns)
            .get_opt(&name)
            .await?
            .map(|p| Arc::new(PodView::from(p)));
    }
    if reads.clusters && !ctx.clusters.synced.wait_at_most(SYNC_WAIT).await {
        return Ok(Action::retry());
    }
    // A job that may take a lease now decides in its pool's turn (`Clusters::open`).
    let (turn, clusters) = if reads.clusters {
        let (turn, view) = ctx.clusters.open(&pod_ns, reads.pool_turn).await;
        (Some(turn), view)
    } else {
        (None, Vec::new())
    };
    let clusters: Vec<&TestCluster> = clusters.iter().map(|c| c.as_ref()).collect();
    let pool_policy = pool_of(job).map_or_else(PoolPolicy::default, |pool| {
        ctx.clusters.policy(&pod_ns, pool)
    });
    // One clock reading per reconcile: every time this pass decides or writes is the same.
    let now = Timestamp::now();
    let eviction = match &member {
        Some(m) => evicted_since(job, pod.as_deref(), &pod_ns, now, m).await,
        None => None,
    };
    let gate = gate(job, &reach, now, ctx.settings.policy.timeouts);
    let facts = Facts {
        job,
        pod: pod.as_deref(),
        evicted: eviction.is_some(),
        now,
        clusters: &clusters,
        pool_policy: &pool_policy,
        default_pod_namespace: &ctx.settings.pod_namespace,
    };
    // Only unfinished jobs can be superseded, hold a slot or wait for one.
    let mut peers = Peers::new(|| ctx.open.state());
    // A start the plan grants is recorded at once (so no other pass overshoots a limit) and
    // forgotten again unless its pod gets created.
    let mut granted = None;
    // Decide.
    let limits = &ctx.settings.limits;
    let planned = in_build_cluster(gate, &facts, &mut peers, limits, |peers| {
        match ctx
        .settings
        .pod_watch_namespace()
    {
        // This installation works in one pod namespace: a pod elsewhere would never be seen.
        Some(only) if only != pod_ns && state == ProwJobState::Triggered && !job.is_complete() => {
            refused_pod(
                &facts,
                peers,
                &ctx.settings.limits,
                &format!(
                    "pods run only in namespace {only:?} here (the operator watches one namespace), not {pod_ns:?}"
                ),
            )
        }
        _ => plan(&facts, peers, &ctx.settings.policy, limits, || {
            let now_millis = now.as_millisecond().max(0) as u64;
            let starts = &ctx.ledger.starts;
            starts.grant(job, || ctx.open.state(), limits, now_millis, &mut granted)
        }),
    }
    });
    tracing::debug!(?planned, "planned");
    // Apply.
    // The lease this pass takes shows as taken before the pool's next decision.
    let taken = planned
        .lease
        .as_ref()
        .filter(|l| l.take)
        .map(|l| &l.cluster);
    let claim = turn.and_then(|turn| turn.claim(&ctx.clusters, taken));
    let target = Target {
        namespace: &pod_ns,
        member: member.as_deref(),
    };
    let mark = planned.mark(job, job.marked());
    let action = apply(&facts, &mut peers, planned, claim, granted, target, ctx).await?;
    if let Some(mark) = mark {
        write_mark(ctx, job, mark).await?;
    }
    if let (Some(since), Some(m)) = (eviction, &member) {
        // Acted on: the same eviction does not revive the next pod.
        m.evictions.take(&pod_ns, &name, since);
    }
    Ok(action)
}

/// Whether the Eviction API deleted a pending job's pod, which the API server (before 1.26)
/// records only in the operator's PodDisruptionBudget: the pod is being deleted, or gone, and
/// the budget recorded it after the pod was created. Returns the time the eviction must be
/// newer than.
async fn evicted_since(
    job: &ProwJob,
    pod: Option<&PodView>,
    pod_ns: &str,
    now: Timestamp,
    member: &Member,
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
    if member.evictions.contains(pod_ns, &status.pod_name, since) {
        return Some(since);
    }
    if pod.is_none() {
        // Gone before the budget's watch brought the record: read the budget itself.
        for (name, at) in member.budgets.read(pod_ns).await {
            member.evictions.record(pod_ns, &name, at, now);
        }
        if member.evictions.contains(pod_ns, &status.pod_name, since) {
            return Some(since);
        }
    }
    None
}

/// Carries out a plan, in an order that a crash between two writes cannot turn into a wrong
/// state: take the lease (ending its `claim`), create the pod, write the status (with the
/// resourceVersion the plan was made from), delete the pod, end the lease, wake other jobs
/// (the next in line takes the cluster at once), remove the kubeconfig copy, then publish the
/// Event.
async fn apply<J: prow_api::prowjob::JobRef>(
    facts: &Facts<'_>,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    mut plan: Plan,
    claim: Option<Claim>,
    granted: Option<Granted<'_>>,
    target: Target<'_>,
    ctx: &Context,
) -> Result<Action> {
    let job = facts.job;
    let pod_ns = target.namespace;
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let mut taken = None;
    let mut created_pod = None;
    // Through the claim: the pool's view shows the write (or, if it failed, the cluster as it
    // was) once it is done.
    let written = match plan.lease.as_ref().filter(|l| l.take) {
        Some(take) => Some(write_lease(take, claim, job, ctx).await),
        None => None,
    };
    if let Some(written) = written {
        match written {
            Ok(written) => {
                if let Some(created) = job.metadata.creation_timestamp.as_ref() {
                    let waited = Timestamp::now().duration_since(created.0);
                    ctx.metrics
                        .lease_wait
                        .observe(waited.as_secs_f64().max(0.0));
                }
                ctx.metrics.lease_taken(pod_ns, &written.name_any());
                taken = Some(written);
            }
            Err(e) => return Err(e),
        }
    }
    if let PodChange::Create { build_id, cluster } = &plan.pod {
        let starting = job.state() == ProwJobState::Triggered;
        match create_pod(job, build_id, cluster.as_ref(), target.cluster()?, ctx).await {
            Ok(pod) => {
                if let Some(granted) = granted {
                    granted.keep();
                }
                ctx.ledger.pods.created(uid, &pod);
                created_pod = pod.metadata.uid.clone();
                if let (true, Some(created)) = (starting, job.metadata.creation_timestamp.as_ref())
                {
                    // An observation, not a decision: measured when the pod exists.
                    let waited = Timestamp::now().duration_since(created.0);
                    ctx.metrics
                        .start_latency
                        .observe(waited.as_secs_f64().max(0.0));
                }
            }
            Err(Error::Kube(e)) if api_code(&e) == Some(409) => {
                // Pod name = job name: taken by a pod of an earlier pass (adopted next time) or
                // of a deleted job of that name (deleted next time).
                return Ok(Action::requeue(NAME_TAKEN_RECHECK));
            }
            Err(e) => {
                let Some(reason) = refusal(&e) else {
                    return Err(e);
                };
                plan =
                    after_refused_pod(facts, peers, &ctx.settings.limits, &reason, taken.as_ref());
            }
        }
    }
    if let Some(status) = plan.status.as_mut() {
        if status.build_id.is_some() && status.url.is_none() {
            let url = run_url(job, status, &ctx.settings.job_url_template);
            status.url = (!url.is_empty()).then_some(url);
        }
    }
    if let Some(status) = &plan.status {
        if status.completes() && prow_api::decorate::is_decorated(job) {
            // Before the status: a crash in between leaves the job unfinished, and the next
            // pass writes both again.
            if let Some(member) = target.member {
                super::uploads::upload_final(job, &status.applied_to(job), pod_ns, member).await;
            }
        }
        patch_status(ctx, job, serde_json::to_value(status)?).await?;
        if status.completes() {
            ctx.ledger.finished(uid);
        }
    }
    if let (PodChange::Delete, Some(pod)) = (&plan.pod, facts.pod) {
        delete_pod(pod, target.cluster()?, ctx).await?;
    }
    let wake = || {
        for other in &plan.wake {
            let _ = ctx
                .wake
                .send(ObjectRef::new(&other.name).within(&other.namespace));
        }
    };
    if let Some(end) = plan.lease.as_ref().filter(|l| !l.take) {
        write_lease(end, None, job, ctx).await?;
        if end.handoff {
            ctx.metrics
                .lease_ended_with_waiters(pod_ns, &end.cluster.name_any());
        }
        // The next job in line takes the cluster while the copy goes.
        wake();
        match (
            end.cluster.spec.kubeconfig_secret_ref.is_some(),
            target.member,
        ) {
            (true, Some(member)) => delete_kubeconfig_copy(job, pod_ns, &member.client).await?,
            // Its cluster is gone: so is the copy's way out (the cluster's own clean-up).
            (true, None) => tracing::warn!(
                cluster = %alias_of(job),
                "the kubeconfig copy of the job's test cluster cannot be removed: its build cluster is not reached"
            ),
            (false, _) => {}
        }
    } else {
        wake();
    }
    if let Some(event) = &plan.event {
        publish(ctx, job, event);
        if let Some(member) = target.member {
            // The pod is named after its job, as the fetch above finds it.
            let pod_uid = created_pod.or_else(|| facts.pod.and_then(|p| p.uid()));
            member.publish_on_pod(
                (&job.name_any(), pod_ns, pod_uid),
                job,
                event.warning,
                event.reason,
                &event.note,
            );
        }
    }
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Labels a finished job [`prow_api::labels::COMPLETED`] (`mark`), the last write the operator
/// makes for it: its next start lists it after the unfinished jobs; or takes the label off an
/// unfinished job, which a start must list first. A job deleted meanwhile is fine.
async fn write_mark(ctx: &Context, job: &ProwJob, mark: bool) -> Result<()> {
    let api: Api<ProwJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let value = if mark { json!("true") } else { Value::Null };
    let body = json!({"metadata": {"labels": {prow_api::labels::COMPLETED: value}}});
    let params = crate::patch_params();
    match api
        .patch(&job.name_any(), &params, &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        // Refused (an admission rule the stored job breaks, say): retrying would be refused
        // again. A finished job left unmarked is listed with the unfinished ones, which costs
        // only start-up time; an unfinished one left marked is listed after them, and run
        // once that list is in.
        Err(e) if is_request_error(&e) => {
            tracing::warn!(error = %e, mark, "a job's completed mark could not be written");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The run's link from the `--job-url-template`, evaluated on the job with the status about to
/// be written; a template that fails on this job leaves the link out (and says why).
fn run_url(job: &ProwJob, status: &prow_api::plan::StatusChange, template: &str) -> String {
    let mut next = job.clone();
    next.status = Some(status.applied_to(job));
    prow_api::job_url::job_url(template, &next).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "--job-url-template does not render on this job");
        String::new()
    })
}

/// Why a pod creation can never succeed (the pod cannot be built from the job, or the API
/// server refuses it), for the job's description; `None` for a failure worth retrying.
fn refusal(e: &Error) -> Option<String> {
    match e {
        Error::Pod(e) => Some(e.to_string()),
        Error::Kube(refused) if is_request_error(refused) => Some(match refused {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        }),
        _ => None,
    }
}

/// Where a job's pod goes: its namespace, in its build cluster (`None` when that is missing or
/// not reached; such a plan creates and deletes nothing).
#[derive(Clone, Copy)]
struct Target<'a> {
    namespace: &'a str,
    member: Option<&'a Member>,
}

impl<'a> Target<'a> {
    /// The namespace and the cluster to act in.
    fn cluster(&self) -> Result<(&'a str, &'a Member)> {
        match self.member {
            Some(m) => Ok((self.namespace, m)),
            None => Err(Error::NoCluster(self.namespace.to_string())),
        }
    }
}

async fn create_pod(
    job: &ProwJob,
    build_id: &str,
    cluster: Option<&LeasedCluster>,
    (pod_ns, member): (&str, &Member),
    ctx: &Context,
) -> Result<Pod> {
    let mut pod = decorated_pod_for(job, build_id, pod_ns, &ctx.settings.utility_image)?;
    super::uploads::check_secrets(job, pod_ns, &member.client).await?;
    if let Some(cluster) = cluster {
        copy_kubeconfig(job, cluster, pod_ns, &member.client, ctx).await?;
        with_test_cluster(&mut pod, cluster);
    }
    member.budgets.ensure(pod_ns).await;
    let params = crate::post_params();
    let pods: Api<Pod> = Api::namespaced(member.client.clone(), pod_ns);
    Ok(pods.create(&params, &pod).await?)
}

/// Patches the job's status, guarded by the resourceVersion the decision was made on.
async fn patch_status(ctx: &Context, job: &ProwJob, status: Value) -> Result<()> {
    let ns = job.namespace().unwrap_or_default();
    let api: Api<ProwJob> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "metadata": {"resourceVersion": job.resource_version()},
        "status": status,
    });
    let params = crate::patch_params();
    match api
        .patch_status(&job.name_any(), &params, &Patch::Merge(&body))
        .await
    {
        Ok(_) => {
            ctx.ledger.writes.wrote(
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
async fn delete_pod(pod: &PodView, (_, member): (&str, &Member), ctx: &Context) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: ctx.settings.pod_deletion_grace_seconds.map(|s| s as u32),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(member.client.clone(), &ns);
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event on the job without holding up the reconcile.
fn publish(ctx: &Context, job: &ProwJob, event: &JobEvent) {
    crate::events::publish(
        &ctx.recorder,
        job.object_ref(&()),
        event.warning,
        event.reason,
        event.note.clone(),
        "Reconcile",
    );
}

#[cfg(test)]
mod tests;
