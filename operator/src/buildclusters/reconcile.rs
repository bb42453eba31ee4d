//! The BuildCluster reconcile: fetch (its kubeconfig Secret, the member built from it, what the
//! member found out, the access reviews) -> plan (`prow_api::buildcluster::status`, pure) ->
//! apply (the member replaced when the kubeconfig changed; the status written when it says
//! something new). Each cluster is looked at again every [`STATUS_EVERY`], so its status
//! follows an outage within seconds; a deleted BuildCluster leaves the registry at its watch
//! event, and its waiting jobs end.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PostParams};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use prow_api::buildcluster::{
    required_rights, status, BuildCluster, BuildClusterStatus, Findings, Reach, Right,
};
use prow_api::conditions::same;
use prow_runtime::health::Readiness;
use serde_json::json;

use super::{BuildClusters, Member, Wiring};
use crate::controller::{mark_failed, Reconciler};
use crate::error::Error;
use crate::events::Events;
use crate::queue::Action;

/// How often each BuildCluster's status is brought up to date.
pub const STATUS_EVERY: Duration = Duration::from_secs(3);

/// How often the access reviews are asked again (and at once for a new kubeconfig).
pub const RIGHTS_EVERY: Duration = Duration::from_secs(60);

/// Where the BuildClusters are, and where their rights are checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the BuildClusters and their Secrets.
    pub namespace: String,
    /// Namespace job pods go to by default, where the rights are checked.
    pub pod_namespace: String,
}

struct Ctx {
    client: Client,
    builds: Arc<BuildClusters>,
    wiring: Wiring,
    settings: Settings,
    recorder: Events,
}

/// Watches the BuildClusters of `settings.namespace` through `fail_fast` and keeps `builds`
/// and their status, until `wiring.shutdown`.
pub fn run(
    client: Client,
    fail_fast: Client,
    builds: Arc<BuildClusters>,
    wiring: Wiring,
    settings: Settings,
    recorder: Events,
    readiness: Readiness,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<BuildCluster> = Api::namespaced(fail_fast, &settings.namespace);
    let (store, writer) = reflector::store();
    let events =
        prow_runtime::watch::watch(api, watcher::Config::default(), "buildclusters", readiness)
            .reflect(writer);
    let events = {
        let (builds, store) = (builds.clone(), store.clone());
        events.inspect(move |event| match event {
            Ok(Event::Delete(gone)) => builds.remove(&gone.name_any()),
            Ok(Event::InitDone) => {
                let kept: Vec<String> = store.state().iter().map(|b| b.name_any()).collect();
                builds.retain(&kept);
            }
            _ => {}
        })
    };
    let (events, synced) = prow_runtime::store::signal(events);
    builds.set_declared(store.clone(), synced.clone(), &settings.namespace);
    let requests = crate::queue::requests_of(events, |_| true);
    let shutdown = wiring.shutdown.clone();
    let ctx = Arc::new(Ctx {
        client,
        builds,
        wiring,
        settings,
        recorder,
    });
    crate::controller::run(ctx, store, synced, requests, 4, shutdown)
}

impl Reconciler for Ctx {
    type Kind = BuildCluster;
    const KIND: &'static str = "BuildCluster";

    async fn reconcile(self: Arc<Self>, object: Arc<BuildCluster>) -> Result<Action, Error> {
        reconcile(&object, &self).await
    }

    fn events(&self) -> &Events {
        &self.recorder
    }

    fn put_failure(&self, object: &BuildCluster, error: &Error) {
        let conditions = object
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        mark_failed(&self.client, object, &conditions, error);
    }
}

