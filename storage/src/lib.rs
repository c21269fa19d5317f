//! Blob storage for the registry.
//!
//! This crate owns content addressing (`Digest`, streaming hashing), the object
//! layout (`key`), the object-store shaped `BlobStore` trait with its backends,
//! and upload staging on top of it. It knows nothing of Raft or HTTP.

pub mod backends;
pub mod blob_store;
pub mod config;
pub mod digest;
pub mod error;
#[cfg(any(test, feature = "testsuite"))]
pub mod faulty;
pub mod instrumented;
pub mod key;
pub mod metrics;
pub mod staging;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
pub use config::BackendConfig;
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{ErrorKind, StorageError};
pub use key::ObjectKey;
pub use metrics::StorageMetrics;
pub use staging::{Part, Placement, Staging};
pub use uuid;
