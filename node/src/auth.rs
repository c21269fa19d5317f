//! The `auth` section: distribution's `auth.htpasswd` and `auth.token`,
//! and beyond them access rules and a built-in token service (api::auth
//! has the semantics, docs/security.md the examples).

use api::auth::{AccessRule, Actions, AuthConfig, HtpasswdConfig, TokenConfig, TokenServiceConfig};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    htpasswd: Option<HtpasswdSection>,
    #[serde(default)]
    access: Vec<AccessSection>,
    #[serde(default)]
    admins: Vec<String>,
    token: Option<TokenSection>,
    tokenservice: Option<TokenServiceSection>,
    /// Refused with a reason, rather than as an unknown key.
    silly: Option<serde_yaml::Value>,
}

/// distribution's `auth.token` keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    realm: String,
    service: String,
    issuer: String,
    rootcertbundle: Option<PathBuf>,
    jwks: Option<PathBuf>,
    #[serde(default)]
    signingalgorithms: Vec<String>,
    #[serde(default)]
    autoredirect: bool,
    autoredirectpath: Option<String>,
}

/// The built-in token service, for htpasswd users.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenServiceSection {
    /// PEM ECDSA P-256 private key, the same on every node.
    key: PathBuf,
    /// The challenge's realm; the request's own `scheme://host/token` if absent.
    realm: Option<String>,
    #[serde(default = "default_service")]
    service: String,
    /// The tokens' `iss`; `service` if absent.
    issuer: Option<String>,
    /// How long a token is good for (`5m`, `1h`).
    #[serde(default = "default_expiration")]
    expiration: String,
}

fn default_service() -> String {
    "registry".to_owned()
}

fn default_expiration() -> String {
    "5m".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HtpasswdSection {
    realm: String,
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessSection {
    repositories: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    /// What `users` may do.
    #[serde(default)]
    actions: Vec<String>,
    /// What any logged-in user may do.
    #[serde(default)]
    authenticated: Vec<String>,
    /// What callers without credentials may do.
    #[serde(default)]
    anonymous: Vec<String>,
}

impl AuthSection {
    /// The logins and rules this section asks for, or what is wrong with it.
    pub(crate) fn validate(self) -> Result<AuthConfig, String> {
        if self.silly.is_some() {
            return Err(
                "auth.silly: not supported: it lets in any Authorization header; use auth.htpasswd"
                    .to_owned(),
            );
        }
        if let Some(token) = self.token {
            if self.tokenservice.is_some() {
                return Err("auth.tokenservice: issues tokens for auth.htpasswd users; \
                     with auth.token the external server does"
                    .to_owned());
            }
            if self.htpasswd.is_some() {
                return Err("auth: name one of htpasswd and token, as in distribution".to_owned());
            }
            if !self.access.is_empty() || !self.admins.is_empty() {
                return Err(
                    "auth.access and auth.admins: with auth.token the tokens' access claims decide"
                        .to_owned(),
                );
            }
            if token.autoredirect || token.autoredirectpath.is_some() {
                return Err(
                    "auth.token.autoredirect: not supported; give the token server's URL as realm"
                        .to_owned(),
                );
            }
            let config = TokenConfig {
                realm: token.realm,
                service: token.service,
                issuer: token.issuer,
                root_cert_bundle: token.rootcertbundle,
                jwks: token.jwks,
                algorithms: token.signingalgorithms,
            };
            return Ok(AuthConfig::Token(config));
        }
        let Some(htpasswd) = self.htpasswd else {
            return Err("auth: name htpasswd or token".to_owned());
        };
        if htpasswd.realm.is_empty() {
            return Err("auth.htpasswd.realm: must not be empty".to_owned());
        }
        let rules = self
            .access
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let actions = |key: &str, names: &[String]| {
                    Actions::parse(names).map_err(|e| format!("auth.access[{i}].{key}: {e}"))
                };
                if !entry.users.is_empty() && entry.actions.is_empty() {
                    return Err(format!(
                        "auth.access[{i}].actions: name what the users may do"
                    ));
                }
                Ok(AccessRule {
                    actions: actions("actions", &entry.actions)?,
                    authenticated: actions("authenticated", &entry.authenticated)?,
                    anonymous: actions("anonymous", &entry.anonymous)?,
                    repositories: entry.repositories,
                    users: entry.users,
                })
            })
            .collect::<Result<_, _>>()?;
        let token_service = self.tokenservice.map(token_service).transpose()?;
        let config = HtpasswdConfig {
            realm: htpasswd.realm,
            path: htpasswd.path,
            rules,
            admins: self.admins,
            token_service,
        };
        // Patterns are compiled at start too; checking them here names the key in the config error.
        api::auth::AccessRules::new(&config.rules, &config.admins)?;
        Ok(AuthConfig::Htpasswd(config))
    }
}

fn token_service(section: TokenServiceSection) -> Result<TokenServiceConfig, String> {
    let expiration = humantime::parse_duration(&section.expiration).map_err(|e| {
        format!(
            "auth.tokenservice.expiration: {:?}: {e}",
            section.expiration
        )
    })?;
    if expiration.as_secs() < 60 {
        return Err(format!(
            "auth.tokenservice.expiration: {:?}: at least a minute, as distribution asks of token servers",
            section.expiration
        ));
    }
    if section.service.is_empty() {
        return Err("auth.tokenservice.service: must not be empty".to_owned());
    }
    Ok(TokenServiceConfig {
        key: section.key,
        realm: section.realm,
        issuer: section.issuer.unwrap_or_else(|| section.service.clone()),
        service: section.service,
        expiration,
    })
}
