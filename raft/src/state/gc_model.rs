//! A model-based property test of garbage collection in the state machine
//! alone. Random interleavings of pushes (whose generation is read before
//! the commit applies, as a node does), mounts, manifest pushes, tag and
//! manifest deletes and blob unlinks run against collection commands planned
//! from older states (lagging proposers) and a sweeper whose deletes a fake
//! store delays, reorders and repeats. After every step:
//!
//! * every blob a stored manifest references is recorded and not hidden;
//! * every recorded blob's bytes are in the store at its generation's key
//!   and hash to its digest (so whatever a manifest references is whole);
//! * no recorded generation was ever condemned, and generations only grow
//!   (keys are never reused);
//! * the store only ever receives deletes of condemned keys;
//! * planning changes nothing.
//!
//! * a manifest a collection deletes is rooted by nothing (no tag, no rooted
//!   index listing it at any depth, no rooted subject).
//!
//! At quiescence (every decision applied, every delete done, the graces
//! past) exactly the referenced blobs are stored, and no collectable
//! manifest is left.

use super::{apply, keys, StateView};
use crate::command::{BlobSource, Command, ManifestRecord, Response};
use crate::gc::{self, Graces, Plan};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use storage::{Digest, ObjectKey};

const REPOS: [&str; 2] = ["a", "b"];
const CONTENTS: usize = 4;
const GRACES: Graces = Graces {
    delay_ms: 8,
    grace_ms: 5,
};

#[derive(Debug, Clone)]
enum Step {
    /// A node reads the generation to write and places the bytes.
    StartPush {
        repo: usize,
        blob: usize,
    },
    /// The commit of an earlier push reaches the log.
    FinishPush {
        push: usize,
    },
    Mount {
        to: usize,
        from: usize,
        blob: usize,
    },
    /// A manifest of some blobs, tagged or not, maybe a referrer of a
    /// manifest pushed before (which may be in another repository).
    PutManifest {
        repo: usize,
        blobs: Vec<usize>,
        tag: Option<usize>,
        subject: Option<usize>,
    },
    /// An index listing manifests pushed before, tagged or not.
    PutIndex {
        repo: usize,
        children: Vec<usize>,
        tag: Option<usize>,
    },
    DeleteManifest {
        repo: usize,
        manifest: usize,
    },
    DeleteTag {
        repo: usize,
        tag: usize,
    },
    Unlink {
        repo: usize,
        blob: usize,
    },
    /// A collector plans from the state as it is now.
    Plan,
    /// A retention rule keeping one tag name in every repository plans.
    Retain {
        keep: usize,
    },
    /// A planned decision (maybe long ago) reaches the log.
    Decide {
        decision: usize,
    },
    /// The sweeper reads the pending sweeps, queues their deletes, and its
    /// `SweptBlobs` waits as a decision.
    Sweep,
    /// The store carries out one queued delete, maybe keeping a copy that
    /// lands again later.
    Delete {
        delete: usize,
        repeat: bool,
    },
    Tick {
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let repo = 0..REPOS.len();
    let blob = 0..CONTENTS;
    prop_oneof![
        4 => (repo.clone(), blob.clone()).prop_map(|(repo, blob)| Step::StartPush { repo, blob }),
        4 => (0..8usize).prop_map(|push| Step::FinishPush { push }),
        1 => (repo.clone(), repo.clone(), blob.clone())
            .prop_map(|(to, from, blob)| Step::Mount { to, from, blob }),
        3 => (
            repo.clone(),
            prop::collection::vec(blob.clone(), 1..3),
            prop::option::of(0..3usize),
            prop::option::of(0..6usize),
        )
            .prop_map(|(repo, blobs, tag, subject)| Step::PutManifest { repo, blobs, tag, subject }),
        1 => (repo.clone(), prop::collection::vec(0..6usize, 1..3), prop::option::of(0..3usize))
            .prop_map(|(repo, children, tag)| Step::PutIndex { repo, children, tag }),
        1 => (repo.clone(), 0..6usize).prop_map(|(repo, manifest)| Step::DeleteManifest { repo, manifest }),
        1 => (repo.clone(), 0..3usize).prop_map(|(repo, tag)| Step::DeleteTag { repo, tag }),
        1 => (repo, blob).prop_map(|(repo, blob)| Step::Unlink { repo, blob }),
        3 => Just(Step::Plan),
        1 => (0..3usize).prop_map(|keep| Step::Retain { keep }),
        5 => (0..8usize).prop_map(|decision| Step::Decide { decision }),
        2 => Just(Step::Sweep),
        3 => (0..8usize, any::<bool>()).prop_map(|(delete, repeat)| Step::Delete { delete, repeat }),
        3 => (1..15u64).prop_map(|ms| Step::Tick { ms }),
    ]
}

fn content(blob: usize) -> Vec<u8> {
    format!("blob content {blob}").into_bytes()
}

fn digest_of(blob: usize) -> Digest {
    Digest::sha256_of(&content(blob))
}

struct InFlightPush {
    repo: String,
    blob: usize,
    generation: u64,
    /// The key held the bytes already, so the staged copy is still there.
    staged_kept: bool,
}

struct Model {
    _dir: tempfile::TempDir,
    view: StateView,
    index: u64,
    now: u64,
    store: HashMap<ObjectKey, Vec<u8>>,
    pushes: Vec<InFlightPush>,
    decisions: Vec<Command>,
    deletes: Vec<ObjectKey>,
    /// Every (digest, generation) the log ever condemned.
    condemned: BTreeSet<(Digest, u64)>,
    highest_generation: BTreeMap<Digest, u64>,
    /// Manifests pushed per repository, to pick deletes from.
    manifests: Vec<(String, Digest)>,
    /// `storage.gc.untagged` of this run's collections.
    untagged: bool,
}

impl Model {
    fn new(untagged: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        Model {
            _dir: dir,
            view: StateView::new(db.open_tree("state").unwrap()),
            index: 0,
            now: 100,
            store: HashMap::new(),
            pushes: Vec::new(),
            decisions: Vec::new(),
            deletes: Vec::new(),
            condemned: BTreeSet::new(),
            highest_generation: BTreeMap::new(),
            manifests: Vec::new(),
            untagged,
        }
    }

