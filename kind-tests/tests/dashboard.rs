//! prow-dashboard's pages in a real browser (Debian's headless Chromium over WebDriver) against
//! a real API server: what a person sees on each page, with screenshots saved under
//! `target/screenshots/` (`PROW_TEST_SCREENSHOTS`). The stored-log tests need the S3 server
//! (`ci-services.sh`), the live-log test the real node and the utility image.

use std::time::Duration;

use fantoccini::Locator;
use k8s_openapi::api::core::v1::Pod;
use kind_tests::browser::{Browser, Dashboard};
use kind_tests::operator::{eventually, start_operator, wait_for_job};
use kind_tests::process::http_get;
use kind_tests::services::Services;
use kind_tests::TestEnv;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use prow_api::jobdefinition::JobDefinition;
use prow_api::testclusterpool::TestClusterPool;
use prow_api::{ProwJob, TestCluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Creates the ProwJob `name` with `spec` and `labels`, then sets its `status`.
async fn put_job(env: &TestEnv, name: &str, labels: Value, spec: Value, status: Value) -> ProwJob {
    let jobs = env.api::<ProwJob>();
    let job: ProwJob = serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create");
    if status.is_null() {
        return job;
    }
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("status")
}

fn ago(seconds: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds)).to_string()
}

/// A finished run's status: started `started` seconds ago, ran `ran` seconds.
fn ended(state: &str, started: i64, ran: i64) -> Value {
    json!({"state": state, "startTime": ago(started), "completionTime": ago(started - ran),
           "description": format!("Job {state}")})
}

fn presubmit(job: &str, pull: i64, author: &str) -> Value {
    json!({"type": "presubmit", "job": job,
           "refs": {"org": "acme", "repo": "widget", "base_ref": "main", "base_sha": "abc123",
                    "pulls": [{"number": pull, "author": author, "sha": "def456"}]}})
}

async fn rows(browser: &Browser) -> usize {
    browser.count("tr.job").await.expect("rows")
}

