//! What the dashboard keeps of a ProwJob: the fields its pages show and filter on, and nothing
//! else (no pod spec, no decoration), so that 100,000 stored jobs stay a few tens of megabytes.

use std::sync::Arc;

use crate::jobdefinition::DEFINITION_LABEL;
use crate::{labels, ProwJob, ProwJobState, ProwJobType};

/// A pull request a job tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRow {
    /// Its number.
    pub number: i64,
    /// Its author's login.
    pub author: Arc<str>,
    /// The head commit.
    pub sha: String,
    /// Its title.
    pub title: String,
    /// Links to it, its commit and its author, when the job has them.
    pub link: String,
    /// Link to its head commit.
    pub commit_link: String,
    /// Link to its author.
    pub author_link: String,
}

/// A job as the dashboard keeps it. Repeated strings (job names, repositories, authors,
/// namespaces) are shared between rows by [`Interner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// The ProwJob's namespace.
    pub namespace: Arc<str>,
    /// The ProwJob's name (shared by the index's maps, not copied into each).
    pub name: Arc<str>,
    /// The job's configured name (the same for every run).
    pub job: Arc<str>,
    /// Its type.
    pub job_type: Option<ProwJobType>,
    /// Its state.
    pub state: ProwJobState,
    /// Creation, start, pod pending and completion times, seconds since the epoch.
    pub created: i64,
    /// When it started (its creation when it has no start time).
    pub started: i64,
    /// When its pod was pending.
    pub pending: Option<i64>,
    /// When it ended.
    pub completed: Option<i64>,
    /// `org/repo`, empty for a job without refs.
    pub repo: Arc<str>,
    /// Links to the repository.
    pub repo_link: String,
    /// The base branch.
    pub base_ref: Arc<str>,
    /// The base commit.
    pub base_sha: String,
    /// Link to the base commit.
    pub base_link: String,
    /// The pull requests.
    pub pulls: Vec<PullRow>,
    /// The state's description.
    pub description: String,
    /// The run's URL (`status.url`).
    pub url: String,
    /// The pod's name.
    pub pod_name: String,
    /// The build id.
    pub build_id: String,
    /// The TestCluster pool the job leases from, if any.
    pub pool: Option<Arc<str>>,
    /// The TestCluster it holds.
    pub test_cluster: Option<String>,
    /// The JobDefinition it is a run of.
    pub definition: Option<Arc<str>>,
    /// Namespace its pod runs in (`spec.namespace`).
    pub pod_namespace: Arc<str>,
}

impl JobRow {
    /// Seconds it ran (to `now` while it runs); None before it starts.
    pub fn duration(&self, now: i64) -> i64 {
        self.completed
            .unwrap_or(now)
            .saturating_sub(self.started)
            .max(0)
    }

    /// The first pull's number, if any.
    pub fn pull(&self) -> Option<i64> {
        self.pulls.first().map(|p| p.number)
    }

    /// The namespace its pod runs in as far as the row tells: `spec.namespace`, else the job's
    /// own (the dashboard cannot know the operator's default).
    pub fn pods_namespace(&self) -> &Arc<str> {
        if self.pod_namespace.is_empty() {
            &self.namespace
        } else {
            &self.pod_namespace
        }
    }

    /// Whether the job has ended.
    pub fn is_complete(&self) -> bool {
        self.state.is_complete()
    }

    /// The row without what only a run's own page shows (that page reads the job itself): its
    /// link, pod, build id, base commit and its link, and each pull's commit, title and links
    /// but the pull's own. What the index keeps of 100,000 jobs.
    pub fn for_lists(mut self) -> Self {
        self.url = String::new();
        self.pod_name = String::new();
        self.build_id = String::new();
        self.base_sha = String::new();
        self.base_link = String::new();
        for p in &mut self.pulls {
            p.sha = String::new();
            p.title = String::new();
            p.commit_link = String::new();
            p.author_link = String::new();
        }
        self
    }
}

/// Shares equal strings between rows: a job name or repository repeated over 100,000 runs is
/// kept once.
#[derive(Default, Debug)]
pub struct Interner(std::collections::HashSet<Arc<str>>);

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(shared.clone());
        shared
    }

    /// Takes the strings of `other` it does not have (rows built with `other` keep theirs).
    pub fn absorb(&mut self, other: Interner) {
        for s in other.0 {
            if !self.0.contains(&s) {
                self.0.insert(s);
            }
        }
    }

    /// Forgets strings no row uses any more.
    pub fn prune(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }
}

