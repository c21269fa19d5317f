//! Every request is parsed once, here, into a typed [`Route`]. Repository
//! names may contain any number of `/`, so the path is read from the right.

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::names::{parse_digest, Reference, RepoName};
use actix_web::http::Method;
use storage::Digest;
use uuid::Uuid;

/// One endpoint of the OCI Distribution API, with its parsed parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    TagsList {
        name: RepoName,
    },
    GetManifest {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    PutManifest {
        name: RepoName,
        reference: Reference,
    },
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    GetBlob {
        name: RepoName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        name: RepoName,
        digest: Digest,
    },
    StartUpload {
        name: RepoName,
    },
    UploadStatus {
        name: RepoName,
        id: Uuid,
    },
    PatchUpload {
        name: RepoName,
        id: Uuid,
    },
    FinishUpload {
        name: RepoName,
        id: Uuid,
    },
    CancelUpload {
        name: RepoName,
        id: Uuid,
    },
    Referrers {
        name: RepoName,
        digest: Digest,
    },
}

/// What a route needs the caller to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
    Delete,
}

impl Route {
    /// Whether the route changes anything (read-only mode refuses these).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Route::PutManifest { .. }
                | Route::DeleteManifest { .. }
                | Route::DeleteBlob { .. }
                | Route::StartUpload { .. }
                | Route::PatchUpload { .. }
                | Route::FinishUpload { .. }
                | Route::CancelUpload { .. }
        )
    }

    /// The repository the route pushes into (a pull-through cache refuses
    /// these in the repositories it covers; deletes stay allowed).
    pub fn pushed_repository(&self) -> Option<&RepoName> {
        match self {
            Route::PutManifest { name, .. }
            | Route::StartUpload { name }
            | Route::PatchUpload { name, .. }
            | Route::FinishUpload { name, .. } => Some(name),
            _ => None,
        }
    }

    /// A short stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::TagsList { .. } => "tags_list",
            Route::GetManifest { head: false, .. } => "get_manifest",
            Route::GetManifest { head: true, .. } => "head_manifest",
            Route::PutManifest { .. } => "put_manifest",
            Route::DeleteManifest { .. } => "delete_manifest",
            Route::GetBlob { head: false, .. } => "get_blob",
            Route::GetBlob { head: true, .. } => "head_blob",
            Route::DeleteBlob { .. } => "delete_blob",
            Route::StartUpload { .. } => "start_upload",
            Route::UploadStatus { .. } => "upload_status",
            Route::PatchUpload { .. } => "patch_upload",
            Route::FinishUpload { .. } => "finish_upload",
            Route::CancelUpload { .. } => "cancel_upload",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// The repository the route acts on (`None` for `/v2/` and the catalog).
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::TagsList { name }
            | Route::GetManifest { name, .. }
            | Route::PutManifest { name, .. }
            | Route::DeleteManifest { name, .. }
            | Route::GetBlob { name, .. }
            | Route::DeleteBlob { name, .. }
            | Route::StartUpload { name }
            | Route::UploadStatus { name, .. }
            | Route::PatchUpload { name, .. }
            | Route::FinishUpload { name, .. }
            | Route::CancelUpload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    pub fn access(&self) -> Access {
        match self {
            Route::Base
            | Route::Catalog
            | Route::TagsList { .. }
            | Route::GetManifest { .. }
            | Route::GetBlob { .. }
            | Route::Referrers { .. } => Access::Pull,
            Route::PutManifest { .. }
            | Route::StartUpload { .. }
            | Route::UploadStatus { .. }
            | Route::PatchUpload { .. }
            | Route::FinishUpload { .. }
            | Route::CancelUpload { .. } => Access::Push,
            Route::DeleteManifest { .. } | Route::DeleteBlob { .. } => Access::Delete,
        }
    }

    /// Parses a request line. Unknown paths are `NOT_FOUND`; a known path with
    /// a method it does not serve is `UNSUPPORTED` (405).
    pub fn parse(method: &Method, path: &str) -> ApiResult<Route> {
        if path == "/v2" {
            return on(method, path, &[Method::GET, Method::HEAD], || {
                Ok(Route::Base)
            });
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Err(not_found(path));
        };
        if rest.is_empty() {
            return on(method, path, &[Method::GET, Method::HEAD], || {
                Ok(Route::Base)
            });
        }
        if rest == "_catalog" {
            return on(method, path, &[Method::GET], || Ok(Route::Catalog));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of = |end: usize| -> ApiResult<RepoName> {
            if end == 0 {
                return Err(not_found(path));
            }
            RepoName::parse(&segments[..end].join("/"))
        };
        let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();

        if n >= 3 && tail(2) == Some("tags") && tail(1) == Some("list") {
            let name = name_of(n - 2)?;
            return on(method, path, &[Method::GET], || {
                Ok(Route::TagsList { name })
            });
        }
        if n >= 3 && tail(2) == Some("blobs") && tail(1) == Some("uploads") {
            let name = name_of(n - 2)?;
            return on(method, path, &[Method::POST], || {
                Ok(Route::StartUpload { name })
            });
        }
        if n >= 4 && tail(3) == Some("blobs") && tail(2) == Some("uploads") {
            let name = name_of(n - 3)?;
            let raw = tail(1).unwrap_or_default();
            if raw.is_empty() {
                return on(method, path, &[Method::POST], || {
                    Ok(Route::StartUpload { name })
                });
            }
            let id = Uuid::parse_str(raw).map_err(|_| {
                ApiError::new(ErrorCode::BlobUploadUnknown, format!("no upload {raw:?}"))
            })?;
            return match *method {
                Method::GET => Ok(Route::UploadStatus { name, id }),
                Method::PATCH => Ok(Route::PatchUpload { name, id }),
                Method::PUT => Ok(Route::FinishUpload { name, id }),
                Method::DELETE => Ok(Route::CancelUpload { name, id }),
                _ => Err(unsupported(method, path)),
            };
        }
        if n >= 3 {
            let kind = tail(2).unwrap_or_default();
            let last = tail(1).unwrap_or_default();
            match kind {
                "blobs" => {
                    let name = name_of(n - 2)?;
                    let digest = parse_digest(last)?;
                    return match *method {
                        Method::GET => Ok(Route::GetBlob {
                            name,
                            digest,
                            head: false,
                        }),
                        Method::HEAD => Ok(Route::GetBlob {
                            name,
                            digest,
                            head: true,
                        }),
                        Method::DELETE => Ok(Route::DeleteBlob { name, digest }),
                        _ => Err(unsupported(method, path)),
                    };
                }
                "manifests" => {
                    let name = name_of(n - 2)?;
                    let reference = Reference::parse(last)?;
                    return match *method {
                        Method::GET => Ok(Route::GetManifest {
                            name,
                            reference,
                            head: false,
                        }),
                        Method::HEAD => Ok(Route::GetManifest {
                            name,
                            reference,
                            head: true,
                        }),
                        Method::PUT => Ok(Route::PutManifest { name, reference }),
                        Method::DELETE => Ok(Route::DeleteManifest { name, reference }),
                        _ => Err(unsupported(method, path)),
                    };
                }
                "referrers" => {
                    let name = name_of(n - 2)?;
                    let digest = parse_digest(last)?;
                    return on(method, path, &[Method::GET], || {
                        Ok(Route::Referrers { name, digest })
                    });
                }
                _ => {}
            }
        }
        Err(not_found(path))
    }
}

