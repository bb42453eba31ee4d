use serde_json::json;

use super::paths::{alias_path, latest_build_paths, run_path, Bucket};
use super::*;
use crate::pod::{decorated_pod_for, job_spec, PodError};

fn job(spec: serde_json::Value) -> ProwJob {
    serde_json::from_value(json!({
        "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
        "metadata": {"name": "run-1", "namespace": "prow", "uid": "u-1"},
        "spec": spec,
    }))
    .expect("job")
}

const OURS: &str = "prow-operator.local/prow-utils:0.1.0";

/// A presubmit of acme/widgets#7 on main, decorated with an S3 bucket.
fn presubmit() -> ProwJob {
    job(json!({
        "type": "presubmit", "agent": "kubernetes", "job": "pull-unit", "namespace": "test-pods",
        "refs": {"org": "acme", "repo": "widgets", "base_ref": "main", "base_sha": "b1",
                 "pulls": [{"number": 7, "author": "al", "sha": "p7"}]},
        "decoration_config": {
            "timeout": "10m", "grace_period": "20s",
            "gcs_configuration": {"bucket": "s3://logs", "path_strategy": "explicit"},
            "s3_credentials_secret": "s3-creds",
            "utility_images": {"clonerefs": "gcr.io/k8s-prow/clonerefs:v1",
                               "initupload": "gcr.io/k8s-prow/initupload:v1",
                               "entrypoint": "gcr.io/k8s-prow/entrypoint:v1",
                               "sidecar": "gcr.io/k8s-prow/sidecar:v1"}
        },
        "pod_spec": {"containers": [{"image": "golang:1.22", "command": ["make"], "args": ["test"],
                                     "env": [{"name": "A", "value": "1"}]}]},
    }))
}

fn spec_json(job: &ProwJob) -> serde_json::Value {
    let pod = decorated_pod_for(job, "42", "default", OURS).expect("pod");
    serde_json::to_value(pod.spec.expect("spec")).expect("json")
}

fn env_value(container: &serde_json::Value, name: &str) -> serde_json::Value {
    let value = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {container}"))["value"]
        .as_str()
        .expect("value")
        .to_string();
    serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value))
}

