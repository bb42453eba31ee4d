//! The review-to-decision path as one function of bytes, for the fuzz target in `fuzz/` and
//! for the test that replays its corpus on every `cargo test`.

use std::sync::OnceLock;

use kube::runtime::{reflector, watcher};
use prow_api::Preset;

use crate::admission::{Admitter, Endpoint};

const ENDPOINTS: [Endpoint; 6] = [
    Endpoint::MutateProwJobs,
    Endpoint::ValidateProwJobs,
    Endpoint::ValidatePresets,
    Endpoint::ValidateTestClusters,
    Endpoint::ValidateTestClusterPools,
    Endpoint::ValidateJobDefinitions,
];

/// An admitter with one preset that matches every job in namespace `prow` (so the mutating
/// path injects), the job queue `gpu`, and no deep check (no API server).
fn admitter() -> &'static Admitter {
    static ADMITTER: OnceLock<Admitter> = OnceLock::new();
    ADMITTER.get_or_init(|| {
        let (presets, mut writer) = reflector::store::<Preset>();
        let preset: Preset = serde_json::from_value(serde_json::json!({
            "apiVersion": "prow-operator.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": "everyone", "namespace": "prow"},
            "spec": {"selector": {}, "env": [{"name": "FUZZ", "value": "1"}],
                     "volumes": [{"name": "cache", "emptyDir": {}}],
                     "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                     "tolerations": [{"key": "ci", "operator": "Exists"}]}
        }))
        .expect("a valid preset");
        writer.apply_watcher_event(&watcher::Event::Apply(preset));
        Admitter {
            presets,
            definitions: reflector::store().0,
            job_queues: Some(["gpu".to_string()].into()),
            build_clusters: Some(crate::admission::BuildClusters {
                declared: reflector::store().0,
                fixed: ["b1".to_string()].into(),
            }),
            deep_check: None,
        }
    })
}

/// Decides `body` as every endpoint would and serialises each answer, as the server does.
/// Whatever the bytes, this returns: a body that is no AdmissionReview is a `BadRequest`, any
/// other gets a response for the same request.
pub fn review_every_endpoint(body: &[u8]) {
    let admitter = admitter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    for endpoint in ENDPOINTS {
        let Ok(decided) = admitter.decide(endpoint, body) else {
            continue;
        };
        let (review, _, _) = runtime.block_on(admitter.finish(decided));
        let answer = serde_json::to_vec(&review).expect("every response serialises");
        assert!(
            answer.len() < 64 * 1024 + body.len(),
            "an answer is never much larger than its request"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_fuzz_corpus_and_seeds_replay_without_a_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for dir in ["seeds/admission_review", "corpus/admission_review"] {
            let dir = fuzz.join(dir);
            for entry in std::fs::read_dir(&dir).expect("kept in the repository") {
                let body = std::fs::read(entry.expect("entry").path()).expect("readable");
                super::review_every_endpoint(&body);
                replayed += 1;
            }
        }
        assert!(
            replayed >= 100,
            "only {replayed} inputs under {}",
            fuzz.display()
        );
    }
}
