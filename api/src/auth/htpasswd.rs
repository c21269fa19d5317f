//! An htpasswd file of bcrypt entries (distribution's `auth.htpasswd`),
//! re-read when its contents change.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and clients
//! send Basic credentials on every request, so a successful check is
//! remembered as a hash of the user, the password and the entry it matched:
//! a changed password or entry misses the memory and is checked afresh.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the file is read for changes, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Successful checks remembered; the memory is emptied when full.
const REMEMBERED: usize = 10_000;

/// The bcrypt cost of the hash unknown users are checked against when the
/// file has no entry to copy it from (`htpasswd -B` uses 5).
const DEFAULT_COST: u32 = 5;

pub struct Htpasswd {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Per bcrypt cost, a hash of a password nobody has: unknown users are
    /// checked against one as costly as the file's entries, so a login's
    /// timing does not say whether the user exists.
    unknown_user: Mutex<HashMap<u32, String>>,
}

struct Loaded {
    users: Arc<HashMap<String, String>>,
    contents: Vec<u8>,
    checked: Instant,
}

impl Htpasswd {
    /// Reads `path`; a file that cannot be read stops the start.
    pub fn load(path: &Path) -> Result<Self, String> {
        let contents = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let users = parse(path, &contents);
        tracing::info!(path = %path.display(), users = users.len(), "htpasswd loaded");
        Ok(Htpasswd {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                users: Arc::new(users),
                contents,
                checked: Instant::now(),
            }),
            verified: Mutex::new(HashSet::new()),
            unknown_user: Mutex::new(HashMap::new()),
        })
    }

    /// The users as the file says now (read again at most once a second;
    /// a file that went missing keeps the users last read, and says so).
    fn users(&self) -> Arc<HashMap<String, String>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() >= RELOAD_CHECK {
            loaded.checked = Instant::now();
            match std::fs::read(&self.path) {
                Ok(contents) if contents != loaded.contents => {
                    loaded.users = Arc::new(parse(&self.path, &contents));
                    loaded.contents = contents;
                    tracing::info!(path = %self.path.display(), users = loaded.users.len(), "htpasswd changed: reloaded");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "htpasswd unreadable: keeping the users last read")
                }
            }
        }
        loaded.users.clone()
    }

    /// Whether `password` is `user`'s; the slow part runs on a blocking
    /// thread, and only for a pair not checked successfully before.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &str) -> bool {
        let users = self.users();
        let Some(hash) = users.get(user).cloned() else {
            let cost = users
                .values()
                .find_map(|hash| cost(hash))
                .unwrap_or(DEFAULT_COST);
            let me = self.clone();
            let password = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &me.unknown_user_hash(cost))
            })
            .await;
            return false;
        };
        let memo = memo_key(user, password, &hash);
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&memo)
        {
            return true;
        }
        let password = password.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if matches {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(memo);
        }
        matches
    }

    /// Blocking: hashes a random password at `cost` the first time.
    fn unknown_user_hash(&self, cost: u32) -> String {
        let mut hashes = self.unknown_user.lock().unwrap_or_else(|e| e.into_inner());
        hashes
            .entry(cost)
            .or_insert_with(|| {
                bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost)
                    .or_else(|_| bcrypt::hash(uuid::Uuid::new_v4().to_string(), DEFAULT_COST))
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// The cost of a `$2y$NN$…` hash.
fn cost(hash: &str) -> Option<u32> {
    hash.get(4..6)?.parse().ok()
}

fn memo_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user, password, hash] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().into()
}

/// `user:hash` lines; blank lines and `#` comments skipped, entries that
/// are not bcrypt skipped with a warning (as distribution does).
fn parse(path: &Path, contents: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(contents);
    let mut users = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if !user.is_empty() && is_bcrypt(hash) => {
                users.insert(user.to_owned(), hash.to_owned());
            }
            _ => tracing::warn!(
                path = %path.display(),
                line = number + 1,
                "htpasswd entry skipped: only user:bcrypt-hash lines are read ($2a$, $2b$, $2y$)"
            ),
        }
    }
    users
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, password: &str) -> String {
        format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[tokio::test]
    async fn bcrypt_entries_verify_and_others_are_skipped() {
        let alice = entry("alice", "wonderland");
        let f = file(&format!(
            "# users\n\n{alice}\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n:$2y$05$x\n"
        ));
        let htpasswd = Arc::new(Htpasswd::load(f.path()).unwrap());
        assert!(htpasswd.verify("alice", "wonderland").await);
        assert!(htpasswd.verify("alice", "wonderland").await, "remembered");
        assert!(!htpasswd.verify("alice", "wonderlan").await);
        assert!(
            !htpasswd.verify("bob", "password").await,
            "SHA entries are not read"
        );
        assert!(!htpasswd.verify("carol", "wonderland").await);
        assert_eq!(htpasswd.users().len(), 1);
        assert_eq!(cost(&alice["alice:".len()..]), Some(4));
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_changed_password_is_not_remembered() {
        let f = file(&entry("alice", "first"));
        let htpasswd = Arc::new(Htpasswd::load(f.path()).unwrap());
        assert!(htpasswd.verify("alice", "first").await);
        std::fs::write(
            f.path(),
            format!("{}\n{}\n", entry("alice", "second"), entry("bob", "b")),
        )
        .unwrap();
        htpasswd.loaded.lock().unwrap().checked -= RELOAD_CHECK;
        assert!(
            !htpasswd.verify("alice", "first").await,
            "the old password no longer works"
        );
        assert!(htpasswd.verify("alice", "second").await);
        assert!(htpasswd.verify("bob", "b").await);
    }

    #[test]
    fn a_missing_file_stops_the_start() {
        let err = Htpasswd::load(Path::new("/nonexistent/htpasswd"))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/htpasswd"));
    }
}
