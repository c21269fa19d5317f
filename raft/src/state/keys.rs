//! The key layout of the state tree. Every table is a key prefix in one sled
//! tree, so one `sled::Batch` changes any set of tables atomically.
//!
//! ```text
//! r/<repo>                              repository exists
//! b/<digest>                            BlobRecord (global blob index)
//! l/<repo>\0<digest>                    blob linked into repo; value: the blob generation
//!                                       it was linked at (8 bytes BE; empty = 0). A link to
//!                                       an older generation than the blob's is stale.
//! g/<digest>                            BlobLife: generation, tombstone, last push (GC)
//! R/<digest>\0<repo>\0<manifest>         manifest in repo references blob <digest>
//! s/<digest>\0<generation, 8 bytes BE>   condemned generation awaiting the sweeper; value: size
//! T/<repo>\0<digest>\0<tag>              tag <tag> of repo points at manifest <digest>;
//!                                       value: when the tag was pushed (u64 ms)
//! P/<repo>\0<child>\0<index>             index manifest <index> of repo lists <child>
//! U/<repo>\0<digest>                      UnrootedMark: since when nothing roots the manifest
//!                                       (as a collection saw it); cleared when anything roots it
//! L/<repo>\0<digest>                      when the manifest was last pulled (u64 ms)
//! m/<repo>\0<digest>                    ManifestRecord
//! t/<repo>\0<tag>                       digest the tag points at
//! f/<repo>\0<subject>\0<referrer>       referrer manifest of subject
//! u/<upload id>                         UploadRecord
//! o/<upload id>                         UploadOwner
//! c/cluster                             the cluster id
//! c/readonly                            present while the cluster is read-only
//! c/layout                              version of the derived indexes (R/), see `upgrade`
//! c/revived                             how many hidden blobs pushes brought back (u64)
//! n/<node id, 8 bytes BE>               member that has joined with its own data
//! q/<request id, 16 bytes BE>           (log index, Response) of an applied `Once`
//! Q/<log index, 8 bytes BE>             request id applied at that index (for pruning)
//! E/<ordinal, 8 bytes BE>               EventRecord, in log order (notifications)
//! e/<endpoint>                          ordinal of the last event the endpoint received
//! c/events                              ordinal of the last event recorded (u64)
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
pub const LAYOUT: &[u8] = b"c/layout";
pub const REVIVED: &[u8] = b"c/revived";
pub const BLOB_LIFE: &[u8] = b"g/";
pub const BLOB_REFERENCE: &[u8] = b"R/";
pub const SWEEP: &[u8] = b"s/";
pub const TAG_OF: &[u8] = b"T/";
pub const PARENT: &[u8] = b"P/";
pub const UNROOTED: &[u8] = b"U/";
pub const PULLED: &[u8] = b"L/";
pub const MEMBER: &[u8] = b"n/";
pub const REQUEST: &[u8] = b"q/";
pub const REQUEST_BY_INDEX: &[u8] = b"Q/";
pub const EVENT: &[u8] = b"E/";
pub const EVENT_CURSOR: &[u8] = b"e/";
pub const EVENTS_RECORDED: &[u8] = b"c/events";
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

pub fn blob_life(digest: &Digest) -> Vec<u8> {
    join(BLOB_LIFE, &[digest.to_string().as_bytes()])
}

pub fn blob_reference(blob: &Digest, repo: &str, manifest: &Digest) -> Vec<u8> {
    join(
        BLOB_REFERENCE,
        &[
            blob.to_string().as_bytes(),
            repo.as_bytes(),
            manifest.to_string().as_bytes(),
        ],
    )
}

/// Prefix of every manifest reference to `blob`.
pub fn references_to(blob: &Digest) -> Vec<u8> {
    join(BLOB_REFERENCE, &[blob.to_string().as_bytes(), b""])
}

pub fn sweep(digest: &Digest, generation: u64) -> Vec<u8> {
    join(
        SWEEP,
        &[digest.to_string().as_bytes(), &generation.to_be_bytes()],
    )
}

/// The digest and generation of a key made by [`sweep`].
pub fn parse_sweep(key: &[u8]) -> Option<(Digest, u64)> {
    let rest = key.strip_prefix(SWEEP)?;
    let split = rest.len().checked_sub(9)?;
    let (digest, tail) = rest.split_at(split);
    let generation: [u8; 8] = tail.get(1..)?.try_into().ok()?;
    let digest = std::str::from_utf8(digest).ok()?.parse().ok()?;
    Some((digest, u64::from_be_bytes(generation)))
}

/// The digest of a key made by [`blob`] or [`blob_life`].
pub fn parse_digest_key(prefix: &[u8], key: &[u8]) -> Option<Digest> {
    std::str::from_utf8(key.strip_prefix(prefix)?)
        .ok()?
        .parse()
        .ok()
}

pub fn tag_of(repo: &str, manifest: &Digest, tag: &str) -> Vec<u8> {
    join(
        TAG_OF,
        &[
            repo.as_bytes(),
            manifest.to_string().as_bytes(),
            tag.as_bytes(),
        ],
    )
}

/// Prefix of every tag pointing at `manifest` in `repo`.
pub fn tags_of_manifest(repo: &str, manifest: &Digest) -> Vec<u8> {
    join(
        TAG_OF,
        &[repo.as_bytes(), manifest.to_string().as_bytes(), b""],
    )
}

pub fn parent(repo: &str, child: &Digest, index: &Digest) -> Vec<u8> {
    join(
        PARENT,
        &[
            repo.as_bytes(),
            child.to_string().as_bytes(),
            index.to_string().as_bytes(),
        ],
    )
}

/// Prefix of every index of `repo` listing `child`.
pub fn parents_of(repo: &str, child: &Digest) -> Vec<u8> {
    join(
        PARENT,
        &[repo.as_bytes(), child.to_string().as_bytes(), b""],
    )
}

pub fn unrooted(repo: &str, manifest: &Digest) -> Vec<u8> {
    join(
        UNROOTED,
        &[repo.as_bytes(), manifest.to_string().as_bytes()],
    )
}

pub fn pulled(repo: &str, manifest: &Digest) -> Vec<u8> {
    join(PULLED, &[repo.as_bytes(), manifest.to_string().as_bytes()])
}

/// The repository and digest of a key made by [`manifest`].
pub fn parse_manifest_key(key: &[u8]) -> Option<(String, Digest)> {
    let rest = key.strip_prefix(MANIFEST)?;
    let split = rest.iter().rposition(|b| *b == SEP)?;
    let repo = std::str::from_utf8(&rest[..split]).ok()?.to_owned();
    let digest = std::str::from_utf8(&rest[split + 1..]).ok()?.parse().ok()?;
    Some((repo, digest))
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

pub fn event(ordinal: u64) -> Vec<u8> {
    join(EVENT, &[&ordinal.to_be_bytes()])
}

pub fn event_cursor(endpoint: &str) -> Vec<u8> {
    join(EVENT_CURSOR, &[endpoint.as_bytes()])
}
