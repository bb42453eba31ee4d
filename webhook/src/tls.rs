//! HTTPS for warp 0.4 (which has no TLS of its own): a tokio-rustls acceptor in front of
//! `warp::service`, served by hyper-util. The certificate is re-read when its files change, so a
//! rotated certificate is used for new handshakes without a restart or dropped connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Serves the certificate last read from two PEM files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Reads the certificate chain and key once; fails if they do not load.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        let key = read_certified_key(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Re-reads the files whenever their modification time changes, until `stop`. A pair that
    /// does not load (a half-written rotation) is skipped and tried again at the next change.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut seen = self.mtimes();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_CHECK) => {}
                _ = stop.cancelled() => return,
            }
            let now = self.mtimes();
            if now == seen {
                continue;
            }
            match read_certified_key(&self.cert_file, &self.key_file) {
                Ok(key) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                    seen = now;
                    tracing::info!(cert = %self.cert_file.display(), "reloaded the TLS certificate");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the changed TLS certificate does not load yet")
                }
            }
        }
    }

    fn mtimes(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (mtime(&self.cert_file), mtime(&self.key_file))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read_certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_file.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate",
        cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).context("certificate and key do not match")
}

/// TLS 1.2 and 1.3 with the reloading certificate; HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(cert: Arc<ReloadingCert>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `filter` over TLS on `listen` until `stop`; connections in flight finish on their own.
pub async fn serve<F>(
    listen: SocketAddr,
    config: rustls::ServerConfig,
    filter: F,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "webhook listening (HTTPS)");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let service = warp::service(filter);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
            _ = stop.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake");
                    return;
                }
            };
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection");
            }
        });
    }
}
