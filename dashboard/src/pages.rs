//! The pages, rendered on the server from [`crate::cache::Caches`] and a few direct reads (a
//! run's job and pod, its bucket): `/` (jobs), `/jobs/NS/NAME` (a run, `?raw`, `?q=`,
//! `?from=`), its live log (`/log/live`, server-sent events), its tail (`/log/tail`), its
//! artifacts, `/history/JOB`, `/pools`, `/definitions`, `/badge.svg`, and the static files.
//! Every page says what went wrong in words: an unknown name is a 404 page, a bad filter a 400
//! naming it, a storage outage a notice on the run's page (the live part still works).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use prow_api::dashboard::ansi::Painter;
use prow_api::dashboard::filter::{self, NamePattern};
use prow_api::dashboard::log::{Line, Lines};
use prow_api::dashboard::row::{Interner, JobRow};
use prow_api::dashboard::svg::{self, state_class, Point, Verdict};
use prow_api::dashboard::when;
use prow_api::wire::LeanJob;
use prow_api::{ProwJob, ProwJobState};
use prow_runtime::storage::{Credentials, RunFolder};
use warp::http::StatusCode;
use warp::reply::Reply;
use warp::Filter;

use crate::cache::Caches;
use crate::logs::{self, Source, Window};
use crate::metrics::Metrics;

/// What every page reads.
pub struct App {
    /// The watch caches.
    pub caches: Caches,
    /// For the direct reads of a run's job.
    pub client: kube::Client,
    /// For a run's pod and its log, in the cluster the pod runs in.
    pub clusters: crate::clusters::BuildClients,
    /// Credentials of the bucket runs upload to.
    pub credentials: Credentials,
    /// Where a job naming no pod namespace runs its pod (the operator's `--pod-namespace`).
    pub pod_namespace: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

type Reply_ = warp::reply::Response;

const CSS: &str = include_str!("../static/app.css");
const JS: &str = include_str!("../static/app.js");

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn with_headers(mut response: Reply_) -> Reply_ {
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        warp::http::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        warp::http::HeaderValue::from_static("same-origin"),
    );
    response
}

fn html(status: StatusCode, body: String) -> Reply_ {
    let mut r = warp::reply::with_status(warp::reply::html(body), status).into_response();
    r.headers_mut().insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-store"),
    );
    with_headers(r)
}