/// The decorated pod of a fixed presubmit, written out by hand from upstream's documented
/// decoration (pkg/pod-utils/decorate): the utilities' containers, mounts, options and volumes
/// in upstream's order and JSON shapes.
#[test]
fn a_decorated_presubmit_is_the_pod_upstream_builds() {
    let job = presubmit();
    let spec = spec_json(&job);
    let job_spec = serde_json::to_string(&job_spec(&job, "42")).expect("job spec");
    let logs = json!({"name": "logs", "mountPath": "/logs"});
    let code = json!({"name": "code", "mountPath": "/home/prow/go"});
    let tools = json!({"name": "tools", "mountPath": "/tools"});
    let creds = json!({"name": "s3-credentials", "mountPath": "/secrets/s3-storage"});
    let upload = json!({"bucket": "s3://logs", "path_strategy": "explicit",
                        "s3_credentials_file": "/secrets/s3-storage/service-account.json",
                        "dry_run": false});
    let wrapper = json!({"args": ["make", "test"], "container_name": "test",
                         "process_log": "/logs/process-log.txt",
                         "marker_file": "/logs/marker-file.txt",
                         "metadata_file": "/logs/artifacts/metadata.json"});

    // Init containers: clonerefs, initupload, place-entrypoint; upstream images, no commands.
    let init = spec["initContainers"].as_array().expect("init");
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["clonerefs", "initupload", "place-entrypoint"]);
    assert_eq!(init[0]["image"], "gcr.io/k8s-prow/clonerefs:v1");
    assert!(init[0].get("command").is_none());
    assert_eq!(
        init[0]["volumeMounts"],
        json!([logs, code, {"name": "clonerefs-tmp", "mountPath": "/tmp"}])
    );
    assert_eq!(
        env_value(&init[0], "CLONEREFS_OPTIONS"),
        json!({"src_root": "/home/prow/go", "log": "/logs/clone.json",
               "git_user_name": "ci-robot", "git_user_email": "ci-robot@k8s.io",
               "refs": [{"org": "acme", "repo": "widgets", "base_ref": "main", "base_sha": "b1",
                         "pulls": [{"number": 7, "author": "al", "sha": "p7"}]}]})
    );
    assert_eq!(init[1]["image"], "gcr.io/k8s-prow/initupload:v1");
    assert_eq!(init[1]["volumeMounts"], json!([logs, creds]));
    let mut initupload = upload.clone();
    initupload["log"] = json!("/logs/clone.json");
    assert_eq!(env_value(&init[1], "INITUPLOAD_OPTIONS"), initupload);
    assert_eq!(
        init[1]["env"][1],
        json!({"name": "JOB_SPEC", "value": job_spec})
    );
    assert_eq!(init[2]["image"], "gcr.io/k8s-prow/entrypoint:v1");
    assert_eq!(init[2]["args"], json!(["--copy-mode-only"]));
    assert_eq!(init[2]["volumeMounts"], json!([tools]));

    // The test container: renamed `test`, wrapped, in the repository's checkout.
    let test = &spec["containers"][0];
    assert_eq!(test["name"], "test");
    assert_eq!(test["command"], json!(["/tools/entrypoint"]));
    assert!(test.get("args").is_none());
    assert_eq!(
        test["workingDir"],
        "/home/prow/go/src/github.com/acme/widgets"
    );
    assert_eq!(test["volumeMounts"], json!([logs, tools, code]));
    let mut entrypoint = wrapper.clone();
    entrypoint["timeout"] = json!(600_000_000_000u64);
    entrypoint["grace_period"] = json!(20_000_000_000u64);
    entrypoint["artifact_dir"] = json!("/logs/artifacts");
    assert_eq!(env_value(test, "ENTRYPOINT_OPTIONS"), entrypoint);
    let names: Vec<&str> = test["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "A",
            "ARTIFACTS",
            "BUILD_ID",
            "BUILD_NUMBER",
            "CI",
            "GOPATH",
            "JOB_NAME",
            "JOB_SPEC",
            "JOB_TYPE",
            "PROW_JOB_ID",
            "PULL_BASE_REF",
            "PULL_BASE_SHA",
            "PULL_HEAD_REF",
            "PULL_NUMBER",
            "PULL_PULL_SHA",
            "PULL_REFS",
            "PULL_TITLE",
            "REPO_NAME",
            "REPO_OWNER",
            "ENTRYPOINT_OPTIONS"
        ]
    );
    assert_eq!(env_value(test, "ARTIFACTS"), "/logs/artifacts");
    assert_eq!(env_value(test, "GOPATH"), "/home/prow/go");

    // The sidecar, last.
    let sidecar = &spec["containers"][1];
    assert_eq!(sidecar["name"], "sidecar");
    assert_eq!(sidecar["image"], "gcr.io/k8s-prow/sidecar:v1");
    assert_eq!(sidecar["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(sidecar["volumeMounts"], json!([logs, creds]));
    let mut gcs_options = upload.clone();
    gcs_options["items"] = json!(["/logs/artifacts"]);
    assert_eq!(
        env_value(sidecar, "SIDECAR_OPTIONS"),
        json!({"gcs_options": gcs_options, "entries": [wrapper], "censoring_options": {}})
    );
    assert_eq!(
        sidecar["env"][0],
        json!({"name": "JOB_SPEC", "value": job_spec})
    );

    assert_eq!(
        spec["volumes"],
        json!([{"name": "logs", "emptyDir": {}}, {"name": "tools", "emptyDir": {}},
               {"name": "s3-credentials", "secret": {"secretName": "s3-creds"}},
               {"name": "clonerefs-tmp", "emptyDir": {}}, {"name": "code", "emptyDir": {}}])
    );
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(
        spec["terminationGracePeriodSeconds"], 25,
        "grace period x 5/4"
    );
}

#[test]
fn utilities_a_job_leaves_unset_run_our_image_by_subcommand() {
    let mut job = presubmit();
    let dc = job.spec.decoration_config.as_mut().unwrap();
    dc.other.insert(
        "utility_images".into(),
        json!({"sidecar": "example.org/sidecar:v2"}),
    );
    let spec = spec_json(&job);
    let cases = [
        (
            &spec["initContainers"][0],
            OURS,
            Some(json!(["/prow-utils", "clonerefs"])),
        ),
        (
            &spec["initContainers"][1],
            OURS,
            Some(json!(["/prow-utils", "initupload"])),
        ),
        (
            &spec["initContainers"][2],
            OURS,
            Some(json!(["/prow-utils", "entrypoint"])),
        ),
        (&spec["containers"][1], "example.org/sidecar:v2", None),
    ];
    for (container, image, command) in cases {
        assert_eq!(container["image"], image, "{}", container["name"]);
        assert_eq!(
            container.get("command").cloned(),
            command,
            "{}",
            container["name"]
        );
    }
    assert_eq!(
        spec["initContainers"][2]["args"],
        json!(["--copy-mode-only"])
    );
}

#[test]
fn extra_refs_clone_into_their_aliases_and_workdir_picks_the_directory() {
    let job = job(json!({
        "type": "periodic", "job": "nightly",
        "extra_refs": [
            {"org": "acme", "repo": "tools", "base_ref": "main", "path_alias": "acme.dev/tools"},
            {"org": "acme", "repo": "site", "base_ref": "main", "workdir": true,
             "repo_link": "https://git.example.org/acme/site"}],
        "decoration_config": {"timeout": "1h"},
        "pod_spec": {"containers": [{"image": "x", "command": ["true"]}]},
    }));
    let spec = spec_json(&job);
    assert_eq!(
        spec["containers"][0]["workingDir"],
        "/home/prow/go/src/git.example.org/acme/site"
    );
    let clone = env_value(&spec["initContainers"][0], "CLONEREFS_OPTIONS");
    assert_eq!(clone["refs"].as_array().unwrap().len(), 2);
    assert_eq!(
        clone_path(CODE_MOUNT, &job.spec.extra_refs[0]),
        "/home/prow/go/src/acme.dev/tools"
    );
    // No bucket: nothing to upload to, so the uploads are dry runs and the pod still runs.
    assert_eq!(
        env_value(&spec["initContainers"][1], "INITUPLOAD_OPTIONS")["dry_run"],
        true
    );
}

#[test]
fn skip_cloning_leaves_out_clonerefs_and_the_checkout() {
    let mut job = presubmit();
    let dc = job.spec.decoration_config.as_mut().unwrap();
    dc.other.insert("skip_cloning".into(), json!(true));
    let spec = spec_json(&job);
    let names: Vec<&str> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["initupload", "place-entrypoint"]);
    assert!(spec["containers"][0].get("workingDir").is_none());
    assert!(!spec["volumes"].to_string().contains("\"code\""));
}

