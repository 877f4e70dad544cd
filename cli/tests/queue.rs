//! `scripts/run-queue.sh` with `QUEUE_DEADLINE`: no point starts after the deadline and the one running at it gets
//! SIGTERM then (physlab writes a step checkpoint and exits; the queue stops and says so). A stand-in for physlab
//! records how it was called and how it ended, so the script's own logic is what is tested (the checkpoint on
//! SIGTERM is tested in resume.rs).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A stand-in for physlab: logs its arguments, sleeps `STUB_SLEEP` seconds, and on SIGTERM logs "stopped" and
/// exits 3 as physlab does after its checkpoint.
const STUB: &str = r#"#!/bin/sh
echo "args: $*" >> "$STUB_LOG"
trap 'kill $pid 2>/dev/null; echo stopped >> "$STUB_LOG"; exit 3' TERM
sleep "$STUB_SLEEP" & pid=$!
wait $pid
echo finished >> "$STUB_LOG"
"#;

fn queue(dir: &Path, deadline: Option<&str>, sleep: u32, items: &[&str]) -> (Output, String) {
    let stub = dir.join("physlab-stub");
    std::fs::write(&stub, STUB).unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = dir.join("stub.log");
    let _ = std::fs::remove_file(&log);
    let mut c = Command::new("bash");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/run-queue.sh"
    ))
    .args(items)
    .env("PHYSLAB", &stub)
    .env("RUNS", dir.join("runs"))
    .env("STUB_LOG", &log)
    .env("STUB_SLEEP", sleep.to_string())
    .env_remove("QUEUE_DEADLINE");
    if let Some(d) = deadline {
        c.env("QUEUE_DEADLINE", d);
    }
    let out = c.output().expect("runs bash");
    (out, std::fs::read_to_string(&log).unwrap_or_default())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_point_running_at_the_deadline_is_stopped_and_no_other_starts() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (out, log) = queue(
        dir.path(),
        Some("now + 3 seconds"),
        60,
        &["exp-a:0", "exp-a:1"],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(said.contains("end exp-a --point 0 rc=124"), "{said}");
    assert!(
        said.contains("deadline reached: exp-a --point 0 stopped (rerun to continue it)"),
        "{said}"
    );
    assert!(!said.contains("--point 1"), "{said}");
    // The point was asked to resume, got SIGTERM and ended as physlab does; the second never started.
    assert!(
        log.contains("args: run exp-a --runs") && log.contains("--point 0 --resume"),
        "{log}"
    );
    assert!(
        log.contains("stopped") && !log.contains("finished") && !log.contains("--point 1"),
        "{log}"
    );
}

#[test]
fn without_a_deadline_every_point_runs_and_a_bad_deadline_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = queue(dir.path(), None, 0, &["exp-a:0", "exp-a:1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(log.matches("finished").count(), 2, "{log}");
    assert!(text(&out).contains("queue finished"));
    // A deadline far ahead changes nothing.
    let (out, log) = queue(dir.path(), Some("now + 1 hour"), 0, &["exp-a:0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(log.matches("finished").count(), 1, "{log}");
    for (deadline, says) in [
        ("yesterday", "has passed: nothing run"),
        ("not a time", "not a time date -d reads"),
    ] {
        let (out, log) = queue(dir.path(), Some(deadline), 0, &["exp-a:0"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{deadline}: {said}");
        assert!(said.contains(says), "{deadline}: {said}");
        assert_eq!(said.lines().count(), 1, "one line: {said}");
        assert!(log.is_empty(), "{deadline}: nothing may run: {log}");
    }
}
