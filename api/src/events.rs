//! Notification events, built where a change is proposed and recorded in
//! the same log entry as the change (`Command::Notify`), so an acknowledged
//! push always has its event. The body is distribution's event JSON (one
//! event of its `{"events": […]}` envelope), so existing receivers work.

use actix_web::{HttpMessage, HttpRequest};
use raft::{Command, EventRecord};
use std::sync::Arc;
use storage::Digest;

/// The media type distribution gives blobs in events.
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// A forwarded request carries the original request's [`RequestInfo`] in
/// this header; only the internal listener (cluster secret) reads it.
pub const CONTEXT_HEADER: &str = "x-registry-event-context";

/// What every event of this node says about its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// `target.references` in manifest pushes (`notifications.events.includereferences`).
    pub include_references: bool,
    /// `source.addr`: where this node serves the API.
    pub source_addr: String,
    /// `source.instanceID`: this process, fresh at each start.
    pub instance: String,
}

/// The request an event came from, as its `request` and `actor` fields say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub user_agent: String,
    pub actor: String,
    pub scheme: String,
}

/// The request id `dispatch` chose, left in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestInfo {
    /// The request's own fields; on the internal listener (`forwarded`),
    /// those the forwarding node passed along, when it did.
    pub fn of(req: &HttpRequest, forwarded: bool) -> RequestInfo {
        if forwarded {
            let passed = req
                .headers()
                .get(CONTEXT_HEADER)
                .and_then(|v| decode_context(v.as_bytes()));
            if let Some(info) = passed {
                return info;
            }
        }
        let connection = req.connection_info();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let extensions = req.extensions();
        RequestInfo {
            id: extensions
                .get::<RequestId>()
                .map(|id| id.0.clone())
                .unwrap_or_default(),
            addr: connection
                .realip_remote_addr()
                .unwrap_or_default()
                .to_owned(),
            host: connection.host().to_owned(),
            method: req.method().to_string(),
            user_agent: header("user-agent"),
            actor: extensions
                .get::<crate::auth::Identity>()
                .map(|who| who.name().to_owned())
                .unwrap_or_default(),
            scheme: connection.scheme().to_owned(),
        }
    }
}

/// [`RequestInfo`] as a header value (base64 of its JSON: a user agent may
/// hold any byte).
pub fn encode_context(info: &RequestInfo) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(info).unwrap_or_default())
}

fn decode_context(value: &[u8]) -> Option<RequestInfo> {
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// What an event is about.
pub enum Target<'a> {
    Manifest {
        digest: &'a Digest,
        media_type: &'a str,
        size: u64,
        tag: Option<&'a str>,
        /// The manifest's bytes, for `references` when they are included.
        bytes: &'a [u8],
    },
    Blob {
        digest: &'a Digest,
        size: u64,
        /// The repository a mounted blob came from.
        from: Option<&'a str>,
    },
    /// Deletes name only what was deleted, as distribution's do.
    DeletedManifest(&'a Digest),
    DeletedTag(&'a str),
    DeletedBlob(&'a Digest),
}

impl<'a> Target<'a> {
    /// A stored manifest, as a push or pull of `tag` (or by digest).
    pub fn manifest(
        digest: &'a Digest,
        record: &'a raft::ManifestRecord,
        tag: Option<&'a str>,
    ) -> Self {
        Target::Manifest {
            digest,
            media_type: &record.media_type,
            size: record.bytes.len() as u64,
            tag,
            bytes: &record.bytes,
        }
    }
}

/// Builds this node's events for one request.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: Arc<EventsConfig>,
    request: RequestInfo,
}

impl Notifier {
    /// The notifier of `req`, when notifications are on.
    pub fn of(
        config: Option<&Arc<EventsConfig>>,
        req: &HttpRequest,
        forwarded: bool,
    ) -> Option<Notifier> {
        config.map(|config| Notifier {
            config: config.clone(),
            request: RequestInfo::of(req, forwarded),
        })
    }

    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// One event: `action` (push, pull, mount, delete) on `repository`.
    pub fn event(&self, action: &str, repository: &str, target: Target<'_>) -> EventRecord {
        let at_ms = crate::state::now_ms();
        let url = |kind: &str, reference: &str| {
            format!(
                "{}://{}/v2/{repository}/{kind}/{reference}",
                self.request.scheme, self.request.host
            )
        };
        let mut body = serde_json::Map::new();
        let mut media_type = None;
        match target {
            Target::Manifest {
                digest,
                media_type: kind,
                size,
                tag,
                bytes,
            } => {
                media_type = Some(kind.to_owned());
                describe(&mut body, kind, digest, size, repository);
                body.insert("url".into(), url("manifests", &digest.to_string()).into());
                if let Some(tag) = tag {
                    body.insert("tag".into(), tag.into());
                }
                if self.config.include_references {
                    body.insert("references".into(), references(bytes).into());
                }
            }
            Target::Blob { digest, size, from } => {
                media_type = Some(BLOB_MEDIA_TYPE.to_owned());
                describe(&mut body, BLOB_MEDIA_TYPE, digest, size, repository);
                if let Some(from) = from {
                    body.insert("fromRepository".into(), from.into());
                }
                body.insert("url".into(), url("blobs", &digest.to_string()).into());
            }
            Target::DeletedManifest(digest) | Target::DeletedBlob(digest) => {
                body.insert("digest".into(), digest.to_string().into());
                body.insert("repository".into(), repository.into());
            }
            Target::DeletedTag(tag) => {
                body.insert("repository".into(), repository.into());
                body.insert("tag".into(), tag.into());
            }
        }
        let request = &self.request;
        let event = serde_json::json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": crate::time::rfc3339_millis(at_ms),
            "action": action,
            "target": body,
            "request": {
                "id": request.id,
                "addr": request.addr,
                "host": request.host,
                "method": request.method,
                "useragent": request.user_agent,
            },
            "actor": { "name": request.actor },
            "source": {
                "addr": self.config.source_addr,
                "instanceID": self.config.instance,
            },
        });
        EventRecord {
            action: action.to_owned(),
            media_type,
            repository: repository.to_owned(),
            at_ms,
            body: serde_json::to_vec(&event).unwrap_or_default(),
        }
    }
}

