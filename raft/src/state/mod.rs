//! The data model and the deterministic application of commands.
//!
//! `apply` is a pure function of the current state and the command: no clock,
//! no randomness, no I/O besides reading the state tree. It returns the
//! changes as one `sled::Batch`, which the state machine writes atomically
//! together with `last_applied`.

mod collect;
#[cfg(test)]
mod gc_model;
pub mod keys;
mod upgrade;
mod view;

pub use collect::qualifies;
pub use upgrade::upgrade;
pub use view::{BlobLife, BlobRecord, Referrer, ServableBlob, StateView, Unrooted, UnrootedMark};

use crate::codec::{encode, CodecError};
use crate::command::{BlobSource, Command, Response, UploadOwner};

/// How many log entries a request id is remembered for: a retried proposal
/// arrives within seconds, this is hours of writes.
pub const DEDUP_WINDOW: u64 = 100_000;

/// Computes the effect of `command`, the entry at log `index`, on `view` as a
/// batch, and the response.
pub fn apply(
    view: &StateView,
    index: u64,
    command: &Command,
) -> Result<(sled::Batch, Response), ApplyError> {
    let mut batch = sled::Batch::default();
    let response = apply_into(view, index, command, &mut batch)?;
    Ok((batch, response))
}

/// Which references a stored manifest must find in its repository.
#[derive(Clone, Copy, PartialEq, Eq)]
enum References {
    /// A push: every blob and child manifest it names is there.
    Present,
    /// A pull-through cache's copy: they are fetched when pulled.
    Fetched,
}

/// Stores a manifest, tagged with each of `tags`, once every blob and
/// child it references is in the repository (or, for a cache, without).
fn put_manifest(
    view: &StateView,
    repo: &str,
    digest: &storage::Digest,
    tags: &[String],
    manifest: &crate::ManifestRecord,
    references: References,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    let mut found = Vec::with_capacity(manifest.blobs.len());
    for blob in &manifest.blobs {
        match view.blob_in_repo(repo, blob)? {
            None if references == References::Present => {
                return Ok(Response::ManifestReferenceUnknown(blob.clone()))
            }
            record => found.push((blob, record)),
        }
    }
    for child in &manifest.children {
        if references == References::Present
            && child != digest
            && view.manifest(repo, child)?.is_none()
        {
            return Ok(Response::ManifestReferenceUnknown(child.clone()));
        }
    }
    batch.insert(keys::manifest(repo, digest), encode(manifest)?);
    let mut revived = 0;
    for (blob, record) in found {
        batch.insert(keys::blob_reference(blob, repo, digest), Vec::<u8>::new());
        let Some(record) = record else { continue };
        revived += u64::from(collect::revive_if_hidden(
            view,
            blob,
            &record,
            manifest.at_ms,
            batch,
        )?);
    }
    collect::count_revived(view, revived, batch)?;
    for tag in tags {
        if let Some(previous) = view.tag(repo, tag)? {
            batch.remove(keys::tag_of(repo, &previous, tag));
        }
        batch.insert(keys::tag(repo, tag), digest.to_string().into_bytes());
        batch.insert(keys::tag_of(repo, digest, tag), encode(&manifest.at_ms)?);
    }
    for child in &manifest.children {
        batch.insert(keys::parent(repo, child, digest), Vec::<u8>::new());
    }
    collect::root_manifest(view, repo, digest, manifest, batch)?;
    if let Some(subject) = &manifest.subject {
        batch.insert(keys::referrer(repo, subject, digest), Vec::<u8>::new());
    }
    batch.insert(keys::repo(repo), Vec::<u8>::new());
    Ok(Response::Done)
}

/// Removes a stored manifest with its tags, its references (to blobs, to
/// its children, to its subject) and its collection mark.
fn delete_manifest(
    view: &StateView,
    repo: &str,
    digest: &storage::Digest,
    record: &crate::ManifestRecord,
    batch: &mut sled::Batch,
) -> Result<(), ApplyError> {
    batch.remove(keys::manifest(repo, digest));
    for blob in &record.blobs {
        batch.remove(keys::blob_reference(blob, repo, digest));
    }
    for child in &record.children {
        batch.remove(keys::parent(repo, child, digest));
    }
    for tag in view.tags_of_manifest(repo, digest)? {
        batch.remove(keys::tag(repo, &tag));
        batch.remove(keys::tag_of(repo, digest, &tag));
    }
    if let Some(subject) = &record.subject {
        batch.remove(keys::referrer(repo, subject, digest));
    }
    batch.remove(keys::unrooted(repo, digest));
    batch.remove(keys::pulled(repo, digest));
    Ok(())
}

/// A blob a commit records: its bytes are at `generation`'s key.
struct NewBlob<'a> {
    repo: &'a str,
    digest: &'a storage::Digest,
    size: u64,
    at_ms: u64,
    generation: u64,
}

