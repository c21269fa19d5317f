//! Helpers shared by the process tests.
// Each test file compiles this module and uses part of it.
#![allow(dead_code)]

use sha2::{Digest as _, Sha256};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Set in a test re-run inside namespaces; not `REGISTRY_…`, which the
/// nodes would read as config.
const NAMESPACED: &str = "NAMESPACED_TEST_RUN";

/// Runs test `name` of this binary again inside new namespaces (`unshare`
/// with `flags`, e.g. `--net`), so what it creates there (addresses, nft
/// rules, mounts) vanishes with the re-run on every exit path. Returns
/// `true` in the re-run, which then does the work; `false` in the original
/// once the re-run passed (or, off CI and not root, after saying why it was
/// skipped).
pub fn rerun_inside_namespaces(name: &str, flags: &[&str]) -> bool {
    if std::env::var(NAMESPACED).as_deref() == Ok(name) {
        return true;
    }
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; {name} needs unshare"
        );
        eprintln!("skipped {name}: creating namespaces needs root");
        return false;
    }
    let status = std::process::Command::new("unshare")
        .args(flags)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(NAMESPACED, name)
        .status()
        .expect("run unshare");
    assert!(status.success(), "{name} failed inside its namespaces");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Runs a command to completion and insists it succeeded.
pub fn run(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// Sends `signal` (e.g. `-TERM`, `-STOP`) to `child`.
pub fn signal(child: &std::process::Child, signal: &str) {
    run("kill", &[signal, &child.id().to_string()]);
}