#[test]
fn several_containers_get_their_own_logs_and_markers_and_the_jobs_init_containers_stay_between() {
    let job = job(json!({
        "type": "periodic", "job": "two",
        "decoration_config": {},
        "pod_spec": {"initContainers": [{"name": "prep", "image": "x", "command": ["true"]}],
                     "containers": [{"name": "a", "image": "x", "command": ["true"]},
                                    {"name": "b", "image": "x", "command": ["true"]}]},
    }));
    let spec = spec_json(&job);
    let init: Vec<&str> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        init,
        ["prep", "initupload", "place-entrypoint"],
        "no refs: no clone"
    );
    let sidecar = env_value(&spec["containers"][2], "SIDECAR_OPTIONS");
    assert_eq!(sidecar["entries"][0]["process_log"], "/logs/a-log.txt");
    assert_eq!(sidecar["entries"][1]["marker_file"], "/logs/b-marker.txt");
    assert_eq!(
        sidecar["entries"][1]["metadata_file"],
        "/logs/artifacts/b-metadata.json"
    );
    let entry = env_value(&spec["containers"][0], "ENTRYPOINT_OPTIONS");
    assert_eq!(entry["timeout"], 7_200_000_000_000u64, "2h when unset");
    assert_eq!(entry["grace_period"], 15_000_000_000u64, "15s when unset");
}

