//! The one shape every reconciler has: a [`Reconciler`] says how to reconcile one object of its
//! kind (fetch -> a pure plan from `prow_api` -> apply); [`run`] drives it on the shared work
//! queue ([`crate::queue`]) and puts every failure on the object itself, as a Warning Event and,
//! for kinds with conditions, a `Reconciled` condition "False", before the object's backoff
//! retries it. A lost race is decided again at once, not reported.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::Patch;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::conditions::with_failure;
use prow_runtime::store::Synced;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::events::{self, Events};
use crate::queue::{self, Action};

/// How soon a reconcile that lost a write race (409 Conflict) decides again.
pub const AFTER_CONFLICT: Duration = Duration::from_millis(100);

/// The Event reason of a failed reconcile.
pub const FAILED: &str = "ReconcileError";

/// One kind's reconciler.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind it reconciles.
    type Kind: Object;

    /// The kind's name in logs.
    const KIND: &'static str;

    /// Fetch -> plan -> apply for one object; what to do next.
    fn reconcile(
        self: Arc<Self>,
        object: Arc<Self::Kind>,
    ) -> impl Future<Output = Result<Action, Error>> + Send;

    /// Where the failures go.
    fn events(&self) -> &Events;

    /// Told of every failure before it is reported (a reconciler's metrics).
    fn failed(&self, _error: &Error) {}

    /// Puts a failure on the object's status too, for kinds with conditions (see
    /// [`mark_failed`]); the Event is published either way.
    fn put_failure(&self, _object: &Self::Kind, _error: &Error) {}

    /// Whether the object's reconcile is catch-up work nothing waits on, run only while no
    /// other object is in line ([`queue::run_in_lanes`]).
    fn later(&self, _object: &Self::Kind) -> bool {
        false
    }
}

/// What a reconciler reconciles: a kind's object as its store keeps it, with a reference for
/// its Events. Every `Resource` is one; so is the ProwJob store's wrapper
/// (`prowjob::stored::Job`), whose store key is lighter.
pub trait Object: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static {
    /// The object, for its Events.
    fn reference(&self) -> ObjectReference;
}

impl<K> Object for K
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn reference(&self) -> ObjectReference {
        self.object_ref(&())
    }
}

/// Sets the object's [`prow_api::conditions::RECONCILED`] condition "False" with `error`
/// (among its `conditions`), in the background: a merge patch of its status's conditions, so a
/// person sees the failure in `kubectl describe` as well as in its Events. The kind's next
/// successful reconcile drops it.
pub fn mark_failed<K>(client: &Client, object: &K, conditions: &[Condition], error: &Error)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let wanted = with_failure(conditions, &error.to_string(), &Time(Timestamp::now()));
    let api: Api<K> = Api::namespaced(
        client.clone(),
        &ResourceExt::namespace(object).unwrap_or_default(),
    );
    let name = object.name_any();
    tokio::spawn(async move {
        let params = crate::patch_params();
        let patch = serde_json::json!({"status": {"conditions": wanted}});
        if let Err(e) = api
            .patch_status(&name, &params, &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(object = %name, error = %e, "recording a failure on the status");
        }
    });
}

/// What follows a failed reconcile of `object`: a lost race is decided again soon; anything
/// else is logged, published as a Warning Event on the object with the error, and retried after
/// the object's backoff.
pub fn error_policy<R: Reconciler>(reconciler: &R, object: &R::Kind, error: &Error) -> Action {
    reconciler.failed(error);
    if lost_race(error) {
        return Action::requeue(AFTER_CONFLICT);
    }
    tracing::warn!(
        kind = R::KIND,
        object = %Lookup::name(object).unwrap_or_default(),
        namespace = %Lookup::namespace(object).unwrap_or_default(),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    events::publish(
        reconciler.events(),
        object.reference(),
        true,
        FAILED,
        error.to_string(),
        "Reconcile",
    );
    reconciler.put_failure(object, error);
    Action::retry()
}

/// Whether `error` is a write that lost a race with another writer (its resourceVersion was
/// stale): the reconcile decides again from fresh state; nothing is wrong with the object.
pub fn lost_race(error: &Error) -> bool {
    match error {
        Error::Conflict(_) => true,
        Error::Kube(kube::Error::Api(s)) => s.code == 409 && s.reason == "Conflict",
        _ => false,
    }
}

/// Runs `reconciler` for every object `requests` names, read from `store` once it is `synced`,
/// at most `concurrency` at once, until `shutdown`.
pub fn run<R, S>(
    reconciler: Arc<R>,
    store: Store<R::Kind>,
    synced: Synced,
    requests: S,
    concurrency: usize,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    R: Reconciler,
    <R::Kind as Lookup>::DynamicType: Eq + Hash + Clone + Send + Sync,
    S: Stream<Item = ObjectRef<R::Kind>> + Send + 'static,
{
    let lanes = reconciler.clone();
    queue::run_in_lanes(
        store,
        synced,
        requests,
        concurrency,
        shutdown,
        move |object: &R::Kind| lanes.later(object),
        move |object: Arc<R::Kind>| {
            let reconciler = reconciler.clone();
            async move {
                match reconciler.clone().reconcile(object.clone()).await {
                    Ok(action) => action,
                    Err(e) => error_policy(reconciler.as_ref(), &object, &e),
                }
            }
        },
    )
}