fn render(status: StatusCode, page: &impl Template) -> Reply_ {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("<!doctype html><title>error</title><p>The page could not be drawn: {e}</p>"),
        ),
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply_ {
    render(
        status,
        &ErrorPage {
            title: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            message: message.into(),
        },
    )
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The link to `job`'s history page.
fn history_link(job: &str) -> String {
    format!(
        "/history/{}",
        percent_encoding::utf8_percent_encode(job, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// A pull request as a row shows it.
pub struct PullView {
    number: i64,
    link: String,
    author: String,
    author_link: String,
    sha: String,
    commit_link: String,
    title: String,
}

/// A job as the lists show it.
pub struct JobView {
    link: String,
    namespace: String,
    name: String,
    job: String,
    history: String,
    state: String,
    class: &'static str,
    job_type: String,
    repo: String,
    repo_link: String,
    base_ref: String,
    base_sha: String,
    base_link: String,
    pulls: Vec<PullView>,
    started: String,
    started_iso: String,
    ago: String,
    duration: String,
    cluster: String,
    description: String,
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

impl JobView {
    fn of(row: &JobRow, now: i64, place: Option<(usize, usize)>) -> Self {
        let cluster = match (&row.test_cluster, &row.pool, place) {
            (Some(c), Some(p), _) => format!("holds {c} (pool {p})"),
            (Some(c), None, _) => format!("holds {c}"),
            (None, Some(p), Some((i, n))) => {
                format!("waits for pool {p}: {} of {n} in line", ordinal(i + 1))
            }
            (None, Some(p), None) if !row.is_complete() => format!("pool {p}"),
            _ => String::new(),
        };
        JobView {
            link: format!("/jobs/{}/{}", row.namespace, row.name),
            namespace: row.namespace.to_string(),
            name: row.name.to_string(),
            job: row.job.to_string(),
            history: history_link(&row.job),
            state: row.state.as_str().to_owned(),
            class: state_class(row.state),
            job_type: row
                .job_type
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            repo: row.repo.to_string(),
            repo_link: row.repo_link.clone(),
            base_ref: row.base_ref.to_string(),
            base_sha: row.base_sha.clone(),
            base_link: row.base_link.clone(),
            pulls: row
                .pulls
                .iter()
                .map(|p| PullView {
                    number: p.number,
                    link: p.link.clone(),
                    author: p.author.to_string(),
                    author_link: p.author_link.clone(),
                    sha: p.sha.clone(),
                    commit_link: p.commit_link.clone(),
                    title: p.title.clone(),
                })
                .collect(),
            started: when::utc(row.started),
            started_iso: when::rfc3339(row.started),
            ago: when::ago(row.started, now),
            duration: if row.is_complete() || row.state == ProwJobState::Pending {
                when::duration(row.duration(now))
            } else {
                String::new()
            },
            cluster,
            description: row.description.clone(),
        }
    }
}

/// The places of waiting rows in their pools' lines, read once per pool.
fn places(app: &App, rows: &[Arc<JobRow>]) -> Vec<Option<(usize, usize)>> {
    let index = app.caches.read();
    let mut lines: HashMap<(String, String), Vec<Arc<JobRow>>> = HashMap::new();
    rows.iter()
        .map(|row| {
            let pool = row.pool.as_ref()?;
            if row.state != ProwJobState::Triggered || row.test_cluster.is_some() {
                return None;
            }
            let ns = row.pods_namespace().to_string();
            let line = lines
                .entry((ns.clone(), pool.to_string()))
                .or_insert_with(|| index.waiting_line(&ns, pool));
            let at = line
                .iter()
                .position(|r| r.namespace == row.namespace && r.name == row.name)?;
            Some((at, line.len()))
        })
        .collect()
}

/// The jobs page.
#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    title: String,
    rows: Vec<JobView>,
    errors: Vec<String>,
    total: usize,
    first: usize,
    last: usize,
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
    f_job: String,
    f_state: String,
    f_type: String,
    f_repo: String,
    f_author: String,
    f_pull: String,
    f_namespace: String,
    states: Vec<&'static str>,
    types: Vec<&'static str>,
    namespaces: Vec<String>,
    filtered: bool,
}

const STATES: [&str; 7] = [
    "triggered",
    "pending",
    "success",
    "failure",
    "aborted",
    "error",
    "scheduling",
];
const TYPES: [&str; 4] = ["presubmit", "postsubmit", "periodic", "batch"];

fn jobs_page(app: &App, query: &str) -> Reply_ {
    let pairs = pairs(query);
    let value = |k: &str| get(&pairs, k).unwrap_or_default().trim().to_owned();
    let mut page = JobsPage {
        title: "Jobs".into(),
        rows: Vec::new(),
        errors: Vec::new(),
        total: 0,
        first: 0,
        last: 0,
        page: 1,
        pages: 1,
        prev: None,
        next: None,
        f_job: value("job"),
        f_state: value("state"),
        f_type: value("type"),
        f_repo: value("repo"),
        f_author: value("author"),
        f_pull: value("pull"),
        f_namespace: value("namespace"),
        states: STATES.to_vec(),
        types: TYPES.to_vec(),
        namespaces: app.caches.namespaces.clone(),
        filtered: false,
    };
    let parsed = filter::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (filter, paging) = match parsed {
        Ok(ok) => ok,
        Err(errors) => {
            page.errors = errors.iter().map(ToString::to_string).collect();
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let found = app.caches.read().find(&filter, paging);
    let now = now();
    let places = places(app, &found.rows);
    page.rows = found
        .rows
        .iter()
        .zip(places)
        .map(|(r, p)| JobView::of(r, now, p))
        .collect();
    page.total = found.total;
    page.page = paging.number;
    page.pages = paging.count(found.total);
    page.first = if page.rows.is_empty() {
        0
    } else {
        paging.offset() + 1
    };
    page.last = paging.offset() + page.rows.len();
    page.filtered = !filter.is_empty();
    let link = |n: usize| {
        let mut kept: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(k, v)| k != "page" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let n = n.to_string();
        kept.push(("page", &n));
        format!("/?{}", encode(&kept))
    };
    page.prev = (paging.number > 1).then(|| link(paging.number - 1));
    page.next = (paging.number < page.pages).then(|| link(paging.number + 1));
    render(StatusCode::OK, &page)
}

/// A size in words: `52.4 MB`, `900 KB`, `12 bytes`.
fn megabytes(bytes: u64) -> String {
    match bytes {
        0..=9_999 => format!("{bytes} bytes"),
        10_000..=9_999_999 => format!("{} KB", bytes / 1000),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// A rendered log line.
struct LineView {
    number: u64,
    html: String,
    cut: bool,
}

fn paint(lines: &[Line], painter: &mut Painter) -> Vec<LineView> {
    lines
        .iter()
        .map(|l| LineView {
            number: l.number,
            html: painter.paint(&l.text()),
            cut: l.cut,
        })
        .collect()
}

/// A timestamp of a run's life.
struct Moment {
    what: &'static str,
    utc: String,
    iso: String,
}

/// A run's page.
#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    title: String,
    run: JobView,
    moments: Vec<Moment>,
    pod: String,
    pod_namespace: String,
    pod_phase: String,
    test_cluster: String,
    url: String,
    build_id: String,
    older: Option<String>,
    newer: Option<String>,
    live: Option<String>,
    log: Vec<LineView>,
    log_note: String,
    log_error: String,
    more_from: Option<u64>,
    tail_link: Option<String>,
    search: String,
    matches: Option<(u64, Vec<LineView>)>,
    raw: String,
    artifacts: Vec<(String, String)>,
    artifacts_error: String,
    stored_at: String,
}

async fn job_of(app: &App, ns: &str, name: &str) -> Result<ProwJob, Reply_> {
    if !app.caches.shows(ns) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("Namespace {ns:?} is not one this dashboard shows."),
        ));
    }
    let api: Api<LeanJob> = Api::namespaced(app.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(LeanJob(job))) => Ok(job),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("There is no ProwJob {ns}/{name}: the name is wrong, or the job was deleted (retention deletes finished jobs after a while)."),
        )),
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Err(error(
            StatusCode::NOT_FOUND,
            format!("There is no ProwJob {ns}/{name} this dashboard may read."),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_GATEWAY,
            format!("The API server did not answer for ProwJob {ns}/{name}: {e}"),
        )),
    }
}

fn pod_namespace_of(app: &App, job: &ProwJob) -> String {
    prow_api::pod::pod_namespace(job, &app.pod_namespace).to_owned()
}

/// The pods of the namespace `job`'s pod runs in, in the cluster it runs in, and that pod when
/// it is there; or why that cluster cannot be read.
async fn pod_of(app: &App, job: &ProwJob) -> Result<(Api<Pod>, Option<Pod>), String> {
    let client = app.clusters.for_job(job).await?;
    let pods: Api<Pod> = Api::namespaced(client, &pod_namespace_of(app, job));
    let name = job
        .status
        .as_ref()
        .map(|s| s.pod_name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| job.metadata.name.clone())
        .unwrap_or_default();
    let pod = pods.get_opt(&name).await.ok().flatten();
    Ok((pods, pod))
}

fn folder_of(app: &App, job: &ProwJob) -> Result<Option<RunFolder>, String> {
    RunFolder::of_job_with(job, &app.credentials).map_err(|e| format!("{e:#}"))
}

async fn run_page(app: Arc<App>, ns: String, name: String, query: String) -> Reply_ {
    let (ns, name) = (decode(&ns), decode(&name));
    let job = match job_of(&app, &ns, &name).await {
        Ok(job) => job,
        Err(page) => return page,
    };
    let pairs = pairs(&query);
    let (pods, pod, unreadable) = match pod_of(&app, &job).await {
        Ok((pods, pod)) => (Some(pods), pod, None),
        Err(why) => (None, None, Some(why)),
    };
    let folder = folder_of(&app, &job);
    let complete = job.is_complete();
    let pod_source = pods.zip(pod.as_ref()).map(|(pods, p)| Source::Pod {
        pods: Box::new(pods),
        name: p.metadata.name.clone().unwrap_or_default(),
        container: logs::log_container(p),
    });
    let source = match &folder {
        Ok(Some(f)) if complete || pod.is_none() => {
            let stored = Source::Stored(RunFolder {
                store: f.store.clone(),
                path: f.path.clone(),
            });
            // A finished run whose upload did not happen keeps its log in its pod while the
            // pod is there (the bucket is asked only then).
            if pod_source.is_some() && matches!(stored.size().await, Ok(None)) {
                pod_source
            } else {
                Some(stored)
            }
        }
        _ => pod_source,
    };
    if pairs.iter().any(|(k, _)| k == "raw") {
        return raw(source).await;
    }
    let mut interner = Interner::default();
    let row = JobRow::of(&job, &mut interner);
    let now = now();
    let (older, newer) = app.caches.read().neighbours(&row);
    let run_link = |r: Option<Arc<JobRow>>| r.map(|r| format!("/jobs/{}/{}", r.namespace, r.name));
    let status = job.status.clone().unwrap_or_default();
    let mut moments = vec![Moment {
        what: "created",
        utc: when::utc(row.created),
        iso: when::rfc3339(row.created),
    }];
    for (what, t) in [
        ("started", status.start_time.as_ref()),
        ("pod pending", status.pending_time.as_ref()),
        ("completed", status.completion_time.as_ref()),
    ] {
        if let Some(t) = t {
            moments.push(Moment {
                what,
                utc: when::utc(t.0.as_second()),
                iso: when::rfc3339(t.0.as_second()),
            });
        }
    }
    let test_cluster = status
        .test_cluster
        .clone()
        .map(|c| {
            let phase = app
                .caches
                .all_clusters()
                .iter()
                .find(|tc| tc.metadata.name.as_deref() == Some(&c))
                .and_then(|tc| tc.status.as_ref().and_then(|s| s.phase))
                .map(|p| format!(" ({p:?})"))
                .unwrap_or_default();
            format!("{c}{phase}")
        })
        .unwrap_or_default();
    let base = format!("/jobs/{ns}/{name}");
    let place = places(&app, &[Arc::new(row.clone())]).pop().flatten();
    let mut page = RunPage {
        title: format!("{} {}", row.job, row.name),
        run: JobView::of(&row, now, place),
        moments,
        pod: pod
            .as_ref()
            .and_then(|p| p.metadata.name.clone())
            .unwrap_or_else(|| match (&unreadable, status.pod_name.is_empty()) {
                (_, true) => String::new(),
                (Some(why), false) => format!("{} (cannot be read: {why})", status.pod_name),
                (None, false) => format!("{} (gone)", status.pod_name),
            }),
        pod_namespace: pod_namespace_of(&app, &job),
        pod_phase: pod
            .as_ref()
            .and_then(|p| p.status.as_ref()?.phase.clone())
            .unwrap_or_default(),
        test_cluster,
        url: status.url.clone(),
        build_id: status.build_id.clone(),
        older: run_link(older),
        newer: run_link(newer),
        live: None,
        log: Vec::new(),
        log_note: String::new(),
        log_error: String::new(),
        more_from: None,
        tail_link: None,
        search: get(&pairs, "q").unwrap_or_default().to_owned(),
        matches: None,
        raw: format!("{base}?raw"),
        artifacts: Vec::new(),
        artifacts_error: String::new(),
        stored_at: String::new(),
    };
    match &folder {
        // A running job uploads its artifacts when it ends: they are listed after.
        Ok(Some(f)) if !complete => page.stored_at = f.url(),
        Ok(Some(f)) => {
            page.stored_at = f.url();
            match logs::artifacts(f).await {
                Ok(names) => {
                    page.artifacts = names
                        .into_iter()
                        .map(|n| (format!("{base}/artifacts/{n}"), n))
                        .collect()
                }
                Err(e) => page.artifacts_error = format!("The artifacts cannot be listed: {e:#}"),
            }
        }
        Ok(None) => {}
        Err(e) => page.log_error = format!("This run's storage is not readable: {e}"),
    }
    let mut painter = Painter::default();
    // An unfinished job's log is followed live, also before its pod exists (the stream says it
    // waits, then follows the pod once it runs).
    let live = !complete;
    if live {
        page.live = Some(format!("{base}/log/live"));
    }
    if let Some(source) = source.as_ref() {
        let from = get(&pairs, "from").and_then(|f| f.parse::<u64>().ok());
        if !page.search.is_empty() {
            match source.search(&page.search).await {
                Ok(Some(found)) => {
                    page.matches = Some((found.total, paint(&found.lines, &mut painter)))
                }
                Ok(None) => page.log_note = "Nothing to search.".into(),
                Err(e) => page.log_error = format!("The log cannot be searched: {e:#}"),
            }
        } else if !live {
            let read = match from {
                Some(from) => source.window(from).await,
                None => source.head(logs::WINDOW).await,
            };
            match read {
                Ok(Some(Window {
                    lines,
                    more_after,
                    size,
                })) => {
                    if more_after {
                        page.more_from = lines.last().map(|l| l.number + 1);
                        page.tail_link = Some(format!("{base}/log/tail"));
                        if let Some(size) = size {
                            page.log_note = format!(
                                "The log is {}; its first {} lines are shown, then its last ones.",
                                megabytes(size),
                                lines.len()
                            );
                        }
                    }
                    page.log = paint(&lines, &mut painter);
                }
                Ok(None) if complete => page.log_note = "No log was stored for this run.".into(),
                Ok(None) => {}
                Err(e) => {
                    page.log_error = format!("The stored log cannot be read: {e:#}");
                }
            }
        }
    } else if complete {
        page.log_note = "This run has no stored log and its pod is gone.".into();
    }
    render(StatusCode::OK, &page)
}

/// Streams `stream`'s chunks as a response body.
fn stream_body(
    mut stream: prow_runtime::storage::ByteStream,
    content_type: &'static str,
) -> Reply_ {
    let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(format!("{e:#}")));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let mut r = warp::reply::stream(rx).into_response();
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static(content_type),
    );
    with_headers(r)
}

