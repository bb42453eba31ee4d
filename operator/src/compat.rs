//! The cimaster-compatible HTTP API: the paths, parameters and plain-text answers of cimaster,
//! so existing e2e images keep working, over the TestCluster lease rules the declarative path
//! uses (`prow_api::lease`). Each call reads the watch cache (never a list), decides with the
//! pure rules, and writes at the resourceVersion it decided on.
//!
//! Callers present a bearer token, checked with a TokenReview and authorized with a
//! SubjectAccessReview on `testclusters` in the namespace; without one only when
//! `--compat-allow-anonymous` says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use prow_api::compat::{parse, BadCall, Call, Permission};
use prow_api::jobdefinition::trigger::{self, ManualTrigger};
use prow_api::jobdefinition::{prowjob_for, run_name, JobDefinition};
use prow_api::lease::{transition, Holder, Refused, Request};
use prow_api::pool::{free, line, Pool};
use prow_api::{ClusterPhase, ProwJob, TestCluster, TestClusterSpec};
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::Filter;

use crate::testclusters::{create_cluster_job_of, Clusters};

/// How long a `getvacant` caller is told to wait before asking again when nothing is vacant.
const RETRY_AFTER_SECONDS: u64 = 10;

/// How often a lease write that lost a race is decided again on a fresh read.
const ATTEMPTS: usize = 3;

/// The API's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The namespace of its TestClusters.
    pub namespace: String,
    /// The pool `getvacant` leases from and `addcluster` adds to.
    pub pool: String,
    /// Whether callers without a token are served (with no authorization check).
    pub allow_anonymous: bool,
    /// The namespace of a job's pod when its `spec.namespace` is empty (to find the jobs
    /// waiting in the pool, who come first).
    pub default_pod_namespace: String,
}

/// What the calls read and write through.
pub struct Compat {
    client: Client,
    clusters: Arc<Clusters>,
    jobs: Store<ProwJob>,
    definitions: Store<JobDefinition>,
    settings: Settings,
    recorder: crate::events::Events,
}

/// An answer: the HTTP status and the plain text.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn ok(text: String) -> Self {
        Self {
            status: StatusCode::OK,
            text,
        }
    }

    fn with(status: StatusCode, text: String) -> Self {
        Self { status, text }
    }
}

impl From<BadCall> for Answer {
    fn from(bad: BadCall) -> Self {
        Self::with(
            StatusCode::from_u16(bad.status).unwrap_or(StatusCode::BAD_REQUEST),
            bad.message,
        )
    }
}

impl From<Refused> for Answer {
    fn from(refused: Refused) -> Self {
        Self::with(StatusCode::CONFLICT, refused.0)
    }
}

impl From<kube::Error> for Answer {
    fn from(e: kube::Error) -> Self {
        tracing::warn!(error = %e, "cimaster-compatible call failed");
        Self::with(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the API server could not be reached: {e}"),
        )
    }
}

/// Binds the API's address and serves it until `shutdown`.
pub async fn serve(
    client: Client,
    clusters: Arc<Clusters>,
    jobs: Store<ProwJob>,
    definitions: Store<JobDefinition>,
    settings: Settings,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        namespace = %settings.namespace,
        pool = %settings.pool,
        anonymous = settings.allow_anonymous,
        "cimaster-compatible API listening"
    );
    let compat = Arc::new(Compat {
        recorder: crate::events::recorder(client.clone()),
        client,
        clusters,
        jobs,
        definitions,
        settings,
    });
    let server = warp::serve(routes(compat))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    Ok(server.run())
}

/// The largest form body a POST may carry.
const BODY_LIMIT: u64 = 64 * 1024;

/// A body over [`BODY_LIMIT`].
#[derive(Debug)]
struct TooLarge;

impl warp::reject::Reject for TooLarge {}

