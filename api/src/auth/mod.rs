//! Logins and access control on the OCI API: who the caller is, and
//! whether the route's action on its repository is theirs. Two modes, one
//! at a time as in distribution: Basic credentials checked against an
//! htpasswd file with per-repository [`rules`], or Bearer tokens from an
//! external token server whose `access` claims decide ([`token`]). The
//! first can add a built-in token service ([`service`], [`endpoint`]):
//! clients are then challenged for Bearer tokens it issues from the same
//! htpasswd file and rules, and Basic credentials still work.
//!
//! Answers follow distribution and what clients expect: no or bad
//! credentials get 401 `UNAUTHORIZED` with a `Basic` or `Bearer`
//! challenge; a login without the right gets 403 `DENIED`, a token without
//! the scope 401 with `error="insufficient_scope"`. Nothing a refused
//! request asked for is done. Requests a peer forwarded were authorized
//! where they arrived.

pub mod endpoint;
pub mod htpasswd;
pub mod rules;
pub mod service;
pub mod token;

use crate::error::{ApiError, ErrorCode};
use crate::names::RepoName;
use crate::route::{Access, Route};
use actix_web::{HttpMessage, HttpRequest};
use base64::Engine;
use htpasswd::Htpasswd;
pub use rules::{AccessRule, AccessRules, Actions, Identity};
use service::TokenService;
pub use service::TokenServiceConfig;
use std::path::PathBuf;
use std::sync::Arc;
pub use token::TokenConfig;
use token::{Grant, TokenVerifier};

/// `auth.htpasswd` (with the access rules) as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdConfig {
    /// The realm named in `Basic` challenges.
    pub realm: String,
    /// The htpasswd file of bcrypt entries.
    pub path: PathBuf,
    pub rules: Vec<AccessRule>,
    pub admins: Vec<String>,
    /// The built-in token service, if clients are to be given Bearer tokens.
    pub token_service: Option<TokenServiceConfig>,
}

/// `auth` as configured: one login mode, as in distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    Htpasswd(HtpasswdConfig),
    Token(TokenConfig),
}

/// Put in a `POST …/blobs/uploads/?mount=…&from=…` request's extensions
/// when the caller may not pull from `from`: the upload then starts afresh
/// instead of mounting, as the spec allows.
#[derive(Debug, Clone, Copy)]
pub struct MountRefused;

enum Logins {
    Htpasswd {
        realm: String,
        file: Arc<Htpasswd>,
        rules: AccessRules,
        tokens: Option<Box<TokenService>>,
    },
    Token(TokenVerifier),
}

/// Why a request is refused, and how the client is told.
enum Refusal {
    /// 401 with a challenge; `error` for Bearer (`invalid_token`,
    /// `insufficient_scope`).
    Challenge {
        result: &'static str,
        error: Option<&'static str>,
        detail: String,
    },
    /// 403 `DENIED`: a login without the right.
    Denied(String),
}

pub struct Authorizer {
    logins: Logins,
    requests: prometheus::IntCounterVec,
    /// The token service's answers (registered only when it is configured).
    tokens: prometheus::IntCounterVec,
}

