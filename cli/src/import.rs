//! `prowctl import`: an upstream Prow configuration (`config.yaml` and the job config files)
//! as Presets and JobDefinitions.
//!
//! Every job entry becomes one JobDefinition whose `spec` is the entry itself, with `type` and
//! `repo` added, and every preset one Preset (`labels` become `selector`). What upstream applies
//! to jobs when it loads them is applied here, so a run is the pod upstream would have run:
//! `decorate_all_jobs`, and `plank.default_decoration_configs` merged under a decorated job's
//! own `decoration_config` (every matching entry in order, the job's own fields winning).
//! Nothing is dropped silently: a field the kinds do not carry, a setting of `config.yaml` that
//! has no counterpart, and a definition the webhook would refuse are each one line of the
//! report.
//!
//! Everything here is pure: text in, objects and notes out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use prow_api::jobdefinition::{stable_hash, DefinitionType, JobDefinition, JobDefinitionSpec};
use prow_api::validate::{self, Peers};
use prow_api::{Preset, PresetSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// On every imported object: the upstream file it came from (as given to the import).
pub const SOURCE_ANNOTATION: &str = "prow-operator.dev/imported-from";

const API_VERSION: &str = "prow-operator.dev/v1alpha1";

/// One upstream file: its name in the report and in [`SOURCE_ANNOTATION`], where its objects
/// go under an output directory, and its text.
#[derive(Clone, Debug)]
pub struct Source {
    /// As shown to people (`jobs/acme/widgets.yaml`).
    pub name: String,
    /// Path of its objects' file, relative to the output directory.
    pub out: PathBuf,
    /// Its YAML.
    pub text: String,
}

/// Choices of the import.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Namespace of every object; `config.yaml`'s `prowjob_namespace` when not given, else
    /// none (the namespace `kubectl apply -n` names).
    pub namespace: Option<String>,
}

/// One thing the import did not carry, or that will not be admitted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The upstream file.
    pub file: String,
    /// What in it (`presubmits[acme/widgets][0] (pull-widgets-unit)`, `tide`).
    pub item: String,
    /// What happened to it.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.item, self.message)
    }
}

/// How many objects of each sort were made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Presets.
    pub presets: usize,
    /// Presubmit definitions.
    pub presubmits: usize,
    /// Postsubmit definitions.
    pub postsubmits: usize,
    /// Periodic definitions.
    pub periodics: usize,
}

/// What an import made.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// The objects of each output file, in the order of their sources.
    pub files: BTreeMap<PathBuf, Vec<Value>>,
    /// Everything not carried, and every rule an object breaks.
    pub notes: Vec<Note>,
    /// What was made.
    pub counts: Counts,
}

impl Imported {
    /// Every object, file by file.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.files.values().flatten()
    }
}

