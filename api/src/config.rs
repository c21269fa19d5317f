//! The API section of the configuration.

/// Limits and policies of the OCI API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Whether blob and manifest deletes are allowed (distribution's `storage.delete.enabled`).
    pub delete_enabled: bool,
    /// Largest manifest accepted, in bytes; larger ones get 413.
    pub max_manifest_bytes: usize,
    /// Answer blob `GET`s with a `307` to a presigned URL when the backend
    /// can presign (distribution's default).
    pub redirect: bool,
    /// Refuse every write (`storage.maintenance.readonly.enabled`), whatever
    /// the cluster's runtime mode says.
    pub read_only: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            delete_enabled: false,
            max_manifest_bytes: 4 << 20,
            redirect: true,
            read_only: false,
        }
    }
}