async fn raw(source: Option<Source>) -> Reply_ {
    let Some(source) = source else {
        return error(StatusCode::NOT_FOUND, "This run has no log to read.");
    };
    match source.open().await {
        Ok(Some(stream)) => stream_body(stream, "text/plain; charset=utf-8"),
        Ok(None) => error(StatusCode::NOT_FOUND, "This run has no log yet."),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("The log cannot be read: {e:#}"),
        ),
    }
}

/// Lines as HTML, for the script to add to the page.
#[derive(Template)]
#[template(path = "lines.html")]
struct LinesFragment {
    lines: Vec<LineView>,
    note: String,
}

async fn tail_fragment(app: Arc<App>, ns: String, name: String) -> Reply_ {
    let (ns, name) = (decode(&ns), decode(&name));
    let job = match job_of(&app, &ns, &name).await {
        Ok(job) => job,
        Err(page) => return page,
    };
    let folder = match folder_of(&app, &job) {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, "This run stores no log."),
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    match Source::Stored(folder).tail(logs::TAIL).await {
        Ok(Some((lines, total))) => render(
            StatusCode::OK,
            &LinesFragment {
                note: format!("The last {} of {total} lines.", lines.len()),
                lines: paint(&lines, &mut Painter::default()),
            },
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, "No log was stored for this run."),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("The stored log cannot be read: {e:#}"),
        ),
    }
}