    fn run(&mut self, command: Command) -> Response {
        let rooted = matches!(command, Command::ExpireManifests { .. }).then(|| self.rooted());
        self.index += 1;
        let (batch, response) = apply(&self.view, self.index, &command).unwrap();
        self.view.tree().apply_batch(batch).unwrap();
        for (digest, generation, _) in self.view.pending_sweeps().unwrap() {
            self.condemned.insert((digest, generation));
        }
        if let (Some(rooted), Response::CollectedManifests(deleted)) = (rooted, &response) {
            for manifest in deleted {
                assert!(
                    !rooted.contains(manifest),
                    "a rooted manifest {manifest:?} was collected"
                );
            }
        }
        response
    }

    /// The manifests something keeps: tagged ones, what rooted indexes list
    /// (at any depth), referrers of rooted subjects.
    fn rooted(&self) -> BTreeSet<(String, Digest)> {
        let stored: Vec<_> = self.view.manifests().map(|m| m.unwrap()).collect();
        let stored_ids: BTreeSet<(String, Digest)> = stored
            .iter()
            .map(|(repo, digest, _)| (repo.clone(), digest.clone()))
            .collect();
        let mut rooted: BTreeSet<(String, Digest)> = stored
            .iter()
            .filter(|(repo, digest, _)| self.view.manifest_tagged(repo, digest).unwrap())
            .map(|(repo, digest, _)| (repo.clone(), digest.clone()))
            .collect();
        loop {
            let before = rooted.len();
            for (repo, digest, record) in &stored {
                let id = (repo.clone(), digest.clone());
                if rooted.contains(&id) {
                    // An index may list a manifest deleted since: only
                    // stored manifests are rooted.
                    for child in &record.children {
                        let child = (repo.clone(), child.clone());
                        if stored_ids.contains(&child) {
                            rooted.insert(child);
                        }
                    }
                }
                if let Some(subject) = &record.subject {
                    if rooted.contains(&(repo.clone(), subject.clone())) {
                        rooted.insert(id);
                    }
                }
            }
            if rooted.len() == before {
                return rooted;
            }
        }
    }

