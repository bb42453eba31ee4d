//! Everything one reconcile of a ProwJob does, computed from what it read: the job's status
//! change, the pod to create or delete, the Event to publish, the jobs to wake and when to
//! look again, the TestCluster lease to take or end. The operator fetches the facts, calls
//! [`plan`], and carries the plan out in a fixed order (take the lease, create the pod, write
//! the status, delete the pod, end the lease, publish, wake), so a crash between two writes
//! leaves a state the next plan repairs: a lease taken for a pod never created is used by the
//! next pass, one left by a finished or deleted job is reclaimed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::buildcluster::Gate;
use crate::concurrency::{to_wake, Grant, Limits};
use crate::dedupe::{superseded_by, supersedes};
use crate::lease::{transition, PoolPolicy, Request};
use crate::lifecycle::{decide, lost, Policy, Step, EVICTED};
use crate::pod_view::PodView;
use crate::pool::{
    assign, awaits_first_check, holder_of, leasable, lease_of, line, pool_of, waiting_description,
    LeasedCluster, Pool,
};
use crate::prowjob::JobRef;
use crate::{ProwJob, ProwJobState, ProwJobType, TestCluster};

/// How long a waiting job waits before it checks its limits again by itself; a finished job of
/// the same name or queue wakes it sooner.
pub const WAITING_RECHECK: Duration = Duration::from_secs(60);

/// How often a job waiting in a TestCluster pool's line looks again by itself, so the place
/// in line its description gives stays current as the jobs ahead leave (a freed cluster wakes
/// the first in line at once).
pub const POOL_RECHECK: Duration = Duration::from_secs(10);

/// How long a job that removed a pod waits before it looks again (the deletion shows in the
/// cache within that, and wakes it sooner).
pub const AFTER_DELETE: Duration = Duration::from_secs(1);

/// Added to a timeout's wait so that the deadline has passed when the job is looked at again.
pub const PAST_DEADLINE: Duration = Duration::from_millis(200);

/// What a reconcile read.
pub struct Facts<'a> {
    /// The job, as the cache has it.
    pub job: &'a ProwJob,
    /// Its pod, if it has one.
    pub pod: Option<&'a PodView>,
    /// Whether the Eviction API deleted that pod (an API server before 1.26 leaves no mark on
    /// the pod; the operator learns it from its PodDisruptionBudget).
    pub evicted: bool,
    /// The time of this reconcile, read once.
    pub now: Timestamp,
    /// The TestClusters of the job's pod namespace, as the operator last wrote or saw them
    /// (read only for a job that names a pool, or holds a lease).
    pub clusters: &'a [&'a TestCluster],
    /// The namespace of a job's pod when its `spec.namespace` is empty.
    pub default_pod_namespace: &'a str,
    /// The settings of the job's pool.
    pub pool_policy: &'a PoolPolicy,
}

/// The other jobs the operator knows of (they may include the job itself), read only when the
/// plan needs them: for a presubmit, which may supersede or be superseded, and for a finish,
/// which wakes waiting jobs. Most reconciles need neither.
pub struct Peers<J, F> {
    load: Option<F>,
    jobs: Vec<J>,
}

impl<J: JobRef, F: FnOnce() -> Vec<J>> Peers<J, F> {
    /// Peers that `load` reads when first needed.
    pub fn new(load: F) -> Self {
        Self {
            load: Some(load),
            jobs: Vec::new(),
        }
    }

    fn get(&mut self) -> impl Iterator<Item = &ProwJob> + Clone {
        if let Some(load) = self.load.take() {
            self.jobs = load();
        }
        self.jobs.iter().map(|j| j.job())
    }
}

/// The whole of what one reconcile does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The job's status change, written with the resourceVersion the plan was made from.
    pub status: Option<StatusChange>,
    /// The pod to create (before the status is written) or delete (after).
    pub pod: PodChange,
    /// The Event to publish on the job.
    pub event: Option<JobEvent>,
    /// Other jobs to reconcile now: the newer run that supersedes them wakes older presubmits;
    /// a finished job wakes the first waiting job of each job name that shared a limit with it.
    pub wake: Vec<JobKey>,
    /// When to look at the job again by itself; `None` waits for a change.
    pub requeue: Option<Duration>,
    /// The TestCluster lease to take (before the pod is created) or end (after the job's
    /// status is written).
    pub lease: Option<LeaseWrite>,
}

