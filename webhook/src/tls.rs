//! HTTPS for warp 0.4 (which has no TLS of its own): a tokio-rustls acceptor in front of
//! `warp::service`, served by hyper-util. The certificate is re-read when its files change, so a
//! rotated certificate is used for new handshakes without a restart or dropped connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Serves the certificate last read from two PEM files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: SharedCert,
}

impl ReloadingCert {
    /// Reads the certificate chain and key once; fails if they do not load.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        let key = read_certified_key(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: SharedCert::holding(key),
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
                    self.current.set(key);
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
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.resolve(hello)
    }
}

/// Serves the certificate last set: the reloading files' and the webhook's self-managed
/// certificate, replaced when it is renewed.
#[derive(Debug)]
pub struct SharedCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SharedCert {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self::holding(key))
    }

    fn holding(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for SharedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A certificate chain and its key, from PEM text.
pub fn certified_key_from_pem(chain: &str, key: &str) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing the certificate")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("parsing the key")?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).context("certificate and key do not match")
}

fn read_certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    certified_key_from_pem(&read(cert_file)?, &read(key_file)?)
        .with_context(|| format!("loading {}", cert_file.display()))
}

/// TLS 1.2 and 1.3 with the certificate `cert` resolves to; HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(cert: Arc<dyn ResolvesServerCert>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What the server allows its clients: how many connections, and how long each may take to
/// shake hands, to send a request's headers and to sit idle.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ConnectionLimits {
    /// Connections open at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A TLS handshake not done by then is dropped (bare TCP connections, half handshakes).
    #[serde(serialize_with = "as_millis")]
    pub handshake_timeout: Duration,
    /// An HTTP/1 request's headers must arrive within this once the server waits for them (on
    /// a new connection or between keep-alive requests), and a body within it too.
    #[serde(serialize_with = "as_millis")]
    pub header_timeout: Duration,
    /// A connection that sent and received nothing this long is closed (HTTP/2 with GOAWAY).
    #[serde(serialize_with = "as_millis")]
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// The defaults of the webhook's flags.
    fn default() -> Self {
        Self {
            max_connections: 1000,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

/// File descriptors kept free of client connections: the listener, the client to the API
/// server, the certificate reads, logs.
const RESERVED_FILES: u64 = 64;

impl ConnectionLimits {
    /// These limits with `max_connections` lowered below the process's open-file limit, so
    /// that accepting never fails for want of a file descriptor.
    pub fn within_file_limit(mut self) -> Self {
        if let Some(files) = open_file_limit() {
            let room = files.saturating_sub(RESERVED_FILES).max(1);
            self.max_connections = self.max_connections.min(room as usize);
        }
        self
    }
}

fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// How long the server waits, once stopped, for the requests its open connections still
/// carry; well inside a pod's default 30 s grace period, and longer than the API server's
/// longest webhook timeout that a ProwJob admission uses.
const LAST_REQUESTS: Duration = Duration::from_secs(10);

/// When the server lets its clients go.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// From this on, every connection is asked to close once the requests it carries are
    /// answered (HTTP/2: GOAWAY; HTTP/1: `Connection: close` on the next response), new
    /// connections included. Clients then dial again, and by then the Service sends them to
    /// another pod. Cancelled at SIGTERM.
    pub drain: CancellationToken,
    /// From this on, nothing is accepted and idle HTTP/1 connections are closed; the server
    /// returns once its connections are closed, or after [`LAST_REQUESTS`]. Cancelled after
    /// the shutdown delay.
    pub stop: CancellationToken,
}

/// Serves `filter` over TLS on `listener` within `limits` until `shutdown.stop`, letting its
/// connections go as [`Shutdown`] says, so that a rollout cuts no request off.
pub async fn serve<F>(
    listener: TcpListener,
    config: rustls::ServerConfig,
    filter: F,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) -> anyhow::Result<()>
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    tracing::info!(address = %listener.local_addr()?, limits = ?limits, "webhook listening (HTTPS)");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    // One permit per open connection: holding them all again means every connection closed.
    let capacity = limits
        .max_connections
        .min(Semaphore::MAX_PERMITS)
        .clamp(1, u32::MAX as usize) as u32;
    let slots = Arc::new(Semaphore::new(capacity as usize));
    let mut failures = AcceptFailures::default();
    let stop = &shutdown.stop;
    loop {
        // A slot first: at the limit, new clients wait in the accept queue instead of costing
        // a file descriptor each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.context("connection slots closed")?,
            _ = stop.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    failures.succeeded();
                    pair
                }
                Err(e) => {
                    let pause = failures.failed(&e, Instant::now());
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = stop.cancelled() => break,
                    }
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, filter, shutdown) = (acceptor.clone(), filter.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve_connection(tcp, peer, acceptor, filter, limits, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    // Stopping drains too, for a caller that stops without draining first.
    shutdown.drain.cancel();
    let open = capacity as usize - slots.available_permits();
    if open > 0 {
        tracing::info!(open, "waiting for the last requests of open connections");
        let closed = tokio::time::timeout(LAST_REQUESTS, slots.acquire_many(capacity)).await;
        if closed.is_err() {
            tracing::warn!(
                open = capacity as usize - slots.available_permits(),
                "connections still open after {LAST_REQUESTS:?}; stopping anyway"
            );
        }
    }
    Ok(())
}

async fn serve_connection<F>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    filter: F,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let Shutdown { drain, stop } = shutdown;
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not done in time");
            return;
        }
    };
    // The protocol is the one ALPN chose: no waiting for a first byte to guess it, which
    // would hold an idle connection open before any timeout of hyper's runs.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Activity::default();
    let io = TokioIo::new(Watched {
        inner: tls,
        activity: activity.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let service = CloseWhenDraining {
        inner: TowerToHyperService::new(warp::service(filter)),
        drain: (!h2).then(|| drain.clone()),
    };
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(100));
    // HTTP/2 is let go at the drain (GOAWAY: streams already open are answered, the client
    // opens the next on a new connection); HTTP/1 by its answers (`Connection: close`), and
    // at the stop, when one still idle is closed. Closing an idle HTTP/1 connection races a
    // client that is sending on it: the API server (which calls webhooks over HTTP/1.1 only)
    // does not retry a POST, so it would fail with EOF.
    let mut let_go = false;
    loop {
        let now_is_the_time = async {
            if h2 {
                drain.cancelled().await
            } else {
                stop.cancelled().await
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection");
                }
                return;
            }
            _ = now_is_the_time, if !let_go => {
                tracing::debug!(%peer, h2, "letting the connection go");
                connection.as_mut().graceful_shutdown();
                let_go = true;
            }
            _ = tokio::time::sleep(check_every) => {
                if activity.idle_for() < limits.idle_timeout {
                    continue;
                }
                tracing::debug!(%peer, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.header_timeout, connection.as_mut()).await;
                return;
            }
        }
    }
}

