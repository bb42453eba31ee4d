//! The cimaster-compatible HTTP API as pure rules: which call a path and its parameters make,
//! what a bad call is told, and which permission a call needs. The operator serves it; each
//! call is a thin adapter over the lease rules (`crate::lease`) the declarative path uses.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::validate::is_dns_label;

/// One call of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `getvacant?build&job`: lease a vacant cluster until `finishtest`.
    GetVacant {
        /// The build asking.
        build: String,
        /// Its job.
        job: String,
    },
    /// `finishtest?cluster`: end a `getvacant` lease.
    FinishTest {
        /// The cluster.
        cluster: String,
    },
    /// `holdcluster?cluster&name[&duration]`: turn a lease into a person's hold.
    HoldCluster {
        /// The cluster.
        cluster: String,
        /// Who holds it.
        name: String,
        /// For how long; the pool's default without one.
        duration: Option<Duration>,
    },
    /// `releasecluster?cluster`: end a hold.
    ReleaseCluster {
        /// The cluster.
        cluster: String,
    },
    /// `addcluster?cluster&region&name`: a new TestCluster in the default pool.
    AddCluster {
        /// Its name.
        cluster: String,
        /// Its region.
        region: String,
        /// Who adds it.
        name: String,
    },
    /// `deletecluster?cluster`: remove a cluster that is not in use.
    DeleteCluster {
        /// The cluster.
        cluster: String,
    },
    /// `disablecluster?cluster`: take a cluster out of the pool.
    DisableCluster {
        /// The cluster.
        cluster: String,
    },
    /// `enablecluster?cluster`: put it back.
    EnableCluster {
        /// The cluster.
        cluster: String,
    },
    /// `createcluster?user&branch`: run the pool's create-cluster job.
    CreateCluster {
        /// Who asks.
        user: String,
        /// The branch to build the cluster from.
        branch: String,
    },
}

/// The API group of TestClusters.
pub const GROUP: &str = "prow-operator.dev";

/// The paths the API serves, as cimaster named them.
pub const PATHS: [&str; 9] = [
    "getvacant",
    "finishtest",
    "holdcluster",
    "releasecluster",
    "addcluster",
    "deletecluster",
    "disablecluster",
    "enablecluster",
    "createcluster",
];

/// A call that cannot be made: the HTTP status and why, for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadCall {
    /// 400 for bad parameters, 404 for an unknown path.
    pub status: u16,
    /// Why, in a sentence.
    pub message: String,
}

impl BadCall {
    fn parameter(message: String) -> Self {
        Self {
            status: 400,
            message,
        }
    }
}

/// The permission a call needs, checked with a SubjectAccessReview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The verb: `update` to lease, hold or disable; `create`, `delete`.
    pub verb: &'static str,
    /// The API group of the resource.
    pub group: &'static str,
    /// The resource.
    pub resource: &'static str,
    /// The object's name, when the call names one.
    pub name: Option<String>,
}

/// The call `path` (with or without a leading `/`) makes with `params`, or why it cannot be
/// made.
pub fn parse(path: &str, params: &BTreeMap<String, String>) -> Result<Call, BadCall> {
    let path = path.trim_start_matches('/');
    let get = |name: &str| -> Result<String, BadCall> {
        match params.get(name).map(|v| v.trim()) {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(BadCall::parameter(format!(
                "{path} needs the parameter {name:?}"
            ))),
        }
    };
    let cluster = || -> Result<String, BadCall> {
        let name = get("cluster")?;
        if is_dns_label(&name) {
            Ok(name)
        } else {
            Err(BadCall::parameter(format!(
                "cluster {name:?} is not a valid name: lower-case letters, digits and '-', at most 63"
            )))
        }
    };
    Ok(match path {
        "getvacant" => Call::GetVacant {
            build: get("build")?,
            job: get("job")?,
        },
        "finishtest" => Call::FinishTest {
            cluster: cluster()?,
        },
        "holdcluster" => Call::HoldCluster {
            cluster: cluster()?,
            name: get("name")?,
            duration: match params.get("duration").map(|d| d.trim()) {
                None | Some("") => None,
                Some(text) => Some(hold_duration(text)?),
            },
        },
        "releasecluster" => Call::ReleaseCluster {
            cluster: cluster()?,
        },
        "addcluster" => Call::AddCluster {
            cluster: cluster()?,
            region: get("region")?,
            name: get("name")?,
        },
        "deletecluster" => Call::DeleteCluster {
            cluster: cluster()?,
        },
        "disablecluster" => Call::DisableCluster {
            cluster: cluster()?,
        },
        "enablecluster" => Call::EnableCluster {
            cluster: cluster()?,
        },
        "createcluster" => Call::CreateCluster {
            user: get("user")?,
            branch: get("branch")?,
        },
        other => {
            return Err(BadCall {
                status: 404,
                message: format!("no such call {other:?}; the calls are {}", PATHS.join(", ")),
            })
        }
    })
}

/// A hold's duration: a Go duration (`90m`, `2h30m`) or a number of hours, as cimaster took it.
fn hold_duration(text: &str) -> Result<Duration, BadCall> {
    let parsed = match text.parse::<u64>() {
        Ok(hours) => Ok(Duration::from_secs(hours.saturating_mul(3600))),
        Err(_) => crate::duration::parse(text).map_err(|_| "not a Go duration".to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(BadCall::parameter("duration must be longer than 0".into())),
        Err(why) => Err(BadCall::parameter(format!(
            "duration {text:?} is not a duration (\"6h\", \"90m\", or a number of hours): {why}"
        ))),
    }
}

impl Call {
    /// The cluster the call names, if it names one.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Call::FinishTest { cluster }
            | Call::HoldCluster { cluster, .. }
            | Call::ReleaseCluster { cluster }
            | Call::AddCluster { cluster, .. }
            | Call::DeleteCluster { cluster }
            | Call::DisableCluster { cluster }
            | Call::EnableCluster { cluster } => Some(cluster),
            Call::GetVacant { .. } | Call::CreateCluster { .. } => None,
        }
    }

    /// What the caller must be allowed to do: `update` TestClusters to lease, hold, release,
    /// disable or enable one; `create` or `delete` them to add or delete one; `create`
    /// ProwJobs to run the create-cluster job.
    pub fn permission(&self) -> Permission {
        let (verb, group, resource) = match self {
            Call::AddCluster { .. } => ("create", GROUP, "testclusters"),
            Call::DeleteCluster { .. } => ("delete", GROUP, "testclusters"),
            Call::CreateCluster { .. } => ("create", "prow.k8s.io", "prowjobs"),
            _ => ("update", GROUP, "testclusters"),
        };
        Permission {
            verb,
            group,
            resource,
            name: self.cluster().map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests;
