//! clonerefs: clones every refs of the job as upstream does (init, fetch the base, check out
//! `base_sha` or the base branch's head, then fetch and merge each pull with fixed dates so the
//! merge commits are the same on every run, then submodules) and writes a record of every
//! command, its output and the resolved commit.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prow_api::decorate::clone_path;
use prow_api::decorate::options::{CloneRefsOptions, CLONEREFS_OPTIONS};
use prow_api::Refs;
use serde::{Deserialize, Serialize};

use crate::report::env_json;

/// One command run for a clone: upstream's `clone.Command`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Recorded {
    /// The command line (credentials removed).
    pub command: String,
    /// What it printed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// How long it took, in nanoseconds.
    #[serde(default)]
    pub duration: u64,
}

/// The record of one refs' clone: upstream's `clone.Record`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Record {
    /// What was cloned.
    pub refs: Refs,
    /// Every command, in order.
    #[serde(default)]
    pub commands: Vec<Recorded>,
    /// Whether the clone failed.
    #[serde(default)]
    pub failed: bool,
    /// The commit checked out at the end.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub final_sha: String,
    /// How long the clone took, in nanoseconds.
    #[serde(default)]
    pub duration: u64,
}

impl Record {
    /// The failing command and its message, for a job's description.
    pub fn failure(&self) -> Option<String> {
        let last = self.commands.iter().rev().find(|c| !c.error.is_empty())?;
        let output = last.output.trim();
        let tail: Vec<&str> = output.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "{}/{}: `{}` failed: {}",
            self.refs.org,
            self.refs.repo,
            last.command,
            if tail.is_empty() {
                last.error.clone()
            } else {
                tail.join(" | ")
            }
        ))
    }
}

/// The URL a refs is cloned from: `clone_uri`, else the repository link, else GitHub's; with
/// the token as upstream puts it in HTTPS URLs.
pub fn repository_uri(refs: &Refs, token: &str) -> String {
    let uri = if !refs.clone_uri.is_empty() {
        refs.clone_uri.clone()
    } else if !refs.repo_link.is_empty() {
        format!("{}.git", refs.repo_link)
    } else {
        format!("https://github.com/{}/{}.git", refs.org, refs.repo)
    };
    if token.is_empty() {
        return uri;
    }
    match uri.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => {
            format!("{scheme}://{token}:x-oauth-basic@{rest}")
        }
        _ => uri,
    }
}

/// Runs git commands for one clone and records them.
struct Cloner<'a> {
    dir: String,
    env: Vec<(String, String)>,
    record: Record,
    secret: &'a str,
}

impl Cloner<'_> {
    /// Runs `program args` in the clone's directory with `extra_env`; records it; Err on
    /// failure, after `retries` more tries with growing waits.
    fn run(
        &mut self,
        program: &str,
        args: &[&str],
        extra_env: &[(String, String)],
        retries: u32,
    ) -> Result<String, ()> {
        let mut line = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        if !self.secret.is_empty() {
            line = line.replace(self.secret, "CENSORED");
        }
        let mut wait = Duration::from_secs(1);
        for attempt in 0..=retries {
            let started = Instant::now();
            let dir = if Path::new(&self.dir).is_dir() {
                self.dir.as_str()
            } else {
                "/"
            };
            let result = Command::new(program)
                .args(args)
                .current_dir(dir)
                .envs(self.env.iter().chain(extra_env).map(|(k, v)| (k, v)))
                .output();
            let (output, error) = match result {
                Ok(out) => {
                    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&out.stderr));
                    let error = if out.status.success() {
                        String::new()
                    } else {
                        format!("{}", out.status)
                    };
                    (text, error)
                }
                Err(e) => (String::new(), format!("could not run {program}: {e}")),
            };
            let output = if self.secret.is_empty() {
                output
            } else {
                output.replace(self.secret, "CENSORED")
            };
            let failed = !error.is_empty();
            self.record.commands.push(Recorded {
                command: line.clone(),
                output: output.clone(),
                error,
                duration: started.elapsed().as_nanos() as u64,
            });
            if !failed {
                return Ok(output);
            }
            if attempt < retries {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
        Err(())
    }

    /// Creates the clone's directory (the image has no `mkdir`), recorded as the command.
    fn mkdir(&mut self, dir: &str) -> Result<(), ()> {
        let started = Instant::now();
        let result = std::fs::create_dir_all(dir);
        self.record.commands.push(Recorded {
            command: format!("mkdir -p {dir}"),
            error: result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            duration: started.elapsed().as_nanos() as u64,
            ..Default::default()
        });
        result.map_err(|_| ())
    }

    fn git(&mut self, args: &[&str]) -> Result<String, ()> {
        self.run("git", args, &[], 0)
    }
}

