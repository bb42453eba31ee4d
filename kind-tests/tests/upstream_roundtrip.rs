//! ProwJobs as upstream tooling writes them apply to the real API server with `kubectl apply`
//! and read back with every field intact: nothing in spec, status, labels or annotations pruned.

use kind_tests::TestEnv;
use kube::api::{Patch, PatchParams};
use prow_api::ProwJob;
use serde_json::Value;

const FIXTURES: [(&str, &str); 4] = [
    (
        "presubmit",
        include_str!("../../api/tests/fixtures/presubmit.yaml"),
    ),
    (
        "postsubmit",
        include_str!("../../api/tests/fixtures/postsubmit.yaml"),
    ),
    (
        "periodic",
        include_str!("../../api/tests/fixtures/periodic.yaml"),
    ),
    ("batch", include_str!("../../api/tests/fixtures/batch.yaml")),
];

#[tokio::test]
async fn upstream_prowjobs_apply_and_read_back_without_pruning() {
    let env = TestEnv::new("roundtrip").await.expect("env");
    let api = env.api::<ProwJob>();
    for (kind, yaml) in FIXTURES {
        let written: Value = serde_yaml::from_str(yaml).expect("fixture");
        let name = written["metadata"]["name"]
            .as_str()
            .expect("named")
            .to_string();

        let dir = std::env::temp_dir().join(kind_tests::env::unique_name(kind));
        std::fs::write(&dir, yaml).expect("write fixture");
        env.kubectl(&["apply", "-f", &dir.to_string_lossy()])
            .expect("kubectl apply");
        let _ = std::fs::remove_file(&dir);
        // Status is a subresource: a create ignores it, as upstream's controllers expect.
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": written["status"] })),
        )
        .await
        .expect("status written");

        let stored: Value = serde_json::from_str(
            &env.kubectl(&["get", "prowjob", &name, "-o", "json"])
                .expect("get"),
        )
        .expect("JSON");
        assert_eq!(stored["spec"], written["spec"], "{kind}: spec changed");
        assert_eq!(
            stored["status"], written["status"],
            "{kind}: status changed"
        );
        assert_eq!(
            stored["metadata"]["labels"], written["metadata"]["labels"],
            "{kind}: labels changed"
        );
        let mut annotations = stored["metadata"]["annotations"].clone();
        if let Some(map) = annotations.as_object_mut() {
            map.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        assert_eq!(
            annotations, written["metadata"]["annotations"],
            "{kind}: annotations changed"
        );

        // And our own types read what the API server stored.
        let typed = api.get(&name).await.expect("typed read");
        assert_eq!(
            serde_json::to_value(&typed.spec).expect("spec"),
            written["spec"],
            "{kind}: typed spec"
        );
    }
}