impl Plan {
    /// What this pass, after its other writes, does with `job`'s [`crate::labels::COMPLETED`]
    /// mark: `Some(true)` marks it (the job was already finished when the plan was made, is
    /// not `marked` yet, and the plan writes no status, changes no pod, ends no lease and looks
    /// again at no set time: the mark follows the last of what the operator does for the job,
    /// and a crash before it leaves the job to be marked at its next reconcile); `Some(false)`
    /// takes it off an unfinished job (a mark set by hand, or before admission refused it),
    /// which a restart would otherwise list with the finished jobs, after it is ready; `None`
    /// leaves it.
    pub fn mark(&self, job: &ProwJob, marked: bool) -> Option<bool> {
        if !job.is_complete() {
            return marked.then_some(false);
        }
        (!marked
            && self.status.is_none()
            && self.pod == PodChange::Keep
            && self.lease.is_none()
            && self.requeue.is_none())
        .then_some(true)
    }
}

/// A TestCluster status write: the cluster as read, with its new status, to be written at the
/// resourceVersion it was read at (a lease taken meanwhile makes it a conflict, never a second
/// holder).
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseWrite {
    /// The cluster, with the new status and the resourceVersion the decision was made on.
    pub cluster: TestCluster,
    /// Taking a lease (true) or ending one.
    pub take: bool,
    /// Ending one while jobs wait in the pool: the start of a hand-off.
    pub handoff: bool,
}

/// A pod to create or delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PodChange {
    /// Leave the pod as it is.
    #[default]
    Keep,
    /// Create the job's pod with this build ID.
    Create {
        /// The build ID the pod carries.
        build_id: String,
        /// The TestCluster leased to the job, which the pod is given.
        cluster: Option<LeasedCluster>,
    },
    /// Delete the pod the plan was made from (only that one: by its UID).
    Delete,
}

/// A job by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// An Event on the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// Warning rather than Normal.
    pub warning: bool,
    /// The machine-readable reason.
    pub reason: &'static str,
    /// What happened, for a person.
    pub note: String,
}

/// A change to a job's status, as the merge patch of its status subresource. Fields left
/// `None` are not touched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// The new state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ProwJobState>,
    /// The new description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the job started (set once).
    #[serde(rename = "startTime", skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When its pod was created.
    #[serde(rename = "pendingTime", skip_serializing_if = "Option::is_none")]
    pub pending_time: Option<Time>,
    /// When it completed (set once).
    #[serde(rename = "completionTime", skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Its pod's name; `Some(None)` clears it (a revival waits for the old pod to go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<Option<String>>,
    /// Its build ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// How often its pod was recreated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_revival_count: Option<i64>,
    /// The TestCluster leased to it.
    #[serde(rename = "testCluster", skip_serializing_if = "Option::is_none")]
    pub test_cluster: Option<String>,
    /// The link to the run's page (`--job-url-template`), set with the build ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// States to record as reported, by reporter (merged into the job's): a run aborted because
    /// a newer one supersedes it is marked reported to the GitHub reporter as aborted, as
    /// upstream's plank does, so its context keeps the newer run's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_report_states: Option<std::collections::BTreeMap<String, ProwJobState>>,
}

impl StatusChange {
    /// The final state: the state, the description and the completion time (and a start time
    /// when the job never had one).
    fn finished(job: &ProwJob, state: ProwJobState, description: String, now: Timestamp) -> Self {
        Self {
            state: Some(state),
            description: Some(description),
            completion_time: Some(Time(now)),
            start_time: start_time_if_unset(job, now),
            ..Self::default()
        }
    }

    /// Whether it makes the job complete.
    pub fn completes(&self) -> bool {
        self.completion_time.is_some()
    }

