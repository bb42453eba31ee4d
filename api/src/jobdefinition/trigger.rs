//! The manual-trigger request (`POST {"org","repo","base_ref","prowtype","prowjob","user"}`,
//! as the manual-trigger service took it): which definition it names, and the run it asks for.

use serde::Deserialize;

use super::{DefinitionType, JobDefinition, RunRequest};
use crate::Pull;

/// A manual-trigger request.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ManualTrigger {
    /// Organisation of the repository (presubmits and postsubmits).
    #[serde(default)]
    pub org: String,
    /// Repository (presubmits and postsubmits).
    #[serde(default)]
    pub repo: String,
    /// Branch the run tests.
    #[serde(default)]
    pub base_ref: String,
    /// Its commit, when known.
    #[serde(default)]
    pub base_sha: String,
    /// `presubmit`, `postsubmit` or `periodic`.
    pub prowtype: String,
    /// The job's name.
    pub prowjob: String,
    /// Who asks, as the caller says (the authenticated user is recorded beside it).
    #[serde(default)]
    pub user: String,
    /// Pull requests a presubmit's run tests.
    #[serde(default)]
    pub pulls: Vec<Pull>,
}

/// A request that names no single definition: the HTTP status and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound {
    /// 400, 404 or 409.
    pub status: u16,
    /// Why, for the caller.
    pub message: String,
}

/// The definition `trigger` names: the job of that name and type, of that repository for
/// presubmits and postsubmits.
pub fn find<'a>(
    definitions: impl IntoIterator<Item = &'a JobDefinition>,
    trigger: &ManualTrigger,
) -> Result<&'a JobDefinition, NotFound> {
    let kind: DefinitionType = serde_json::from_value(serde_json::Value::String(
        trigger.prowtype.clone(),
    ))
    .map_err(|_| NotFound {
        status: 400,
        message: format!(
            "prowtype {:?} is not presubmit, postsubmit or periodic",
            trigger.prowtype
        ),
    })?;
    if trigger.prowjob.is_empty() {
        return Err(NotFound {
            status: 400,
            message: "prowjob is required: name the job to run".into(),
        });
    }
    let repo = format!("{}/{}", trigger.org, trigger.repo);
    let found: Vec<&JobDefinition> = definitions
        .into_iter()
        .filter(|d| d.spec.job_type == kind && d.job_name() == trigger.prowjob)
        .filter(|d| kind == DefinitionType::Periodic || d.spec.repo == repo)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(NotFound {
            status: 404,
            message: match kind {
                DefinitionType::Periodic => format!("no periodic {} is defined", trigger.prowjob),
                _ => format!(
                    "no {} {} is defined for {repo}",
                    trigger.prowtype, trigger.prowjob
                ),
            },
        }),
        several => Err(NotFound {
            status: 409,
            message: format!(
                "{} definitions define {}: {}",
                several.len(),
                trigger.prowjob,
                several
                    .iter()
                    .map(|d| format!(
                        "{}/{}",
                        d.metadata.namespace.as_deref().unwrap_or_default(),
                        d.metadata.name.as_deref().unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The run `trigger` asks for, named `name`, recorded as started by `caller` (and the user
/// the request names, when it names another).
pub fn request(trigger: &ManualTrigger, name: String, caller: &str) -> RunRequest {
    let user = if trigger.user.is_empty() || trigger.user == caller {
        caller.to_string()
    } else {
        format!("{} (for {})", caller, trigger.user)
    };
    RunRequest {
        name,
        trigger: "manual".into(),
        base_ref: trigger.base_ref.clone(),
        base_sha: trigger.base_sha.clone(),
        pulls: trigger.pulls.clone(),
        user: Some(user),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, ns: &str, spec: serde_json::Value) -> JobDefinition {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .expect("def")
    }

    #[test]
    fn a_trigger_finds_its_one_definition_or_says_why_not() {
        let defs = [
            def(
                "nightly",
                "a",
                json!({"type": "periodic", "interval": "1h"}),
            ),
            def(
                "post",
                "a",
                json!({"type": "postsubmit", "repo": "acme/widgets", "name": "deploy"}),
            ),
            def(
                "post-other",
                "a",
                json!({"type": "postsubmit", "repo": "acme/other", "name": "deploy"}),
            ),
            def("twin-1", "a", json!({"type": "periodic", "name": "twin"})),
            def("twin-2", "b", json!({"type": "periodic", "name": "twin"})),
        ];
        let t = |prowtype: &str, prowjob: &str, repo: &str| ManualTrigger {
            org: "acme".into(),
            repo: repo.into(),
            prowtype: prowtype.into(),
            prowjob: prowjob.into(),
            ..Default::default()
        };
        assert_eq!(
            find(&defs, &t("periodic", "nightly", "")).map(|d| d.job_name()),
            Ok("nightly")
        );
        assert_eq!(
            find(&defs, &t("postsubmit", "deploy", "widgets")).map(|d| d.metadata.name.as_deref()),
            Ok(Some("post"))
        );
        assert_eq!(
            find(&defs, &t("postsubmit", "deploy", "gadgets"))
                .map(|_| ())
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            find(&defs, &t("presubmit", "nightly", ""))
                .map(|_| ())
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            find(&defs, &t("batch", "nightly", ""))
                .map(|_| ())
                .unwrap_err()
                .status,
            400
        );
        let twins = find(&defs, &t("periodic", "twin", ""))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(twins.status, 409);
        assert!(
            twins.message.contains("a/twin-1") && twins.message.contains("b/twin-2"),
            "{}",
            twins.message
        );
    }

    #[test]
    fn the_run_records_the_authenticated_caller_and_whom_it_was_for() {
        let trigger = ManualTrigger {
            base_ref: "main".into(),
            prowtype: "postsubmit".into(),
            prowjob: "deploy".into(),
            user: "cluster-pool".into(),
            ..Default::default()
        };
        let r = request(&trigger, "x".into(), "system:serviceaccount:ci:bot");
        assert_eq!(
            r.user.as_deref(),
            Some("system:serviceaccount:ci:bot (for cluster-pool)")
        );
        assert_eq!(r.base_ref, "main");
        assert_eq!(r.trigger, "manual");
        let own = ManualTrigger {
            user: "alice".into(),
            ..trigger
        };
        assert_eq!(
            request(&own, "x".into(), "alice").user.as_deref(),
            Some("alice")
        );
    }
}
