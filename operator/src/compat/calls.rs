//! The cimaster calls over the TestCluster lease rules: each reads the watch cache, decides
//! with `prow_api::lease` and writes at the resourceVersion it decided on.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use prow_api::compat::Call;
use prow_api::lease::{transition, Holder, Request};
use prow_api::pool::{caller_share, Pool};
use prow_api::{ClusterPhase, ProwJob, TestCluster, TestClusterSpec};
use warp::http::StatusCode;

use super::{Answer, Caller, Compat, ATTEMPTS};
use crate::testclusters::{create_cluster_job_of, Changed, NotWritten};

impl Compat {
    pub(super) async fn run(&self, call: &Call, caller: &Caller) -> Answer {
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
            .ok_or_else(|| self.not_found(name))
    }

    fn not_found(&self, name: &str) -> Answer {
        Answer::with(
            StatusCode::NOT_FOUND,
            format!("no cluster {name} in namespace {}", self.settings.namespace),
        )
    }

    /// Leases a vacant cluster of the pool to the caller. The jobs waiting in the pool came
    /// first: the caller gets a cluster only beyond those they are about to take.
    async fn get_vacant(&self, holder: &Holder, job: &str, build: &str) -> Result<Answer, Answer> {
        let pool = self.pool();
        let policy = self.clusters.policy(pool.namespace, pool.name);
        let jobs = self.jobs.state();
        let leased = self
            .clusters
            .lease(&self.client, pool.namespace, pool.name, ATTEMPTS, |view| {
                // Decided in the pool's turn, as a job's lease is, by the same share rule.
                let cluster = caller_share(&pool, jobs.iter().map(|j| &j.0), view, &policy)
                    .map_err(|why| Answer::with(StatusCode::SERVICE_UNAVAILABLE, why))?;
                let status = cluster.status.clone().unwrap_or_default();
                let request = Request::Lease(holder.clone());
                let new = transition(
                    &cluster.name_any(),
                    &status,
                    &request,
                    &policy,
                    Timestamp::now(),
                )?
                .ok_or_else(|| {
                    Answer::with(StatusCode::CONFLICT, "the cluster is leased already".into())
                })?;
                let mut claimed = cluster.clone();
                claimed.status = Some(new);
                Ok(claimed)
            })
            .await;
        match leased {
            Ok(updated) => {
                self.publish(
                    &updated,
                    "Leased",
                    format!(
                        "Leased to {} through getvacant for job {job} build {build}.",
                        holder.recorded_as()
                    ),
                );
                Ok(Answer::ok(updated.name_any()))
            }
            Err(NotWritten::Decided(answer)) => Err(answer),
            Err(NotWritten::Raced | NotWritten::Missing) => Err(Answer::with(
                StatusCode::SERVICE_UNAVAILABLE,
                "every vacant cluster was taken while this call ran; try again".into(),
            )),
            Err(NotWritten::Api(e)) => Err(e.into()),
        }
    }

    /// Applies `request` to the cluster, at the version it was decided on; a lost race is
    /// decided again on a fresh read.
    async fn change(&self, name: &str, request: Request, reason: &str) -> Result<Answer, Answer> {
        let namespace = &self.settings.namespace;
        let changed = self
            .clusters
            .change(&self.client, namespace, name, ATTEMPTS, |cluster| {
                let status = cluster.status.clone().unwrap_or_default();
                let policy = self.clusters.policy(namespace, &cluster.spec.pool);
                transition(name, &status, &request, &policy, Timestamp::now())
            })
            .await;
        let described = |c: &TestCluster| describe(&c.status.clone().unwrap_or_default());
        match changed {
            Ok(Changed::Unchanged(cluster)) => Ok(Answer::ok(format!(
                "cluster {name} is {}",
                described(&cluster)
            ))),
            Ok(Changed::Written(before, written)) => {
                let (was, now) = (described(&before), described(&written));
                self.publish(&written, reason, format!("{was} -> {now}"));
                Ok(Answer::ok(format!("cluster {name} is {now}")))
            }
            Err(NotWritten::Decided(refused)) => Err(refused.into()),
            Err(NotWritten::Missing) => Err(self.not_found(name)),
            Err(NotWritten::Raced) => Err(Answer::with(
                StatusCode::CONFLICT,
                format!("cluster {name} kept changing; try again"),
            )),
            Err(NotWritten::Api(e)) => Err(e.into()),
        }
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