    /// `job`'s status once this change is written.
    pub fn applied_to(&self, job: &ProwJob) -> crate::ProwJobStatus {
        let mut s = job.status.clone().unwrap_or_default();
        if let Some(state) = self.state {
            s.state = Some(state);
        }
        if let Some(d) = &self.description {
            s.description = d.clone();
        }
        if let Some(t) = &self.start_time {
            s.start_time = Some(t.clone());
        }
        if let Some(t) = &self.pending_time {
            s.pending_time = Some(t.clone());
        }
        if let Some(t) = &self.completion_time {
            s.completion_time = Some(t.clone());
        }
        if let Some(name) = &self.pod_name {
            s.pod_name = name.clone().unwrap_or_default();
        }
        if let Some(id) = &self.build_id {
            s.build_id = id.clone();
        }
        if let Some(n) = self.pod_revival_count {
            s.pod_revival_count = n;
        }
        if let Some(c) = &self.test_cluster {
            s.test_cluster = Some(c.clone());
        }
        if let Some(u) = &self.url {
            s.url = u.clone();
        }
        if let Some(states) = &self.prev_report_states {
            s.prev_report_states.extend(states.clone());
        }
        s
    }
}

fn start_time_if_unset(job: &ProwJob, now: Timestamp) -> Option<Time> {
    let started = job.status.as_ref().and_then(|s| s.start_time.as_ref());
    started.is_none().then_some(Time(now))
}

/// The plan for a job. `grant` is asked only when the job would start, and decides whether it
/// may: it is where the operator counts its own starts under a lock.
pub fn plan<J: JobRef>(
    facts: &Facts,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    policy: &Policy,
    limits: &Limits,
    grant: impl FnOnce() -> Grant,
) -> Plan {
    let job = facts.job;
    let mut step = decide(job, facts.pod, facts.now, policy);
    if facts.evicted {
        step = lost(job, EVICTED, policy);
    }
    let mut wake = Vec::new();
    let presubmit = job.spec.job_type == Some(ProwJobType::Presubmit);
    let running = matches!(
        step,
        Step::Start | Step::Adopt | Step::WaitFor(_) | Step::Idle
    );
    let mut superseded = false;
    if presubmit && running && !job.is_complete() {
        // A new run wakes the older ones it supersedes; they abort themselves.
        let others = peers.get();
        wake.extend(supersedes(job, others.clone()).into_iter().map(key));
        if let Some(newer) = superseded_by(job, others) {
            superseded = true;
            step = Step::Finish {
                state: ProwJobState::Aborted,
                description: format!(
                    "Aborted as the newer version of this job is running ({}).",
                    newer.metadata.name.as_deref().unwrap_or_default()
                ),
                delete_pod: facts.pod.is_some(),
            };
        }
    }
    let mut plan = match step {
        // A finished job still holding a lease (the operator stopped between the two writes)
        // ends it now.
        Step::Idle if job.is_complete() => Plan {
            lease: release(facts),
            ..Plan::default()
        },
        Step::Idle => Plan::default(),
        Step::WaitFor(after) => Plan {
            requeue: Some(after.saturating_add(PAST_DEADLINE)),
            ..Plan::default()
        },
        Step::Start => start(facts, peers, limits, grant),
        Step::Adopt => {
            let build_id = facts
                .pod
                .and_then(|p| p.build_id().map(str::to_string))
                .unwrap_or_default();
            let mut plan = started(job, build_id, facts.now, held(facts));
            plan.pod = PodChange::Keep;
            // The pod was created by an earlier pass: it says when.
            if let (Some(status), Some(created)) = (
                plan.status.as_mut(),
                facts
                    .pod
                    .and_then(|p| p.metadata.creation_timestamp.clone()),
            ) {
                status.pending_time = Some(created);
            }
            plan
        }
        Step::Restart => Plan {
            pod: PodChange::Create {
                build_id: job
                    .status
                    .as_ref()
                    .map(|s| s.build_id.clone())
                    .unwrap_or_default(),
                cluster: held(facts).map(LeasedCluster::of),
            },
            status: Some(StatusChange {
                pod_name: Some(Some(job.metadata.name.clone().unwrap_or_default())),
                ..StatusChange::default()
            }),
            ..Plan::default()
        },
        Step::DeleteStalePod => Plan {
            pod: pod_delete_if(facts.pod.is_some()),
            requeue: Some(AFTER_DELETE),
            ..Plan::default()
        },
        Step::Revive { description } => {
            let count = job.status.as_ref().map_or(0, |s| s.pod_revival_count) + 1;
            Plan {
                // The count is stored before the pod goes, so a crash in between cannot revive
                // twice for one loss; no pod name marks "recreate once the old pod is gone".
                status: Some(StatusChange {
                    pod_revival_count: Some(count),
                    pod_name: Some(None),
                    description: Some(description.clone()),
                    ..StatusChange::default()
                }),
                pod: pod_delete_if(facts.pod.is_some()),
                event: Some(JobEvent {
                    warning: true,
                    reason: "PodRevived",
                    note: description,
                }),
                requeue: Some(AFTER_DELETE),
                ..Plan::default()
            }
        }
        Step::Finish {
            state,
            description,
            delete_pod,
        } => finished(
            facts,
            peers,
            limits,
            state,
            description,
            delete_pod && facts.pod.is_some(),
        ),
    };
    if superseded {
        if let Some(status) = plan.status.as_mut() {
            status.prev_report_states =
                Some([(GITHUB_REPORTER.to_string(), ProwJobState::Aborted)].into());
        }
    }
    plan.wake.splice(0..0, wake);
    plan
}