/// Clones `refs` under `options.src_root`.
pub fn clone(
    refs: &Refs,
    options: &CloneRefsOptions,
    token: &str,
    env: &[(String, String)],
) -> Record {
    let started = Instant::now();
    let mut c = Cloner {
        dir: clone_path(&options.src_root, refs),
        env: env.to_vec(),
        record: Record {
            refs: refs.clone(),
            ..Default::default()
        },
        secret: token,
    };
    let outcome = clone_steps(&mut c, refs, options, &repository_uri(refs, token));
    c.record.failed = outcome.is_err();
    if let Ok(sha) = outcome {
        c.record.final_sha = sha;
    }
    c.record.duration = started.elapsed().as_nanos() as u64;
    c.record
}

fn clone_steps(
    c: &mut Cloner,
    refs: &Refs,
    options: &CloneRefsOptions,
    uri: &str,
) -> Result<String, ()> {
    let dir = c.dir.clone();
    c.mkdir(&dir)?;
    c.git(&["init", "--quiet"])?;
    if !options.git_user_name.is_empty() {
        c.git(&["config", "user.name", &options.git_user_name])?;
    }
    if !options.git_user_email.is_empty() {
        c.git(&["config", "user.email", &options.git_user_email])?;
    }
    let depth = refs.clone_depth.to_string();
    let mut shallow: Vec<&str> = Vec::new();
    if refs.clone_depth > 0 {
        shallow.extend(["--depth", &depth]);
    }
    if refs.blobless_fetch == Some(true) {
        shallow.push("--filter=blob:none");
    }
    let fetch = |c: &mut Cloner, what: &[&str]| {
        let mut args = vec!["fetch"];
        args.extend(shallow.iter().copied());
        args.push(uri);
        args.extend(what);
        c.run("git", &args, &[], 2)
    };
    if !refs.skip_fetch_head {
        fetch(c, &["--tags", "--prune"])?;
    }
    let base_ref = if refs.base_ref.is_empty() {
        "HEAD"
    } else {
        refs.base_ref.as_str()
    };
    fetch(c, &[base_ref])?;
    let target = if refs.base_sha.is_empty() {
        "FETCH_HEAD"
    } else {
        refs.base_sha.as_str()
    };
    c.git(&["checkout", "--quiet", target])?;
    if !refs.base_ref.is_empty() {
        c.git(&["branch", "--force", &refs.base_ref, target])?;
        c.git(&["checkout", "--quiet", &refs.base_ref])?;
    }
    // Merge commits get the base's commit time plus one second per pull: the same merge
    // commit on every run of the same refs.
    let head_time: u64 = c
        .git(&["show", "-s", "--format=format:%ct", "HEAD"])?
        .trim()
        .parse()
        .unwrap_or(0);
    for (i, pull) in refs.pulls.iter().enumerate() {
        let pull_ref = if pull.git_ref.is_empty() {
            format!("pull/{}/head", pull.number)
        } else {
            pull.git_ref.clone()
        };
        fetch(c, &[&pull_ref])?;
        let what = pull
            .sha
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "FETCH_HEAD".into());
        let stamp = format!("{} +0000", head_time + i as u64 + 1);
        let dates = [
            ("GIT_AUTHOR_DATE".to_string(), stamp.clone()),
            ("GIT_COMMITTER_DATE".to_string(), stamp),
        ];
        if c.run("git", &["merge", "--no-ff", "--no-edit", &what], &dates, 0)
            .is_err()
        {
            let _ = c.git(&["merge", "--abort"]);
            return Err(());
        }
    }
    if !refs.skip_submodules && Path::new(&dir).join(".gitmodules").exists() {
        c.git(&["submodule", "update", "--init", "--recursive"])?;
    }
    Ok(c.git(&["rev-parse", "HEAD"])?.trim().to_string())
}

