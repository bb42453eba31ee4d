//! The copies of a leased cluster's kubeconfig Secret made beside a job's pod, found by the
//! UID of the job they were made for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use prow_api::buildcluster::Reach;
use prow_api::labels;
use prow_api::pool::copy_is_left_over;
use prow_api::retention::Doomed;
use tokio_util::sync::CancellationToken;

use crate::prowjob::Caches;
use crate::retention::delete_planned;

/// On the copy of a leased cluster's kubeconfig Secret: the UID of the job it was copied for.
pub const KUBECONFIG_HOLDER: &str = "prow-operator.dev/test-cluster-holder";

/// On the copy: the namespace of the job it was copied for, so that an operator that watches
/// one namespace tidies only its own jobs' copies in a pod namespace it may share.
pub const KUBECONFIG_HOLDER_NAMESPACE: &str = "prow-operator.dev/test-cluster-holder-namespace";

/// Deletes the copies of a cluster's kubeconfig made for the job with `uid`, in `namespace`
/// or, when the job is gone and its pod namespace unknown, wherever they are.
pub async fn delete_kubeconfig_copies(
    client: &Client,
    namespace: Option<&str>,
    uid: &str,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("{KUBECONFIG_HOLDER}={uid}");
    for secret in api.list(&ListParams::default().labels(&selector)).await? {
        let ns = secret.namespace().unwrap_or_default();
        let result = Api::<Secret>::namespaced(client.clone(), &ns)
            .delete(&secret.name_any(), &DeleteParams::default())
            .await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The labels of the kubeconfig copies made for the job with `uid` in `namespace`.
pub fn kubeconfig_copy_labels(
    uid: &str,
    namespace: &str,
) -> std::collections::BTreeMap<String, String> {
    [
        (labels::CREATED_BY_PROW.to_string(), "true".to_string()),
        (KUBECONFIG_HOLDER.to_string(), uid.to_string()),
        (
            KUBECONFIG_HOLDER_NAMESPACE.to_string(),
            namespace.to_string(),
        ),
    ]
    .into_iter()
    .collect()
}

/// How often [`tidy`] looks for clusters where copies may be left.
pub const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`delete_left_over_copies`] did.
#[derive(Debug, Default)]
pub struct Tidied {
    /// Copies deleted.
    pub deleted: usize,
    /// Copies of no unfinished job that are still within their grace: to look at again.
    pub young: usize,
}

/// Which copies a tidy looks at.
#[derive(Clone, Debug, Default)]
pub struct TidyScope {
    /// The namespace the copies are in (the pods'), or all.
    pub namespace: Option<String>,
    /// The one namespace whose jobs this operator runs (`--watch-namespace`): only copies
    /// labelled with it are looked at. `None`: every job is this operator's.
    pub jobs_namespace: Option<String>,
}

/// Deletes, in `client`'s cluster, the kubeconfig copies within `scope` that
/// [`prow_api::pool::copy_is_left_over`] says are left over.
pub async fn delete_left_over_copies(
    client: &Client,
    scope: &TidyScope,
    unfinished: &HashSet<&str>,
    now: Timestamp,
) -> Result<Tidied, kube::Error> {
    let api: Api<Secret> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = match &scope.jobs_namespace {
        Some(ns) => format!("{KUBECONFIG_HOLDER},{KUBECONFIG_HOLDER_NAMESPACE}={ns}"),
        None => KUBECONFIG_HOLDER.to_string(),
    };
    let mut tidied = Tidied::default();
    for secret in api.list(&ListParams::default().labels(&selector)).await? {
        let holder = secret
            .labels()
            .get(KUBECONFIG_HOLDER)
            .map_or("", String::as_str);
        let created = secret.creation_timestamp().map(|t| t.0);
        if !copy_is_left_over(holder, created, unfinished, now) {
            if !unfinished.contains(holder) {
                tidied.young += 1;
            }
            continue;
        }
        let doomed = Doomed {
            namespace: secret.namespace().unwrap_or_default(),
            name: secret.name_any(),
            uid: secret.uid(),
            reason: "a kubeconfig copy left over",
        };
        match delete_planned::<Secret>(client, &doomed).await {
            Ok(()) => {
                tracing::info!(namespace = %doomed.namespace, name = %doomed.name, job_uid = holder,
                    "deleted a kubeconfig copy left over from a finished or deleted job");
                tidied.deleted += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(tidied)
}

/// Once the caches are synced, and then every [`TIDY_EVERY`]: in each reachable cluster
/// where copies may be left (every one at start, and one where a delete failed since its last
/// tidy), deletes the kubeconfig copies left over. A lease is reclaimed from a deleted job
/// even while a build cluster is down (holding it would starve the pool), so the copy there
/// is deleted here once the cluster is back; a stop between a reclaim and its delete is
/// repaired the same way, at the next start.
pub async fn tidy(caches: Caches, scope: TidyScope, shutdown: CancellationToken) {
    tokio::select! {
        ok = caches.synced() => if !ok { return },
        _ = shutdown.cancelled() => return,
    }
    // The count of each member (by address) that its last complete tidy answered.
    let mut tidied: HashMap<usize, u64> = HashMap::new();
    loop {
        let members = caches.builds.members();
        tidied.retain(|addr, _| members.iter().any(|m| Arc::as_ptr(m) as usize == *addr));
        let due: Vec<_> = members
            .into_iter()
            .filter(|m| {
                let addr = Arc::as_ptr(m) as usize;
                tidied.get(&addr) != Some(&m.copies_left_count()) && m.reach() == Reach::Up
            })
            .collect();
        if !due.is_empty() {
            let jobs = caches.open.state();
            let unfinished: HashSet<&str> = jobs
                .iter()
                .filter_map(|j| j.metadata.uid.as_deref())
                .collect();
            for member in due {
                // Read first: a failure counted during this tidy makes another one.
                let count = member.copies_left_count();
                let now = Timestamp::now();
                match delete_left_over_copies(&member.client, &scope, &unfinished, now).await {
                    // Done with this cluster until a delete there fails again, unless a copy
                    // has to be looked at again once its grace is over.
                    Ok(done) if done.young == 0 => {
                        tidied.insert(Arc::as_ptr(&member) as usize, count);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(cluster = %member.alias, error = %e,
                        "looking for kubeconfig copies left over; trying again"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TIDY_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
