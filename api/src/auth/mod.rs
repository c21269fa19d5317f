//! Logins and access control on the OCI API: who the caller is (Basic
//! credentials checked against an htpasswd file, or nobody), and whether
//! the route's action on its repository is theirs ([`rules`]).
//!
//! Answers follow distribution and what clients expect: no or bad
//! credentials get 401 `UNAUTHORIZED` with a `Basic` challenge; a login
//! without the right gets 403 `DENIED`. Nothing a refused request asked for
//! is done. Requests a peer forwarded were authorized where they arrived.

pub mod htpasswd;
pub mod rules;

use crate::error::{ApiError, ErrorCode};
use crate::names::RepoName;
use crate::route::{Access, Route};
use actix_web::{HttpMessage, HttpRequest};
use base64::Engine;
use htpasswd::Htpasswd;
pub use rules::{AccessRule, AccessRules, Actions, Identity};
use std::path::PathBuf;
use std::sync::Arc;

/// `auth` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The realm named in `Basic` challenges.
    pub realm: String,
    /// The htpasswd file of bcrypt entries.
    pub htpasswd: PathBuf,
    pub rules: Vec<AccessRule>,
    pub admins: Vec<String>,
}

/// Put in a `POST …/blobs/uploads/?mount=…&from=…` request's extensions
/// when the caller may not pull from `from`: the upload then starts afresh
/// instead of mounting, as the spec allows.
#[derive(Debug, Clone, Copy)]
pub struct MountRefused;

pub struct Authorizer {
    realm: String,
    htpasswd: Arc<Htpasswd>,
    rules: AccessRules,
    requests: prometheus::IntCounterVec,
}

impl Authorizer {
    pub fn new(config: &AuthConfig, registry: &prometheus::Registry) -> Result<Self, String> {
        let htpasswd =
            Htpasswd::load(&config.htpasswd).map_err(|e| format!("auth.htpasswd.path: {e}"))?;
        let rules = AccessRules::new(&config.rules, &config.admins)?;
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_auth_requests_total",
                "Requests by what authorization decided: user or anonymous (allowed), \
                 bad_credentials, unauthenticated (challenged), denied",
            ),
            &["result"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Authorizer {
            realm: config.realm.clone(),
            htpasswd: Arc::new(htpasswd),
            rules,
            requests,
        })
    }

    /// Who is asking, if they may do what `route` does; the identity is
    /// also left in the request's extensions.
    pub async fn authorize(&self, req: &HttpRequest, route: &Route) -> Result<Identity, ApiError> {
        let who = match self.identify(req).await {
            Ok(who) => who,
            Err(user) => {
                self.refused(
                    req,
                    "bad_credentials",
                    &user,
                    route,
                    "wrong user name or password",
                );
                return Err(self.challenge("the user name or password is wrong"));
            }
        };
        let allowed = match (route, route.repository()) {
            (_, Some(repository)) => self
                .rules
                .allowed(&who, repository.as_str())
                .allows(route.access()),
            // `/v2/` checks a login; the catalog lists what the caller may pull.
            (Route::Base, None) => who != Identity::Anonymous,
            (_, None) => who != Identity::Anonymous || self.rules.anonymous_anywhere(),
        };
        if !allowed {
            let what = match route.repository() {
                Some(repository) => format!("{} on {repository}", access_name(route.access())),
                None => "a login".to_owned(),
            };
            return Err(match who {
                Identity::Anonymous => {
                    self.refused(req, "unauthenticated", "", route, "no credentials");
                    self.challenge(&format!("{what} needs a login"))
                }
                Identity::User(ref user) => {
                    self.refused(req, "denied", user, route, "no rule grants it");
                    ApiError::new(ErrorCode::Denied, format!("{user} may not {what}"))
                }
            });
        }
        if let (Route::StartUpload { .. }, Some(from)) = (route, mount_source(req)) {
            if !self.may(&who, from.as_str(), Access::Pull) {
                req.extensions_mut().insert(MountRefused);
            }
        }
        let result = match who {
            Identity::Anonymous => "anonymous",
            Identity::User(_) => "user",
        };
        self.requests.with_label_values(&[result]).inc();
        req.extensions_mut().insert(who.clone());
        Ok(who)
    }

    /// Whether `who` may do `access` in `repository` (the catalog's filter).
    pub fn may(&self, who: &Identity, repository: &str, access: Access) -> bool {
        self.rules.allowed(who, repository).allows(access)
    }

    /// The caller's identity: anonymous without credentials, a user whose
    /// password checks out, or `Err(user)` for credentials that do not.
    async fn identify(&self, req: &HttpRequest) -> Result<Identity, String> {
        let Some(header) = req.headers().get("authorization") else {
            return Ok(Identity::Anonymous);
        };
        let (user, password) = basic_credentials(header.as_bytes()).ok_or_else(String::new)?;
        if self.htpasswd.verify(&user, &password).await {
            Ok(Identity::User(user))
        } else {
            Err(user)
        }
    }

    fn challenge(&self, detail: &str) -> ApiError {
        let realm = self.realm.replace('\\', "\\\\").replace('"', "\\\"");
        ApiError::new(ErrorCode::Unauthorized, detail)
            .with_header("WWW-Authenticate", format!("Basic realm=\"{realm}\""))
    }

    /// Counts and logs a refusal: who, from where, what, where. Never the credentials.
    fn refused(
        &self,
        req: &HttpRequest,
        result: &'static str,
        user: &str,
        route: &Route,
        reason: &str,
    ) {
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
    }
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
