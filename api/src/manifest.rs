//! Manifest parsing and validation. oci-spec checks the structure; the bytes
//! the client sent are what gets stored and hashed, never a re-serialization.

use crate::error::{ApiError, ApiResult, ErrorCode};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::collections::BTreeMap;
use storage::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the registry needs to know about a manifest it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    pub media_type: String,
    /// Config and layers (image manifests).
    pub blobs: Vec<Digest>,
    /// Child manifests (indexes).
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    /// The artifact type the referrers API reports: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl ParsedManifest {
    /// What the log stores of the manifest: `bytes` exactly as received.
    pub fn into_record(self, bytes: Vec<u8>, at_ms: u64) -> raft::ManifestRecord {
        raft::ManifestRecord {
            media_type: self.media_type,
            bytes,
            blobs: self.blobs,
            children: self.children,
            subject: self.subject,
            artifact_type: self.artifact_type,
            annotations: self.annotations,
            at_ms,
        }
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid, detail)
}

fn digest_of(descriptor: &Descriptor) -> ApiResult<Digest> {
    let raw = descriptor.digest().to_string();
    raw.parse()
        .map_err(|e| invalid(format!("descriptor digest {raw:?}: {e}")))
}

/// Validates `bytes` as a manifest of the type `content_type` names (or, when
/// the request has none, the type the body names).
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> ApiResult<ParsedManifest> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let body_type = json.get("mediaType").and_then(|v| v.as_str());
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (header_type, body_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(format!(
                "Content-Type {h:?} does not match mediaType {b:?}"
            )))
        }
        (Some(h), _) => h.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) if json.get("manifests").is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => parse_image(media_type, bytes),
        OCI_INDEX | DOCKER_LIST => parse_index(media_type, bytes),
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}"
        ))),
    }
}

fn parse_image(media_type: String, bytes: &[u8]) -> ApiResult<ParsedManifest> {
    let m = ImageManifest::from_reader(bytes).map_err(|e| invalid(e.to_string()))?;
    if m.schema_version() != 2 {
        return Err(invalid(format!(
            "schemaVersion {} is not 2",
            m.schema_version()
        )));
    }
    let mut blobs = vec![digest_of(m.config())?];
    for layer in m.layers() {
        blobs.push(digest_of(layer)?);
    }
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|t| t.to_string())
        .or_else(|| Some(m.config().media_type().to_string()));
    Ok(ParsedManifest {
        media_type,
        blobs,
        children: Vec::new(),
        subject: m.subject().as_ref().map(digest_of).transpose()?,
        artifact_type,
        annotations: m
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

fn parse_index(media_type: String, bytes: &[u8]) -> ApiResult<ParsedManifest> {
    let index = ImageIndex::from_reader(bytes).map_err(|e| invalid(e.to_string()))?;
    if index.schema_version() != 2 {
        return Err(invalid(format!(
            "schemaVersion {} is not 2",
            index.schema_version()
        )));
    }
    let children = index
        .manifests()
        .iter()
        .map(digest_of)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ParsedManifest {
        media_type,
        blobs: Vec::new(),
        children,
        subject: index.subject().as_ref().map(digest_of).transpose()?,
        artifact_type: index.artifact_type().as_ref().map(|t| t.to_string()),
        annotations: index
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> String {
        Digest::sha256_of(b).to_string()
    }

    fn image(media_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1}}]}}"#,
            d(b"c"),
            d(b"l")
        )
    }

    #[test]
    fn image_manifests_of_both_families() {
        for t in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let parsed = parse(Some(t), image(t).as_bytes()).unwrap();
            assert_eq!(parsed.media_type, t);
            assert_eq!(parsed.blobs.len(), 2);
        }
    }

    #[test]
    fn artifact_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}},"annotations":{{"k":"v"}}}}"#,
            d(b"{}"),
            d(b"s")
        );
        let parsed = parse(None, body.as_bytes()).unwrap();
        assert_eq!(parsed.artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(parsed.subject.unwrap().to_string(), d(b"s"));
        assert_eq!(parsed.annotations["k"], "v");
    }

    #[test]
    fn index_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}}]}}"#,
            d(b"m")
        );
        let parsed = parse(Some(OCI_INDEX), body.as_bytes()).unwrap();
        assert_eq!(parsed.children.len(), 1);
    }

    #[test]
    fn invalid_manifests() {
        let code = |ct: Option<&str>, body: &str| parse(ct, body.as_bytes()).unwrap_err().code;
        assert_eq!(code(None, "not json"), ErrorCode::ManifestInvalid);
        assert_eq!(
            code(Some(OCI_MANIFEST), r#"{"schemaVersion":2}"#),
            ErrorCode::ManifestInvalid
        );
        assert_eq!(
            code(Some(OCI_INDEX), &image(OCI_MANIFEST)),
            ErrorCode::ManifestInvalid
        );
        assert_eq!(
            code(Some("text/plain"), &image(OCI_MANIFEST)),
            ErrorCode::ManifestInvalid
        );
        let v1 = image(OCI_MANIFEST).replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(code(Some(OCI_MANIFEST), &v1), ErrorCode::ManifestInvalid);
    }
}
