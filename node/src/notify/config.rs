//! The `notifications` section: distribution's keys, and `backlog`, the
//! bound on what a dead endpoint keeps waiting.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// distribution's `notifications` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSection {
    #[serde(default)]
    events: EventsSection,
    #[serde(default)]
    endpoints: Vec<EndpointSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsSection {
    #[serde(default)]
    includereferences: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSection {
    name: String,
    url: String,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    timeout: Option<String>,
    threshold: Option<u32>,
    backoff: Option<String>,
    #[serde(default)]
    ignoredmediatypes: Vec<String>,
    #[serde(default)]
    ignore: IgnoreSection,
    backlog: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoreSection {
    #[serde(default)]
    mediatypes: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
}

/// Notifications, validated: the endpoints that are not disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub include_references: bool,
    pub endpoints: Vec<EndpointConfig>,
}

/// One receiver of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// Failures in a row after which the wait between attempts doubles
    /// (each failure up to then waits `backoff`); also the attempts an event
    /// the endpoint refuses outright (a 4xx) gets before it is dropped.
    pub threshold: u32,
    pub backoff: Duration,
    pub ignored_media_types: Vec<String>,
    pub ignored_actions: Vec<String>,
    /// Events kept waiting for this endpoint at most; older ones are
    /// dropped (counted and logged) when more arrive.
    pub backlog: u64,
}

/// distribution's defaults (notifications/endpoint.go); `backlog` is ours.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_THRESHOLD: u32 = 10;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKLOG: u64 = 100_000;

const ACTIONS: &[&str] = &["push", "pull", "mount", "delete"];

impl NotificationsSection {
    pub fn validate(self) -> Result<NotifyConfig, String> {
        let mut endpoints = Vec::new();
        for (i, endpoint) in self.endpoints.into_iter().enumerate() {
            let key = format!("notifications.endpoints[{i}]");
            if endpoint.name.trim().is_empty() {
                return Err(format!("{key}.name: every endpoint needs a name"));
            }
            if endpoints
                .iter()
                .any(|e: &EndpointConfig| e.name == endpoint.name)
            {
                return Err(format!("{key}.name: {:?} is used twice", endpoint.name));
            }
            let url = reqwest::Url::parse(&endpoint.url)
                .map_err(|e| format!("{key}.url: {:?}: {e}", endpoint.url))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{key}.url: {:?}: not http or https", endpoint.url));
            }
            if endpoint.disabled {
                continue;
            }
            let duration = |field: &str, raw: &Option<String>, default| match raw {
                None => Ok(default),
                Some(raw) => humantime::parse_duration(raw)
                    .map_err(|e| format!("{key}.{field}: {raw:?}: {e}")),
            };
            for action in &endpoint.ignore.actions {
                if !ACTIONS.contains(&action.as_str()) {
                    return Err(format!(
                        "{key}.ignore.actions: {action:?} is none of {}",
                        ACTIONS.join(", ")
                    ));
                }
            }
            let threshold = endpoint.threshold.unwrap_or(DEFAULT_THRESHOLD);
            if threshold == 0 {
                return Err(format!("{key}.threshold: must be at least 1"));
            }
            let backlog = endpoint.backlog.unwrap_or(DEFAULT_BACKLOG);
            if backlog == 0 {
                return Err(format!("{key}.backlog: must be at least 1"));
            }
            let mut ignored_media_types = endpoint.ignoredmediatypes;
            ignored_media_types.extend(endpoint.ignore.mediatypes);
            endpoints.push(EndpointConfig {
                name: endpoint.name,
                url: endpoint.url,
                headers: endpoint
                    .headers
                    .into_iter()
                    .flat_map(|(name, values)| values.into_iter().map(move |v| (name.clone(), v)))
                    .collect(),
                timeout: duration("timeout", &endpoint.timeout, DEFAULT_TIMEOUT)?,
                threshold,
                backoff: duration("backoff", &endpoint.backoff, DEFAULT_BACKOFF)?,
                ignored_media_types,
                ignored_actions: endpoint.ignore.actions,
                backlog,
            });
        }
        Ok(NotifyConfig {
            include_references: self.events.includereferences,
            endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<NotifyConfig, String> {
        serde_yaml::from_str::<NotificationsSection>(yaml)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn distributions_keys_with_its_defaults() {
        let config = parse(
            "events: { includereferences: true }
endpoints:
  - name: audit
    url: https://audit.example/events
    headers: { Authorization: [Bearer abc] }
    timeout: 500ms
    threshold: 5
    backoff: 2s
    ignoredmediatypes: [application/octet-stream]
    ignore: { mediatypes: [text/plain], actions: [pull] }
  - name: off
    url: http://off.example/
    disabled: true
  - name: plain
    url: http://plain.example/
",
        )
        .unwrap();
        assert!(config.include_references);
        assert_eq!(config.endpoints.len(), 2, "the disabled one is left out");
        let audit = &config.endpoints[0];
        assert_eq!(
            audit.headers,
            vec![("Authorization".into(), "Bearer abc".into())]
        );
        assert_eq!(audit.timeout, Duration::from_millis(500));
        assert_eq!(audit.threshold, 5);
        assert_eq!(
            audit.ignored_media_types,
            vec!["application/octet-stream", "text/plain"]
        );
        assert_eq!(audit.ignored_actions, vec!["pull"]);
        let plain = &config.endpoints[1];
        assert_eq!(
            (plain.timeout, plain.threshold, plain.backoff, plain.backlog),
            (
                DEFAULT_TIMEOUT,
                DEFAULT_THRESHOLD,
                DEFAULT_BACKOFF,
                DEFAULT_BACKLOG
            )
        );
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_key() {
        for (yaml, key) in [
            (
                "endpoints: [{ name: a, url: 'not a url' }]",
                "endpoints[0].url",
            ),
            (
                "endpoints: [{ name: a, url: 'ftp://x/' }]",
                "endpoints[0].url",
            ),
            (
                "endpoints: [{ name: a, url: 'http://x/' }, { name: a, url: 'http://y/' }]",
                "endpoints[1].name",
            ),
            (
                "endpoints: [{ name: a, url: 'http://x/', timeout: soon }]",
                "endpoints[0].timeout",
            ),
            (
                "endpoints: [{ name: a, url: 'http://x/', ignore: { actions: [fetch] } }]",
                "endpoints[0].ignore.actions",
            ),
            (
                "endpoints: [{ name: a, url: 'http://x/', backlog: 0 }]",
                "endpoints[0].backlog",
            ),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