/// An artifact's content type: the bucket's, except that pages and pictures that can carry
/// scripts (what a test wrote is not trusted) are shown as text.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html" | "htm" | "svg" | "xhtml") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        _ => prow_runtime::storage::content_type(name),
    }
}

async fn artifact(app: Arc<App>, ns: String, name: String, tail: String) -> Reply_ {
    let (ns, name, path) = (decode(&ns), decode(&name), decode(&tail));
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{path:?} is not an artifact's path."),
        );
    }
    let job = match job_of(&app, &ns, &name).await {
        Ok(job) => job,
        Err(page) => return page,
    };
    let folder = match folder_of(&app, &job) {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, "This run stores no artifacts."),
        Err(e) => return error(StatusCode::BAD_GATEWAY, e),
    };
    match folder
        .store
        .stream(&format!("{}/artifacts/{path}", folder.path))
        .await
    {
        Ok(Some(stream)) => {
            let mut r = stream_body(stream, content_type(&path));
            if let Ok(v) = warp::http::HeaderValue::from_str(&format!(
                "inline; filename=\"{}\"",
                path.rsplit('/')
                    .next()
                    .unwrap_or("artifact")
                    .replace('"', "")
            )) {
                r.headers_mut().insert("content-disposition", v);
            }
            r
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("This run has no artifact {path}."),
        ),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("The artifact cannot be read: {e:#}"),
        ),
    }
}