/// `GET` or `POST /CALL?params`; a POST may carry its parameters as a form body too.
fn routes(
    compat: Arc<Compat>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let method = warp::get().or(warp::post()).unify();
    // A GET (as curl sends it) has no Content-Length, so warp's length limit, which requires
    // one, is checked only when the header is there.
    let small_body = warp::header::optional::<u64>("content-length")
        .and_then(|length: Option<u64>| async move {
            match length {
                Some(n) if n > BODY_LIMIT => Err(warp::reject::custom(TooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one();
    // The manual trigger: a JSON body, as the manual-trigger service took it.
    let trigger = warp::post()
        .and(warp::path("manual-trigger"))
        .and(warp::path::end())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body)
        .and(warp::body::bytes())
        .and_then({
            let compat = compat.clone();
            move |auth: Option<String>, body: Bytes| {
                let compat = compat.clone();
                async move {
                    let answer = compat.manual_trigger(auth, &body).await;
                    Ok::<_, warp::Rejection>(plain(answer))
                }
            }
        });
    let calls = method
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(small_body)
        .and(warp::body::bytes())
        .and_then(move |call: String, query: String, auth, body: Bytes| {
            let compat = compat.clone();
            async move {
                let answer = compat.answer(&call, &query, auth, &body).await;
                Ok::<_, warp::Rejection>(plain(answer))
            }
        });
    trigger.or(calls).unify()
}

/// An answer as a plain-text response.
fn plain(answer: Answer) -> warp::http::Response<String> {
    let mut reply = warp::http::Response::builder()
        .status(answer.status)
        .header("content-type", "text/plain; charset=utf-8");
    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
        reply = reply.header("retry-after", RETRY_AFTER_SECONDS.to_string());
    }
    reply.body(format!("{}\n", answer.text)).unwrap_or_default()
}

/// Who called.
struct Caller {
    user: String,
    groups: Vec<String>,
    uid: Option<String>,
    extra: Option<BTreeMap<String, Vec<String>>>,
    anonymous: bool,
}

impl Compat {
    async fn answer(&self, call: &str, query: &str, auth: Option<String>, body: &[u8]) -> Answer {
        let mut params: BTreeMap<String, String> =
            serde_urlencoded::from_str(query).unwrap_or_default();
        if !body.is_empty() {
            match serde_urlencoded::from_bytes::<BTreeMap<String, String>>(body) {
                Ok(form) => params.extend(form),
                Err(e) => {
                    return Answer::with(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not form-encoded parameters: {e}"),
                    )
                }
            }
        }
        let call = match parse(call, &params) {
            Ok(call) => call,
            Err(bad) => return bad.into(),
        };
        let caller = match self.authenticate(auth.as_deref()).await {
            Ok(caller) => caller,
            Err(answer) => return answer,
        };
        if let Err(answer) = self.authorize(&caller, &call).await {
            return answer;
        }
        let answer = self.run(&call, &caller).await;
        tracing::info!(?call, user = %caller.user, status = answer.status.as_u16(), "cimaster-compatible call");
        answer
    }

    /// Checks the bearer token with a TokenReview.
    async fn authenticate(&self, auth: Option<&str>) -> Result<Caller, Answer> {
        let token = auth
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            if self.settings.allow_anonymous {
                return Ok(Caller {
                    user: "anonymous".into(),
                    groups: vec!["system:unauthenticated".into()],
                    uid: None,
                    extra: None,
                    anonymous: true,
                });
            }
            return Err(Answer::with(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer TOKEN)".into(),
            ));
        };
        let review = TokenReview {
            metadata: ObjectMeta::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            status: None,
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Answer::from)?;
        let status = reviewed.status.unwrap_or_default();
        match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Ok(Caller {
                user: user.username.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                uid: user.uid,
                extra: user.extra,
                anonymous: false,
            }),
            _ => Err(Answer::with(
                StatusCode::UNAUTHORIZED,
                format!(
                    "the token was not accepted{}",
                    status.error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            )),
        }
    }

    /// Asks the API server whether the caller may do what the call does.
    async fn authorize(&self, caller: &Caller, call: &Call) -> Result<(), Answer> {
        self.authorize_in(caller, call.permission(), &self.settings.namespace)
            .await
    }

    /// Asks the API server whether the caller may do `wanted` in `namespace`.
    async fn authorize_in(
        &self,
        caller: &Caller,
        wanted: Permission,
        namespace: &str,
    ) -> Result<(), Answer> {
        if caller.anonymous {
            // Allowed explicitly by --compat-allow-anonymous: the network is the boundary.
            return Ok(());
        }
        let review = SubjectAccessReview {
            metadata: ObjectMeta::default(),
            spec: SubjectAccessReviewSpec {
                user: Some(caller.user.clone()),
                groups: Some(caller.groups.clone()),
                uid: caller.uid.clone(),
                extra: caller.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some(wanted.verb.into()),
                    group: Some(wanted.group.into()),
                    resource: Some(wanted.resource.into()),
                    name: wanted.name.clone(),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            },
            status: None,
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Answer::from)?;
        if reviewed.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        Err(Answer::with(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {} {} in namespace {}",
                caller.user, wanted.verb, wanted.resource, namespace
            ),
        ))
    }

    /// `POST /manual-trigger`: one run of the definition the body names, recorded as the
    /// caller's. The caller needs `create` on `prowjobs` in the definition's namespace.
    async fn manual_trigger(&self, auth: Option<String>, body: &[u8]) -> Answer {
        let trigger: ManualTrigger = match serde_json::from_slice(body) {
            Ok(t) => t,
            Err(e) => {
                return Answer::with(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a manual-trigger request ({{\"org\", \"repo\", \"base_ref\", \"prowtype\", \"prowjob\", \"user\"}}): {e}"),
                )
            }
        };
        let caller = match self.authenticate(auth.as_deref()).await {
            Ok(caller) => caller,
            Err(answer) => return answer,
        };
        let definitions = self.definitions.state();
        let def = match trigger::find(definitions.iter().map(|d| d.as_ref()), &trigger) {
            Ok(def) => def,
            Err(not) => {
                return Answer::with(
                    StatusCode::from_u16(not.status).unwrap_or(StatusCode::BAD_REQUEST),
                    not.message,
                )
            }
        };
        let namespace = def.metadata.namespace.clone().unwrap_or_default();
        let wanted = Permission {
            verb: "create",
            group: "prow.k8s.io",
            resource: "prowjobs",
            name: None,
        };
        if let Err(answer) = self.authorize_in(&caller, wanted, &namespace).await {
            return answer;
        }
        let api: Api<ProwJob> = Api::namespaced(self.client.clone(), &namespace);
        let definition = def.metadata.name.clone().unwrap_or_default();
        for _ in 0..ATTEMPTS {
            let suffix = format!(
                "manual-{:x}",
                Timestamp::now().as_nanosecond() & 0xffff_ffff_ffff
            );
            let request = trigger::request(&trigger, run_name(&definition, &suffix), &caller.user);
            let job = match prowjob_for(def, &request) {
                Ok(job) => job,
                Err(why) => return Answer::with(StatusCode::BAD_REQUEST, why.0),
            };
            match api.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    tracing::info!(definition = %definition, %namespace, run = %request.name, user = %caller.user, "manual trigger");
                    return Answer::ok(format!("{namespace}/{}", request.name));
                }
                // Another request took the name in the same nanosecond: take another.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                    return Answer::with(
                        StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_REQUEST),
                        format!("the run was refused: {}", s.message),
                    )
                }
                Err(e) => return e.into(),
            }
        }
        Answer::with(StatusCode::CONFLICT, "no free run name; try again".into())
    }

    async fn run(&self, call: &Call, caller: &Caller) -> Answer {
        let holder = Holder::Caller {
            name: caller.user.clone(),
        };
        let result = match call {
            Call::GetVacant { build, job } => self.get_vacant(&holder, job, build).await,
            Call::FinishTest { cluster } => {
                self.change(cluster, Request::Finish(holder), "Released")
                    .await
            }
            Call::HoldCluster {
                cluster,
                name,
                duration,
            } => {
                let request = Request::Hold {
                    caller: caller.user.clone(),
                    by: name.clone(),
                    duration: *duration,
                };
                self.change(cluster, request, "Held").await
            }
            Call::ReleaseCluster { cluster } => {
                self.change(cluster, Request::Release, "Released").await
            }
            Call::DisableCluster { cluster } => {
                let request = Request::Disable {
                    reason: format!("disabled by {} through disablecluster", caller.user),
                };
                self.change(cluster, request, "Disabled").await
            }
            Call::EnableCluster { cluster } => {
                self.change(cluster, Request::Enable, "Enabled").await
            }
            Call::AddCluster {
                cluster,
                region,
                name,
            } => self.add(cluster, region, name).await,
            Call::DeleteCluster { cluster } => self.delete(cluster).await,
            Call::CreateCluster { user, branch } => self.create_cluster(user, branch).await,
        };
        result.unwrap_or_else(|answer| answer)
    }

    fn pool(&self) -> Pool<'_> {
        Pool {
            namespace: &self.settings.namespace,
            name: &self.settings.pool,
            default_pod_namespace: &self.settings.default_pod_namespace,
        }
    }

    /// The cluster named `name`, as last seen or written.
    fn cached(&self, name: &str) -> Result<Arc<TestCluster>, Answer> {
        self.clusters
            .view(&self.settings.namespace)
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| {
                Answer::with(
                    StatusCode::NOT_FOUND,
                    format!("no cluster {name} in namespace {}", self.settings.namespace),
                )
            })
    }

    /// Reads the cluster from the API server, after a write lost a race with another.
    async fn fresh(&self, name: &str) -> Result<Arc<TestCluster>, Answer> {
        let api: Api<TestCluster> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        match api.get_opt(name).await? {
            Some(c) => Ok(Arc::new(c)),
            None => self.cached(name),
        }
    }

    /// Leases a vacant cluster of the pool to the caller. The jobs waiting in the pool came
    /// first: the caller gets a cluster only beyond those they are about to take.
    async fn get_vacant(&self, holder: &Holder, job: &str, build: &str) -> Result<Answer, Answer> {
        let pool = self.pool();
        for _ in 0..ATTEMPTS {
            // Decided in the pool's turn, as a job's lease is.
            let turn = self.clusters.turn(pool.namespace, pool.name).await;
            let clusters = self.clusters.view(pool.namespace);
            let members: Vec<&TestCluster> = clusters.iter().map(|c| c.as_ref()).collect();
            let vacant = free(pool.name, &members);
            let jobs = self.jobs.state();
            let waiting = line(&pool, jobs.iter().map(|j| j.as_ref()), &members).len();
            let Some(cluster) = vacant.get(waiting) else {
                return Err(Answer::with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "no vacant cluster in pool {}: {} free, {waiting} jobs waiting; try again later",
                        pool.name,
                        vacant.len()
                    ),
                ));
            };
            let name = cluster.name_any();
            let status = cluster.status.clone().unwrap_or_default();
            let request = Request::Lease(holder.clone());
            let Some(new) = transition(
                &name,
                &status,
                &request,
                &self
                    .clusters
                    .policy(&self.settings.namespace, &self.settings.pool),
                Timestamp::now(),
            )?
            else {
                continue;
            };
            let mut claimed = (**cluster).clone();
            claimed.status = Some(new);
            let claim = self.clusters.claim(&claimed);
            drop(turn);
            let written = self.clusters.write(&self.client, &claimed).await;
            drop(claim);
            match written {
                Ok(updated) => {
                    self.publish(
                        &updated,
                        "Leased",
                        format!(
                            "Leased to {} through getvacant for job {job} build {build}.",
                            holder.recorded_as()
                        ),
                    );
                    return Ok(Answer::ok(name));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Answer::with(
            StatusCode::SERVICE_UNAVAILABLE,
            "every vacant cluster was taken while this call ran; try again".into(),
        ))
    }

    /// Applies `request` to the cluster, at the version it was decided on; a lost race is
    /// decided again on a fresh read.
    async fn change(&self, name: &str, request: Request, reason: &str) -> Result<Answer, Answer> {
        let mut cluster = self.cached(name)?;
        for attempt in 1..=ATTEMPTS {
            let status = cluster.status.clone().unwrap_or_default();
            let before = describe(&status);
            let Some(new) = transition(
                name,
                &status,
                &request,
                &self
                    .clusters
                    .policy(&self.settings.namespace, &cluster.spec.pool),
                Timestamp::now(),
            )?
            else {
                return Ok(Answer::ok(format!("cluster {name} is {before}")));
            };
            let after = describe(&new);
            match self.clusters.set_status(&self.client, &cluster, new).await {
                Ok(updated) => {
                    self.publish(&updated, reason, format!("{before} -> {after}"));
                    return Ok(Answer::ok(format!("cluster {name} is {after}")));
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => {
                    cluster = self.fresh(name).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Answer::with(
            StatusCode::CONFLICT,
            format!("cluster {name} kept changing; try again"),
        ))
    }

    async fn add(&self, name: &str, region: &str, by: &str) -> Result<Answer, Answer> {
        let cluster = TestCluster {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: TestClusterSpec {
                pool: self.settings.pool.clone(),
                region: Some(region.to_string()),
                kubeconfig_secret_ref: None,
                description: Some(format!("added by {by} through addcluster")),
            },
            status: None,
        };
        let api: Api<TestCluster> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        match api.create(&PostParams::default(), &cluster).await {
            Ok(_) => Ok(Answer::ok(format!(
                "cluster {name} added to pool {}",
                self.settings.pool
            ))),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Answer::with(
                StatusCode::CONFLICT,
                format!("cluster {name} already exists"),
            )),
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                Err(Answer::with(StatusCode::BAD_REQUEST, s.message))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, name: &str) -> Result<Answer, Answer> {
        let cluster = self.cached(name)?;
        let status = cluster.status.clone().unwrap_or_default();
        if matches!(
            status.phase,
            Some(ClusterPhase::Leased | ClusterPhase::Held)
        ) {
            return Err(Answer::with(
                StatusCode::CONFLICT,
                format!(
                    "cluster {name} is {}; it can be deleted once it is released",
                    describe(&status)
                ),
            ));
        }
        let api: Api<TestCluster> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: cluster.uid(),
                resource_version: cluster.resource_version(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(Answer::ok(format!("cluster {name} deleted"))),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Answer::with(
                StatusCode::NOT_FOUND,
                format!("no cluster {name}"),
            )),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Answer::with(
                StatusCode::CONFLICT,
                format!("cluster {name} changed meanwhile; try again"),
            )),
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                Err(Answer::with(StatusCode::CONFLICT, s.message))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the pool's create-cluster job: a ProwJob of the pool's template, told who asked and
    /// which branch to build.
    async fn create_cluster(&self, user: &str, branch: &str) -> Result<Answer, Answer> {
        let pool = self
            .clusters
            .pool(&self.settings.namespace, &self.settings.pool);
        let made = match pool {
            Some(pool) => create_cluster_job_of(
                &pool,
                &self.settings.namespace,
                &self.definitions,
                user,
                branch,
            )
            .map_err(|e| Answer::with(StatusCode::CONFLICT, e))?,
            None => None,
        };
        let Some(job) = made else {
            return Err(Answer::with(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "pool {} has no create-cluster job: set spec.createClusterJob or spec.createClusterDefinition in its TestClusterPool",
                    self.settings.pool
                ),
            ));
        };
        let api: Api<ProwJob> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        match api.create(&PostParams::default(), &job).await {
            Ok(created) => Ok(Answer::ok(format!(
                "create-cluster job {} started",
                created.name_any()
            ))),
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => Err(Answer::with(
                StatusCode::CONFLICT,
                format!("the pool's create-cluster job was refused: {}", s.message),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn publish(&self, cluster: &TestCluster, reason: &str, note: String) {
        crate::events::publish(
            &self.recorder,
            cluster.object_ref(&()),
            false,
            reason,
            note,
            "CimasterAPI",
        );
    }
}

/// A cluster's phase and holder, for the answers.
fn describe(status: &prow_api::TestClusterStatus) -> String {
    let phase = status.phase.unwrap_or(ClusterPhase::Vacant);
    let phase = format!("{phase:?}");
    match &status.lease {
        Some(l) => match &l.until {
            Some(until) => format!("{phase} by {} until {}", l.holder, until.0),
            None => format!("{phase} by {}", l.holder),
        },
        None => phase,
    }
}
