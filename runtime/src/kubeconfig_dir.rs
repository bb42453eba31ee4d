//! Upstream's `--kubeconfig-dir`, for migration: every kubeconfig file in the directory, each
//! context an alias.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use kube::config::Kubeconfig;

/// The aliases of the kubeconfig files in `dir` (files whose names start with `.` are skipped,
/// as mounted Secrets keep their data behind such links), each with its file's kubeconfig; a
/// context named twice, or a file that is not a kubeconfig, is an error naming it.
pub fn from_kubeconfig_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, Kubeconfig>> {
    let mut aliases: BTreeMap<String, (Kubeconfig, String)> = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading --kubeconfig-dir {dir:?}"))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    for file in files {
        let config = Kubeconfig::read_from(&file)
            .with_context(|| format!("{file:?} in --kubeconfig-dir is not a kubeconfig"))?;
        for context in &config.contexts {
            let shown = file.display().to_string();
            if let Some((_, first)) = aliases.get(&context.name) {
                anyhow::bail!(
                    "context {:?} is in both {first} and {shown}: each alias must be one context",
                    context.name
                );
            }
            aliases.insert(context.name.clone(), (config.clone(), shown));
        }
    }
    Ok(aliases.into_iter().map(|(a, (c, _))| (a, c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(contexts: &[&str]) -> String {
        let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user: {}\ncontexts:\n");
        for c in contexts {
            text.push_str(&format!(
                "- name: {c}\n  context:\n    cluster: c\n    user: u\n"
            ));
        }
        text
    }

    #[test]
    fn each_context_is_an_alias_and_a_repeat_is_refused() {
        let dir = std::env::temp_dir().join(format!("kubeconfig-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("a.yaml"), kubeconfig(&["default", "b1"])).expect("a");
        std::fs::write(dir.join("b.yaml"), kubeconfig(&["b2"])).expect("b");
        std::fs::write(dir.join(".hidden"), "not yaml: [").expect("hidden");
        let aliases = from_kubeconfig_dir(&dir).expect("read");
        assert_eq!(
            aliases.keys().collect::<Vec<_>>(),
            vec!["b1", "b2", "default"]
        );
        std::fs::write(dir.join("c.yaml"), kubeconfig(&["b1"])).expect("c");
        let err = from_kubeconfig_dir(&dir).expect_err("b1 twice").to_string();
        assert!(err.contains("\"b1\""), "{err}");
        std::fs::write(dir.join("c.yaml"), "kind: [").expect("c");
        let err = from_kubeconfig_dir(&dir).expect_err("not a kubeconfig");
        assert!(format!("{err:#}").contains("c.yaml"), "{err:#}");
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