/// The name upstream's crier (and prow-hook) records the GitHub reporter's states under.
pub const GITHUB_REPORTER: &str = "github-reporter";

/// What a reconcile of a job must read before its plan, beyond the caches: the facts the plan
/// takes are then all there, and the reconcile decides nothing itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reads<'a> {
    /// Read the pod from the API server when no cache shows it: the job's pod should exist (the
    /// pod cache lags the job cache, and a missing pod would end the job).
    pub pod_if_uncached: bool,
    /// Read the clusters of its pod namespace: a job of a pool, or one that holds a lease.
    pub clusters: bool,
    /// The pool whose turn the decision takes: the job may take a lease of it now.
    pub pool_turn: Option<&'a str>,
}

/// The [`Reads`] of `job`, whose start this process recorded when `started_here`.
pub fn reads(job: &ProwJob, started_here: bool) -> Reads<'_> {
    let state = job.state();
    let open = !job.is_complete();
    let holds = job
        .status
        .as_ref()
        .is_some_and(|s| s.test_cluster.is_some());
    let pool = pool_of(job);
    let may_take = state == ProwJobState::Triggered && open && !holds;
    Reads {
        pod_if_uncached: (state == ProwJobState::Triggered && started_here)
            || (state == ProwJobState::Pending && open),
        clusters: pool.is_some() || holds,
        pool_turn: pool.filter(|_| may_take),
    }
}

/// The plan for a job whose pod the API server refused (or that cannot be built): it ends in
/// error with the reason.
pub fn refused_pod<J: JobRef>(
    facts: &Facts,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    limits: &Limits,
    reason: &str,
) -> Plan {
    finished(
        facts,
        peers,
        limits,
        ProwJobState::Error,
        format!("Pod can not be created: {reason}"),
        false,
    )
}

/// The plan for a job as its build cluster allows (`prow_api::buildcluster::gate`): ended in
/// error with the reason, waiting with the reason in its description (written when it
/// changes), or `go`'s plan, with the description a wait left put back.
pub fn in_build_cluster<J: JobRef, F: FnOnce() -> Vec<J>>(
    gate: Gate,
    facts: &Facts,
    peers: &mut Peers<J, F>,
    limits: &Limits,
    go: impl FnOnce(&mut Peers<J, F>) -> Plan,
) -> Plan {
    match gate {
        Gate::End(description) => finished(
            facts,
            peers,
            limits,
            ProwJobState::Error,
            description,
            false,
        ),
        Gate::Wait {
            description,
            recheck,
        } => {
            let said = facts.job.status.as_ref().map(|s| s.description.as_str());
            Plan {
                status: description
                    .filter(|d| said != Some(d.as_str()))
                    .map(|d| StatusChange {
                        description: Some(d),
                        ..StatusChange::default()
                    }),
                requeue: Some(recheck),
                ..Plan::default()
            }
        }
        Gate::Go { restore } => {
            let mut plan = go(peers);
            if let Some(restore) = restore {
                let status = plan.status.get_or_insert_with(StatusChange::default);
                status.description.get_or_insert(restore);
            }
            plan
        }
    }
}

