//! Heap bytes a finished job and its pod keep in the operator's caches, counted by a global
//! allocator wrapper. Bounds, not timings: a regression here is what blew memory up upstream.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use prow_api::pod_view::PodView;
use prow_api::ProwJob;
use prow_operator::prowjob::stored::{Job, WireJob};
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn finished_job(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": format!("done-{i:05}"), "namespace": "prow", "uid": format!("6a1f0c2e-0000-4000-8000-{i:012}"),
                     "resourceVersion": "123456", "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z",
                     "labels": {"created-by-prow": "true", "prow.k8s.io/type": "periodic",
                                "prow-operator.dev/completed": "true"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:spec": {"f:job": {}, "f:pod_spec": {}}}}]},
        "spec": {"type": "periodic", "agent": "kubernetes", "job": "ci-done-7", "report": true,
                 "decoration_config": {"timeout": "2h0m0s", "gcs_configuration": {"bucket": "b"}},
                 "pod_spec": {"containers": [{"image": "gcr.io/x/kubekins:v1", "command": ["runner.sh"],
                     "args": ["make", "test"], "env": [{"name": "GO111MODULE", "value": "on"}],
                     "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}},
        "status": {"state": "success", "startTime": "2024-01-01T00:00:00Z", "pendingTime": "2024-01-01T00:00:01Z",
                   "completionTime": "2024-01-01T00:10:00Z", "pod_name": format!("done-{i:05}"),
                   "build_id": "1700000000000", "description": "Job succeeded.", "url": "https://prow.example/view/x"},
    })
}

fn finished_pod(i: usize) -> serde_json::Value {
    let job: ProwJob = serde_json::from_value(finished_job(i)).expect("job");
    let mut pod = serde_json::to_value(
        prow_api::pod::pod_for(&job, "1700000000000", "test-pods").expect("pod"),
    )
    .expect("json");
    pod["metadata"]["uid"] = json!(format!("pod-{i:012}"));
    pod["metadata"]["resourceVersion"] = json!("123457");
    pod["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
    pod["status"] = json!({"phase": "Succeeded", "startTime": "2024-01-01T00:00:01Z",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2024-01-01T00:10:00Z"}],
        "containerStatuses": [{"name": "test", "image": "gcr.io/x/kubekins:v1", "imageID": "sha256:abc", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
            "startedAt": "2024-01-01T00:00:02Z", "finishedAt": "2024-01-01T00:10:00Z"}}}]});
    pod
}

/// Live heap bytes per object of a reflector store holding `n` of them, made by `make`: the
/// object, its key (kube's for a `Resource`: name, namespace, resourceVersion and UID as
/// strings; the pod view's: name and namespace) and its table slot.
fn stored_bytes_each<K>(n: usize, make: impl Fn(usize) -> K) -> isize
where
    K: kube::runtime::reflector::Lookup<DynamicType = ()> + Clone + 'static,
{
    let objects: Vec<K> = (0..n).map(make).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let (store, mut writer) = kube::runtime::reflector::store::<K>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    for object in &objects {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(store.len(), n);
    drop((store, writer, objects));
    (after - before) / n as isize
}

/// Live heap bytes per object after building `n` of them with `make` and keeping them.
fn bytes_each<T>(n: usize, make: impl Fn(usize) -> T) -> isize {
    let before = LIVE.load(Ordering::Relaxed);
    let kept: Vec<Arc<T>> = (0..n).map(|i| Arc::new(make(i))).collect();
    let after = LIVE.load(Ordering::Relaxed);
    drop(kept);
    (after - before) / n as isize
}

#[test]
fn a_finished_job_and_its_pod_stay_small_in_the_caches() {
    let texts: Vec<(String, String)> = (0..1000)
        .map(|i| (finished_job(i).to_string(), finished_pod(i).to_string()))
        .collect();
    // Each parsed and stripped as the watches do (marked completed, as a finished job is
    // once the operator is done with it: the mark is no label map of its own).
    let job_at = |i: usize| {
        let job = Job::from(serde_json::from_str::<WireJob>(&texts[i].0).expect("job"));
        assert!(job.marked());
        job
    };
    // Measured with 100,000 stored jobs: a bool beside the job (8 bytes more per stored job,
    // the allocator's size class unchanged) raised the operator's RSS by 18 MB.
    assert_eq!(
        std::mem::size_of::<Job>(),
        std::mem::size_of::<ProwJob>(),
        "the store's Job is a ProwJob and nothing more"
    );
    let pod_at = |i: usize| -> PodView { serde_json::from_str(&texts[i].1).expect("pod") };
    let job = bytes_each(texts.len(), job_at);
    let pod = bytes_each(texts.len(), pod_at);
    println!("heap per finished job: {job} B, per pod: {pod} B");
    // 1,529 and 2,147 bytes before the large optional parts of a spec were boxed and a pod's
    // label and annotation maps gave way to three fields; 100,000 of each then needed 460 MB.
    // A pod kept 1,031 bytes while it kept kube's whole `ObjectMeta` (360 bytes of struct).
    assert!(job < 1_200, "a finished job keeps {job} bytes");
    assert!(pod < 800, "a pod keeps {pod} bytes");

    // In the test's one thread, so that no other allocation is counted.
    let stored_job = stored_bytes_each(texts.len(), job_at);
    let stored_pod = stored_bytes_each(texts.len(), pod_at);
    println!("heap per finished job in a store: {stored_job} B, per pod: {stored_pod} B");
    // The object as the store clones it, plus its key (name and namespace: 1,261 bytes with
    // kube's key of four strings) and the table's slot.
    assert!(
        stored_job < 1_240,
        "a stored finished job keeps {stored_job} bytes"
    );
    // A pod's key is its name and namespace (1,039 bytes stored with kube's four-string key
    // and the whole `ObjectMeta`).
    assert!(stored_pod < 800, "a stored pod keeps {stored_pod} bytes");
}
