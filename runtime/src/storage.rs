//! Object storage for logs and artifacts: S3 (any S3-compatible store: MinIO, Ceph, SeaweedFS),
//! GCS and a local directory behind one interface, through the `object_store` crate (which signs
//! requests itself). Credentials are upstream's files: the S3 `service-account.json` of
//! `{region, endpoint, insecure, s3_force_path_style, access_key, secret_key}`, or a GCS service
//! account key.

use std::sync::Arc;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutOptions, PutPayload,
};
use prow_api::decorate::paths::Bucket;
use serde::Deserialize;

/// Upstream's S3 credentials file.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Credentials {
    /// The region (any value for most S3-compatible stores).
    #[serde(default)]
    pub region: String,
    /// `host:port` or a URL; empty means AWS.
    #[serde(default)]
    pub endpoint: String,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// `endpoint/bucket/key` addressing instead of `bucket.endpoint/key`.
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// The access key id.
    #[serde(default)]
    pub access_key: String,
    /// The secret key.
    #[serde(default)]
    pub secret_key: String,
}

/// What a store is opened with.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// The environment's (AWS_*/GOOGLE_* variables, instance metadata), or none for files.
    #[default]
    Ambient,
    /// The contents of an S3 `service-account.json`.
    S3(S3Credentials),
    /// The contents of a GCS service account key.
    Gcs(String),
}

impl Credentials {
    /// Reads the credentials a job's upload options name: the S3 file, else the GCS file, else
    /// the ambient ones.
    pub fn from_files(s3_file: &str, gcs_file: &str) -> anyhow::Result<Self> {
        if !s3_file.is_empty() {
            let text = std::fs::read(s3_file)
                .with_context(|| format!("reading the S3 credentials file {s3_file}"))?;
            return Self::s3_from_json(&text)
                .with_context(|| format!("reading the S3 credentials file {s3_file}"));
        }
        if !gcs_file.is_empty() {
            let text = std::fs::read_to_string(gcs_file)
                .with_context(|| format!("reading the GCS credentials file {gcs_file}"))?;
            return Ok(Self::Gcs(text));
        }
        Ok(Self::Ambient)
    }

    /// Reads an S3 `service-account.json`.
    pub fn s3_from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let creds: S3Credentials = serde_json::from_slice(bytes).context(
            "expected {region, endpoint, insecure, s3_force_path_style, access_key, secret_key}",
        )?;
        Ok(Self::S3(creds))
    }
}

/// An object's bytes, chunk by chunk.
pub type ByteStream = futures::stream::BoxStream<'static, anyhow::Result<bytes::Bytes>>;

/// An opened bucket.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The content type a file's name suggests, for browsers reading the bucket.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("txt" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

/// Retries of one request: a store that is down is reported within about 20 s rather than the
/// crate's default of up to 3 minutes; callers retry on their own terms (the sidecar goes on
/// streaming, the operator does not hold a job's end for its bucket).
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(20),
    }
}

fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new().with_connect_timeout(std::time::Duration::from_secs(5))
}

