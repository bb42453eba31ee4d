//! The webhook's self-managed TLS (`--tls-secret`) against the real API server: two replicas
//! started at once make one CA and certificate between them, keep it in the Secret owned by
//! the webhook configuration, set every `caBundle` and set it again when something wipes it;
//! a restart serves the same certificate, and a renamed Service gets a new serving certificate
//! from the same CA, leaving `caBundle` as it was.
//!
//! The configurations' webhooks select no namespace (a label nobody has), so the other tests
//! on this control plane never call them.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kind_tests::operator::eventually;
use kind_tests::process::{free_port, http_get, Running};
use kind_tests::TestEnv;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

const SECRET: &str = "prow-webhook-tls";

fn hook(name: &str, ns: &str, path: &str) -> serde_json::Value {
    json!({
        "name": format!("{name}.prow-operator.dev"),
        "clientConfig": {"service": {"name": "prow-webhook", "namespace": ns, "path": path}},
        "rules": [{"apiGroups": ["prow.k8s.io"], "apiVersions": ["*"], "resources": ["prowjobs"],
                   "operations": ["CREATE"], "scope": "Namespaced"}],
        "namespaceSelector": {"matchLabels": {"prow-operator.dev/webhook-tls-test": "never"}},
        "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
    })
}

struct Replica {
    process: Running,
    port: u16,
}

/// The flags of a replica on `port` keeping its certificate for `service` in SECRET, with
/// `ca_bundle_of` the configurations whose caBundle it keeps.
fn args(env: &TestEnv, port: u16, service: &str, ca_bundle_of: &str) -> Vec<String> {
    vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--pod-namespace={}", env.namespace),
        format!("--tls-secret={SECRET}"),
        format!("--tls-namespace={}", env.namespace),
        format!("--tls-service={service}"),
        format!("--ca-bundle-of={ca_bundle_of}"),
    ]
}

fn start(env: &TestEnv, service: &str, config: &str) -> Replica {
    let port = free_port().expect("port");
    let targets =
        format!("mutatingwebhookconfiguration/{config},validatingwebhookconfiguration/{config}");
    let args = args(env, port, service, &targets);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process =
        Running::start_with_probes("prow-webhook", "--probe-listen", &env.kubeconfig, &args)
            .expect("the webhook becomes ready");
    Replica { process, port }
}

/// The certificate the replica presents for `name`, in PEM.
fn served(port: u16, name: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether `cert` verifies against `ca` for the host name `name`.
fn verifies(ca: &str, cert: &str, name: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("verify"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("ca.crt"), ca).expect("ca");
    std::fs::write(dir.join("tls.crt"), cert).expect("cert");
    let out = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args([
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            name,
            "tls.crt",
        ])
        .output()
        .expect("openssl");
    let _ = std::fs::remove_dir_all(&dir);
    out.status.success().then_some(()).ok_or_else(|| {
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    })
}

fn text(secret: &Secret, key: &str) -> String {
    let data = secret.data.as_ref().expect("data");
    String::from_utf8(data.get(key).expect(key).0.clone()).expect("utf-8")
}

async fn bundles(env: &TestEnv, config: &str) -> Vec<Option<String>> {
    let mutating = Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .get(config)
        .await
        .expect("mutating");
    let validating = Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .get(config)
        .await
        .expect("validating");
    let of = |b: &Option<k8s_openapi::ByteString>| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    };
    mutating
        .webhooks
        .iter()
        .flatten()
        .map(|w| of(&w.client_config.ca_bundle))
        .chain(
            validating
                .webhooks
                .iter()
                .flatten()
                .map(|w| of(&w.client_config.ca_bundle)),
        )
        .collect()
}

