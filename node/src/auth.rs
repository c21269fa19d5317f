//! The `auth` section: distribution's `auth.htpasswd`, and access rules
//! beyond it (api::auth has the semantics, docs/security.md the examples).

use api::auth::{AccessRule, Actions, AuthConfig};
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
    /// Refused with a reason, rather than as an unknown key.
    token: Option<serde_yaml::Value>,
    silly: Option<serde_yaml::Value>,
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
        if self.token.is_some() {
            return Err(
                "auth.token: Bearer tokens are not built yet; use auth.htpasswd".to_owned(),
            );
        }
        if self.silly.is_some() {
            return Err(
                "auth.silly: not supported: it lets in any Authorization header; use auth.htpasswd"
                    .to_owned(),
            );
        }
        let Some(htpasswd) = self.htpasswd else {
            return Err("auth.htpasswd: required with auth (the only login mode built)".to_owned());
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
        let config = AuthConfig {
            realm: htpasswd.realm,
            htpasswd: htpasswd.path,
            rules,
            admins: self.admins,
        };
        // Patterns are compiled at start too; checking them here names the key in the config error.
        api::auth::AccessRules::new(&config.rules, &config.admins)?;
        Ok(config)
    }
}