impl Store {
    /// Opens `bucket` with `credentials`. Nothing is contacted yet.
    pub fn open(bucket: &Bucket, credentials: &Credentials) -> anyhow::Result<Self> {
        let inner: Arc<dyn ObjectStore> = match bucket {
            Bucket::S3(name) => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(name)
                    .with_retry(retry())
                    .with_client_options(client_options());
                if let Credentials::S3(c) = credentials {
                    let region = if c.region.is_empty() {
                        "us-east-1"
                    } else {
                        &c.region
                    };
                    b = b
                        .with_region(region)
                        .with_access_key_id(&c.access_key)
                        .with_secret_access_key(&c.secret_key)
                        .with_allow_http(c.insecure)
                        .with_virtual_hosted_style_request(!c.s3_force_path_style);
                    if !c.endpoint.is_empty() {
                        let endpoint = if c.endpoint.contains("://") {
                            c.endpoint.clone()
                        } else if c.insecure {
                            format!("http://{}", c.endpoint)
                        } else {
                            format!("https://{}", c.endpoint)
                        };
                        b = b.with_endpoint(endpoint);
                    }
                }
                Arc::new(b.build().context("configuring the S3 client")?)
            }
            Bucket::Gcs(name) => {
                let mut b =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(name);
                if let Credentials::Gcs(key) = credentials {
                    b = b.with_service_account_key(key);
                }
                Arc::new(b.build().context("configuring the GCS client")?)
            }
            Bucket::File(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .with_context(|| format!("opening {dir}"))?,
                )
            }
        };
        Ok(Self {
            inner,
            url: bucket.url(),
        })
    }

    /// The bucket's URL (`s3://B`, ...).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `key`, with a content type from its name.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let mut attributes = Attributes::new();
        // A directory keeps no attributes (object_store refuses them there).
        if !self.url.starts_with("file://") {
            attributes.insert(Attribute::ContentType, content_type(key).into());
        }
        let options = PutOptions {
            attributes,
            ..Default::default()
        };
        self.inner
            .put_opts(&Path::from(key), PutPayload::from(bytes), options)
            .await
            .with_context(|| format!("writing {}/{key}", self.url))?;
        Ok(())
    }

    /// Reads `key`; None when it does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.inner.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .with_context(|| format!("reading {}/{key}", self.url))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}/{key}", self.url)),
        }
    }

    /// The size of `key` in bytes; None when it does not exist.
    pub async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.inner.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}/{key}", self.url)),
        }
    }

    /// Bytes `range` of `key` (a range past its end is cut at the end).
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> anyhow::Result<bytes::Bytes> {
        self.inner
            .get_range(&Path::from(key), range)
            .await
            .with_context(|| format!("reading {}/{key}", self.url))
    }

    /// `key` as a stream of chunks, read as they are consumed (a 200 MB log is never held
    /// whole); None when it does not exist.
    pub async fn stream(&self, key: &str) -> anyhow::Result<Option<ByteStream>> {
        let url = format!("{}/{key}", self.url);
        match self.inner.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(
                found
                    .into_stream()
                    .map_err(move |e| anyhow::Error::new(e).context(format!("reading {url}")))
                    .boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}/{key}", self.url)),
        }
    }

    /// Every key under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let prefix = Path::from(prefix);
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .with_context(|| format!("listing {}/{prefix}", self.url))?;
        keys.sort();
        Ok(keys)
    }
}

/// A decorated run's folder in its bucket, opened with the credentials its
/// `decoration_config` names (read from the Secret in the pod's namespace).
#[derive(Debug)]
pub struct RunFolder {
    /// The bucket.
    pub store: Store,
    /// The run's folder in it (upstream's layout).
    pub path: String,
}

/// A decorated job's decoration and bucket; None when it is not decorated or names no bucket.
/// A malformed one is an error naming the field, before any credentials are read.
fn stored(
    job: &prow_api::ProwJob,
) -> anyhow::Result<Option<(prow_api::decorate::options::Decoration, Bucket)>> {
    let Some(dc) = job.spec.decoration_config.as_ref() else {
        return Ok(None);
    };
    let d = prow_api::decorate::options::Decoration::of(dc)?;
    if d.gcs_configuration.bucket.is_empty() {
        return Ok(None);
    }
    let bucket = Bucket::parse(&d.gcs_configuration.bucket).map_err(anyhow::Error::msg)?;
    Ok(Some((d, bucket)))
}

impl RunFolder {
    /// The folder of `job`'s run, None when the job is not decorated or names no bucket.
    /// Errors name what is missing (the Secret, its key, a malformed field).
    pub async fn of_job(
        client: &kube::Client,
        job: &prow_api::ProwJob,
        default_pod_namespace: &str,
    ) -> anyhow::Result<Option<Self>> {
        let Some((d, _)) = stored(job)? else {
            return Ok(None);
        };
        let namespace = prow_api::pod::pod_namespace(job, default_pod_namespace);
        let secret_file = |name: String| async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(client.clone(), namespace);
            let secret = api
                .get_opt(&name)
                .await
                .with_context(|| format!("reading Secret {namespace}/{name}"))?
                .with_context(|| format!("Secret {namespace}/{name} does not exist"))?;
            let key = prow_api::decorate::CREDENTIALS_FILE;
            let bytes = secret
                .data
                .and_then(|mut d| d.remove(key))
                .with_context(|| format!("Secret {namespace}/{name} has no key {key}"))?;
            anyhow::Ok(bytes.0)
        };
        let credentials = if !d.s3_credentials_secret.is_empty() {
            Credentials::s3_from_json(&secret_file(d.s3_credentials_secret.clone()).await?)?
        } else if !d.gcs_credentials_secret.is_empty() {
            let bytes = secret_file(d.gcs_credentials_secret.clone()).await?;
            Credentials::Gcs(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            Credentials::Ambient
        };
        Self::of_job_with(job, &credentials)
    }