/// Imports `config` and the job config files `jobs`.
pub fn import(config: &Source, jobs: &[Source], options: &Options) -> Imported {
    let mut notes = Vec::new();
    let config_value = read(config, &mut notes);
    let defaults = Defaults::of(config, &config_value, &mut notes);
    let namespace = options.namespace.clone().or(defaults.namespace.clone());

    let mut pending = Vec::new();
    collect(
        config,
        &config_value,
        &defaults,
        true,
        &mut pending,
        &mut notes,
    );
    for file in jobs {
        let value = read(file, &mut notes);
        collect(file, &value, &defaults, false, &mut pending, &mut notes);
    }

    let names = object_names(&pending);
    let mut imported = Imported::default();
    let mut presets = Vec::new();
    let mut definitions = Vec::new();
    for (p, name) in pending.iter().zip(names) {
        let mut metadata = json!({
            "name": name,
            "annotations": {SOURCE_ANNOTATION: p.file},
        });
        if let Some(ns) = &namespace {
            metadata["namespace"] = json!(ns);
        }
        let (kind, spec) = match &p.what {
            What::Preset(spec) => ("Preset", spec),
            What::Definition { spec, .. } => ("JobDefinition", spec),
        };
        let object =
            json!({"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec});
        match &p.what {
            What::Preset(_) => {
                imported.counts.presets += 1;
                if let Ok(preset) = serde_json::from_value::<Preset>(object.clone()) {
                    presets.push((p, preset));
                }
            }
            What::Definition { kind, .. } => {
                match kind {
                    DefinitionType::Presubmit => imported.counts.presubmits += 1,
                    DefinitionType::Postsubmit => imported.counts.postsubmits += 1,
                    DefinitionType::Periodic => imported.counts.periodics += 1,
                }
                if let Ok(def) = serde_json::from_value::<JobDefinition>(object.clone()) {
                    definitions.push((p, def));
                }
            }
        }
        imported
            .files
            .entry(p.out.clone())
            .or_default()
            .push(object);
    }
    refusals(&presets, &definitions, &mut notes);
    imported.notes = notes;
    imported
}

/// An object about to be made.
struct Pending {
    file: String,
    out: PathBuf,
    item: String,
    /// What its name is made from.
    base: String,
    /// What sets it apart from others of the same base.
    salt: String,
    what: What,
}

enum What {
    Preset(Value),
    Definition { kind: DefinitionType, spec: Value },
}

fn read(source: &Source, notes: &mut Vec<Note>) -> Value {
    match serde_yaml::from_str::<Value>(&source.text) {
        Ok(Value::Null) => Value::Object(Map::new()),
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            notes.push(note(
                source,
                "(file)",
                "is not a map of settings: nothing read",
            ));
            Value::Object(Map::new())
        }
        Err(e) => {
            notes.push(note(
                source,
                "(file)",
                format!("is not valid YAML, nothing read: {e}"),
            ));
            Value::Object(Map::new())
        }
    }
}

fn note(source: &Source, item: impl Into<String>, message: impl Into<String>) -> Note {
    Note {
        file: source.name.clone(),
        item: item.into(),
        message: message.into(),
    }
}

/// What `config.yaml` says about every job.
#[derive(Default)]
struct Defaults {
    decorate_all: bool,
    /// `(repo, cluster, config)` in the order they apply; empty repo or cluster match all.
    decoration: Vec<(String, String, Value)>,
    namespace: Option<String>,
}

/// The sections of `config.yaml` that hold jobs and presets; [`collect`] reads them.
const JOB_SECTIONS: [&str; 4] = ["presets", "presubmits", "postsubmits", "periodics"];

impl Defaults {
    fn of(source: &Source, config: &Value, notes: &mut Vec<Note>) -> Self {
        let mut d = Defaults::default();
        let Some(map) = config.as_object() else {
            return d;
        };
        for (key, value) in map {
            match key.as_str() {
                k if JOB_SECTIONS.contains(&k) => {}
                "decorate_all_jobs" => d.decorate_all = value.as_bool() == Some(true),
                "prowjob_namespace" => {
                    d.namespace = value.as_str().map(str::to_string);
                    notes.push(note(
                        source,
                        key,
                        format!(
                            "{value}: the objects are made in this namespace (--namespace overrides it); their runs are made beside them"
                        ),
                    ));
                }
                "pod_namespace" => notes.push(note(
                    source,
                    key,
                    format!(
                        "{value}: not a job setting here: give the operator --pod-namespace (the chart's podNamespace) for the pods of jobs without a namespace"
                    ),
                )),
                "plank" => d.plank(source, value, notes),
                other => notes.push(note(
                    source,
                    other,
                    "not carried: a setting of a Prow component, not of jobs or presets",
                )),
            }
        }
        d
    }

    fn plank(&mut self, source: &Source, plank: &Value, notes: &mut Vec<Note>) {
        let Some(map) = plank.as_object() else {
            return;
        };
        for (key, value) in map {
            match (key.as_str(), value) {
                ("default_decoration_configs", Value::Array(entries)) => {
                    for (i, entry) in entries.iter().enumerate() {
                        let text = |k: &str| entry[k].as_str().unwrap_or_default().to_string();
                        match entry.get("config") {
                            Some(config @ Value::Object(_)) => self.decoration.push((
                                text("repo"),
                                text("cluster"),
                                config.clone(),
                            )),
                            _ => notes.push(note(
                                source,
                                format!("plank.default_decoration_configs[{i}]"),
                                "not carried: it has no config",
                            )),
                        }
                    }
                }
                // The older forms: one config for all, and a map from `*`, `org` or
                // `org/repo` to a config, the more specific applying later.
                ("default_decoration_config", config @ Value::Object(_)) => {
                    self.decoration
                        .push((String::new(), String::new(), config.clone()));
                }
                ("default_decoration_configs", Value::Object(by_repo)) => {
                    let mut keys: Vec<&String> = by_repo.keys().collect();
                    keys.sort_by_key(|k| (k.as_str() != "*", k.contains('/')));
                    for k in keys {
                        let repo = if k == "*" { String::new() } else { k.clone() };
                        self.decoration
                            .push((repo, String::new(), by_repo[k].clone()));
                    }
                }
                _ => notes.push(note(
                    source,
                    format!("plank.{key}"),
                    "not carried: the operator's flags and the chart's values set how jobs run",
                )),
            }
        }
    }

    /// The decoration defaults of a job of `repo` (`org/repo`, or empty) on `cluster`.
    fn decoration_for(&self, repo: &str, cluster: &str) -> Option<Value> {
        let org = repo.split('/').next().unwrap_or_default();
        let mut merged: Option<Value> = None;
        for (r, c, config) in &self.decoration {
            let repo_matches =
                r.is_empty() || r == "*" || r == repo || (r == org && !org.is_empty());
            let cluster_matches = c.is_empty() || c == "*" || c == cluster;
            if repo_matches && cluster_matches {
                merged = Some(match merged {
                    None => config.clone(),
                    Some(earlier) => merge_over(&earlier, config),
                });
            }
        }
        merged
    }
}

/// `over` merged onto `under`: maps field by field, everything else replaced.
fn merge_over(under: &Value, over: &Value) -> Value {
    match (under, over) {
        (Value::Object(u), Value::Object(o)) => {
            let mut merged = u.clone();
            for (k, v) in o {
                let value = match u.get(k) {
                    Some(earlier) => merge_over(earlier, v),
                    None => v.clone(),
                };
                merged.insert(k.clone(), value);
            }
            Value::Object(merged)
        }
        (_, Value::Null) => under.clone(),
        _ => over.clone(),
    }
}

/// Reads the presets and jobs of one file into `pending`.
fn collect(
    source: &Source,
    file: &Value,
    defaults: &Defaults,
    is_config: bool,
    pending: &mut Vec<Pending>,
    notes: &mut Vec<Note>,
) {
    let Some(map) = file.as_object() else {
        return;
    };
    // Presets first, then the jobs by type, then the rest (to be reported).
    let order = |k: &String| {
        JOB_SECTIONS
            .iter()
            .position(|s| s == k)
            .unwrap_or(JOB_SECTIONS.len())
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| order(k));
    for key in keys {
        let value = &map[key];
        match key.as_str() {
            "presets" => match value {
                Value::Array(entries) => {
                    for (i, entry) in entries.iter().enumerate() {
                        if let Some(p) = preset(source, i, entry, notes) {
                            pending.push(p);
                        }
                    }
                }
                Value::Null => {}
                _ => notes.push(note(source, key, "is not a list: nothing read")),
            },
            "presubmits" | "postsubmits" => {
                let kind = if key == "presubmits" {
                    DefinitionType::Presubmit
                } else {
                    DefinitionType::Postsubmit
                };
                let by_repo = match value {
                    Value::Object(m) => m.clone(),
                    Value::Null => Map::new(),
                    _ => {
                        notes.push(note(
                            source,
                            key,
                            "is not a map of repositories: nothing read",
                        ));
                        continue;
                    }
                };
                for (repo, jobs) in &by_repo {
                    for (i, job) in jobs.as_array().into_iter().flatten().enumerate() {
                        let item = format!("{key}[{repo}][{i}]");
                        if let Some(p) = definition(source, item, kind, repo, job, defaults, notes)
                        {
                            pending.push(p);
                        }
                    }
                }
            }
            "periodics" => {
                for (i, job) in value.as_array().into_iter().flatten().enumerate() {
                    let item = format!("periodics[{i}]");
                    let kind = DefinitionType::Periodic;
                    if let Some(p) = definition(source, item, kind, "", job, defaults, notes) {
                        pending.push(p);
                    }
                }
            }
            // config.yaml's other settings are read by `Defaults::of`.
            _ if is_config => {}
            other => notes.push(note(
                source,
                other,
                "not carried: job config files hold presets, presubmits, postsubmits and periodics",
            )),
        }
    }
}

fn preset(source: &Source, i: usize, entry: &Value, notes: &mut Vec<Note>) -> Option<Pending> {
    let item = format!("presets[{i}]");
    let Some(fields) = entry.as_object() else {
        notes.push(note(source, item, "is not a map: not imported"));
        return None;
    };
    // Upstream's `labels` is the selector; every other field has the same name.
    let mut spec = fields.clone();
    let labels = spec.remove("labels").unwrap_or(Value::Null);
    spec.insert("selector".into(), labels.clone());
    let spec = Value::Object(spec);
    let carried = carry::<PresetSpec>(source, &item, &spec, notes)?;
    let mut pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v.as_str() {
            Some("true") => k.clone(),
            Some(v) => format!("{k}-{v}"),
            None => k.clone(),
        })
        .collect();
    pairs.sort();
    let base = if pairs.is_empty() {
        "preset".to_string()
    } else {
        pairs.join("-")
    };
    Some(Pending {
        file: source.name.clone(),
        out: source.out.clone(),
        item,
        salt: labels.to_string(),
        base,
        what: What::Preset(carried),
    })
}

