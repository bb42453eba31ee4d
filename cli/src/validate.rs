//! `prowctl validate PATH...` (and `prow-webhook validate PATH...`, the same): the admission
//! rules over YAML files, for a job repository's pre-merge CI. One line per violation:
//! `file: Kind/name: field: message`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use prow_api::jobdefinition::{DefinitionType, JobDefinition};
use prow_api::validate::{self, Violation};
use prow_api::{Preset, ProwJob, TestCluster};
use serde::Deserialize;

/// One object read from a file.
struct Found {
    file: PathBuf,
    kind: String,
    name: String,
    value: serde_json::Value,
}

/// Checks every object in `paths`; writes violations to `out`; returns whether there were none.
pub fn run(
    paths: &[PathBuf],
    job_queues: Option<BTreeSet<String>>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut objects = Vec::new();
    let mut problems: Vec<(PathBuf, String, Violation)> = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            match serde_json::Value::deserialize(document) {
                Ok(serde_json::Value::Null) => {}
                Ok(value) => {
                    let kind = value["kind"].as_str().unwrap_or_default().to_string();
                    let name = value["metadata"]["name"]
                        .as_str()
                        .unwrap_or("<unnamed>")
                        .to_string();
                    objects.push(Found {
                        file: file.clone(),
                        kind,
                        name,
                        value,
                    });
                }
                Err(e) => {
                    problems.push((
                        file.clone(),
                        format!("document {}", i + 1),
                        Violation {
                            field: "(document)".into(),
                            message: format!("is not valid YAML: {e}"),
                        },
                    ));
                    // The parser cannot resynchronise after an error; the rest of the file is lost.
                    break;
                }
            }
        }
    }

    let presets: Vec<Preset> = objects
        .iter()
        .filter(|o| o.kind == "Preset")
        .filter_map(|o| serde_json::from_value(o.value.clone()).ok())
        .collect();
    let definitions: Vec<JobDefinition> = objects
        .iter()
        .filter(|o| o.kind == "JobDefinition")
        .filter_map(|o| serde_json::from_value(o.value.clone()).ok())
        .collect();
    let groups = Groups::of(&definitions);
    let config = validate::Config { job_queues };
    for o in &objects {
        let violations = match o.kind.as_str() {
            "ProwJob" => match serde_json::from_value::<ProwJob>(o.value.clone()) {
                Ok(job) => validate::prowjob(&job, &config),
                Err(e) => vec![malformed(e)],
            },
            "Preset" => match serde_json::from_value::<Preset>(o.value.clone()) {
                Ok(p) => {
                    let mut v = validate::preset(&p);
                    v.extend(validate::preset_collisions(&p, &presets));
                    v
                }
                Err(e) => vec![malformed(e)],
            },
            "TestCluster" => match serde_json::from_value::<TestCluster>(o.value.clone()) {
                Ok(tc) => validate::testcluster(&tc),
                Err(e) => vec![malformed(e)],
            },
            "TestClusterPool" => match serde_json::from_value::<
                prow_api::testclusterpool::TestClusterPool,
            >(o.value.clone())
            {
                Ok(pool) => validate::testclusterpool(&pool),
                Err(e) => vec![malformed(e)],
            },
            "JobDefinition" => match serde_json::from_value::<JobDefinition>(o.value.clone()) {
                Ok(def) => {
                    let mut v = validate::definition(&def, &config);
                    v.extend(groups.collisions(&def));
                    v
                }
                Err(e) => vec![malformed(e)],
            },
            _ => Vec::new(), // other kinds are not ours to judge
        };
        for v in violations {
            problems.push((o.file.clone(), format!("{}/{}", o.kind, o.name), v));
        }
    }
    for (file, object, v) in &problems {
        writeln!(out, "{}: {object}: {v}", file.display())?;
    }
    let checked = objects
        .iter()
        .filter(|o| KINDS.contains(&o.kind.as_str()))
        .count();
    writeln!(
        out,
        "{checked} objects in {} files checked, {} violations",
        files.len(),
        problems.len()
    )?;
    Ok(problems.is_empty())
}

