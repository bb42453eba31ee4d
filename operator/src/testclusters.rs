//! The TestCluster reconciler, on the shared work queue: ends what time or a vanished job ends.
//! A hold, or a `getvacant` lease, whose time is up is released; a lease whose job is gone
//! (deleted, or finished while nothing released it) is reclaimed. Each write replaces the
//! status at the resourceVersion it was decided on, so a lease taken meanwhile is never
//! overwritten; the rules are `prow_api::lease`.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::lease::{transition, PoolPolicy, Request};
use prow_api::{ClusterPhase, ProwJob, TestCluster, TestClusterStatus};
use prow_runtime::health::Readiness;
use prow_runtime::store::Synced;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, Action};
use crate::MANAGER;

/// How often a cluster leased to a job checks that its job still exists.
const HOLDER_RECHECK: Duration = Duration::from_secs(60);

/// The controller to spawn: runs until `shutdown`, writing through `client`, watching through
/// `fail_fast`, reading the jobs from the ProwJob reconciler's store.
pub fn run(
    client: Client,
    fail_fast: Client,
    watch_namespace: Option<String>,
    jobs: (Store<ProwJob>, Synced),
    readiness: Readiness,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<TestCluster> = match &watch_namespace {
        Some(ns) => Api::namespaced(fail_fast, ns),
        None => Api::all(fail_fast),
    };
    let (store, writer) = reflector::store();
    let events =
        prow_runtime::watch::watch(api, watcher::Config::default(), "testclusters", readiness)
            .reflect(writer);
    let (events, synced) = prow_runtime::store::signal(events);
    let requests = queue::requests_of(events, |_: &TestCluster| true);
    let recorder = crate::events::recorder(client.clone());
    let (job_store, jobs_synced) = jobs;
    queue::run(store, synced, requests, 4, shutdown, move |cluster| {
        let (client, jobs, jobs_synced, recorder) = (
            client.clone(),
            job_store.clone(),
            jobs_synced.clone(),
            recorder.clone(),
        );
        async move {
            // Whether a job is gone can only be told from a full list of jobs.
            if !jobs_synced.wait().await {
                return Action::retry();
            }
            match reconcile(&cluster, &jobs, &client, &recorder).await {
                Ok(action) => action,
                Err(e) => {
                    tracing::warn!(cluster = %cluster.name_any(), error = %e, "updating test cluster status");
                    Action::retry()
                }
            }
        }
    })
}

/// Fetch (the cluster, the jobs) -> decide (`prow_api::lease`) -> apply (one status write at
/// the cluster's resourceVersion).
async fn reconcile(
    cluster: &TestCluster,
    jobs: &Store<ProwJob>,
    client: &Client,
    recorder: &Recorder,
) -> Result<Action, kube::Error> {
    let now = Timestamp::now();
    let status = cluster.status.clone().unwrap_or_default();
    let Some(lease) = status.lease.clone() else {
        return Ok(Action::await_change());
    };
    let (request, reason) = match (status.phase, lease.holder_uid.as_deref()) {
        (Some(ClusterPhase::Leased), Some(uid)) => {
            let alive = jobs
                .state()
                .iter()
                .any(|j| j.metadata.uid.as_deref() == Some(uid) && !j.is_complete());
            if alive {
                return Ok(Action::requeue(HOLDER_RECHECK));
            }
            let request = Request::Reclaim {
                job_uid: uid.to_string(),
            };
            (request, "Reclaimed")
        }
        _ => match lease.until.as_ref() {
            Some(until) if until.0 > now => {
                let left = Duration::try_from(until.0.duration_since(now)).unwrap_or_default();
                return Ok(Action::requeue(left));
            }
            Some(_) => (Request::Expire, "Expired"),
            None => return Ok(Action::await_change()),
        },
    };
    let name = cluster.name_any();
    let new = match transition(&name, &status, &request, &PoolPolicy::default(), now) {
        Ok(Some(new)) => new,
        Ok(None) => return Ok(Action::await_change()),
        Err(refused) => {
            tracing::debug!(cluster = %name, %refused, "nothing to end");
            return Ok(Action::await_change());
        }
    };
    replace_status(cluster, new, client).await?;
    let note = match reason {
        "Reclaimed" => format!("Lease of {} ended: the job is gone.", lease.holder),
        _ => format!("The hold or lease of {} ran out.", lease.holder),
    };
    crate::events::publish(
        recorder,
        cluster.object_ref(&()),
        false,
        reason,
        note,
        "Release",
    );
    Ok(Action::await_change())
}

/// Replaces the cluster's status, at the resourceVersion it was read at: a lease written
/// meanwhile makes this a conflict, decided again on the newer copy.
async fn replace_status(
    cluster: &TestCluster,
    status: TestClusterStatus,
    client: &Client,
) -> Result<(), kube::Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let api: Api<TestCluster> = Api::namespaced(client.clone(), &ns);
    let mut updated = cluster.clone();
    updated.status = Some(status);
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    api.replace_status(&cluster.name_any(), &params, &updated)
        .await?;
    Ok(())
}
