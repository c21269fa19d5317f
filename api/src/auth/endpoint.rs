//! The token service's endpoint ([`TOKEN_PATH`]), as docker's token spec
//! and its OAuth2 variant describe it:
//!
//! * `GET /token?service=…&scope=…&scope=…` with Basic credentials (or
//!   none, for an anonymous token), as docker, podman and skopeo ask;
//! * `POST /token` with a form `grant_type=password&username=…&password=…
//!   &service=…&scope=… …`, as containerd asks first. Other grant types
//!   (refresh tokens are never issued) get 400 `unsupported_grant_type`,
//!   on which containerd falls back to `GET`.
//!
//! Each requested `repository` scope is granted the actions the access
//! rules give the caller there, and `registry:catalog:*` to whoever may
//! list the catalog; what is not theirs is left out of the token, never
//! refused, as the spec asks. Wrong credentials are refused with 401.

use super::service::{IssuedToken, TokenService, TOKEN_PATH};
use super::token::AccessClaim;
use super::{basic_credentials, quoted, Authorizer, Identity, Logins};
use crate::error::{ApiError, ErrorCode};
use crate::names::RepoName;
use crate::route::Access;
use actix_web::{HttpRequest, HttpResponse};

/// A token request, whichever way it came.
#[derive(Debug, Default, PartialEq, Eq)]
struct TokenRequest {
    service: Option<String>,
    scopes: Vec<String>,
    /// `None` for an anonymous request.
    credentials: Option<(String, String)>,
}

/// Why no token is given.
#[derive(Debug, PartialEq, Eq)]
enum NoToken {
    /// 400 with an OAuth2 error (`invalid_request`, `unsupported_grant_type`).
    BadRequest(&'static str, String),
    /// 401: the user name or password is wrong.
    BadCredentials(String),
    /// 500: signing failed, which a key that loaded should never do.
    Failed(String),
}

/// How a token request was answered, for the caller's rate limits.
pub enum TokenAnswer {
    /// A token for this caller.
    Issued(Identity, HttpResponse),
    /// Refused: counted against the client's address.
    Refused(HttpResponse),
}

impl Authorizer {
    /// Whether this registry answers on [`TOKEN_PATH`].
    pub fn serves_tokens(&self) -> bool {
        matches!(
            &self.logins,
            Logins::Htpasswd {
                tokens: Some(_),
                ..
            }
        )
    }

