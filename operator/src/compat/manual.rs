//! `POST /manual-trigger`: one run of the JobDefinition the request names, for an authorized
//! caller, recorded on the run.

use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use prow_api::compat::Permission;
use prow_api::jobdefinition::trigger::{self, ManualTrigger};
use prow_api::jobdefinition::{prowjob_for, run_name};
use prow_api::ProwJob;
use warp::http::StatusCode;

use super::{Answer, Compat, ATTEMPTS};

impl Compat {
    /// `POST /manual-trigger`: one run of the definition the body names, recorded as the
    /// caller's. The caller needs `create` on `prowjobs` in the definition's namespace.
    pub(super) async fn manual_trigger(&self, auth: Option<String>, body: &[u8]) -> Answer {
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
}