async fn url(browser: &Browser) -> String {
    browser.client.current_url().await.expect("url").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_narrow_the_jobs_list_and_paging_keeps_them() {
    let env = TestEnv::new("dash-list").await.expect("env");
    let Some(browser) = Browser::start("jobs-list", 1280, 900)
        .await
        .expect("browser")
    else {
        return;
    };
    put_job(
        &env,
        "a1",
        json!({}),
        presubmit("pull-acme-unit", 7, "alice"),
        ended("failure", 600, 100),
    )
    .await;
    put_job(
        &env,
        "a2",
        json!({}),
        presubmit("pull-acme-unit", 8, "bob"),
        ended("success", 500, 90),
    )
    .await;
    put_job(
        &env,
        "a3",
        json!({}),
        presubmit("pull-acme-e2e", 7, "alice"),
        json!({"state": "pending", "startTime": ago(400), "pendingTime": ago(390)}),
    )
    .await;
    for i in 0..8 {
        let state = if i == 3 { "failure" } else { "success" };
        put_job(
            &env,
            &format!("n{i}"),
            json!({}),
            json!({"type": "periodic", "job": "nightly"}),
            ended(state, 3000 - i * 100, 60),
        )
        .await;
    }
    let dashboard =
        tokio::task::block_in_place(|| Dashboard::start(&env, None, &[])).expect("dashboard");

    browser.open(&dashboard.url("/")).await.expect("open");
    assert_eq!(rows(&browser).await, 11, "every job, newest first");
    let first = browser
        .text("tr.job td:nth-child(2) a")
        .await
        .expect("first");
    assert_eq!(first, "pull-acme-e2e", "the newest run leads");
    browser.screenshot("jobs").await.expect("shot");

    // A state picked in the form applies at once (the script submits it) and narrows the list.
    browser
        .client
        .find(Locator::Css("select[name=state]"))
        .await
        .expect("state")
        .select_by_value("failure")
        .await
        .expect("select");
    browser
        .until("the list to narrow to failures", WAIT, || async {
            Ok(url(&browser).await.contains("state=failure") && rows(&browser).await == 2)
        })
        .await
        .expect("narrowed");
    assert_eq!(browser.count("tr.job.failure").await.expect("failures"), 2);

    // A job-name pattern with `*` narrows further; the URL carries both filters.
    browser
        .type_into("#f-job", "pull-*-unit")
        .await
        .expect("type");
    browser.click(".filters button").await.expect("click");
    browser
        .until("the pattern to apply", WAIT, || async {
            let u = url(&browser).await;
            Ok(u.contains("job=pull-*-unit") || u.contains("job=pull-%2A-unit"))
        })
        .await
        .expect("pattern");
    assert_eq!(rows(&browser).await, 1);
    assert!(browser.text("tr.job").await.expect("row").contains("a1"));
    browser.screenshot("jobs-filtered").await.expect("shot");

    browser
        .open(&dashboard.url("/?author=ALICE"))
        .await
        .expect("open");
    assert_eq!(
        rows(&browser).await,
        2,
        "authors ignore case, as GitHub logins"
    );
    browser
        .open(&dashboard.url("/?pull=8&repo=acme/widget"))
        .await
        .expect("open");
    assert_eq!(rows(&browser).await, 1);

    // Pages of three: the next page keeps the filter, and says where it is.
    browser
        .open(&dashboard.url("/?type=periodic&per_page=3"))
        .await
        .expect("open");
    assert_eq!(rows(&browser).await, 3);
    assert!(browser
        .text("#count")
        .await
        .expect("count")
        .contains("1–3 of 8"));
    browser.click("a[rel=next]").await.expect("click");
    browser
        .until("page 2", WAIT, || async {
            Ok(url(&browser).await.contains("page=2"))
        })
        .await
        .expect("page 2");
    let u = url(&browser).await;
    assert!(
        u.contains("type=periodic") && u.contains("per_page=3"),
        "{u}"
    );
    assert!(browser
        .text("#count")
        .await
        .expect("count")
        .contains("4–6 of 8"));
    assert_eq!(
        browser
            .text("tr.job.failure td:nth-child(2) small")
            .await
            .expect("n3"),
        format!("{}/n3", env.namespace),
        "the fourth-newest nightly is on page 2"
    );

    // On a phone the page does not scroll sideways (the table scrolls in its box), every
    // control has a label, and the page says its language.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone");
    browser.open(&dashboard.url("/")).await.expect("open");
    let layout = browser
        .js(
            "return [document.documentElement.scrollWidth <= window.innerWidth + 1,
                     [...document.querySelectorAll('input, select')].every(e => e.closest('label')),
                     document.documentElement.lang,
                     !!document.querySelector('a.skip[href=\"#main\"]')]",
        )
        .await
        .expect("layout");
    assert_eq!(layout, json!([true, true, "en", true]));
    browser.screenshot("jobs-phone").await.expect("shot");
}

/// A finished run `name` of the periodic `nightly`.
async fn put_nightly(env: &TestEnv, name: &str) -> ProwJob {
    put_job(
        env,
        name,
        json!({}),
        json!({"type": "periodic", "job": "nightly"}),
        ended("success", 100, 10),
    )
    .await
}