/// Records a blob (or revives one a collection hid) and links it into its
/// repository, once its source allows it.
fn commit_blob(
    view: &StateView,
    blob: &NewBlob<'_>,
    source: &BlobSource,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    let recorded = view.blob(blob.digest)?;
    match source {
        BlobSource::Upload(id) => {
            if view.upload(id)?.is_none_or(|u| u.repo != blob.repo) {
                return Ok(Response::UploadUnknown);
            }
        }
        BlobSource::Direct => {}
        BlobSource::Mount { from } => {
            if view.blob_in_repo(from, blob.digest)?.is_none() {
                return Ok(Response::BlobUnknown);
            }
        }
    }
    let generation = match &recorded {
        // Recorded: its bytes are at its own generation's key, whatever this
        // push wrote.
        Some(record) => {
            let revived = collect::revive(view, blob.digest, record, blob.at_ms, batch)?;
            collect::count_revived(view, u64::from(revived), batch)?;
            view.blob_life(blob.digest, record)?.generation
        }
        None => {
            let next = view.generation_to_write(blob.digest)?;
            if blob.generation != next {
                return Ok(Response::StaleGeneration(next));
            }
            let record = BlobRecord {
                size: blob.size,
                created_at_ms: blob.at_ms,
            };
            batch.insert(keys::blob(blob.digest), encode(&record)?);
            let life = BlobLife {
                generation: next,
                tombstoned_at_ms: None,
                linked_at_ms: blob.at_ms,
            };
            batch.insert(keys::blob_life(blob.digest), encode(&life)?);
            next
        }
    };
    if let BlobSource::Upload(id) = source {
        batch.remove(keys::upload(id));
        batch.remove(keys::upload_owner(id));
    }
    batch.insert(
        keys::link(blob.repo, blob.digest),
        generation.to_be_bytes().to_vec(),
    );
    batch.insert(keys::repo(blob.repo), Vec::<u8>::new());
    Ok(Response::Done)
}

fn apply_into(
    view: &StateView,
    index: u64,
    command: &Command,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    // `Once` and `Notify` wrap a command: the inner one is checked on recursion.
    let refused_when_read_only = command.is_client_write() || command.is_collection();
    let wrapper = matches!(command, Command::Once { .. } | Command::Notify { .. });
    if !wrapper && refused_when_read_only && view.read_only()? {
        return Ok(Response::ReadOnly);
    }
    let response = match command {
        Command::CreateUpload { id, repo, at_ms } => {
            let record = crate::UploadRecord {
                repo: repo.clone(),
                started_at_ms: *at_ms,
            };
            batch.insert(keys::upload(id), encode(&record)?);
            Response::Done
        }
        Command::CancelUpload { id } => {
            if view.upload(id)?.is_none() {
                Response::UploadUnknown
            } else {
                batch.remove(keys::upload(id));
                batch.remove(keys::upload_owner(id));
                Response::Done
            }
        }
        Command::CommitBlob {
            repo,
            digest,
            size,
            source,
            at_ms,
        } => {
            // Written before generations existed: the bytes are at the key
            // of whatever generation is current (0, as nothing was collected).
            let generation = view.generation_to_write(digest)?;
            let blob = NewBlob {
                repo,
                digest,
                size: *size,
                at_ms: *at_ms,
                generation,
            };
            commit_blob(view, &blob, source, batch)?
        }
        Command::CommitBlobAt {
            repo,
            digest,
            size,
            source,
            at_ms,
            generation,
        } => {
            let blob = NewBlob {
                repo,
                digest,
                size: *size,
                at_ms: *at_ms,
                generation: *generation,
            };
            commit_blob(view, &blob, source, batch)?
        }
        Command::PutManifest {
            repo,
            digest,
            tag,
            manifest,
        } => put_manifest(
            view,
            repo,
            digest,
            tag.as_slice(),
            manifest,
            References::Present,
            batch,
        )?,
        Command::PutManifestTags {
            repo,
            digest,
            tags,
            manifest,
        } => put_manifest(
            view,
            repo,
            digest,
            tags,
            manifest,
            References::Present,
            batch,
        )?,
        Command::CacheManifest {
            repo,
            digest,
            tag,
            manifest,
        } => put_manifest(
            view,
            repo,
            digest,
            tag.as_slice(),
            manifest,
            References::Fetched,
            batch,
        )?,
        Command::DeleteManifest { repo, digest } => match view.manifest(repo, digest)? {
            None => Response::ManifestUnknown,
            Some(record) => {
                delete_manifest(view, repo, digest, &record, batch)?;
                Response::Done
            }
        },
        Command::DeleteTag { repo, tag } => match view.tag(repo, tag)? {
            None => Response::ManifestUnknown,
            Some(target) => {
                batch.remove(keys::tag(repo, tag));
                batch.remove(keys::tag_of(repo, &target, tag));
                Response::Done
            }
        },
        Command::UnlinkBlob { repo, digest } => {
            if view.blob_in_repo(repo, digest)?.is_none() {
                Response::BlobUnknown
            } else {
                batch.remove(keys::link(repo, digest));
                Response::Done
            }
        }
        Command::Once {
            request_id,
            command,
        } => {
            if let Some((_, earlier)) = view.request(*request_id)? {
                return Ok(earlier);
            }
            let response = apply_into(view, index, command, batch)?;
            batch.insert(keys::request(*request_id), encode(&(index, &response))?);
            batch.insert(
                keys::request_by_index(index),
                request_id.to_be_bytes().to_vec(),
            );
            if let Some(expired) = index.checked_sub(DEDUP_WINDOW) {
                for (old_index, old_id) in view.requests_up_to(expired)? {
                    batch.remove(keys::request_by_index(old_index));
                    batch.remove(keys::request(old_id));
                }
            }
            response
        }
        Command::SetClusterId { id } => {
            if view.cluster_id()?.is_none() {
                batch.insert(keys::CLUSTER_ID, id.as_bytes());
            }
            Response::Done
        }
        Command::MemberJoined { node } => {
            batch.insert(keys::member(*node), Vec::<u8>::new());
            Response::Done
        }
        Command::MemberRemoved { node } => {
            batch.remove(keys::member(*node));
            Response::Done
        }
        Command::SetReadOnly { enabled } => {
            if *enabled {
                batch.insert(keys::READ_ONLY, Vec::<u8>::new());
            } else {
                batch.remove(keys::READ_ONLY);
            }
            Response::Done
        }
        Command::Recovered {
            cluster_id,
            survivor,
        } => {
            batch.insert(keys::CLUSTER_ID, cluster_id.as_bytes());
            for node in view.joined_members()? {
                if node != *survivor {
                    batch.remove(keys::member(node));
                }
            }
            Response::Done
        }
        Command::OpenUpload {
            id,
            repo,
            at_ms,
            owner,
        } => {
            let record = crate::UploadRecord {
                repo: repo.clone(),
                started_at_ms: *at_ms,
            };
            batch.insert(keys::upload(id), encode(&record)?);
            let owner = UploadOwner {
                node: *owner,
                generation: 0,
            };
            batch.insert(keys::upload_owner(id), encode(&owner)?);
            Response::Done
        }
        Command::TombstoneBlobs {
            digests,
            linked_before_ms,
            at_ms,
        } => collect::tombstone(view, digests, *linked_before_ms, *at_ms, batch)?,
        Command::CondemnBlobs {
            digests,
            tombstoned_before_ms,
        } => collect::condemn(view, digests, *tombstoned_before_ms, batch)?,
        Command::MarkUnrooted {
            manifests,
            orphans_only,
            at_ms,
        } => collect::mark_unrooted(view, manifests, *orphans_only, *at_ms, batch)?,
        Command::ExpireManifests {
            manifests,
            orphans_only,
            unrooted_before_ms,
        } => collect::expire_manifests(view, manifests, *orphans_only, *unrooted_before_ms, batch)?,
        Command::RetentionUntag { tags, at_ms } => {
            collect::retention_untag(view, tags, *at_ms, batch)?
        }
        Command::RecordPulls { pulls } => {
            for (repo, digest, at_ms) in pulls {
                let newer = view.pulled_at(repo, digest)?.is_none_or(|at| at < *at_ms);
                if newer && view.manifest(repo, digest)?.is_some() {
                    batch.insert(keys::pulled(repo, digest), encode(at_ms)?);
                }
            }
            Response::Done
        }
        Command::Notify { events, command } => {
            let response = apply_into(view, index, command, batch)?;
            if response == Response::Done && !events.is_empty() {
                let mut ordinal = view.events_recorded()?;
                for event in events {
                    ordinal += 1;
                    batch.insert(keys::event(ordinal), encode(event)?);
                }
                batch.insert(keys::EVENTS_RECORDED, encode(&ordinal)?);
            }
            response
        }
        Command::EventsDelivered {
            endpoint,
            through,
            prune_through,
        } => {
            let recorded = view.events_recorded()?;
            let through = (*through).min(recorded);
            if view.event_cursor(endpoint)?.is_none_or(|at| at < through) {
                batch.insert(keys::event_cursor(endpoint), encode(&through)?);
            }
            for ordinal in view.event_ordinals_through((*prune_through).min(recorded))? {
                batch.remove(keys::event(ordinal));
            }
            Response::Done
        }
        Command::SweptBlobs { swept } => {
            for (digest, generation) in swept {
                batch.remove(keys::sweep(digest, *generation));
            }
            Response::Done
        }
        Command::ClaimUpload { id, from, to } => {
            if view.upload(id)?.is_none() {
                Response::UploadUnknown
            } else {
                let current = view.upload_owner(id)?;
                match current {
                    Some(owner) if owner.node == *to => Response::Done,
                    Some(owner) if Some(owner.node) != *from => {
                        Response::UploadOwnedElsewhere(owner)
                    }
                    _ => {
                        let generation = current.map_or(0, |o| o.generation) + 1;
                        let claimed = UploadOwner {
                            node: *to,
                            generation,
                        };
                        batch.insert(keys::upload_owner(id), encode(&claimed)?);
                        Response::Done
                    }
                }
            }
        }
    };
    Ok(response)
}