/// The second plan of a pass whose pod the API server refused after the first plan took a lease
/// for it (`taken`, as written): the job ends in error with the reason, and that lease ends with
/// it.
pub fn after_refused_pod<J: JobRef>(
    facts: &Facts,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    limits: &Limits,
    reason: &str,
    taken: Option<&TestCluster>,
) -> Plan {
    let mut plan = refused_pod(facts, peers, limits, reason);
    if let Some(written) = taken {
        plan.lease = release(&Facts {
            clusters: &[written],
            ..*facts
        });
    }
    plan
}

fn key(job: &ProwJob) -> JobKey {
    JobKey {
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_default(),
    }
}

fn pod_delete_if(delete: bool) -> PodChange {
    if delete {
        PodChange::Delete
    } else {
        PodChange::Keep
    }
}

/// A triggered job that may start: one without a pool asks for its grant; one with a pool
/// asks only when it holds a cluster, or is first in the pool's line with a cluster free,
/// and takes that lease with its start. The others wait, saying where they are in line.
fn start<J: JobRef>(
    facts: &Facts,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    limits: &Limits,
    grant: impl FnOnce() -> Grant,
) -> Plan {
    let job = facts.job;
    let (cluster, take) = match (Pool::of(job, facts.default_pod_namespace), held(facts)) {
        (None, _) => (None, None),
        (Some(_), Some(held)) => (Some(held), None),
        (Some(pool), None) => {
            let uid = job.metadata.uid.as_deref();
            let mut jobs: Vec<&ProwJob> = peers.get().collect();
            if !jobs.iter().any(|j| j.metadata.uid.as_deref() == uid) {
                // The job itself, as this pass read it, is in line whatever the peers say.
                jobs.push(job);
            }
            let given = assign(&pool, jobs.iter().copied(), facts.clusters)
                .into_iter()
                .find(|(j, _)| j.metadata.uid.as_deref() == uid);
            let Some((_, cluster)) = given else {
                let line = line(&pool, jobs.iter().copied(), facts.clusters);
                let place = line
                    .iter()
                    .position(|j| j.metadata.uid.as_deref() == uid)
                    .map_or(line.len() + 1, |i| i + 1);
                let why = waiting_description(pool.name, place);
                return Plan {
                    requeue: Some(POOL_RECHECK),
                    ..waiting(job, why, facts.now)
                };
            };
            if let Some(why) = awaits_first_check(cluster, facts.pool_policy) {
                return waiting(job, why, facts.now);
            }
            let lease = transition(
                cluster.metadata.name.as_deref().unwrap_or_default(),
                &cluster.status.clone().unwrap_or_default(),
                &Request::Lease(holder_of(job)),
                facts.pool_policy,
                facts.now,
            );
            match lease {
                Ok(Some(status)) => (Some(cluster), Some(with_status(cluster, status, true))),
                Ok(None) => (Some(cluster), None),
                Err(refused) => return waiting(job, refused.0, facts.now),
            }
        }
    };
    match grant() {
        Grant::Start(build_id) => Plan {
            lease: take,
            ..started(job, build_id, facts.now, cluster)
        },
        Grant::Wait(why) => waiting(job, why, facts.now),
        Grant::Refuse(why) => finished(facts, peers, limits, ProwJobState::Error, why, false),
    }
}

/// The cluster leased to the job, if it holds one.
fn held<'a>(facts: &Facts<'a>) -> Option<&'a TestCluster> {
    lease_of(facts.job, facts.clusters.iter().copied())
}

fn with_status(cluster: &TestCluster, status: crate::TestClusterStatus, take: bool) -> LeaseWrite {
    let mut cluster = cluster.clone();
    cluster.status = Some(status);
    LeaseWrite {
        cluster,
        take,
        handoff: false,
    }
}

/// The end of the job's lease, if it holds one.
pub fn release(facts: &Facts) -> Option<LeaseWrite> {
    let cluster = held(facts)?;
    let status = transition(
        cluster.metadata.name.as_deref().unwrap_or_default(),
        &cluster.status.clone().unwrap_or_default(),
        &Request::Finish(holder_of(facts.job)),
        facts.pool_policy,
        facts.now,
    )
    .ok()??;
    Some(with_status(cluster, status, false))
}

