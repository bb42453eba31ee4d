//! The build clusters jobs' pods run in, one idea a file: the members (`member`: one cluster's
//! clients, its stripped pod watch, its eviction budget, whether it is reached), this registry
//! of them by alias, the BuildCluster reconcile that keeps the registry and each object's status
//! (`reconcile`: fetch -> `prow_api::buildcluster::status` -> apply). Upstream's
//! `--kubeconfig-dir` is read by `prow_runtime::kubeconfig_dir`.
//!
//! Every member works on its own tasks: a cluster that does not answer delays nothing but its
//! own jobs, and a BuildCluster added, changed (its kubeconfig rotated) or deleted takes effect
//! at its next reconcile, without a restart.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use k8s_openapi::jiff::Timestamp;
use prow_api::buildcluster::BuildCluster;
use prow_runtime::store::Synced;

use kube::runtime::reflector::{ObjectRef, Store};
use prow_api::buildcluster::{alias_of, Reach, DEFAULT_ALIAS};
use tokio::sync::mpsc;

use crate::prowjob::stored::Job;

mod member;
mod reconcile;

pub use member::{Member, Wiring};
pub use prow_runtime::kubeconfig_dir::from_kubeconfig_dir;
pub use reconcile::{run, Settings};

/// What a job's alias names.
pub enum Lookup {
    /// A cluster the operator works with (reached or not).
    Member(Arc<Member>),
    /// A BuildCluster whose kubeconfig cannot be used: its jobs wait, with this reason, until
    /// it is fixed or their timeout ends them.
    Broken(Reach),
    /// Nothing of that alias.
    Missing,
}

/// The build clusters by alias: the operator's own cluster as `default` unless a BuildCluster
/// of that name exists, those of `--kubeconfig-dir`, and the BuildClusters.
pub struct BuildClusters {
    local: Arc<Member>,
    members: RwLock<HashMap<String, Entry>>,
    /// The aliases of `--kubeconfig-dir`, which no BuildCluster replaces or removes.
    fixed: RwLock<HashMap<String, Arc<Member>>>,
    jobs: Store<Job>,
    wake: mpsc::UnboundedSender<ObjectRef<Job>>,
    /// The BuildClusters as listed, once their watch runs, and their namespace.
    declared: OnceLock<(Store<BuildCluster>, Synced, String)>,
    /// When this process began: a cluster it has not connected to yet is down since then.
    started: Timestamp,
}

#[derive(Clone)]
enum Entry {
    Member(Arc<Member>),
    Broken(Reach),
}

impl BuildClusters {
    /// The registry with only the operator's own cluster (`local`); waiting jobs are woken
    /// through `wake`, found in `jobs`.
    pub fn new(
        local: Arc<Member>,
        jobs: Store<Job>,
        wake: mpsc::UnboundedSender<ObjectRef<Job>>,
    ) -> Self {
        Self {
            local,
            members: RwLock::new(HashMap::new()),
            fixed: RwLock::new(HashMap::new()),
            jobs,
            wake,
            declared: OnceLock::new(),
            started: Timestamp::now(),
        }
    }

    /// The BuildClusters' store, which tells a BuildCluster not connected yet from an alias
    /// that names nothing.
    pub fn set_declared(&self, store: Store<BuildCluster>, synced: Synced, namespace: &str) {
        let _ = self.declared.set((store, synced, namespace.to_string()));
    }

    /// The operator's own cluster.
    pub fn local(&self) -> &Arc<Member> {
        &self.local
    }

    /// What `alias` names now.
    pub fn lookup(&self, alias: &str) -> Lookup {
        if let Some(entry) = self.members.read().expect("members lock").get(alias) {
            return match entry {
                Entry::Member(m) => Lookup::Member(m.clone()),
                Entry::Broken(reach) => Lookup::Broken(reach.clone()),
            };
        }
        if let Some(m) = self.fixed.read().expect("fixed lock").get(alias) {
            return Lookup::Member(m.clone());
        }
        let waiting = |reason: &str| {
            Lookup::Broken(Reach::Starting {
                since: self.started,
                reason: reason.to_string(),
            })
        };
        match self.declared.get() {
            Some((store, _, ns)) if store.get(&ObjectRef::new(alias).within(ns)).is_some() => {
                waiting("the operator has not connected to it yet")
            }
            _ if alias == DEFAULT_ALIAS => Lookup::Member(self.local.clone()),
            Some((_, synced, _)) if synced.is_synced() => Lookup::Missing,
            _ => waiting("the BuildClusters are not listed yet"),
        }
    }