    /// An empty manifest record of `media_type`, pushed now.
    fn record(&self, media_type: &str) -> ManifestRecord {
        ManifestRecord {
            media_type: media_type.into(),
            bytes: b"{}".to_vec(),
            blobs: vec![],
            children: vec![],
            subject: None,
            artifact_type: None,
            annotations: Default::default(),
            at_ms: self.now,
        }
    }

    /// Pushes `record` as `digest` into repository `repo`, tagged `t<tag>`.
    fn put(&mut self, repo: usize, digest: Digest, record: ManifestRecord, tag: Option<usize>) {
        let answer = self.run(Command::PutManifest {
            repo: REPOS[repo].to_owned(),
            digest: digest.clone(),
            tag: tag.map(|t| format!("t{t}")),
            manifest: record,
        });
        if answer == Response::Done {
            self.manifests.push((REPOS[repo].to_owned(), digest));
        }
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::StartPush { repo, blob } => {
                let digest = digest_of(blob);
                let generation = self.view.generation_to_write(&digest).unwrap();
                let key = ObjectKey::blob_generation(&digest, generation);
                let staged_kept = self.store.contains_key(&key);
                if !staged_kept {
                    self.store.insert(key, content(blob));
                }
                self.pushes.push(InFlightPush {
                    repo: REPOS[repo].to_owned(),
                    blob,
                    generation,
                    staged_kept,
                });
            }
            Step::FinishPush { push } => {
                if self.pushes.is_empty() {
                    return;
                }
                let mut push = self.pushes.remove(push % self.pushes.len());
                let digest = digest_of(push.blob);
                loop {
                    let answer = self.run(Command::CommitBlobAt {
                        repo: push.repo.clone(),
                        digest: digest.clone(),
                        size: content(push.blob).len() as u64,
                        source: BlobSource::Direct,
                        at_ms: self.now,
                        generation: push.generation,
                    });
                    match answer {
                        Response::Done => break,
                        // As `api::upload::commit`: a kept staged copy is
                        // placed again at the next generation; a moved one
                        // is lost with its generation and the push fails.
                        Response::StaleGeneration(next) if push.staged_kept => {
                            let key = ObjectKey::blob_generation(&digest, next);
                            push.staged_kept = self.store.contains_key(&key);
                            if !push.staged_kept {
                                self.store.insert(key, content(push.blob));
                            }
                            push.generation = next;
                        }
                        Response::StaleGeneration(_) => break,
                        other => panic!("commit answered {other:?}"),
                    }
                }
            }
            Step::Mount { to, from, blob } => {
                let digest = digest_of(blob);
                let generation = self.view.generation_to_write(&digest).unwrap();
                self.run(Command::CommitBlobAt {
                    repo: REPOS[to].to_owned(),
                    digest,
                    size: content(blob).len() as u64,
                    source: BlobSource::Mount {
                        from: REPOS[from].to_owned(),
                    },
                    at_ms: self.now,
                    generation,
                });
            }
            Step::PutManifest {
                repo,
                blobs,
                tag,
                subject,
            } => {
                let blobs: Vec<Digest> = blobs.into_iter().map(digest_of).collect();
                let subject = subject
                    .filter(|_| !self.manifests.is_empty())
                    .map(|s| self.manifests[s % self.manifests.len()].1.clone());
                let digest = Digest::sha256_of(format!("{blobs:?}{subject:?}").as_bytes());
                let record = ManifestRecord {
                    blobs,
                    subject,
                    ..self.record("application/vnd.oci.image.manifest.v1+json")
                };
                self.put(repo, digest, record, tag);
            }
            Step::PutIndex {
                repo,
                children,
                tag,
            } => {
                let mine: Vec<_> = self
                    .manifests
                    .iter()
                    .filter(|(r, _)| r == REPOS[repo])
                    .map(|(_, d)| d.clone())
                    .collect();
                if mine.is_empty() {
                    return;
                }
                let children: Vec<Digest> = children
                    .iter()
                    .map(|c| mine[c % mine.len()].clone())
                    .collect();
                let digest = Digest::sha256_of(format!("index {children:?}").as_bytes());
                let record = ManifestRecord {
                    children,
                    ..self.record("application/vnd.oci.image.index.v1+json")
                };
                self.put(repo, digest, record, tag);
            }
            Step::DeleteManifest { repo, manifest } => {
                let mine: Vec<_> = self
                    .manifests
                    .iter()
                    .filter(|(r, _)| r == REPOS[repo])
                    .collect();
                if let Some((repo, digest)) = mine.get(manifest % mine.len().max(1)) {
                    let command = Command::DeleteManifest {
                        repo: repo.clone(),
                        digest: digest.clone(),
                    };
                    self.run(command);
                }
            }
            Step::DeleteTag { repo, tag } => {
                self.run(Command::DeleteTag {
                    repo: REPOS[repo].to_owned(),
                    tag: format!("t{tag}"),
                });
            }
            Step::Unlink { repo, blob } => {
                self.run(Command::UnlinkBlob {
                    repo: REPOS[repo].to_owned(),
                    digest: digest_of(blob),
                });
            }
            Step::Plan => {
                let before = self.view.fingerprint().unwrap();
                let orphans_only = !self.untagged;
                let manifests = gc::plan_manifests(
                    &self.view,
                    self.now,
                    GRACES,
                    &|_| orphans_only,
                    &mut gc::Pacer::unpaced(),
                )
                .unwrap();
                let plan = gc::plan(
                    &self.view,
                    self.now,
                    GRACES,
                    &Default::default(),
                    &mut gc::Pacer::unpaced(),
                )
                .unwrap();
                assert_eq!(before, self.view.fingerprint().unwrap(), "planning is pure");
                self.decisions.push(Command::ExpireManifests {
                    manifests: manifests.expire,
                    orphans_only,
                    unrooted_before_ms: Plan::linked_before(self.now, GRACES),
                });
                self.decisions.push(Command::MarkUnrooted {
                    manifests: manifests.mark,
                    orphans_only,
                    at_ms: self.now,
                });
                self.decisions.push(Command::CondemnBlobs {
                    digests: plan.condemn.iter().map(|c| c.digest.clone()).collect(),
                    tombstoned_before_ms: Plan::tombstoned_before(self.now, GRACES),
                });
                self.decisions.push(Command::TombstoneBlobs {
                    digests: plan.tombstone.iter().map(|c| c.digest.clone()).collect(),
                    linked_before_ms: Plan::linked_before(self.now, GRACES),
                    at_ms: self.now,
                });
            }
            Step::Retain { keep } => {
                let keep = gc::Keep {
                    tags: vec![format!("t{keep}")],
                    ..Default::default()
                };
                let rule = gc::RetentionRule::new(vec!["*".into()], keep).unwrap();
                let tags = gc::plan_retention(&self.view, self.now, GRACES, &[rule]).unwrap();
                self.decisions.push(Command::RetentionUntag {
                    tags,
                    at_ms: self.now,
                });
            }
            Step::Decide { decision } => {
                if !self.decisions.is_empty() {
                    let command = self.decisions.remove(decision % self.decisions.len());
                    self.run(command);
                }
            }
            Step::Sweep => {
                let pending = self.view.pending_sweeps().unwrap();
                let mut swept = Vec::new();
                for (digest, generation, _) in pending {
                    self.deletes
                        .push(ObjectKey::blob_generation(&digest, generation));
                    swept.push((digest, generation));
                }
                self.decisions.push(Command::SweptBlobs { swept });
            }
            Step::Delete { delete, repeat } => {
                if self.deletes.is_empty() {
                    return;
                }
                let key = if repeat {
                    self.deletes[delete % self.deletes.len()].clone()
                } else {
                    self.deletes.remove(delete % self.deletes.len())
                };
                self.store.remove(&key);
            }
            Step::Tick { ms } => self.now += ms,
        }
    }

