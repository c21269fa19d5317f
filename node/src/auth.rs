//! The `auth` section: distribution's `auth.htpasswd`, and access rules
//! beyond it (api::auth has the semantics, docs/security.md the examples).

use api::auth::{AccessRule, Actions, AuthConfig, HtpasswdConfig, TokenConfig};
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
        let config = HtpasswdConfig {
            realm: htpasswd.realm,
            path: htpasswd.path,
            rules,
            admins: self.admins,
        };
        // Patterns are compiled at start too; checking them here names the key in the config error.
        api::auth::AccessRules::new(&config.rules, &config.admins)?;
        Ok(AuthConfig::Htpasswd(config))
    }
}