fn on(
    method: &Method,
    path: &str,
    allowed: &[Method],
    route: impl FnOnce() -> ApiResult<Route>,
) -> ApiResult<Route> {
    if allowed.contains(method) {
        route()
    } else {
        Err(unsupported(method, path))
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no endpoint at {path}"))
}

fn unsupported(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("{method} is not supported on {path}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn parse(method: Method, path: &str) -> ApiResult<Route> {
        Route::parse(&method, path)
    }

    #[test]
    fn the_spec_endpoint_table() {
        let d = Digest::sha256_of(b"x");
        let id = Uuid::new_v4();
        let tag = Reference::parse("v1").unwrap();
        let by_digest = Reference::Digest(d.clone());
        let n = "a/b/c";
        let rows: Vec<(Method, String, Route)> = vec![
            (Method::GET, "/v2/".into(), Route::Base),
            (Method::GET, "/v2".into(), Route::Base),
            (
                Method::GET,
                format!("/v2/{n}/blobs/{d}"),
                Route::GetBlob {
                    name: name(n),
                    digest: d.clone(),
                    head: false,
                },
            ),
            (
                Method::HEAD,
                format!("/v2/{n}/blobs/{d}"),
                Route::GetBlob {
                    name: name(n),
                    digest: d.clone(),
                    head: true,
                },
            ),
            (
                Method::GET,
                format!("/v2/{n}/manifests/v1"),
                Route::GetManifest {
                    name: name(n),
                    reference: tag.clone(),
                    head: false,
                },
            ),
            (
                Method::HEAD,
                format!("/v2/{n}/manifests/{d}"),
                Route::GetManifest {
                    name: name(n),
                    reference: by_digest.clone(),
                    head: true,
                },
            ),
            (
                Method::POST,
                format!("/v2/{n}/blobs/uploads/"),
                Route::StartUpload { name: name(n) },
            ),
            (
                Method::POST,
                format!("/v2/{n}/blobs/uploads"),
                Route::StartUpload { name: name(n) },
            ),
            (
                Method::PATCH,
                format!("/v2/{n}/blobs/uploads/{id}"),
                Route::PatchUpload { name: name(n), id },
            ),
            (
                Method::PUT,
                format!("/v2/{n}/blobs/uploads/{id}"),
                Route::FinishUpload { name: name(n), id },
            ),
            (
                Method::GET,
                format!("/v2/{n}/blobs/uploads/{id}"),
                Route::UploadStatus { name: name(n), id },
            ),
            (
                Method::DELETE,
                format!("/v2/{n}/blobs/uploads/{id}"),
                Route::CancelUpload { name: name(n), id },
            ),
            (
                Method::PUT,
                format!("/v2/{n}/manifests/v1"),
                Route::PutManifest {
                    name: name(n),
                    reference: tag.clone(),
                },
            ),
            (
                Method::GET,
                format!("/v2/{n}/tags/list"),
                Route::TagsList { name: name(n) },
            ),
            (
                Method::DELETE,
                format!("/v2/{n}/manifests/{d}"),
                Route::DeleteManifest {
                    name: name(n),
                    reference: by_digest,
                },
            ),
            (
                Method::DELETE,
                format!("/v2/{n}/blobs/{d}"),
                Route::DeleteBlob {
                    name: name(n),
                    digest: d.clone(),
                },
            ),
            (
                Method::GET,
                format!("/v2/{n}/referrers/{d}"),
                Route::Referrers {
                    name: name(n),
                    digest: d.clone(),
                },
            ),
            (Method::GET, "/v2/_catalog".into(), Route::Catalog),
            // Names whose components look like endpoint words still parse from the right.
            (
                Method::GET,
                format!("/v2/blobs/manifests/tags/blobs/{d}"),
                Route::GetBlob {
                    name: name("blobs/manifests/tags"),
                    digest: d.clone(),
                    head: false,
                },
            ),
        ];
        for (method, path, expected) in rows {
            assert_eq!(
                parse(method.clone(), &path).unwrap(),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn bad_requests_get_their_codes() {
        let d = Digest::sha256_of(b"x");
        let code = |m: Method, p: &str| parse(m, p).unwrap_err().code;
        assert_eq!(
            code(Method::GET, &format!("/v2/UPPER/blobs/{d}")),
            ErrorCode::NameInvalid
        );
        assert_eq!(
            code(Method::GET, "/v2/a/blobs/sha256:123"),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(Method::PUT, "/v2/a/manifests/-bad"),
            ErrorCode::TagInvalid
        );
        assert_eq!(
            code(Method::PATCH, "/v2/a/blobs/uploads/nope"),
            ErrorCode::BlobUploadUnknown
        );
        assert_eq!(
            code(Method::POST, &format!("/v2/a/blobs/{d}")),
            ErrorCode::Unsupported
        );
        assert_eq!(code(Method::GET, "/v2/a/nothing/here"), ErrorCode::NotFound);
        assert_eq!(code(Method::GET, "/v1/"), ErrorCode::NotFound);
    }
}
