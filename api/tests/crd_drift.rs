//! The chart's CRDs are generated from the types; this fails when the committed files are stale.

use std::path::Path;

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/prow-operator/crds");
    let mut expected_files = Vec::new();
    for crd in prow_api::crd::all() {
        let name = prow_api::crd::file_name(&crd);
        let generated = prow_api::crd::to_yaml(&crd).expect("CRD renders");
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == generated,
            "{name} is stale: run `cargo run -p prow-operator --bin crdgen` and commit the result"
        );
        expected_files.push(name);
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds directory exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    expected_files.sort();
    assert_eq!(
        on_disk, expected_files,
        "a CRD file in the chart has no kind behind it"
    );
}

#[test]
fn prowjob_crd_is_approved_and_small() {
    let crd = prow_api::crd::all().remove(0);
    let annotations = crd.metadata.annotations.expect("annotated");
    assert!(annotations.contains_key("api-approved.kubernetes.io"));
    let yaml = prow_api::crd::to_yaml(&prow_api::crd::all().remove(0)).expect("renders");
    // kubectl's client-side apply keeps the whole object in an annotation capped at 256 KiB;
    // upstream's full PodSpec schema breaks that. Ours keeps pod_spec as a preserved object.
    assert!(
        yaml.len() < 64 * 1024,
        "ProwJob CRD grew to {} bytes",
        yaml.len()
    );
}

/// The upstream job fields a ProwJob and a JobDefinition share are declared once: each has the
/// same schema, description included, in both CRDs.
#[test]
fn the_shared_upstream_job_fields_have_one_schema_in_both_kinds() {
    let spec_properties = |kind: &str| {
        let crd = prow_api::crd::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .expect("a CRD of the kind");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("json");
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"].clone()
    };
    let (job, definition) = (spec_properties("ProwJob"), spec_properties("JobDefinition"));
    let shared = [
        "cluster",
        "extra_refs",
        "context",
        "rerun_command",
        "max_concurrency",
        "error_on_eviction",
        "jenkins_spec",
        "pipeline_run_spec",
        "tekton_pipeline_run_spec",
        "decoration_config",
        "reporter_config",
        "rerun_auth_config",
        "hidden",
        "prowjob_defaults",
        "job_queue_name",
    ];
    for field in shared {
        assert!(!job[field].is_null(), "ProwJob has {field}");
        assert_eq!(job[field], definition[field], "{field}");
    }
}