/// The service of one connection. On HTTP/1 (`drain` set), every answer once the server
/// drains says `Connection: close`, so hyper closes the connection after it and the client's
/// next request opens a new one, which the Service by then sends to a pod that stays.
#[derive(Clone)]
struct CloseWhenDraining<S> {
    inner: S,
    drain: Option<CancellationToken>,
}

impl<S, R, B> hyper::service::Service<R> for CloseWhenDraining<S>
where
    S: hyper::service::Service<R, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<B>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<hyper::Response<B>, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let answer = self.inner.call(request);
        let drain = self.drain.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            if drain.is_some_and(|d| d.is_cancelled()) {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        })
    }
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity(Arc<(Instant, AtomicU64)>);

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new((Instant::now(), AtomicU64::new(0))))
    }
}

impl Activity {
    fn touch(&self) {
        let (start, last) = &*self.0;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let (start, last) = &*self.0;
        start
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)))
    }
}

/// A stream that records its reads and writes in an [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accept errors, paced and reported at a bounded rate. At the open-file limit `accept` fails
/// at once, every time: retried at once, it once spun a core and wrote 15 million log lines in
/// 32 s.
#[derive(Default)]
struct AcceptFailures {
    /// Failures in a row.
    streak: u32,
    /// When the last report was logged, and failures since that were not.
    reported: Option<Instant>,
    unreported: u64,
}

/// Longest pause after a failed accept.
const LONGEST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line per this, however many accepts fail.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(10);

