//! prowctl: the command line of prow-operator for people and a job repository's CI.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory, Parser, Subcommand};
use prow_api::jobdefinition::DefinitionType;
use prow_runtime::manifests;
use prow_runtime::settings::{go_duration, JobQueue};
use prowctl::cluster;
use prowctl::import::{self, Options, Source};
use prowctl::remote::{Remote, Trigger};

const EXAMPLES: &str = "\
Examples:
  # Check a job repository before merge (exits 1 on any violation)
  prowctl validate config/

  # Move from an upstream Prow configuration
  prowctl import --config-path config.yaml --job-config-path jobs/ --output-dir prow-operator/

  # Run a definition now, and wait for the run's end
  prowctl trigger -n prow ci-widgets-nightly --wait

  # Follow a run's log while it runs; read it from its bucket after its pod is gone
  prowctl logs -n prow pull-widgets-unit-7f3a -f

  # Keep a test cluster for debugging for two hours, then give it back
  prowctl hold --server http://127.0.0.1:8082 --name alice --duration 2h
  prowctl release --server http://127.0.0.1:8082 c1

  # Completions for bash
  prowctl completions bash > /etc/bash_completion.d/prowctl";

/// prowctl: validate job repositories, import an upstream Prow configuration, run jobs by hand
/// and hold test clusters.
#[derive(Parser, Debug)]
#[command(name = "prowctl", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check ProwJob, Preset, TestCluster, TestClusterPool and JobDefinition YAML (files or
    /// directories) with the webhook's rules; one line per violation, exit 1 on any.
    #[command(after_help = "\
Examples:
  prowctl validate config/ examples/job.yaml
  prowctl validate --job-queue e2e --job-queue release=2 jobs/")]
    Validate {
        /// Job queues that exist (NAME or NAME=N); when given, a job naming another is refused.
        #[arg(long = "job-queue", value_delimiter = ',')]
        job_queues: Vec<JobQueue>,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },

    /// Turn an upstream Prow configuration into Presets and JobDefinitions. The YAML goes to
    /// stdout (or --output-dir); everything not carried, and why, goes to stderr.
    #[command(after_help = "\
Examples:
  prowctl import --config-path config.yaml --job-config-path jobs/ > prow-operator.yaml
  prowctl import --config-path config.yaml --job-config-path jobs/ --output-dir out/ --namespace prow
  prowctl import --config-path config.yaml --job-config-path jobs/ --strict | kubectl apply -f -")]
    Import(ImportArgs),

    /// Start a run of a JobDefinition now. Through the API server by default (the
    /// definition's run annotation); with --server, the manual-trigger request of the
    /// operator's HTTP API.
    #[command(after_help = "\
Examples:
  prowctl trigger -n prow ci-widgets-nightly
  prowctl trigger -n prow post-widgets-publish --base-ref release-1.2 --wait
  prowctl trigger --server http://127.0.0.1:8082 --type postsubmit --repo acme/widgets \\
    --base-ref main post-widgets-publish")]
    Trigger(TriggerArgs),

    /// Hold a test cluster for a person: the given one (which the caller leased with
    /// getvacant), or a vacant one of the API's pool.
    #[command(after_help = "\
Examples:
  prowctl hold --server http://127.0.0.1:8082 --name alice --duration 2h
  PROWCTL_SERVER=http://127.0.0.1:8082 prowctl hold c1 --name alice")]
    Hold {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The cluster; a vacant one of the pool when not given.
        cluster: Option<String>,
        /// Who holds it.
        #[arg(long)]
        name: String,
        /// How long (`2h`, `90m`); the pool's default hold when not given.
        #[arg(long)]
        duration: Option<String>,
    },

    /// End a hold of a test cluster.
    #[command(after_help = "\
Examples:
  prowctl release --server http://127.0.0.1:8082 c1")]
    Release {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The cluster.
        cluster: String,
    },

    /// Print a run's log: from its pod while it runs (-f follows it to the end), from its
    /// bucket once it ended or its pod is gone. Which one is said on stderr; stdout is the log.
    #[command(after_help = "\
Examples:
  prowctl logs -n prow pull-widgets-unit-7f3a
  prowctl logs -n prow pull-widgets-unit-7f3a -f
  prowctl logs -n prow --pod-namespace test-pods ci-widgets-nightly-1a2b")]
    Logs {
        #[command(flatten)]
        kube: KubeArgs,
        /// The run (the ProwJob's name).
        run: String,
        /// Follow the log while the job runs.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Namespace of the run's pod; the job's spec.namespace, else its own namespace.
        #[arg(long)]
        pod_namespace: Option<String>,
    },

    /// Print a shell's completions for prowctl.
    #[command(after_help = "\
Examples:
  prowctl completions bash > /etc/bash_completion.d/prowctl
  prowctl completions zsh > \"${fpath[1]}/_prowctl\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// Upstream's config.yaml (presets, plank's decoration defaults, jobs kept there).
    #[arg(long)]
    config_path: PathBuf,
    /// Upstream's job config: a file, or a directory whose YAML files are read recursively.
    #[arg(long)]
    job_config_path: Option<PathBuf>,
    /// Write one file per upstream file under this directory, at the same relative paths,
    /// instead of everything to stdout.
    #[arg(long, short = 'o')]
    output_dir: Option<PathBuf>,
    /// Namespace of the objects; config.yaml's prowjob_namespace when not given.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Exit 1 when anything was not carried or will be refused.
    #[arg(long)]
    strict: bool,
}