    fn check(&mut self) {
        for item in self.view.tree().scan_prefix(keys::MANIFEST) {
            let (key, value) = item.unwrap();
            let record: ManifestRecord = crate::codec::decode(&value).unwrap();
            for blob in &record.blobs {
                let recorded = self.view.blob(blob).unwrap().unwrap_or_else(|| {
                    panic!(
                        "{} references {blob}, which is not recorded",
                        String::from_utf8_lossy(&key)
                    )
                });
                let life = self.view.blob_life(blob, &recorded).unwrap();
                assert_eq!(
                    life.tombstoned_at_ms, None,
                    "a referenced blob {blob} is hidden"
                );
            }
        }
        for key in &self.deletes {
            let condemned = self
                .condemned
                .iter()
                .any(|(d, g)| ObjectKey::blob_generation(d, *g) == *key);
            assert!(condemned, "a delete of {key} was never decided");
        }
        for item in self.view.blobs() {
            let (digest, record) = item.unwrap();
            let life = self.view.blob_life(&digest, &record).unwrap();
            assert!(
                !self.condemned.contains(&(digest.clone(), life.generation)),
                "{digest} is recorded at condemned generation {}",
                life.generation
            );
            let key = ObjectKey::blob_generation(&digest, life.generation);
            let bytes = self
                .store
                .get(&key)
                .unwrap_or_else(|| panic!("recorded {digest} has no bytes at {key}"));
            assert_eq!(Digest::sha256_of(bytes), digest, "bytes at {key}");
            assert_eq!(bytes.len() as u64, record.size);
        }
        for blob in 0..CONTENTS {
            let digest = digest_of(blob);
            let generation = self.view.generation_to_write(&digest).unwrap();
            let highest = self.highest_generation.entry(digest).or_default();
            assert!(generation >= *highest, "a generation went back");
            *highest = generation;
        }
    }

