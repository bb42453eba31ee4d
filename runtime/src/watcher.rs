//! kube's watcher, with its lists read as they arrive ([`crate::list_items`]): the same events
//! (`Init`, one `InitApply` per object, `InitDone`, then `Apply` and `Delete`), the same
//! `watcher::Config` and errors, so reflectors, stores and backoffs take it unchanged.
//!
//! kube's own lists each page into memory whole, as text, twice, then parsed: a process
//! watching 100,000 objects peaked at three times their JSON. Here an object is handed on as
//! soon as its last byte is in, and the list's text is never held.
//!
//! Everything else is kube's: a list (paged when `page_size` is set) then a watch from its
//! resource version with bookmarks; a watch that ends is resumed from the last version seen;
//! 410 Gone relists; a watch silent for longer than its timeout (plus a margin) is dropped and
//! resumed. Streaming lists (`sendInitialEvents`) are not used: the API servers this runs
//! against (1.20 and later) may not have them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{AsyncBufRead, AsyncBufReadExt, Stream, StreamExt};
use kube::api::{ListParams, VersionMatch, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event, ListSemantic};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::list_items::{SplitError, Splitter};

/// How much longer than its timeout a watch may stay silent before it counts as dead (a
/// connection that vanished without a reset).
const IDLE_MARGIN: Duration = Duration::from_secs(5);

/// The watch events of `api`'s objects as `config` selects them (see the module's comment).
pub fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let client: Client = api.clone().into_client();
    futures::stream::unfold(
        (api, client, config, State::Empty),
        |(api, client, config, mut state)| async move {
            loop {
                let (event, next) = step(&api, &client, &config, state).await;
                state = next;
                if let Some(event) = event {
                    return Some((event, (api, client, config, state)));
                }
            }
        },
    )
}

enum State<K> {
    /// Nothing listed: the next step starts a list.
    Empty,
    /// The list's next page is to be asked for.
    Paging { continue_token: Option<String> },
    /// A page's body is being read; `parsed` holds the objects of its last chunk.
    Reading {
        body: Pin<Box<dyn AsyncBufRead + Send>>,
        splitter: Box<Splitter>,
        parsed: VecDeque<K>,
    },
    /// Listed at `resource_version`: a watch is to be started from it.
    Listed { resource_version: String },
    /// Watching; `resource_version` is the last one seen.
    Watching {
        resource_version: String,
        stream: BoxStream<'static, kube::Result<WatchEvent<K>>>,
    },
}

type Step<K> = (Option<watcher::Result<Event<K>>>, State<K>);

