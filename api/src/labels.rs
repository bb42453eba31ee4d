//! Label and annotation keys Prow puts on jobs and pods, and the label-value rule.

/// Marks every pod (and upstream ProwJob) created by Prow.
pub const CREATED_BY_PROW: &str = "created-by-prow";
/// The job's configured name.
pub const JOB: &str = "prow.k8s.io/job";
/// The job's type.
pub const TYPE: &str = "prow.k8s.io/type";
/// The ProwJob's object name.
pub const ID: &str = "prow.k8s.io/id";
/// The run's build ID.
pub const BUILD_ID: &str = "prow.k8s.io/build-id";
/// The job's status context.
pub const CONTEXT: &str = "prow.k8s.io/context";
/// Organisation of the main refs.
pub const REFS_ORG: &str = "prow.k8s.io/refs.org";
/// Repository of the main refs.
pub const REFS_REPO: &str = "prow.k8s.io/refs.repo";
/// Base branch of the main refs.
pub const REFS_BASE_REF: &str = "prow.k8s.io/refs.base_ref";
/// First pull request number of the main refs.
pub const REFS_PULL: &str = "prow.k8s.io/refs.pull";

/// Namespace of the ProwJob a pod runs (pods live in `spec.namespace`, jobs may not).
pub const JOB_NAMESPACE: &str = "prow-operator.dev/job-namespace";
/// UID of the ProwJob a pod runs, so a pod left by a deleted job of the same name is told apart.
pub const JOB_UID: &str = "prow-operator.dev/job-uid";

/// On a ProwJob: the TestCluster pool it leases a cluster from before its pod starts. A label,
/// so that Presets can select the jobs of a pool too.
pub const TEST_CLUSTER_POOL: &str = "prow-operator.dev/test-cluster-pool";

/// On a pool's clean-up ProwJob: the TestCluster it cleans up (kept when the job is stored
/// stripped, so its end can be told).
pub const CLEANS: &str = "prow-operator.dev/cleans";

/// On a pool's create-cluster ProwJob: the pool it builds a cluster for.
pub const CREATES_CLUSTER_FOR: &str = "prow-operator.dev/create-cluster-for";

/// On a ProwJob: `"true"` once it is finished and the operator has nothing left to do for it
/// (written after its last status write, pod deletion and lease end). The operator lists the
/// jobs without it first, so it is ready with the unfinished jobs while the finished ones (a
/// large installation's history) are still arriving. Only a hint: a job carrying it is still
/// read, with the rest, before anything that needs every job acts.
pub const COMPLETED: &str = "prow-operator.dev/completed";

/// Longest label value Kubernetes accepts.
pub const LABEL_VALUE_MAX: usize = 63;

/// Whether `value` is a valid Kubernetes label value: at most 63 characters, alphanumeric at
/// both ends, and `-`, `_`, `.` or alphanumerics between.
pub fn is_valid_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    value.len() <= LABEL_VALUE_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The job name as a label value: cut to 63 characters and stripped of trailing `.` and `-`,
/// as upstream does, or `None` when it still is not a valid value.
pub fn job_label_value(job: &str) -> Option<String> {
    let cut: String = if job.len() > LABEL_VALUE_MAX {
        job.chars()
            .take(LABEL_VALUE_MAX)
            .collect::<String>()
            .trim_end_matches(['.', '-'])
            .to_string()
    } else {
        job.to_string()
    };
    is_valid_label_value(&cut).then_some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_follow_the_kubernetes_rule() {
        let cases = [
            ("", true),
            ("pull-unit", true),
            ("a.b_c-d", true),
            ("-leading", false),
            ("trailing.", false),
            ("has space", false),
            ("slash/no", false),
            (&"x".repeat(63), true),
            (&"x".repeat(64), false),
        ];
        for (value, valid) in cases {
            assert_eq!(is_valid_label_value(value), valid, "{value:?}");
        }
    }

    #[test]
    fn long_job_names_are_cut_to_a_valid_label_value() {
        let long = format!("{}-.{}", "a".repeat(61), "b".repeat(10));
        assert_eq!(job_label_value(&long), Some("a".repeat(61)));
        assert_eq!(job_label_value("ok-name"), Some("ok-name".into()));
        assert_eq!(job_label_value("bad name"), None);
    }
}