fn definition(
    source: &Source,
    item: String,
    kind: DefinitionType,
    repo: &str,
    job: &Value,
    defaults: &Defaults,
    notes: &mut Vec<Note>,
) -> Option<Pending> {
    let Some(fields) = job.as_object() else {
        notes.push(note(source, item, "is not a map: not imported"));
        return None;
    };
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let item = if name.is_empty() {
        item
    } else {
        format!("{item} ({name})")
    };
    let mut spec = fields.clone();
    spec.insert("type".into(), serde_json::to_value(kind).ok()?);
    if kind != DefinitionType::Periodic {
        spec.insert("repo".into(), json!(repo));
    }
    if defaults.decorate_all && !spec.contains_key("decorate") {
        spec.insert("decorate".into(), json!(true));
    }
    if spec.get("decorate") == Some(&json!(true)) {
        // Periodics match the defaults by their first extra ref, as upstream does.
        let matched = if kind == DefinitionType::Periodic {
            let first = &spec.get("extra_refs").unwrap_or(&Value::Null)[0];
            match (first["org"].as_str(), first["repo"].as_str()) {
                (Some(org), Some(r)) => format!("{org}/{r}"),
                _ => String::new(),
            }
        } else {
            repo.to_string()
        };
        let cluster = spec
            .get("cluster")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .unwrap_or("default")
            .to_string();
        if let Some(d) = defaults.decoration_for(&matched, &cluster) {
            let own = spec.remove("decoration_config").unwrap_or(Value::Null);
            spec.insert("decoration_config".into(), merge_over(&d, &own));
        }
    }
    let spec = Value::Object(spec);
    let mut carried = carry::<JobDefinitionSpec>(source, &item, &spec, notes)?;
    // Upstream's containers may go unnamed; the typed pod spec writes the name as "".
    for list in ["containers", "initContainers"] {
        let containers = carried
            .get_mut("spec")
            .and_then(|pod| pod.get_mut(list))
            .and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            if container["name"] == "" {
                container.as_object_mut().map(|c| c.remove("name"));
            }
        }
    }
    let branches = |k: &str| spec.get(k).cloned().unwrap_or(Value::Null);
    Some(Pending {
        file: source.name.clone(),
        out: source.out.clone(),
        salt: json!([
            kind,
            repo,
            name,
            branches("branches"),
            branches("skip_branches")
        ])
        .to_string(),
        base: name,
        item,
        what: What::Definition {
            kind,
            spec: carried,
        },
    })
}