#[test]
fn censor_secrets_hands_the_tests_secret_mounts_to_the_sidecar() {
    let job = job(json!({
        "type": "periodic", "job": "secret",
        "decoration_config": {"censor_secrets": true},
        "pod_spec": {"volumes": [{"name": "token", "secret": {"secretName": "t"}},
                                 {"name": "scratch", "emptyDir": {}}],
                     "containers": [{"image": "x", "command": ["true"],
                                     "volumeMounts": [{"name": "token", "mountPath": "/etc/token"},
                                                      {"name": "scratch", "mountPath": "/s"}]}]},
    }));
    let spec = spec_json(&job);
    let sidecar = &spec["containers"][1];
    assert_eq!(
        env_value(sidecar, "SIDECAR_OPTIONS")["censoring_options"]["secret_directories"],
        json!(["/etc/token"])
    );
    assert!(sidecar["volumeMounts"].to_string().contains("/etc/token"));
}

#[test]
fn clone_credentials_are_mounted_where_upstream_mounts_them() {
    let job = job(json!({
        "type": "postsubmit", "job": "push",
        "refs": {"org": "acme", "repo": "w", "base_ref": "main"},
        "decoration_config": {"ssh_key_secrets": ["deploy-key"],
                              "oauth_token_secret": {"name": "gh-token", "key": "oauth"}},
        "pod_spec": {"containers": [{"image": "x", "command": ["true"]}]},
    }));
    let spec = spec_json(&job);
    let clone = env_value(&spec["initContainers"][0], "CLONEREFS_OPTIONS");
    assert_eq!(clone["key_files"], json!(["/secrets/ssh/deploy-key"]));
    assert_eq!(clone["oauth_token_file"], "/secrets/oauth/oauth");
    let volumes = spec["volumes"].to_string();
    assert!(volumes.contains("\"ssh-keys-deploy-key\""), "{volumes}");
    assert!(volumes.contains("\"defaultMode\":256"), "{volumes}");
    assert!(volumes.contains("\"gh-token\""), "{volumes}");
}

#[test]
fn malformed_decoration_fields_are_named() {
    let cases = [
        (
            json!({"gcs_configuration": {"bucket": "ftp://b"}}),
            "gcs_configuration.bucket",
            "unknown storage scheme",
        ),
        (
            json!({"gcs_configuration": {"bucket": "s3://a/b"}}),
            "gcs_configuration.bucket",
            "no path",
        ),
        (
            json!({"gcs_configuration": {"path_strategy": "flat"}}),
            "gcs_configuration.path_strategy",
            "explicit",
        ),
        (
            json!({"utility_images": "one-image"}),
            "utility_images",
            "not a map",
        ),
        (
            json!({"utility_images": ["a", "b"]}),
            "utility_images",
            "not a map",
        ),
        (
            json!({"utility_images": {"clone_refs": "x"}}),
            "utility_images",
            "unknown field",
        ),
        (
            json!({"utility_images": {"sidecar": "a b"}}),
            "utility_images.sidecar",
            "white space",
        ),
        (json!({"timeout": "soon"}), "timeout", "Go duration"),
        (
            json!({"censor_secrets": "yes"}),
            "censor_secrets",
            "boolean",
        ),
    ];
    for (dc, field, words) in cases {
        let mut j = presubmit();
        j.spec.decoration_config = Some(serde_json::from_value(dc.clone()).expect("dc"));
        match decorated_pod_for(&j, "1", "default", OURS) {
            Err(PodError::Decoration(e)) => {
                assert_eq!(e.field, field, "{dc}");
                assert!(e.message.contains(words), "{dc}: {}", e.message);
            }
            other => panic!("{dc}: {other:?}"),
        }
    }
}

#[test]
fn an_undecorated_job_is_left_as_written() {
    let mut j = presubmit();
    j.spec.decoration_config = None;
    let spec = spec_json(&j);
    assert!(spec.get("initContainers").is_none());
    assert_eq!(spec["containers"][0]["command"], json!(["make"]));
    assert!(!spec.to_string().contains("ARTIFACTS"));
}

