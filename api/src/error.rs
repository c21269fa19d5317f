//! The OCI error table and the one place an error becomes an HTTP response.
//!
//! Codes are those of the OCI Distribution Specification's error table, plus
//! three that distribution registers and clients know:
//! `PAGINATION_NUMBER_INVALID` (400), `UNAVAILABLE` (503) and `UNKNOWN` (500).
//! A 416 (an unsatisfiable `Range`, an out-of-order chunk) has no body: its
//! headers carry the answer.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use raft::MetaError;
use std::fmt;
use storage::{ErrorKind, StorageError};

/// Every error the API can answer with; each variant has one code and one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    ManifestTooLarge,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    PaginationNumberInvalid,
    Unavailable,
    Unknown,
    NotFound,
}

impl ErrorCode {
    /// The code, the HTTP status and the spec's message.
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => (
                "BLOB_UNKNOWN",
                StatusCode::NOT_FOUND,
                "blob unknown to registry",
            ),
            BlobUploadInvalid => (
                "BLOB_UPLOAD_INVALID",
                StatusCode::BAD_REQUEST,
                "blob upload invalid",
            ),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                StatusCode::NOT_FOUND,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                StatusCode::BAD_REQUEST,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                StatusCode::BAD_REQUEST,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => (
                "MANIFEST_INVALID",
                StatusCode::BAD_REQUEST,
                "manifest invalid",
            ),
            ManifestUnknown => (
                "MANIFEST_UNKNOWN",
                StatusCode::NOT_FOUND,
                "manifest unknown to registry",
            ),
            ManifestTooLarge => (
                "SIZE_INVALID",
                StatusCode::PAYLOAD_TOO_LARGE,
                "manifest exceeds the size limit",
            ),
            NameInvalid => (
                "NAME_INVALID",
                StatusCode::BAD_REQUEST,
                "invalid repository name",
            ),
            NameUnknown => (
                "NAME_UNKNOWN",
                StatusCode::NOT_FOUND,
                "repository name not known to registry",
            ),
            SizeInvalid => (
                "SIZE_INVALID",
                StatusCode::BAD_REQUEST,
                "provided length did not match content length",
            ),
            TagInvalid => (
                "TAG_INVALID",
                StatusCode::BAD_REQUEST,
                "manifest tag did not match URI",
            ),
            Unauthorized => (
                "UNAUTHORIZED",
                StatusCode::UNAUTHORIZED,
                "authentication required",
            ),
            Denied => (
                "DENIED",
                StatusCode::FORBIDDEN,
                "requested access to the resource is denied",
            ),
            Unsupported => (
                "UNSUPPORTED",
                StatusCode::METHOD_NOT_ALLOWED,
                "the operation is unsupported",
            ),
            TooManyRequests => (
                "TOOMANYREQUESTS",
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
            ),
            RangeInvalid => (
                "RANGE_INVALID",
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid content range",
            ),
            PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                StatusCode::BAD_REQUEST,
                "invalid number of results requested",
            ),
            Unavailable => (
                "UNAVAILABLE",
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable",
            ),
            Unknown => (
                "UNKNOWN",
                StatusCode::INTERNAL_SERVER_ERROR,
                "unknown error",
            ),
            NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }
}

/// An error answer: a code and a detail for the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    /// Extra response headers (e.g. `Range` with a 416 for an out-of-order chunk).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.describe().0, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.describe().1
    }

    fn error_response(&self) -> HttpResponse {
        let (code, status, message) = self.code.describe();
        if status.is_server_error() {
            tracing::error!(code, detail = %self.detail, "request failed");
        }
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": self.detail }]
        });
        let mut response = HttpResponse::build(status);
        // Unavailable is always transient here (no quorum, an election, a
        // store outage): tell clients and balancers when to come back.
        if self.code == ErrorCode::Unavailable {
            response.insert_header(("Retry-After", "1"));
        }
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        // The spec defines no code for 416: the headers (`Content-Range:
        // bytes */<size>`, or the upload's `Range`) say it all (RFC 9110).
        if self.code == ErrorCode::RangeInvalid {
            tracing::debug!(detail = %self.detail, "range not satisfiable");
            return response.finish();
        }
        response.json(body)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let code = match e.kind {
            ErrorKind::NotFound => ErrorCode::BlobUnknown,
            ErrorKind::InvalidRange => ErrorCode::RangeInvalid,
            ErrorKind::DigestMismatch => ErrorCode::DigestInvalid,
            ErrorKind::Unavailable => ErrorCode::Unavailable,
            ErrorKind::Internal => ErrorCode::Unknown,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let code = match e {
            MetaError::Unavailable(_) | MetaError::Refused(_) => ErrorCode::Unavailable,
            MetaError::Fatal(_) => ErrorCode::Unknown,
            MetaError::ReadOnly(_) => ErrorCode::Unsupported,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<raft::state::ApplyError> for ApiError {
    fn from(e: raft::state::ApplyError) -> Self {
        ApiError::new(ErrorCode::Unknown, format!("metadata read: {e}"))
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("upload session unreachable: {e}"),
        )
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::upload::CommitError> for ApiError {
    fn from(e: crate::upload::CommitError) -> Self {
        use crate::upload::CommitError;
        match e {
            CommitError::Storage(e) => e.into(),
            CommitError::Meta(e) => e.into(),
            CommitError::CollectedMeanwhile(_) => {
                ApiError::new(ErrorCode::Unavailable, e.to_string())
            }
        }
    }
}

impl From<crate::upload::UploadError> for ApiError {
    fn from(e: crate::upload::UploadError) -> Self {
        use crate::upload::UploadError;
        match e {
            UploadError::OutOfOrder { offset, .. } => {
                let range = if offset == 0 {
                    "0-0".to_owned()
                } else {
                    format!("0-{}", offset - 1)
                };
                ApiError::new(ErrorCode::RangeInvalid, e.to_string()).with_header("Range", range)
            }
            UploadError::DigestMismatch { .. } => {
                ApiError::new(ErrorCode::DigestInvalid, e.to_string())
            }
            UploadError::Unknown => ApiError::new(ErrorCode::BlobUploadUnknown, e.to_string()),
            UploadError::CollectedMeanwhile(_) => {
                ApiError::new(ErrorCode::Unavailable, e.to_string())
            }
            UploadError::Storage(e) => e.into(),
            UploadError::Meta(e) => e.into(),
        }
    }
}