/// `spec` read as `T` and written back; every field of `spec` that does not come back the
/// same is a note. `None` (and a note) when it does not read as `T` at all.
fn carry<T: DeserializeOwned + Serialize>(
    source: &Source,
    item: &str,
    spec: &Value,
    notes: &mut Vec<Note>,
) -> Option<Value> {
    let typed: T = match serde_json::from_value(spec.clone()) {
        Ok(t) => t,
        Err(e) => {
            notes.push(note(source, item, format!("not imported: {e}")));
            return None;
        }
    };
    let back = serde_json::to_value(&typed).ok()?;
    let mut lost = Vec::new();
    differences("", spec, Some(&back), &mut lost);
    for (path, why) in lost {
        let path = path.replacen("selector", "labels", 1);
        notes.push(note(source, item, format!("{path}: not carried: {why}")));
    }
    Some(back)
}

/// The fields of `before` that `after` lost or changed, with why.
fn differences(path: &str, before: &Value, after: Option<&Value>, out: &mut Vec<(String, String)>) {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (before, after) {
        (b, None) if is_empty(b) => {}
        (_, None) => out.push((path.to_string(), "the kind has no such field".into())),
        (Value::Object(b), Some(Value::Object(a))) => {
            for (k, v) in b {
                differences(&child(k), v, a.get(k), out);
            }
        }
        (Value::Array(b), Some(Value::Array(a))) if a.len() == b.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), bv, Some(av), out);
            }
        }
        (b, Some(a)) if b == a || (is_empty(b) && is_empty(a)) => {}
        // Quantities and int-or-strings written as numbers come back as strings.
        (Value::Number(n), Some(Value::String(s))) | (Value::String(s), Some(Value::Number(n)))
            if n.to_string() == *s => {}
        (_, Some(a)) => out.push((path.to_string(), format!("it reads as {a}"))),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Object names for `pending`: DNS labels from the job's name or the preset's labels; objects