    /// Answers a request to [`TOKEN_PATH`] (`body` is a `POST`'s form); `None`
    /// when no token service is configured.
    pub async fn answer_token_request(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Option<TokenAnswer> {
        let Logins::Htpasswd {
            realm,
            file,
            rules,
            tokens: Some(tokens),
        } = &self.logins
        else {
            return None;
        };
        let address = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let issued = async {
            let request = read_request(req, body)?;
            if let Some(service) = request.service.as_deref() {
                if service != tokens.service() {
                    return Err(NoToken::BadRequest(
                        "invalid_request",
                        format!("this registry is service {:?}", tokens.service()),
                    ));
                }
            }
            let who = match &request.credentials {
                None => Identity::Anonymous,
                Some((user, password)) => {
                    if user.is_empty() || !file.verify(user, password).await {
                        return Err(NoToken::BadCredentials(user.clone()));
                    }
                    Identity::User(user.clone())
                }
            };
            let access = granted(
                &request.scopes,
                |repository| rules.allowed(&who, repository),
                who != Identity::Anonymous || rules.anonymous_anywhere(),
            );
            let token = issue(tokens, &who, &access)?;
            tracing::debug!(user = who.name(), %address, scopes = ?request.scopes, "token issued");
            Ok((who, token))
        };
        Some(match issued.await {
            Ok((who, token)) => {
                self.tokens.with_label_values(&["issued"]).inc();
                TokenAnswer::Issued(who, HttpResponse::Ok().json(token))
            }
            Err(NoToken::BadCredentials(user)) => {
                self.tokens.with_label_values(&["bad_credentials"]).inc();
                tracing::warn!(user, %address, route = "token", "token refused: the user name or password is wrong");
                let error = ApiError::new(
                    ErrorCode::Unauthorized,
                    "the user name or password is wrong",
                )
                .with_header("WWW-Authenticate", format!("Basic realm={}", quoted(realm)));
                TokenAnswer::Refused(actix_web::ResponseError::error_response(&error))
            }
            Err(NoToken::Failed(reason)) => {
                self.tokens.with_label_values(&["failed"]).inc();
                tracing::error!(%address, route = "token", reason, "a token could not be signed");
                TokenAnswer::Refused(HttpResponse::InternalServerError().json(serde_json::json!({
                    "error": "server_error",
                    "error_description": "the token could not be signed",
                })))
            }
            Err(NoToken::BadRequest(error, description)) => {
                self.tokens.with_label_values(&["invalid_request"]).inc();
                tracing::warn!(%address, route = "token", error, description, "token refused");
                TokenAnswer::Refused(HttpResponse::BadRequest().json(serde_json::json!({
                    "error": error,
                    "error_description": description,
                })))
            }
        })
    }
}

fn issue(
    tokens: &TokenService,
    who: &Identity,
    access: &[AccessClaim],
) -> Result<IssuedToken, NoToken> {
    tokens.issue(who.name(), access).map_err(NoToken::Failed)
}

/// The request's parameters and credentials, from a `GET`'s query and
/// `Authorization` header or a `POST`'s password grant.
fn read_request(req: &HttpRequest, body: &[u8]) -> Result<TokenRequest, NoToken> {
    let pairs = |text: &str| {
        actix_web::web::Query::<Vec<(String, String)>>::from_query(text)
            .map(|q| q.into_inner())
            .map_err(|e| NoToken::BadRequest("invalid_request", e.to_string()))
    };
    let one = |pairs: &[(String, String)], key: &str| {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    // Several scopes come as repeated parameters or space-separated in one.
    let scopes = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    if req.method() == actix_web::http::Method::POST {
        let form = std::str::from_utf8(body).map_err(|_| {
            NoToken::BadRequest("invalid_request", "a form that is not UTF-8".into())
        })?;
        let form = pairs(form)?;
        match one(&form, "grant_type").as_deref() {
            Some("password") => {}
            Some(other) => {
                return Err(NoToken::BadRequest(
                    "unsupported_grant_type",
                    format!("grant_type {other:?}: only password is supported"),
                ))
            }
            None => {
                return Err(NoToken::BadRequest(
                    "invalid_request",
                    "no grant_type".to_owned(),
                ))
            }
        }
        let username = one(&form, "username").unwrap_or_default();
        let password = one(&form, "password").unwrap_or_default();
        return Ok(TokenRequest {
            service: one(&form, "service"),
            scopes: scopes(&form),
            credentials: Some((username, password)),
        });
    }
    if req.method() != actix_web::http::Method::GET {
        return Err(NoToken::BadRequest(
            "invalid_request",
            format!("{} {TOKEN_PATH}: use GET or POST", req.method()),
        ));
    }
    let query = pairs(req.query_string())?;
    let credentials = match req.headers().get("authorization") {
        None => None,
        Some(header) => Some(
            basic_credentials(header.as_bytes())
                .ok_or_else(|| NoToken::BadCredentials(String::new()))?,
        ),
    };
    Ok(TokenRequest {
        service: one(&query, "service"),
        scopes: scopes(&query),
        credentials,
    })
}

/// The access claims for `scopes` (`type:name:actions`): a repository's
/// actions cut down to what `allowed` gives on it, the catalog if
/// `may_list_catalog`; scopes granting nothing are left out.
fn granted(
    scopes: &[String],
    allowed: impl Fn(&str) -> super::Actions,
    may_list_catalog: bool,
) -> Vec<AccessClaim> {
    let mut claims: Vec<AccessClaim> = Vec::new();
    for scope in scopes {
        // The name may hold a `:` (`host:port/name` in some clients' scopes);
        // the type is before the first, the actions after the last.
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let actions: Vec<String> = match kind {
            "repository" if RepoName::parse(name).is_ok() => {
                let rights = allowed(name);
                let mut granted: Vec<String> = Vec::new();
                for action in actions.split(',') {
                    let wanted: &[Access] = match action {
                        "pull" => &[Access::Pull],
                        "push" => &[Access::Push],
                        "delete" => &[Access::Delete],
                        "*" => &[Access::Pull, Access::Push, Access::Delete],
                        _ => &[],
                    };
                    for &access in wanted {
                        let name = super::access_name(access).to_owned();
                        if rights.allows(access) && !granted.contains(&name) {
                            granted.push(name);
                        }
                    }
                }
                granted
            }
            "registry" if name == "catalog" && may_list_catalog && actions == "*" => {
                vec!["*".to_owned()]
            }
            _ => Vec::new(),
        };
        if actions.is_empty() {
            continue;
        }
        match claims.iter_mut().find(|c| c.kind == kind && c.name == name) {
            Some(claim) => {
                for action in actions {
                    if !claim.actions.contains(&action) {
                        claim.actions.push(action);
                    }
                }
            }
            None => claims.push(AccessClaim {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions,
            }),
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Actions;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn claim(kind: &str, name: &str, actions: &[&str]) -> AccessClaim {
        AccessClaim {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: scopes(actions),
        }
    }

    #[test]
    fn scopes_are_cut_down_to_the_callers_rights() {
        let pull_only = |name: &str| {
            if name.starts_with("team-a/") {
                Actions::parse(&scopes(&["pull", "push"])).unwrap()
            } else if name == "public" {
                Actions::parse(&scopes(&["pull"])).unwrap()
            } else {
                Actions::NONE
            }
        };
        let claims = granted(
            &scopes(&[
                "repository:team-a/app:pull,push,delete",
                "repository:public:pull,push",
                "repository:secret:pull",
                "repository:team-a/app:pull",
                "repository:team-a/lib:*",
                "registry:catalog:*",
                "repository:Not/A/Name:pull",
                "nonsense",
            ]),
            pull_only,
            false,
        );
        assert_eq!(
            claims,
            vec![
                claim("repository", "team-a/app", &["pull", "push"]),
                claim("repository", "public", &["pull"]),
                claim("repository", "team-a/lib", &["pull", "push"]),
            ]
        );
    }

    #[test]
    fn the_catalog_is_granted_to_who_may_list_it() {
        let everything = |_: &str| Actions::ALL;
        let catalog = scopes(&["registry:catalog:*"]);
        assert_eq!(
            granted(&catalog, everything, true),
            vec![claim("registry", "catalog", &["*"])]
        );
        assert!(granted(&catalog, everything, false).is_empty());
    }
}
