//! Self-managed TLS: the webhook makes its CA and serving certificate once, keeps them in a
//! Secret (shared by its replicas), serves from it, and keeps the `caBundle` of its webhook
//! configurations set to the CA. Nothing the chart renders holds the certificate, so
//! re-rendering or re-syncing the release never rotates it or shows a difference.
//!
//! Every call is a read of one object by name and a write at the version read: replicas that
//! race create or renew once between them (the loser's write conflicts and it reads the
//! winner's), and the RBAC can name each object (`resourceNames`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use prow_runtime::health::Readiness;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::certs::{self, Material, Plan};
use crate::tls::{certified_key_from_pem, SharedCert};

/// The readiness condition: not ready until the certificate is served and every `caBundle`
/// holds its CA (the API server could not call this replica before).
const CONDITION: &str = "webhook-tls";
/// How often the Secret and the configurations are checked once in order.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a failed check is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Writes that lost a race to another replica are decided again this many times.
const ATTEMPTS: usize = 3;
/// The label on the Secret saying who made it.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "prow-webhook");

/// A webhook configuration whose `caBundle` is kept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub kind: TargetKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TargetKind {
    Mutating,
    Validating,
}

impl FromStr for Target {
    type Err = String;

    /// `mutatingwebhookconfiguration/NAME` or `validatingwebhookconfiguration/NAME`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: expected mutatingwebhookconfiguration/NAME or validatingwebhookconfiguration/NAME")
        })?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "mutatingwebhookconfiguration" | "mutatingwebhookconfigurations" => {
                TargetKind::Mutating
            }
            "validatingwebhookconfiguration" | "validatingwebhookconfigurations" => {
                TargetKind::Validating
            }
            other => {
                return Err(format!(
                "{other:?} is not mutatingwebhookconfiguration or validatingwebhookconfiguration"
            ))
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("{s:?}: the name is empty or has a slash"));
        }
        Ok(Self {
            kind,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TargetKind::Mutating => "mutatingwebhookconfiguration",
            TargetKind::Validating => "validatingwebhookconfiguration",
        };
        write!(f, "{kind}/{}", self.name)
    }
}

/// Where the certificate is kept, what it names, and whose `caBundle` holds its CA.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub secret: String,
    pub dns_names: Vec<String>,
    pub targets: Vec<Target>,
}

/// The certificate being served, and what keeps it and the `caBundle`s in order.
pub struct SelfManaged {
    client: Client,
    settings: Settings,
    cert: Arc<SharedCert>,
    served: Mutex<Material>,
}

