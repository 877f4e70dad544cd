//! A run killed midway (SIGKILL, a real process kill) and resumed with `--resume` continues the same loss curve:
//! every metrics line (loss, learning rate, gradient norm, tokens) equals the uninterrupted run's, bit for bit on
//! CPU, and so do the final evaluation's bits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKSPACE: &str = r#"
[experiment.tiny]
data.people = 60
model.preset = "gpt2-1-1"
model.d_model = 64
train.steps = 300
train.batch_size = 8
train.context = 96
train.lr = 3e-3
train.warmup_steps = 10
train.log_every = 10
train.checkpoint_every = 50
train.keep_checkpoints = 2
"#;

fn physlab(ws: &Path, runs: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physlab"));
    c.arg("--workspace")
        .arg(ws)
        .args(["run", "tiny", "--runs"])
        .arg(runs)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// metrics.jsonl keyed by step, the last line of a step winning (a resumed run rewrites the steps after its
/// checkpoint).
fn metrics(run: &Path) -> Vec<(u64, u64, u64, u64, u64)> {
    let mut by_step = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let f = |k: &str| v[k].as_f64().unwrap().to_bits();
        by_step.insert(
            v["step"].as_u64().unwrap(),
            (
                f("loss"),
                f("lr"),
                f("grad_norm"),
                v["tokens"].as_u64().unwrap(),
            ),
        );
    }
    by_step
        .into_iter()
        .map(|(s, (a, b, c, d))| (s, a, b, c, d))
        .collect()
}

#[test]
fn a_killed_run_resumes_on_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    let out = physlab(&ws, &a, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_a = a.join("tiny/base/s0");

    // Start the same run, kill it once a checkpoint past the middle is complete.
    let mut child = physlab(&ws, &b, &[]).spawn().unwrap();
    let run_b = b.join("tiny/base/s0");
    let marker = run_b.join("checkpoints/step-00000150/DONE");
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint at step 150"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run_b.join("DONE").exists(), "killed before the end");
    assert!(!run_b.join("checkpoints/final").exists());
    let killed_at = metrics(&run_b).last().map(|m| m.0).unwrap_or(0);
    assert!(killed_at < 300, "{killed_at}");

    let out = physlab(&ws, &b, &["--resume"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resumed from"), "{log}");
    assert!(run_b.join("DONE").exists());
    // Only the newest 2 step checkpoints are kept.
    let steps = std::fs::read_dir(run_b.join("checkpoints"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("step-")
        })
        .count();
    assert_eq!(steps, 2);

    let (ma, mb) = (metrics(&run_a), metrics(&run_b));
    assert_eq!(ma.len(), 30);
    assert_eq!(
        ma, mb,
        "the resumed loss curve differs from the uninterrupted one"
    );
    let bits = |run: &Path| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
        v["bios"]["bits"].as_f64().unwrap().to_bits()
    };
    assert_eq!(bits(&run_a), bits(&run_b));
    // The resumed run's wall time counts the killed process's training too: at least its training seconds over
    // both processes, of which the earlier one's are recorded (a run trained in one go has none).
    let eval = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap()
    };
    let (ea, eb) = (eval(&run_a), eval(&run_b));
    assert_eq!(ea["train"]["resumed_wall_s"].as_f64(), Some(0.0));
    let before = eb["train"]["resumed_wall_s"].as_f64().unwrap();
    assert!(before > 0.0, "{eb}");
    assert!(
        eb["wall_s"].as_f64().unwrap() >= eb["train"]["wall_s"].as_f64().unwrap(),
        "{eb}"
    );

    // A finished run is recognised by its config, not its text: a key written out at its default (as
    // `train.precision = "auto"` was by one build) still matches and the run is not redone; a changed value is
    // refused, and the folder is left as it was.
    let cfg = run_a.join("config.resolved.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("precision"), "{text}");
    let with_default = text.replace("[train]\n", "[train]\nprecision = \"auto\"\n");
    assert_ne!(with_default, text);
    // The description is prose, not the run: reworded, the run still matches.
    let reworded = with_default.replacen("description = \"", "description = \"reworded: ", 1);
    assert_ne!(reworded, with_default);
    for same in [&with_default, &reworded] {
        std::fs::write(&cfg, same).unwrap();
        let out = physlab(&ws, &a, &[]).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("finished already"), "{log}");
    }
    std::fs::write(&cfg, with_default.replace("lr = 0.003", "lr = 0.004")).unwrap();
    let out = physlab(&ws, &a, &[]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(log.contains("finished run of a different config"), "{log}");
    assert!(run_a.join("DONE").exists() && run_a.join("eval.json").exists());
}

/// SIGUSR1 (Slurm's warning before the time limit; SIGTERM likewise) stops a run at the next step boundary with a
/// complete step checkpoint and exit status 3 (the Slurm script requeues on it); `--resume` then finishes it on
/// the same loss curve as an uninterrupted run.
#[test]
fn a_signalled_run_checkpoints_exits_3_and_resumes_on_the_same_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("workspace.toml");
    // No periodic checkpoint: the only one is the signal's.
    std::fs::write(
        &ws,
        WORKSPACE.replace("train.checkpoint_every = 50", "train.checkpoint_every = 0"),
    )
    .unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = physlab(&ws, &a, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = physlab(&ws, &b, &[]).spawn().unwrap();
    let run_b = b.join("tiny/base/s0");
    let t0 = Instant::now();
    while metrics_lines(&run_b) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(300), "no metrics");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(log.contains("stopped on request"), "{log}");
    let ck: Vec<_> = std::fs::read_dir(run_b.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("DONE").exists())
        .collect();
    assert_eq!(ck.len(), 1, "one step checkpoint, the signal's");
    assert!(!run_b.join("DONE").exists());

    let out = physlab(&ws, &b, &["--resume"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(metrics(&a.join("tiny/base/s0")), metrics(&run_b));
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