/// How long a live log may be quiet before the stream checks that its browser is still there.
const QUIET: std::time::Duration = std::time::Duration::from_secs(15);

/// One server-sent batch of lines: `[number, html]` pairs.
#[derive(serde::Serialize)]
struct Batch(Vec<(u64, String)>);

type Events = mpsc::Sender<Result<warp::sse::Event, Infallible>>;

async fn send(tx: &mut Events, event: warp::sse::Event) -> bool {
    tx.send(Ok(event)).await.is_ok()
}

/// Follows a running job's pod log into `tx` from line `after + 1`: `lines` events (their id the
/// last line's number, so a reconnecting browser resumes where it was), `waiting` while there is
/// no pod log yet, and `end` with the job's state when it has ended.
async fn follow(app: Arc<App>, ns: String, name: String, mut after: u64, mut tx: Events) {
    app.metrics.live_logs.inc();
    let mut painter = Painter::default();
    let mut painted_to = 0u64;
    loop {
        let job = match job_of(&app, &ns, &name).await {
            Ok(job) => job,
            Err(_) => {
                let _ = send(
                    &mut tx,
                    warp::sse::Event::default().event("end").data("gone"),
                )
                .await;
                break;
            }
        };
        // A cluster that cannot be read is tried again on the next turn, as a missing pod.
        let (pods, pod) = match pod_of(&app, &job).await {
            Ok((pods, pod)) => (Some(pods), pod),
            Err(_) => (None, None),
        };
        let container = pod.as_ref().and_then(logs::log_container);
        let opened = match (&pods, &pod) {
            (Some(pods), Some(p)) => {
                let params = kube::api::LogParams {
                    container,
                    follow: !job.is_complete(),
                    ..Default::default()
                };
                pods.log_stream(&p.metadata.name.clone().unwrap_or_default(), &params)
                    .await
                    .ok()
            }
            _ => None,
        };
        if let Some(reader) = opened {
            let mut chunks = std::pin::pin!(logs::chunks(reader));
            let mut lines = Lines::default();
            loop {
                // A quiet log is waited on in turns, so a browser gone meanwhile ends the
                // stream within 15 s rather than when the job next prints.
                let chunk = match tokio::time::timeout(QUIET, chunks.next()).await {
                    Ok(Some(Ok(chunk))) => chunk,
                    Ok(_) => break,
                    Err(_) if tx.is_closed() => {
                        app.metrics.live_logs.dec();
                        return;
                    }
                    Err(_) => continue,
                };
                let mut batch = Vec::new();
                lines.feed(&chunk, &mut |l| {
                    if l.number > painted_to {
                        let html = painter.paint(&l.text());
                        painted_to = l.number;
                        if l.number > after {
                            batch.push((l.number, html));
                        }
                    }
                    prow_api::dashboard::log::Flow::More
                });
                if let Some((last, _)) = batch.last() {
                    let id = last.to_string();
                    let Ok(event) = warp::sse::Event::default()
                        .event("lines")
                        .id(id)
                        .json_data(Batch(std::mem::take(&mut batch)))
                    else {
                        break;
                    };
                    after = painted_to;
                    if !send(&mut tx, event).await {
                        app.metrics.live_logs.dec();
                        return;
                    }
                }
            }
            let mut last = Vec::new();
            lines.finish(&mut |l| {
                if l.number > after {
                    last.push((l.number, painter.paint(&l.text())));
                }
                prow_api::dashboard::log::Flow::More
            });
            if let Some((n, _)) = last.last() {
                // An unfinished last line is sent when the stream ends; a reconnect re-reads it
                // whole, so its id stays before it.
                let id = (n - 1).to_string();
                if let Ok(event) = warp::sse::Event::default()
                    .event("partial")
                    .id(id)
                    .json_data(Batch(last))
                {
                    if !send(&mut tx, event).await {
                        break;
                    }
                }
            }
        } else {
            let why = job
                .status
                .as_ref()
                .map(|s| s.description.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "waiting for the job's pod".into());
            if !send(
                &mut tx,
                warp::sse::Event::default().event("waiting").data(why),
            )
            .await
            {
                break;
            }
        }
        if job.is_complete() {
            let _ = send(
                &mut tx,
                warp::sse::Event::default()
                    .event("end")
                    .data(job.state().as_str()),
            )
            .await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if tx.is_closed() {
            break;
        }
    }
    app.metrics.live_logs.dec();
}

fn live(app: Arc<App>, ns: String, name: String, last_event_id: Option<String>) -> Reply_ {
    let (ns, name) = (decode(&ns), decode(&name));
    if !app.caches.shows(&ns) {
        return error(
            StatusCode::NOT_FOUND,
            format!("Namespace {ns:?} is not one this dashboard shows."),
        );
    }
    let after = last_event_id
        .and_then(|id| id.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(follow(app, ns, name, after, tx));
    let mut r = warp::sse::reply(
        warp::sse::keep_alive()
            .interval(std::time::Duration::from_secs(15))
            .stream(rx),
    )
    .into_response();
    r.headers_mut().insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-store"),
    );
    with_headers(r)
}

/// A job's history.
#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    title: String,
    job: String,
    runs: Vec<JobView>,
    chart: String,
    passed: usize,
    finished: usize,
    badge: String,
}

