//! A run's log and artifacts: read from its bucket once the run has uploaded them (a window at
//! a time, searched in one pass, or streamed whole), or from its pod while it runs (followed,
//! for the page's live log).

use bytes::Bytes;
use futures::{AsyncReadExt as _, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::Api;
use prow_api::dashboard::log::{Flow, Head, Line, Lines, Range, Search, Tail};
use prow_runtime::storage::{ByteStream, RunFolder};

/// Lines a page shows at once from the start of a log, or from a line asked for.
pub const WINDOW: usize = 2000;
/// Lines shown from the end of a long log.
pub const TAIL: usize = 2000;
/// Matches a search shows.
pub const MATCHES: usize = 500;
/// Longest wait for the bucket's first answer: a store that does not answer makes a notice on
/// the page, not a page that hangs.
pub const STORAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `read`, or an error saying the bucket did not answer within [`STORAGE_TIMEOUT`].
pub async fn in_time<T>(
    read: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(STORAGE_TIMEOUT, read)
        .await
        .map_err(|_| anyhow::anyhow!("the bucket did not answer within {STORAGE_TIMEOUT:?}"))?
}

/// The stored log's name in a run's folder.
pub const BUILD_LOG: &str = "build-log.txt";

/// Reads `stream` into `lines` until it ends or `read` is done; whether it ended.
pub async fn scan(
    mut stream: impl Stream<Item = anyhow::Result<Bytes>> + Unpin,
    lines: &mut Lines,
    read: &mut (dyn FnMut(Line) -> Flow + Send),
) -> anyhow::Result<bool> {
    while let Some(chunk) = stream.next().await {
        if !lines.feed(&chunk?, read) {
            return Ok(false);
        }
    }
    lines.finish(read);
    Ok(true)
}

/// What of a log a page shows.
#[derive(Debug, Default)]
pub struct Window {
    /// The lines.
    pub lines: Vec<Line>,
    /// Whether the log goes on after them.
    pub more_after: bool,
    /// The log's size in bytes, when known.
    pub size: Option<u64>,
}

/// Where a run's log is read from.
pub enum Source {
    /// Its bucket.
    Stored(RunFolder),
    /// Its pod's container (a run that is not decorated, or whose log is not stored yet).
    Pod {
        /// The pods of its namespace.
        pods: Box<Api<Pod>>,
        /// The pod.
        name: String,
        /// The container.
        container: Option<String>,
    },
}

impl Source {
    /// The whole log as a stream of chunks; None when there is none (yet).
    pub async fn open(&self) -> anyhow::Result<Option<ByteStream>> {
        match self {
            Source::Stored(folder) => {
                in_time(folder.store.stream(&format!("{}/{BUILD_LOG}", folder.path))).await
            }
            Source::Pod {
                pods,
                name,
                container,
            } => {
                let params = LogParams {
                    container: container.clone(),
                    ..Default::default()
                };
                match pods.log_stream(name, &params).await {
                    Ok(reader) => Ok(Some(chunks(reader).boxed())),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 400 => Ok(None),
                    Err(e) => {
                        Err(anyhow::Error::new(e).context(format!("reading pod {name}'s log")))
                    }
                }
            }
        }
    }

    /// The log's size, when the source knows it.
    pub async fn size(&self) -> anyhow::Result<Option<u64>> {
        match self {
            Source::Stored(folder) => {
                in_time(folder.store.size(&format!("{}/{BUILD_LOG}", folder.path))).await
            }
            Source::Pod { .. } => Ok(None),
        }
    }

    /// `WINDOW` lines from line `from` (1 for the start); None when there is no log.
    pub async fn window(&self, from: u64) -> anyhow::Result<Option<Window>> {
        let Some(stream) = self.open().await? else {
            return Ok(None);
        };
        let size = self.size().await.ok().flatten();
        let mut lines = Lines::default();
        let mut range = Range::new(from.max(1), from.max(1) + WINDOW as u64 - 1);
        let ended = scan(stream, &mut lines, &mut |l| range.take(l)).await?;
        Ok(Some(Window {
            more_after: !ended,
            lines: range.lines,
            size,
        }))
    }

    /// The first `n` lines only (a fast first byte for a huge log).
    pub async fn head(&self, n: usize) -> anyhow::Result<Option<Window>> {
        let Some(stream) = self.open().await? else {
            return Ok(None);
        };
        let size = self.size().await.ok().flatten();
        let mut lines = Lines::default();
        let mut head = Head::new(n);
        let ended = scan(stream, &mut lines, &mut |l| head.take(l)).await?;
        Ok(Some(Window {
            more_after: !ended,
            lines: head.lines,
            size,
        }))
    }

    /// The last `n` lines and how many lines the log has.
    pub async fn tail(&self, n: usize) -> anyhow::Result<Option<(Vec<Line>, u64)>> {
        let Some(stream) = self.open().await? else {
            return Ok(None);
        };
        let mut lines = Lines::default();
        let mut tail = Tail::new(n);
        scan(stream, &mut lines, &mut |l| tail.take(l)).await?;
        Ok(Some((tail.lines.into(), lines.count())))
    }

    /// The lines holding `text`.
    pub async fn search(&self, text: &str) -> anyhow::Result<Option<Search>> {
        let Some(mut search) = Search::new(text, MATCHES) else {
            return Ok(None);
        };
        let Some(stream) = self.open().await? else {
            return Ok(None);
        };
        let mut lines = Lines::default();
        scan(stream, &mut lines, &mut |l| search.take(l)).await?;
        Ok(Some(search))
    }
}

/// A pod log reader as a stream of chunks.
pub fn chunks(
    reader: impl futures::AsyncBufRead + Send + Unpin + 'static,
) -> impl Stream<Item = anyhow::Result<Bytes>> + Send {
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((
                Err(anyhow::Error::new(e).context("reading the pod's log")),
                None,
            )),
        }
    })
}

/// The container whose log is the run's: the first one that is not the decoration's sidecar.
pub fn log_container(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .map(|c| c.name.clone())
        .find(|n| n != "sidecar")
}

/// A run's artifacts: their paths under `artifacts/`, and their sizes are not read (one list).
pub async fn artifacts(folder: &RunFolder) -> anyhow::Result<Vec<String>> {
    let prefix = format!("{}/artifacts/", folder.path);
    Ok(in_time(folder.store.list(&prefix))
        .await?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_that_does_not_answer_is_an_error_after_the_timeout_not_a_hang() {
        let started = tokio::time::Instant::now();
        let never = in_time(futures::future::pending::<anyhow::Result<()>>()).await;
        let e = never.expect_err("times out");
        assert!(e.to_string().contains("did not answer within 5s"), "{e}");
        assert_eq!(started.elapsed(), STORAGE_TIMEOUT);
        assert_eq!(in_time(async { anyhow::Ok(7) }).await.expect("in time"), 7);
    }

    #[tokio::test]
    async fn a_scan_stops_reading_once_its_reader_is_done() {
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pulled.clone();
        let stream = futures::stream::iter(0..1000).map(move |i| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Bytes::from(format!("line {i}\n")))
        });
        let mut lines = Lines::default();
        let mut head = Head::new(5);
        let ended = scan(stream, &mut lines, &mut |l| head.take(l))
            .await
            .expect("scan");
        assert!(!ended);
        assert_eq!(head.lines.len(), 5);
        assert_eq!(
            pulled.load(std::sync::atomic::Ordering::SeqCst),
            5,
            "no chunk read past the head"
        );
    }
}