fn seconds(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<i64> {
    t.map(|t| t.0.as_second())
}

impl JobRow {
    /// The row of `job`, its strings shared through `strings`.
    pub fn of(job: &ProwJob, strings: &mut Interner) -> Self {
        let status = job.status.clone().unwrap_or_default();
        let meta = &job.metadata;
        let created = seconds(meta.creation_timestamp.as_ref()).unwrap_or(0);
        let refs = job.spec.refs.as_ref();
        let label = |key: &str| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(key))
                .filter(|v| !v.is_empty())
        };
        let repo = refs
            .map(|r| format!("{}/{}", r.org, r.repo))
            .filter(|r| r != "/")
            .unwrap_or_default();
        JobRow {
            namespace: strings.get(meta.namespace.as_deref().unwrap_or_default()),
            name: Arc::from(meta.name.as_deref().unwrap_or_default()),
            job: strings.get(&job.spec.job),
            job_type: job.spec.job_type,
            state: job.state(),
            created,
            started: seconds(status.start_time.as_ref()).unwrap_or(created),
            pending: seconds(status.pending_time.as_ref()),
            completed: seconds(status.completion_time.as_ref()),
            repo: strings.get(&repo),
            repo_link: refs.map(|r| r.repo_link.clone()).unwrap_or_default(),
            base_ref: strings.get(refs.map(|r| r.base_ref.as_str()).unwrap_or_default()),
            base_sha: refs.map(|r| r.base_sha.clone()).unwrap_or_default(),
            base_link: refs.map(|r| r.base_link.clone()).unwrap_or_default(),
            pulls: refs
                .map(|r| {
                    r.pulls
                        .iter()
                        .map(|p| PullRow {
                            number: p.number,
                            author: strings.get(p.author.as_deref().unwrap_or_default()),
                            sha: p.sha.clone().unwrap_or_default(),
                            title: p.title.clone(),
                            link: p.link.clone(),
                            commit_link: p.commit_link.clone(),
                            author_link: p.author_link.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            description: status.description,
            url: status.url,
            pod_name: status.pod_name,
            build_id: status.build_id,
            pool: label(labels::TEST_CLUSTER_POOL).map(|p| strings.get(p)),
            test_cluster: status.test_cluster,
            definition: label(DEFINITION_LABEL).map(|d| strings.get(d)),
            pod_namespace: strings.get(&job.spec.namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_row_keeps_what_the_pages_show_and_shares_repeated_strings() {
        let job = |name: &str| -> ProwJob {
            serde_json::from_value(json!({
                "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
                "metadata": {"name": name, "namespace": "ci",
                             "creationTimestamp": "2026-01-01T00:00:00Z",
                             "labels": {labels::TEST_CLUSTER_POOL: "e2e", DEFINITION_LABEL: "unit"}},
                "spec": {"type": "presubmit", "job": "pull-unit", "namespace": "test-pods",
                         "refs": {"org": "acme", "repo": "w", "base_ref": "main", "base_sha": "abc",
                                  "pulls": [{"number": 7, "author": "alice", "sha": "def"}]},
                         "pod_spec": {"containers": [{"name": "t", "image": "x"}]}},
                "status": {"state": "failure", "startTime": "2026-01-01T00:00:10Z",
                           "completionTime": "2026-01-01T00:01:10Z", "description": "failed",
                           "pod_name": name, "build_id": "9", "testCluster": "c1"},
            }))
            .expect("job")
        };
        let mut strings = Interner::default();
        let a = JobRow::of(&job("a"), &mut strings);
        let b = JobRow::of(&job("b"), &mut strings);
        assert_eq!(&*a.repo, "acme/w");
        assert_eq!(a.pull(), Some(7));
        assert_eq!(&*a.pulls[0].author, "alice");
        assert_eq!(a.state, ProwJobState::Failure);
        assert_eq!(a.duration(0), 60);
        assert_eq!(a.pool.as_deref(), Some("e2e"));
        assert_eq!(a.definition.as_deref(), Some("unit"));
        assert_eq!(a.test_cluster.as_deref(), Some("c1"));
        assert_eq!(&*a.pod_namespace, "test-pods");
        assert!(Arc::ptr_eq(&a.job, &b.job), "one copy of the job name");
        assert!(Arc::ptr_eq(&a.repo, &b.repo));
        let listed = a.clone().for_lists();
        assert_eq!(
            (listed.pulls[0].number, &*listed.pulls[0].author),
            (7, "alice")
        );
        assert!(
            listed.base_sha.is_empty()
                && listed.pulls[0].sha.is_empty()
                && listed.pod_name.is_empty()
        );
        assert_eq!((&*listed.repo, listed.state), (&*a.repo, a.state));
        drop(listed);
        drop((a, b));
        strings.prune();
        assert!(strings.0.is_empty(), "{:?}", strings.0);
    }

    #[test]
    fn a_job_without_refs_or_status_is_a_triggered_row_started_at_its_creation() {
        let job: ProwJob = serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "p", "namespace": "ci", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "periodic", "job": "nightly"},
        }))
        .expect("job");
        let row = JobRow::of(&job, &mut Interner::default());
        assert_eq!(row.state, ProwJobState::Triggered);
        assert_eq!(&*row.repo, "");
        assert_eq!(row.started, row.created);
        assert_eq!(row.duration(row.created + 5), 5);
    }
}
