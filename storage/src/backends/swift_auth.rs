//! Logging in to Swift, and keeping the token fresh.
//!
//! opendal's Swift service takes a storage URL and a token and never logs
//! in. Operators configure Swift the way distribution's driver takes it: an
//! auth URL, a user and a password. Two auth protocols cover the deployments
//! we know of:
//!
//! * **v1** (`tempauth`, `swauth`, many hosted Swifts): `GET <authurl>` with
//!   `X-Auth-User`/`X-Auth-Key` answers `X-Storage-Url`, `X-Auth-Token` and
//!   optionally `X-Auth-Token-Expires` (seconds).
//! * **Keystone v3** (an auth URL ending in `/v3`): `POST <authurl>/auth/tokens`
//!   with a password identity scoped to a project answers the token in
//!   `X-Subject-Token` and, in the body, its expiry and the service catalog,
//!   whose `object-store` entry gives the storage URL.
//!
//! Tokens expire (Keystone's default is an hour), so the store logs in again
//! when 80 % of a token's life has passed and swaps in an operator with the
//! new token (`ObjectStore::with_renewal`).

use crate::config::SwiftAuth;
use crate::error::{ErrorKind, Result, StorageError};
use serde::Deserialize;
use std::time::Duration;

/// A token and the storage URL the auth service gave with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub storage_url: String,
    pub token: String,
    /// How long the token is good for, when the server says.
    pub lifetime: Option<Duration>,
}

/// Without an expiry from the server, log in again this often.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Log in again when this share of the lifetime has passed.
const REFRESH_AT: f64 = 0.8;
/// Never log in more often than this (a token about to expire may be
/// handed out again until it has).
const MIN_REFRESH: Duration = Duration::from_millis(250);
/// Upper bound for one login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// When to log in again after `session` was obtained.
pub fn refresh_after(session: &Session) -> Duration {
    session
        .lifetime
        .unwrap_or(DEFAULT_LIFETIME)
        .mul_f64(REFRESH_AT)
        .max(MIN_REFRESH)
}

/// Whether `url` names Keystone v3 rather than a v1 auth endpoint.
fn is_keystone_v3(url: &str) -> bool {
    url.trim_end_matches('/').ends_with("/v3")
}

fn unavailable(context: impl Into<String>, e: impl std::fmt::Display) -> StorageError {
    StorageError::new(ErrorKind::Unavailable, context).with_source(e.to_string())
}

fn refused(context: impl Into<String>) -> StorageError {
    StorageError::new(ErrorKind::Internal, context)
}

/// Logs in with the configured credentials.
pub async fn login(auth: &SwiftAuth) -> Result<Session> {
    let http = reqwest::Client::builder()
        .timeout(LOGIN_TIMEOUT)
        .build()
        .map_err(|e| unavailable("swift login client", e))?;
    if is_keystone_v3(&auth.url) {
        login_v3(&http, auth).await
    } else {
        login_v1(&http, auth).await
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn login_v1(http: &reqwest::Client, auth: &SwiftAuth) -> Result<Session> {
    let response = http
        .get(&auth.url)
        .header("X-Auth-User", &auth.username)
        .header("X-Auth-Key", &auth.password)
        .send()
        .await
        .map_err(|e| unavailable(format!("swift login at {}", auth.url), e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(refused(format!(
            "swift login at {} answered {status}",
            auth.url
        )));
    }
    let (Some(storage_url), Some(token)) = (
        header(&response, "X-Storage-Url"),
        header(&response, "X-Auth-Token"),
    ) else {
        return Err(refused(format!(
            "swift login at {} answered no X-Storage-Url or X-Auth-Token",
            auth.url
        )));
    };
    let lifetime = header(&response, "X-Auth-Token-Expires")
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64);
    Ok(Session {
        storage_url,
        token,
        lifetime,
    })
}

#[derive(Deserialize)]
struct TokenBody {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    expires_at: Option<String>,
    issued_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    region: Option<String>,
    region_id: Option<String>,
    url: String,
}

fn v3_request(auth: &SwiftAuth) -> serde_json::Value {
    let domain = auth.domain.as_deref().unwrap_or("Default");
    let mut request = serde_json::json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth.username,
                        "domain": { "name": domain },
                        "password": auth.password,
                    }
                }
            }
        }
    });
    if let Some(project) = &auth.tenant {
        request["auth"]["scope"] = serde_json::json!({
            "project": { "name": project, "domain": { "name": domain } }
        });
    }
    request
}

