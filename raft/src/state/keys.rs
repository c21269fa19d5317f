//! The key layout of the state tree. Every table is a key prefix in one sled
//! tree, so one `sled::Batch` changes any set of tables atomically.
//!
//! ```text
//! r/<repo>                              repository exists
//! b/<digest>                            BlobRecord (global blob index)
//! l/<repo>\0<digest>                    blob linked into repo
//! m/<repo>\0<digest>                    ManifestRecord
//! t/<repo>\0<tag>                       digest the tag points at
//! f/<repo>\0<subject>\0<referrer>       referrer manifest of subject
//! u/<upload id>                         UploadRecord
//! o/<upload id>                         UploadOwner
//! c/cluster                             the cluster id
//! n/<node id, 8 bytes BE>               member that has joined with its own data
//! q/<request id, 16 bytes BE>           (log index, Response) of an applied `Once`
//! Q/<log index, 8 bytes BE>             request id applied at that index (for pruning)
//! _/last_applied, _/membership          state machine bookkeeping (not in snapshots)
//! ```

use storage::Digest;

pub const REPO: &[u8] = b"r/";
pub const BLOB: &[u8] = b"b/";
pub const LINK: &[u8] = b"l/";
pub const MANIFEST: &[u8] = b"m/";
pub const TAG: &[u8] = b"t/";
pub const REFERRER: &[u8] = b"f/";
pub const UPLOAD: &[u8] = b"u/";
pub const UPLOAD_OWNER: &[u8] = b"o/";
pub const CLUSTER_ID: &[u8] = b"c/cluster";
pub const READ_ONLY: &[u8] = b"c/readonly";
pub const MEMBER: &[u8] = b"n/";
pub const REQUEST: &[u8] = b"q/";
pub const REQUEST_BY_INDEX: &[u8] = b"Q/";
pub const BOOKKEEPING: &[u8] = b"_/";
pub const LAST_APPLIED: &[u8] = b"_/last_applied";
pub const MEMBERSHIP: &[u8] = b"_/membership";

const SEP: u8 = 0;

fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

pub fn repo(repo: &str) -> Vec<u8> {
    join(REPO, &[repo.as_bytes()])
}

pub fn blob(digest: &Digest) -> Vec<u8> {
    join(BLOB, &[digest.to_string().as_bytes()])
}

pub fn link(repo: &str, digest: &Digest) -> Vec<u8> {
    join(LINK, &[repo.as_bytes(), digest.to_string().as_bytes()])
}

pub fn manifest(repo: &str, digest: &Digest) -> Vec<u8> {
    join(MANIFEST, &[repo.as_bytes(), digest.to_string().as_bytes()])
}

pub fn tag(repo: &str, tag: &str) -> Vec<u8> {
    join(TAG, &[repo.as_bytes(), tag.as_bytes()])
}

/// Prefix of every tag of `repo`.
pub fn tags_of(repo: &str) -> Vec<u8> {
    join(TAG, &[repo.as_bytes(), b""])
}

pub fn referrer(repo: &str, subject: &Digest, referrer: &Digest) -> Vec<u8> {
    join(
        REFERRER,
        &[
            repo.as_bytes(),
            subject.to_string().as_bytes(),
            referrer.to_string().as_bytes(),
        ],
    )
}

/// Prefix of every referrer of `subject` in `repo`.
pub fn referrers_of(repo: &str, subject: &Digest) -> Vec<u8> {
    join(
        REFERRER,
        &[repo.as_bytes(), subject.to_string().as_bytes(), b""],
    )
}

pub fn upload(id: &str) -> Vec<u8> {
    join(UPLOAD, &[id.as_bytes()])
}

/// The last `\0`-separated component of a key.
pub fn last_component(key: &[u8]) -> &[u8] {
    key.rsplit(|b| *b == SEP).next().unwrap_or(key)
}

pub fn upload_owner(id: &str) -> Vec<u8> {
    join(UPLOAD_OWNER, &[id.as_bytes()])
}

pub fn member(node: u64) -> Vec<u8> {
    join(MEMBER, &[&node.to_be_bytes()])
}

pub fn request(id: u128) -> Vec<u8> {
    join(REQUEST, &[&id.to_be_bytes()])
}

pub fn request_by_index(index: u64) -> Vec<u8> {
    join(REQUEST_BY_INDEX, &[&index.to_be_bytes()])
}
