//! The JobDefinition reconciler: starts the runs of periodics when the schedule says
//! (`prow_api::schedule`), the run a new value of the `prow-operator.dev/run` annotation asks
//! for, and keeps each definition's status (latest runs, last and next run, late or not).
//!
//! Fetch (the definition, its runs from the ProwJob cache) -> decide (pure) -> apply (create a
//! run, then write the status). A run's name is decided from stored objects only, so a create
//! that finds the run already there (another replica, or this one before a crash between the
//! create and the status write) means the run was started: it is never started twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::definition_status::{is_run_of, run_of, status_update};
use prow_api::jobdefinition::{
    manual_suffix, prowjob_for, run_name, CannotRun, DefinitionType, JobDefinition, RunRequest,
    ATTEMPT_ANNOTATION, DEFINITION_LABEL, DUE_ANNOTATION, RUN_ANNOTATION, RUN_BASE_REF_ANNOTATION,
};
use prow_api::schedule::{self, Next};
use prow_api::ProwJob;
use prow_runtime::health::Readiness;
use prow_runtime::store::Synced;
use prow_runtime::watch::{cached, Cached};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controller::Reconciler;
use crate::error::Error;
use crate::events::Events;
use crate::prowjob::stored::Job;
use crate::queue::{self, Action};

/// How often a definition with an unfinished run is looked at again even without an event
/// (its status shows the run's state; its Late condition turns on when the next run is due).
const WHILE_RUNNING: Duration = Duration::from_secs(30);

/// What the reconciles share.
pub struct Context {
    /// Writes.
    pub client: Client,
    /// The ProwJob cache (the runs).
    pub jobs: Store<Job>,
    /// Each definition's runs in that cache, by its label.
    pub runs: RunIndex,
    /// Whether the ProwJob cache has its first list.
    pub jobs_synced: Synced,
    /// Events on definitions.
    pub recorder: Events,
}

/// The sender the ProwJob watch tells about changed runs; see [`notice_runs`].
pub type RunEvents = mpsc::UnboundedSender<ObjectRef<JobDefinition>>;

/// Each definition's runs, by the definition label, kept from the ProwJob watch's events (see
/// [`notice_runs`]): a definition's reconcile reads its own runs, not every job.
#[derive(Clone, Default)]
pub struct RunIndex(Arc<std::sync::RwLock<Runs>>);

#[derive(Default)]
struct Runs {
    by_definition: HashMap<ObjectRef<JobDefinition>, HashSet<ObjectRef<Job>>>,
    /// The runs of a relist under way, swapped in at its end.
    relist: Option<HashMap<ObjectRef<JobDefinition>, HashSet<ObjectRef<Job>>>>,
}

/// The definition `job` is a run of, if any.
fn definition_of(job: &ProwJob) -> Option<ObjectRef<JobDefinition>> {
    let def = job.labels().get(DEFINITION_LABEL)?;
    Some(ObjectRef::new(def).within(&job.namespace().unwrap_or_default()))
}

impl RunIndex {
    /// The runs of `def` in `jobs`.
    pub fn of(&self, def: &JobDefinition, jobs: &Store<Job>) -> Vec<Arc<Job>> {
        let key = ObjectRef::from_obj(def);
        let runs = self.0.read().expect("runs lock");
        runs.by_definition
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|job| jobs.get(job))
            .filter(|job| is_run_of(job, def))
            .collect()
    }

    /// Takes in one ProwJob watch event.
    pub fn observe(&self, event: &watcher::Event<Job>) {
        let mut runs = self.0.write().expect("runs lock");
        match event {
            watcher::Event::Init => runs.relist = Some(HashMap::new()),
            watcher::Event::InitApply(job) => {
                if let (Some(def), Some(relist)) = (definition_of(job), runs.relist.as_mut()) {
                    relist
                        .entry(def)
                        .or_default()
                        .insert(ObjectRef::from_obj(job));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = runs.relist.take() {
                    runs.by_definition = relist;
                }
            }
            watcher::Event::Apply(job) => {
                if let Some(def) = definition_of(job) {
                    runs.by_definition
                        .entry(def)
                        .or_default()
                        .insert(ObjectRef::from_obj(job));
                }
            }
            watcher::Event::Delete(job) => {
                if let Some(def) = definition_of(job) {
                    let key = ObjectRef::from_obj(job);
                    if let Some(set) = runs.by_definition.get_mut(&def) {
                        set.remove(&key);
                        if set.is_empty() {
                            runs.by_definition.remove(&def);
                        }
                    }
                }
            }
        }
    }
}

