//! The operator's configuration: one typed struct with defaults, filled from flags or the
//! environment (every flag has a `PROW_OPERATOR_*` variable), printed at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::Parser;
use prow_api::concurrency::Limits;
use prow_api::lifecycle::{Policy, Timeouts};
use prow_api::retention::Retention;
use serde::Serialize;

use prow_runtime::settings::{go_duration, JobQueue, DEFAULT_POD_NAMESPACE, DEFAULT_UTILITY_IMAGE};
use prow_runtime::telemetry::LogFormat;

/// prow-operator: runs ProwJobs as pods, garbage-collects old jobs and pods, keeps Presets'
/// status.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "prow-operator", version, about)]
pub struct OperatorConfig {
    /// Address of the health and metrics server (/healthz, /readyz, /metrics).
    #[arg(long, env = "PROW_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Kubeconfig file; empty means the usual rules (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "PROW_OPERATOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace whose ProwJobs and Presets are watched; empty watches all. When set, the
    /// operator works in this namespace and --pod-namespace only (its pods, TestClusters and
    /// their kubeconfig Secrets live there), and errors a job whose pod would go elsewhere.
    #[arg(long, env = "PROW_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Namespace a job's pod goes to when its `spec.namespace` is empty.
    #[arg(long, env = "PROW_OPERATOR_POD_NAMESPACE", default_value = DEFAULT_POD_NAMESPACE)]
    pub pod_namespace: String,

    /// Longest a scheduled pod may stay pending (Go duration); jobs may override it.
    #[arg(long, env = "PROW_OPERATOR_POD_PENDING_TIMEOUT", default_value = "10m", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub pod_pending_timeout: Duration,

    /// Longest a pod may wait for a node (Go duration); jobs may override it.
    #[arg(long, env = "PROW_OPERATOR_POD_UNSCHEDULED_TIMEOUT", default_value = "5m", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub pod_unscheduled_timeout: Duration,

    /// Longest a pod may run (Go duration); jobs may override it.
    #[arg(long, env = "PROW_OPERATOR_POD_RUNNING_TIMEOUT", default_value = "48h", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub pod_running_timeout: Duration,

    /// How often a lost (evicted, node lost, unknown) pod is recreated before the job errors.
    #[arg(long, env = "PROW_OPERATOR_MAX_REVIVALS", default_value_t = 3)]
    pub max_revivals: i64,

    /// Most jobs pending at once across all job names; 0 is unlimited.
    #[arg(long, env = "PROW_OPERATOR_MAX_CONCURRENCY", default_value_t = 0)]
    pub max_concurrency: i64,

