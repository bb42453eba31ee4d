//! API clients, from an explicit kubeconfig or by the usual rules.

use std::path::Path;

/// Builds a client from an explicit kubeconfig file, or by the usual rules when none is given.
/// Its requests are retried on 429, 503 and 504 as kube does by default, honouring the API
/// server's `Retry-After`: the polite behaviour for writes to a loaded server.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(load(kubeconfig).await?)?)
}

/// A client whose requests fail at once instead of sleeping out the server's `Retry-After`
/// (the same configuration without kube's retry layer), for watches, which retry on their own
/// schedule ([`crate::watch`]). A starting API server answers 503 with `Retry-After: 10`,
/// which kube's retry obeys: watches resumed 10 s after the server was back.
pub async fn fail_fast_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let mut config = load(kubeconfig).await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// Both clients every process builds: [`client`] for writes and direct reads, and
/// [`fail_fast_client`] for watches, with errors that say which could not be built.
pub async fn clients(kubeconfig: Option<&Path>) -> anyhow::Result<(kube::Client, kube::Client)> {
    use anyhow::Context as _;
    let client = client(kubeconfig)
        .await
        .context("building the Kubernetes client")?;
    let fail_fast = fail_fast_client(kubeconfig)
        .await
        .context("building the fail-fast Kubernetes client")?;
    Ok((client, fail_fast))
}

/// How long a connection to another cluster's API server may take to open: a build cluster
/// that drops packets must not hold up a reconcile for the operating system's minutes.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Both clients (see [`clients`]) for a cluster given by a kubeconfig's text (a Secret's value)
/// and its current context, with connections that give up after [`CONNECT_TIMEOUT`].
pub async fn clients_from_text(kubeconfig: &str) -> anyhow::Result<(kube::Client, kube::Client)> {
    clients_from_parsed(kube::config::Kubeconfig::from_yaml(kubeconfig)?, None).await
}

/// [`clients_from_text`] for a parsed kubeconfig, with its `context` (or its current one).
pub async fn clients_from_parsed(
    kubeconfig: kube::config::Kubeconfig,
    context: Option<&str>,
) -> anyhow::Result<(kube::Client, kube::Client)> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let client = kube::Client::try_from(config.clone())?;
    config.default_retry = false;
    Ok((client, kube::Client::try_from(config)?))
}

async fn load(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// The kubeconfig a BuildCluster names (the key of a Secret beside it), or, as the inner error,
/// why there is none to use, in words for a person.
pub async fn build_cluster_kubeconfig(
    client: &kube::Client,
    cluster: &prow_api::buildcluster::BuildCluster,
) -> Result<Result<String, String>, kube::Error> {
    use k8s_openapi::api::core::v1::Secret;
    let source = &cluster.spec.kubeconfig_secret_ref;
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let secret = kube::Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(&source.name)
        .await?;
    let Some(secret) = secret else {
        return Ok(Err(format!(
            "Secret {:?} (spec.kubeconfigSecretRef) does not exist in namespace {namespace:?}.",
            source.name
        )));
    };
    let value = secret.data.as_ref().and_then(|d| d.get(&source.key));
    Ok(match value.map(|v| String::from_utf8(v.0.clone())) {
        Some(Ok(text)) => Ok(text),
        Some(Err(_)) => Err(format!(
            "Key {:?} of Secret {:?} is not text.",
            source.key, source.name
        )),
        None => Err(format!(
            "Secret {:?} has no key {:?} (spec.kubeconfigSecretRef.key).",
            source.name, source.key
        )),
    })
}

/// A hash of a kubeconfig's text: clients made from a text with another hash are replaced.
pub fn kubeconfig_fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
