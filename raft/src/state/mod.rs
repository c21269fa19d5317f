//! The data model and the deterministic application of commands.
//!
//! `apply` is a pure function of the current state and the command: no clock,
//! no randomness, no I/O besides reading the state tree. It returns the
//! changes as one `sled::Batch`, which the state machine writes atomically
//! together with `last_applied`.

pub mod keys;
mod view;

pub use view::{BlobRecord, Referrer, StateView};

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

/// Stores a manifest, tagged with each of `tags`, once every blob and
/// child it references is in the repository.
fn put_manifest(
    view: &StateView,
    repo: &str,
    digest: &storage::Digest,
    tags: &[String],
    manifest: &crate::ManifestRecord,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    for blob in &manifest.blobs {
        if view.blob_in_repo(repo, blob)?.is_none() {
            return Ok(Response::ManifestReferenceUnknown(blob.clone()));
        }
    }
    for child in &manifest.children {
        if child != digest && view.manifest(repo, child)?.is_none() {
            return Ok(Response::ManifestReferenceUnknown(child.clone()));
        }
    }
    batch.insert(keys::manifest(repo, digest), encode(manifest)?);
    for tag in tags {
        batch.insert(keys::tag(repo, tag), digest.to_string().into_bytes());
    }
    if let Some(subject) = &manifest.subject {
        batch.insert(keys::referrer(repo, subject, digest), Vec::<u8>::new());
    }
    batch.insert(keys::repo(repo), Vec::<u8>::new());
    Ok(Response::Done)
}

fn apply_into(
    view: &StateView,
    index: u64,
    command: &Command,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    // `Once` wraps the command: its inner command is checked on recursion.
    if !matches!(command, Command::Once { .. }) && command.is_client_write() && view.read_only()? {
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
            let allowed = match source {
                BlobSource::Upload(id) => {
                    let open = view.upload(id)?.is_some_and(|u| &u.repo == repo);
                    if open {
                        batch.remove(keys::upload(id));
                        batch.remove(keys::upload_owner(id));
                        Ok(())
                    } else {
                        Err(Response::UploadUnknown)
                    }
                }
                BlobSource::Direct => Ok(()),
                BlobSource::Mount { from } => {
                    if view.blob_in_repo(from, digest)?.is_some() {
                        Ok(())
                    } else {
                        Err(Response::BlobUnknown)
                    }
                }
            };
            match allowed {
                Err(rejection) => rejection,
                Ok(()) => {
                    if view.blob(digest)?.is_none() {
                        let record = BlobRecord {
                            size: *size,
                            created_at_ms: *at_ms,
                        };
                        batch.insert(keys::blob(digest), encode(&record)?);
                    }
                    batch.insert(keys::link(repo, digest), Vec::<u8>::new());
                    batch.insert(keys::repo(repo), Vec::<u8>::new());
                    Response::Done
                }
            }
        }
        Command::PutManifest {
            repo,
            digest,
            tag,
            manifest,
        } => put_manifest(view, repo, digest, tag.as_slice(), manifest, batch)?,
        Command::PutManifestTags {
            repo,
            digest,
            tags,
            manifest,
        } => put_manifest(view, repo, digest, tags, manifest, batch)?,
        Command::DeleteManifest { repo, digest } => match view.manifest(repo, digest)? {
            None => Response::ManifestUnknown,
            Some(record) => {
                batch.remove(keys::manifest(repo, digest));
                for (tag, target) in view.tags_with_targets(repo)? {
                    if &target == digest {
                        batch.remove(keys::tag(repo, &tag));
                    }
                }
                if let Some(subject) = &record.subject {
                    batch.remove(keys::referrer(repo, subject, digest));
                }
                Response::Done
            }
        },
        Command::DeleteTag { repo, tag } => {
            if view.tag(repo, tag)?.is_none() {
                Response::ManifestUnknown
            } else {
                batch.remove(keys::tag(repo, tag));
                Response::Done
            }
        }
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