    /// A job queue and its capacity, NAME=N (0 blocks, negative is unlimited; NAME alone has no
    /// limit); repeatable, or comma-separated in the environment variable. The webhook takes
    /// the same list.
    #[arg(
        long = "job-queue",
        env = "PROW_OPERATOR_JOB_QUEUES",
        value_delimiter = ','
    )]
    pub job_queues: Vec<JobQueue>,

    /// Grace period, in seconds, of the pod deletions the operator makes (timeouts, aborts,
    /// revivals); unset keeps each pod's own terminationGracePeriodSeconds.
    #[arg(long, env = "PROW_OPERATOR_POD_DELETION_GRACE_SECONDS")]
    pub pod_deletion_grace_seconds: Option<i64>,

    /// Page size of the initial lists of jobs and pods; 0 reads each from the API server's watch
    /// cache in one response. Pages come from etcd instead, for a slower start (10,000 stored
    /// jobs: 1.3 s unpaged, 3.9 s in pages of 500). Either way each list is read as it arrives.
    #[arg(long, env = "PROW_OPERATOR_LIST_PAGE_SIZE", default_value_t = 0)]
    pub list_page_size: u32,

    /// Most reconciles in flight at once (0 is unlimited): enough for hundreds of job starts a
    /// second, and a cap on memory when thousands of jobs are listed at start-up.
    #[arg(
        long,
        env = "PROW_OPERATOR_RECONCILE_CONCURRENCY",
        default_value_t = 64
    )]
    pub reconcile_concurrency: u16,

    /// How often finished jobs and pods are garbage-collected (Go duration).
    #[arg(long, env = "PROW_OPERATOR_SWEEP_INTERVAL", default_value = "1h", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub sweep_interval: Duration,

    /// Completed jobs that started longer ago are deleted, except each periodic's newest run.
    #[arg(long, env = "PROW_OPERATOR_MAX_PROWJOB_AGE", default_value = "168h", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub max_prowjob_age: Duration,

    /// Pods of completed jobs created longer ago are deleted.
    #[arg(long, env = "PROW_OPERATOR_MAX_POD_AGE", default_value = "24h", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub max_pod_age: Duration,

    /// Pods of jobs that completed longer ago are deleted; defaults to --max-pod-age.
    #[arg(long, env = "PROW_OPERATOR_TERMINATED_POD_TTL", value_parser = go_duration)]
    #[serde(serialize_with = "opt_secs")]
    pub terminated_pod_ttl: Option<Duration>,

    /// Pods whose job does not exist are deleted once this old.
    #[arg(long, env = "PROW_OPERATOR_ORPHAN_POD_GRACE", default_value = "30s", value_parser = go_duration)]
    #[serde(serialize_with = "as_secs")]
    pub orphan_pod_grace: Duration,

    /// Elect one leader among replicas with a coordination.k8s.io Lease; only it reconciles.
    #[arg(long, env = "PROW_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "PROW_OPERATOR_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "PROW_OPERATOR_LEADER_ELECTION_NAME",
        default_value = "prow-operator"
    )]
    pub leader_election_name: String,

    /// Identity in the leader election; default: the pod's name (`POD_NAME`), so a restarted
    /// container takes its Lease back at once, else HOST-PID.
    #[arg(long, env = "PROW_OPERATOR_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// Address of the cimaster-compatible HTTP API (`/getvacant`, `/finishtest`, ...); off when
    /// not given. Served by the leader.
    #[arg(long, env = "PROW_OPERATOR_COMPAT_LISTEN")]
    pub compat_listen: Option<SocketAddr>,

    /// Namespace of the TestClusters the cimaster-compatible API serves; defaults to
    /// --pod-namespace, where jobs' pools are.
    #[arg(long, env = "PROW_OPERATOR_COMPAT_NAMESPACE")]
    pub compat_namespace: Option<String>,

    /// Pool the cimaster-compatible API leases from (`getvacant`) and adds clusters to
    /// (`addcluster`); cimaster had one pool.
    #[arg(long, env = "PROW_OPERATOR_COMPAT_POOL", default_value = "default")]
    pub compat_pool: String,

    /// Let callers without a bearer token use the cimaster-compatible API, with no
    /// authorization check: only behind a NetworkPolicy that admits the e2e pods alone.
    #[arg(
        long,
        env = "PROW_OPERATOR_COMPAT_ALLOW_ANONYMOUS",
        default_value_t = false
    )]
    pub compat_allow_anonymous: bool,

    /// Endpoints object (in --leader-election-namespace) the leader points at its own address
    /// while it serves the cimaster-compatible API, for a Service without a selector: standbys
    /// stay Ready without drawing that Service's calls. Needs --pod-ip.
    #[arg(long, env = "PROW_OPERATOR_COMPAT_ENDPOINTS", requires = "pod_ip")]
    pub compat_endpoints: Option<String>,

    /// This pod's address (`status.podIP` from the downward API), published by
    /// --compat-endpoints.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<String>,

    /// Image of the pod utilities (clonerefs, initupload, entrypoint, sidecar) for decorated
    /// jobs whose `decoration_config.utility_images` leave one out.
    #[arg(long, env = "PROW_OPERATOR_UTILITY_IMAGE", default_value = DEFAULT_UTILITY_IMAGE)]
    pub utility_image: String,

    /// Go template of a run's `status.url`, evaluated on the job as upstream's plank evaluates
    /// its `job_url_template` (`.Spec.Job`, `.Spec.Type`, `.Spec.Refs.Org`, `.Status.BuildID`,
    /// ...); empty leaves `status.url` unset.
    #[arg(long, env = "PROW_OPERATOR_JOB_URL_TEMPLATE", default_value = "", value_parser = url_template)]
    pub job_url_template: String,

    /// Namespace of the BuildClusters (and their kubeconfig Secrets) the operator runs job pods
    /// in; defaults to its own namespace (`POD_NAMESPACE`), else --leader-election-namespace.
    #[arg(long, env = "PROW_OPERATOR_BUILD_CLUSTER_NAMESPACE")]
    pub build_cluster_namespace: Option<String>,

    /// Directory of kubeconfig files, each context a build cluster alias (upstream's
    /// `--kubeconfig-dir`, for migration); BuildClusters are the declared way.
    #[arg(long, env = "PROW_OPERATOR_KUBECONFIG_DIR")]
    pub kubeconfig_dir: Option<PathBuf>,

    /// Log line format.
    #[arg(long, env = "PROW_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A template that renders on an empty job (so a typo stops the start, not every job).