    /// The folder of `job`'s run opened with `credentials` given by the caller (a process that
    /// may not read Secrets, with the credentials mounted: prow-hook); None when the job is not
    /// decorated or names no bucket.
    pub fn of_job_with(
        job: &prow_api::ProwJob,
        credentials: &Credentials,
    ) -> anyhow::Result<Option<Self>> {
        let Some((d, bucket)) = stored(job)? else {
            return Ok(None);
        };
        let gcs = &d.gcs_configuration;
        let build_id = job
            .status
            .as_ref()
            .map(|s| s.build_id.as_str())
            .unwrap_or_default();
        let spec = prow_api::pod::job_spec(job, build_id);
        let path = prow_api::decorate::paths::run_path(&spec, gcs)
            .context("the job has no storage path (a presubmit without a pull?)")?;
        Ok(Some(Self {
            store: Store::open(&bucket, credentials)?,
            path,
        }))
    }

    /// Reads a file of the run; None when it is not there.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.store.get(&format!("{}/{name}", self.path)).await
    }

    /// Writes a file of the run.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&format!("{}/{name}", self.path), bytes)
            .await
    }

    /// The run's location, `s3://B/PATH`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.store.url(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_bucket_writes_reads_and_lists() {
        let dir = std::env::temp_dir().join(format!("prow-storage-{}", std::process::id()));
        let bucket = Bucket::File(dir.to_string_lossy().into_owned());
        let store = Store::open(&bucket, &Credentials::Ambient).expect("open");
        store
            .put("logs/unit/1/build-log.txt", b"ok\n".to_vec())
            .await
            .expect("put");
        store
            .put("logs/unit/1/finished.json", b"{}".to_vec())
            .await
            .expect("put");
        assert_eq!(
            store.get("logs/unit/1/build-log.txt").await.expect("get"),
            Some(b"ok\n".to_vec())
        );
        assert_eq!(
            store.get("logs/unit/2/build-log.txt").await.expect("get"),
            None
        );
        assert_eq!(
            store.size("logs/unit/1/build-log.txt").await.expect("size"),
            Some(3)
        );
        assert_eq!(
            store.size("logs/unit/2/build-log.txt").await.expect("size"),
            None
        );
        assert_eq!(
            &store
                .get_range("logs/unit/1/build-log.txt", 1..3)
                .await
                .expect("range")[..],
            b"k\n"
        );
        let chunks: Vec<bytes::Bytes> = store
            .stream("logs/unit/1/build-log.txt")
            .await
            .expect("stream")
            .expect("there")
            .try_collect()
            .await
            .expect("read");
        assert_eq!(chunks.concat(), b"ok\n");
        assert!(store.stream("nothing").await.expect("stream").is_none());
        assert_eq!(
            store.list("logs/unit").await.expect("list"),
            ["logs/unit/1/build-log.txt", "logs/unit/1/finished.json"]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn s3_credentials_read_upstreams_file_and_name_its_shape_when_wrong() {
        let good = br#"{"region":"r","endpoint":"172.17.0.1:8333","insecure":true,
                        "s3_force_path_style":true,"access_key":"k","secret_key":"s"}"#;
        let Credentials::S3(c) = Credentials::s3_from_json(good).expect("good") else {
            panic!("not s3")
        };
        assert!(c.insecure && c.s3_force_path_style);
        assert_eq!(c.endpoint, "172.17.0.1:8333");
        let bad = Credentials::s3_from_json(b"access_key=k").expect_err("bad");
        assert!(
            format!("{bad:#}").contains("s3_force_path_style"),
            "{bad:#}"
        );
    }
}
