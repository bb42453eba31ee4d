//! The rules of each kind behind one trait, so the webhook's admission path and the offline
//! validator (`prowctl validate`) dispatch the same way and treat namespaces the same way: an
//! object is compared only with the others of its own namespace (and collision group).

use std::collections::HashMap;

use kube::Resource;

use super::{Config, Violation};
use crate::jobdefinition::{DefinitionType, JobDefinition};
use crate::testclusterpool::TestClusterPool;
use crate::{Preset, ProwJob, TestCluster};

/// The admission rules of one kind.
pub trait Validate: Resource<DynamicType = ()> + Sized {
    /// The rules a created or updated object must pass on its own.
    fn rules(&self, config: &Config) -> Vec<Violation>;

    /// The rules an update must pass against the object it replaces.
    fn update_rules(&self, _old: &Self) -> Vec<Violation> {
        Vec::new()
    }

    /// The rules a deletion must pass (the object as it is stored).
    fn delete_rules(&self) -> Vec<Violation> {
        Vec::new()
    }

    /// Objects can only collide with the others of their namespace whose group is the same;
    /// `None` when the kind has no collision rule.
    fn collision_group(&self) -> Option<String> {
        None
    }

    /// The collisions of this object with `peers`: others of its namespace and group, never
    /// itself.
    fn collisions<'a>(&self, _peers: impl IntoIterator<Item = &'a Self>) -> Vec<Violation>
    where
        Self: 'a,
    {
        Vec::new()
    }

    /// Every rule of a create or update: its own, against the object it replaces, and its
    /// collisions with `others` (any objects of the kind: only its peers are compared).
    fn check<'a>(
        &self,
        config: &Config,
        old: Option<&Self>,
        others: impl IntoIterator<Item = &'a Self>,
    ) -> Vec<Violation>
    where
        Self: 'a,
    {
        let mut violations = self.rules(config);
        if let Some(old) = old {
            violations.extend(self.update_rules(old));
        }
        if let Some(group) = self.collision_group() {
            let peers = others.into_iter().filter(|o| is_peer(self, &group, *o));
            violations.extend(self.collisions(peers));
        }
        violations
    }
}

/// Whether `other` is a peer of `object` (whose collision group is `group`): the same
/// namespace and group, another name.
fn is_peer<K: Validate>(object: &K, group: &str, other: &K) -> bool {
    other.meta().namespace == object.meta().namespace
        && other.meta().name != object.meta().name
        && other.collision_group().as_deref() == Some(group)
}

/// Many objects of a kind indexed by namespace and collision group, so that checking all of
/// them compares each only with its peers (30,000 definitions check in seconds, not minutes).
pub struct Peers<'a, K>(HashMap<(Option<&'a str>, String), Vec<&'a K>>);

impl<'a, K: Validate> Peers<'a, K> {
    /// Indexes `objects`.
    pub fn of(objects: impl IntoIterator<Item = &'a K>) -> Self {
        let mut index: HashMap<_, Vec<&'a K>> = HashMap::new();
        for object in objects {
            if let Some(group) = object.collision_group() {
                let namespace = object.meta().namespace.as_deref();
                index.entry((namespace, group)).or_default().push(object);
            }
        }
        Self(index)
    }

    /// [`Validate::check`] of a created object against the indexed ones.
    pub fn check(&self, object: &K, config: &Config) -> Vec<Violation> {
        let peers = object.collision_group().and_then(|group| {
            self.0
                .get(&(object.meta().namespace.as_deref(), group))
                .map(Vec::as_slice)
        });
        object.check(config, None, peers.unwrap_or_default().iter().copied())
    }
}

impl Validate for ProwJob {
    fn rules(&self, config: &Config) -> Vec<Violation> {
        super::prowjob(self, config)
    }

    fn update_rules(&self, old: &Self) -> Vec<Violation> {
        super::prowjob_update(old, self)
    }
}

impl Validate for Preset {
    fn rules(&self, _config: &Config) -> Vec<Violation> {
        super::preset(self)
    }

    /// Any two presets of a namespace can apply to the same job.
    fn collision_group(&self) -> Option<String> {
        Some(String::new())
    }

    fn collisions<'a>(&self, peers: impl IntoIterator<Item = &'a Self>) -> Vec<Violation> {
        super::preset_collisions(self, peers)
    }
}

impl Validate for JobDefinition {
    fn rules(&self, config: &Config) -> Vec<Violation> {
        super::definition(self, config)
    }

    fn collision_group(&self) -> Option<String> {
        let (kind, key) = super::collision_group(self);
        let kind = match kind {
            DefinitionType::Presubmit => "presubmit",
            DefinitionType::Postsubmit => "postsubmit",
            DefinitionType::Periodic => "periodic",
        };
        Some(format!("{kind}/{key}"))
    }

    fn collisions<'a>(&self, peers: impl IntoIterator<Item = &'a Self>) -> Vec<Violation> {
        super::definition_collisions(self, peers)
    }
}

impl Validate for TestCluster {
    fn rules(&self, _config: &Config) -> Vec<Violation> {
        super::testcluster(self)
    }

    fn delete_rules(&self) -> Vec<Violation> {
        super::testcluster_delete(self)
    }
}

impl Validate for TestClusterPool {
    fn rules(&self, _config: &Config) -> Vec<Violation> {
        super::testclusterpool(self)
    }
}

/// One object read from a manifest, for [`documents`]: its kind and its JSON form.
pub struct Document<'a> {
    /// `kind:` as written.
    pub kind: &'a str,
    /// The whole object.
    pub value: &'a serde_json::Value,
}

/// The kinds [`documents`] checks; objects of other kinds are not this project's to judge.
pub const KINDS: [&str; 5] = [
    "ProwJob",
    "Preset",
    "TestCluster",
    "TestClusterPool",
    "JobDefinition",
];

/// The offline validator's rules over many objects (a job repository's manifests): every
/// object of [`KINDS`] against its own rules and its peers among `documents`, as if each were
/// created with the others already stored. Returns the violations by the index of their object.
pub fn documents(documents: &[Document<'_>], config: &Config) -> Vec<(usize, Violation)> {
    let mut found = Vec::new();
    check_all::<ProwJob>("ProwJob", documents, config, &mut found);
    check_all::<Preset>("Preset", documents, config, &mut found);
    check_all::<TestCluster>("TestCluster", documents, config, &mut found);
    check_all::<TestClusterPool>("TestClusterPool", documents, config, &mut found);
    check_all::<JobDefinition>("JobDefinition", documents, config, &mut found);
    found.sort_by_key(|(i, _)| *i);
    found
}

fn check_all<K: Validate + serde::de::DeserializeOwned>(
    kind: &str,
    documents: &[Document<'_>],
    config: &Config,
    found: &mut Vec<(usize, Violation)>,
) {
    let mut read = Vec::new();
    for (i, doc) in documents.iter().enumerate().filter(|(_, d)| d.kind == kind) {
        match serde_json::from_value::<K>(doc.value.clone()) {
            Ok(object) => read.push((i, object)),
            Err(e) => found.push((i, malformed(e))),
        }
    }
    let peers = Peers::of(read.iter().map(|(_, o)| o));
    for (i, object) in &read {
        found.extend(peers.check(object, config).into_iter().map(|v| (*i, v)));
    }
}

/// The violation of an object that does not read as its kind.
pub fn malformed(e: serde_json::Error) -> Violation {
    Violation {
        field: "(object)".into(),
        message: format!("does not read as its kind: {e}"),
    }
}
