//! Who calls the cimaster-compatible API: a bearer token checked with a TokenReview, the call
//! authorized with a SubjectAccessReview.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use prow_api::compat::{Call, Permission};
use warp::http::StatusCode;

use super::{Answer, Caller, Compat};

impl Compat {
    /// Checks the bearer token with a TokenReview.
    pub(super) async fn authenticate(&self, auth: Option<&str>) -> Result<Caller, Answer> {
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
    pub(super) async fn authorize(&self, caller: &Caller, call: &Call) -> Result<(), Answer> {
        self.authorize_in(caller, call.permission(), &self.settings.namespace)
            .await
    }

    /// Asks the API server whether the caller may do `wanted` in `namespace`.
    pub(super) async fn authorize_in(
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
}