/// The environment git runs with: no prompts, a writable home, and SSH with the job's keys and
/// known hosts.
fn git_env(options: &CloneRefsOptions) -> anyhow::Result<Vec<(String, String)>> {
    let home = std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty() && h != "/")
        .unwrap_or_else(|| "/tmp".into());
    let mut env = vec![
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
        ("HOME".to_string(), home.clone()),
    ];
    if !options.key_files.is_empty() || !options.host_fingerprints.is_empty() {
        let mut ssh = String::from("ssh -o BatchMode=yes");
        if options.host_fingerprints.is_empty() {
            ssh.push_str(" -o StrictHostKeyChecking=accept-new");
        } else {
            let known = format!("{home}/.prow_known_hosts");
            std::fs::write(&known, options.host_fingerprints.join("\n") + "\n")
                .with_context(|| format!("writing {known}"))?;
            ssh.push_str(&format!(
                " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
            ));
        }
        for key in &options.key_files {
            let path = Path::new(key);
            let files: Vec<String> = if path.is_dir() {
                std::fs::read_dir(path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
                    .map(|e| e.path().to_string_lossy().into_owned())
                    .collect()
            } else {
                vec![key.clone()]
            };
            for file in files {
                ssh.push_str(&format!(" -i {file}"));
            }
        }
        env.push(("GIT_SSH_COMMAND".into(), ssh));
    }
    Ok(env)
}

/// The role: clones every refs, writes the record, exits 0 (initupload reports a failure)
/// unless the options say `fail`.
pub fn run() -> anyhow::Result<ExitCode> {
    let options: CloneRefsOptions = env_json(CLONEREFS_OPTIONS)?;
    let token = if options.oauth_token_file.is_empty() {
        String::new()
    } else {
        std::fs::read_to_string(&options.oauth_token_file)
            .with_context(|| format!("reading the token {}", options.oauth_token_file))?
            .trim()
            .to_string()
    };
    let env = git_env(&options)?;
    let records: Vec<Record> = options
        .git_refs
        .iter()
        .map(|refs| clone(refs, &options, &token, &env))
        .collect();
    let failed: Vec<String> = records.iter().filter_map(Record::failure).collect();
    if let Some(dir) = Path::new(&options.log).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&options.log, serde_json::to_vec_pretty(&records)?)
        .with_context(|| format!("writing {}", options.log))?;
    for record in &records {
        tracing::info!(repo = %format!("{}/{}", record.refs.org, record.refs.repo), sha = %record.final_sha, failed = record.failed, "cloned");
    }
    if !failed.is_empty() && options.fail {
        anyhow::bail!("clone failed: {}", failed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The clone record as people read it: each command, then its output.
pub fn format_log(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        for c in &record.commands {
            out.push_str(&format!("$ {}\n{}", c.command, c.output));
            if !c.output.is_empty() && !c.output.ends_with('\n') {
                out.push('\n');
            }
            if !c.error.is_empty() {
                out.push_str(&format!("# failed: {}\n", c.error));
            }
        }
        if !record.final_sha.is_empty() {
            out.push_str(&format!(
                "# {}/{} at {}\n",
                record.refs.org, record.refs.repo, record.final_sha
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