impl SelfManaged {
    /// Reads the certificate from the Secret, making it first if need be; tries again until it
    /// is had, or `None` once `stop` is cancelled. The server cannot start without it.
    pub async fn start(
        client: Client,
        settings: Settings,
        ready: &Readiness,
        stop: &CancellationToken,
    ) -> Option<Arc<Self>> {
        ready.waiting_for(
            CONDITION,
            "the webhook's certificate is not made yet".into(),
        );
        loop {
            match ensure_secret(&client, &settings).await.and_then(|m| {
                let key = certified_key_from_pem(&m.cert, &m.key)?;
                Ok((m, key))
            }) {
                Ok((material, key)) => {
                    ready.waiting_for(
                        CONDITION,
                        "the webhook configurations' caBundle is not set yet".into(),
                    );
                    return Some(Arc::new(Self {
                        client,
                        settings,
                        cert: SharedCert::new(key),
                        served: Mutex::new(material),
                    }));
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "getting the webhook's certificate"
                    );
                    ready.waiting_for(
                        CONDITION,
                        format!("the webhook's certificate is not made yet: {e:#}"),
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// What the TLS server resolves its certificate through.
    pub fn resolver(&self) -> Arc<SharedCert> {
        self.cert.clone()
    }

    /// Keeps the Secret, the served certificate and the `caBundle`s in order until `stop`;
    /// ready while they are.
    pub async fn run(self: Arc<Self>, ready: Readiness, stop: CancellationToken) {
        loop {
            let wait = match self.reconcile().await {
                Ok(()) => {
                    ready.done_waiting(CONDITION);
                    RESYNC
                }
                Err(e) => {
                    ready.waiting_for(CONDITION, format!("webhook TLS: {e:#}"));
                    RETRY
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        let material = ensure_secret(&self.client, &self.settings).await?;
        let changed = *self.served.lock().unwrap_or_else(|p| p.into_inner()) != material;
        if changed {
            self.cert
                .set(certified_key_from_pem(&material.cert, &material.key)?);
            tracing::info!(secret = %self.settings.secret, "serving the renewed certificate");
            *self.served.lock().unwrap_or_else(|p| p.into_inner()) = material.clone();
        }
        for target in &self.settings.targets {
            keep_ca_bundle(&self.client, target, &material.ca_cert).await?;
        }
        Ok(())
    }
}

/// Reads the Secret and returns its certificates, making or renewing them first when
/// [`certs::plan`] says so.
async fn ensure_secret(client: &Client, settings: &Settings) -> anyhow::Result<Material> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let name = &settings.secret;
    for _ in 0..ATTEMPTS {
        let existing = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading Secret {}/{name}", settings.namespace))?;
        let material = existing.as_ref().and_then(secret_material);
        let now = OffsetDateTime::now_utc();
        let plan = certs::plan(material.as_ref(), &settings.dns_names, now);
        let why = match &plan {
            Plan::Keep => return material.context("a kept certificate is there"),
            Plan::RenewServing(why) | Plan::Issue(why) => why.clone(),
        };
        tracing::info!(secret = %name, reason = %why, ?plan, "making the webhook's certificate");
        let fresh = certs::carry_out(&plan, material.as_ref(), &settings.dns_names, now)?;
        let data: BTreeMap<String, ByteString> = fresh
            .to_data()
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        let written = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(settings.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY.0.to_string(),
                            MANAGED_BY.1.to_string(),
                        )])),
                        owner_references: owner(client, &settings.targets).await?,
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_string()),
                    data: Some(data),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await
            }
            Some(mut secret) => {
                secret.data = Some(data);
                api.replace(name, &PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => return Ok(fresh),
            // Another replica wrote first: read what it made.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("writing Secret {name}")),
        }
    }
    anyhow::bail!("Secret {name} kept changing while it was being written")
}

fn secret_material(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let data: BTreeMap<String, Vec<u8>> =
        data.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    Material::from_data(&data)
}

/// The Secret belongs to the first webhook configuration: uninstalling the release deletes
/// the configurations, and the garbage collector the Secret with them.
async fn owner(client: &Client, targets: &[Target]) -> anyhow::Result<Option<Vec<OwnerReference>>> {
    let Some(target) = targets.first() else {
        return Ok(None);
    };
    let reference = match target.kind {
        TargetKind::Mutating => {
            reference_to::<MutatingWebhookConfiguration>(client, &target.name).await
        }
        TargetKind::Validating => {
            reference_to::<ValidatingWebhookConfiguration>(client, &target.name).await
        }
    }?;
    Ok(Some(vec![reference]))
}

/// An owner reference to the cluster-scoped object `name` of kind `K`, read for its uid.
async fn reference_to<K>(client: &Client, name: &str) -> anyhow::Result<OwnerReference>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope> + Clone + DeserializeOwned + fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).to_string();
    let object = Api::<K>::all(client.clone())
        .get(name)
        .await
        .with_context(|| format!("reading {kind} {name}"))?;
    Ok(OwnerReference {
        api_version: K::api_version(&Default::default()).to_string(),
        kind,
        name: name.to_string(),
        uid: object.uid().context("an object without a uid")?,
        ..OwnerReference::default()
    })
}

/// Sets every webhook's `caBundle` in `target` to `ca`, unless it already is.
async fn keep_ca_bundle(client: &Client, target: &Target, ca: &str) -> anyhow::Result<()> {
    match target.kind {
        TargetKind::Mutating => {
            keep::<MutatingWebhookConfiguration>(client, target, ca, |c| {
                let webhooks = c.webhooks.iter().flatten();
                webhooks
                    .map(|w| w.client_config.ca_bundle.as_ref())
                    .collect()
            })
            .await
        }
        TargetKind::Validating => {
            keep::<ValidatingWebhookConfiguration>(client, target, ca, |c| {
                let webhooks = c.webhooks.iter().flatten();
                webhooks
                    .map(|w| w.client_config.ca_bundle.as_ref())
                    .collect()
            })
            .await
        }
    }
}

