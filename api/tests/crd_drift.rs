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