    /// Lets every pending decision and delete happen, then collects until
    /// nothing is left to decide.
    fn quiesce(&mut self) {
        while !self.pushes.is_empty() {
            self.step(Step::FinishPush { push: 0 });
        }
        while !self.decisions.is_empty() {
            self.step(Step::Decide { decision: 0 });
        }
        // Each round deletes one level of unrooted manifests (an index, then
        // what it listed, then their referrers): rounds go on until one
        // leaves the state as it found it.
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 60, "collections never settle");
            let before = self.view.fingerprint().unwrap();
            self.now += GRACES.delay_ms + GRACES.grace_ms + 1;
            self.step(Step::Plan);
            while !self.decisions.is_empty() {
                self.step(Step::Decide { decision: 0 });
            }
            self.step(Step::Sweep);
            self.step(Step::Decide { decision: 0 });
            while !self.deletes.is_empty() {
                self.step(Step::Delete {
                    delete: 0,
                    repeat: false,
                });
            }
            self.check();
            if self.view.fingerprint().unwrap() == before {
                break;
            }
        }
        assert!(self.view.pending_sweeps().unwrap().is_empty());
        for item in self.view.manifests() {
            let (repo, digest, record) = item.unwrap();
            let unrooted = self.view.unrooted(&repo, &digest, &record).unwrap();
            let mark = self.view.unrooted_mark(&repo, &digest).unwrap();
            let kept = !super::qualifies(unrooted, mark, !self.untagged);
            assert!(kept, "{repo}@{digest} should have been collected");
        }
        let mut referenced = BTreeSet::new();
        for item in self.view.tree().scan_prefix(keys::MANIFEST) {
            let (_, value) = item.unwrap();
            let record: ManifestRecord = crate::codec::decode(&value).unwrap();
            referenced.extend(record.blobs);
        }
        let recorded: BTreeSet<_> = self.view.blobs().map(|b| b.unwrap().0).collect();
        assert_eq!(
            recorded, referenced,
            "exactly the referenced blobs stay recorded"
        );
        let stored: BTreeSet<_> = self.store.keys().cloned().collect();
        let expected: BTreeSet<_> = recorded
            .iter()
            .map(|d| {
                let generation = self.view.generation_to_write(d).unwrap();
                ObjectKey::blob_generation(d, generation)
            })
            .collect();
        assert_eq!(stored, expected, "exactly the referenced blobs are stored");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn collections_never_lose_referenced_bytes_nor_reuse_keys(
        untagged in any::<bool>(),
        steps in prop::collection::vec(step(), 1..120)
    ) {
        let mut model = Model::new(untagged);
        for step in steps {
            model.step(step);
            model.check();
        }
        model.quiesce();
    }
}
