//! The object layout. Only this file builds object keys:
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>      a blob (generation 0), written once, never modified
//! blobs/<algorithm>/<first two hex>/<hex>.g<n> generation n > 0 of a blob: the same bytes,
//!                                              written again after garbage collection
//!                                              deleted generation n - 1
//! uploads/<uuid>/<offset, 20 digits>           one staged part of an upload, starting at offset
//! cluster/<cluster id>                         marker written when a cluster is named: every
//!                                              node checks it sees it (shared blob storage)
//! ```

use crate::digest::Digest;
use std::fmt;

/// A key in the blob store. Always relative, `/`-separated, with no `.` or `..` components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The content address of a blob, generation 0 (distribution's layout).
    pub fn blob(digest: &Digest) -> Self {
        Self::blob_generation(digest, 0)
    }

    /// Where generation `generation` of a blob lives. A generation's key is
    /// never written again once garbage collection decided to delete it, so
    /// a late or repeated delete can never hit bytes that are in use.
    pub fn blob_generation(digest: &Digest, generation: u64) -> Self {
        let hex = digest.hex();
        let base = format!("blobs/{}/{}/{}", digest.algorithm().name(), &hex[..2], hex);
        match generation {
            0 => ObjectKey(base),
            n => ObjectKey(format!("{base}.g{n}")),
        }
    }

    /// The folder holding every staged part of one upload.
    pub fn upload_prefix(upload: &uuid::Uuid) -> Self {
        ObjectKey(format!("uploads/{upload}/"))
    }

    /// The staged part of an upload that starts at `offset`.
    pub fn upload_part(upload: &uuid::Uuid, offset: u64) -> Self {
        ObjectKey(format!("uploads/{upload}/{offset:020}"))
    }

    /// The start offset of an upload part key made by [`ObjectKey::upload_part`].
    pub fn part_offset(&self) -> Option<u64> {
        let (prefix, last) = self.0.rsplit_once('/')?;
        if !prefix.starts_with("uploads/") || last.len() != 20 {
            return None;
        }
        last.parse().ok()
    }

    /// The marker of cluster `id`. `id` is a UUID the cluster made; anything
    /// else is stripped to keep the key inside the layout.
    pub fn cluster_marker(id: &str) -> Self {
        let id: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        ObjectKey(format!("cluster/{id}"))
    }

    /// Rebuilds a key that a backend listed. Refuses anything that could escape the store's root.
    pub fn from_listing(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && !raw.starts_with('/')
            && raw
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        valid.then(|| ObjectKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Digest::sha256_of(b"x");
        let key = ObjectKey::blob(&d);
        assert_eq!(
            key.as_str(),
            format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
        );
        let id = uuid::Uuid::nil();
        let part = ObjectKey::upload_part(&id, 42);
        assert!(part
            .as_str()
            .starts_with(ObjectKey::upload_prefix(&id).as_str()));
        assert_eq!(part.part_offset(), Some(42));
        assert_eq!(key.part_offset(), None);
        assert_eq!(ObjectKey::blob_generation(&d, 0), key);
        assert_eq!(
            ObjectKey::blob_generation(&d, 3).as_str(),
            format!("{key}.g3")
        );
        assert!(ObjectKey::from_listing("a/../b").is_none());
        assert!(ObjectKey::from_listing("/abs").is_none());
    }
}