#[test]
fn buckets_read_as_upstream_writes_them() {
    let cases = [
        ("gs://prow-logs", Ok(Bucket::Gcs("prow-logs".into()))),
        ("prow-logs", Ok(Bucket::Gcs("prow-logs".into()))),
        ("s3://ci.logs", Ok(Bucket::S3("ci.logs".into()))),
        ("file:///var/prow", Ok(Bucket::File("/var/prow".into()))),
        ("file://relative", Err("absolute path")),
        ("minio://x", Err("unknown storage scheme \"minio\"")),
        ("s3://", Err("a bucket name")),
    ];
    for (text, want) in cases {
        match (Bucket::parse(text), want) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, want, "{text}");
                assert!(Bucket::parse(&got.url()).is_ok(), "{text} round-trips");
            }
            (Err(got), Err(words)) => assert!(got.contains(words), "{text}: {got}"),
            (got, want) => panic!("{text}: {got:?} vs {want:?}"),
        }
    }
}

#[test]
fn runs_land_in_upstreams_layout() {
    let spec = |job_type: &str, org: &str, repo: &str| options::JobSpec {
        job_type: job_type.into(),
        job: "unit".into(),
        buildid: "42".into(),
        refs: Some(crate::Refs {
            org: org.into(),
            repo: repo.into(),
            pulls: vec![crate::Pull {
                number: 7,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let gcs = |strategy: &str, prefix: &str| options::GcsConfiguration {
        bucket: "s3://b".into(),
        path_strategy: strategy.into(),
        path_prefix: prefix.into(),
        default_org: "acme".into(),
        default_repo: "w".into(),
        ..Default::default()
    };
    let cases = [
        (
            spec("periodic", "", ""),
            gcs("explicit", ""),
            "logs/unit/42",
        ),
        (
            spec("postsubmit", "acme", "w"),
            gcs("explicit", "ci/"),
            "ci/logs/unit/42",
        ),
        (
            spec("presubmit", "acme", "w"),
            gcs("explicit", ""),
            "pr-logs/pull/acme_w/7/unit/42",
        ),
        (
            spec("presubmit", "acme", "w"),
            gcs("single", ""),
            "pr-logs/pull/7/unit/42",
        ),
        (
            spec("presubmit", "acme", "x"),
            gcs("single", ""),
            "pr-logs/pull/acme_x/7/unit/42",
        ),
        (
            spec("presubmit", "acme", "x"),
            gcs("legacy", ""),
            "pr-logs/pull/x/7/unit/42",
        ),
        (
            spec("presubmit", "other", "x/y"),
            gcs("legacy", ""),
            "pr-logs/pull/other_x_y/7/unit/42",
        ),
        (
            spec("batch", "acme", "w"),
            gcs("explicit", ""),
            "pr-logs/pull/batch/unit/42",
        ),
    ];
    for (spec, gcs, want) in cases {
        assert_eq!(
            run_path(&spec, &gcs).as_deref(),
            Some(want),
            "{spec:?} {gcs:?}"
        );
    }
    let pre = spec("presubmit", "acme", "w");
    assert_eq!(
        alias_path(&pre, &gcs("explicit", "")).as_deref(),
        Some("pr-logs/directory/unit/42.txt")
    );
    assert_eq!(
        latest_build_paths(&pre, &gcs("explicit", "")),
        [
            "pr-logs/directory/unit/latest-build.txt",
            "pr-logs/pull/acme_w/7/unit/latest-build.txt"
        ]
    );
    assert_eq!(
        latest_build_paths(&spec("periodic", "", ""), &gcs("explicit", "")),
        ["logs/unit/latest-build.txt"]
    );
    assert_eq!(
        alias_path(&spec("periodic", "", ""), &gcs("explicit", "")),
        None
    );
}

#[test]
fn admission_hears_of_every_malformed_field_not_only_the_first() {
    let dc: crate::DecorationConfig = serde_json::from_value(json!({
        "timeout": "soon",
        "utility_images": ["x"],
        "gcs_configuration": {"bucket": "minio://b"},
        "censor_secrets": true
    }))
    .expect("dc");
    let fields: Vec<String> = options::Decoration::problems(&dc)
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        ["utility_images", "gcs_configuration.bucket", "timeout"]
    );
    let good: crate::DecorationConfig =
        serde_json::from_value(json!({"timeout": "1h"})).expect("dc");
    assert!(options::Decoration::problems(&good).is_empty());
}
