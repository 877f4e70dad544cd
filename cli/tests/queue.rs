//! `scripts/run-queue.sh`: with `QUEUE_DEADLINE` no point starts after the deadline and the one running at it gets
//! SIGTERM then (physlab writes a step checkpoint and exits; the queue stops and says so); with `--order-from` an
//! edited order is followed at the next point; a point whose recipe does not resolve is skipped, three in a row stop
//! the queue. A stand-in for physlab
//! records how it was called and how it ended, so the script's own logic is what is tested (the checkpoint on
//! SIGTERM is tested in resume.rs).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A stand-in for physlab: logs its arguments, sleeps `STUB_SLEEP` seconds, and on SIGTERM logs "stopped" and
/// exits 3 as physlab does after its checkpoint. Its `--dry-run` (the queue's check that a point's recipe resolves)
/// answers at once: an error for an experiment named `bad…`, success otherwise.
const STUB: &str = r#"#!/bin/sh
case " $* " in
  *" --dry-run "*) case "$2" in bad*) echo "error: unknown field \`also_fit\`" >&2; exit 1;; esac; exit 0;;
esac
echo "args: $*" >> "$STUB_LOG"
trap 'kill $pid 2>/dev/null; echo stopped >> "$STUB_LOG"; exit 3' TERM
sleep "$STUB_SLEEP" & pid=$!
wait $pid
echo finished >> "$STUB_LOG"
"#;

fn queue(dir: &Path, deadline: Option<&str>, sleep: u32, items: &[&str]) -> (Output, String) {
    queue_with(dir, deadline, sleep, items, &[])
}

fn queue_with(
    dir: &Path,
    deadline: Option<&str>,
    sleep: u32,
    items: &[&str],
    env: &[(&str, String)],
) -> (Output, String) {
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
    .env_remove("QUEUE_DEADLINE")
    .envs(env.iter().map(|(k, v)| (k, v)));
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

/// With `--order-from CMD` the order is read anew before each point: a point added to the order while the queue
/// runs is run, in its new place; a point already started is not started again, and one taken out is not run.
#[test]
fn an_order_edited_while_the_queue_runs_is_followed_at_the_next_point() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    std::fs::write(&order, "exp-a:0\nexp-a:1\nexp-a:2\n").unwrap();
    // The order command rewrites the order when it is read the second time, i.e. after the first point started
    // (as a person editing it while the queue runs): exp-a:1 out, exp-b:7 in.
    let edit = dir.path().join("edit.sh");
    std::fs::write(
        &edit,
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}\n\
             [ $n = 2 ] && printf 'exp-a:0\\nexp-b:7\\nexp-a:2\\n' > {o}\ncat {o}\n",
            c = dir.path().join("calls").display(),
            o = order.display()
        ),
    )
    .unwrap();
    let (out, log) = queue_with(
        dir.path(),
        None,
        0,
        &["--order-from", &format!("sh {}", edit.display())],
        &[],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let points: Vec<String> = log
        .lines()
        .filter(|l| l.starts_with("args: run "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let k = w.iter().position(|x| *x == "--point").unwrap();
            format!("{}:{}", w[2], w[k + 1])
        })
        .collect();
    assert_eq!(points, ["exp-a:0", "exp-b:7", "exp-a:2"], "{log}");
    // A command that fails keeps the order last read, and says so: this one prints the order at its first call
    // and fails at every later one, so the three points run from the order read first.
    let flaky = dir.path().join("flaky.sh");
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\n[ -e {m} ] && exit 1\ntouch {m}\nprintf 'exp-c:0\\nexp-c:1\\nexp-c:2\\n'\n",
            m = dir.path().join("read-once").display()
        ),
    )
    .unwrap();
    let cmd = format!("sh {}", flaky.display());
    let (out, log) = queue_with(dir.path(), None, 0, &["--order-from", &cmd], &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "--order-from \"{cmd}\" failed: keeping the order last read"
        )),
        "{said}"
    );
    assert_eq!(log.matches("finished").count(), 3, "{log}");
    assert!(
        log.contains("exp-c --runs") && log.contains("--point 2"),
        "{log}"
    );
}

/// A point whose recipe does not resolve is skipped with its error; three in a row stop the queue (exit 1) rather
/// than run through the rest of the order in seconds.
#[test]
fn unresolvable_points_are_skipped_and_three_in_a_row_stop_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = queue(
        dir.path(),
        None,
        0,
        &[
            "exp-a:0", "bad-x:0", "exp-a:1", "bad-x:1", "bad-y:0", "bad-z:0", "exp-a:2",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "skipped bad-x --point 0: its recipe does not resolve: error: unknown field `also_fit`"
        ),
        "{said}"
    );
    assert!(
        said.contains("three points in a row do not resolve: queue stopped"),
        "{said}"
    );
    assert_eq!(log.matches("finished").count(), 2, "{log}");
    assert!(!log.contains("--point 2"), "{log}");
}

/// `$RUNS/queue.deadline` moves a running queue's deadline, for the point running too: written while the first
/// point runs (an hour before QUEUE_DEADLINE), it stops that point then and starts no other. An unreadable one is
/// said and changes nothing.
#[test]
fn the_deadline_file_moves_the_deadline_of_a_running_queue() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs").join("queue.deadline");
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            std::fs::write(&file, "now").unwrap();
        })
    };
    let t0 = Instant::now();
    let (out, log) = queue(
        dir.path(),
        Some("now + 1 hour"),
        60,
        &["exp-a:0", "exp-a:1"],
    );
    writer.join().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        said.contains("(from ") && said.contains("queue.deadline)"),
        "{said}"
    );
    assert!(
        said.contains("deadline reached: exp-a --point 0 stopped (rerun to continue it)"),
        "{said}"
    );
    assert!(
        log.contains("stopped") && !log.contains("--point 1"),
        "{log}"
    );

    std::fs::write(&file, "not a time").unwrap();
    let (out, log) = queue(dir.path(), None, 0, &["exp-a:0", "exp-a:1"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("not a time date -d reads"), "{said}");
    assert_eq!(log.matches("finished").count(), 2, "{log}");
}
