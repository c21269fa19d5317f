//! A small OCI Distribution client for the tests: every call returns the raw
//! response so a test can check status, headers and bytes itself.

use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A blob's descriptor JSON.
pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

/// An artifact manifest of `artifact_type` whose subject is the manifest
/// `subject` and whose one layer is `layer` (config: the empty `{}`).
pub fn artifact(artifact_type: &str, subject: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY_CONFIG, b"{}"),
        "layers": [descriptor("application/octet-stream", layer)],
        "subject": descriptor(OCI_MANIFEST, subject),
        "annotations": { "org.example.kind": artifact_type },
    }))
    .expect("json")
}

/// An image manifest over `config` and `layers`.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<_> = layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers,
    }))
    .expect("json")
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Sent as Basic credentials on every request.
    credentials: Option<(String, String)>,
    /// Sent as a Bearer token on every request (instead of credentials).
    token: Option<String>,
}

impl Client {
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Client {
            base,
            http,
            credentials: crate::credentials_under_test(),
            token: None,
        }
    }

    /// A client of `base` over `http` (for example one that trusts a test's CA).
    pub fn with_http(base: String, http: reqwest::Client) -> Self {
        Client {
            base,
            http,
            credentials: crate::credentials_under_test(),
            token: None,
        }
    }

    /// A client that opens a new connection for every request (behind a
    /// per-connection balancer, each request reaches the next node).
    pub fn without_pooling(base: String) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client");
        Client {
            base,
            http,
            credentials: crate::credentials_under_test(),
            token: None,
        }
    }

    /// The same client logging in as `user` (`None`: anonymous).
    pub fn logged_in(mut self, credentials: Option<(&str, &str)>) -> Self {
        self.credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        self
    }

    /// The same client sending `token` (`None`: no token).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match (&self.token, &self.credentials) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, Some(password)),
            (None, None) => request,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    /// Pushes a blob in one `POST ?digest=`; panics unless 201.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let response = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("POST blob");
        assert_eq!(response.status(), StatusCode::CREATED, "push blob {digest}");
        digest
    }

    /// Opens an upload session; returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let response = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST upload");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        location(&response)
    }

    /// Sends one chunk with `Content-Range`.
    pub async fn patch(&self, location: &str, start: u64, data: &[u8]) -> Response {
        let end = start + data.len() as u64 - 1;
        self.request(Method::PATCH, location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{end}"))
            .body(data.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// Closes an upload with `PUT ?digest=` and an optional last chunk.
    pub async fn finish(&self, location: &str, digest: &str, last: Option<&[u8]>) -> Response {
        let sep = if location.contains('?') { '&' } else { '?' };
        let mut request = self.request(Method::PUT, &format!("{location}{sep}digest={digest}"));
        if let Some(last) = last {
            request = request
                .header("Content-Type", "application/octet-stream")
                .body(last.to_vec());
        }
        request.send().await.expect("PUT upload")
    }

    /// Pushes a blob as a session with chunks of `chunk` bytes.
    pub async fn push_blob_chunked(&self, repo: &str, data: &[u8], chunk: usize) -> String {
        let digest = sha256(data);
        let mut location = self.start_upload(repo).await;
        let mut offset = 0u64;
        for piece in data.chunks(chunk) {
            let response = self.patch(&location, offset, piece).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED, "PATCH at {offset}");
            location = self::location(&response);
            offset += piece.len() as u64;
        }
        let response = self.finish(&location, &digest, None).await;
        assert_eq!(response.status(), StatusCode::CREATED, "PUT {digest}");
        digest
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes config, layers and manifest under `tag`; returns the manifest's digest.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        config: &[u8],
        layers: &[&[u8]],
    ) -> String {
        self.push_blob(repo, config).await;
        for layer in layers {
            self.push_blob(repo, layer).await;
        }
        let manifest = image_manifest(config, layers);
        let response = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "PUT manifest {repo}:{tag}"
        );
        sha256(&manifest)
    }

    pub async fn manifest(&self, repo: &str, reference: &str) -> Response {
        self.request(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
            .header(
                "Accept",
                format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}"),
            )
            .send()
            .await
            .expect("GET manifest")
    }

    pub async fn blob(&self, repo: &str, digest: &str) -> Response {
        self.get(&format!("/v2/{repo}/blobs/{digest}")).await
    }

    /// A blob's bytes, following the node's 307 to a presigned URL if it
    /// answers with one, as clients do.
    pub async fn blob_bytes(&self, repo: &str, digest: &str) -> Vec<u8> {
        let response = self.blob(repo, digest).await;
        if response.status() != reqwest::StatusCode::TEMPORARY_REDIRECT {
            assert_eq!(
                response.status(),
                reqwest::StatusCode::OK,
                "GET blob {digest}"
            );
            return bytes(response).await;
        }
        let location = location(&response);
        let redirected = reqwest::get(&location).await.expect("follow the redirect");
        assert_eq!(
            redirected.status(),
            reqwest::StatusCode::OK,
            "GET {location}"
        );
        bytes(redirected).await
    }

    pub async fn tags(&self, repo: &str) -> Response {
        self.get(&format!("/v2/{repo}/tags/list")).await
    }
}

pub fn location(response: &Response) -> String {
    header(response, "Location").expect("Location header")
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

/// The body as bytes.
pub async fn bytes(response: Response) -> Vec<u8> {
    response.bytes().await.expect("body").to_vec()
}

/// The first error code of an OCI error envelope.
pub async fn error_code(response: Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error envelope is JSON");
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}
