//! The operator and webhook start against a real API server, report ready, serve their health
//! endpoints and exit cleanly on SIGTERM.

use kind_tests::operator::eventually;
use kind_tests::process::{http_status, Running};
use kind_tests::TestEnv;

#[tokio::test]
async fn operator_and_webhook_become_ready_and_stop_cleanly_on_sigterm() {
    let env = TestEnv::new("binaries").await.expect("env");
    for binary in ["prow-operator", "prow-webhook"] {
        let process = Running::start(binary, &env.kubeconfig, &[]).expect(binary);
        assert_eq!(
            http_status(&process.health, "/healthz").expect("healthz"),
            200,
            "{binary}"
        );
        // Ready: the operator may have answered while a standby (ready, to take over) and be
        // syncing as the new leader a moment after; it is ready again once synced.
        eventually("ready", std::time::Duration::from_secs(30), || async {
            Ok((http_status(&process.health, "/readyz")? == 200).then_some(()))
        })
        .await
        .expect(binary);
        assert_eq!(
            http_status(&process.health, "/nope").expect("404"),
            404,
            "{binary}"
        );
        assert!(
            process.terminate().expect("exits"),
            "{binary} exited with an error on SIGTERM"
        );
    }
}

#[tokio::test]
async fn operator_refuses_to_start_without_an_api_server() {
    let dir = std::env::temp_dir().join(kind_tests::env::unique_name("no-server"));
    std::fs::write(
        &dir,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n\
         current-context: x\n",
    )
    .expect("kubeconfig");
    let err = Running::start("prow-operator", &dir, &[])
        .err()
        .expect("does not start");
    let _ = std::fs::remove_file(&dir);
    assert!(err.to_string().contains("exited"), "{err}");
}
