//! `physlab evaluate <run>` through the binary, on a tiny multi2+permute bioS run trained here: the run itself
//! writes `bios_own_orders` (two biographies per person) and its table; `evaluate` recomputes the same figures
//! from `checkpoints/final` and merges them into eval.json keeping every other key (one added by hand included);
//! `physlab report` reads `bios_own_orders.bits`; bad input is refused in one line naming the path.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

fn physlab_in(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    common::physlab_args(Some(cwd), args)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

const WORKSPACE: &str = r#"
[experiment.own]
data.people = 20
data.multi = 2
data.permute = true
model.preset = "gpt2-1-1"
model.d_model = 16
train.steps = 4
train.batch_size = 2
train.context = 96
train.log_every = 1
report = { metrics = [ { path = "bios_own_orders.bits" } ] }
"#;

#[test]
fn evaluate_merges_the_own_order_evaluation_into_eval_json() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("workspace.toml"), WORKSPACE).unwrap();
    let (ok, out, err) = physlab_in(d.path(), &["run", "own", "--runs", "runs"]);
    assert!(ok, "training: {err}");
    assert!(out.contains("own training biographies"), "{out}");
    let run: PathBuf = d.path().join("runs/own/base/s0");
    assert!(run.join("DONE").exists(), "{}", run.display());
    let eval_path = run.join("eval.json");
    let written = read_json(&eval_path);
    let own = &written["bios_own_orders"];
    assert_eq!(own["biographies_per_person"], 2, "{own}");
    assert_eq!(written["bios"]["biographies_per_person"], 1);
    assert!(own["bits"].is_f64());
    assert_eq!(own["params"], written["bios"]["params"]);

    // Drop the key, add one of our own, and let `evaluate` put it back.
    let mut edited = written.clone();
    let m = edited.as_object_mut().unwrap();
    m.remove("bios_own_orders");
    m.insert("mine".into(), Value::from(7));
    std::fs::write(&eval_path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let run_s = run.to_str().unwrap();
    let (ok, out, err) = physlab_in(d.path(), &["evaluate", run_s]);
    assert!(ok, "evaluate: {err}");
    assert!(out.contains("biographies scored per person"), "{out}");
    let merged = read_json(&eval_path);
    assert_eq!(merged["mine"], 7, "other keys are kept");
    for k in ["bios", "train", "qa", "exposures", "experiment"] {
        assert_eq!(merged[k], written[k], "{k} kept as it was");
    }
    // The same model, data and batches: the figures the run wrote, to float precision.
    for f in ["loss_name", "loss_value", "bits", "employer_city_first"] {
        let (a, b) = (
            merged["bios_own_orders"][f].as_f64().unwrap(),
            own[f].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{f}: {a} vs {b}");
    }
    assert!(!run.with_extension("lease").exists(), "the lease is let go");

    // `physlab report` resolves the metric path.
    let (ok, _, err) = physlab_in(d.path(), &["report", "own", "--runs", "runs"]);
    assert!(ok, "report: {err}");
    let md = std::fs::read_to_string(d.path().join("runs/own/report.md")).unwrap();
    assert!(md.contains("own orders: bits of knowledge"), "{md}");
    assert!(!err.contains("matches nothing"), "{err}");

    // Bad input: one line naming the path.
    let missing = d.path().join("nowhere");
    let (ok, _, err) = physlab_in(d.path(), &["evaluate", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nowhere"), "{err}");
    std::fs::write(&eval_path, b"{ not json").unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["evaluate", run_s]);
    assert!(!ok);
    assert!(
        err.contains("eval.json") && err.contains("not JSON"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&eval_path).unwrap(),
        b"{ not json",
        "left as it was"
    );
    // A single non-permute run has nothing of its own to add.
    let cfg = run.join("config.resolved.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let single = text
        .replace("multi = 2", "multi = 1")
        .replace("permute = true", "permute = false");
    assert_ne!(single, text);
    std::fs::write(&cfg, single).unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["evaluate", run_s]);
    assert!(!ok);
    assert!(err.contains("single without permute"), "{err}");
}

/// `physlab probe --out` takes a folder (probe.json inside it) or a file name ending in .json; it once made a folder
/// named `x.json`.
#[test]
fn probe_out_is_a_folder_or_a_json_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("workspace.toml"), WORKSPACE).unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["run", "own", "--runs", "runs"]);
    assert!(ok, "training: {err}");
    let run = d.path().join("runs/own/base/s0");
    let run_s = run.to_str().unwrap();
    let probe = |out: &str| {
        let (ok, _, err) = physlab_in(
            d.path(),
            &["probe", run_s, "--epochs", "1", "--kind", "q", "--out", out],
        );
        assert!(ok, "probe --out {out}: {err}");
    };
    probe("p/named.json");
    let file = d.path().join("p/named.json");
    assert!(file.is_file(), "{} is not a file", file.display());
    assert!(read_json(&file)["probes"].is_array());
    probe("q");
    assert!(read_json(&d.path().join("q/probe.json"))["probes"].is_array());
    // In the own order: ordinal positions, the flag recorded, and per cell the test people it counted (all of
    // them at the first position, where no value is in the text yet; fewer later).
    let (ok, out, err) = physlab_in(
        d.path(),
        &[
            "probe",
            run_s,
            "--epochs",
            "1",
            "--kind",
            "p",
            "--own-order",
            "--out",
            "own.json",
        ],
    );
    assert!(ok, "probe --own-order: {err}");
    assert!(out.contains("P@v1") && out.contains("P@v6"), "{out}");
    let p = &read_json(&d.path().join("own.json"))["probes"][0];
    assert_eq!(p["config"]["own_order"], true);
    assert_eq!(p["positions"][0], "before_value_1");
    let test_people = p["test_people"].as_u64().unwrap();
    for t in p["targets"].as_array().unwrap() {
        let tested: Vec<u64> = t["tested"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(tested.len(), 6, "{t}");
        assert_eq!(tested[0], test_people, "{t}");
        assert!(tested.windows(2).all(|w| w[0] >= w[1]), "{t}");
    }
}
