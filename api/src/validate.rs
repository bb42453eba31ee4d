//! Admission rules: upstream checkconfig's per-job rules and more, as pure functions over the
//! kinds. Each violation names the field path, what is wrong and how to fix it; all violations
//! of an object are reported together.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;

use crate::labels::{self, is_valid_label_value};
use crate::{ProwJob, ProwJobType, Refs};

mod definition;
mod kinds;
mod preset;
mod testcluster;

pub use definition::{branches_overlap, collision_group, definition, definition_collisions};
pub use kinds::{documents, malformed, Document, Peers, Validate, KINDS};
pub use preset::{preset, preset_collisions};
pub use testcluster::{testcluster, testcluster_delete, testclusterpool};

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.pod_spec.containers[1].name`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Most violations one denial lists; the rest are counted. A job with 100,000 duplicate env
/// entries was once denied with a 9.3 MB message, larger than the request; the first twenty
/// say what to fix, and the same rules run offline list all of them.
pub const MOST_EXPLAINED: usize = 20;

/// Joins violations into one denial message: the first [`MOST_EXPLAINED`], then how many more.
pub fn explain(violations: &[Violation]) -> String {
    let mut text = violations
        .iter()
        .take(MOST_EXPLAINED)
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > MOST_EXPLAINED {
        text.push_str(&format!(
            "; and {} more violations (run `prow-webhook validate` on the file to list all)",
            violations.len() - MOST_EXPLAINED
        ));
    }
    text
}

/// What the rules need from configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Job queues that exist; `None` when unknown (the rule is then skipped).
    pub job_queues: Option<BTreeSet<String>>,
}

pub(crate) struct Report(Vec<Violation>);

impl Report {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn done(self) -> Vec<Violation> {
        self.0
    }
}

/// Volume names the pod utilities (decoration) use.
pub const RESERVED_VOLUMES: [&str; 5] =
    ["code", "logs", "tools", "gcs-credentials", "s3-credentials"];
/// Container names the pod utilities use.
pub const RESERVED_CONTAINERS: [&str; 4] =
    ["clonerefs", "initupload", "place-entrypoint", "sidecar"];
/// Mount paths the pod utilities use.
pub const RESERVED_MOUNT_PATHS: [&str; 3] = ["/logs", "/home/prow/go", "/tools"];

/// Env names the job's downward API sets, by type (upstream's reserved list).
pub fn reserved_env(job_type: Option<ProwJobType>) -> Vec<&'static str> {
    let mut names = vec![
        "CI",
        "JOB_NAME",
        "JOB_SPEC",
        "JOB_TYPE",
        "PROW_JOB_ID",
        "BUILD_ID",
        "BUILD_NUMBER",
    ];
    if matches!(
        job_type,
        Some(ProwJobType::Postsubmit | ProwJobType::Batch | ProwJobType::Presubmit)
    ) {
        names.extend([
            "REPO_OWNER",
            "REPO_NAME",
            "SRC_BASE",
            "SRC_HOST",
            "PULL_BASE_REF",
            "PULL_BASE_SHA",
            "PULL_REFS",
        ]);
    }
    if job_type == Some(ProwJobType::Presubmit) {
        names.extend([
            "PULL_NUMBER",
            "PULL_PULL_SHA",
            "PULL_HEAD_REF",
            "PULL_TITLE",
        ]);
    }
    names
}

/// Whether `name` is a valid job name: `^[A-Za-z0-9-._]+$`, at most 63 characters.
pub fn is_valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Whether `name` is a DNS-1123 label (volume names, pools).
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `name` is a DNS-1123 subdomain (object names, label key prefixes): DNS labels
/// joined by dots, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Whether `name` is a valid environment variable name (Kubernetes' C identifier rule, relaxed
/// as the API server does: letters, digits, `_`, `-`, `.`; not starting with a digit).
pub fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Whether `key` is a valid label or annotation key: `[prefix/]name`, prefix a DNS subdomain.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_valid_label_value(name)
}

/// The rule for a new job's build cluster: `spec.cluster` must name one that exists (`known`:
/// the BuildClusters and the `--kubeconfig-dir` aliases; `default` always exists).
pub fn build_cluster(job: &ProwJob, known: &BTreeSet<String>) -> Vec<Violation> {
    let alias = crate::buildcluster::alias_of(job);
    if alias == crate::buildcluster::DEFAULT_ALIAS || known.contains(alias) {
        return Vec::new();
    }
    let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
    names.push(crate::buildcluster::DEFAULT_ALIAS);
    names.sort_unstable();
    names.dedup();
    vec![Violation {
        field: "spec.cluster".into(),
        message: format!(
            "build cluster {alias:?} does not exist: use one of [{}], or create its BuildCluster first",
            names.join(", ")
        ),
    }]
}

/// Every rule a new ProwJob must pass.
pub fn prowjob(job: &ProwJob, config: &Config) -> Vec<Violation> {
    let mut r = Report::new();
    let spec = &job.spec;

    if !is_valid_job_name(&spec.job) {
        r.add(
            "spec.job",
            format!(
                "{:?} is not a valid job name: use 1-63 letters, digits, '-', '.' or '_'",
                spec.job
            ),
        );
    }
    if spec.job_type.is_none() {
        r.add(
            "spec.type",
            "is required: set presubmit, postsubmit, periodic or batch",
        );
    }
    if spec.agent.is_none() {
        r.add("spec.agent", "is required: set kubernetes");
    }
    if spec.max_concurrency < 0 {
        r.add("spec.max_concurrency", "must be 0 (unlimited) or more");
    }
    if let (false, Some(queues)) = (spec.job_queue_name.is_empty(), config.job_queues.as_ref()) {
        if !queues.contains(&spec.job_queue_name) {
            let known: Vec<_> = queues.iter().map(String::as_str).collect();
            r.add(
                "spec.job_queue_name",
                format!(
                    "queue {:?} is not configured: use one of [{}] or configure it",
                    spec.job_queue_name,
                    known.join(", ")
                ),
            );
        }
    }
    refs_by_type(job, &mut r);
    metadata(job, &mut r);
    if let Some(rerun) = spec.rerun_auth_config.as_ref() {
        let anyone = rerun.get("allow_anyone").and_then(|v| v.as_bool()) == Some(true);
        let lists = [
            "github_users",
            "github_team_ids",
            "github_team_slugs",
            "github_orgs",
        ];
        let listed: Vec<_> = lists
            .iter()
            .filter(|k| {
                rerun
                    .get(**k)
                    .and_then(|v| v.as_array())
                    .is_some_and(|a| !a.is_empty())
            })
            .collect();
        if anyone && !listed.is_empty() {
            r.add(
                "spec.rerun_auth_config",
                format!(
                    "allow_anyone cannot be combined with {}: drop one of them",
                    listed
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if let Some(dc) = spec.decoration_config.as_ref() {
        let durations = [
            ("timeout", &dc.timeout),
            ("grace_period", &dc.grace_period),
            ("pod_pending_timeout", &dc.pod_pending_timeout),
            ("pod_running_timeout", &dc.pod_running_timeout),
            ("pod_unscheduled_timeout", &dc.pod_unscheduled_timeout),
        ];
        for (name, value) in durations {
            if let Some(Err(e)) = value.as_deref().map(crate::duration::parse_timeout) {
                r.add(format!("spec.decoration_config.{name}"), e);
            }
        }
        // The fields decoration reads (storage, images, secrets), named where they are wrong;
        // the durations were reported above.
        for e in crate::decorate::options::Decoration::problems(dc) {
            if !durations.iter().any(|(name, _)| *name == e.field) {
                r.add(format!("spec.decoration_config.{}", e.field), e.message);
            }
        }
    }
    match spec.pod_spec.as_ref() {
        Some(pod) => pod_spec(pod, spec.job_type, &mut r),
        None if spec.agent == Some(crate::ProwJobAgent::Kubernetes) => r.add(
            "spec.pod_spec",
            "is required for agent kubernetes: give the pod to run",
        ),
        None => {}
    }
    r.done()
}

/// The rules of an update: the spec of a job is fixed once it is created.
pub fn prowjob_update(old: &ProwJob, new: &ProwJob) -> Vec<Violation> {
    let mut r = Report::new();
    if old.spec != new.spec {
        r.add(
            "spec",
            "is immutable once the job is created: create a new ProwJob instead; state changes go \
             through the status subresource",
        );
    }
    r.done()
}

fn refs_by_type(job: &ProwJob, r: &mut Report) {
    let spec = &job.spec;
    match (spec.job_type, spec.refs.as_ref()) {
        (Some(ProwJobType::Presubmit | ProwJobType::Batch), None) => r.add(
            "spec.refs",
            "is required for this type: give org, repo, base_ref and pulls",
        ),
        (Some(ProwJobType::Postsubmit), None) => r.add(
            "spec.refs",
            "is required for a postsubmit: give org, repo and base_ref",
        ),
        (Some(ProwJobType::Periodic), Some(_)) => r.add(
            "spec.refs",
            "must be empty for a periodic: put repositories to check out in extra_refs",
        ),
        _ => {}
    }
    if let (Some(t), Some(refs)) = (spec.job_type, spec.refs.as_ref()) {
        if t != ProwJobType::Periodic && refs.base_ref.is_empty() {
            r.add(
                "spec.refs.base_ref",
                "is required: name the branch tested against",
            );
        }
        if matches!(t, ProwJobType::Presubmit | ProwJobType::Batch) {
            if refs.pulls.is_empty() {
                r.add(
                    "spec.refs.pulls",
                    "needs at least one pull request for this type",
                );
            }
            for (i, pull) in refs.pulls.iter().enumerate() {
                if pull.number <= 0 {
                    r.add(
                        format!("spec.refs.pulls[{i}].number"),
                        "must be a positive pull request number",
                    );
                }
                if pull.sha.as_deref().unwrap_or_default().is_empty() {
                    r.add(
                        format!("spec.refs.pulls[{i}].sha"),
                        "is required: give the head commit",
                    );
                }
            }
        }
    }
    let mut seen = HashSet::new();
    let all = spec
        .refs
        .as_deref()
        .into_iter()
        .map(|r| ("spec.refs".to_string(), r))
        .chain(
            spec.extra_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("spec.extra_refs[{i}]"), r)),
        );
    for (path, refs) in all {
        check_repo(&path, refs, r);
        if !seen.insert((refs.org.as_str(), refs.repo.as_str())) {
            r.add(
                path,
                format!(
                    "repository {}/{} is already checked out by the job: list each repository once",
                    refs.org, refs.repo
                ),
            );
        }
    }
}

fn check_repo(path: &str, refs: &Refs, r: &mut Report) {
    if refs.org.is_empty() {
        r.add(format!("{path}.org"), "is required");
    }
    if refs.repo.is_empty() {
        r.add(format!("{path}.repo"), "is required");
    }
}

fn metadata(job: &ProwJob, r: &mut Report) {
    let maps = [
        ("metadata.labels", job.metadata.labels.as_ref(), true),
        (
            "metadata.annotations",
            job.metadata.annotations.as_ref(),
            false,
        ),
    ];
    for (path, map, values_are_labels) in maps {
        for (key, value) in map.into_iter().flatten() {
            if !is_qualified_name(key) {
                r.add(
                    format!("{path}[{key}]"),
                    "is not a valid key: use [prefix/]name, name 1-63 alphanumerics, '-', '_', '.'",
                );
            }
            if values_are_labels && !is_valid_label_value(value) {
                r.add(format!("{path}[{key}]"), format!("{value:?} is not a valid label value: at most 63 alphanumerics, '-', '_', '.', alphanumeric at both ends"));
            }
        }
    }
    // Upstream tooling sets Prow's own labels; they are fine as long as they agree with the spec.
    let job_labels = job.metadata.labels.clone().unwrap_or_default();
    if let (Some(label), Some(t)) = (job_labels.get(labels::TYPE), job.spec.job_type) {
        let want = crate::pod::type_name(t);
        if label != want {
            r.add(
                format!("metadata.labels[{}]", labels::TYPE),
                format!(
                    "is {label:?} but spec.type is {want:?}: make them agree or drop the label"
                ),
            );
        }
    }
    if let Some(pool) = job_labels.get(labels::TEST_CLUSTER_POOL) {
        if !is_dns_label(pool) {
            r.add(
                format!("metadata.labels[{}]", labels::TEST_CLUSTER_POOL),
                format!(
                    "{pool:?} is not a valid pool name: 1-63 lower-case letters, digits and '-', as TestClusters' spec.pool"
                ),
            );
        }
    }
    // The operator's mark of a finished job: an unfinished job carrying it would be left out
    // of the short list a restarting operator reads first (its limits counted without it).
    if job_labels.get(labels::COMPLETED).map(String::as_str) == Some("true") && !job.is_complete() {
        r.add(
            format!("metadata.labels[{}]", labels::COMPLETED),
            "is set by the operator once the job is finished: drop it from an unfinished job",
        );
    }
    if let Some(label) = job_labels.get(labels::JOB) {
        if Some(label.as_str()) != labels::job_label_value(&job.spec.job).as_deref() {
            r.add(
                format!("metadata.labels[{}]", labels::JOB),
                format!(
                    "is {label:?} but spec.job is {:?}: make them agree or drop the label",
                    job.spec.job
                ),
            );
        }
    }
}

fn pod_spec(pod: &PodSpec, job_type: Option<ProwJobType>, r: &mut Report) {
    let base = "spec.pod_spec";
    if pod.containers.is_empty() {
        r.add(format!("{base}.containers"), "needs at least one container");
    }
    if pod.containers.len() > 1 {
        let mut names = HashSet::new();
        for (i, c) in pod.containers.iter().enumerate() {
            let path = format!("{base}.containers[{i}].name");
            if c.name.is_empty() {
                r.add(path, "is required when the pod has several containers");
            } else if RESERVED_CONTAINERS.contains(&c.name.as_str()) {
                r.add(
                    path,
                    format!(
                        "{:?} is reserved for the pod utilities: rename the container",
                        c.name
                    ),
                );
            } else if !names.insert(c.name.as_str()) {
                r.add(
                    path,
                    format!(
                        "{:?} is used by another container: names must be unique",
                        c.name
                    ),
                );
            }
            if c.command.as_ref().is_none_or(Vec::is_empty)
                && c.args.as_ref().is_none_or(Vec::is_empty)
            {
                r.add(
                    format!("{base}.containers[{i}]"),
                    "needs a command or args when the pod has several containers",
                );
            }
        }
    }
    for (i, c) in pod.init_containers.iter().flatten().enumerate() {
        if c.restart_policy.as_deref() != Some("Always") {
            r.add(
                format!("{base}.initContainers[{i}]"),
                "init containers are not allowed, except sidecars: set restartPolicy: Always or move it to containers",
            );
        }
    }

    let volumes: BTreeMap<&str, usize> = pod
        .volumes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        let path = format!("{base}.volumes[{i}].name");
        if RESERVED_VOLUMES.contains(&v.name.as_str()) {
            r.add(
                path,
                format!(
                    "{:?} is reserved for the pod utilities: rename the volume",
                    v.name
                ),
            );
        } else if !seen.insert(v.name.as_str()) {
            r.add(
                path,
                format!("{:?} is defined twice: volume names must be unique", v.name),
            );
        }
    }

    let reserved = reserved_env(job_type);
    let all = pod
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{base}.containers[{i}]"), c))
        .chain(
            pod.init_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| (format!("{base}.initContainers[{i}]"), c)),
        );
    for (path, c) in all {
        resources(&path, c, r);
        let mut env_names = HashSet::new();
        for (j, e) in c.env.iter().flatten().enumerate() {
            let field = format!("{path}.env[{j}].name");
            if reserved.contains(&e.name.as_str()) {
                r.add(
                    field,
                    format!(
                        "{:?} is set by Prow for this job type: use another name",
                        e.name
                    ),
                );
            } else if !env_names.insert(e.name.as_str()) {
                r.add(
                    field,
                    format!("{:?} is set twice in this container: keep one", e.name),
                );
            }
        }
        for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
            if !volumes.contains_key(m.name.as_str()) {
                r.add(
                    format!("{path}.volumeMounts[{j}].name"),
                    format!(
                        "{:?} is not a volume of the pod: add it to volumes or fix the name",
                        m.name
                    ),
                );
            }
            if RESERVED_MOUNT_PATHS.contains(&m.mount_path.trim_end_matches('/')) {
                r.add(
                    format!("{path}.volumeMounts[{j}].mountPath"),
                    format!(
                        "{:?} is used by the pod utilities: mount elsewhere",
                        m.mount_path
                    ),
                );
            }
        }
    }
}

/// Resource quantities read as the API server reads them, and no request above its limit.
fn resources(path: &str, c: &k8s_openapi::api::core::v1::Container, r: &mut Report) {
    use kube_quantity::ParsedQuantity;
    let Some(res) = c.resources.as_ref() else {
        return;
    };
    let mut parsed = |kind: &str,
                      map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        let mut out = BTreeMap::new();
        for (name, q) in map.into_iter().flatten() {
            match ParsedQuantity::try_from(q) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(_) => r.add(
                    format!("{path}.resources.{kind}[{name}]"),
                    format!("{:?} is not a quantity: use a number with an optional suffix such as 500m, 2, 512Mi or 1G", q.0),
                ),
            }
        }
        out
    };
    let limits = parsed("limits", res.limits.as_ref());
    let requests = parsed("requests", res.requests.as_ref());
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name) {
            if request > limit {
                r.add(
                    format!("{path}.resources.requests[{name}]"),
                    format!("{request} is more than the limit {limit}: request at most the limit"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