/// whose names would collide get a hash of what sets them apart (repository, branches).
fn object_names(pending: &[Pending]) -> Vec<String> {
    let kind = |p: &Pending| matches!(p.what, What::Preset(_));
    let mut count: BTreeMap<(bool, String), usize> = BTreeMap::new();
    for p in pending {
        *count.entry((kind(p), dns_label(&p.base))).or_default() += 1;
    }
    let mut taken: BTreeSet<(bool, String)> = BTreeSet::new();
    pending
        .iter()
        .map(|p| {
            let base = dns_label(&p.base);
            let mut name = if count[&(kind(p), base.clone())] > 1 {
                with_suffix(&base, &hash6(&p.salt))
            } else {
                base.clone()
            };
            let mut n = 2;
            while !taken.insert((kind(p), name.clone())) {
                name = with_suffix(&base, &format!("{}-{n}", hash6(&p.salt)));
                n += 1;
            }
            name
        })
        .collect()
}

fn hash6(text: &str) -> String {
    format!("{:06x}", stable_hash(text.as_bytes()) & 0xff_ffff)
}

/// `name` as a DNS label of at most 63 characters (lower case; other characters as `-`).
/// A longer one is cut and ends with a hash of the whole.
pub fn dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let base = if trimmed.is_empty() { "job" } else { trimmed };
    if base.len() <= 63 {
        base.to_string()
    } else {
        let cut = &base[..63 - 7];
        format!("{}-{}", cut.trim_end_matches('-'), hash6(name))
    }
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let room = 63 - suffix.len() - 1;
    let cut = &base[..base.len().min(room)];
    format!("{}-{suffix}", cut.trim_end_matches('-'))
}

/// The webhook's rules over the imported objects: what it would refuse, as notes.
fn refusals(
    presets: &[(&Pending, Preset)],
    definitions: &[(&Pending, JobDefinition)],
    notes: &mut Vec<Note>,
) {
    let config = validate::Config { job_queues: None };
    let peers = Peers::of(presets.iter().map(|(_, p)| p));
    for (p, preset) in presets {
        refused(p, peers.check(preset, &config), notes);
    }
    let peers = Peers::of(definitions.iter().map(|(_, d)| d));
    for (p, def) in definitions {
        refused(p, peers.check(def, &config), notes);
    }
}

fn refused(p: &Pending, violations: Vec<validate::Violation>, notes: &mut Vec<Note>) {
    for v in violations {
        notes.push(Note {
            file: p.file.clone(),
            item: p.item.clone(),
            message: format!("the webhook will refuse it: {v}"),
        });
    }
}

/// Imported objects back in upstream's shape: `presets`, `presubmits` and `postsubmits` by
/// repository, `periodics`. Other objects are left out.
pub fn export<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut presets = Vec::new();
    let mut presubmits: Map<String, Value> = Map::new();
    let mut postsubmits: Map<String, Value> = Map::new();
    let mut periodics = Vec::new();
    for object in objects {
        let mut spec = object["spec"].as_object().cloned().unwrap_or_default();
        match object["kind"].as_str() {
            Some("Preset") => {
                let selector = spec.remove("selector").unwrap_or(Value::Null);
                spec.insert("labels".into(), selector);
                presets.push(Value::Object(spec));
            }
            Some("JobDefinition") => {
                let kind = spec.remove("type");
                let repo = spec
                    .remove("repo")
                    .and_then(|r| r.as_str().map(str::to_string))
                    .unwrap_or_default();
                let list = match kind.as_ref().and_then(Value::as_str) {
                    Some("presubmit") => &mut presubmits,
                    Some("postsubmit") => &mut postsubmits,
                    _ => {
                        periodics.push(Value::Object(spec));
                        continue;
                    }
                };
                if let Value::Array(jobs) = list.entry(repo).or_insert_with(|| json!([])) {
                    jobs.push(Value::Object(spec));
                }
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    for (key, value) in [
        ("presets", Value::Array(presets)),
        ("presubmits", Value::Object(presubmits)),
        ("postsubmits", Value::Object(postsubmits)),
        ("periodics", Value::Array(periodics)),
    ] {
        if !is_empty(&value) {
            out.insert(key.into(), value);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