impl Authorizer {
    pub fn new(config: &AuthConfig, registry: &prometheus::Registry) -> Result<Self, String> {
        let logins = match config {
            AuthConfig::Htpasswd(config) => Logins::Htpasswd {
                realm: config.realm.clone(),
                file: Arc::new(
                    Htpasswd::load(&config.path).map_err(|e| format!("auth.htpasswd.path: {e}"))?,
                ),
                rules: AccessRules::new(&config.rules, &config.admins)?,
                tokens: config
                    .token_service
                    .as_ref()
                    .map(|config| TokenService::new(config).map(Box::new))
                    .transpose()?,
            },
            AuthConfig::Token(config) => Logins::Token(TokenVerifier::new(config)?),
        };
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_auth_requests_total",
                "Requests by what authorization decided: user or anonymous (allowed), \
                 bad_credentials (a wrong password or an invalid token), unauthenticated (challenged), \
                 denied (no right, or a token without the scope)",
            ),
            &["result"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(|e| e.to_string())?;
        let tokens = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_auth_token_requests_total",
                "Requests to the built-in token service by answer: issued, bad_credentials, \
                 invalid_request, failed",
            ),
            &["result"],
        )
        .map_err(|e| e.to_string())?;
        if matches!(
            &logins,
            Logins::Htpasswd {
                tokens: Some(_),
                ..
            }
        ) {
            registry
                .register(Box::new(tokens.clone()))
                .map_err(|e| e.to_string())?;
        }
        Ok(Authorizer {
            logins,
            requests,
            tokens,
        })
    }

    /// Who is asking, if they may do what `route` does; the identity is
    /// also left in the request's extensions.
    pub async fn authorize(&self, req: &HttpRequest, route: &Route) -> Result<Identity, ApiError> {
        let decided = match &self.logins {
            Logins::Htpasswd {
                file,
                rules,
                tokens,
                ..
            } => match (tokens, bearer_token(req)) {
                (Some(tokens), Some(token)) => authorize_grant(tokens.verify(token), req, route),
                _ => authorize_login(file, rules, req, route).await,
            },
            Logins::Token(verifier) => match bearer_token(req) {
                Some(token) => authorize_grant(verifier.verify(token), req, route),
                None => Err((
                    String::new(),
                    Refusal::Challenge {
                        result: "unauthenticated",
                        error: None,
                        detail: "a token from the realm is needed".to_owned(),
                    },
                )),
            },
        };
        let (who, may_mount) = match decided {
            Ok(decided) => decided,
            Err((user, refusal)) => return Err(self.refuse(req, route, &user, refusal)),
        };
        if !may_mount {
            req.extensions_mut().insert(MountRefused);
        }
        let result = match who {
            Identity::Anonymous => "anonymous",
            Identity::User(_) => "user",
        };
        self.requests.with_label_values(&[result]).inc();
        req.extensions_mut().insert(who.clone());
        Ok(who)
    }

    /// Whether `who` may pull `repository` (the catalog's filter). A token
    /// that was let into the catalog holds `registry:catalog:*`, which lists
    /// everything, as in distribution.
    pub fn may_pull(&self, who: &Identity, repository: &str) -> bool {
        match &self.logins {
            Logins::Htpasswd { rules, .. } => rules.allowed(who, repository).allows(Access::Pull),
            Logins::Token(_) => true,
        }
    }

    /// Counts and logs a refusal (who, from where, what, where; never the
    /// credentials) and makes its answer.
    fn refuse(&self, req: &HttpRequest, route: &Route, user: &str, refusal: Refusal) -> ApiError {
        let (result, reason) = match &refusal {
            Refusal::Challenge { result, detail, .. } => (*result, detail.as_str()),
            Refusal::Denied(detail) => ("denied", detail.as_str()),
        };
        self.requests.with_label_values(&[result]).inc();
        let address = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        tracing::warn!(
            user,
            %address,
            action = access_name(route.access()),
            repository = route.repository().map_or("", RepoName::as_str),
            route = route.name(),
            reason,
            "request refused"
        );
        match refusal {
            Refusal::Denied(detail) => ApiError::new(ErrorCode::Denied, detail),
            Refusal::Challenge { error, detail, .. } => {
                let challenge = match &self.logins {
                    Logins::Htpasswd {
                        tokens: Some(tokens),
                        ..
                    } => bearer_challenge(&tokens.realm(req), tokens.service(), route, error),
                    Logins::Htpasswd { realm, .. } => format!("Basic realm={}", quoted(realm)),
                    Logins::Token(verifier) => {
                        bearer_challenge(verifier.realm(), verifier.service(), route, error)
                    }
                };
                ApiError::new(ErrorCode::Unauthorized, detail)
                    .with_header("WWW-Authenticate", challenge)
            }
        }
    }
}

/// What an allowed request is: who, and whether a mount it asks for may read its source.
type Decided = Result<(Identity, bool), (String, Refusal)>;

