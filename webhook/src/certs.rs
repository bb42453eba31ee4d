//! The webhook's own certificates, as pure rules: what a Secret holding a CA and a serving
//! certificate needs (nothing, a new serving certificate from the same CA, or a new CA), and
//! making them. The CA outlives many serving certificates, so renewing the serving certificate
//! leaves the webhook configurations' `caBundle` as it is.

use std::collections::BTreeMap;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The Secret's keys: the usual `kubernetes.io/tls` pair, the CA's certificate (as
/// cert-manager names it) and the CA's key, which renewing the serving certificate needs.
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a new serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::days(365);
/// A serving certificate this close to its end is renewed.
pub const RENEW_SERVING_BEFORE: Duration = Duration::days(30);
/// A CA this close to its end is replaced (the only time `caBundle` changes).
pub const RENEW_CA_BEFORE: Duration = Duration::days(90);
/// Certificates start this far in the past, for clocks a little behind ours.
const BACKDATE: Duration = Duration::hours(1);

/// A CA and a serving certificate with their keys, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl Material {
    /// Reads the four keys of a Secret's data; `None` if one is missing or not UTF-8.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Self> {
        let text = |key: &str| {
            data.get(key)
                .and_then(|v| String::from_utf8(v.clone()).ok())
        };
        Some(Self {
            ca_cert: text(CA_CERT)?,
            ca_key: text(CA_KEY)?,
            cert: text(TLS_CERT)?,
            key: text(TLS_KEY)?,
        })
    }

    /// The Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
    }
}

/// What a Secret's certificates need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// They serve as they are.
    Keep,
    /// A new serving certificate from the same CA, for the reason given.
    RenewServing(String),
    /// A new CA and serving certificate, for the reason given.
    Issue(String),
}

/// Decides what the certificates in `existing` need to serve `dns_names` at `now`.
pub fn plan(existing: Option<&Material>, dns_names: &[String], now: OffsetDateTime) -> Plan {
    let Some(m) = existing else {
        return Plan::Issue("no certificate yet".into());
    };
    let ca_der = match pem_der(&m.ca_cert) {
        Ok(der) => der,
        Err(e) => return Plan::Issue(format!("the CA certificate does not parse: {e}")),
    };
    let ca = match X509Certificate::from_der(&ca_der) {
        Ok((_, ca)) => ca,
        Err(e) => return Plan::Issue(format!("the CA certificate does not parse: {e}")),
    };
    if !ca.is_ca() {
        return Plan::Issue("the CA certificate is not a CA".into());
    }
    if let Err(why) = key_matches(&m.ca_key, ca.public_key().subject_public_key.data.as_ref()) {
        return Plan::Issue(format!("the CA key {why}"));
    }
    if ends_within(&ca, now, RENEW_CA_BEFORE) {
        return Plan::Issue("the CA expires within 90 days".into());
    }
    let der = match pem_der(&m.cert) {
        Ok(der) => der,
        Err(e) => return Plan::RenewServing(format!("the certificate does not parse: {e}")),
    };
    let cert = match X509Certificate::from_der(&der) {
        Ok((_, cert)) => cert,
        Err(e) => return Plan::RenewServing(format!("the certificate does not parse: {e}")),
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Plan::RenewServing("the certificate is not signed by the CA".into());
    }
    if let Err(why) = key_matches(&m.key, cert.public_key().subject_public_key.data.as_ref()) {
        return Plan::RenewServing(format!("the key {why}"));
    }
    let names = dns_sans(&cert);
    if let Some(missing) = dns_names.iter().find(|n| !names.contains(n)) {
        return Plan::RenewServing(format!("the certificate does not name {missing}"));
    }
    if cert.validity().not_before.timestamp() > now.unix_timestamp() {
        return Plan::RenewServing("the certificate is not valid yet".into());
    }
    if ends_within(&cert, now, RENEW_SERVING_BEFORE) {
        return Plan::RenewServing("the certificate expires within 30 days".into());
    }
    Plan::Keep
}

