//! Decoration: the pod upstream plank builds for a job with a `decoration_config`
//! (`pkg/pod-utils/decorate`), built without I/O. Init containers `clonerefs`, `initupload` and
//! `place-entrypoint`; every test container wrapped by `/tools/entrypoint`; a `sidecar` that
//! uploads; emptyDir volumes `logs`, `tools`, `code`; the utilities' options in upstream's JSON
//! shapes, so upstream's own utility images run unchanged when a job names them, and ours
//! (`--utility-image`) run when it does not.

pub mod options;
pub mod paths;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, KeyToPath, PodSecurityContext, PodSpec,
    SecretVolumeSource, Volume, VolumeMount,
};

use crate::ProwJob;
use options::{
    CensoringOptions, CloneRefsOptions, Decoration, DecorationError, EntrypointOptions,
    InitUploadOptions, SidecarOptions, UploadOptions, WrapperOptions,
};

/// The logs volume and where every utility mounts it.
pub const LOGS_MOUNT: &str = "/logs";
/// The test's artifacts directory (`ARTIFACTS`).
pub const ARTIFACTS_DIR: &str = "/logs/artifacts";
/// The code volume's mount: `GOPATH`, and the root repositories are cloned under.
pub const CODE_MOUNT: &str = "/home/prow/go";
/// Where `place-entrypoint` puts the wrapper.
pub const TOOLS_MOUNT: &str = "/tools";
/// The wrapper the test containers run.
pub const ENTRYPOINT_PATH: &str = "/tools/entrypoint";
/// Where the clone record is written.
pub const CLONE_RECORD: &str = "/logs/clone.json";
/// Where the GCS credentials Secret is mounted.
pub const GCS_CREDENTIALS_MOUNT: &str = "/secrets/gcs";
/// Where the S3 credentials Secret is mounted.
pub const S3_CREDENTIALS_MOUNT: &str = "/secrets/s3-storage";
/// The credentials file in either Secret.
pub const CREDENTIALS_FILE: &str = "service-account.json";
/// The path of our utilities binary inside the utility image.
pub const UTILITY_BINARY: &str = "/prow-utils";
/// Committer of clonerefs' merge commits (upstream's values).
pub const GIT_USER_NAME: &str = "ci-robot";
/// ... and its email.
pub const GIT_USER_EMAIL: &str = "ci-robot@k8s.io";

/// The four utility roles: container name, `utility_images` key, our binary's subcommand.
const CLONEREFS: &str = "clonerefs";
const INITUPLOAD: &str = "initupload";
const PLACE_ENTRYPOINT: &str = "place-entrypoint";
const SIDECAR: &str = "sidecar";

/// Whether `job` is decorated: upstream decorates every job with a `decoration_config`.
pub fn is_decorated(job: &ProwJob) -> bool {
    job.spec.decoration_config.is_some()
}

/// The directory a repository is cloned into (upstream's `PathForRefs`): `path_alias`, else the
/// repository link without its scheme, else `github.com/<org>/<repo>`, under `<base>/src`.
pub fn clone_path(base: &str, refs: &crate::Refs) -> String {
    let inner = if !refs.path_alias.is_empty() {
        refs.path_alias.clone()
    } else if !refs.repo_link.is_empty() {
        let link = refs.repo_link.as_str();
        link.split_once("://")
            .map_or(link, |(_, rest)| rest)
            .to_string()
    } else {
        format!("github.com/{}/{}", refs.org, refs.repo)
    };
    format!("{base}/src/{}", inner.trim_matches('/'))
}