impl AcceptFailures {
    /// Records a failure; returns how long to pause before accepting again (10 ms doubling to
    /// a second), and logs one line per [`ACCEPT_REPORT_EVERY`] with the count of the others.
    fn failed(&mut self, error: &std::io::Error, now: Instant) -> Duration {
        self.streak = self.streak.saturating_add(1);
        let due = self
            .reported
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_REPORT_EVERY);
        if due {
            tracing::warn!(
                %error,
                not_logged_since_last = self.unreported,
                "accepting a connection failed; pausing before the next accept"
            );
            self.reported = Some(now);
            self.unreported = 0;
        } else {
            self.unreported += 1;
        }
        self.pause()
    }

    fn pause(&self) -> Duration {
        let doublings = self.streak.saturating_sub(1).min(10);
        (Duration::from_millis(10) * 2u32.pow(doublings)).min(LONGEST_ACCEPT_PAUSE)
    }

    fn succeeded(&mut self) {
        self.streak = 0;
    }
}

#[cfg(test)]
mod shutdown_tests {
    //! How the server lets its connections go, seen by hyper's own HTTP/1 and HTTP/2 clients.
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::Request;
    use tokio::task::JoinHandle;
    use warp::Filter;

    /// How long `/slow` takes to answer.
    const SLOW: Duration = Duration::from_millis(600);

    struct Server {
        address: SocketAddr,
        shutdown: Shutdown,
        served: JoinHandle<anyhow::Result<()>>,
        roots: rustls::RootCertStore,
    }

    async fn start() -> Server {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = certified_key_from_pem(&issued.cert.pem(), &issued.signing_key.serialize_pem())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(issued.cert.der().clone()).unwrap();
        let config = server_config(SharedCert::new(key)).unwrap();
        let routes = warp::path("slow")
            .then(|| async {
                tokio::time::sleep(SLOW).await;
                "slow"
            })
            .or(warp::any().map(|| "ok"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = Shutdown::default();
        let served = tokio::spawn(serve(
            listener,
            config,
            routes,
            ConnectionLimits::default(),
            shutdown.clone(),
        ));
        Server {
            address,
            shutdown,
            served,
            roots,
        }
    }

    impl Server {
        async fn tls(
            &self,
            alpn: &[u8],
        ) -> TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            let tcp = tokio::net::TcpStream::connect(self.address).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            TokioIo::new(tls)
        }

        /// An HTTP/2 connection, and the task that ends when the connection does.
        async fn h2(
            &self,
        ) -> (
            hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
            JoinHandle<()>,
        ) {
            let (send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), self.tls(b"h2").await)
                    .await
                    .unwrap();
            (
                send,
                tokio::spawn(async move {
                    connection.await.ok();
                }),
            )
        }

        /// An HTTP/1.1 connection, and the task that ends when the connection does.
        async fn h1(
            &self,
        ) -> (
            hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
            JoinHandle<()>,
        ) {
            let (send, connection) =
                hyper::client::conn::http1::handshake(self.tls(b"http/1.1").await)
                    .await
                    .unwrap();
            (
                send,
                tokio::spawn(async move {
                    connection.await.ok();
                }),
            )
        }
    }

    fn get(path: &str) -> Request<Empty<Bytes>> {
        Request::get(format!("https://localhost{path}"))
            .body(Empty::new())
            .unwrap()
    }

