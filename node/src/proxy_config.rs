//! The `proxy` section: distribution's one upstream (`remoteurl`,
//! `username`, `password`, `ttl`), and ours, several chosen by repository
//! prefix (`upstreams`).

use api::cache::UpstreamConfig;
use serde::Deserialize;
use std::time::Duration;

/// distribution's default `ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(168 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    remoteurl: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ttl: Option<String>,
    #[serde(default)]
    upstreams: Vec<UpstreamSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSection {
    prefix: String,
    remoteurl: String,
    username: Option<String>,
    password: Option<String>,
    ttl: Option<String>,
}

impl ProxySection {
    /// The upstreams, each checked; a bad value names its key.
    pub fn validate(self) -> Result<Vec<UpstreamConfig>, String> {
        let mut upstreams = Vec::new();
        match self.remoteurl {
            Some(remote_url) => upstreams.push(upstream(
                "proxy",
                String::new(),
                remote_url,
                self.username,
                self.password,
                self.ttl,
            )?),
            None if self.username.is_some() || self.password.is_some() || self.ttl.is_some() => {
                return Err(
                    "proxy: username, password and ttl need remoteurl (or go in proxy.upstreams)"
                        .to_owned(),
                )
            }
            None => {}
        }
        for (i, section) in self.upstreams.into_iter().enumerate() {
            let key = format!("proxy.upstreams[{i}]");
            let prefix = section.prefix.trim_matches('/').to_owned();
            if prefix.is_empty() {
                return Err(format!(
                    "{key}.prefix: empty; an upstream for every repository is proxy.remoteurl"
                ));
            }
            api::names::RepoName::parse(&prefix).map_err(|e| {
                format!(
                    "{key}.prefix: {prefix:?} is no repository path: {}",
                    e.detail
                )
            })?;
            if upstreams
                .iter()
                .any(|u: &UpstreamConfig| u.prefix == prefix)
            {
                return Err(format!("{key}.prefix: {prefix:?} is configured twice"));
            }
            upstreams.push(upstream(
                &key,
                prefix,
                section.remoteurl,
                section.username,
                section.password,
                section.ttl,
            )?);
        }
        if upstreams.is_empty() {
            return Err("proxy: names no upstream (remoteurl or upstreams)".to_owned());
        }
        Ok(upstreams)
    }
}

fn upstream(
    key: &str,
    prefix: String,
    remote_url: String,
    username: Option<String>,
    password: Option<String>,
    ttl: Option<String>,
) -> Result<UpstreamConfig, String> {
    let ttl = match ttl.as_deref().map(str::trim) {
        None => Some(DEFAULT_TTL),
        Some("0") => None,
        Some(raw) => match humantime::parse_duration(raw) {
            Ok(ttl) if ttl.is_zero() => None,
            Ok(ttl) => Some(ttl),
            Err(e) => return Err(format!("{key}.ttl: {raw:?}: {e}")),
        },
    };
    if username.is_some() != password.is_some() {
        return Err(format!("{key}: username and password go together"));
    }
    let config = UpstreamConfig {
        prefix,
        remote_url,
        username,
        password,
        ttl,
    };
    api::cache::Upstream::new(&config).map_err(|e| format!("{key}.remoteurl: {e}"))?;
    Ok(config)
}

/// The retention rules that expire cached content: in the repositories of
/// each upstream with a `ttl`, a tag neither fetched (or re-checked) nor
/// pulled within it is removed, and garbage collection takes what it alone
/// kept.
pub fn expiry_rules(upstreams: &[UpstreamConfig]) -> Result<Vec<raft::gc::RetentionRule>, String> {
    upstreams
        .iter()
        .filter_map(|upstream| {
            let ttl = upstream.ttl?.as_millis() as u64;
            let pattern = if upstream.prefix.is_empty() {
                "**".to_owned()
            } else {
                format!("{}/**", upstream.prefix)
            };
            let keep = raft::gc::Keep {
                pushed_within_ms: Some(ttl),
                pulled_within_ms: Some(ttl),
                ..raft::gc::Keep::default()
            };
            Some(raft::gc::RetentionRule::new(vec![pattern], keep))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<UpstreamConfig>, String> {
        serde_yaml::from_str::<ProxySection>(yaml)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn distributions_keys_and_prefixed_upstreams() {
        let upstreams = parse(
            "remoteurl: https://registry-1.docker.io\nusername: u\npassword: p\n\
             upstreams:\n  - prefix: /quay/\n    remoteurl: https://quay.io\n    ttl: 0\n  \
             - prefix: ghcr\n    remoteurl: http://127.0.0.1:5999/\n    ttl: 1h\n",
        )
        .unwrap();
        assert_eq!(upstreams.len(), 3);
        assert_eq!(upstreams[0].prefix, "");
        assert_eq!(upstreams[0].ttl, Some(DEFAULT_TTL));
        assert_eq!(upstreams[0].username.as_deref(), Some("u"));
        assert_eq!(upstreams[1].prefix, "quay");
        assert_eq!(upstreams[1].ttl, None, "0 never expires");
        assert_eq!(upstreams[2].ttl, Some(Duration::from_secs(3600)));
        let rules = expiry_rules(&upstreams).unwrap();
        assert_eq!(rules.len(), 2, "none for the upstream that never expires");
        assert!(rules[0].applies_to("library/alpine"));
        assert!(rules[1].applies_to("ghcr/org/app"));
        assert!(!rules[1].applies_to("ghcrx/app"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |yaml: &str| parse(yaml).unwrap_err();
        assert!(err("remoteurl: ftp://x\n").contains("proxy.remoteurl"));
        assert!(err("remoteurl: https://x/path\n").contains("root of a registry"));
        assert!(err("remoteurl: https://x\nusername: u\n").contains("go together"));
        assert!(err("remoteurl: https://x\nttl: soon\n").contains("proxy.ttl"));
        assert!(err("ttl: 1h\n").contains("need remoteurl"));
        assert!(
            err("upstreams:\n  - prefix: ''\n    remoteurl: https://x\n")
                .contains("proxy.upstreams[0].prefix")
        );
        assert!(
            err("upstreams:\n  - prefix: Bad\n    remoteurl: https://x\n")
                .contains("proxy.upstreams[0].prefix")
        );
        assert!(err(
            "upstreams:\n  - prefix: a\n    remoteurl: https://x\n  - prefix: a/\n    remoteurl: https://y\n"
        )
        .contains("twice"));
        assert!(err("exec: {command: x}\nremoteurl: https://x\n").contains("exec"));
    }
}