/// Through its shutdown delay a stopping dashboard is unready (the Service stops sending to it)
/// and still serves the pages asked for meanwhile; then it exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_dashboard_serves_pages_through_its_delay_unready() {
    let env = TestEnv::new("dash-stop").await.expect("env");
    put_nightly(&env, "mine").await;
    let dashboard =
        tokio::task::block_in_place(|| Dashboard::start(&env, None, &["--shutdown-delay=4s"]))
            .expect("dashboard");
    let address = dashboard.process.health.clone();
    let page = format!("/jobs/{}/mine", env.namespace);
    eventually("the job cached", Duration::from_secs(20), || async {
        Ok((http_get(&address, &page)?.0 == 200).then_some(()))
    })
    .await
    .expect("the page");
    dashboard.process.signal_term().expect("SIGTERM");
    kind_tests::process::shutting_down(&address).expect("/readyz during the delay");
    let (status, body) = http_get(&address, &page).expect("a page during the delay");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nightly"), "{body}");
    let exited =
        tokio::task::block_in_place(|| dashboard.process.exited_within(Duration::from_secs(30)));
    assert!(exited.expect("exited"), "a clean exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_404_pages_and_hostile_queries_are_refused_by_name() {
    let env = TestEnv::new("dash-bad").await.expect("env");
    let other = TestEnv::new("dash-other").await.expect("other");
    put_nightly(&env, "mine").await;
    put_job(
        &other,
        "theirs",
        json!({}),
        json!({"type": "periodic", "job": "secret-nightly"}),
        ended("success", 100, 10),
    )
    .await;
    let dashboard =
        tokio::task::block_in_place(|| Dashboard::start(&env, None, &[])).expect("dashboard");
    let address = dashboard.process.health.clone();
    let get = |path: String| {
        let address = address.clone();
        tokio::task::block_in_place(move || http_get(&address, &path)).expect("get")
    };

    let (code, body) = get(format!("/jobs/{}/theirs", other.namespace));
    assert_eq!(code, 404, "a namespace it is not given: {body}");
    assert!(body.contains("not one this dashboard shows"), "{body}");
    let (code, body) = get("/".into());
    assert_eq!(code, 200);
    assert!(
        body.contains("mine") && !body.contains("secret-nightly"),
        "only its namespaces"
    );
    let (code, body) = get(format!("/jobs/{}/nope", env.namespace));
    assert_eq!(code, 404);
    assert!(body.contains("There is no ProwJob"), "{body}");
    for path in ["/history/nope", "/no/such/page", "/jobs/x"] {
        assert_eq!(get(path.into()).0, 404, "{path}");
    }
    let (code, body) = get(format!("/?job={}", "x".repeat(300)));
    assert_eq!(code, 400);
    assert!(body.contains("longer than 256"), "{body}");
    assert_eq!(
        get(format!(
            "/jobs/{}/mine/artifacts/../../etc/passwd",
            env.namespace
        ))
        .0,
        400
    );

    let Some(browser) = Browser::start("hostile", 1280, 800).await.expect("browser") else {
        return;
    };
    browser
        .open(&dashboard.url("/?state=%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E&pull=abc&page=0"))
        .await
        .expect("open");
    let alert = browser.text("[role=alert]").await.expect("alert");
    assert!(
        alert.contains("state: \"<script>window.pwned=1</script>\" is not one of"),
        "{alert}"
    );
    assert!(
        alert.contains("pull: \"abc\" is not a pull request number"),
        "{alert}"
    );
    assert!(alert.contains("page: \"0\""), "{alert}");
    assert_eq!(
        browser.js("return typeof window.pwned").await.expect("js"),
        json!("undefined"),
        "nothing the query says runs"
    );
    assert_eq!(
        rows(&browser).await,
        0,
        "no list under a filter that cannot apply"
    );
    browser.screenshot("bad-filter").await.expect("shot");
    browser
        .open(&dashboard.url(&format!("/jobs/{}/nope", env.namespace)))
        .await
        .expect("open");
    assert!(browser.text("h1").await.expect("h1").contains("404"));
    browser.screenshot("not-found").await.expect("shot");
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_definitions_a_jobs_history_and_its_badge() {
    let env = TestEnv::new("dash-pools").await.expect("env");
    let Some(browser) = Browser::start("pools", 1280, 900).await.expect("browser") else {
        return;
    };
    let pools = env.api::<TestClusterPool>();
    let pool: TestClusterPool = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestClusterPool",
        "metadata": {"name": "gke"}, "spec": {}}))
    .expect("pool");
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    let holder = put_job(
        &env,
        "holder",
        json!({"prow-operator.dev/test-cluster-pool": "gke"}),
        json!({"type": "periodic", "job": "e2e", "namespace": env.namespace}),
        json!({"state": "pending", "startTime": ago(300), "testCluster": "c1"}),
    )
    .await;
    let clusters = env.api::<TestCluster>();
    for (name, status) in [
        (
            "c1",
            json!({"phase": "Leased", "lease": {"holder": format!("{}/holder", env.namespace),
                      "holderUid": holder.metadata.uid, "since": ago(250)}}),
        ),
        (
            "c2",
            json!({"phase": "Vacant", "conditions": [{"type": "Healthy", "status": "False",
                      "reason": "CheckFailed", "message": "nodes not ready", "lastTransitionTime": ago(10)}]}),
        ),
    ] {
        let c: TestCluster = serde_json::from_value(json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
            "metadata": {"name": name}, "spec": {"pool": "gke"}}))
        .expect("cluster");
        clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("cluster");
        clusters
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .expect("cluster status");
    }
    for name in ["first-waiting", "second-waiting"] {
        put_job(
            &env,
            name,
            json!({"prow-operator.dev/test-cluster-pool": "gke"}),
            json!({"type": "periodic", "job": "e2e", "namespace": env.namespace}),
            Value::Null,
        )
        .await;
        // Creation times are kept to the second: the line is in creation order.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    for (i, state) in ["success", "failure", "success", "success", "failure"]
        .iter()
        .enumerate()
    {
        put_job(
            &env,
            &format!("h{i}"),
            json!({}),
            json!({"type": "periodic", "job": "flaky"}),
            ended(state, 1000 - i as i64 * 100, 20 + i as i64 * 10),
        )
        .await;
    }
    put_job(
        &env,
        "g0",
        json!({}),
        json!({"type": "periodic", "job": "green"}),
        ended("success", 100, 5),
    )
    .await;
    let defs = env.api::<JobDefinition>();
    let def: JobDefinition = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "JobDefinition",
        "metadata": {"name": "flaky"},
        "spec": {"type": "periodic", "cron": "0 3 * * *",
                 "spec": {"containers": [{"name": "test", "image": "busybox", "command": ["true"]}]}}})).expect("def");
    defs.create(&PostParams::default(), &def)
        .await
        .expect("def");
    defs.patch_status(
        "flaky",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
        "nextRunTime": "2030-01-01T03:00:00Z", "lastRunTime": ago(100),
        "latestRuns": [{"name": "h4", "state": "failure"}, {"name": "h3", "state": "success"}]}})),
    )
    .await
    .expect("def status");
    let dashboard =
        tokio::task::block_in_place(|| Dashboard::start(&env, None, &[])).expect("dashboard");

    browser.open(&dashboard.url("/pools")).await.expect("open");
    browser
        .until("the pool's clusters", WAIT, || async {
            Ok(browser.count("table.clusters tbody tr").await? == 2)
        })
        .await
        .expect("clusters");
    // A pool named only by its clusters (no TestClusterPool object) is a pool too.
    let implicit: TestCluster = serde_json::from_value(json!({
        "apiVersion": "prow-operator.dev/v1alpha1", "kind": "TestCluster",
        "metadata": {"name": "c3"}, "spec": {"pool": "implicit"}}))
    .expect("cluster");
    clusters
        .create(&PostParams::default(), &implicit)
        .await
        .expect("c3");
    browser
        .until("the pool named by its cluster", WAIT, || async {
            browser.open(&dashboard.url("/pools")).await?;
            Ok(browser.count("section.pool").await? == 2)
        })
        .await
        .expect("implicit pool");
    let second = browser
        .text("section.pool:nth-of-type(2)")
        .await
        .expect("second pool");
    assert!(
        second.contains("implicit")
            && second.contains("c3")
            && second.contains("1 vacant; 0 waiting"),
        "{second}"
    );
    let summary = browser.text("section.pool p").await.expect("summary");
    assert_eq!(summary, "1 leased, 1 vacant; 2 waiting.");
    let table = browser.text("table.clusters").await.expect("clusters");
    assert!(
        table.contains("c1")
            && table.contains("Leased")
            && table.contains(&format!("{}/holder", env.namespace)),
        "{table}"
    );
    assert!(table.contains("unhealthy: nodes not ready"), "{table}");
    let line = browser.text("ol.line").await.expect("line");
    let (first, second) = (
        line.find("first-waiting").expect("first"),
        line.find("second-waiting").expect("second"),
    );
    assert!(first < second, "first in line first: {line}");
    browser.click("table.clusters a").await.expect("click");
    browser
        .until("the holder's run page", WAIT, || async {
            Ok(url(&browser).await.ends_with("/holder"))
        })
        .await
        .expect("holder page");
    browser.open(&dashboard.url("/pools")).await.expect("open");
    browser.screenshot("pools").await.expect("shot");

    browser.open(&dashboard.url("/")).await.expect("open");
    let waiting = browser
        .text("tr.job[data-name=second-waiting]")
        .await
        .expect("row");
    assert!(
        waiting.contains("waits for pool gke: 2nd of 2 in line"),
        "{waiting}"
    );
    let holding = browser.text("tr.job[data-name=holder]").await.expect("row");
    assert!(holding.contains("holds c1 (pool gke)"), "{holding}");

    browser
        .open(&dashboard.url("/definitions"))
        .await
        .expect("open");
    let row = browser
        .text("table.definitions tbody tr")
        .await
        .expect("definition");
    assert!(
        row.contains("flaky") && row.contains("periodic") && row.contains("cron 0 3 * * *"),
        "{row}"
    );
    assert!(row.contains("2030-01-01 03:00:00 UTC"), "next run: {row}");
    assert_eq!(
        browser
            .count("table.definitions a.state.failure")
            .await
            .expect("runs"),
        1
    );
    browser.screenshot("definitions").await.expect("shot");

    browser
        .open(&dashboard.url("/history/flaky"))
        .await
        .expect("open");
    assert_eq!(browser.count("svg.chart rect.bar").await.expect("bars"), 5);
    assert_eq!(
        browser
            .count("svg.chart rect.bar.failure")
            .await
            .expect("bars"),
        2
    );
    assert_eq!(
        browser
            .count("svg.chart polyline.rate")
            .await
            .expect("line"),
        1
    );
    assert_eq!(rows(&browser).await, 5);
    assert!(browser
        .text("main p")
        .await
        .expect("summary")
        .contains("3 of 5 finished runs passed"));
    let badge_loaded = browser
        .js("const i = document.querySelector('h1 img'); return i.complete && i.naturalWidth > 0")
        .await
        .expect("badge");
    assert_eq!(badge_loaded, json!(true), "the badge image loads");
    browser.screenshot("history").await.expect("shot");

    let address = dashboard.process.health.clone();
    let badge = |q: &'static str| {
        let address = address.clone();
        tokio::task::block_in_place(move || http_get(&address, &format!("/badge.svg?{q}")))
            .expect("badge")
    };
    assert!(
        badge("job=flaky").1.contains("failing"),
        "its latest run failed"
    );
    assert!(badge("job=green").1.contains("passing"));
    assert!(badge("jobs=green,flaky").1.contains("failing"));
    assert!(badge("job=gr*").1.contains("passing"));
    assert!(badge("job=none").1.contains("unknown"));
    assert_eq!(badge("").0, 400);
}

