//! One owner per run folder (issue 16): two `physlab run` processes on the same run never both write. The
//! second is refused in one line naming the holder while the first trains; with `--wait` it waits, then finds
//! the run finished and leaves it as it is. (Before the lock, two processes on one folder ended with a DONE
//! folder whose config and eval.json came from different recipes.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKSPACE: &str = r#"
[experiment.tiny]
data.people = 40
model.preset = "gpt2-1-1"
model.d_model = 32
train.steps = 400
train.batch_size = 4
train.context = 96
train.log_every = 50
"#;

fn physlab(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physlab"));
    c.current_dir(dir)
        .args(["--workspace", "ws.toml", "run", "tiny", "--runs", "runs"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn two_processes_on_one_run_never_both_write() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ws.toml"), WORKSPACE).unwrap();
    let run = d.path().join("runs/tiny/base/s0");
    let lease = d.path().join("runs/tiny/base/s0.lease");
    let mut first = physlab(d.path(), &[]).spawn().unwrap();
    let t = Instant::now();
    while !lease.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the first run never took its lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let held: serde_json::Value = serde_json::from_slice(&std::fs::read(&lease).unwrap()).unwrap();
    assert_eq!(held["pid"].as_u64(), Some(first.id() as u64));
    // While it trains, a second process on the same run (even with another value of a key) is refused.
    let out = physlab(d.path(), &["--set", "train.lr=5e-4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("is in use by pid") && last.contains(&first.id().to_string()),
        "{err}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended before the check: make it longer"
    );
    // With --wait, a second process waits for the first, then finds the run finished and leaves it.
    let second = physlab(d.path(), &["--wait"]).output().unwrap();
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err2}");
    assert!(
        err2.contains("waiting for it") && err2.contains("finished already"),
        "{err2}"
    );
    assert!(first.wait().unwrap().success());
    assert!(run.join("DONE").exists());
    assert!(!lease.exists(), "the lease is removed when the run ends");
    // The finished run is the first process's, whole: its config is the recipe's (lr 1e-3), not the refused one.
    let cfg = std::fs::read_to_string(run.join("config.resolved.toml")).unwrap();
    assert!(cfg.contains("lr = 0.001"), "{cfg}");
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["train"]["steps"].as_u64(), Some(400));
}