async fn keep<K>(
    client: &Client,
    target: &Target,
    ca: &str,
    bundles: fn(&K) -> Vec<Option<&ByteString>>,
) -> anyhow::Result<()>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::all(client.clone());
    let current = api
        .get(&target.name)
        .await
        .with_context(|| format!("reading {target}"))?;
    let bundles: Vec<Option<&[u8]>> = bundles(&current)
        .into_iter()
        .map(|b| b.map(|b| b.0.as_slice()))
        .collect();
    if let Some(patch) = bundle_patch(&bundles, current.resource_version(), ca) {
        api.patch(
            &target.name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
        .with_context(|| format!("setting the caBundle of {target}"))?;
        tracing::info!(%target, "set the caBundle");
    }
    Ok(())
}

/// The JSON patch that sets each webhook's `caBundle` (given in order) to `ca`, guarded by the
/// version it was read at; `None` when every one already is.
pub fn bundle_patch(
    bundles: &[Option<&[u8]>],
    resource_version: Option<String>,
    ca: &str,
) -> Option<json_patch::Patch> {
    let stale: Vec<usize> = bundles
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != Some(ca.as_bytes()))
        .map(|(i, _)| i)
        .collect();
    if stale.is_empty() {
        return None;
    }
    let encoded = serde_json::to_value(ByteString(ca.as_bytes().to_vec())).ok()?;
    let mut ops = vec![json!({
        "op": "test", "path": "/metadata/resourceVersion", "value": resource_version,
    })];
    ops.extend(stale.into_iter().map(|i| {
        json!({ "op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded })
    }));
    serde_json::from_value(serde_json::Value::Array(ops)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_their_flag_form() {
        let cases: Vec<(&str, Result<Target, ()>)> = vec![
            (
                "mutatingwebhookconfiguration/prow-operator",
                Ok(Target {
                    kind: TargetKind::Mutating,
                    name: "prow-operator".into(),
                }),
            ),
            (
                "ValidatingWebhookConfigurations/prow",
                Ok(Target {
                    kind: TargetKind::Validating,
                    name: "prow".into(),
                }),
            ),
            ("prow-operator", Err(())),
            ("secret/prow", Err(())),
            ("mutatingwebhookconfiguration/", Err(())),
            ("mutatingwebhookconfiguration/a/b", Err(())),
        ];
        for (input, want) in cases {
            let got = input.parse::<Target>().map_err(|_| ());
            assert_eq!(got, want, "{input}");
            if let Ok(t) = got {
                assert_eq!(
                    t.to_string().parse::<Target>(),
                    Ok(t),
                    "round trip of {input}"
                );
            }
        }
    }

    #[test]
    fn the_patch_sets_only_stale_bundles_at_the_version_read() {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let old = b"old".as_slice();
        assert!(bundle_patch(
            &[Some(ca.as_bytes()), Some(ca.as_bytes())],
            Some("7".into()),
            ca
        )
        .is_none());
        assert!(bundle_patch(&[], Some("7".into()), ca).is_none());
        let patch = bundle_patch(
            &[Some(ca.as_bytes()), None, Some(old)],
            Some("7".into()),
            ca,
        )
        .expect("a patch");
        let ops = serde_json::to_value(&patch).expect("json");
        let ops = ops.as_array().expect("ops");
        assert_eq!(ops.len(), 3);
        assert_eq!(
            ops[0],
            json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "7" })
        );
        assert_eq!(ops[1]["path"], "/webhooks/1/clientConfig/caBundle");
        assert_eq!(ops[2]["path"], "/webhooks/2/clientConfig/caBundle");
        // The value is the PEM in base64, as the API carries bytes.
        let decoded: ByteString = serde_json::from_value(ops[1]["value"].clone()).expect("bytes");
        assert_eq!(decoded.0, ca.as_bytes());

        // Applied to a configuration, every webhook ends with the CA.
        let mut config = json!({
            "metadata": { "resourceVersion": "7" },
            "webhooks": [
                { "clientConfig": { "caBundle": ops[1]["value"] } },
                { "clientConfig": {} },
                { "clientConfig": { "caBundle": "b2xk" } },
            ]
        });
        json_patch::patch(&mut config, &patch).expect("applies");
        for w in config["webhooks"].as_array().expect("webhooks") {
            assert_eq!(w["clientConfig"]["caBundle"], ops[1]["value"]);
        }
        // At another version the test fails and nothing is written.
        let mut moved =
            json!({ "metadata": { "resourceVersion": "8" }, "webhooks": [{ "clientConfig": {} }] });
        assert!(json_patch::patch(
            &mut moved,
            &bundle_patch(&[None], Some("7".into()), ca).expect("patch")
        )
        .is_err());
    }
}