/// The test's working directory: the checkout of the refs marked `workdir`, else the first.
pub fn work_dir(refs: &[crate::Refs]) -> Option<String> {
    refs.iter()
        .find(|r| r.workdir)
        .or(refs.first())
        .map(|r| clone_path(CODE_MOUNT, r))
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn secret_volume(
    name: &str,
    secret: &str,
    items: Option<Vec<KeyToPath>>,
    mode: Option<i32>,
) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items,
            default_mode: mode,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = pairs
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).into(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect();
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    vars
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A utility container: the job's image for `role` if it names one (run as its image says),
/// else `utility_image` running our binary's subcommand.
fn utility(name: &str, job_image: &str, utility_image: &str, subcommand: &str) -> Container {
    let (image, command) = if job_image.is_empty() {
        (
            utility_image.to_string(),
            Some(vec![UTILITY_BINARY.to_string(), subcommand.to_string()]),
        )
    } else {
        (job_image.to_string(), None)
    };
    Container {
        name: name.into(),
        image: Some(image),
        command,
        ..Default::default()
    }
}

/// Decorates `spec`, the pod of `job` whose `JOB_SPEC` is `job_spec`: adds the utilities, wraps
/// every container, adds the volumes. `utility_image` runs every utility the job's
/// `utility_images` leaves empty. Does nothing for an undecorated job.
pub fn decorate(
    spec: &mut PodSpec,
    job: &ProwJob,
    job_spec: &str,
    utility_image: &str,
) -> Result<(), DecorationError> {
    let Some(dc) = job.spec.decoration_config.as_ref() else {
        return Ok(());
    };
    let d = Decoration::of(dc)?;
    let images = &d.utility_images;
    let logs = mount("logs", LOGS_MOUNT);
    let code = mount("code", CODE_MOUNT);
    let tools = mount("tools", TOOLS_MOUNT);

    // Storage: the bucket's credentials Secret, mounted where upstream mounts it.
    let mut upload = UploadOptions {
        gcs_configuration: d.gcs_configuration.clone(),
        dry_run: d.gcs_configuration.bucket.is_empty(),
        ..Default::default()
    };
    let mut storage_volumes = Vec::new();
    let mut storage_mounts = Vec::new();
    if !d.gcs_credentials_secret.is_empty() {
        storage_volumes.push(secret_volume(
            "gcs-credentials",
            &d.gcs_credentials_secret,
            None,
            None,
        ));
        storage_mounts.push(mount("gcs-credentials", GCS_CREDENTIALS_MOUNT));
        upload.gcs_credentials_file = format!("{GCS_CREDENTIALS_MOUNT}/{CREDENTIALS_FILE}");
    }
    if !d.s3_credentials_secret.is_empty() {
        storage_volumes.push(secret_volume(
            "s3-credentials",
            &d.s3_credentials_secret,
            None,
            None,
        ));
        storage_mounts.push(mount("s3-credentials", S3_CREDENTIALS_MOUNT));
        upload.s3_credentials_file = format!("{S3_CREDENTIALS_MOUNT}/{CREDENTIALS_FILE}");
    }

    // clonerefs: every refs, main first, unless the job skips cloning.
    let refs: Vec<crate::Refs> = job
        .spec
        .refs
        .as_deref()
        .into_iter()
        .chain(job.spec.extra_refs.iter())
        .cloned()
        .collect();
    let cloning = !d.skip_cloning && !refs.is_empty();
    let mut clone_volumes = Vec::new();
    let mut init = Vec::new();
    if cloning {
        let mut mounts = vec![logs.clone(), code.clone()];
        let mut key_files = Vec::new();
        for secret in &d.ssh_key_secrets {
            let name = format!("ssh-keys-{secret}");
            let path = format!("/secrets/ssh/{secret}");
            clone_volumes.push(secret_volume(&name, secret, None, Some(0o400)));
            mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount(&name, &path)
            });
            key_files.push(path);
        }
        let mut oauth_token_file = String::new();
        if let Some(token) = d.oauth_token_secret.as_ref() {
            let items = vec![KeyToPath {
                key: token.key.clone(),
                path: format!("./{}", token.key),
                mode: None,
            }];
            clone_volumes.push(secret_volume(&token.name, &token.name, Some(items), None));
            mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount(&token.name, "/secrets/oauth")
            });
            oauth_token_file = format!("/secrets/oauth/{}", token.key);
        }
        clone_volumes.push(empty_dir("clonerefs-tmp"));
        mounts.push(mount("clonerefs-tmp", "/tmp"));
        let options = CloneRefsOptions {
            src_root: CODE_MOUNT.into(),
            log: CLONE_RECORD.into(),
            git_user_name: GIT_USER_NAME.into(),
            git_user_email: GIT_USER_EMAIL.into(),
            git_refs: refs.clone(),
            key_files,
            oauth_token_file,
            host_fingerprints: d.ssh_host_fingerprints.clone(),
            ..Default::default()
        };
        init.push(Container {
            env: Some(env(&[(options::CLONEREFS_OPTIONS, json(&options))])),
            volume_mounts: Some(mounts),
            resources: d.resources.clonerefs.clone(),
            ..utility(CLONEREFS, &images.clonerefs, utility_image, CLONEREFS)
        });
    }

    let initupload = InitUploadOptions {
        upload: upload.clone(),
        log: if cloning {
            CLONE_RECORD.into()
        } else {
            String::new()
        },
    };
    let mut initupload_mounts = if cloning {
        vec![logs.clone()]
    } else {
        Vec::new()
    };
    initupload_mounts.extend(storage_mounts.iter().cloned());
    init.push(Container {
        env: Some(env(&[
            (options::INITUPLOAD_OPTIONS, json(&initupload)),
            (options::JOB_SPEC, job_spec.to_string()),
        ])),
        volume_mounts: Some(initupload_mounts),
        resources: d.resources.initupload.clone(),
        ..utility(INITUPLOAD, &images.initupload, utility_image, INITUPLOAD)
    });
    init.push(Container {
        args: Some(vec!["--copy-mode-only".into()]),
        volume_mounts: Some(vec![tools.clone()]),
        resources: d.resources.place_entrypoint.clone(),
        ..utility(
            PLACE_ENTRYPOINT,
            &images.entrypoint,
            utility_image,
            "entrypoint",
        )
    });
    // Upstream puts clonerefs before the job's own init containers and the other two after.
    let mut all_init = Vec::new();
    let mut init = init.into_iter();
    if cloning {
        all_init.extend(init.next());
    }
    all_init.extend(spec.init_containers.take().unwrap_or_default());
    all_init.extend(init);
    spec.init_containers = Some(all_init);

    // Every test container: wrapped, with the logs and tools mounted.
    let secret_volumes: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.secret.is_some())
        .map(|v| v.name.clone())
        .collect();
    let single = spec.containers.len() == 1;
    let mut wrappers = Vec::new();
    let mut secret_mounts = Vec::new();
    let work_dir = if cloning { work_dir(&refs) } else { None };
    for container in &mut spec.containers {
        let (process_log, marker_file, metadata_file) = if single {
            (
                format!("{LOGS_MOUNT}/process-log.txt"),
                format!("{LOGS_MOUNT}/marker-file.txt"),
                format!("{ARTIFACTS_DIR}/metadata.json"),
            )
        } else {
            let n = &container.name;
            (
                format!("{LOGS_MOUNT}/{n}-log.txt"),
                format!("{LOGS_MOUNT}/{n}-marker.txt"),
                format!("{ARTIFACTS_DIR}/{n}-metadata.json"),
            )
        };
        let mut args = container.command.take().unwrap_or_default();
        args.extend(container.args.take().unwrap_or_default());
        let wrapper = WrapperOptions {
            args,
            container_name: container.name.clone(),
            process_log,
            marker_file,
            metadata_file,
        };
        let options = EntrypointOptions {
            timeout: d.timeout.as_nanos() as u64,
            grace_period: d.grace_period.as_nanos() as u64,
            artifact_dir: ARTIFACTS_DIR.into(),
            wrapper: wrapper.clone(),
            ..Default::default()
        };
        container.command = Some(vec![ENTRYPOINT_PATH.into()]);
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: options::ENTRYPOINT_OPTIONS.into(),
            value: Some(json(&options)),
            value_from: None,
        });
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if d.censor_secrets {
            secret_mounts.extend(
                mounts
                    .iter()
                    .filter(|m| secret_volumes.contains(&m.name))
                    .cloned(),
            );
        }
        mounts.push(logs.clone());
        mounts.push(tools.clone());
        if let Some(dir) = work_dir.as_ref() {
            container.working_dir = Some(dir.clone());
            mounts.push(code.clone());
        }
        wrappers.push(wrapper);
    }

    // The sidecar: waits for every wrapper's marker, uploads, scrubs Secret values.
    let sidecar_options = SidecarOptions {
        gcs_options: UploadOptions {
            items: vec![ARTIFACTS_DIR.into()],
            ..upload
        },
        entries: wrappers,
        ignore_interrupts: d.upload_ignores_interrupts,
        censoring_options: Some(CensoringOptions {
            secret_directories: secret_mounts.iter().map(|m| m.mount_path.clone()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut sidecar_mounts = vec![logs];
    sidecar_mounts.extend(storage_mounts);
    sidecar_mounts.extend(secret_mounts);
    spec.containers.push(Container {
        env: Some(env(&[
            (options::JOB_SPEC, job_spec.to_string()),
            (options::SIDECAR_OPTIONS, json(&sidecar_options)),
        ])),
        volume_mounts: Some(sidecar_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: d.resources.sidecar.clone(),
        ..utility(SIDECAR, &images.sidecar, utility_image, SIDECAR)
    });

    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(empty_dir("logs"));
    volumes.push(empty_dir("tools"));
    volumes.extend(storage_volumes);
    if work_dir.is_some() {
        volumes.extend(clone_volumes);
        volumes.push(empty_dir("code"));
    }

    if d.run_as_user.is_some() || d.run_as_group.is_some() || d.fs_group.is_some() {
        let sc = spec
            .security_context
            .get_or_insert_with(PodSecurityContext::default);
        sc.run_as_user = sc.run_as_user.or(d.run_as_user);
        sc.run_as_group = sc.run_as_group.or(d.run_as_group);
        sc.fs_group = sc.fs_group.or(d.fs_group);
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(d.grace_period.as_secs() as i64 * 5 / 4);
    }
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && !d.default_service_account_name.is_empty()
    {
        spec.service_account_name = Some(d.default_service_account_name.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