/// Runs a history page shows.
pub const HISTORY: usize = 100;

fn history_page(app: &App, job: String) -> Reply_ {
    let job = decode(&job);
    let runs = app.caches.read().runs_of(&job, HISTORY);
    if runs.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("No job named {job:?} has runs here."),
        );
    }
    let now = now();
    let points: Vec<Point> = runs
        .iter()
        .rev()
        .map(|r| Point {
            name: r.name.to_string(),
            seconds: r.duration(now),
            state: r.state,
        })
        .collect();
    let finished = runs.iter().filter(|r| r.is_complete()).count();
    let passed = runs
        .iter()
        .filter(|r| r.state == ProwJobState::Success)
        .count();
    render(
        StatusCode::OK,
        &HistoryPage {
            title: format!("History of {job}"),
            badge: format!("/badge.svg?{}", encode(&[("job", &job)])),
            job,
            chart: svg::history(&points),
            runs: runs.iter().map(|r| JobView::of(r, now, None)).collect(),
            passed,
            finished,
        },
    )
}

/// A TestCluster as the pools page shows it.
struct ClusterView {
    name: String,
    phase: String,
    holder: String,
    holder_link: Option<String>,
    since: String,
    until: String,
    health: String,
}

/// A pool.
struct PoolView {
    namespace: String,
    name: String,
    counts: String,
    clusters: Vec<ClusterView>,
    line: Vec<JobView>,
}

/// The pools page.
#[derive(Template)]
#[template(path = "pools.html")]
struct PoolsPage {
    title: String,
    pools: Vec<PoolView>,
}

