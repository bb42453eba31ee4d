use std::path::{Path, PathBuf};

use prow_api::Pull;

use super::*;

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository with `main` and three pulls: 1 adds a file, 2 edits the line main later
/// changed (a conflict), 3 adds another file.
fn origin(name: &str) -> (PathBuf, String) {
    let root = std::env::temp_dir().join(format!("clonerefs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    sh(
        &root,
        "git init -q -b main work && cd work
         echo base > README && git add README && git commit -qm base
         git checkout -qb p1 && echo one > one.txt && git add one.txt && git commit -qm one
         git checkout -q main && git checkout -qb p2 && echo theirs > README && git commit -qam two
         git checkout -q main && git checkout -qb p3 && echo three > three.txt && git add three.txt && git commit -qm three
         git checkout -q main && echo ours > README && git commit -qam later
         git init -q --bare ../origin.git
         git push -q ../origin.git main p1:refs/pull/1/head p2:refs/pull/2/head p3:refs/pull/3/head
         git -C ../origin.git symbolic-ref HEAD refs/heads/main",
    );
    let base = sh(&root.join("work"), "git rev-parse main");
    (root, base)
}

fn options(root: &Path) -> CloneRefsOptions {
    CloneRefsOptions {
        src_root: root.join("go").to_string_lossy().into_owned(),
        log: root.join("logs/clone.json").to_string_lossy().into_owned(),
        git_user_name: "ci-robot".into(),
        git_user_email: "ci-robot@k8s.io".into(),
        ..Default::default()
    }
}

fn refs(root: &Path, base_sha: &str, pulls: &[i64]) -> Refs {
    Refs {
        org: "acme".into(),
        repo: "widgets".into(),
        base_ref: "main".into(),
        base_sha: base_sha.into(),
        clone_uri: format!("file://{}", root.join("origin.git").display()),
        pulls: pulls
            .iter()
            .map(|n| Pull {
                number: *n,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn env() -> Vec<(String, String)> {
    vec![("GIT_TERMINAL_PROMPT".into(), "0".into())]
}

#[test]
fn pulls_merge_onto_the_base_into_the_same_commit_every_time() {
    let (root, base) = origin("merge");
    let r = refs(&root, &base, &[1, 3]);
    let first = clone(&r, &options(&root), "", &env());
    assert!(
        !first.failed,
        "{}",
        format_log(std::slice::from_ref(&first))
    );
    let dir = PathBuf::from(clone_path(&options(&root).src_root, &r));
    assert_eq!(dir, root.join("go/src/github.com/acme/widgets"));
    assert!(dir.join("one.txt").exists() && dir.join("three.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).unwrap(),
        "ours\n"
    );
    assert_eq!(sh(&dir, "git rev-parse --abbrev-ref HEAD"), "main");
    assert_eq!(sh(&dir, "git rev-list --merges --count HEAD"), "2");
    let commands: Vec<&str> = first.commands.iter().map(|c| c.command.as_str()).collect();
    assert!(
        commands.iter().any(|c| c.ends_with("pull/1/head")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("git merge --no-ff")),
        "{commands:?}"
    );

    std::fs::remove_dir_all(root.join("go")).unwrap();
    let second = clone(&r, &options(&root), "", &env());
    assert_eq!(
        first.final_sha, second.final_sha,
        "fixed dates: the same merge commits"
    );
    assert_eq!(first.final_sha.len(), 40);
}

#[test]
fn the_base_sha_is_checked_out_and_an_unknown_one_fails_with_its_command() {
    let (root, _) = origin("sha");
    let older = sh(&root.join("work"), "git rev-parse main~1");
    let ok = clone(&refs(&root, &older, &[]), &options(&root), "", &env());
    assert!(!ok.failed);
    assert_eq!(ok.final_sha, older);

    std::fs::remove_dir_all(root.join("go")).unwrap();
    let unknown = "0123456789012345678901234567890123456789";
    let bad = clone(&refs(&root, unknown, &[]), &options(&root), "", &env());
    assert!(bad.failed);
    let why = bad.failure().expect("failure");
    assert!(
        why.contains(unknown) && why.contains("acme/widgets"),
        "{why}"
    );
}

#[test]
fn a_pull_that_does_not_merge_fails_the_clone_and_says_so() {
    let (root, base) = origin("conflict");
    let record = clone(&refs(&root, &base, &[2]), &options(&root), "", &env());
    assert!(record.failed);
    let why = record.failure().expect("failure");
    assert!(why.contains("git merge --no-ff"), "{why}");
    assert!(why.to_lowercase().contains("conflict"), "{why}");
}

#[test]
fn an_unreachable_uri_fails_after_its_retries() {
    let (root, base) = origin("unreachable");
    let mut r = refs(&root, &base, &[]);
    r.clone_uri = format!("file://{}/nothing-here.git", root.display());
    let record = clone(&r, &options(&root), "", &env());
    assert!(record.failed);
    let fetches = record
        .commands
        .iter()
        .filter(|c| c.command.starts_with("git fetch"))
        .count();
    assert_eq!(fetches, 3, "one try and two retries");
    assert!(record.failure().unwrap().contains("nothing-here"));
}

#[test]
fn uris_come_from_clone_uri_then_the_link_then_github_and_carry_the_token() {
    let mut r = Refs {
        org: "acme".into(),
        repo: "w".into(),
        ..Default::default()
    };
    assert_eq!(repository_uri(&r, ""), "https://github.com/acme/w.git");
    assert_eq!(
        repository_uri(&r, "t0k"),
        "https://t0k:x-oauth-basic@github.com/acme/w.git"
    );
    r.repo_link = "https://git.example.org/acme/w".into();
    assert_eq!(repository_uri(&r, ""), "https://git.example.org/acme/w.git");
    r.clone_uri = "git@example.org:acme/w.git".into();
    assert_eq!(
        repository_uri(&r, "t0k"),
        "git@example.org:acme/w.git",
        "ssh: no token"
    );
    r.clone_uri = "http://172.17.0.1:9000/w.git".into();
    assert_eq!(
        repository_uri(&r, "t0k"),
        "http://t0k:x-oauth-basic@172.17.0.1:9000/w.git"
    );
}

#[test]
fn the_token_never_reaches_the_record() {
    let (root, base) = origin("token");
    let mut r = refs(&root, &base, &[]);
    r.clone_uri = String::new();
    r.repo_link = "http://127.0.0.1:9".into();
    let record = clone(&r, &options(&root), "sekrit-token", &env());
    assert!(record.failed);
    let text = serde_json::to_string(&record).unwrap();
    assert!(
        !text.contains("sekrit-token") && text.contains("CENSORED"),
        "{text}"
    );
}