fn url_template(text: &str) -> Result<String, String> {
    prow_api::job_url::job_url(text, &prow_api::ProwJob::default())?;
    Ok(text.to_string())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_secs(d, s),
        None => s.serialize_none(),
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

impl OperatorConfig {
    /// The namespace of the BuildClusters: the flag, else the operator's own (`POD_NAMESPACE`),
    /// else the leader election's.
    pub fn build_cluster_namespace(&self) -> String {
        prow_runtime::process::flag_or_own_namespace(self.build_cluster_namespace.as_deref())
            .unwrap_or_else(|| self.leader_election_namespace.clone())
    }

    /// The retention (garbage collection) settings.
    pub fn retention(&self) -> Retention {
        Retention {
            max_prowjob_age: self.max_prowjob_age,
            max_pod_age: self.max_pod_age,
            terminated_pod_ttl: self.terminated_pod_ttl.unwrap_or(self.max_pod_age),
            orphan_grace: self.orphan_pod_grace,
        }
    }

    /// The ProwJob reconciler's settings.
    pub fn prowjob_settings(&self) -> crate::prowjob::Settings {
        crate::prowjob::Settings {
            pod_namespace: self.pod_namespace.clone(),
            watch_namespace: self.watch_namespace.clone(),
            policy: Policy {
                timeouts: Timeouts {
                    pending: self.pod_pending_timeout,
                    unscheduled: self.pod_unscheduled_timeout,
                    running: self.pod_running_timeout,
                },
                max_revivals: self.max_revivals,
            },
            limits: Limits {
                global: self.max_concurrency,
                queues: self
                    .job_queues
                    .iter()
                    .map(|q| (q.name.clone(), q.capacity_or_unlimited()))
                    .collect(),
            },
            pod_deletion_grace_seconds: self.pod_deletion_grace_seconds,
            list_page_size: self.list_page_size,
            reconcile_concurrency: self.reconcile_concurrency,
            utility_image: self.utility_image.clone(),
            job_url_template: self.job_url_template.clone(),
            retention: self.retention(),
        }
    }

    /// The cimaster-compatible API's settings, when it is on.
    pub fn compat(&self) -> Option<crate::compat::Settings> {
        Some(crate::compat::Settings {
            listen: self.compat_listen?,
            namespace: self
                .compat_namespace
                .clone()
                .unwrap_or_else(|| self.pod_namespace.clone()),
            pool: self.compat_pool.clone(),
            allow_anonymous: self.compat_allow_anonymous,
            default_pod_namespace: self.pod_namespace.clone(),
        })
    }

    /// The configuration as one JSON line, for the start-up log.
    pub fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let cfg = OperatorConfig::try_parse_from(["prow-operator"]).expect("parses");
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cfg.pod_namespace, "default");
        assert_eq!(cfg.watch_namespace, None);
        assert_eq!(cfg.log_format, LogFormat::Text);
        let settings = cfg.prowjob_settings();
        assert_eq!(
            settings.policy,
            Policy::default(),
            "upstream's timeouts and revivals"
        );
        assert_eq!(settings.limits, Limits::default());
        assert_eq!(
            cfg.retention(),
            Retention::default(),
            "upstream sinker's defaults"
        );
        assert!(cfg.leader_election);
        assert_eq!(
            settings.utility_image,
            format!(
                "prow-operator.local/prow-utils:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(settings.job_url_template, "");
    }

    #[test]
    fn a_job_url_template_that_does_not_parse_stops_the_start() {
        let ok = OperatorConfig::try_parse_from([
            "prow-operator",
            "--job-url-template=http://10.0.0.1/view/{{.Spec.Job}}/{{.Status.BuildID}}",
        ]);
        assert!(ok.is_ok());
        let err =
            OperatorConfig::try_parse_from(["prow-operator", "--job-url-template={{if .Spec.Job}"])
                .expect_err("refused");
        assert!(err.to_string().contains("--job-url-template"), "{err}");
    }

    #[test]
    fn job_queues_and_timeouts_parse() {
        let cfg = OperatorConfig::try_parse_from([
            "prow-operator",
            "--job-queue=gpu=2",
            "--job-queue=blocked=0",
            "--job-queue=open",
            "--pod-running-timeout=2h30m",
        ])
        .expect("parses");
        let settings = cfg.prowjob_settings();
        assert_eq!(settings.limits.queues["gpu"], 2);
        assert_eq!(settings.limits.queues["blocked"], 0);
        assert_eq!(
            settings.limits.queues["open"], -1,
            "a queue without a limit"
        );
        assert_eq!(settings.policy.timeouts.running, Duration::from_secs(9000));
        assert!(OperatorConfig::try_parse_from(["prow-operator", "--job-queue=gpu=two"]).is_err());
        assert!(
            OperatorConfig::try_parse_from(["prow-operator", "--pod-running-timeout=2d"]).is_err()
        );
    }

    #[test]
    fn flags_override_defaults_and_print_as_json() {
        let cfg = OperatorConfig::try_parse_from([
            "prow-operator",
            "--listen=127.0.0.1:9999",
            "--pod-namespace=test-pods",
            "--log-format=json",
        ])
        .expect("parses");
        let printed: serde_json::Value = serde_json::from_str(&cfg.describe()).expect("JSON");
        assert_eq!(printed["listen"], "127.0.0.1:9999");
        assert_eq!(printed["pod_namespace"], "test-pods");
        assert_eq!(printed["log_format"], "json");
    }

    #[test]
    fn a_bad_listen_address_is_refused() {
        let err = OperatorConfig::try_parse_from(["prow-operator", "--listen=nowhere"])
            .expect_err("refused");
        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
