//! The offline validator's file side, shared by `prowctl validate` and `prow-webhook validate`:
//! YAML manifests read from files and directories, checked with the admission rules
//! (`prow_api::validate::documents`), one line per violation: `file: Kind/name: field: message`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use prow_api::validate::{self, Document, Violation};
use serde::Deserialize;

/// One object read from a file.
struct Found {
    file: usize,
    name: String,
    value: serde_json::Value,
}

/// Checks every object in `paths`; writes violations to `out`; returns whether there were none.
pub fn validate(
    paths: &[PathBuf],
    job_queues: Option<BTreeSet<String>>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut objects = Vec::new();
    let mut problems: Vec<(usize, String, Violation)> = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            match serde_json::Value::deserialize(document) {
                Ok(serde_json::Value::Null) => {}
                Ok(value) => {
                    let name = value["metadata"]["name"]
                        .as_str()
                        .unwrap_or("<unnamed>")
                        .to_string();
                    objects.push(Found {
                        file: f,
                        name,
                        value,
                    });
                }
                Err(e) => {
                    problems.push((
                        f,
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
    let documents: Vec<Document<'_>> = objects
        .iter()
        .map(|o| Document {
            kind: o.value["kind"].as_str().unwrap_or_default(),
            value: &o.value,
        })
        .collect();
    let config = validate::Config { job_queues };
    for (i, v) in validate::documents(&documents, &config) {
        let object = format!("{}/{}", documents[i].kind, objects[i].name);
        problems.push((objects[i].file, object, v));
    }
    problems.sort_by_key(|(file, _, _)| *file);
    for (file, object, v) in &problems {
        writeln!(out, "{}: {object}: {v}", files[*file].display())?;
    }
    let checked = documents
        .iter()
        .filter(|d| validate::KINDS.contains(&d.kind))
        .count();
    writeln!(
        out,
        "{checked} objects in {} files checked, {} violations",
        files.len(),
        problems.len()
    )?;
    Ok(problems.is_empty())
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
        let clean = validate(std::slice::from_ref(&dir), None, &mut out).expect("runs");
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
            validate(&top, None, &mut out).expect("runs"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let mut out = Vec::new();
        assert!(!validate(&[examples.join("rejected")], None, &mut out).expect("runs"));
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