#[derive(Args, Debug)]
struct KubeArgs {
    /// Kubeconfig file; the usual rules (KUBECONFIG, ~/.kube/config, in-cluster) otherwise.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use.
    #[arg(long)]
    context: Option<String>,
    /// Namespace of the definition; the context's otherwise.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(Args, Debug)]
struct RemoteArgs {
    /// Base URL of the operator's cimaster-compatible API (the chart's testClusterApi).
    #[arg(long, env = "PROWCTL_SERVER")]
    server: String,
    /// Bearer token; the kubeconfig's token of the current user when not given.
    #[arg(long, env = "PROWCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Call without a token (served only by an API started with --compat-allow-anonymous).
    #[arg(long, conflicts_with = "token")]
    anonymous: bool,
}

#[derive(Args, Debug)]
struct TriggerArgs {
    #[command(flatten)]
    kube: KubeArgs,
    /// The JobDefinition's name (with --server: the job's name).
    name: String,
    /// Branch a postsubmit's run tests (its one literal `branches` entry when not given).
    #[arg(long)]
    base_ref: Option<String>,
    /// Wait for the run to end; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// How long to wait for the run to start, and with --wait to end (Go duration).
    #[arg(long, default_value = "2m", value_parser = go_duration)]
    timeout: Duration,
    /// Use the operator's HTTP API at this URL instead of the API server.
    #[arg(long, env = "PROWCTL_SERVER")]
    server: Option<String>,
    /// With --server: bearer token; the kubeconfig's token when not given.
    #[arg(
        long,
        env = "PROWCTL_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
    /// With --server: the job's type.
    #[arg(
        long = "type",
        value_enum,
        default_value = "periodic",
        requires = "server"
    )]
    kind: Kind,
    /// With --server: the job's repository (org/repo), for presubmits and postsubmits.
    #[arg(long, requires = "server")]
    repo: Option<String>,
    /// With --server: who asks, recorded beside the authenticated caller.
    #[arg(long, requires = "server")]
    user: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Kind {
    Presubmit,
    Postsubmit,
    Periodic,
}

