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

const SWEEP: &str = r#"
[experiment.sweep]
data.people = 30
model.preset = "gpt2-1-1"
model.d_model = 16
train.steps = 120
train.batch_size = 4
train.context = 96
train.log_every = 20
train.checkpoint_every = 40
[experiment.sweep.sweep]
grid = { "train.lr" = [1e-3, 2e-3, 3e-3] }
seeds = [0, 1, 2, 3]
"#;

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physlab"));
    c.current_dir(dir)
        .args(["--workspace", "ws.toml"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Every `<point>/s<seed>` run folder under `runs/sweep` with its eval.json's bits and final loss (as bits).
fn results(runs: &Path) -> Vec<(String, u64, u64)> {
    let mut v = Vec::new();
    for p in std::fs::read_dir(runs.join("sweep")).unwrap().flatten() {
        if !p.path().is_dir() || p.file_name().to_string_lossy().contains(".incomplete-") {
            continue;
        }
        for s in std::fs::read_dir(p.path()).unwrap().flatten() {
            if !s.path().is_dir() {
                continue;
            }
            let e: serde_json::Value =
                serde_json::from_slice(&std::fs::read(s.path().join("eval.json")).unwrap())
                    .unwrap();
            v.push((
                format!(
                    "{}/{}",
                    p.file_name().to_string_lossy(),
                    s.file_name().to_string_lossy()
                ),
                e["bios"]["bits"].as_f64().unwrap().to_bits(),
                e["train"]["final_loss"].as_f64().unwrap().to_bits(),
            ));
        }
    }
    v.sort();
    v
}

/// Four workers drain a 12-run sweep; one is killed (SIGKILL) in the middle of a run. Every run finishes exactly
/// once (the killed one is taken over and resumed from its checkpoint), nothing is left half-written, and the
/// results equal a sequential `physlab run` of the same sweep bit for bit.
#[test]
fn workers_drain_a_sweep_and_survive_a_killed_worker() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ws.toml"), SWEEP).unwrap();
    let seq = cmd(d.path(), &["run", "sweep", "--runs", "seq"])
        .output()
        .unwrap();
    assert!(
        seq.status.success(),
        "{}",
        String::from_utf8_lossy(&seq.stderr)
    );

    // Each worker logs to its own file (a pipe nobody reads would fill and stall it).
    let mut workers: Vec<_> = (0..4)
        .map(|i| {
            let log = std::fs::File::create(d.path().join(format!("w{i}.log"))).unwrap();
            cmd(d.path(), &["worker", "sweep", "--runs", "pool"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill the first worker once it holds a run and has written a step checkpoint in it.
    let victim = workers[0].id();
    let t = Instant::now();
    let held = loop {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "worker 0 never took a run"
        );
        let found = glob_leases(&d.path().join("pool/sweep"))
            .into_iter()
            .find(|(_, pid)| *pid == victim);
        if let Some((lease, _)) = found {
            let run = Path::new(lease.to_str().unwrap().trim_end_matches(".lease")).to_path_buf();
            if run.join("checkpoints/step-00000040/DONE").exists() {
                break run;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    unsafe_kill(victim);
    let status = workers[0].wait().unwrap();
    assert!(
        !status.success(),
        "the victim finished before it was killed"
    );
    assert!(!held.join("DONE").exists(), "killed mid-run");
    for w in workers.iter_mut().skip(1) {
        assert!(w.wait().unwrap().success());
    }
    let logs: Vec<String> = (0..4)
        .map(|i| std::fs::read_to_string(d.path().join(format!("w{i}.log"))).unwrap())
        .collect();
    // Twelve runs finished, each once: the victim finished none (or some before the one it was killed in), and
    // the one it was killed in was resumed by another worker from its step checkpoint.
    let finished: usize = logs.iter().map(|l| l.matches("run folder: ").count()).sum();
    assert_eq!(finished, 12, "{logs:?}");
    let resumed = logs[1..]
        .iter()
        .filter(|l| l.contains("taken over") && l.contains("resumed from"))
        .count();
    assert!(resumed >= 1, "no worker took over the killed run: {logs:?}");
    let pool = results(&d.path().join("pool"));
    assert_eq!(pool.len(), 12);
    assert_eq!(
        pool,
        results(&d.path().join("seq")),
        "the pool's results differ from a sequential run"
    );
    // Four data recipes (one a seed; the learning rate does not change the data): four datasets in the shared
    // store, each written once by whichever worker came first while the others waited.
    let store: Vec<String> = std::fs::read_dir(d.path().join("pool/.datasets"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(store.len(), 4, "{store:?}");
    assert!(
        store.iter().all(|n| !n.contains(".incomplete-")),
        "{store:?}"
    );
    let plan = cmd(d.path(), &["plan", "sweep", "--runs", "pool"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("12 run(s): 12 done"), "{text}");
}

fn glob_leases(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut v = Vec::new();
    let Ok(points) = std::fs::read_dir(dir) else {
        return v;
    };
    for p in points.flatten() {
        let Ok(files) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().ends_with(".lease") {
                if let Ok(b) = std::fs::read(f.path()) {
                    if let Ok(l) = serde_json::from_slice::<serde_json::Value>(&b) {
                        v.push((f.path(), l["pid"].as_u64().unwrap_or(0) as u32));
                    }
                }
            }
        }
    }
    v
}

fn unsafe_kill(pid: u32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A worker makes `physlab run`'s checks before it claims anything: a point that cannot fit in memory is refused
/// before any run starts, and a finetune whose pretraining is not finished is not started (no folder made) and is
/// named in the error, while the runs that can go ahead do.
#[test]
fn a_worker_checks_memory_and_pretraining_before_it_runs() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("ws.toml"),
        r#"
[defaults.model]
preset = "gpt2-1-1"
d_model = 32
[defaults.train]
batch_size = 4
context = 96
[experiment.pre]
data.people = 40
train.steps = 20
[experiment.pre.sweep]
seeds = [0]
[experiment.ft]
data.people = 40
train.init_from = "{runs}/pre/base/s{seed}/checkpoints/final"
train.steps = 10
[experiment.ft.sweep]
seeds = [0, 1]
[experiment.huge]
data.people = 40
train.context = 100000000
train.steps = 1
"#,
    )
    .unwrap();
    let worker = |exp: &str| {
        Command::new(env!("CARGO_BIN_EXE_physlab"))
            .current_dir(d.path())
            .args(["--workspace", "ws.toml", "worker", exp, "--runs", "runs"])
            .output()
            .unwrap()
    };
    let out = worker("huge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memory") || err.contains("GB"), "{err}");
    assert!(!d.path().join("runs/huge").exists(), "nothing started");

    assert!(worker("pre").status.success());
    let out = worker("ft");
    assert!(!out.status.success(), "seed 1 has no pretraining");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wait for their pretraining") && err.contains("base/s1"),
        "{err}"
    );
    assert!(d.path().join("runs/ft/base/s0/DONE").exists(), "seed 0 ran");
    assert!(
        !d.path().join("runs/ft/base/s1").exists(),
        "seed 1 was not started"
    );
}