/// The descriptor fields a push, pull or mount target has (`length` is
/// distribution's deprecated copy of `size`).
fn describe(
    body: &mut serde_json::Map<String, serde_json::Value>,
    media_type: &str,
    digest: &Digest,
    size: u64,
    repository: &str,
) {
    body.insert("mediaType".into(), media_type.into());
    body.insert("digest".into(), digest.to_string().into());
    body.insert("size".into(), size.into());
    body.insert("length".into(), size.into());
    body.insert("repository".into(), repository.into());
}

/// `command` carrying `events`, recorded only if it applies.
pub fn with_events(events: Vec<EventRecord>, command: Command) -> Command {
    if events.is_empty() {
        command
    } else {
        Command::Notify {
            events,
            command: Box::new(command),
        }
    }
}

/// The descriptors a manifest references (config, layers, an index's
/// manifests, the subject), as distribution's `target.references`.
fn references(bytes: &[u8]) -> Vec<serde_json::Value> {
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let descriptor = |d: &serde_json::Value| {
        serde_json::json!({
            "mediaType": d.get("mediaType").cloned().unwrap_or_default(),
            "size": d.get("size").cloned().unwrap_or_default(),
            "digest": d.get("digest").cloned().unwrap_or_default(),
        })
    };
    let mut found: Vec<serde_json::Value> =
        manifest.get("config").map(descriptor).into_iter().collect();
    for list in ["layers", "manifests", "blobs"] {
        if let Some(items) = manifest.get(list).and_then(|v| v.as_array()) {
            found.extend(items.iter().map(descriptor));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(include_references: bool) -> Notifier {
        Notifier {
            config: Arc::new(EventsConfig {
                include_references,
                source_addr: "10.0.0.1:5000".into(),
                instance: "instance-1".into(),
            }),
            request: RequestInfo {
                id: "req-1".into(),
                addr: "192.0.2.7:4242".into(),
                host: "registry.example:5000".into(),
                method: "PUT".into(),
                user_agent: "docker/27".into(),
                actor: "alice".into(),
                scheme: "https".into(),
            },
        }
    }

    fn body(event: &EventRecord) -> serde_json::Value {
        serde_json::from_slice(&event.body).unwrap()
    }

    #[test]
    fn a_manifest_push_has_distributions_fields() {
        let digest = Digest::sha256_of(b"m");
        let config = Digest::sha256_of(b"c");
        let bytes = serde_json::to_vec(&serde_json::json!({
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": config.to_string()},
            "layers": [],
        }))
        .unwrap();
        let event = notifier(true).event(
            "push",
            "team/app",
            Target::Manifest {
                digest: &digest,
                media_type: "application/vnd.oci.image.manifest.v1+json",
                size: 120,
                tag: Some("v1"),
                bytes: &bytes,
            },
        );
        assert_eq!(event.action, "push");
        assert_eq!(event.repository, "team/app");
        let body = body(&event);
        assert_eq!(body["action"], "push");
        assert_eq!(body["target"]["tag"], "v1");
        assert_eq!(body["target"]["size"], 120);
        assert_eq!(body["target"]["length"], 120);
        assert_eq!(
            body["target"]["url"],
            format!("https://registry.example:5000/v2/team/app/manifests/{digest}")
        );
        assert_eq!(
            body["target"]["references"][0]["digest"],
            config.to_string()
        );
        assert_eq!(body["request"]["useragent"], "docker/27");
        assert_eq!(body["actor"]["name"], "alice");
        assert_eq!(body["source"]["instanceID"], "instance-1");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["id"].as_str().unwrap().len(), 36, "a UUID");
    }

    #[test]
    fn deletes_name_only_what_went_and_mounts_their_source() {
        let digest = Digest::sha256_of(b"b");
        let n = notifier(false);
        let tag = body(&n.event("delete", "r", Target::DeletedTag("v1")));
        assert_eq!(
            tag["target"],
            serde_json::json!({"repository": "r", "tag": "v1"})
        );
        let mount = n.event(
            "mount",
            "r",
            Target::Blob {
                digest: &digest,
                size: 3,
                from: Some("other"),
            },
        );
        assert_eq!(mount.media_type.as_deref(), Some(BLOB_MEDIA_TYPE));
        assert_eq!(body(&mount)["target"]["fromRepository"], "other");
    }
}