/// Applying failed for a reason outside the command: the store is broken.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("state tree: {0}")]
    Sled(#[from] sled::Error),
    #[error("state value: {0}")]
    Codec(#[from] CodecError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ManifestRecord;
    use storage::Digest;

    fn view() -> (tempfile::TempDir, StateView) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, StateView::new(db.open_tree("state").unwrap()))
    }

    fn run(view: &StateView, command: Command) -> Response {
        let (batch, response) = apply(view, 1, &command).unwrap();
        view.tree().apply_batch(batch).unwrap();
        response
    }

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn manifest(blobs: &[&str], subject: Option<&str>) -> ManifestRecord {
        ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: b"{}".to_vec(),
            blobs: blobs.iter().map(|b| d(b)).collect(),
            children: vec![],
            subject: subject.map(d),
            artifact_type: None,
            annotations: Default::default(),
            at_ms: 1,
        }
    }

    fn commit(repo: &str, blob: &str, source: BlobSource) -> Command {
        Command::CommitBlob {
            repo: repo.into(),
            digest: d(blob),
            size: 3,
            source,
            at_ms: 1,
        }
    }

    #[test]
    fn uploads_commit_once_and_only_into_their_repository() {
        let (_dir, v) = view();
        run(
            &v,
            Command::CreateUpload {
                id: "u1".into(),
                repo: "a".into(),
                at_ms: 1,
            },
        );
        assert_eq!(
            run(&v, commit("b", "x", BlobSource::Upload("u1".into()))),
            Response::UploadUnknown
        );
        assert_eq!(
            run(&v, commit("a", "x", BlobSource::Upload("u1".into()))),
            Response::Done
        );
        assert!(v.blob_in_repo("a", &d("x")).unwrap().is_some());
        assert!(v.blob_in_repo("b", &d("x")).unwrap().is_none());
        assert_eq!(
            run(&v, commit("a", "y", BlobSource::Upload("u1".into()))),
            Response::UploadUnknown
        );
        assert_eq!(
            run(&v, Command::CancelUpload { id: "u1".into() }),
            Response::UploadUnknown
        );
    }

    #[test]
    fn mounts_need_the_blob_in_the_source_repository() {
        let (_dir, v) = view();
        assert_eq!(
            run(&v, commit("b", "x", BlobSource::Mount { from: "a".into() })),
            Response::BlobUnknown
        );
        assert!(!v.repo_exists("b").unwrap());
        run(&v, commit("a", "x", BlobSource::Direct));
        assert_eq!(
            run(&v, commit("b", "x", BlobSource::Mount { from: "a".into() })),
            Response::Done
        );
        assert!(v.blob_in_repo("b", &d("x")).unwrap().is_some());
    }

    #[test]
    fn manifests_need_their_blobs_and_deletes_cascade_to_tags_and_referrers() {
        let (_dir, v) = view();
        let put = |digest: &str, tag: Option<&str>, record: ManifestRecord| Command::PutManifest {
            repo: "r".into(),
            digest: d(digest),
            tag: tag.map(str::to_owned),
            manifest: record,
        };
        assert_eq!(
            run(&v, put("m", Some("v1"), manifest(&["cfg"], None))),
            Response::ManifestReferenceUnknown(d("cfg"))
        );
        assert!(
            v.tag("r", "v1").unwrap().is_none(),
            "a rejected command changes nothing"
        );
        run(&v, commit("r", "cfg", BlobSource::Direct));
        assert_eq!(
            run(&v, put("m", Some("v1"), manifest(&["cfg"], None))),
            Response::Done
        );
        run(&v, put("m", Some("v2"), manifest(&["cfg"], None)));
        run(&v, put("sig", None, manifest(&["cfg"], Some("m"))));
        assert_eq!(v.tags("r", None, 10).unwrap(), vec!["v1", "v2"]);
        assert_eq!(v.referrers("r", &d("m")).unwrap().len(), 1);

        assert_eq!(
            run(
                &v,
                Command::DeleteTag {
                    repo: "r".into(),
                    tag: "v1".into()
                }
            ),
            Response::Done
        );
        assert_eq!(
            run(
                &v,
                Command::DeleteTag {
                    repo: "r".into(),
                    tag: "v1".into()
                }
            ),
            Response::ManifestUnknown
        );
        assert_eq!(
            run(
                &v,
                Command::DeleteManifest {
                    repo: "r".into(),
                    digest: d("m")
                }
            ),
            Response::Done
        );
        assert!(v.tags("r", None, 10).unwrap().is_empty());
        assert_eq!(
            run(
                &v,
                Command::DeleteManifest {
                    repo: "r".into(),
                    digest: d("sig")
                }
            ),
            Response::Done
        );
        assert!(v.referrers("r", &d("m")).unwrap().is_empty());
    }

    fn run_at(view: &StateView, index: u64, command: Command) -> Response {
        let (batch, response) = apply(view, index, &command).unwrap();
        view.tree().apply_batch(batch).unwrap();
        response
    }

    #[test]
    fn a_retried_request_applies_once_and_answers_as_the_first_did() {
        let (_dir, v) = view();
        let delete = |id| Command::Once {
            request_id: id,
            command: Box::new(Command::DeleteTag {
                repo: "r".into(),
                tag: "v1".into(),
            }),
        };
        run(&v, commit("r", "cfg", BlobSource::Direct));
        run(
            &v,
            Command::PutManifest {
                repo: "r".into(),
                digest: d("m"),
                tag: Some("v1".into()),
                manifest: manifest(&["cfg"], None),
            },
        );
        assert_eq!(run_at(&v, 10, delete(7)), Response::Done);
        // The retry finds the tag gone, but answers what the first attempt did.
        assert_eq!(run_at(&v, 11, delete(7)), Response::Done);
        assert_eq!(run_at(&v, 12, delete(8)), Response::ManifestUnknown);
        assert!(v.request(7).unwrap().is_some());
        // Past the window, request ids are forgotten.
        run_at(&v, 12 + DEDUP_WINDOW, delete(9));
        assert!(v.request(7).unwrap().is_none());
        assert!(v.request(9).unwrap().is_some());
    }

    #[test]
    fn an_upload_moves_only_from_the_owner_a_claim_names() {
        let (_dir, v) = view();
        let open = Command::OpenUpload {
            id: "u".into(),
            repo: "r".into(),
            at_ms: 1,
            owner: 1,
        };
        run(&v, open);
        let claim = |from, to| Command::ClaimUpload {
            id: "u".into(),
            from: Some(from),
            to,
        };
        assert_eq!(run(&v, claim(1, 2)), Response::Done);
        let owner = v.upload_owner("u").unwrap().unwrap();
        assert_eq!((owner.node, owner.generation), (2, 1));
        // A second claimant that still thinks node 1 owns it loses.
        assert_eq!(run(&v, claim(1, 3)), Response::UploadOwnedElsewhere(owner));
        assert_eq!(
            run(&v, claim(2, 2)),
            Response::Done,
            "claiming what one owns is a no-op"
        );
        assert_eq!(run(&v, claim(2, 1)), Response::Done);
        assert_eq!(v.upload_owner("u").unwrap().unwrap().generation, 2);
        run(&v, commit("r", "x", BlobSource::Upload("u".into())));
        assert!(
            v.upload_owner("u").unwrap().is_none(),
            "a commit closes the session"
        );
        assert_eq!(run(&v, claim(1, 2)), Response::UploadUnknown);
    }

    fn event(action: &str) -> crate::EventRecord {
        crate::EventRecord {
            action: action.into(),
            media_type: None,
            repository: "r".into(),
            at_ms: 1,
            body: action.as_bytes().to_vec(),
        }
    }

    fn notify(events: &[&str], command: Command) -> Command {
        Command::Notify {
            events: events.iter().map(|a| event(a)).collect(),
            command: Box::new(command),
        }
    }

    fn actions(v: &StateView, after: u64) -> Vec<(u64, String)> {
        v.events_after(after, 100)
            .unwrap()
            .into_iter()
            .map(|(ordinal, e)| (ordinal, e.action))
            .collect()
    }

    #[test]
    fn events_are_recorded_with_the_change_they_describe_and_only_then() {
        let (_dir, v) = view();
        let put = |blobs: &[&str]| Command::PutManifest {
            repo: "r".into(),
            digest: d("m"),
            tag: Some("v1".into()),
            manifest: manifest(blobs, None),
        };
        assert_eq!(
            run(&v, notify(&["push"], put(&["missing"]))),
            Response::ManifestReferenceUnknown(d("missing"))
        );
        assert_eq!(
            v.events_recorded().unwrap(),
            0,
            "a refused change has no event"
        );
        run(
            &v,
            notify(&["blob"], commit("r", "cfg", BlobSource::Direct)),
        );
        assert_eq!(
            run(&v, notify(&["push", "tag"], put(&["cfg"]))),
            Response::Done
        );
        assert_eq!(
            actions(&v, 0),
            vec![(1, "blob".into()), (2, "push".into()), (3, "tag".into())]
        );
        assert_eq!(actions(&v, 2), vec![(3, "tag".into())]);

        run(&v, Command::SetReadOnly { enabled: true });
        let refused = run(&v, notify(&["blob"], commit("r", "x", BlobSource::Direct)));
        assert_eq!(
            refused,
            Response::ReadOnly,
            "the wrapped write is still refused"
        );
        assert_eq!(v.events_recorded().unwrap(), 3);
    }

    #[test]
    fn delivered_events_move_the_cursor_forward_and_prune_what_all_received() {
        let (_dir, v) = view();
        for _ in 0..4 {
            run(&v, notify(&["push"], commit("r", "x", BlobSource::Direct)));
        }
        let delivered = |endpoint: &str, through, prune_through| Command::EventsDelivered {
            endpoint: endpoint.into(),
            through,
            prune_through,
        };
        run(&v, delivered("a", 3, 0));
        run(&v, delivered("b", 1, 1));
        assert_eq!(v.event_cursor("a").unwrap(), Some(3));
        assert_eq!(
            actions(&v, 0).first().map(|e| e.0),
            Some(2),
            "event 1 pruned"
        );
        run(&v, delivered("a", 2, 1));
        assert_eq!(
            v.event_cursor("a").unwrap(),
            Some(3),
            "a cursor never moves back"
        );
        run(&v, delivered("b", 9, 99));
        assert_eq!(
            v.event_cursor("b").unwrap(),
            Some(4),
            "not past what was recorded"
        );
        assert!(actions(&v, 0).is_empty());
        assert_eq!(v.events_recorded().unwrap(), 4, "ordinals keep counting");
        run(&v, notify(&["push"], commit("r", "y", BlobSource::Direct)));
        assert_eq!(actions(&v, 4), vec![(5, "push".into())]);
    }

    #[test]
    fn the_first_cluster_name_stays_and_members_are_recorded() {
        let (_dir, v) = view();
        run(&v, Command::SetClusterId { id: "a".into() });
        run(&v, Command::SetClusterId { id: "b".into() });
        assert_eq!(v.cluster_id().unwrap().as_deref(), Some("a"));
        run(&v, Command::MemberJoined { node: 3 });
        run(&v, Command::MemberJoined { node: 1 });
        assert_eq!(v.joined_members().unwrap(), vec![1, 3]);
        run(&v, Command::MemberRemoved { node: 3 });
        assert!(!v.member_joined(3).unwrap());
    }

    #[test]
    fn read_only_mode_refuses_client_writes_from_its_entry_on() {
        let (_dir, v) = view();
        run(&v, commit("r", "x", BlobSource::Direct));
        run(&v, Command::SetReadOnly { enabled: true });
        assert!(v.read_only().unwrap());
        let refused = run(&v, commit("r", "y", BlobSource::Direct));
        assert_eq!(refused, Response::ReadOnly);
        assert!(v.blob(&d("y")).unwrap().is_none(), "nothing written");
        let unlink = Command::UnlinkBlob {
            repo: "r".into(),
            digest: d("x"),
        };
        let once = Command::Once {
            request_id: 7,
            command: Box::new(unlink.clone()),
        };
        assert_eq!(run(&v, once), Response::ReadOnly);
        assert!(v.blob_in_repo("r", &d("x")).unwrap().is_some());
        run(&v, Command::MemberJoined { node: 2 });
        assert!(v.member_joined(2).unwrap(), "cluster bookkeeping goes on");
        run(&v, Command::SetReadOnly { enabled: false });
        assert_eq!(run(&v, unlink), Response::Done);
    }

    #[test]
    fn a_recovery_renames_the_cluster_and_keeps_only_the_survivor_joined() {
        let (_dir, v) = view();
        run(&v, Command::SetClusterId { id: "old".into() });
        for node in [1, 2, 3] {
            run(&v, Command::MemberJoined { node });
        }
        run(
            &v,
            Command::Recovered {
                cluster_id: "new".into(),
                survivor: 2,
            },
        );
        assert_eq!(v.cluster_id().unwrap().as_deref(), Some("new"));
        assert_eq!(v.joined_members().unwrap(), vec![2]);
    }

    fn commit_at(repo: &str, blob: &str, generation: u64, at_ms: u64) -> Command {
        Command::CommitBlobAt {
            repo: repo.into(),
            digest: d(blob),
            size: 3,
            source: BlobSource::Direct,
            at_ms,
            generation,
        }
    }

    fn tombstone(blobs: &[&str], linked_before_ms: u64, at_ms: u64) -> Command {
        Command::TombstoneBlobs {
            digests: blobs.iter().map(|b| d(b)).collect(),
            linked_before_ms,
            at_ms,
        }
    }

    fn condemn(blobs: &[&str], tombstoned_before_ms: u64) -> Command {
        Command::CondemnBlobs {
            digests: blobs.iter().map(|b| d(b)).collect(),
            tombstoned_before_ms,
        }
    }

    fn collected(blobs: &[&str]) -> Response {
        Response::Collected(blobs.iter().map(|b| d(b)).collect())
    }

    #[test]
    fn a_collection_hides_then_condemns_only_unreferenced_old_blobs() {
        let (_dir, v) = view();
        run(&v, commit_at("r", "layer", 0, 10));
        run(&v, commit_at("r", "loose", 0, 10));
        run(&v, commit_at("r", "young", 0, 500));
        let put = Command::PutManifest {
            repo: "r".into(),
            digest: d("m"),
            tag: Some("v1".into()),
            manifest: manifest(&["layer"], None),
        };
        assert_eq!(run(&v, put), Response::Done);
        assert!(v.blob_referenced(&d("layer")).unwrap());
        assert_eq!(
            run(
                &v,
                tombstone(&["layer", "loose", "young", "absent"], 100, 1000)
            ),
            collected(&["loose"]),
            "referenced, young and absent blobs stay"
        );
        assert!(
            v.servable_blob("r", &d("loose")).unwrap().is_none(),
            "hidden"
        );
        assert!(v.blob_in_repo("r", &d("loose")).unwrap().is_some(), "kept");
        assert_eq!(
            run(&v, condemn(&["loose", "layer"], 1000)),
            collected(&[]),
            "the grace has not passed"
        );
        assert_eq!(
            run(&v, condemn(&["loose", "layer"], 1001)),
            collected(&["loose"])
        );
        assert!(v.blob(&d("loose")).unwrap().is_none());
        assert!(v.blob_in_repo("r", &d("loose")).unwrap().is_none());
        assert_eq!(v.pending_sweeps().unwrap(), vec![(d("loose"), 0, 3)]);
        assert_eq!(v.generation_to_write(&d("loose")).unwrap(), 1);
        run(
            &v,
            Command::SweptBlobs {
                swept: vec![(d("loose"), 0)],
            },
        );
        assert!(v.pending_sweeps().unwrap().is_empty());
    }

    #[test]
    fn a_cached_manifest_needs_no_blobs_and_keeps_those_fetched_later() {
        let (_dir, v) = view();
        let cache = |tag: Option<&str>, at_ms| Command::CacheManifest {
            repo: "hub/lib/x".into(),
            digest: d("m"),
            tag: tag.map(str::to_owned),
            manifest: ManifestRecord {
                at_ms,
                ..manifest(&["config", "layer"], None)
            },
        };
        let push = Command::PutManifest {
            repo: "hub/lib/x".into(),
            digest: d("m"),
            tag: None,
            manifest: manifest(&["config", "layer"], None),
        };
        assert_eq!(
            run(&v, push),
            Response::ManifestReferenceUnknown(d("config")),
            "a push still needs its blobs"
        );
        assert_eq!(run(&v, cache(Some("v1"), 5)), Response::Done);
        assert_eq!(v.tag("hub/lib/x", "v1").unwrap(), Some(d("m")));
        assert_eq!(
            v.tag_pushed_at("hub/lib/x", &d("m"), "v1").unwrap(),
            Some(5)
        );
        assert!(v.blob_referenced(&d("layer")).unwrap(), "before it exists");
        run(&v, commit_at("hub/lib/x", "layer", 0, 10));
        assert_eq!(
            run(&v, tombstone(&["layer"], 1000, 2000)),
            collected(&[]),
            "a blob the cache fetched after its manifest stays"
        );
        assert_eq!(run(&v, cache(Some("v1"), 50)), Response::Done);
        assert_eq!(
            v.tag_pushed_at("hub/lib/x", &d("m"), "v1").unwrap(),
            Some(50),
            "storing it again moves the tag's time on"
        );
        run(&v, Command::SetReadOnly { enabled: true });
        assert_eq!(run(&v, cache(None, 60)), Response::ReadOnly);
    }

    #[test]
    fn a_push_mount_or_manifest_revives_a_hidden_blob() {
        let (_dir, v) = view();
        for blob in ["pushed", "mounted", "referenced"] {
            run(&v, commit_at("a", blob, 0, 1));
        }
        run(&v, tombstone(&["pushed", "mounted", "referenced"], 10, 20));
        assert_eq!(run(&v, commit_at("a", "pushed", 0, 30)), Response::Done);
        let mount = Command::CommitBlobAt {
            repo: "b".into(),
            digest: d("mounted"),
            size: 3,
            source: BlobSource::Mount { from: "a".into() },
            at_ms: 30,
            generation: 0,
        };
        assert_eq!(run(&v, mount), Response::Done);
        let put = Command::PutManifest {
            repo: "a".into(),
            digest: d("m"),
            tag: None,
            manifest: ManifestRecord {
                at_ms: 30,
                ..manifest(&["referenced"], None)
            },
        };
        assert_eq!(run(&v, put), Response::Done);
        assert!(v.servable_blob("a", &d("pushed")).unwrap().is_some());
        assert!(v.servable_blob("b", &d("mounted")).unwrap().is_some());
        assert!(v.servable_blob("a", &d("referenced")).unwrap().is_some());
        assert_eq!(v.revived().unwrap(), 3, "each revival is counted");
        assert_eq!(
            run(&v, condemn(&["pushed", "mounted", "referenced"], 100)),
            collected(&[]),
            "revived blobs are not condemned"
        );
        // The revival counts as a push: the delay starts again.
        assert_eq!(
            run(&v, tombstone(&["pushed", "mounted"], 30, 40)),
            collected(&[])
        );
    }

    #[test]
    fn a_condemned_generation_is_never_recorded_again() {
        let (_dir, v) = view();
        run(&v, commit_at("a", "x", 0, 1));
        run(&v, commit_at("b", "x", 0, 1));
        run(&v, tombstone(&["x"], 10, 10));
        run(&v, condemn(&["x"], 20));
        assert_eq!(
            run(&v, commit_at("a", "x", 0, 30)),
            Response::StaleGeneration(1),
            "bytes written to the condemned key are refused"
        );
        assert!(v.blob(&d("x")).unwrap().is_none(), "nothing recorded");
        assert_eq!(run(&v, commit_at("a", "x", 1, 30)), Response::Done);
        assert_eq!(
            v.servable_blob("a", &d("x")).unwrap().map(|b| b.generation),
            Some(1)
        );
        assert!(
            v.blob_in_repo("b", &d("x")).unwrap().is_none(),
            "a link to the condemned generation does not come back"
        );
        let mount = Command::CommitBlobAt {
            repo: "b".into(),
            digest: d("x"),
            size: 3,
            source: BlobSource::Mount { from: "a".into() },
            at_ms: 31,
            generation: 0,
        };
        assert_eq!(run(&v, mount), Response::Done);
        assert_eq!(
            v.servable_blob("b", &d("x")).unwrap().map(|b| b.generation),
            Some(1),
            "a mount links the recorded generation"
        );
    }

    #[test]
    fn deleting_a_manifest_drops_its_references_and_collections_pause_when_read_only() {
        let (_dir, v) = view();
        run(&v, commit_at("r", "layer", 0, 1));
        let put = Command::PutManifest {
            repo: "r".into(),
            digest: d("m"),
            tag: None,
            manifest: manifest(&["layer"], None),
        };
        run(&v, put);
        run(
            &v,
            Command::DeleteManifest {
                repo: "r".into(),
                digest: d("m"),
            },
        );
        assert!(!v.blob_referenced(&d("layer")).unwrap());
        run(&v, Command::SetReadOnly { enabled: true });
        assert_eq!(run(&v, tombstone(&["layer"], 10, 10)), Response::ReadOnly);
        run(&v, Command::SetReadOnly { enabled: false });
        assert_eq!(
            run(&v, tombstone(&["layer"], 10, 10)),
            collected(&["layer"])
        );
    }

    #[test]
    fn unrooted_manifests_are_marked_then_expired_unless_rooted_meanwhile() {
        let (_dir, v) = view();
        run(&v, commit_at("r", "layer", 0, 1));
        let put = |digest: &str, tag: Option<&str>, record: ManifestRecord| Command::PutManifest {
            repo: "r".into(),
            digest: d(digest),
            tag: tag.map(str::to_owned),
            manifest: record,
        };
        run(&v, put("tagged", Some("v1"), manifest(&["layer"], None)));
        run(&v, put("loose", None, manifest(&["layer"], None)));
        run(&v, put("retagged", None, manifest(&["layer"], None)));
        run(
            &v,
            put("signature", None, manifest(&["layer"], Some("gone"))),
        );
        let child = ManifestRecord {
            children: vec![d("loose")],
            ..manifest(&[], None)
        };
        let ids = |names: &[&str]| -> Vec<(String, Digest)> {
            names.iter().map(|n| ("r".to_owned(), d(n))).collect()
        };
        let all = ids(&["tagged", "loose", "retagged", "signature"]);
        let mark = |orphans_only| Command::MarkUnrooted {
            manifests: all.clone(),
            orphans_only,
            at_ms: 10,
        };
        let expire = |orphans_only, before| Command::ExpireManifests {
            manifests: all.clone(),
            orphans_only,
            unrooted_before_ms: before,
        };
        assert_eq!(
            run(&v, mark(true)),
            Response::CollectedManifests(ids(&["signature"])),
            "without untagged, only the orphan referrer"
        );
        assert_eq!(
            run(&v, mark(false)),
            Response::CollectedManifests(ids(&["loose", "retagged"])),
            "the tagged one stays unmarked; the signature was marked already"
        );
        run(&v, put("retagged", Some("v2"), manifest(&["layer"], None)));
        run(&v, put("index", Some("multi"), child));
        assert_eq!(
            run(&v, expire(false, 10)),
            Response::CollectedManifests(vec![]),
            "the delay has not passed"
        );
        assert_eq!(
            run(&v, expire(false, 11)),
            Response::CollectedManifests(ids(&["signature"])),
            "a tag and an index rooted the others"
        );
        assert!(v.manifest("r", &d("signature")).unwrap().is_none());
        assert_eq!(
            v.unrooted_mark("r", &d("retagged")).unwrap(),
            None,
            "the mark went"
        );
        run(
            &v,
            Command::DeleteTag {
                repo: "r".into(),
                tag: "v2".into(),
            },
        );
        assert_eq!(
            run(&v, expire(false, 100)),
            Response::CollectedManifests(vec![]),
            "untagged again, but not marked since"
        );
        assert!(v.blob_referenced(&d("layer")).unwrap());
    }

    #[test]
    fn retention_removes_only_tags_unchanged_since_its_plan() {
        let (_dir, v) = view();
        run(&v, commit_at("r", "layer", 0, 1));
        let put = |tag: &str, at_ms| Command::PutManifest {
            repo: "r".into(),
            digest: d("m"),
            tag: Some(tag.into()),
            manifest: ManifestRecord {
                at_ms,
                ..manifest(&["layer"], None)
            },
        };
        run(&v, put("v1", 1));
        run(&v, put("v2", 2));
        let planned = |tag: &str, pushed_at_ms| crate::PlannedUntag {
            repo: "r".into(),
            tag: tag.into(),
            manifest: d("m"),
            pushed_at_ms,
        };
        run(&v, put("v1", 5));
        let untag = Command::RetentionUntag {
            tags: vec![planned("v1", 1), planned("v2", 2)],
            at_ms: 10,
        };
        assert_eq!(
            run(&v, untag),
            Response::Untagged(vec![planned("v2", 2)]),
            "v1 was pushed again after the plan"
        );
        assert_eq!(
            v.unrooted_mark("r", &d("m")).unwrap(),
            None,
            "v1 still roots it"
        );
        let untag = Command::RetentionUntag {
            tags: vec![planned("v1", 5)],
            at_ms: 10,
        };
        assert_eq!(run(&v, untag), Response::Untagged(vec![planned("v1", 5)]));
        let mark = v.unrooted_mark("r", &d("m")).unwrap().unwrap();
        assert!(mark.by_retention && mark.at_ms == 10);
        let expire = Command::ExpireManifests {
            manifests: vec![("r".into(), d("m"))],
            orphans_only: true,
            unrooted_before_ms: 11,
        };
        assert_eq!(
            run(&v, expire),
            Response::CollectedManifests(vec![("r".into(), d("m"))]),
            "what retention untagged goes without `untagged`"
        );
    }

    #[test]
    fn an_upgrade_indexes_the_references_of_manifests_stored_before() {
        let (_dir, v) = view();
        run(&v, commit_at("r/x", "layer", 0, 1));
        run(
            &v,
            Command::PutManifest {
                repo: "r/x".into(),
                digest: d("m"),
                tag: None,
                manifest: manifest(&["layer"], None),
            },
        );
        let reference = keys::blob_reference(&d("layer"), "r/x", &d("m"));
        v.tree().remove(&reference).unwrap();
        v.tree().remove(keys::LAYOUT).unwrap();
        assert!(!v.blob_referenced(&d("layer")).unwrap());
        assert!(upgrade(v.tree()).unwrap());
        assert!(v.blob_referenced(&d("layer")).unwrap());
        assert!(
            !upgrade(v.tree()).unwrap(),
            "an upgraded state stays as it is"
        );
    }

    #[test]
    fn pagination_is_lexical_and_resumes_after_last() {
        let (_dir, v) = view();
        for repo in ["b", "a/x", "a", "c"] {
            run(&v, commit(repo, "x", BlobSource::Direct));
        }
        assert_eq!(v.repos(None, 10).unwrap(), vec!["a", "a/x", "b", "c"]);
        assert_eq!(v.repos(Some("a/x"), 1).unwrap(), vec!["b"]);
    }

    /// Replays one pseudo-random command sequence into two stores and
    /// compares their snapshot records (invariant 5: same log, same state).
    #[test]
    fn the_same_log_gives_the_same_state() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut log = Vec::new();
        for i in 0..2000 {
            let repo = format!("repo{}", next(5));
            let blob = format!("blob{}", next(20));
            let command = match next(7) {
                0 => Command::CreateUpload {
                    id: format!("u{}", next(30)),
                    repo,
                    at_ms: i,
                },
                1 => commit(&repo, &blob, BlobSource::Upload(format!("u{}", next(30)))),
                2 => commit(
                    &repo,
                    &blob,
                    BlobSource::Mount {
                        from: format!("repo{}", next(5)),
                    },
                ),
                3 => commit(&repo, &blob, BlobSource::Direct),
                4 => Command::PutManifest {
                    repo,
                    digest: d(&format!("m{}", next(10))),
                    tag: Some(format!("t{}", next(5))),
                    manifest: manifest(&[&blob], Some(&format!("m{}", next(10)))),
                },
                5 => Command::DeleteManifest {
                    repo,
                    digest: d(&format!("m{}", next(10))),
                },
                _ => Command::UnlinkBlob {
                    repo,
                    digest: d(&blob),
                },
            };
            log.push(command);
        }
        let (_a, first) = view();
        let (_b, second) = view();
        let answers_first: Vec<_> = log.iter().map(|c| run(&first, c.clone())).collect();
        let answers_second: Vec<_> = log.iter().map(|c| run(&second, c.clone())).collect();
        assert_eq!(answers_first, answers_second);
        assert!(answers_first.contains(&Response::Done));
        assert!(
            answers_first.iter().any(|r| *r != Response::Done),
            "the log exercises rejections"
        );
        let records =
            |view: &StateView| -> Vec<_> { view.records().map(|record| record.unwrap()).collect() };
        assert_eq!(
            first.fingerprint().unwrap(),
            second.fingerprint().unwrap(),
            "two replays of one log hash differently"
        );
        let (first, second) = (records(&first), records(&second));
        assert!(!first.is_empty());
        assert!(first == second, "two replays of one log diverged");
    }
}
