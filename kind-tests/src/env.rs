//! A client for the test control plane and a fresh namespace for each test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use tokio::sync::OnceCell;

/// Environment variable naming the kubeconfig of the test control plane.
pub const KUBECONFIG_VAR: &str = "PROW_TEST_KUBECONFIG";

/// Field manager of everything the test support writes.
pub const FIELD_MANAGER: &str = "prow-operator-tests";

static CRDS: OnceCell<()> = OnceCell::const_new();
static NODE_CRDS: OnceCell<()> = OnceCell::const_new();

/// Environment variable naming the kubeconfig of the control plane with a real node.
pub const NODE_KUBECONFIG_VAR: &str = "PROW_TEST_NODE_KUBECONFIG";
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// One test's view of the control plane: a client and a namespace of its own.
pub struct TestEnv {
    /// Client authenticated as cluster admin.
    pub client: Client,
    /// A namespace created for this test alone.
    pub namespace: String,
    /// The kubeconfig file, for processes and kubectl started by the test.
    pub kubeconfig: PathBuf,
}

impl TestEnv {
    /// Connects, makes sure the CRDs are installed, and creates a fresh namespace whose name
    /// starts with `prefix`.
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        Self::on(kubeconfig_path()?, &CRDS, prefix).await
    }

    /// [`TestEnv::new`] on the control plane with a real node (`PROW_TEST_NODE_KUBECONFIG`),
    /// once the namespace's default ServiceAccount exists (pods there need it). `None`, after
    /// one line saying why, where no node was started; under `CI=true` that is an error, so
    /// the real-node tier can never be skipped silently in CI.
    pub async fn on_node(prefix: &str) -> anyhow::Result<Option<Self>> {
        let Some(kubeconfig) = std::env::var_os(NODE_KUBECONFIG_VAR) else {
            anyhow::ensure!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{NODE_KUBECONFIG_VAR} is not set under CI=true: the real-node tier must run in \
                 CI (kind-tests/scripts/test.sh starts the node; see its log for why it did not)"
            );
            eprintln!(
                "real-node test skipped: {NODE_KUBECONFIG_VAR} is not set (start a node with \
                 `kind-tests/scripts/control-plane.sh up DIR --node`, or run the test command)"
            );
            return Ok(None);
        };
        let env = Self::on(PathBuf::from(kubeconfig), &NODE_CRDS, prefix).await?;
        let accounts: Api<ServiceAccount> = env.api();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while accounts.get_opt("default").await?.is_none() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no default ServiceAccount in {} after 30 s: is kube-controller-manager running?",
                env.namespace
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Some(env))
    }

    async fn on(kubeconfig: PathBuf, crds: &OnceCell<()>, prefix: &str) -> anyhow::Result<Self> {
        prow_runtime::process::install_crypto_provider();
        let client = prow_runtime::client::client(Some(&kubeconfig)).await?;
        crds.get_or_try_init(|| install_crds(client.clone()))
            .await?;
        let namespace = unique_name(prefix);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
        Ok(Self {
            client,
            namespace,
            kubeconfig,
        })
    }

    /// An API for a namespaced kind in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Runs kubectl against the test control plane in this test's namespace; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = std::process::Command::new("kubectl");
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        crate::process::stdout_of(command, &format!("kubectl {}", args.join(" ")))
    }
}

/// The kubeconfig of the test control plane, from `PROW_TEST_KUBECONFIG`.
pub fn kubeconfig_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(KUBECONFIG_VAR).with_context(|| {
        format!(
            "{KUBECONFIG_VAR} is not set: run the test command from README.md, or start a control \
             plane with `kind-tests/scripts/control-plane.sh up DIR` and export \
             {KUBECONFIG_VAR}=DIR/kubeconfig"
        )
    })?;
    Ok(PathBuf::from(path))
}

/// A DNS-label name unique to this process and moment, starting with `prefix`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{prefix}-{:x}-{nanos:x}-{seq}", std::process::id())
}

/// Applies every CRD the code generates and waits until the API server serves them.
pub async fn install_crds(client: Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in prow_api::crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not established in 30 s"))??;
    }
    Ok(())
}
