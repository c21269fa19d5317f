//! What the `registry` process writes: JSON lines with `log.fields`, one
//! access-log line per request (none with `log.accesslog.disabled`), no
//! colour when stdout is not a terminal, no framework chatter at start.
#![allow(clippy::unwrap_used)]

mod common;

use common::free_port;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts a node with `env`, makes one request, stops it (SIGTERM), and
/// answers what it wrote to stdout.
fn run_node(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let debug = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("serve")
        .current_dir(dir.path())
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{api}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", format!("127.0.0.1:{debug}"))
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", api)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.0 200")
        });
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "the node never answered");
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
    common::signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn json_lines_carry_the_configured_fields_and_one_line_per_request() {
    let out = run_node(&[
        ("REGISTRY_LOG_FORMATTER", "json"),
        ("REGISTRY_LOG_FIELDS_ENVIRONMENT", "staging"),
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["environment"] == "staging"), "{out}");
    let requests: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(!requests.is_empty(), "{out}");
    let base = requests
        .iter()
        .find(|l| l["path"] == "/v2/")
        .expect("the /v2/ request");
    assert_eq!(base["status"], 200);
    assert_eq!(base["method"], "GET");
    assert!(base["micros"].is_u64() && base["id"].is_string(), "{base}");
    let listening = lines
        .iter()
        .filter(|l| l["message"] == "registry listening")
        .count();
    assert_eq!(listening, 1, "{out}");
    assert!(
        !out.contains("actix") && !out.contains("starting service"),
        "framework chatter: {out}"
    );
    assert!(
        lines.iter().all(|l| l["level"] != "ERROR"),
        "a clean start and stop logs no error: {out}"
    );
}

#[test]
fn text_lines_have_no_colour_off_a_terminal_and_the_access_log_can_be_off() {
    let out = run_node(&[("REGISTRY_LOG_ACCESSLOG_DISABLED", "true")]);
    assert!(out.contains("registry listening"), "{out}");
    assert!(!out.contains('\u{1b}'), "escape codes in a pipe: {out:?}");
    assert!(!out.contains("path=\"/v2/\""), "an access-log line: {out}");
    let with_log = run_node(&[("REGISTRY_LOG_FIELDS_DC", "eu1")]);
    let line = with_log
        .lines()
        .find(|l| l.contains("path=\"/v2/\""))
        .unwrap_or_else(|| panic!("no access-log line: {with_log}"));
    assert!(
        line.contains("status=200") && line.contains("dc=eu1"),
        "{line}"
    );
}

#[test]
fn an_unknown_formatter_is_refused_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("serve")
        .env("REGISTRY_LOG_FORMATTER", "logstash")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("log.formatter"), "{stderr}");
}