    /// The body of a 200 answer, and whether it asked to close the connection.
    async fn answered(response: hyper::Response<hyper::body::Incoming>) -> (String, bool) {
        assert_eq!(response.status(), 200);
        let closing = response
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v == "close");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), closing)
    }

    async fn ends_within(connection: JoinHandle<()>, within: Duration) -> bool {
        tokio::time::timeout(within, connection).await.is_ok()
    }

    #[tokio::test]
    async fn draining_closes_http2_connections_after_their_streams_and_still_serves_new_ones() {
        let server = start().await;
        let (mut send, connection) = server.h2().await;
        let (body, _) = answered(send.send_request(get("/")).await.unwrap()).await;
        assert_eq!(body, "ok");
        let slow = tokio::spawn(send.send_request(get("/slow")));
        tokio::time::sleep(SLOW / 3).await;

        server.shutdown.drain.cancel();
        let (body, _) = answered(slow.await.unwrap().unwrap()).await;
        assert_eq!(body, "slow", "a stream open at the drain is answered");
        assert!(
            ends_within(connection, Duration::from_secs(2)).await,
            "the server sent GOAWAY and the connection ended, long before its idle timeout"
        );

        // Until it stops, the server still answers a client that reaches it, once.
        let (mut send, connection) = server.h2().await;
        let (body, _) = answered(send.send_request(get("/")).await.unwrap()).await;
        assert_eq!(body, "ok");
        assert!(ends_within(connection, Duration::from_secs(2)).await);
        server.shutdown.stop.cancel();
        server.served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn draining_answers_http1_requests_with_connection_close_and_closes_idle_ones_at_the_stop(
    ) {
        let server = start().await;
        let (mut busy, busy_connection) = server.h1().await;
        let (_, closing) = answered(busy.send_request(get("/")).await.unwrap()).await;
        assert!(!closing, "kept alive before the drain");
        let slow = tokio::spawn(busy.send_request(get("/slow")));
        let (mut idle, idle_connection) = server.h1().await;
        let (_, closing) = answered(idle.send_request(get("/")).await.unwrap()).await;
        assert!(!closing);
        let (mut unused, unused_connection) = server.h1().await;
        answered(unused.send_request(get("/")).await.unwrap()).await;
        tokio::time::sleep(SLOW / 3).await;

        server.shutdown.drain.cancel();
        // An idle HTTP/1 connection is not closed under a client that may be sending on it
        // (the API server does not retry a POST): it is told with its next answer.
        let (body, closing) = answered(slow.await.unwrap().unwrap()).await;
        assert_eq!(body, "slow", "a request in flight at the drain is answered");
        assert!(closing, "the answer after the drain says Connection: close");
        assert!(ends_within(busy_connection, Duration::from_secs(2)).await);
        assert!(
            !idle_connection.is_finished(),
            "an idle connection is still open after the drain"
        );
        let (body, closing) = answered(idle.send_request(get("/")).await.unwrap()).await;
        assert_eq!(body, "ok", "and still answers");
        assert!(closing, "saying Connection: close");
        assert!(ends_within(idle_connection, Duration::from_secs(2)).await);

        // One never used again is closed at the stop.
        let (mut late, late_connection) = server.h1().await;
        let (_, closing) = answered(late.send_request(get("/")).await.unwrap()).await;
        assert!(
            closing,
            "a connection made while draining serves one request"
        );
        assert!(ends_within(late_connection, Duration::from_secs(2)).await);
        assert!(!unused_connection.is_finished());
        server.shutdown.stop.cancel();
        assert!(
            ends_within(unused_connection, Duration::from_secs(2)).await,
            "an idle connection is closed at the stop"
        );
        tokio::time::timeout(Duration::from_secs(2), server.served)
            .await
            .expect("the server returns once its connections closed")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn stopping_waits_for_the_requests_in_flight() {
        let server = start().await;
        let (mut send, _connection) = server.h1().await;
        let slow = tokio::spawn(send.send_request(get("/slow")));
        tokio::time::sleep(SLOW / 3).await;

        server.shutdown.stop.cancel();
        tokio::time::sleep(SLOW / 3).await;
        assert!(
            !server.served.is_finished(),
            "the server does not return while a request is in flight"
        );
        let (body, _) = answered(slow.await.unwrap().unwrap()).await;
        assert_eq!(body, "slow");
        tokio::time::timeout(Duration::from_secs(2), server.served)
            .await
            .expect("the server returns once its connections closed")
            .unwrap()
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_to_a_second_and_log_once_per_ten_seconds() {
        let mut failures = AcceptFailures::default();
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let start = Instant::now();
        let pauses: Vec<Duration> = (0..12)
            .map(|i| failures.failed(&error, start + Duration::from_millis(i)))
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses[11], LONGEST_ACCEPT_PAUSE);
        assert_eq!(
            failures.unreported, 11,
            "one line logged for twelve failures"
        );
        failures.failed(&error, start + ACCEPT_REPORT_EVERY);
        assert_eq!(failures.unreported, 0, "a new line after ten seconds");
        failures.succeeded();
        assert_eq!(
            failures.failed(&error, start + ACCEPT_REPORT_EVERY),
            Duration::from_millis(10),
            "a success resets the pause"
        );
    }

    #[test]
    fn connections_stay_below_the_open_file_limit() {
        let limits = ConnectionLimits {
            max_connections: usize::MAX,
            ..ConnectionLimits::default()
        }
        .within_file_limit();
        if let Some(files) = open_file_limit() {
            assert!((limits.max_connections as u64) < files, "{limits:?}");
        }
    }
}