/// Definitions by namespace and [`validate::collision_group`]: the only others a definition
/// can collide with, so a check of many compares each with few.
pub struct Groups<'a>(HashMap<GroupKey<'a>, Vec<&'a JobDefinition>>);

type GroupKey<'a> = (Option<&'a str>, (DefinitionType, &'a str));

impl<'a> Groups<'a> {
    /// Groups `definitions`.
    pub fn of(definitions: impl IntoIterator<Item = &'a JobDefinition>) -> Self {
        let mut groups: HashMap<GroupKey<'a>, Vec<&'a JobDefinition>> = HashMap::new();
        for d in definitions {
            let key = (
                d.metadata.namespace.as_deref(),
                validate::collision_group(d),
            );
            groups.entry(key).or_default().push(d);
        }
        Self(groups)
    }

    /// The collisions of `def` with the grouped definitions.
    pub fn collisions(&self, def: &JobDefinition) -> Vec<Violation> {
        let key = (
            def.metadata.namespace.as_deref(),
            validate::collision_group(def),
        );
        let others = self.0.get(&key).into_iter().flatten().copied();
        validate::definition_collisions(def, others)
    }
}

/// The kinds checked: each has an arm in the match of [`run`].
const KINDS: [&str; 5] = [
    "ProwJob",
    "Preset",
    "TestCluster",
    "TestClusterPool",
    "JobDefinition",
];

fn malformed(e: serde_json::Error) -> Violation {
    Violation {
        field: "(object)".into(),
        message: format!("does not read as its kind: {e}"),
    }
}

/// The YAML files `path` names: the file itself, or a directory's `.yaml` and `.yml` files,
/// recursively, in name order.
pub fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                collect(&entry, files)?;
            }
        }
    } else {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
        files.push(path.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(files: &[(&str, &str)]) -> (bool, String) {
        let dir = std::env::temp_dir().join(format!(
            "prow-validate-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("nested")).expect("dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        let mut out = Vec::new();
        let clean = run(std::slice::from_ref(&dir), None, &mut out).expect("runs");
        let _ = std::fs::remove_dir_all(&dir);
        (
            clean,
            String::from_utf8(out)
                .expect("utf-8")
                .replace(&format!("{}/", dir.display()), ""),
        )
    }

    #[test]
    fn the_examples_are_clean_and_the_rejected_example_is_not() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let top: Vec<PathBuf> = std::fs::read_dir(&examples)
            .expect("examples")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file())
            .collect();
        let mut out = Vec::new();
        assert!(
            run(&top, None, &mut out).expect("runs"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let mut out = Vec::new();
        assert!(!run(&[examples.join("rejected")], None, &mut out).expect("runs"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("spec.max_concurrency") && text.contains("containers[1].name"),
            "{text}"
        );
    }

    #[test]
    fn violations_are_one_line_each_with_file_object_and_field() {
        let bad_job = "apiVersion: prow.k8s.io/v1\nkind: ProwJob\nmetadata: {name: broken}\nspec:\n  type: periodic\n  agent: kubernetes\n  job: bad name\n  max_concurrency: -1\n  pod_spec: {containers: [{image: x}]}\n";
        let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored}\n---\napiVersion: prow-operator.dev/v1alpha1\nkind: Preset\nmetadata: {name: empty}\nspec: {selector: {}}\n";
        let (clean, out) = check(&[
            ("nested/job.yaml", bad_job),
            ("presets.yml", other),
            ("notes.txt", "not yaml: ["),
        ]);
        assert!(!clean);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"nested/job.yaml: ProwJob/broken: spec.job: \"bad name\" is not a valid job name: use 1-63 letters, digits, '-', '.' or '_'"), "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("nested/job.yaml: ProwJob/broken: spec.max_concurrency:")),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("presets.yml: Preset/empty: spec.selector:")),
            "{out}"
        );
        assert_eq!(
            lines.last(),
            Some(&"2 objects in 2 files checked, 3 violations"),
            "{out}"
        );
    }

    #[test]
    fn broken_yaml_is_a_violation_not_a_crash() {
        let (clean, out) = check(&[("bad.yaml", "kind: [unclosed")]);
        assert!(!clean);
        assert!(
            out.contains("bad.yaml: document 1: (document): is not valid YAML"),
            "{out}"
        );
    }
}