#[tokio::test]
async fn the_webhook_makes_its_certificate_once_and_keeps_every_ca_bundle_set() {
    let env = TestEnv::new("webhook-tls").await.expect("env");
    let ns = env.namespace.clone();
    let config = format!("tls-{ns}");
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": config},
        "webhooks": [hook("mutate-prowjobs", &ns, "/mutate/prowjobs")],
    }))
    .expect("mutating");
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": config},
        "webhooks": [hook("validate-prowjobs", &ns, "/validate/prowjobs"),
                     hook("validate-presets", &ns, "/validate/presets")],
    }))
    .expect("validating");
    let mutating = Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .expect("create mutating");
    Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .expect("create validating");

    // Two replicas at once: one certificate between them, both ready only once it is set.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start(&env, "prow-webhook", &config));
        let b = s.spawn(|| start(&env, "prow-webhook", &config));
        (a.join().expect("a"), b.join().expect("b"))
    });
    let secrets: Api<Secret> = env.api();
    let secret = secrets.get(SECRET).await.expect("the Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let owners = secret.metadata.owner_references.clone().expect("owned");
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        (
            "MutatingWebhookConfiguration",
            config.as_str(),
            mutating.metadata.uid.as_deref().expect("uid")
        ),
        "goes with the configuration"
    );
    let (ca, cert) = (text(&secret, "ca.crt"), text(&secret, "tls.crt"));
    let host = format!("prow-webhook.{ns}.svc");
    verifies(&ca, &cert, &host).expect("the certificate names the Service and chains to the CA");
    assert_eq!(
        served(a.port, &host),
        cert.trim(),
        "replica a serves the Secret's certificate"
    );
    assert_eq!(
        served(b.port, &host),
        cert.trim(),
        "replica b serves the same one"
    );
    assert_eq!(
        bundles(&env, &config).await,
        vec![Some(ca.clone()); 3],
        "every caBundle holds the CA"
    );

    // Something wipes a caBundle (a GitOps sync by replacement): it is set again.
    Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .patch(
            &config,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "remove", "path": "/webhooks/1/clientConfig/caBundle"}]),
                )
                .expect("patch"),
            ),
        )
        .await
        .expect("wipe");
    eventually(
        "the wiped caBundle to be set again",
        Duration::from_secs(30),
        || async { Ok((bundles(&env, &config).await == vec![Some(ca.clone()); 3]).then_some(())) },
    )
    .await
    .expect("set again");

    // A restart serves the same certificate: nothing is rotated.
    drop((a, b));
    let again = start(&env, "prow-webhook", &config);
    assert_eq!(
        served(again.port, &host),
        cert.trim(),
        "the same certificate after a restart"
    );
    let unchanged = secrets.get(SECRET).await.expect("secret");
    assert_eq!(
        unchanged.metadata.resource_version, secret.metadata.resource_version,
        "the Secret was not rewritten"
    );
    let (status, body) = http_get(&again.process.health, "/readyz").expect("readyz");
    assert_eq!((status, body.trim()), (200, "ok"));
    drop(again);

    // The Service renamed: a new serving certificate for it from the same CA; caBundle stays.
    let renamed = start(&env, "webhook", &config);
    let secret = secrets.get(SECRET).await.expect("secret");
    assert_eq!(text(&secret, "ca.crt"), ca, "the same CA");
    let renewed = text(&secret, "tls.crt");
    assert_ne!(renewed, cert);
    verifies(&ca, &renewed, &format!("webhook.{ns}.svc")).expect("names the new Service");
    assert_eq!(
        served(renamed.port, &format!("webhook.{ns}.svc")),
        renewed.trim()
    );
    assert_eq!(bundles(&env, &config).await, vec![Some(ca.clone()); 3]);
    drop(renamed);

    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .delete(&config, &DeleteParams::default())
        .await
        .expect("clean up");
    Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .delete(&config, &DeleteParams::default())
        .await
        .expect("clean up");
}

#[tokio::test]
async fn without_its_webhook_configuration_the_webhook_is_not_ready_and_says_why() {
    let env = TestEnv::new("webhook-tls-wait").await.expect("env");
    let port = free_port().expect("port");
    let missing = format!("validatingwebhookconfiguration/missing-{}", env.namespace);
    let args = args(&env, port, "prow-webhook", &missing);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let webhook = Running::start_with_probes_unready(
        "prow-webhook",
        "--probe-listen",
        &env.kubeconfig,
        &args,
    )
    .expect("alive");
    let address = webhook.health.clone();
    let why = eventually(
        "the webhook to say why it is not ready",
        Duration::from_secs(20),
        || async {
            Ok(http_get(&address, "/readyz")
                .ok()
                .filter(|(status, body)| *status == 503 && body.contains("missing-")))
        },
    )
    .await
    .expect("not ready, with the reason");
    assert!(
        why.1.contains("not made yet") || why.1.contains("caBundle"),
        "{}",
        why.1
    );
}