/// Carries out `plan`: a new CA and serving certificate, or a serving certificate from the
/// CA in `existing`. `Keep` returns `existing`.
pub fn carry_out(
    plan: &Plan,
    existing: Option<&Material>,
    dns_names: &[String],
    now: OffsetDateTime,
) -> anyhow::Result<Material> {
    match (plan, existing) {
        (Plan::Keep, Some(m)) => Ok(m.clone()),
        (Plan::RenewServing(_), Some(m)) => {
            let ca_key = KeyPair::from_pem(&m.ca_key).context("reading the CA key")?;
            let issuer = Issuer::from_ca_cert_pem(&m.ca_cert, ca_key).context("reading the CA")?;
            let (cert, key) = serving(&issuer, dns_names, now)?;
            Ok(Material {
                ca_cert: m.ca_cert.clone(),
                ca_key: m.ca_key.clone(),
                cert,
                key,
            })
        }
        _ => issue(dns_names, now),
    }
}

/// A new CA and a serving certificate for `dns_names` signed by it.
pub fn issue(dns_names: &[String], now: OffsetDateTime) -> anyhow::Result<Material> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "prow-webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let ca_key = KeyPair::generate().context("making the CA key")?;
    let ca_cert = params.self_signed(&ca_key).context("signing the CA")?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (cert, key) = serving(&issuer, dns_names, now)?;
    Ok(Material {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// A serving certificate for `dns_names` signed by `issuer`, and its key, in PEM.
fn serving(
    issuer: &Issuer<'_, KeyPair>,
    dns_names: &[String],
    now: OffsetDateTime,
) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(!dns_names.is_empty(), "no DNS name to certify");
    let mut params =
        CertificateParams::new(dns_names.to_vec()).context("the DNS names of the certificate")?;
    params
        .distinguished_name
        .push(DnType::CommonName, dns_names[0].as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVING_VALIDITY;
    let key = KeyPair::generate().context("making the serving key")?;
    let cert = params
        .signed_by(&key, issuer)
        .context("signing the serving certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The DNS names a serving certificate should carry for Service `service` in `namespace`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

fn pem_der(text: &str) -> anyhow::Result<Vec<u8>> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(pem.contents)
}

/// Whether the PEM key `key_pem` is the private half of `public_key`.
fn key_matches(key_pem: &str, public_key: &[u8]) -> Result<(), &'static str> {
    let key = KeyPair::from_pem(key_pem).map_err(|_| "does not parse")?;
    (key.public_key_raw() == public_key)
        .then_some(())
        .ok_or("does not match its certificate")
}

fn ends_within(cert: &X509Certificate<'_>, now: OffsetDateTime, margin: Duration) -> bool {
    cert.validity().not_after.timestamp() <= (now + margin).unix_timestamp()
}

fn dns_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        service_dns_names("prow-webhook", "prow")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_fresh_pair_is_kept_and_serves_with_rustls() {
        let m = issue(&names(), now()).expect("issue");
        assert_eq!(plan(Some(&m), &names(), now()), Plan::Keep);
        let chain = vec![rustls::pki_types::CertificateDer::from(
            pem_der(&m.cert).expect("der"),
        )];
        let key = rustls::pki_types::PrivateKeyDer::try_from(
            KeyPair::from_pem(&m.key).expect("key").serialize_der(),
        )
        .expect("key der");
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).expect("rustls takes it");
    }

    #[test]
    fn the_plan_for_each_state_of_the_secret() {
        let t = now();
        let good = issue(&names(), t).expect("issue");
        let other = issue(&names(), t).expect("another");
        let with = |f: &dyn Fn(&mut Material)| {
            let mut m = good.clone();
            f(&mut m);
            m
        };
        let issue_because = |why: &str| Plan::Issue(why.to_string());
        let renew_because = |why: &str| Plan::RenewServing(why.to_string());
        type Case = (
            &'static str,
            Option<Material>,
            Vec<String>,
            OffsetDateTime,
            Plan,
        );
        let cases: Vec<Case> = vec![
            (
                "none yet",
                None,
                names(),
                t,
                issue_because("no certificate yet"),
            ),
            ("good", Some(good.clone()), names(), t, Plan::Keep),
            (
                "fewer names asked for",
                Some(good.clone()),
                names()[..1].to_vec(),
                t,
                Plan::Keep,
            ),
            (
                "garbage CA",
                Some(with(&|m| m.ca_cert = "junk".into())),
                names(),
                t,
                Plan::Issue(String::new()),
            ),
            (
                "serving certificate as CA",
                Some(with(&|m| m.ca_cert = good.cert.clone())),
                names(),
                t,
                issue_because("the CA certificate is not a CA"),
            ),
            (
                "CA key of another CA",
                Some(with(&|m| m.ca_key = other.ca_key.clone())),
                names(),
                t,
                issue_because("the CA key does not match its certificate"),
            ),
            (
                "CA near its end",
                Some(good.clone()),
                names(),
                t + CA_VALIDITY - Duration::days(10),
                issue_because("the CA expires within 90 days"),
            ),
            (
                "garbage serving certificate",
                Some(with(&|m| m.cert = "junk".into())),
                names(),
                t,
                Plan::RenewServing(String::new()),
            ),
            (
                "serving certificate of another CA",
                Some(with(&|m| m.cert = other.cert.clone())),
                names(),
                t,
                renew_because("the certificate is not signed by the CA"),
            ),
            (
                "serving key of another certificate",
                Some(with(&|m| m.key = other.key.clone())),
                names(),
                t,
                renew_because("the key does not match its certificate"),
            ),
            (
                "a service renamed",
                Some(good.clone()),
                service_dns_names("webhook", "prow"),
                t,
                renew_because("the certificate does not name webhook.prow.svc"),
            ),
            (
                "serving certificate near its end",
                Some(good.clone()),
                names(),
                t + SERVING_VALIDITY - Duration::days(29),
                renew_because("the certificate expires within 30 days"),
            ),
            (
                "a clock far behind",
                Some(good.clone()),
                names(),
                t - Duration::days(1),
                renew_because("the certificate is not valid yet"),
            ),
        ];
        for (name, existing, dns, at, want) in cases {
            let got = plan(existing.as_ref(), &dns, at);
            match (&want, &got) {
                // Parser messages are the parser's; the kind of plan is what matters.
                (Plan::Issue(w), Plan::Issue(_)) if w.is_empty() => {}
                (Plan::RenewServing(w), Plan::RenewServing(_)) if w.is_empty() => {}
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    #[test]
    fn renewing_keeps_the_ca_and_names_the_new_service() {
        let t = now();
        let m = issue(&names(), t).expect("issue");
        let renamed = service_dns_names("webhook", "prow");
        let plan = plan(Some(&m), &renamed, t);
        assert!(matches!(plan, Plan::RenewServing(_)), "{plan:?}");
        let renewed = carry_out(&plan, Some(&m), &renamed, t).expect("renew");
        assert_eq!((&renewed.ca_cert, &renewed.ca_key), (&m.ca_cert, &m.ca_key));
        assert_ne!(renewed.cert, m.cert);
        assert_eq!(super::plan(Some(&renewed), &renamed, t), Plan::Keep);
    }

    #[test]
    fn issuing_makes_a_new_ca() {
        let t = now();
        let m = issue(&names(), t).expect("issue");
        let plan = Plan::Issue("the CA expires within 90 days".into());
        let fresh = carry_out(&plan, Some(&m), &names(), t).expect("issue");
        assert_ne!(fresh.ca_cert, m.ca_cert);
        assert_eq!(super::plan(Some(&fresh), &names(), t), Plan::Keep);
    }

    #[test]
    fn a_secret_missing_a_key_reads_as_none_and_round_trips_whole() {
        let m = issue(&names(), now()).expect("issue");
        let data = m.to_data();
        assert_eq!(Material::from_data(&data).as_ref(), Some(&m));
        let mut partial = data.clone();
        partial.remove(CA_KEY);
        assert_eq!(Material::from_data(&partial), None);
    }
}