impl From<Kind> for DefinitionType {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Presubmit => Self::Presubmit,
            Kind::Postsubmit => Self::Postsubmit,
            Kind::Periodic => Self::Periodic,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prowctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { job_queues, paths } => {
            let queues: Option<BTreeSet<String>> =
                (!job_queues.is_empty()).then(|| job_queues.into_iter().map(|q| q.name).collect());
            let clean = manifests::validate(&paths, queues, &mut std::io::stdout())?;
            Ok(exit(clean))
        }
        Command::Import(args) => import_files(&args),
        Command::Trigger(args) => {
            if let Some(server) = args.server.clone() {
                let remote = Remote {
                    server,
                    token: token_or_kubeconfig(args.token.clone(), &args.kube)?,
                };
                let run = remote.trigger(&Trigger {
                    job: args.name.clone(),
                    kind: args.kind.into(),
                    repo: args.repo.clone(),
                    base_ref: args.base_ref.clone(),
                    user: args.user.clone(),
                })?;
                println!("{run}");
                Ok(ExitCode::SUCCESS)
            } else {
                runtime()?
                    .block_on(cluster::trigger(
                        &cluster::Target {
                            kubeconfig: args.kube.kubeconfig.clone(),
                            context: args.kube.context.clone(),
                            namespace: args.kube.namespace.clone(),
                        },
                        &args.name,
                        args.base_ref.as_deref(),
                        args.wait,
                        args.timeout,
                    ))
                    .map(exit)
            }
        }
        Command::Hold {
            remote,
            cluster,
            name,
            duration,
        } => {
            let remote = remote.resolve()?;
            let (cluster, leased_here) = match cluster {
                Some(c) => (c, false),
                None => {
                    let build = format!("prowctl-{name}");
                    let params = [("build", build.as_str()), ("job", "prowctl-hold")];
                    (remote.call("getvacant", &params)?, true)
                }
            };
            let mut params = vec![("cluster", cluster.as_str()), ("name", name.as_str())];
            if let Some(d) = &duration {
                params.push(("duration", d.as_str()));
            }
            match remote.call("holdcluster", &params) {
                Ok(answer) => {
                    println!("{answer}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(refused) => {
                    // The lease taken for this hold goes back at once, not at its expiry.
                    if leased_here {
                        let _ = remote.call("finishtest", &[("cluster", cluster.as_str())]);
                    }
                    Err(refused)
                }
            }
        }
        Command::Release { remote, cluster } => {
            let remote = remote.resolve()?;
            println!(
                "{}",
                remote.call("releasecluster", &[("cluster", &cluster)])?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            kube,
            run,
            follow,
            pod_namespace,
        } => {
            let target = cluster::Target {
                kubeconfig: kube.kubeconfig,
                context: kube.context,
                namespace: kube.namespace,
            };
            let mut out = std::io::stdout();
            let source = runtime()?.block_on(prowctl::logs::logs(
                &target,
                &run,
                pod_namespace.as_deref(),
                follow,
                &mut out,
            ))?;
            out.flush()?;
            match source {
                prowctl::logs::Source::Pod(pod) => eprintln!("prowctl: log from pod {pod}"),
                prowctl::logs::Source::Storage(url) => eprintln!("prowctl: log from storage {url}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "prowctl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    prow_runtime::process::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

impl RemoteArgs {
    fn resolve(self) -> anyhow::Result<Remote> {
        let token = match (self.anonymous, self.token) {
            (true, _) => None,
            (false, Some(token)) => Some(token),
            (false, None) => cluster::kubeconfig_token(None, None)?,
        };
        Ok(Remote {
            server: self.server,
            token,
        })
    }
}

/// `token`, else the kubeconfig's token of the context's user, else none.
fn token_or_kubeconfig(token: Option<String>, kube: &KubeArgs) -> anyhow::Result<Option<String>> {
    if token.is_some() {
        return Ok(token);
    }
    cluster::kubeconfig_token(kube.kubeconfig.as_deref(), kube.context.as_deref())
}

fn import_files(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let config = source(&args.config_path, Path::new(file_name(&args.config_path)))?;
    let mut jobs = Vec::new();
    if let Some(root) = &args.job_config_path {
        let label = Path::new(file_name(root));
        let skip = args.config_path.canonicalize().ok();
        let mut files = Vec::new();
        manifests::collect(root, &mut files)?;
        for file in files {
            if file.canonicalize().ok() == skip {
                continue;
            }
            let rel = file.strip_prefix(root).unwrap_or(&file);
            let shown = if rel.as_os_str().is_empty() {
                label.to_path_buf()
            } else {
                label.join(rel)
            };
            jobs.push(source(&file, &shown)?);
        }
    }
    let imported = import::import(
        &config,
        &jobs,
        &Options {
            namespace: args.namespace.clone(),
        },
    );

    match &args.output_dir {
        None => {
            let mut out = std::io::stdout().lock();
            for (i, object) in imported.objects().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", serde_yaml::to_string(object)?)?;
            }
        }
        Some(dir) => {
            for (rel, objects) in &imported.files {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let mut text = format!("# Imported from {} by prowctl import.\n", rel.display());
                for object in objects {
                    text.push_str("---\n");
                    text.push_str(&serde_yaml::to_string(object)?);
                }
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    let mut err = std::io::stderr().lock();
    for note in &imported.notes {
        writeln!(err, "{note}")?;
    }
    let c = &imported.counts;
    writeln!(
        err,
        "imported {} presets and {} job definitions ({} presubmits, {} postsubmits, {} periodics) from {} files; {} notes",
        c.presets,
        c.presubmits + c.postsubmits + c.periodics,
        c.presubmits,
        c.postsubmits,
        c.periodics,
        jobs.len() + 1,
        imported.notes.len()
    )?;
    Ok(exit(!args.strict || imported.notes.is_empty()))
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config")
}

fn source(path: &Path, shown: &Path) -> anyhow::Result<Source> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Source {
        name: shown.display().to_string(),
        out: shown.to_path_buf(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_are_consistent_and_every_help_shows_examples() {
        Cli::command().debug_assert();
        let mut cli = Cli::command();
        assert!(cli.render_long_help().to_string().contains("Examples:"));
        for sub in [
            "validate",
            "import",
            "trigger",
            "hold",
            "release",
            "completions",
        ] {
            let help = cli
                .find_subcommand_mut(sub)
                .expect(sub)
                .render_long_help()
                .to_string();
            assert!(help.contains(&format!("prowctl {sub}")), "{sub}: {help}");
        }
        // The import keeps upstream checkconfig's flag names.
        let import = cli.find_subcommand_mut("import").expect("import");
        let flags: Vec<String> = import
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for flag in ["config-path", "job-config-path", "output-dir"] {
            assert!(flags.contains(&flag.to_string()), "{flags:?}");
        }
    }

    #[test]
    fn completions_name_every_subcommand() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "prowctl",
            &mut out,
        );
        let script = String::from_utf8(out).expect("utf-8");
        for sub in ["validate", "import", "trigger", "hold", "release"] {
            assert!(script.contains(sub), "{sub}");
        }
    }

    #[test]
    fn a_trigger_over_http_needs_the_server_for_its_http_flags() {
        let refused = Cli::try_parse_from(["prowctl", "trigger", "job", "--repo", "a/b"]);
        assert!(refused.is_err(), "--repo without --server");
        let parsed = Cli::try_parse_from([
            "prowctl",
            "trigger",
            "--server",
            "http://127.0.0.1:1",
            "--type",
            "postsubmit",
            "--repo",
            "a/b",
            "job",
        ])
        .expect("parses");
        assert!(matches!(parsed.command, Command::Trigger(_)));
    }
}