/// Passes ProwJob events on, keeping `index` and telling `runs` about each event of a
/// definition's run, so a run that ends wakes its definition.
pub fn notice_runs<S>(
    runs: RunEvents,
    index: RunIndex,
    events: S,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream<Item = watcher::Result<watcher::Event<Job>>> + Send,
{
    events.inspect(move |event| {
        let Ok(event) = event else {
            return;
        };
        index.observe(event);
        if let watcher::Event::Apply(job) | watcher::Event::Delete(job) = event {
            if let Some(def) = definition_of(job) {
                let _ = runs.send(def);
            }
        }
    })
}

/// The definitions' cache, and the controller to spawn: it watches the definitions (of
/// `namespace`, or all) through `fail_fast`, wakes on their runs' events from `runs`, and runs
/// until `shutdown`.
pub fn run(
    ctx: Context,
    fail_fast: Client,
    namespace: Option<String>,
    runs: mpsc::UnboundedReceiver<ObjectRef<JobDefinition>>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> (
    Store<JobDefinition>,
    impl Future<Output = ()> + Send + 'static,
) {
    let Cached {
        store,
        synced,
        events,
    } = cached(
        fail_fast,
        namespace.as_deref(),
        watcher::Config::default(),
        "jobdefinitions",
        readiness,
    );
    let requests = futures::stream::select(
        queue::requests_of(events, |_: &JobDefinition| true),
        queue::requests_from(runs),
    );
    let cache = store.clone();
    let controller = crate::controller::run(Arc::new(ctx), store, synced, requests, 4, shutdown);
    (cache, controller)
}

impl Reconciler for Context {
    type Kind = JobDefinition;
    const KIND: &'static str = "JobDefinition";

    async fn reconcile(self: Arc<Self>, def: Arc<JobDefinition>) -> Result<Action, Error> {
        Ok(reconcile(&def, &self).await?)
    }

    fn events(&self) -> &Events {
        &self.recorder
    }

    fn put_failure(&self, def: &JobDefinition, error: &Error) {
        let conditions = def.status.as_ref().map(|s| s.conditions.as_slice());
        crate::controller::mark_failed(&self.client, def, conditions.unwrap_or_default(), error);
    }
}

/// Fetch -> decide -> apply, for one definition.
async fn reconcile(def: &JobDefinition, ctx: &Context) -> Result<Action, kube::Error> {
    if !ctx.jobs_synced.wait_at_most(Duration::ZERO).await {
        // The runs are not all known yet: deciding now could start a run that exists.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = def.namespace().unwrap_or_default();
    let defs: Api<JobDefinition> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs: Api<ProwJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let cached = ctx.runs.of(def, &ctx.jobs);
    let runs: Vec<&ProwJob> = cached.iter().map(|j| &j.0).collect();
    let now = Timestamp::now();
    let params = crate::patch_params();

    // A new value of the run annotation: one run, named after the value.
    if let Some(token) = pending_manual_trigger(def) {
        match manual_run(def, &token) {
            Ok(job) => {
                let name = job.name_any();
                if create_run(ctx, def, &jobs, &job).await? {
                    publish(
                        ctx,
                        def,
                        false,
                        "ManualRun",
                        format!("started run {name} for {RUN_ANNOTATION}={token}"),
                    );
                }
            }
            Err(CannotRun(why)) => publish(
                ctx,
                def,
                true,
                "ManualRunRefused",
                format!("{RUN_ANNOTATION}={token} starts no run: {why}"),
            ),
        }
        defs.patch_status(
            &def.name_any(),
            &params,
            &Patch::Merge(&json!({ "status": { "lastManualTrigger": token } })),
        )
        .await?;
    }

    // Periodics: the schedule's step, or why the schedule does not read.
    let decision = periodic_step(def, &runs, now);
    tracing::debug!(definition = %def.name_any(), %namespace, runs = runs.len(), ?decision, "decided");

    if let Some(Ok(Next::Start {
        suffix,
        due,
        trigger,
        attempt,
    })) = &decision
    {
        let request = RunRequest {
            name: run_name(&def.name_any(), suffix),
            trigger: trigger.label().into(),
            annotations: [
                (DUE_ANNOTATION.to_string(), due.to_string()),
                (ATTEMPT_ANNOTATION.to_string(), attempt.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        match prowjob_for(def, &request) {
            Ok(job) => {
                if create_run(ctx, def, &jobs, &job).await? {
                    tracing::info!(definition = %def.name_any(), %namespace, run = %request.name, %due, "started a scheduled run");
                }
            }
            Err(CannotRun(why)) => {
                publish(
                    ctx,
                    def,
                    true,
                    "CannotRun",
                    format!("the run due at {due} cannot start: {why}"),
                );
            }
        }
        // The run's event brings the definition back with the run in the cache.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }

    let step = decision
        .as_ref()
        .map(|d| d.as_ref().map_err(String::as_str));
    if let Some(status) = status_update(def, &runs, step, now) {
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        // The manual trigger's record is written above, on its own.
        if let Some(map) = body.as_object_mut() {
            map.remove("lastManualTrigger");
            for key in ["nextRunTime", "lastRunTime"] {
                map.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        defs.patch_status(
            &def.name_any(),
            &params,
            &Patch::Merge(&json!({ "status": body })),
        )
        .await?;
    }

    let unfinished = runs.iter().any(|j| !j.is_complete());
    let wait = match decision {
        Some(Ok(Next::Wait { until })) => Some(until.duration_since(now).unsigned_abs()),
        Some(Ok(Next::Blocked { due: Some(due), .. })) if due > now => {
            Some(due.duration_since(now).unsigned_abs())
        }
        _ => None,
    };
    Ok(match (wait, unfinished) {
        (Some(w), true) => Action::requeue(w.min(WHILE_RUNNING)),
        (Some(w), false) => Action::requeue(w),
        (None, true) => Action::requeue(WHILE_RUNNING),
        (None, false) => Action::await_change(),
    })
}

/// What the schedule says of a periodic now (`Err`: why its schedule does not read); `None`
/// for presubmits and postsubmits.
fn periodic_step(
    def: &JobDefinition,
    runs: &[&ProwJob],
    now: Timestamp,
) -> Option<Result<Next, String>> {
    if def.spec.job_type != DefinitionType::Periodic {
        return None;
    }
    let parsed =
        schedule::schedule_of(&def.spec).and_then(|s| Ok((s, schedule::retry_of(&def.spec)?)));
    Some(match parsed {
        Ok((sched, retry)) => {
            let created = def
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let history: Vec<_> = runs.iter().map(|j| run_of(j)).collect();
            Ok(schedule::next(created, &sched, retry, &history, now))
        }
        Err((field, message)) => Err(format!("{field}: {message}")),
    })
}

/// The run annotation's value when no run was started for it yet.
fn pending_manual_trigger(def: &JobDefinition) -> Option<String> {
    let token = def.annotations().get(RUN_ANNOTATION)?.trim().to_string();
    let done = def
        .status
        .as_ref()
        .and_then(|s| s.last_manual_trigger.as_deref());
    (!token.is_empty() && done != Some(token.as_str())).then_some(token)
}

/// The run a value of the run annotation asks for. A postsubmit's tests the branch the
/// `run-base-ref` annotation names, or the definition's only literal branch.
fn manual_run(def: &JobDefinition, token: &str) -> Result<ProwJob, CannotRun> {
    let base_ref = def
        .annotations()
        .get(RUN_BASE_REF_ANNOTATION)
        .cloned()
        .or_else(|| def.literal_branch())
        .unwrap_or_default();
    if def.spec.job_type == DefinitionType::Presubmit {
        return Err(CannotRun(
            "a presubmit runs on a pull request: trigger it over the manual-trigger API or from the code host".into(),
        ));
    }
    let request = RunRequest {
        name: run_name(&def.name_any(), &manual_suffix(token)),
        trigger: "manual".into(),
        base_ref,
        ..Default::default()
    };
    prowjob_for(def, &request)
}

/// Creates a run; false when it exists already (it was started before). A run the API server
/// refuses (admission says the definition makes a bad job) is an error for people: an Event on
/// the definition, and the next try a minute later.
async fn create_run(
    ctx: &Context,
    def: &JobDefinition,
    jobs: &Api<ProwJob>,
    job: &ProwJob,
) -> Result<bool, kube::Error> {
    let params = crate::post_params();
    match jobs.create(&params, job).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) if crate::error::is_request_error(&e) => {
            publish(
                ctx,
                def,
                true,
                "RunRefused",
                format!("run {} was refused: {e}", job.name_any()),
            );
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn publish(ctx: &Context, def: &JobDefinition, warning: bool, reason: &str, note: String) {
    crate::events::publish(
        &ctx.recorder,
        def.object_ref(&()),
        warning,
        reason,
        note,
        "Run",
    );
}

#[cfg(test)]
mod tests {
    use http::Method;
    use kube::runtime::reflector;
    use serde_json::Value;

    use super::*;
    use crate::mock::{failed_pass, failure, requests_to, serve_until_quiet};

    fn definition(annotations: Value) -> JobDefinition {
        serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
            "metadata": {"name": "nightly", "namespace": "prow", "uid": "uid-d",
                         "annotations": annotations},
            "spec": {"type": "periodic", "interval": "1h",
                     "spec": {"containers": [{"image": "x", "command": ["true"]}]}},
        }))
        .expect("definition")
    }

    fn context() -> (Arc<Context>, crate::mock::Server) {
        let (client, server) = crate::mock::client();
        let ctx = Context {
            client: client.clone(),
            jobs: reflector::store().0,
            runs: RunIndex::default(),
            jobs_synced: Synced::already(),
            recorder: crate::events::recorder(client),
        };
        (Arc::new(ctx), server)
    }

    /// Echoes a created object, and answers a status patch with the definition, as the API
    /// server does.
    fn echo(_: &Method, path: &str, body: &Value) -> Value {
        if path.contains("/jobdefinitions/") {
            let mut def = serde_json::to_value(definition(json!({}))).expect("json");
            def["status"] = body["status"].clone();
            return def;
        }
        body.clone()
    }

    #[test]
    fn the_index_gives_a_definition_its_own_runs_through_changes_and_relists() {
        let run = |name: &str, def: Option<&str>, ns: &str| -> Job {
            let labels = def.map_or(json!({}), |d| json!({ DEFINITION_LABEL: d }));
            Job(serde_json::from_value(json!({
                "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"job": "nightly"},
            }))
            .expect("job"))
        };
        let (store, mut writer) = reflector::store();
        let index = RunIndex::default();
        let mut feed = |event: watcher::Event<Job>| {
            writer.apply_watcher_event(&event);
            index.observe(&event);
        };
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(run("a", Some("nightly"), "prow")));
        feed(watcher::Event::InitApply(run("b", Some("other"), "prow")));
        feed(watcher::Event::InitApply(run(
            "c",
            Some("nightly"),
            "elsewhere",
        )));
        feed(watcher::Event::InitApply(run("d", None, "prow")));
        feed(watcher::Event::InitDone);
        feed(watcher::Event::Apply(run("e", Some("nightly"), "prow")));
        let def = definition(json!({}));
        let names = |index: &RunIndex| {
            let mut n: Vec<String> = index
                .of(&def, &store)
                .iter()
                .map(|j| j.name_any())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&index), ["a", "e"], "its runs, in its namespace only");
        feed(watcher::Event::Delete(run("a", Some("nightly"), "prow")));
        assert_eq!(names(&index), ["e"]);
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(run("f", Some("nightly"), "prow")));
        feed(watcher::Event::InitDone);
        assert_eq!(names(&index), ["f"], "a relist replaces the index");
    }

    #[tokio::test]
    async fn a_periodic_without_runs_starts_one_under_its_deterministic_name() {
        let (ctx, server) = context();
        let seen = serve_until_quiet(server, echo);
        let action = ctx
            .reconcile(Arc::new(definition(json!({}))))
            .await
            .expect("reconciled");
        assert_eq!(action, Action::requeue(Duration::from_secs(5)));
        let seen = seen.await.expect("server");
        let created: Vec<_> = seen
            .iter()
            .filter(|(m, p, _)| *m == Method::POST && p.contains("/prowjobs"))
            .collect();
        assert_eq!(created.len(), 1, "{seen:?}");
        let run = &created[0].2;
        let name = run["metadata"]["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("nightly-"), "{name}");
        assert_eq!(run["metadata"]["labels"][DEFINITION_LABEL], "nightly");
        assert_eq!(
            run["metadata"]["labels"]["prow-operator.dev/trigger"],
            "schedule"
        );
        assert_eq!(run["spec"]["job"], "nightly");
    }

    #[tokio::test]
    async fn a_run_the_api_server_refuses_is_a_warning_event_on_the_definition() {
        let (ctx, server) = context();
        let seen = serve_until_quiet(server, |method, path, body| match *method {
            Method::POST if path.contains("/prowjobs") => failure(
                422,
                "Invalid",
                "admission webhook denied the request: spec.pod_spec: bad",
            ),
            _ => echo(method, path, body),
        });
        let def = Arc::new(definition(json!({})));
        assert_eq!(failed_pass(&ctx, def).await, Action::retry());
        let seen = seen.await.expect("server");
        let reasons: Vec<&str> = requests_to(&seen, "/events")
            .into_iter()
            .filter_map(|(_, _, b)| b["reason"].as_str())
            .collect();
        assert!(reasons.contains(&"RunRefused"), "{reasons:?}");
        assert!(reasons.contains(&crate::controller::FAILED), "{reasons:?}");
    }

    #[tokio::test]
    async fn a_new_run_annotation_starts_one_manual_run_and_records_the_value() {
        let (ctx, server) = context();
        let seen = serve_until_quiet(server, echo);
        let def = definition(json!({RUN_ANNOTATION: "first"}));
        ctx.reconcile(Arc::new(def)).await.expect("reconciled");
        let seen = seen.await.expect("server");
        let runs: Vec<&Value> = seen
            .iter()
            .filter(|(m, p, _)| *m == Method::POST && p.contains("/prowjobs"))
            .map(|(_, _, b)| b)
            .filter(|b| b["metadata"]["labels"]["prow-operator.dev/trigger"] == "manual")
            .collect();
        assert_eq!(runs.len(), 1, "{seen:?}");
        let recorded = seen.iter().any(|(m, p, b)| {
            *m == Method::PATCH
                && p.contains("/jobdefinitions/nightly/status")
                && b["status"]["lastManualTrigger"] == "first"
        });
        assert!(recorded, "{seen:?}");
    }
}
