//! The upstream job fields a ProwJob's spec and a JobDefinition's spec share: the same names,
//! types, serde rules and schema in both kinds, declared once here. They are declared by a
//! macro rather than a `#[serde(flatten)]`ed struct because flatten makes serde buffer every
//! job through an intermediate map, on the admission and watch paths that read thousands of
//! jobs; the macro costs nothing at run time. The large optional parts are boxed: a finished
//! job kept in the operator's cache has none of them, and each costs 8 bytes there instead of
//! its whole struct. Fields whose types differ between the two
//! upstream shapes (the agent, the pod's namespace, the pod spec's key) stay with their kind.

/// Declares `struct $name { $own fields..., the shared upstream job fields }`.
macro_rules! with_upstream_job_fields {
    ($(#[$attr:meta])* $vis:vis struct $name:ident { $($own:tt)* }) => {
        $(#[$attr])*
        $vis struct $name {
            $($own)*
            /// Alias of the build cluster the job's pods run in (upstream's multi-cluster
            /// setting).
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub cluster: String,
            /// Further repositories the job checks out.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub extra_refs: Vec<$crate::prowjob::Refs>,
            /// Name of the status context reported for the job; the job's name when empty.
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub context: String,
            /// Comment that reruns the job (a presubmit's must match its `trigger`).
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub rerun_command: String,
            /// How many runs of the job may be pending at once; 0 is unlimited.
            #[serde(default, skip_serializing_if = "crate::prowjob::is_zero")]
            pub max_concurrency: i64,
            /// Whether an evicted pod ends the run in error instead of being recreated.
            #[serde(default, skip_serializing_if = "crate::prowjob::is_false")]
            pub error_on_eviction: bool,
            /// Jenkins settings, for upstream's Jenkins agent (kept, not run here).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub jenkins_spec: Option<Box<serde_json::Value>>,
            /// Tekton pipeline run spec, for upstream's Tekton agent (kept, not run here).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub pipeline_run_spec: Option<Box<serde_json::Value>>,
            /// Tekton pipeline run specs by version, for upstream's Tekton agent (kept, not run
            /// here).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub tekton_pipeline_run_spec: Option<Box<serde_json::Value>>,
            /// Pod utilities' settings, including the pod timeouts of each run.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub decoration_config: Option<Box<$crate::prowjob::DecorationConfig>>,
            /// How reporters (Slack, ...) report the job.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub reporter_config: Option<Box<serde_json::Value>>,
            /// Who may rerun the job.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub rerun_auth_config: Option<Box<serde_json::Value>>,
            /// Whether the job is hidden from the public dashboard.
            #[serde(default, skip_serializing_if = "crate::prowjob::is_false")]
            pub hidden: bool,
            /// Defaults upstream tooling applies to the job's runs (tenant ID and the like).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::schema::preserved_object")]
            pub prowjob_defaults: Option<Box<serde_json::Value>>,
            /// Named queue whose capacity limits how many runs of it go at once.
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub job_queue_name: String,
        }
    };
}

pub(crate) use with_upstream_job_fields;
