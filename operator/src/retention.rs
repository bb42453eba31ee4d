//! The sweep that replaces upstream's sinker: plans from the caches (`prow_api::retention`),
//! deletes with UID preconditions, and re-reads a job before it deletes a pod it thinks orphaned.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client, Resource};
use prow_api::buildcluster::{alias_of, Reach};
use prow_api::retention::{sweep, Doomed, Retention};
use prow_api::{labels, ProwJob};
use tokio_util::sync::CancellationToken;

use crate::prowjob::Caches;

/// Sweeps every `interval` until `shutdown`, the first time as soon as the caches are synced.
/// With `watch_namespace`, only pods of jobs in that namespace are considered: another
/// operator's pods are not orphans of this one.
pub async fn run(
    client: Client,
    caches: Caches,
    keep: Retention,
    interval: Duration,
    watch_namespace: Option<String>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        ok = caches.synced() => if !ok { return },
        _ = shutdown.cancelled() => return,
    }
    loop {
        let jobs = caches.jobs.state();
        let jobs: Vec<&ProwJob> = jobs.iter().map(|j| j.as_ref()).collect();
        let now = Timestamp::now();
        let (mut jobs_deleted, mut pods_deleted) = (0usize, 0usize);
        for doomed in &sweep(&jobs, &[], now, &keep).jobs {
            if shutdown.is_cancelled() {
                return;
            }
            jobs_deleted += usize::from(delete::<ProwJob>(&client, doomed).await);
        }
        // Each build cluster's pods against its own jobs; one that is not reached is skipped
        // (its pods wait for the next sweep), so it holds up none of the others.
        for member in caches.builds.members() {
            if member.reach() != Reach::Up {
                tracing::info!(cluster = %member.alias, "retention skips a build cluster that is not reached");
                continue;
            }
            let own: Vec<&ProwJob> = jobs
                .iter()
                .copied()
                .filter(|j| alias_of(j) == member.alias)
                .collect();
            let pods = member.pods.state();
            let ours = |p: &&std::sync::Arc<prow_api::pod_view::PodView>| {
                watch_namespace
                    .as_deref()
                    .is_none_or(|ns| p.job_namespace() == Some(ns))
            };
            // References: no copies of 10,000 pods per sweep.
            let pods: Vec<&prow_api::pod_view::PodView> =
                pods.iter().filter(ours).map(|p| p.as_ref()).collect();
            let plan = sweep(&own, &pods, now, &keep);
            for doomed in &plan.pods {
                if shutdown.is_cancelled() {
                    return;
                }
                pods_deleted += usize::from(delete::<Pod>(&member.client, doomed).await);
            }
            for doomed in &plan.orphans {
                if shutdown.is_cancelled() {
                    return;
                }
                if still_orphaned(&member.client, &client, doomed).await {
                    pods_deleted += usize::from(delete::<Pod>(&member.client, doomed).await);
                }
            }
        }
        if jobs_deleted + pods_deleted > 0 {
            tracing::info!(jobs_deleted, pods_deleted, "retention sweep");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deletes one object if it is still the one planned for (UID precondition); a failure is
/// logged and the sweep goes on.
async fn delete<K>(client: &Client, doomed: &Doomed) -> bool
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &doomed.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: doomed.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&doomed.name, &params).await {
        Ok(_) => {
            tracing::debug!(namespace = %doomed.namespace, name = %doomed.name, reason = doomed.reason, "deleted");
            true
        }
        Err(e) => {
            tracing::warn!(namespace = %doomed.namespace, name = %doomed.name, error = %e, "retention delete failed");
            false
        }
    }
}

/// Whether a fresh read confirms the pod's job is gone (or is another job of the same name):
/// the pod read in its build cluster (`build`), the job in the operator's (`client`).
async fn still_orphaned(build: &Client, client: &Client, doomed: &Doomed) -> bool {
    let pods: Api<Pod> = Api::namespaced(build.clone(), &doomed.namespace);
    let Ok(Some(pod)) = pods.get_opt(&doomed.name).await else {
        return false;
    };
    let annotations = pod.metadata.annotations.unwrap_or_default();
    let (Some(ns), Some(uid)) = (
        annotations.get(labels::JOB_NAMESPACE),
        annotations.get(labels::JOB_UID),
    ) else {
        return false;
    };
    let jobs: Api<ProwJob> = Api::namespaced(client.clone(), ns);
    match jobs.get_opt(&doomed.name).await {
        Ok(Some(job)) => job.metadata.uid.as_ref() != Some(uid),
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(error = %e, "re-reading a job before deleting its pod");
            false
        }
    }
}