fn pools_page(app: &App) -> Reply_ {
    let clusters = app.caches.all_clusters();
    let now = now();
    let index = app.caches.read();
    // A pool is named by its clusters (a TestClusterPool object only adds settings), by a
    // TestClusterPool, or by the jobs waiting for it.
    let mut pools: std::collections::BTreeSet<(String, String)> = app
        .caches
        .all_pools()
        .iter()
        .map(|p| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    pools.extend(clusters.iter().map(|c| {
        (
            c.metadata.namespace.clone().unwrap_or_default(),
            c.spec.pool.clone(),
        )
    }));
    pools.extend(index.waiting_pools());
    let views = pools
        .into_iter()
        .map(|(ns, name)| {
            let mut members: Vec<ClusterView> = clusters
                .iter()
                .filter(|c| c.metadata.namespace.as_deref() == Some(&ns) && c.spec.pool == name)
                .map(|c| {
                    let status = c.status.clone().unwrap_or_default();
                    let lease = status.lease.clone();
                    let holder = lease.as_ref().map(|l| l.holder.clone()).unwrap_or_default();
                    let holder_link = holder
                        .split_once('/')
                        .filter(|_| lease.as_ref().is_some_and(|l| l.holder_uid.is_some()))
                        .map(|(hns, hname)| format!("/jobs/{hns}/{hname}"));
                    let health = status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == prow_api::lease::HEALTHY)
                        .map(|c| {
                            let word = match c.status.as_str() {
                                "True" => "healthy",
                                "False" => "unhealthy",
                                _ => "unknown",
                            };
                            if c.message.is_empty() {
                                word.to_owned()
                            } else {
                                format!("{word}: {}", c.message)
                            }
                        })
                        .unwrap_or_else(|| "not checked".into());
                    ClusterView {
                        name: c.metadata.name.clone().unwrap_or_default(),
                        phase: status
                            .phase
                            .map(|p| format!("{p:?}"))
                            .unwrap_or_else(|| "Vacant".into()),
                        holder,
                        holder_link,
                        since: lease
                            .as_ref()
                            .map(|l| when::ago(l.since.0.as_second(), now))
                            .unwrap_or_default(),
                        until: lease
                            .as_ref()
                            .and_then(|l| l.until.as_ref())
                            .map(|u| when::utc(u.0.as_second()))
                            .unwrap_or_default(),
                        health,
                    }
                })
                .collect();
            members.sort_by(|a, b| a.name.cmp(&b.name));
            // Counted from the clusters themselves (the pool's status may lag or be unset).
            let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
            for c in &members {
                *counts.entry(c.phase.as_str()).or_default() += 1;
            }
            let counts = if counts.is_empty() {
                "no clusters".to_owned()
            } else {
                counts
                    .iter()
                    .map(|(phase, n)| format!("{n} {}", phase.to_lowercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let line = index.waiting_line(&ns, &name);
            let n = line.len();
            PoolView {
                line: line
                    .iter()
                    .enumerate()
                    .map(|(i, r)| JobView::of(r, now, Some((i, n))))
                    .collect(),
                namespace: ns,
                name,
                counts,
                clusters: members,
            }
        })
        .collect();
    drop(index);
    render(
        StatusCode::OK,
        &PoolsPage {
            title: "Test-cluster pools".into(),
            pools: views,
        },
    )
}

/// A definition.
struct DefinitionView {
    namespace: String,
    name: String,
    job: String,
    history: String,
    job_type: String,
    repo: String,
    schedule: String,
    runs: Vec<(String, String, &'static str)>,
    next: String,
    last: String,
}

/// The definitions page.
#[derive(Template)]
#[template(path = "definitions.html")]
struct DefinitionsPage {
    title: String,
    definitions: Vec<DefinitionView>,
}

fn definitions_page(app: &App) -> Reply_ {
    let mut defs = app.caches.all_definitions();
    defs.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let now = now();
    let views = defs
        .iter()
        .map(|d| {
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            let name = d.metadata.name.clone().unwrap_or_default();
            let job = if d.spec.name.is_empty() {
                name.clone()
            } else {
                d.spec.name.clone()
            };
            let status = d.status.clone().unwrap_or_default();
            let schedule = if !d.spec.cron.is_empty() {
                format!("cron {}", d.spec.cron)
            } else if !d.spec.interval.is_empty() {
                format!("every {}", d.spec.interval)
            } else {
                String::new()
            };
            DefinitionView {
                history: history_link(&job),
                job_type: format!("{:?}", d.spec.job_type).to_lowercase(),
                repo: d.spec.repo.clone(),
                schedule,
                runs: status
                    .latest_runs
                    .iter()
                    .map(|r| {
                        let state: Option<ProwJobState> =
                            serde_json::from_value(serde_json::Value::String(r.state.clone())).ok();
                        (
                            format!("/jobs/{ns}/{}", r.name),
                            r.state.clone(),
                            state.map(state_class).unwrap_or("triggered"),
                        )
                    })
                    .collect(),
                next: status
                    .next_run_time
                    .as_ref()
                    .map(|t| when::utc(t.0.as_second()))
                    .unwrap_or_default(),
                last: status
                    .last_run_time
                    .as_ref()
                    .map(|t| when::ago(t.0.as_second(), now))
                    .unwrap_or_default(),
                namespace: ns,
                name,
                job,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &DefinitionsPage {
            title: "Job definitions".into(),
            definitions: views,
        },
    )
}

fn badge(app: &App, query: &str) -> Reply_ {
    let pairs = pairs(query);
    let wanted: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "job" || k == "jobs")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .take(50)
        .collect();
    if wanted.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "job: name a job (or several, comma-separated; `*` matches any characters).",
        );
    }
    let index = app.caches.read();
    let mut latest = Vec::new();
    for name in index.job_names() {
        let matches = wanted.iter().any(|w| {
            if w.contains('*') {
                NamePattern::new(w).matches(&name)
            } else {
                *w == *name
            }
        });
        if !matches {
            continue;
        }
        if let Some(run) = index
            .runs_of(&name, usize::MAX)
            .into_iter()
            .find(|r| r.is_complete())
        {
            latest.push(run.state);
        }
    }
    drop(index);
    let label = if wanted.len() == 1 && !wanted[0].contains('*') {
        wanted[0].clone()
    } else {
        "jobs".to_owned()
    };
    let mut r = svg::badge(&label, Verdict::of(latest)).into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        warp::http::HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-cache"),
    );
    with_headers(r)
}

fn timed<F, Fut>(
    app: Arc<App>,
    page: &'static str,
    f: F,
) -> impl std::future::Future<Output = Result<Reply_, Infallible>>
where
    F: FnOnce(Arc<App>) -> Fut,
    Fut: std::future::Future<Output = Reply_>,
{
    let started = Instant::now();
    let metrics = app.metrics.clone();
    let fut = f(app);
    async move {
        let reply = fut.await;
        metrics.served(
            page,
            reply.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        Ok(reply)
    }
}

fn query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Every page and file.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Reply_,), Error = warp::Rejection> + Clone {
    let with = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let jobs =
        warp::path::end()
            .and(with.clone())
            .and(query())
            .and_then(|app: Arc<App>, q: String| {
                timed(app, "jobs", move |app| async move { jobs_page(&app, &q) })
            });
    let run = warp::path!("jobs" / String / String)
        .and(with.clone())
        .and(query())
        .and_then(|ns, name, app: Arc<App>, q| {
            timed(app, "run", move |app| run_page(app, ns, name, q))
        });
    let live = warp::path!("jobs" / String / String / "log" / "live")
        .and(with.clone())
        .and(warp::sse::last_event_id::<String>())
        .and_then(|ns, name, app: Arc<App>, id| {
            timed(
                app,
                "live",
                move |app| async move { live(app, ns, name, id) },
            )
        });
    let tail = warp::path!("jobs" / String / String / "log" / "tail")
        .and(with.clone())
        .and_then(|ns, name, app: Arc<App>| {
            timed(app, "tail", move |app| tail_fragment(app, ns, name))
        });
    let artifacts = warp::path("jobs")
        .and(warp::path::param::<String>())
        .and(warp::path::param::<String>())
        .and(warp::path("artifacts"))
        .and(warp::path::tail())
        .and(with.clone())
        .and_then(|ns, name, tail: warp::path::Tail, app: Arc<App>| {
            let tail = tail.as_str().to_owned();
            timed(app, "artifact", move |app| artifact(app, ns, name, tail))
        });
    let history =
        warp::path!("history" / String)
            .and(with.clone())
            .and_then(|job, app: Arc<App>| {
                timed(
                    app,
                    "history",
                    move |app| async move { history_page(&app, job) },
                )
            });
    let pools = warp::path!("pools")
        .and(with.clone())
        .and_then(|app: Arc<App>| timed(app, "pools", |app| async move { pools_page(&app) }));
    let definitions = warp::path!("definitions")
        .and(with.clone())
        .and_then(|app: Arc<App>| {
            timed(
                app,
                "definitions",
                |app| async move { definitions_page(&app) },
            )
        });
    let badge = warp::path!("badge.svg")
        .and(with.clone())
        .and(query())
        .and_then(|app: Arc<App>, q: String| {
            timed(app, "badge", move |app| async move { badge(&app, &q) })
        });
    let css = warp::path!("static" / "app.css").map(|| {
        with_headers(
            warp::reply::with_header(CSS, "content-type", "text/css; charset=utf-8")
                .into_response(),
        )
    });
    let js = warp::path!("static" / "app.js").map(|| {
        with_headers(
            warp::reply::with_header(JS, "content-type", "text/javascript; charset=utf-8")
                .into_response(),
        )
    });
    let not_found = warp::any().map(|| {
        error(
            StatusCode::NOT_FOUND,
            "There is no such page. The pages are: Jobs (/), a run (/jobs/NAMESPACE/NAME), a job's history (/history/JOB), Pools (/pools) and Definitions (/definitions).",
        )
    });
    warp::get().and(
        jobs.or(live)
            .unify()
            .or(tail)
            .unify()
            .or(artifacts)
            .unify()
            .or(run)
            .unify()
            .or(history)
            .unify()
            .or(pools)
            .unify()
            .or(definitions)
            .unify()
            .or(badge)
            .unify()
            .or(css)
            .unify()
            .or(js)
            .unify()
            .or(not_found)
            .unify(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_that_could_run_scripts_are_served_as_text() {
        let cases = [
            ("report.html", "text/plain; charset=utf-8"),
            ("diagram.svg", "text/plain; charset=utf-8"),
            ("junit.xml", "application/xml"),
            ("shot.png", "image/png"),
            ("build-log.txt", "text/plain; charset=utf-8"),
            ("core", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    #[test]
    fn sizes_read_in_words() {
        assert_eq!(megabytes(12), "12 bytes");
        assert_eq!(megabytes(900_000), "900 KB");
        assert_eq!(megabytes(52_429_416), "52.4 MB");
    }

    #[test]
    fn places_in_line_read_as_ordinals() {
        let cases = [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (4, "4th"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (102, "102nd"),
        ];
        for (n, want) in cases {
            assert_eq!(ordinal(n), want);
        }
    }
}