/// A decorated run's folder, as `path_strategy: explicit` lays out a periodic.
fn stored_job_spec(services: &Services, job: &str) -> Value {
    json!({"type": "periodic", "job": job,
           "decoration_config": {"gcs_configuration": {"bucket": format!("s3://{}", services.bucket),
                                                       "path_strategy": "explicit"},
                                 "s3_credentials_secret": "s3-credentials"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_50_mb_log_shows_at_once_and_a_search_finds_a_line_near_its_end() {
    let Some(services) = Services::from_env().expect("services") else {
        return;
    };
    let env = TestEnv::new("dash-log").await.expect("env");
    let job = format!("big-{}", env.namespace);
    // 50 MB: colours at the start, bytes that are not UTF-8, and the needle near the end.
    let mut log = Vec::with_capacity(52 << 20);
    log.extend_from_slice(b"\x1b[31mred start\x1b[0m\nnot utf-8: \xff\xfe\n");
    let mut n = 2u64;
    while log.len() < 50 << 20 {
        n += 1;
        log.extend_from_slice(
            format!("line {n}: filler text for a long build log ........\n").as_bytes(),
        );
    }
    let needle_line = n + 1;
    log.extend_from_slice(b"needle-7f3a: the failure is here\n");
    for i in 0..50 {
        log.extend_from_slice(format!("trailer {i}\n").as_bytes());
    }
    let total = needle_line + 50;
    let store = services.store().expect("store");
    store
        .put(&format!("logs/{job}/42/build-log.txt"), log)
        .await
        .expect("put the log");
    store
        .put(
            &format!("logs/{job}/42/artifacts/junit.xml"),
            b"<testsuite/>".to_vec(),
        )
        .await
        .expect("artifact");
    put_job(&env, "big", json!({}), stored_job_spec(&services, &job),
            json!({"state": "failure", "startTime": ago(100), "completionTime": ago(10), "build_id": "42"})).await;
    let dashboard = tokio::task::block_in_place(|| {
        Dashboard::start(&env, Some(&services.service_account_json()), &[])
    })
    .expect("dashboard");
    let Some(browser) = Browser::start("stored-log", 1280, 900)
        .await
        .expect("browser")
    else {
        return;
    };
    let run = dashboard.url(&format!("/jobs/{}/big", env.namespace));
    browser.open(&run).await.expect("open");
    assert_eq!(
        browser.count("#log .l").await.expect("lines"),
        2000,
        "the first 2000 lines at once"
    );
    assert_eq!(
        browser.count("#log #L1 .fg-1").await.expect("colour"),
        1,
        "ANSI red is a colour"
    );
    assert!(browser
        .text("#L2")
        .await
        .expect("L2")
        .contains("not utf-8: \u{fffd}\u{fffd}"));
    assert!(browser
        .text("#log-note")
        .await
        .expect("note")
        .contains("The log is 52.4 MB; its first 2000 lines are shown"));
    let artifacts = browser.text("ul.artifacts").await.expect("artifacts");
    assert!(artifacts.contains("junit.xml"), "{artifacts}");
    browser.screenshot("head").await.expect("shot");

    // The end of the log comes right after, without a click (the script fetches it).
    browser
        .until("the last lines", WAIT, || async {
            Ok(browser.count(&format!("#tail #L{total}")).await? == 1)
        })
        .await
        .expect("tail");
    assert!(browser
        .text("#tail")
        .await
        .expect("tail")
        .contains(&format!("of {total} lines")));
    assert_eq!(
        browser.count("#load-tail").await.expect("link"),
        0,
        "the link is gone once loaded"
    );
    browser.screenshot("head-and-tail").await.expect("shot");

    // A search across the whole log finds the line near its end and links to it.
    browser.type_into("#q", "NEEDLE-7f3a").await.expect("type");
    browser
        .click("form[role=search] button")
        .await
        .expect("search");
    browser
        .until("the match", WAIT, || async {
            Ok(browser.count("#matches").await? == 1)
        })
        .await
        .expect("searched");
    assert!(browser
        .text("#matches")
        .await
        .expect("matches")
        .starts_with("1 line hold"));
    browser.screenshot("search").await.expect("shot");
    browser
        .click(".log[aria-label='Matching lines'] a.n")
        .await
        .expect("click");
    browser
        .until("the line in its window", WAIT, || async {
            Ok(browser.count(&format!("#L{needle_line}")).await? == 1)
        })
        .await
        .expect("window");
    let target = browser
        .js("return document.querySelector(':target') && document.querySelector(':target').id")
        .await
        .expect("target");
    assert_eq!(
        target,
        json!(format!("L{needle_line}")),
        "the line is the page's target"
    );
    assert!(browser
        .text(&format!("#L{needle_line}"))
        .await
        .expect("line")
        .contains("the failure is here"));
    browser.screenshot("found").await.expect("shot");

    let address = dashboard.process.health.clone();
    let path = format!("/jobs/{}/big/artifacts/junit.xml", env.namespace);
    let (code, body) = tokio::task::block_in_place(|| http_get(&address, &path)).expect("artifact");
    // The body comes chunked (it is streamed from the bucket).
    assert_eq!(code, 200);
    assert!(body.contains("\r\n<testsuite/>\r\n"), "{body:?}");

    // A dashboard whose storage is down says so on the page and still shows the run.
    let broken = Services {
        s3_endpoint: "127.0.0.1:9".into(),
        ..services.clone()
    };
    let down = tokio::task::block_in_place(|| {
        Dashboard::start(&env, Some(&broken.service_account_json()), &[])
    })
    .expect("dashboard");
    browser
        .open(&down.url(&format!("/jobs/{}/big", env.namespace)))
        .await
        .expect("open");
    let notice = browser.text("#log-error").await.expect("notice");
    assert!(notice.contains("The stored log cannot be read"), "{notice}");
    assert_eq!(browser.text("#state").await.expect("state"), "failure");
    browser.screenshot("storage-down").await.expect("shot");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_jobs_log_grows_on_screen_and_after_its_pod_is_gone_comes_from_storage() {
    let Some(env) = TestEnv::on_node("dash-live").await.expect("env") else {
        return;
    };
    let services = Services::from_env()
        .expect("services")
        .expect("the node tier starts the servers");
    services
        .credentials_secret(&env, "s3-credentials")
        .await
        .expect("credentials");
    let job = format!("live-{}", env.namespace);
    let mut spec = stored_job_spec(&services, &job);
    spec["agent"] = json!("kubernetes");
    spec["decoration_config"]["timeout"] = json!("2m");
    spec["decoration_config"]["grace_period"] = json!("3s");
    spec["pod_spec"] = json!({"containers": [{
        "image": "prow-operator.local/toolbox:v1", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "for i in $(seq 1 40); do printf '\\033[32mtick %s\\033[0m\\n' $i; sleep 0.4; done; echo report > $ARTIFACTS/report.txt"]}]});
    put_job(&env, "live", json!({}), spec, Value::Null).await;
    let jobs = env.api::<ProwJob>();
    let dashboard = tokio::task::block_in_place(|| {
        Dashboard::start(&env, Some(&services.service_account_json()), &[])
    })
    .expect("dashboard");
    let broken = Services {
        s3_endpoint: "127.0.0.1:9".into(),
        ..services.clone()
    };
    let down = tokio::task::block_in_place(|| {
        Dashboard::start(&env, Some(&broken.service_account_json()), &[])
    })
    .expect("dashboard");
    let Some(browser) = Browser::start("live-log", 1280, 900)
        .await
        .expect("browser")
    else {
        return;
    };
    let path = format!("/jobs/{}/live", env.namespace);

    // The page is opened before the job has a pod (no operator yet): it says it waits, then,
    // once the operator runs the pod, the log grows on screen without a reload (a mark left in
    // the page stays).
    browser.open(&dashboard.url(&path)).await.expect("open");
    browser
        .js("window.stillTheSamePage = true; return 1")
        .await
        .expect("mark");
    browser
        .until("the page to say it waits", WAIT, || async {
            Ok(browser.text("#livestate").await?.starts_with("waiting"))
        })
        .await
        .expect("waiting");
    let _operator = start_operator(&env, &[]).expect("operator");
    browser
        .until("the first live lines", Duration::from_secs(90), || async {
            Ok(browser.count("#log .l").await? >= 3)
        })
        .await
        .expect("live lines");
    let before = browser.count("#log .l").await.expect("count");
    browser
        .until("more lines", WAIT, || async {
            Ok(browser.count("#log .l").await? >= before + 5)
        })
        .await
        .expect("grows");
    assert_eq!(
        browser
            .js("return window.stillTheSamePage === true")
            .await
            .expect("js"),
        json!(true),
        "no reload"
    );
    assert!(browser
        .text("#livestate")
        .await
        .expect("state")
        .contains("live"));
    assert!(
        browser.count("#log .fg-2").await.expect("green") >= 1,
        "ANSI green ticks"
    );
    browser.screenshot("live").await.expect("shot");

    // With its storage down, a dashboard still follows the running log.
    browser.open(&down.url(&path)).await.expect("open");
    browser
        .until("live lines with storage down", WAIT, || async {
            Ok(browser.count("#log .l").await? >= 3)
        })
        .await
        .expect("live without storage");
    browser.screenshot("live-storage-down").await.expect("shot");

    // When the job ends the page says so; once its pod is gone the log comes from storage.
    browser.open(&dashboard.url(&path)).await.expect("open");
    let done = wait_for_job(
        &jobs,
        "live",
        Duration::from_secs(120),
        ProwJob::is_complete,
    )
    .await
    .expect("ends");
    assert_eq!(
        done.state(),
        prow_api::ProwJobState::Success,
        "{:?}",
        done.status
    );
    browser
        .until("the page to say the run ended", WAIT, || async {
            Ok(browser.text("#livestate").await?.contains("ended: success"))
        })
        .await
        .expect("ended");
    let pods = env.api::<Pod>();
    let pod = done
        .status
        .as_ref()
        .map(|s| s.pod_name.clone())
        .unwrap_or_default();
    pods.delete(&pod, &DeleteParams::default())
        .await
        .expect("delete the pod");
    eventually("the pod to be gone", Duration::from_secs(60), || async {
        Ok(pods.get_opt(&pod).await?.is_none().then_some(()))
    })
    .await
    .expect("gone");
    browser.open(&dashboard.url(&path)).await.expect("reopen");
    let log = browser.text("#log").await.expect("log");
    assert!(log.contains("tick 1") && log.contains("tick 40"), "{log}");
    assert!(
        browser
            .text("dl.facts")
            .await
            .expect("facts")
            .contains("(gone)"),
        "the pod is gone"
    );
    assert!(browser
        .text("ul.artifacts")
        .await
        .expect("artifacts")
        .contains("report.txt"));
    browser.screenshot("stored").await.expect("shot");
    browser.open(&down.url(&path)).await.expect("open");
    assert!(browser
        .text("#log-error")
        .await
        .expect("notice")
        .contains("cannot be read"));
}