async fn step<K>(
    api: &Api<K>,
    client: &Client,
    config: &watcher::Config,
    state: State<K>,
) -> Step<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match state {
        State::Empty => (
            Some(Ok(Event::Init)),
            State::Paging {
                continue_token: None,
            },
        ),
        State::Paging { continue_token } => {
            let mut params = list_params(config);
            params.continue_token = continue_token;
            let request = kube::core::Request::new(api.resource_url())
                .list(&params)
                .map_err(kube::Error::BuildRequest);
            let body = match request {
                Ok(request) => client.request_stream(request).await,
                Err(e) => Err(e),
            };
            match body {
                Ok(body) => (
                    None,
                    State::Reading {
                        body: Box::pin(body),
                        splitter: Box::default(),
                        parsed: VecDeque::new(),
                    },
                ),
                Err(e) => list_failed(e),
            }
        }
        State::Reading {
            mut body,
            mut splitter,
            mut parsed,
        } => {
            if let Some(object) = parsed.pop_front() {
                let state = State::Reading {
                    body,
                    splitter,
                    parsed,
                };
                return (Some(Ok(Event::InitApply(object))), state);
            }
            let chunk = match body.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) => return list_failed(kube::Error::ReadEvents(e)),
            };
            if chunk.is_empty() {
                return match splitter.finish() {
                    Ok(meta) => listed(meta),
                    Err(e) => list_failed(unreadable(e)),
                };
            }
            let read = chunk.len();
            let fed = splitter.feed(chunk, |bytes| {
                parsed.push_back(serde_json::from_slice(bytes).map_err(Unparsed::Object)?);
                Ok(())
            });
            body.consume_unpin(read);
            if let Err(e) = fed {
                return list_failed(match e {
                    Unparsed::Object(e) => kube::Error::SerdeError(e),
                    Unparsed::List(e) => unreadable(e),
                });
            }
            let state = State::Reading {
                body,
                splitter,
                parsed,
            };
            (None, state)
        }
        State::Listed { resource_version } => {
            match api.watch(&watch_params(config), &resource_version).await {
                Ok(stream) => (
                    None,
                    State::Watching {
                        resource_version,
                        stream: stream.boxed(),
                    },
                ),
                Err(e) => (
                    Some(Err(watcher::Error::WatchStartFailed(e))),
                    State::Listed { resource_version },
                ),
            }
        }
        State::Watching {
            resource_version,
            mut stream,
        } => {
            let next = match config.timeout {
                Some(0) => stream.next().await,
                timeout => {
                    let idle = Duration::from_secs(u64::from(timeout.unwrap_or(290))) + IDLE_MARGIN;
                    tokio::time::timeout(idle, stream.next())
                        .await
                        .ok()
                        .flatten()
                }
            };
            match next {
                Some(Ok(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                    changed(object, stream, Event::Apply)
                }
                Some(Ok(WatchEvent::Deleted(object))) => changed(object, stream, Event::Delete),
                Some(Ok(WatchEvent::Bookmark(mark))) => (
                    None,
                    State::Watching {
                        resource_version: mark.metadata.resource_version,
                        stream,
                    },
                ),
                Some(Ok(WatchEvent::Error(e))) => {
                    // 410 Gone: the version is too old to resume from; relist.
                    let state = if e.code == 410 {
                        State::Empty
                    } else {
                        State::Watching {
                            resource_version,
                            stream,
                        }
                    };
                    (Some(Err(watcher::Error::WatchError(e.boxed()))), state)
                }
                Some(Err(e)) => (
                    Some(Err(watcher::Error::WatchFailed(e))),
                    State::Watching {
                        resource_version,
                        stream,
                    },
                ),
                // Ended (the server's timeout) or silent too long: resume.
                None => (None, State::Listed { resource_version }),
            }
        }
    }
}

/// Why a page could not be read: an object serde could not parse, or a body not a list.
enum Unparsed {
    Object(serde_json::Error),
    List(SplitError),
}

impl From<SplitError> for Unparsed {
    fn from(e: SplitError) -> Self {
        Self::List(e)
    }
}

fn unreadable(e: SplitError) -> kube::Error {
    kube::Error::ReadEvents(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn list_failed<K>(e: kube::Error) -> Step<K> {
    tracing::debug!(error = %e, "list failed");
    (
        Some(Err(watcher::Error::InitialListFailed(e))),
        State::Empty,
    )
}

/// After a page's last byte: the next page, or the list's end at its resource version.
fn listed<K>(meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta) -> Step<K> {
    let continue_token = meta.continue_.filter(|c| !c.is_empty());
    let resource_version = meta.resource_version.filter(|v| !v.is_empty());
    match (continue_token, resource_version) {
        (Some(token), _) => (
            None,
            State::Paging {
                continue_token: Some(token),
            },
        ),
        (None, Some(resource_version)) => (
            Some(Ok(Event::InitDone)),
            State::Listed { resource_version },
        ),
        (None, None) => (Some(Err(watcher::Error::NoResourceVersion)), State::Empty),
    }
}

/// A watched change, which moves the version the watch resumes from.
fn changed<K: Resource>(
    object: K,
    stream: BoxStream<'static, kube::Result<WatchEvent<K>>>,
    event: fn(K) -> Event<K>,
) -> Step<K> {
    match object.resource_version().filter(|v| !v.is_empty()) {
        Some(resource_version) => (
            Some(Ok(event(object))),
            State::Watching {
                resource_version,
                stream,
            },
        ),
        None => (Some(Err(watcher::Error::NoResourceVersion)), State::Empty),
    }
}

/// The list request `config` asks for (kube's watcher asks the same).
fn list_params(config: &watcher::Config) -> ListParams {
    let (resource_version, version_match) = match config.list_semantic {
        ListSemantic::Any => (Some("0".to_string()), Some(VersionMatch::NotOlderThan)),
        ListSemantic::MostRecent => (None, None),
    };
    ListParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        resource_version,
        version_match,
        limit: config.page_size,
        continue_token: None,
        ..ListParams::default()
    }
}

fn watch_params(config: &watcher::Config) -> WatchParams {
    WatchParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        timeout: config.timeout,
        bookmarks: config.bookmarks,
        send_initial_events: false,
    }
}
