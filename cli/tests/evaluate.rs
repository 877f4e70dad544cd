//! `physlab evaluate <run>` through the binary, on a tiny multi2+permute bioS run trained here: the run itself
//! writes `bios_own_orders` (two biographies per person) and its table; `evaluate` recomputes the same figures
//! from `checkpoints/final` and merges them into eval.json keeping every other key (one added by hand included);
//! `physlab report` reads `bios_own_orders.bits`; bad input is refused in one line naming the path. A mixture of
//! experts logs its routing while training and writes it in eval.json; `evaluate --routing` finds it again.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

fn physlab_in(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    common::physlab_args(Some(cwd), args)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Writes `written` back to `path` without `key` and with `"mine": 7`, a key the evaluation must keep.
fn drop_key_add_mine(path: &Path, written: &Value, key: &str) {
    let mut edited = written.clone();
    let m = edited.as_object_mut().unwrap();
    m.remove(key);
    m.insert("mine".into(), Value::from(7));
    std::fs::write(path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
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
    drop_key_add_mine(&eval_path, &written, "bios_own_orders");
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
    // Strictly, each target's own position is dropped too: fewer people at P@v1 for some target (those whose
    // first value it is), none at P@v6 for any, where the table then shows '-'; the flag is recorded. Without
    // --own-order the flag is refused in one line.
    let strict = |extra: &[&str]| {
        let mut args = vec!["probe", run_s, "--epochs", "1", "--kind", "p", "--strict"];
        args.extend_from_slice(extra);
        physlab_in(d.path(), &args)
    };
    let (ok, out, err) = strict(&["--own-order", "--out", "strict.json"]);
    assert!(ok, "probe --own-order --strict: {err}");
    assert!(out.contains("strict:"), "{out}");
    let p = &read_json(&d.path().join("strict.json"))["probes"][0];
    assert_eq!(p["config"]["strict"], true);
    let tested = |t: &serde_json::Value, k: usize| t["tested"][k].as_u64().unwrap();
    let targets = p["targets"].as_array().unwrap();
    assert!(targets.iter().all(|t| tested(t, 5) == 0), "{p}");
    assert!(targets.iter().all(|t| t["accuracy"][5].is_null()), "{p}");
    assert!(targets.iter().any(|t| tested(t, 0) < test_people), "{p}");
    let v6 = out
        .lines()
        .find(|l| l.starts_with("birth_city"))
        .expect("a birth_city row");
    assert_eq!(v6.split_whitespace().nth(6), Some("-"), "{out}");
    let train = out.lines().find(|l| l.starts_with("mean train")).unwrap();
    assert_eq!(train.split_whitespace().nth(7), Some("-"), "{out}");
    let (ok, _, err) = strict(&["--out", "loose.json"]);
    assert!(!ok && err.contains("--own-order"), "{err}");
    assert!(!d.path().join("loose.json").exists());
}

const MOE_WORKSPACE: &str = r#"
[experiment.mix]
corpus = { kind = "bioD", people = 40, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50, multi = 3, permute = true }
model.preset = "moe-2-1"
model.d_model = 16
model.experts = 4
model.capacity_factor = 1.0
train.exposures = 4
train.batch_size = 4
train.context = 64
train.warmup_steps = 1
train.log_every = 2

[experiment.dense]
corpus = { kind = "bioD", people = 40, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50 }
model.preset = "gpt2-1-1"
model.d_model = 16
train.exposures = 2
train.batch_size = 4
train.context = 64
train.log_every = 2
"#;

/// A mixture of experts (moe-2-1, 4 experts, trained at capacity factor 1 so that some tokens are dropped): every
/// metrics line has the dropped share in [0, 1) and the gate (the chosen expert's probability, ≥ 1/4 as the row's
/// largest of 4) in [1/4, 1]; eval.json holds the routing of both mixture layers over every evaluated token;
/// `evaluate --routing` records the same routing again from the checkpoint (the same model, data and batches)
/// and keeps every other key; its report draws the routing while training (plots/routing.svg, a section in
/// report.md) and keeps the curves in its run records. A dense model logs zeros, writes no routing, its report
/// has none, and `evaluate --routing` refuses it in one line.
#[test]
fn a_mixture_logs_and_evaluates_its_routing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("workspace.toml"), MOE_WORKSPACE).unwrap();
    let (ok, out, err) = physlab_in(d.path(), &["run", "mix", "--runs", "runs"]);
    assert!(ok, "training: {err}");
    assert!(out.contains("routing in the evaluation"), "{out}");
    assert!(err.contains("router: balance"), "the log line: {err}");
    let run = d.path().join("runs/mix/base/s0");
    let lines = common::lines(&run.join("metrics.jsonl"));
    assert!(!lines.is_empty());
    for l in &lines {
        let (drop, gate) = (
            l["router_dropped"].as_f64().unwrap(),
            l["router_gate"].as_f64().unwrap(),
        );
        assert!((0.0..1.0).contains(&drop), "{l}");
        assert!((0.25 - 1e-6..=1.0 + 1e-6).contains(&gate), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["router_dropped"].as_f64().unwrap() > 0.0),
        "capacity factor 1 drops some tokens"
    );
    let eval_path = run.join("eval.json");
    let written = read_json(&eval_path);
    let routing = written["routing"].as_array().expect("routing").clone();
    assert_eq!(routing.len(), 2, "two mixture layers");
    for (i, l) in routing.iter().enumerate() {
        assert_eq!(l["layer"], i as u64);
        assert_eq!(l["experts"], 4);
        assert_eq!(l["capacity_factor"], 1.0);
        assert!(l["tokens"].as_u64().unwrap() > 0);
        let used = l["experts_used"].as_u64().unwrap();
        assert!((1..=4).contains(&used), "{l}");
        let top = l["top_share"].as_f64().unwrap();
        assert!((0.25..=1.0).contains(&top), "{l}");
    }

    drop_key_add_mine(&eval_path, &written, "routing");
    let run_s = run.to_str().unwrap();
    let (ok, out, err) = physlab_in(d.path(), &["evaluate", run_s, "--routing"]);
    assert!(ok, "evaluate --routing: {err}");
    assert!(out.contains("mixture layer 1"), "{out}");
    let merged = read_json(&eval_path);
    assert_eq!(merged["mine"], 7, "other keys are kept");
    assert_eq!(merged["biod"], written["biod"], "biod kept as it was");
    for (a, b) in merged["routing"].as_array().unwrap().iter().zip(&routing) {
        for k in ["tokens", "experts_used", "experts"] {
            assert_eq!(a[k], b[k], "{k}");
        }
        for k in ["gate_mean", "top_share", "over_capacity"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "{k}: {x} vs {y}");
        }
    }

    // The routing consistency: each person in its 3 training orders, at the 3 × 2 × 2 = 12 positions that
    // predict a value token; the shares lie between their floors (1/3 of a fact's 3 orders; 1/4 of a slot's 120
    // choices over 4 experts) and 1.
    assert!(out.contains("routing consistency"), "{out}");
    let cons = merged["routing_consistency"]
        .as_array()
        .expect("routing_consistency");
    assert_eq!(cons.len(), 2, "{cons:?}");
    for (i, c) in cons.iter().enumerate() {
        assert_eq!(c["layer"], i as u64);
        assert_eq!(
            (c["people"].as_u64(), c["orders"].as_u64()),
            (Some(40), Some(3))
        );
        assert_eq!(c["positions"].as_u64(), Some(12));
        for (k, floor) in [
            ("consistency", 1.0 / 3.0),
            ("independent", 1.0 / 3.0),
            ("slot_consistency", 0.25),
        ] {
            let v = c[k].as_f64().unwrap();
            assert!((floor - 1e-9..=1.0 + 1e-9).contains(&v), "{k}: {c}");
        }
        assert!(
            (1..=4).contains(&c["value_experts"].as_u64().unwrap()),
            "{c}"
        );
    }

    // The report draws the routing while training and keeps it in the run records.
    let (ok, _, err) = physlab_in(d.path(), &["report", "mix", "--runs", "runs"]);
    assert!(ok, "report: {err}");
    let md = std::fs::read_to_string(d.path().join("runs/mix/report.md")).unwrap();
    assert!(
        md.contains("## Mixture-of-experts routing while training"),
        "{md}"
    );
    assert!(d.path().join("runs/mix/plots/routing.svg").is_file());
    let records = common::lines(&d.path().join("runs/mix/runs.jsonl"));
    let gate = records[0]["routing"]["gate"]
        .as_array()
        .expect("routing in the record");
    assert_eq!(gate.len(), lines.len(), "one point a logged interval");

    let (ok, _, err) = physlab_in(d.path(), &["run", "dense", "--runs", "runs"]);
    assert!(ok, "training: {err}");
    let (ok, _, err) = physlab_in(d.path(), &["report", "dense", "--runs", "runs"]);
    assert!(ok, "report: {err}");
    let md = std::fs::read_to_string(d.path().join("runs/dense/report.md")).unwrap();
    assert!(!md.contains("routing while training"), "{md}");
    assert!(!d.path().join("runs/dense/plots/routing.svg").exists());
    let dense = d.path().join("runs/dense/base/s0");
    assert!(read_json(&dense.join("eval.json")).get("routing").is_none());
    for l in common::lines(&dense.join("metrics.jsonl")) {
        assert_eq!(l["router_dropped"], 0.0, "{l}");
        assert_eq!(l["router_gate"], 0.0, "{l}");
    }
    let (ok, _, err) = physlab_in(
        d.path(),
        &["evaluate", dense.to_str().unwrap(), "--routing"],
    );
    assert!(!ok);
    assert!(err.contains("no mixture of experts"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
