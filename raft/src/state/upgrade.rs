//! Derived indexes that states written by older versions lack: built from
//! the state itself when a node opens it or installs a snapshot, so every
//! node derives the same records (invariant 5).

use super::keys;
use super::ApplyError;
use crate::codec::{decode, encode};
use crate::command::ManifestRecord;
use storage::Digest;

/// The layout this version writes: 1 added the manifest → blob references
/// (`R/`) that garbage collection consults, 2 the tag and index reverse
/// indexes (`T/`, `P/`) it roots manifests by.
const LAYOUT: u64 = 2;

/// Brings `tree` to the current layout. Returns whether it changed anything.
pub fn upgrade(tree: &sled::Tree) -> Result<bool, ApplyError> {
    let current = match tree.get(keys::LAYOUT)? {
        None => 0,
        Some(raw) => u64::from_be_bytes(
            raw.as_ref()
                .try_into()
                .map_err(|_| crate::codec::CodecError::Corrupt("layout"))?,
        ),
    };
    if current >= LAYOUT {
        return Ok(false);
    }
    // Every step rebuilds a derived index from the records, so running one
    // again is harmless.
    let mut batch = sled::Batch::default();
    let mut references = 0u64;
    for item in tree.scan_prefix(keys::MANIFEST) {
        let (key, value) = item?;
        let Some((repo, digest)) = keys::parse_manifest_key(&key) else {
            return Err(crate::codec::CodecError::Corrupt("manifest key").into());
        };
        let record: ManifestRecord = decode(&value)?;
        for blob in &record.blobs {
            batch.insert(keys::blob_reference(blob, &repo, &digest), Vec::<u8>::new());
            references += 1;
        }
        for child in &record.children {
            batch.insert(keys::parent(&repo, child, &digest), Vec::<u8>::new());
            references += 1;
        }
    }
    for item in tree.scan_prefix(keys::TAG) {
        let (key, value) = item?;
        let rest = &key[keys::TAG.len()..];
        let split = rest.iter().position(|b| *b == 0);
        let target = std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse::<Digest>().ok());
        let (Some(split), Some(target)) = (split, target) else {
            return Err(crate::codec::CodecError::Corrupt("tag").into());
        };
        let repo = String::from_utf8_lossy(&rest[..split]);
        let tag = String::from_utf8_lossy(&rest[split + 1..]);
        // The tag's push time was not kept: its manifest's is the best guess.
        let pushed_at = match tree.get(keys::manifest(&repo, &target))? {
            Some(record) => decode::<ManifestRecord>(&record)?.at_ms,
            None => 0,
        };
        batch.insert(keys::tag_of(&repo, &target, &tag), encode(&pushed_at)?);
        references += 1;
    }
    batch.insert(keys::LAYOUT, LAYOUT.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tracing::info!(
        from = current,
        to = LAYOUT,
        references,
        "metadata layout upgraded"
    );
    Ok(true)
}