    /// How the cluster of `alias` stands for its jobs, and the member when there is one.
    pub fn reach(&self, alias: &str) -> (Option<Arc<Member>>, Reach) {
        match self.lookup(alias) {
            Lookup::Member(m) => {
                let reach = m.reach();
                (Some(m), reach)
            }
            Lookup::Broken(reach) => (None, reach),
            Lookup::Missing => (None, Reach::Missing),
        }
    }

    /// Every member: the clusters job pods may be in (retention sweeps each).
    pub fn members(&self) -> Vec<Arc<Member>> {
        let mut all: Vec<Arc<Member>> = self
            .members
            .read()
            .expect("members lock")
            .values()
            .filter_map(|e| match e {
                Entry::Member(m) => Some(m.clone()),
                Entry::Broken(_) => None,
            })
            .collect();
        all.extend(self.fixed.read().expect("fixed lock").values().cloned());
        if !all.iter().any(|m| m.alias == DEFAULT_ALIAS) {
            all.push(self.local.clone());
        }
        all
    }

    /// The member of a BuildCluster named `alias`, if it has one.
    pub fn declared(&self, alias: &str) -> Option<Arc<Member>> {
        match self.members.read().expect("members lock").get(alias) {
            Some(Entry::Member(m)) => Some(m.clone()),
            _ => None,
        }
    }

    /// Makes `member` the cluster of its alias (stopping the one it replaces).
    pub fn put(&self, member: Arc<Member>) {
        let alias = member.alias.clone();
        let old = self
            .members
            .write()
            .expect("members lock")
            .insert(alias.clone(), Entry::Member(member));
        if let Some(Entry::Member(old)) = old {
            old.stop();
        }
        self.wake_jobs_of(&alias);
    }

    /// Marks the BuildCluster `alias` unusable for `reach`'s reason (stopping its member).
    pub fn put_broken(&self, alias: &str, reach: Reach) {
        let old = self
            .members
            .write()
            .expect("members lock")
            .insert(alias.to_string(), Entry::Broken(reach));
        if let Some(Entry::Member(old)) = old {
            old.stop();
            self.wake_jobs_of(alias);
        }
    }

    /// Forgets the BuildCluster `alias` (deleted): its unfinished jobs are woken, and end.
    pub fn remove(&self, alias: &str) {
        let old = self.members.write().expect("members lock").remove(alias);
        if let Some(Entry::Member(old)) = &old {
            old.stop();
        }
        if old.is_some() {
            tracing::info!(alias, "build cluster removed");
            self.wake_jobs_of(alias);
        }
    }

    /// Forgets every BuildCluster not in `kept` (a relist without them).
    pub fn retain(&self, kept: &[String]) {
        let gone: Vec<String> = self
            .members
            .read()
            .expect("members lock")
            .keys()
            .filter(|a| !kept.contains(a))
            .cloned()
            .collect();
        for alias in gone {
            self.remove(&alias);
        }
    }

    /// Adds the clusters of `--kubeconfig-dir`.
    pub fn fix(&self, member: Arc<Member>) {
        let alias = member.alias.clone();
        self.fixed
            .write()
            .expect("fixed lock")
            .insert(alias, member);
    }

    /// Asks for every unfinished job of `alias` to be reconciled: the cluster changed.
    pub fn wake_jobs_of(&self, alias: &str) {
        wake_jobs_of(&self.jobs, &self.wake, alias);
    }
}

/// Asks for every job of `alias` that needs a reconcile to be reconciled.
pub(crate) fn wake_jobs_of(
    jobs: &Store<Job>,
    wake: &mpsc::UnboundedSender<ObjectRef<Job>>,
    alias: &str,
) {
    for job in jobs.state() {
        if alias_of(&job) == alias && job.needs_reconcile() {
            let _ = wake.send(ObjectRef::from_obj(job.as_ref()));
        }
    }
}
