//! What prowctl does through the API server: the Kubernetes-native manual trigger, and the
//! kubeconfig's token for the operator's HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Api;
use prow_api::jobdefinition::{
    manual_suffix, run_name, JobDefinition, RUN_ANNOTATION, RUN_BASE_REF_ANNOTATION,
};
use prow_api::{ProwJob, ProwJobState};
use secrecy::ExposeSecret as _;
use serde_json::json;

/// The cluster and namespace to work in.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// Kubeconfig file; the usual rules when none.
    pub kubeconfig: Option<PathBuf>,
    /// Its context; the current one when none.
    pub context: Option<String>,
    /// Namespace; the context's when none.
    pub namespace: Option<String>,
}

impl Target {
    pub(crate) async fn connect(&self) -> anyhow::Result<(kube::Client, String)> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok((kube::Client::try_from(config)?, namespace))
    }
}

/// Starts one run of the definition `name` with its run annotation, prints `NAMESPACE/RUN` once
/// the operator made it, and with `wait` waits for its end. Whether the run succeeded (always
/// true without `wait`).
pub async fn trigger(
    target: &Target,
    name: &str,
    base_ref: Option<&str>,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let (client, namespace) = target.connect().await?;
    let definitions: Api<JobDefinition> = Api::namespaced(client.clone(), &namespace);
    definitions
        .get(name)
        .await
        .with_context(|| format!("reading jobdefinition {namespace}/{name}"))?;
    // Microseconds: two triggers by hand never share a value, and each value is one run.
    let token = format!(
        "prowctl-{}",
        k8s_openapi::jiff::Timestamp::now().as_microsecond()
    );
    let mut annotations = json!({ RUN_ANNOTATION: token });
    if let Some(branch) = base_ref {
        annotations[RUN_BASE_REF_ANNOTATION] = json!(branch);
    }
    definitions
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .with_context(|| format!("annotating jobdefinition {namespace}/{name}"))?;

    let run = run_name(name, &manual_suffix(&token));
    let jobs: Api<ProwJob> = Api::namespaced(client, &namespace);
    let started = poll(timeout, || async { Ok(jobs.get_opt(&run).await?) })
        .await?
        .with_context(|| {
            format!(
                "no run {namespace}/{run} after {timeout:?}: is the operator running? \
             `kubectl -n {namespace} describe jobdefinition {name}` shows why a run was refused"
            )
        })?;
    println!(
        "{namespace}/{}",
        started.metadata.name.as_deref().unwrap_or(&run)
    );
    if !wait {
        return Ok(true);
    }
    let ended = poll(timeout, || async {
        Ok(jobs.get_opt(&run).await?.filter(ProwJob::is_complete))
    })
    .await?
    .with_context(|| format!("{namespace}/{run} did not end within {timeout:?}"))?;
    let state = ended.state();
    let description = ended
        .status
        .as_ref()
        .map(|s| s.description.clone())
        .unwrap_or_default();
    println!("{namespace}/{run}: {}: {description}", state.as_str());
    Ok(state == ProwJobState::Success)
}

/// Calls `probe` every half second until it returns something or `timeout` passed.
async fn poll<T, F, Fut>(timeout: Duration, mut probe: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await? {
            return Ok(Some(found));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The bearer token of the kubeconfig's user in `context` (the current one when none), if it
/// has one (`token` or `tokenFile`).
pub fn kubeconfig_token(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let file = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => match Kubeconfig::read() {
            Ok(file) => Ok(file),
            // No kubeconfig at all: no token, not an error.
            Err(_) => return Ok(None),
        },
    }
    .context("reading the kubeconfig")?;
    let context_name = context
        .map(str::to_string)
        .or_else(|| file.current_context.clone())
        .unwrap_or_default();
    let user = file
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    let Some(auth) = file
        .auth_infos
        .iter()
        .find(|a| Some(&a.name) == user.as_ref())
        .and_then(|a| a.auth_info.as_ref())
    else {
        return Ok(None);
    };
    if let Some(token) = &auth.token {
        return Ok(Some(token.expose_secret().to_string()));
    }
    match &auth.token_file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {path}"))?
                .trim()
                .to_string(),
        )),
        None => Ok(None),
    }
}
