//! A run's link (`status.url`) from upstream's `job_url_template`: a Go template evaluated on
//! the job as upstream's Go structs name its fields (`.Spec.Job`, `.Spec.Type`,
//! `.Spec.Refs.Org`, `.Spec.Refs.Pulls`, `.Status.BuildID`, `.ObjectMeta.Name`, ...), so a
//! template written for upstream's plank gives the same link here.

use gtmpl_value::Value;
use serde_json::Value as Json;

use crate::ProwJob;

/// Go's spelling of a JSON field name: words capitalized, initialisms in capitals
/// (`base_sha` -> `BaseSHA`, `build_id` -> `BuildID`, `startTime` -> `StartTime`).
fn go_name(json: &str) -> String {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in json.chars() {
        if c == '_' || c == '-' || c == '.' {
            words.push(std::mem::take(&mut word));
        } else if c.is_ascii_uppercase() && !word.is_empty() {
            words.push(std::mem::replace(
                &mut word,
                c.to_ascii_lowercase().to_string(),
            ));
        } else {
            word.push(c);
        }
    }
    words.push(word);
    words
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|w| match w.as_str() {
            "id" | "sha" | "url" | "uri" | "api" | "uid" | "ip" => w.to_ascii_uppercase(),
            _ => {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

fn to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (go_name(k), to_value(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    }
}

/// Fields a Go template may read although the JSON left them out (empty strings, no pulls),
/// so `{{.Spec.Refs.Org}}` on a periodic gives "" as upstream does, not an error.
fn with_zero_values(mut job: Json) -> Json {
    let spec = &mut job["spec"];
    for key in ["job", "type", "agent", "namespace", "context", "cluster"] {
        if spec.get(key).is_none() {
            spec[key] = Json::from("");
        }
    }
    let status = &mut job["status"];
    if !status.is_object() {
        *status = Json::Object(Default::default());
    }
    for key in ["build_id", "pod_name", "url", "state", "description"] {
        if status.get(key).is_none() {
            status[key] = Json::from("");
        }
    }
    job
}

/// Renders `template` on `job`. An empty template gives an empty link.
pub fn job_url(template: &str, job: &ProwJob) -> Result<String, String> {
    if template.is_empty() {
        return Ok(String::new());
    }
    let json = with_zero_values(serde_json::to_value(job).map_err(|e| e.to_string())?);
    let mut root = match to_value(&json) {
        Value::Map(map) | Value::Object(map) => map,
        _ => return Err("the job is not an object".into()),
    };
    // Go promotes the embedded ObjectMeta's fields: `.Name` is `.ObjectMeta.Name`.
    if let Some(Value::Map(meta) | Value::Object(meta)) = root.remove("Metadata") {
        for key in ["Name", "Namespace", "Labels", "Annotations", "UID"] {
            if let Some(v) = meta.get(key) {
                root.insert(key.to_string(), v.clone());
            }
        }
        root.insert("ObjectMeta".into(), Value::Map(meta));
    }
    gtmpl::template(template, Value::Map(root)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(spec: Json, status: Json) -> ProwJob {
        serde_json::from_value(json!({
            "apiVersion": "prow.k8s.io/v1", "kind": "ProwJob",
            "metadata": {"name": "run-1", "namespace": "prow"},
            "spec": spec, "status": status,
        }))
        .expect("job")
    }

    /// Upstream's own example template (its config docs), with our bucket.
    const UPSTREAM: &str = concat!(
        "https://prow.example.org/view/s3/ci-logs/",
        r#"{{if eq .Spec.Type "presubmit"}}pr-logs/pull{{else if eq .Spec.Type "batch"}}pr-logs/pull{{else}}logs{{end}}"#,
        r#"{{if .Spec.Refs}}{{if ne .Spec.Refs.Org ""}}/{{.Spec.Refs.Org}}_{{.Spec.Refs.Repo}}{{end}}{{end}}"#,
        r#"{{if eq .Spec.Type "presubmit"}}/{{with index .Spec.Refs.Pulls 0}}{{.Number}}{{end}}{{else if eq .Spec.Type "batch"}}/batch{{end}}"#,
        "/{{.Spec.Job}}/{{.Status.BuildID}}/"
    );

    #[test]
    fn upstreams_templates_give_upstreams_links() {
        let cases = [
            (
                job(
                    json!({"type": "presubmit", "job": "pull-unit",
                           "refs": {"org": "acme", "repo": "w", "base_ref": "main",
                                    "pulls": [{"number": 7, "sha": "p7"}]}}),
                    json!({"build_id": "42"}),
                ),
                UPSTREAM,
                "https://prow.example.org/view/s3/ci-logs/pr-logs/pull/acme_w/7/pull-unit/42/",
            ),
            (
                job(
                    json!({"type": "periodic", "job": "nightly"}),
                    json!({"build_id": "9"}),
                ),
                UPSTREAM,
                "https://prow.example.org/view/s3/ci-logs/logs/nightly/9/",
            ),
            (
                job(
                    json!({"type": "postsubmit", "job": "push",
                           "refs": {"org": "acme", "repo": "w", "base_ref": "main", "base_sha": "abc"}}),
                    json!({"build_id": "3", "pod_name": "run-1"}),
                ),
                "/{{.ObjectMeta.Namespace}}/{{.Name}}/{{.Spec.Refs.BaseSHA}}/{{.Status.PodName}}",
                "/prow/run-1/abc/run-1",
            ),
            (job(json!({}), json!({})), "", ""),
        ];
        for (job, template, want) in cases {
            assert_eq!(job_url(template, &job).as_deref(), Ok(want), "{template}");
        }
    }

    #[test]
    fn a_broken_template_says_why() {
        let err = job_url("{{if .Spec.Job}", &job(json!({}), json!({}))).expect_err("broken");
        assert!(!err.is_empty());
    }

    #[test]
    fn go_names_follow_gos_initialisms() {
        for (json, go) in [
            ("base_sha", "BaseSHA"),
            ("build_id", "BuildID"),
            ("startTime", "StartTime"),
            ("pod_name", "PodName"),
            ("repo_link", "RepoLink"),
            ("url", "URL"),
            ("metadata", "Metadata"),
        ] {
            assert_eq!(go_name(json), go);
        }
    }
}