/// htpasswd: the Basic credentials, then the access rules.
async fn authorize_login(
    file: &Arc<Htpasswd>,
    rules: &AccessRules,
    req: &HttpRequest,
    route: &Route,
) -> Decided {
    let who = match req.headers().get("authorization") {
        None => Identity::Anonymous,
        Some(header) => {
            let (user, password) = basic_credentials(header.as_bytes()).unwrap_or_default();
            if user.is_empty() || !file.verify(&user, &password).await {
                return Err((
                    user,
                    Refusal::Challenge {
                        result: "bad_credentials",
                        error: None,
                        detail: "the user name or password is wrong".to_owned(),
                    },
                ));
            }
            Identity::User(user)
        }
    };
    let allowed = match (route, route.repository()) {
        (_, Some(repository)) => rules
            .allowed(&who, repository.as_str())
            .allows(route.access()),
        // `/v2/` checks a login; the catalog lists what the caller may pull.
        (Route::Base, None) => who != Identity::Anonymous,
        (_, None) => who != Identity::Anonymous || rules.anonymous_anywhere(),
    };
    if !allowed {
        let what = match route.repository() {
            Some(repository) => format!("{} on {repository}", access_name(route.access())),
            None => "a login".to_owned(),
        };
        return Err(match who {
            Identity::Anonymous => (
                String::new(),
                Refusal::Challenge {
                    result: "unauthenticated",
                    error: None,
                    detail: format!("{what} needs a login"),
                },
            ),
            Identity::User(user) => {
                let detail = format!("{user} may not {what}");
                (user, Refusal::Denied(detail))
            }
        });
    }
    let may_mount = match (route, mount_source(req)) {
        (Route::StartUpload { .. }, Some(from)) => {
            rules.allowed(&who, from.as_str()).allows(Access::Pull)
        }
        _ => true,
    };
    Ok((who, may_mount))
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// A Bearer token as verified: its `access` claims decide.
fn authorize_grant(verified: Result<Grant, String>, req: &HttpRequest, route: &Route) -> Decided {
    let grant = verified.map_err(|reason| {
        (
            String::new(),
            Refusal::Challenge {
                result: "bad_credentials",
                error: Some("invalid_token"),
                detail: reason,
            },
        )
    })?;
    let allowed = match (route, route.repository()) {
        (_, Some(repository)) => grant.allows(
            "repository",
            repository.as_str(),
            access_name(route.access()),
        ),
        (Route::Base, None) => true,
        (_, None) => grant.allows("registry", "catalog", "*"),
    };
    if !allowed {
        return Err((
            grant.subject.clone(),
            Refusal::Challenge {
                result: "denied",
                error: Some("insufficient_scope"),
                detail: format!(
                    "the token does not grant {}",
                    scope(route).unwrap_or_default()
                ),
            },
        ));
    }
    let may_mount = match (route, mount_source(req)) {
        (Route::StartUpload { .. }, Some(from)) => {
            grant.allows("repository", from.as_str(), "pull")
        }
        _ => true,
    };
    let who = match grant.subject.as_str() {
        "" => Identity::Anonymous,
        subject => Identity::User(subject.to_owned()),
    };
    Ok((who, may_mount))
}

/// `Bearer realm=…,service=…[,scope=…][,error=…]`.
fn bearer_challenge(realm: &str, service: &str, route: &Route, error: Option<&str>) -> String {
    let mut challenge = format!("Bearer realm={},service={}", quoted(realm), quoted(service));
    if let Some(scope) = scope(route) {
        challenge.push_str(&format!(",scope={}", quoted(&scope)));
    }
    if let Some(error) = error {
        challenge.push_str(&format!(",error={}", quoted(error)));
    }
    challenge
}

/// The scope a token for `route` needs, as distribution asks for it
/// (pushes ask for pull too: a push reads what is already there).
fn scope(route: &Route) -> Option<String> {
    match (route, route.repository()) {
        (_, Some(repository)) => Some(format!(
            "repository:{repository}:{}",
            match route.access() {
                Access::Pull => "pull",
                Access::Push => "pull,push",
                Access::Delete => "delete",
            }
        )),
        (Route::Catalog, None) => Some("registry:catalog:*".to_owned()),
        _ => None,
    }
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Pull => "pull",
        Access::Push => "push",
        Access::Delete => "delete",
    }
}

fn mount_source(req: &HttpRequest) -> Option<RepoName> {
    let query = crate::handlers::query(req);
    query.get("mount")?;
    RepoName::parse(query.get("from")?).ok()
}

/// `Basic base64(user:password)`, as RFC 7617 has it.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_as_rfc_7617_has_them() {
        assert_eq!(
            basic_credentials(b"Basic YWxpY2U6d29uZGVyOmxhbmQ="),
            Some(("alice".to_owned(), "wonder:land".to_owned()))
        );
        assert_eq!(
            basic_credentials(b"basic  YWxpY2U6eA== "),
            Some(("alice".to_owned(), "x".to_owned()))
        );
        assert_eq!(basic_credentials(b"Bearer YWxpY2U6eA=="), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic YWxpY2U="), None, "no colon");
    }
}
