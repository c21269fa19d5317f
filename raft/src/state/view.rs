//! Read access to the state tree: the queries handlers need.

use super::keys;
use super::ApplyError;
use crate::codec::decode;
use crate::command::{ManifestRecord, Response, UploadOwner, UploadRecord};
use std::ops::Bound;
use storage::Digest;

/// A blob in the global index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub created_at_ms: u64,
}

/// What garbage collection knows of a digest. Kept after the blob's bytes
/// are condemned, so that a generation's key is never written twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlobLife {
    /// While the blob is recorded: the generation whose key holds its
    /// bytes. Once condemned: the next generation a push writes.
    pub generation: u64,
    /// When a collection hid the blob (HEAD and GET answer 404 from then;
    /// a push, mount or manifest referencing it revives it).
    pub tombstoned_at_ms: Option<u64>,
    /// When the blob was last pushed, mounted or revived.
    pub linked_at_ms: u64,
}

/// A blob as a pull sees it: recorded, not hidden by a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServableBlob {
    pub size: u64,
    pub generation: u64,
}

/// A collection's note that nothing roots a manifest (`U/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnrootedMark {
    /// Since when, as the proposer's clock said.
    pub at_ms: u64,
    /// A retention rule removed its last tag: it goes even without
    /// `storage.gc.untagged`.
    pub by_retention: bool,
}

/// Why nothing keeps a stored manifest (see [`StateView::unrooted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrooted {
    /// No tag, no index listing it, no subject.
    Untagged,
    /// A referrer, untagged and unlisted, whose subject is not stored.
    OrphanReferrer,
}

/// A manifest that names another as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub manifest: ManifestRecord,
}

fn event_ordinal(key: &[u8]) -> Result<u64> {
    key.strip_prefix(keys::EVENT)
        .and_then(|ordinal| <[u8; 8]>::try_from(ordinal).ok())
        .map(u64::from_be_bytes)
        .ok_or(ApplyError::from(crate::codec::CodecError::Corrupt(
            "event key",
        )))
}

/// A read-only view of the replicated state on this node.
#[derive(Debug, Clone)]
pub struct StateView {
    tree: sled::Tree,
}

type Result<T> = std::result::Result<T, ApplyError>;