/// Create the pod, then record it: pending, with its name, build ID, times and cluster.
fn started(job: &ProwJob, build_id: String, now: Timestamp, cluster: Option<&TestCluster>) -> Plan {
    let name = job.metadata.name.clone().unwrap_or_default();
    let leased = cluster.map(LeasedCluster::of);
    let mut on = leased
        .as_ref()
        .map(|c| format!(" on test cluster {}", c.name))
        .unwrap_or_default();
    // The job's Events stay on the job, in the operator's cluster; they say where its pod is.
    if !job.spec.cluster.is_empty() && job.spec.cluster != crate::buildcluster::DEFAULT_ALIAS {
        on = format!(" in build cluster {}{on}", job.spec.cluster);
    }
    Plan {
        status: Some(StatusChange {
            state: Some(ProwJobState::Pending),
            pending_time: Some(Time(now)),
            pod_name: Some(Some(name.clone())),
            build_id: Some(build_id.clone()),
            description: Some("Job triggered.".into()),
            start_time: start_time_if_unset(job, now),
            test_cluster: leased.as_ref().map(|c| c.name.clone()),
            ..StatusChange::default()
        }),
        pod: PodChange::Create {
            build_id: build_id.clone(),
            cluster: leased,
        },
        event: Some(JobEvent {
            warning: false,
            reason: "Pending",
            note: format!("Pod {name} created for build {build_id}{on}."),
        }),
        ..Plan::default()
    }
}

/// Say why the job waits, writing only when that changes; look again after a while.
fn waiting(job: &ProwJob, why: String, now: Timestamp) -> Plan {
    let status = job.status.clone().unwrap_or_default();
    let unchanged = status.state == Some(ProwJobState::Triggered) && status.description == why;
    Plan {
        status: (!unchanged).then(|| StatusChange {
            state: Some(ProwJobState::Triggered),
            description: Some(why),
            start_time: start_time_if_unset(job, now),
            ..StatusChange::default()
        }),
        requeue: Some(WAITING_RECHECK),
        ..Plan::default()
    }
}

/// End the job and its lease; its slot wakes the first waiting job of each name that shared a
/// limit with it, and its cluster the first job waiting in its pool.
fn finished<J: JobRef>(
    facts: &Facts,
    peers: &mut Peers<J, impl FnOnce() -> Vec<J>>,
    limits: &Limits,
    state: ProwJobState,
    description: String,
    delete_pod: bool,
) -> Plan {
    let (warning, reason) = match state {
        ProwJobState::Success => (false, "Succeeded"),
        ProwJobState::Aborted => (false, "Aborted"),
        ProwJobState::Failure => (true, "Failed"),
        _ => (true, "Errored"),
    };
    let jobs: Vec<&ProwJob> = peers.get().collect();
    let next = next_in_pool(facts, &jobs);
    let handoff = !next.is_empty();
    Plan {
        status: Some(StatusChange::finished(
            facts.job,
            state,
            description.clone(),
            facts.now,
        )),
        pod: pod_delete_if(delete_pod),
        event: Some(JobEvent {
            warning,
            reason,
            note: description,
        }),
        wake: to_wake(facts.job, jobs.iter().copied(), limits)
            .into_iter()
            .chain(next)
            .map(key)
            .collect(),
        requeue: None,
        lease: release(facts).map(|end| LeaseWrite { handoff, ..end }),
    }
}

/// The jobs waiting in the pool of a job that frees a cluster that get a cluster now: as many
/// of the first in line as there are clusters free with this one. (Another cluster freed a
/// moment ago may not be taken yet; waking only the first would leave it to the next look.)
fn next_in_pool<'p>(facts: &Facts, jobs: &[&'p ProwJob]) -> Vec<&'p ProwJob> {
    let Some(pool) = Pool::of(facts.job, facts.default_pod_namespace) else {
        return Vec::new();
    };
    if held(facts).is_none() {
        return Vec::new();
    }
    let free = facts
        .clusters
        .iter()
        .filter(|c| leasable(c, pool.name))
        .count();
    line(&pool, jobs.iter().copied(), facts.clusters)
        .into_iter()
        .filter(|j| j.metadata.uid != facts.job.metadata.uid)
        .take(free + 1)
        .collect()
}

#[cfg(test)]
mod tests;
