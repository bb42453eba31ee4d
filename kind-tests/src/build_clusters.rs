//! Helpers for build cluster tests: a kubeconfig fit for a Secret, a BuildCluster and its
//! Secret, a namespace of the same name in another cluster, a ServiceAccount token there, and
//! waiting for a BuildCluster's condition.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prow_api::buildcluster::BuildCluster;
use serde_json::json;

use crate::operator::eventually;
use crate::TestEnv;

/// The kubeconfig at `path` as one text (its CA file embedded, as in a Secret), with the user's
/// token replaced by `token` when given.
pub fn kubeconfig_text(path: &Path, token: Option<&str>) -> anyhow::Result<String> {
    let mut config = kube::config::Kubeconfig::read_from(path)?;
    for named in &mut config.clusters {
        let Some(cluster) = named.cluster.as_mut() else {
            continue;
        };
        if let Some(file) = cluster.certificate_authority.take() {
            let pem = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
            // A ByteString serialises as base64, which the kubeconfig field wants.
            let encoded = serde_json::to_value(ByteString(pem))?;
            cluster.certificate_authority_data = encoded.as_str().map(str::to_string);
        }
    }
    if let Some(token) = token {
        for named in &mut config.auth_infos {
            if let Some(user) = named.auth_info.as_mut() {
                user.token = Some(token.to_string().into());
            }
        }
    }
    Ok(serde_yaml::to_string(&config)?)
}

/// Creates (or replaces the data of) the Secret `NAME-kubeconfig` holding `kubeconfig`, and the
/// BuildCluster `name` naming it, in the test's namespace.
pub async fn add_build_cluster(env: &TestEnv, name: &str, kubeconfig: &str) -> anyhow::Result<()> {
    put_kubeconfig(env, name, kubeconfig).await?;
    let cluster: BuildCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "BuildCluster",
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {"kubeconfigSecretRef": {"name": format!("{name}-kubeconfig")},
                 "description": format!("build cluster {name} of a test")},
    }))?;
    env.api::<BuildCluster>()
        .create(&PostParams::default(), &cluster)
        .await?;
    Ok(())
}

/// Writes `kubeconfig` into the Secret `NAME-kubeconfig` (a rotation when it exists).
pub async fn put_kubeconfig(env: &TestEnv, name: &str, kubeconfig: &str) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-kubeconfig")),
            namespace: Some(env.namespace.clone()),
            ..Default::default()
        },
        data: Some(
            [(
                "kubeconfig".to_string(),
                ByteString(kubeconfig.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let params = kube::api::PatchParams::apply(crate::env::FIELD_MANAGER).force();
    env.api::<Secret>()
        .patch(
            &format!("{name}-kubeconfig"),
            &params,
            &kube::api::Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Creates the namespace `name` through `client`, and waits for its default ServiceAccount when
/// `with_account` (a cluster with a controller manager makes it; pods need it there).
pub async fn namespace_in(client: &Client, name: &str, with_account: bool) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    if with_account {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        eventually(
            "the namespace's default ServiceAccount",
            Duration::from_secs(30),
            || {
                let accounts = accounts.clone();
                async move { Ok(accounts.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await?;
    }
    Ok(())
}

/// A token of the ServiceAccount `account` of `namespace` (created here), valid for an hour,
/// from the TokenRequest API.
pub async fn account_token(
    client: &Client,
    namespace: &str,
    account: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}}))?;
    accounts.create(&PostParams::default(), &sa).await?;
    token_of(client, namespace, account).await
}

/// A token of the existing ServiceAccount `account` of `namespace`, valid for an hour, from the
/// TokenRequest API (a plane without a controller manager fills no token Secrets).
pub async fn token_of(client: &Client, namespace: &str, account: &str) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 3600},
    }))?;
    let answer: TokenRequest = accounts
        .create_subresource("token", account, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .map(|s| s.token)
        .context("the TokenRequest has no token")
}

/// Waits until the BuildCluster `name` has the condition `kind` at `status`; returns it.
pub async fn wait_for_condition(
    env: &TestEnv,
    name: &str,
    kind: &str,
    status: &str,
    within: Duration,
) -> anyhow::Result<BuildCluster> {
    let api = env.api::<BuildCluster>();
    eventually(
        &format!("BuildCluster {name} to have {kind}={status}"),
        within,
        || {
            let api = api.clone();
            async move {
                let bc = api.get(name).await?;
                let met = bc.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == kind && c.status == status)
                });
                Ok(met.then_some(bc))
            }
        },
    )
    .await
}

/// The message of the BuildCluster's condition `kind`.
pub fn condition_message(bc: &BuildCluster, kind: &str) -> String {
    bc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}
