//! prowctl against a real API server: an upstream-shaped configuration imported with
//! `prowctl import` applies through the webhook, a periodic from it runs with its imported
//! preset injected, and `prowctl trigger` starts exactly one run and waits for its end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kind_tests::operator::{eventually, finish_job, start_operator};
use kind_tests::process::binary;
use kind_tests::webhook::{register, start_webhook};
use kind_tests::{PodDriver, TestEnv};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use prow_api::jobdefinition::{JobDefinition, DEFINITION_LABEL, TRIGGER_LABEL};
use prow_api::{Preset, ProwJob, ProwJobState};

const WAIT: Duration = Duration::from_secs(30);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/fixtures/upstream")
}

fn prowctl(args: &[&str]) -> Output {
    Command::new(binary("prowctl").expect("prowctl (cargo build --bins)"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("prowctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn runs(jobs: &Api<ProwJob>, def: &str) -> Vec<ProwJob> {
    jobs.list(&ListParams::default().labels(&format!("{DEFINITION_LABEL}={def}")))
        .await
        .expect("runs")
        .items
}

/// Ends a run's pod with `code` once it is pending; the run once it is complete.
async fn finish(driver: &PodDriver, jobs: &Api<ProwJob>, name: &str, code: i32) -> ProwJob {
    finish_job(driver, jobs, name, code, WAIT)
        .await
        .expect("the run ends")
}

/// Imports the fixtures into `dir` for `namespace`; returns the report.
fn import_fixtures(dir: &Path, namespace: &str) -> String {
    let root = fixtures();
    let out = prowctl(&[
        "import",
        "--config-path",
        root.join("config.yaml").to_str().expect("path"),
        "--job-config-path",
        root.join("jobs").to_str().expect("path"),
        "--namespace",
        namespace,
        "--output-dir",
        dir.to_str().expect("path"),
    ]);
    let report = text(&out.stderr);
    assert!(out.status.success(), "{report}");
    report
}

#[tokio::test]
async fn an_imported_configuration_applies_through_the_webhook_and_its_periodic_runs() {
    let env = TestEnv::new("prowctl-import").await.expect("env");
    let webhook = start_webhook(&env, &[]).expect("webhook");
    register(&env, &webhook).await.expect("registered");
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("imported"));
    let report = import_fixtures(&dir, &env.namespace);
    assert!(
        report.ends_with("imported 2 presets and 10 job definitions (4 presubmits, 2 postsubmits, 4 periodics) from 4 files; 6 notes\n"),
        "{report}"
    );
    assert!(!report.contains("will refuse"), "{report}");

    // Every object goes through admission (the webhook checks definitions and presets).
    let applied = env
        .kubectl(&[
            "apply",
            "--server-side",
            "-R",
            "-f",
            dir.to_str().expect("dir"),
        ])
        .expect("the imported YAML applies");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(applied.lines().count(), 12, "{applied}");
    let definitions = env
        .api::<JobDefinition>()
        .list(&ListParams::default())
        .await
        .expect("definitions");
    assert_eq!(definitions.items.len(), 10);
    let presets = env
        .api::<Preset>()
        .list(&ListParams::default())
        .await
        .expect("presets");
    assert_eq!(presets.items.len(), 2);

    // The heartbeat periodic (every 5 s) runs, once at a time, and its status says so.
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let _operator = start_operator(&env, &[]).expect("operator");
    let first = eventually("a heartbeat run", WAIT, || async {
        Ok(runs(&jobs, "ci-infra-heartbeat").await.into_iter().next())
    })
    .await
    .expect("run");
    let ended = finish(&driver, &jobs, &first.name_any(), 0).await;
    assert_eq!(ended.state(), ProwJobState::Success);
    let defs = env.api::<JobDefinition>();
    eventually("the definition's status", WAIT, || async {
        let def = defs.get("ci-infra-heartbeat").await?;
        let status = def.status.unwrap_or_default();
        Ok(status
            .latest_runs
            .iter()
            .any(|r| r.name == first.name_any() && r.state == "success")
            .then_some(()))
    })
    .await
    .expect("status records the run");
    eventually("the next heartbeat", WAIT, || async {
        Ok((runs(&jobs, "ci-infra-heartbeat").await.len() >= 2).then_some(()))
    })
    .await
    .expect("second run");

    // The janitor periodic (config.yaml's own) ran at once, with its imported preset injected
    // by the webhook and its decoration defaults in force.
    let janitor = eventually("a janitor run", WAIT, || async {
        Ok(runs(&jobs, "ci-acme-janitor").await.into_iter().next())
    })
    .await
    .expect("janitor run");
    let pod = janitor.spec.pod_spec.clone().expect("pod spec");
    let env_names: Vec<String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert!(
        env_names.contains(&"GOOGLE_APPLICATION_CREDENTIALS".to_string()),
        "{env_names:?}"
    );
    let decoration = janitor.spec.decoration_config.clone().expect("decorated");
    assert_eq!(decoration.timeout.as_deref(), Some("2h"));
    // Presubmits and postsubmits wait for their triggers.
    assert!(runs(&jobs, "pull-widgets-unit").await.is_empty());
    assert!(runs(&jobs, "post-widgets-publish").await.is_empty());
}

#[tokio::test]
async fn prowctl_trigger_starts_one_run_and_waits_for_its_end() {
    let env = TestEnv::new("prowctl-trigger").await.expect("env");
    // The credentials Secret the fixtures' decoration defaults name, as an installation has
    // it: without it the operator ends a decorated run at once (the pod would wait for it).
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "gcs-credentials",
        "--from-literal=service-account.json={}",
    ])
    .expect("secret");
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("imported"));
    import_fixtures(&dir, &env.namespace);
    env.kubectl(&["apply", "-R", "-f", dir.to_str().expect("dir")])
        .expect("applied");
    let _ = std::fs::remove_dir_all(&dir);
    let jobs = env.api::<ProwJob>();
    let driver = PodDriver::new(env.client.clone(), &env.namespace);
    let _operator = start_operator(&env, &[]).expect("operator");

    // A nightly cron periodic, far from its tick: only the trigger runs it.
    let kubeconfig = env.kubeconfig.to_str().expect("path").to_string();
    let ns = env.namespace.clone();
    let waiting = std::thread::spawn(move || {
        prowctl(&[
            "trigger",
            "--kubeconfig",
            &kubeconfig,
            "-n",
            &ns,
            "ci-widgets-nightly",
            "--wait",
            "--timeout",
            "60s",
        ])
    });
    let run = eventually("the triggered run", WAIT, || async {
        Ok(runs(&jobs, "ci-widgets-nightly").await.into_iter().next())
    })
    .await
    .expect("run");
    assert_eq!(
        run.labels().get(TRIGGER_LABEL).map(String::as_str),
        Some("manual")
    );
    finish(&driver, &jobs, &run.name_any(), 1).await;
    let out = tokio::task::spawn_blocking(move || waiting.join().expect("joined"))
        .await
        .expect("waited");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run fails --wait: {stdout}{}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{}/{}", env.namespace, run.name_any()));
    assert!(
        lines[1].starts_with(&format!("{}/{}: failure", env.namespace, run.name_any())),
        "{stdout}"
    );
    assert_eq!(
        runs(&jobs, "ci-widgets-nightly").await.len(),
        1,
        "one trigger, one run"
    );

    // An unknown definition is an error that names it, and starts nothing.
    let out = prowctl(&[
        "trigger",
        "--kubeconfig",
        env.kubeconfig.to_str().expect("path"),
        "-n",
        &env.namespace,
        "no-such-job",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no-such-job"),
        "{}",
        text(&out.stderr)
    );
}