impl StateView {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        StateView { tree }
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(&bytes)?)),
        }
    }

    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        Ok(self.tree.contains_key(keys::repo(repo))?)
    }

    pub fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        self.get(&keys::blob(digest))
    }

    /// The blob, if it is recorded and linked into `repo` (hidden by a
    /// collection or not: a push, mount or manifest revives a hidden blob).
    pub fn blob_in_repo(&self, repo: &str, digest: &Digest) -> Result<Option<BlobRecord>> {
        let Some(linked_at) = self.tree.get(keys::link(repo, digest))? else {
            return Ok(None);
        };
        let Some(record) = self.blob(digest)? else {
            return Ok(None);
        };
        let life = self.blob_life(digest, &record)?;
        Ok((link_generation(&linked_at)? == life.generation).then_some(record))
    }

    /// The blob as `GET`/`HEAD` in `repo` serve it: linked there and not
    /// hidden by a collection.
    pub fn servable_blob(&self, repo: &str, digest: &Digest) -> Result<Option<ServableBlob>> {
        let Some(record) = self.blob_in_repo(repo, digest)? else {
            return Ok(None);
        };
        let life = self.blob_life(digest, &record)?;
        Ok(life.tombstoned_at_ms.is_none().then_some(ServableBlob {
            size: record.size,
            generation: life.generation,
        }))
    }

    /// Garbage collection's record of `digest`, given its blob record
    /// (blobs recorded before collections existed have none: generation 0).
    pub fn blob_life(&self, digest: &Digest, record: &BlobRecord) -> Result<BlobLife> {
        Ok(self.get(&keys::blob_life(digest))?.unwrap_or(BlobLife {
            generation: 0,
            tombstoned_at_ms: None,
            linked_at_ms: record.created_at_ms,
        }))
    }

    /// The generation a push of `digest` writes its bytes to: the recorded
    /// one, or for a blob not recorded, the first never condemned.
    pub fn generation_to_write(&self, digest: &Digest) -> Result<u64> {
        let life: Option<BlobLife> = self.get(&keys::blob_life(digest))?;
        Ok(life.map_or(0, |life| life.generation))
    }

    /// The manifests (repository, digest) that reference the blob.
    pub fn blob_referrers(&self, digest: &Digest) -> Result<Vec<(String, Digest)>> {
        let prefix = keys::references_to(digest);
        self.tree
            .scan_prefix(&prefix)
            .keys()
            .map(|key| {
                let key = key?;
                let rest = &key[prefix.len()..];
                let split = rest
                    .iter()
                    .rposition(|b| *b == 0)
                    .ok_or(crate::codec::CodecError::Corrupt("reference key"))?;
                let manifest = parse_digest(&rest[split + 1..])
                    .ok_or(crate::codec::CodecError::Corrupt("reference key"))?;
                Ok((
                    String::from_utf8_lossy(&rest[..split]).into_owned(),
                    manifest,
                ))
            })
            .collect()
    }

    /// Whether any stored manifest, in any repository, references the blob.
    pub fn blob_referenced(&self, digest: &Digest) -> Result<bool> {
        self.any_under(&keys::references_to(digest))
    }

    /// The tags of `repo` that point at `manifest`.
    pub fn tags_of_manifest(&self, repo: &str, manifest: &Digest) -> Result<Vec<String>> {
        let prefix = keys::tags_of_manifest(repo, manifest);
        self.tree
            .scan_prefix(&prefix)
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?[prefix.len()..]).into_owned()))
            .collect()
    }

    /// Whether nothing keeps the manifest in `repo`: no tag points at it, no
    /// index lists it, and its subject (if it has one) is not stored. A
    /// referrer of a stored subject is kept while the subject is; an index's
    /// children are kept while the index is.
    pub fn unrooted(
        &self,
        repo: &str,
        digest: &Digest,
        record: &ManifestRecord,
    ) -> Result<Option<Unrooted>> {
        if self.manifest_tagged(repo, digest)? || self.manifest_listed(repo, digest)? {
            return Ok(None);
        }
        match &record.subject {
            None => Ok(Some(Unrooted::Untagged)),
            Some(subject) if subject == digest => Ok(Some(Unrooted::OrphanReferrer)),
            Some(subject) => Ok(
                match self.tree.contains_key(keys::manifest(repo, subject))? {
                    true => None,
                    false => Some(Unrooted::OrphanReferrer),
                },
            ),
        }
    }

    /// Whether any tag of `repo` points at `manifest`.
    pub fn manifest_tagged(&self, repo: &str, manifest: &Digest) -> Result<bool> {
        self.any_under(&keys::tags_of_manifest(repo, manifest))
    }

    /// Whether an index stored in `repo` lists `manifest`.
    pub fn manifest_listed(&self, repo: &str, manifest: &Digest) -> Result<bool> {
        self.any_under(&keys::parents_of(repo, manifest))
    }

    /// When a collection first saw the manifest unrooted (or retention
    /// removed its last tag), unless something rooted it since.
    pub fn unrooted_mark(&self, repo: &str, manifest: &Digest) -> Result<Option<UnrootedMark>> {
        self.get(&keys::unrooted(repo, manifest))
    }

    /// When `tag` of `repo` was last pushed, if it points at `manifest`.
    pub fn tag_pushed_at(&self, repo: &str, manifest: &Digest, tag: &str) -> Result<Option<u64>> {
        self.get(&keys::tag_of(repo, manifest, tag))
    }

    /// When the manifest was last pulled, as the nodes recorded it.
    pub fn pulled_at(&self, repo: &str, manifest: &Digest) -> Result<Option<u64>> {
        self.get(&keys::pulled(repo, manifest))
    }

    /// Every stored manifest with its repository, in key order.
    pub fn manifests(&self) -> impl Iterator<Item = Result<(String, Digest, ManifestRecord)>> + '_ {
        self.tree.scan_prefix(keys::MANIFEST).map(|item| {
            let (key, value) = item?;
            let (repo, digest) = keys::parse_manifest_key(&key)
                .ok_or(crate::codec::CodecError::Corrupt("manifest key"))?;
            Ok((repo, digest, decode(&value)?))
        })
    }

    fn any_under(&self, prefix: &[u8]) -> Result<bool> {
        Ok(self.tree.scan_prefix(prefix).next().transpose()?.is_some())
    }

    /// Every recorded blob with its record, in digest order.
    pub fn blobs(&self) -> impl Iterator<Item = Result<(Digest, BlobRecord)>> + '_ {
        self.tree.scan_prefix(keys::BLOB).map(|item| {
            let (key, value) = item?;
            let digest = keys::parse_digest_key(keys::BLOB, &key)
                .ok_or(crate::codec::CodecError::Corrupt("blob key"))?;
            Ok((digest, decode(&value)?))
        })
    }

    /// Condemned generations whose bytes the sweeper has yet to delete,
    /// with their sizes.
    pub fn pending_sweeps(&self) -> Result<Vec<(Digest, u64, u64)>> {
        self.tree
            .scan_prefix(keys::SWEEP)
            .map(|item| {
                let (key, value) = item?;
                let (digest, generation) = keys::parse_sweep(&key)
                    .ok_or(crate::codec::CodecError::Corrupt("sweep key"))?;
                Ok((digest, generation, decode(&value)?))
            })
            .collect()
    }

    pub fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>> {
        self.get(&keys::manifest(repo, digest))
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        match self.tree.get(keys::tag(repo, tag))? {
            None => Ok(None),
            Some(bytes) => Ok(parse_digest(&bytes)),
        }
    }

    /// Tags of `repo` in lexical order, starting after `last`, at most `limit`.
    pub fn tags(&self, repo: &str, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let prefix = keys::tags_of(repo);
        let start = match last {
            Some(last) => Bound::Excluded(keys::tag(repo, last)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for item in self.tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, _) = item?;
            if !key.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Every tag of `repo` with the digest it points at.
    pub fn tags_with_targets(&self, repo: &str) -> Result<Vec<(String, Digest)>> {
        let prefix = keys::tags_of(repo);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, value) = item?;
            if let Some(digest) = parse_digest(&value) {
                out.push((
                    String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                    digest,
                ));
            }
        }
        Ok(out)
    }

    /// Repository names in lexical order, starting after `last`, at most `limit`.
    pub fn repos(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let start = match last {
            Some(last) => Bound::Excluded(keys::repo(last)),
            None => Bound::Included(keys::REPO.to_vec()),
        };
        let mut out = Vec::new();
        for item in self.tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, _) = item?;
            if !key.starts_with(keys::REPO) || out.len() >= limit {
                break;
            }
            out.push(String::from_utf8_lossy(&key[keys::REPO.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Manifests in `repo` whose subject is `subject`, in digest order.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(keys::referrers_of(repo, subject)) {
            let (key, _) = item?;
            let Some(digest) = parse_digest(keys::last_component(&key)) else {
                continue;
            };
            if let Some(manifest) = self.manifest(repo, &digest)? {
                out.push(Referrer { digest, manifest });
            }
        }
        Ok(out)
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.get(&keys::upload(id))
    }

    /// Every open upload session with its id.
    pub fn uploads(&self) -> Result<Vec<(String, UploadRecord)>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(keys::UPLOAD) {
            let (key, value) = item?;
            let id = String::from_utf8_lossy(&key[keys::UPLOAD.len()..]).into_owned();
            out.push((id, decode(&value)?));
        }
        Ok(out)
    }

    /// Which node serves upload `id`'s session (none for uploads opened
    /// before sessions had owners: any node may claim those).
    pub fn upload_owner(&self, id: &str) -> Result<Option<UploadOwner>> {
        self.get(&keys::upload_owner(id))
    }

    /// How many hidden blobs a push, mount or manifest brought back.
    pub fn revived(&self) -> Result<u64> {
        Ok(self.get(keys::REVIVED)?.unwrap_or(0))
    }

    /// Whether the cluster is in read-only mode.
    /// The ordinal of the last notification event recorded (0: none yet).
    pub fn events_recorded(&self) -> Result<u64> {
        Ok(self.get(keys::EVENTS_RECORDED)?.unwrap_or(0))
    }

    /// Up to `limit` recorded events after ordinal `after`, in order.
    pub fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, crate::command::EventRecord)>> {
        let start = keys::event(after.saturating_add(1));
        self.tree
            .range(start..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(keys::EVENT))
            })
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                Ok((event_ordinal(&key)?, decode(&value)?))
            })
            .collect()
    }

    /// The ordinals of the events still stored up to `through`.
    pub(crate) fn event_ordinals_through(&self, through: u64) -> Result<Vec<u64>> {
        self.tree
            .range(keys::event(0)..=keys::event(through))
            .map(|item| event_ordinal(&item?.0))
            .collect()
    }

    /// The last event ordinal `endpoint` received, as the log recorded it.
    pub fn event_cursor(&self, endpoint: &str) -> Result<Option<u64>> {
        self.get(&keys::event_cursor(endpoint))
    }

    pub fn read_only(&self) -> Result<bool> {
        Ok(self.tree.contains_key(keys::READ_ONLY)?)
    }

    /// The cluster's id, once the first leader has named it.
    pub fn cluster_id(&self) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(keys::CLUSTER_ID)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Whether `node` has joined with its own copy of the data.
    pub fn member_joined(&self, node: u64) -> Result<bool> {
        Ok(self.tree.contains_key(keys::member(node))?)
    }

    /// The members recorded as joined.
    pub fn joined_members(&self) -> Result<Vec<u64>> {
        self.tree
            .scan_prefix(keys::MEMBER)
            .keys()
            .map(|key| {
                let key = key?;
                let raw: [u8; 8] = key[keys::MEMBER.len()..]
                    .try_into()
                    .map_err(|_| crate::codec::CodecError::Corrupt("member key"))?;
                Ok(u64::from_be_bytes(raw))
            })
            .collect()
    }

    /// The log index and answer of an applied request, while remembered.
    pub(crate) fn request(&self, id: u128) -> Result<Option<(u64, Response)>> {
        self.get(&keys::request(id))
    }

    /// Remembered requests applied at or before log `index`, oldest first.
    pub(crate) fn requests_up_to(&self, index: u64) -> Result<Vec<(u64, u128)>> {
        let end = keys::request_by_index(index);
        self.tree
            .range(keys::REQUEST_BY_INDEX.to_vec()..=end)
            .map(|item| {
                let (key, value) = item?;
                let at: [u8; 8] = key[keys::REQUEST_BY_INDEX.len()..]
                    .try_into()
                    .map_err(|_| crate::codec::CodecError::Corrupt("request index key"))?;
                let id: [u8; 16] = value[..]
                    .try_into()
                    .map_err(|_| crate::codec::CodecError::Corrupt("request id"))?;
                Ok((u64::from_be_bytes(at), u128::from_be_bytes(id)))
            })
            .collect()
    }

    /// SHA-256 over every record of the replicated state (keys and values,
    /// length-prefixed, in key order): equal on two nodes that applied the
    /// same log up to the same index (invariant 5). Reads the whole state.
    pub fn fingerprint(&self) -> Result<Digest> {
        let mut hasher = storage::Hasher::new(storage::Algorithm::Sha256);
        for record in self.records() {
            let (key, value) = record?;
            for part in [&key[..], &value[..]] {
                hasher.update(&(part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
        }
        Ok(hasher.finish())
    }

    /// Every entry of the state except bookkeeping, in key order: what a
    /// snapshot holds.
    pub(crate) fn records(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.tree
            .iter()
            .filter(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| !key.starts_with(keys::BOOKKEEPING))
            })
            .map(|item| item.map_err(Into::into))
    }
}

/// The generation a link value records (links written before generations
/// existed are empty: generation 0).
pub(crate) fn link_generation(value: &[u8]) -> Result<u64> {
    match value.len() {
        0 => Ok(0),
        8 => Ok(u64::from_be_bytes(value.try_into().unwrap_or_default())),
        _ => Err(crate::codec::CodecError::Corrupt("link value").into()),
    }
}

fn parse_digest(bytes: &[u8]) -> Option<Digest> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
