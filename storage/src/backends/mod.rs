//! The backends, and the one place a backend is chosen from config.

pub mod fs;
pub mod memory;

use crate::config::BackendConfig;
use crate::error::Result;
use crate::BlobStore;
use std::sync::Arc;

/// Opens the backend the config names.
pub async fn open(config: &BackendConfig) -> Result<Arc<dyn BlobStore>> {
    Ok(match config {
        BackendConfig::Filesystem { root } => Arc::new(fs::FsStore::open(root).await?),
        BackendConfig::InMemory => Arc::new(memory::MemoryStore::default()),
    })
}