async fn login_v3(http: &reqwest::Client, auth: &SwiftAuth) -> Result<Session> {
    let url = format!("{}/auth/tokens", auth.url.trim_end_matches('/'));
    let response = http
        .post(&url)
        .json(&v3_request(auth))
        .send()
        .await
        .map_err(|e| unavailable(format!("keystone login at {url}"), e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(refused(format!(
            "keystone login at {url} answered {status}"
        )));
    }
    let Some(token) = header(&response, "X-Subject-Token") else {
        return Err(refused(format!(
            "keystone login at {url} answered no X-Subject-Token"
        )));
    };
    let body: TokenBody = response
        .json()
        .await
        .map_err(|e| refused(format!("keystone login at {url}: {e}")))?;
    let storage_url =
        object_store_url(&body.token.catalog, auth.region.as_deref()).ok_or_else(|| {
            refused(format!(
                "keystone at {url} lists no public object-store endpoint{}",
                auth.region
                    .as_deref()
                    .map(|r| format!(" in region {r}"))
                    .unwrap_or_default()
            ))
        })?;
    Ok(Session {
        storage_url,
        token,
        lifetime: lifetime(&body.token),
    })
}

/// The public object-store endpoint, in `region` when one is configured.
fn object_store_url(catalog: &[CatalogEntry], region: Option<&str>) -> Option<String> {
    catalog
        .iter()
        .filter(|entry| entry.kind == "object-store")
        .flat_map(|entry| &entry.endpoints)
        .filter(|e| e.interface == "public")
        .find(|e| {
            region
                .is_none_or(|r| e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r))
        })
        .map(|e| e.url.clone())
}

/// The token's lifetime from its issue and expiry times (RFC 3339), measured
/// on the server's clock so that clock skew does not matter.
fn lifetime(token: &Token) -> Option<Duration> {
    let expires = humantime::parse_rfc3339_weak(token.expires_at.as_deref()?).ok()?;
    let issued = humantime::parse_rfc3339_weak(token.issued_at.as_deref()?).ok()?;
    expires.duration_since(issued).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_url_names_the_protocol() {
        assert!(is_keystone_v3("https://keystone.example/v3"));
        assert!(is_keystone_v3("https://keystone.example/identity/v3/"));
        assert!(!is_keystone_v3("http://127.0.0.1:8080/auth/v1.0"));
    }

    #[test]
    fn the_catalog_gives_the_public_object_store_of_the_region() {
        let body: TokenBody = serde_json::from_str(
            r#"{"token": {
                "issued_at": "2026-12-01T10:00:00.000000Z",
                "expires_at": "2026-12-01T11:00:00.000000Z",
                "catalog": [
                  {"type": "identity", "endpoints": [
                    {"interface": "public", "region": "one", "url": "https://id.example/v3"}]},
                  {"type": "object-store", "endpoints": [
                    {"interface": "internal", "region": "one", "url": "http://10.0.0.1/v1/AUTH_p"},
                    {"interface": "public", "region": "one", "url": "https://one.example/v1/AUTH_p"},
                    {"interface": "public", "region": "two", "url": "https://two.example/v1/AUTH_p"}]}
                ]}}"#,
        )
        .unwrap();
        let catalog = &body.token.catalog;
        assert_eq!(
            object_store_url(catalog, Some("two")).as_deref(),
            Some("https://two.example/v1/AUTH_p")
        );
        assert_eq!(
            object_store_url(catalog, None).as_deref(),
            Some("https://one.example/v1/AUTH_p")
        );
        assert_eq!(object_store_url(catalog, Some("three")), None);
        assert_eq!(lifetime(&body.token), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn the_v3_request_scopes_to_the_project() {
        let auth = SwiftAuth {
            url: "https://keystone.example/v3".into(),
            username: "registry".into(),
            password: "secret".into(),
            tenant: Some("images".into()),
            domain: None,
            region: None,
        };
        let request = v3_request(&auth);
        let user = &request["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "registry");
        assert_eq!(user["password"], "secret");
        assert_eq!(user["domain"]["name"], "Default");
        assert_eq!(request["auth"]["scope"]["project"]["name"], "images");
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let session = |lifetime| Session {
            storage_url: String::new(),
            token: String::new(),
            lifetime,
        };
        assert_eq!(
            refresh_after(&session(Some(Duration::from_secs(100)))),
            Duration::from_secs(80)
        );
        assert_eq!(
            refresh_after(&session(None)),
            DEFAULT_LIFETIME.mul_f64(REFRESH_AT)
        );
        assert_eq!(refresh_after(&session(Some(Duration::ZERO))), MIN_REFRESH);
    }
}