async fn reconcile(bc: &BuildCluster, ctx: &Ctx) -> Result<Action, Error> {
    let alias = bc.name_any();
    // Fetch: the kubeconfig, and the member built from it.
    let member = match prow_runtime::client::build_cluster_kubeconfig(&ctx.client, bc).await? {
        Ok(text) => member_for(&alias, &text, ctx).await,
        Err(why) => Err(why),
    };
    let findings = match &member {
        Ok(m) => findings(m, &ctx.settings.pod_namespace).await,
        Err(why) => {
            let since = match ctx.builds.lookup(&alias) {
                super::Lookup::Broken(Reach::Down { since, reason }) if &reason == why => since,
                _ => Timestamp::now(),
            };
            ctx.builds.put_broken(
                &alias,
                Reach::Down {
                    since,
                    reason: why.clone(),
                },
            );
            Findings {
                version: Err(why.clone()),
                missing: None,
                namespace: ctx.settings.pod_namespace.clone(),
                running: 0,
                pending: 0,
            }
        }
    };
    // Plan.
    let wanted = status(
        bc.status.as_ref(),
        &findings,
        bc.metadata.generation,
        &Time(Timestamp::now()),
    );
    // Apply.
    if !says_the_same(bc.status.as_ref(), &wanted) {
        write_status(bc, &wanted, &ctx.client).await?;
    }
    Ok(Action::requeue(STATUS_EVERY))
}

/// The member of `alias` for the kubeconfig `text`: the current one when the kubeconfig is the
/// same, else a new one (replacing it), or why the kubeconfig is unusable.
async fn member_for(alias: &str, text: &str, ctx: &Ctx) -> Result<Arc<Member>, String> {
    let fingerprint = prow_runtime::client::kubeconfig_fingerprint(text);
    if let Some(current) = ctx.builds.declared(alias) {
        if current.fingerprint == fingerprint {
            return Ok(current);
        }
        tracing::info!(alias, "build cluster kubeconfig changed");
    }
    let clients = prow_runtime::client::clients_from_text(text)
        .await
        .map_err(|e| format!("The kubeconfig cannot be used: {e:#}"))?;
    let member = Member::start(alias, clients, fingerprint, &ctx.wiring);
    ctx.builds.put(member.clone());
    Ok(member)
}

/// What the member found out, with the access reviews asked when their last answer is old.
async fn findings(member: &Member, namespace: &str) -> Findings {
    let version = member.version();
    let missing = match (&version, member.rights(RIGHTS_EVERY)) {
        (Ok(_), Some(missing)) => Some(missing),
        (Ok(_), None) => match missing_rights(&member.client, namespace).await {
            Ok(missing) => {
                member.set_rights(missing.clone());
                Some(missing)
            }
            Err(e) => {
                tracing::debug!(alias = %member.alias, error = %e, "access reviews");
                None
            }
        },
        (Err(_), _) => None,
    };
    let (running, pending) = member.pod_counts();
    Findings {
        version,
        missing,
        namespace: namespace.to_string(),
        running,
        pending,
    }
}

/// The rights the operator lacks in `namespace`, by one SelfSubjectAccessReview each.
async fn missing_rights(client: &Client, namespace: &str) -> Result<Vec<Right>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asks = required_rights().into_iter().map(|right| {
        let api = api.clone();
        async move {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
                        verb: Some(right.verb.to_string()),
                        group: Some(right.group.to_string()),
                        resource: Some(right.resource.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await?;
            let allowed = answer.status.is_some_and(|s| s.allowed);
            Ok::<_, kube::Error>((!allowed).then_some(right))
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut missing = Vec::new();
    for answer in answers {
        if let Some(right) = answer? {
            missing.push(right);
        }
    }
    Ok(missing)
}

/// Whether the stored status says what `wanted` says (transition times aside).
fn says_the_same(stored: Option<&BuildClusterStatus>, wanted: &BuildClusterStatus) -> bool {
    stored.is_some_and(|s| {
        same(&s.conditions, &wanted.conditions)
            && s.kubernetes_version == wanted.kubernetes_version
            && s.running_pods == wanted.running_pods
            && s.pending_pods == wanted.pending_pods
            && s.observed_generation == wanted.observed_generation
    })
}

async fn write_status(
    bc: &BuildCluster,
    wanted: &BuildClusterStatus,
    client: &Client,
) -> Result<(), Error> {
    let api: Api<BuildCluster> =
        Api::namespaced(client.clone(), &bc.namespace().unwrap_or_default());
    let params = crate::patch_params();
    api.patch_status(
        &bc.name_any(),
        &params,
        &Patch::Merge(json!({ "status": wanted })),
    )
    .await?;
    Ok(())
}
