//! End to end through the binary: corpus runs (uniform memorization, Zipf excess loss) over a seeds axis and a zip
//! sweep, a finetune that finds its pretraining run by `{runs}`/`{point}`/`{seed}`, and `physlab report` over
//! them: statistics over seeds, the one-sided t-test against the published figure, the power-law fit and the
//! SVG plots. The t-test's p-value is checked against the closed form of Student's t with 2 degrees of freedom.

use std::path::Path;

const WORKSPACE: &str = r#"
[experiment.mem]
corpus = { kind = "uniform", sequences = 40, length = 16, vocab = 64 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.steps = 30
train.batch_size = 8
train.context = 32
train.warmup_steps = 5
train.log_every = 10
report = { row = "16", claim = "test", metrics = [ { path = "corpus.bits_per_param", label = "bits/param", published = 3.8 } ] }
[experiment.mem.sweep]
seeds = [0, 1, 2]

[experiment.memconv]
corpus = { kind = "uniform", sequences = 40, length = 16, vocab = 64 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.steps = 60
train.batch_size = 8
train.context = 32
train.warmup_steps = 5
train.log_every = 10
report = { row = "16 (check)", claim = "test", metrics = [ { path = "corpus.memorized_bits" } ], reference = { experiment = "mem", point = "base", metric = "corpus.memorized_bits", tolerance_pct = 5.0 } }

[experiment.zdata]
corpus = { kind = "zipf", vocab = 128, exponent = 1.5, documents = 4, doc_tokens = 31 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.steps = 20
train.batch_size = 8
train.context = 32
train.warmup_steps = 5
train.log_every = 10
report = { row = "17", claim = "test", fit = "data", expected_exponent = 0.3333, metrics = [ { path = "corpus.excess_bits_per_token" } ] }
[experiment.zdata.sweep]
grid = { "corpus.documents" = [4, 16, 64] }

[experiment.bd]
corpus = { kind = "bioD", people = 60, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.exposures = 30
train.batch_size = 8
train.context = 32
train.warmup_steps = 5
train.log_every = 10

[experiment.bdfit]
corpus = { kind = "bioD", people = 60, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50 }
model.preset = "gpt2-1-1"
train.exposures = 10
train.batch_size = 8
train.context = 32
train.warmup_steps = 2
train.log_every = 10
report = { row = "1", claim = "test", fit = "capacity", fit_min_rmax = FIT_MIN_RMAX, metrics = [ { path = "biod.bits" } ] }
[experiment.bdfit.sweep]
grid = { "model.d_model" = [8, 16, 32] }

[experiment.pre]
data.people = 30
data.qa.enabled = true
model.preset = "gpt2-1-1"
model.d_model = 32
train.steps = 10
train.batch_size = 4
train.context = 96
train.warmup_steps = 2
train.log_every = 5
[experiment.pre.sweep]
zip = { "data.multi" = [1, 2], "data.permute" = [false, true] }

[experiment.ft]
data.people = 30
data.qa.enabled = true
model.preset = "gpt2-1-1"
model.d_model = 32
train.init_from = "{runs}/pre/{point}/s{seed}/checkpoints/final"
train.streams = ["qa_train"]
train.loss_on = "answers"
train.steps = 5
train.batch_size = 4
train.context = 96
train.warmup_steps = 1
train.log_every = 5
[experiment.ft.sweep]
zip = { "data.multi" = [1, 2], "data.permute" = [false, true] }
"#;

/// The shipped test workspace, with the capacity fit's R^max threshold.
fn workspace(fit_min_rmax: f64) -> String {
    WORKSPACE.replace("FIT_MIN_RMAX", &format!("{fit_min_rmax:?}"))
}

mod common;

/// A temporary folder with the test workspace (its capacity fit's threshold 0) and the path of its runs folder.
fn lab() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, workspace(0.0)).unwrap();
    let runs = dir.path().join("runs");
    (dir, ws, runs)
}

fn physlab(ws: &Path, args: &[&str]) -> (bool, String, String) {
    common::physlab_in(None, ws, args)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
fn corpus_runs_seeds_and_report() {
    let (dir, ws, runs) = lab();
    let runs_s = runs.to_str().unwrap();

    // Uniform memorization over three seeds.
    let (ok, _, err) = physlab(&ws, &["run", "mem", "--runs", runs_s]);
    assert!(ok, "{err}");
    let mut bpp = Vec::new();
    for s in 0..3 {
        let e = json(&runs.join(format!("mem/base/s{s}/eval.json")));
        let c = &e["corpus"];
        // Entropy of the training set: 40 · 16 · log2 64 = 3840 bits exactly; the aggregate is that − NLL, and
        // Morris's per-sequence sum (each of the 40 sequences adds max(0, 96 − its NLL)) is at least the aggregate
        // (the max only drops negative terms) and at most the entropy.
        assert_eq!(c["tokens"].as_u64(), Some(640));
        assert_eq!(c["entropy_bits_per_token"].as_f64(), Some(6.0));
        let nll = c["loss_bits_per_token"].as_f64().unwrap() * 640.0;
        let aggregate = c["memorized_bits_aggregate"].as_f64().unwrap();
        assert!((aggregate - (3840.0 - nll)).abs() < 1e-6 * 3840.0);
        let mem = c["memorized_bits"].as_f64().unwrap();
        assert!(
            mem >= aggregate - 1e-6 * 3840.0 && mem <= 3840.0,
            "{mem} vs {aggregate}"
        );
        // Per parameter: all of them (Morris's count).
        let total = c["params"]["total"].as_f64().unwrap();
        bpp.push(c["bits_per_param"].as_f64().unwrap());
        assert!((bpp[s] - mem / total).abs() < 1e-12);
        // Scored on the training set: a loss below H is memorization (here 108–118 bits are), not flagged as a bug.
        assert!(
            mem > 0.0,
            "the run memorized nothing ({mem} bits): the flag check below would be vacuous"
        );
        assert_eq!(c["held_out"].as_bool(), Some(false));
        assert_eq!(
            c["below_entropy"].as_bool(),
            Some(false),
            "memorization is not a negative-excess bug"
        );
    }
    let (ok, md, err) = physlab(&ws, &["report", "mem", "--runs", runs_s]);
    assert!(ok, "{err}");
    // mean ± std (n = 3) and the one-sided p-value of H1: mean < 3.8, from the closed form of t with 2 df.
    let n = 3.0;
    let mean = bpp.iter().sum::<f64>() / n;
    let std = (bpp.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let t = (mean - 3.8) / (std / n.sqrt());
    let p = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
    let report = json(&runs.join("mem/report.json"));
    let h = &report["headline"][0];
    assert_eq!(h["stats"]["n"].as_u64(), Some(3));
    assert!((h["stats"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!((h["stats"]["std"].as_f64().unwrap() - std).abs() < 1e-12);
    assert!((h["test"]["p_value"].as_f64().unwrap() - p).abs() < 1e-9);
    assert!(md.contains("| bits/param | `base` |"), "{md}");
    assert!(runs.join("mem/plots/loss.svg").exists());
    assert!(runs.join("mem/summary.csv").exists());

    // `physlab check` against that report as the committed reference: within tolerance; against a reference whose
    // mean is 10% higher: exit 1, and the JUnit report names the failed metric.
    let reference = runs.join("reference.json");
    std::fs::copy(runs.join("mem/report.json"), &reference).unwrap();
    let junit = runs.join("junit.xml");
    let (r, j) = (reference.display().to_string(), junit.display().to_string());
    let args = [
        "check",
        "mem",
        "--runs",
        runs_s,
        "--against",
        &r,
        "--junit",
        &j,
    ];
    let (ok, out, err) = physlab(&ws, &args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 headline metric(s) within 0.02"), "{out}");
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(x.contains("tests=\"1\" failures=\"0\""), "{x}");
    let mut shifted = report.clone();
    shifted["headline"][0]["stats"]["mean"] = (mean * 1.1).into();
    std::fs::write(&reference, serde_json::to_vec(&shifted).unwrap()).unwrap();
    let (ok, out, err) = physlab(&ws, &args);
    assert!(!ok);
    assert!(
        out.contains("FAIL") && err.contains("1 of 1 headline metric(s) of mem left the tolerance"),
        "{out}{err}"
    );
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(
        x.contains("failures=\"1\"") && x.contains("<failure message="),
        "{x}"
    );

    // Zipf over three data sizes: held-out excess loss and a power-law fit in the report.
    let (ok, _, err) = physlab(&ws, &["run", "zdata", "--runs", runs_s]);
    assert!(ok, "{err}");
    for d in [4, 16, 64] {
        let e = json(&runs.join(format!("zdata/documents={d}/s0/eval.json")));
        assert_eq!(e["data_tokens"].as_f64(), Some(d as f64 * 31.0));
        assert_eq!(e["corpus"]["held_out"].as_bool(), Some(true));
        // 1024 held-out documents of 31 tokens.
        assert_eq!(e["corpus"]["tokens"].as_u64(), Some(1024 * 31));
        // The excess is measured against the sample's own surprisal, which averages to H (0.077 bits at most
        // off for 31,744 tokens of a V = 128, s = 1.5 source: 5 standard errors of a 2.755-bit surprisal sd, closed form).
        let c = &e["corpus"];
        let f = |k: &str| c[k].as_f64().unwrap();
        assert!(
            (f("excess_bits_per_token")
                - (f("loss_bits_per_token") - f("sample_entropy_bits_per_token")))
            .abs()
                < 1e-9
        );
        assert!((f("sample_entropy_bits_per_token") - f("entropy_bits_per_token")).abs() < 0.077);
    }
    let (ok, md, err) = physlab(&ws, &["report", "zdata", "--runs", runs_s]);
    assert!(ok, "{err}");
    assert!(
        md.contains("## Power law") || md.contains("No power-law fit"),
        "{md}"
    );

    // bioD: the three Def. 4.1 terms, their sum, and invariants of the losses (a value's first chunk is part of
    // the value, so p3 ≤ p2; whole-value hits are first-token hits).
    let (ok, _, err) = physlab(&ws, &["run", "bd", "--runs", runs_s]);
    assert!(ok, "{err}");
    // Its data line counts bits of knowledge; bioD has no entropy rate to print (it once said "H = NaN").
    assert!(!err.contains("NaN"), "{err}");
    assert!(err.contains("perfect-recall bits"), "{err}");
    let e = json(&runs.join("bd/base/s0/eval.json"));
    let b = &e["biod"];
    let f = |k: &str| b[k].as_f64().unwrap_or_else(|| panic!("{k} in {b}"));
    let terms: Vec<f64> = (0..3).map(|i| b["terms"][i].as_f64().unwrap()).collect();
    assert!((terms.iter().sum::<f64>() - f("bits")).abs() < 1e-6 * f("perfect_recall_bits"));
    assert!(f("bits") <= f("perfect_recall_bits"));
    assert!(f("loss_value1") <= f("loss_value") + 1e-9);
    assert!(f("whole_value_accuracy") <= f("first_token_accuracy"));
    // R over all parameters (the paper's count), the used embedding rows beside it.
    assert!(
        (f("capacity_ratio") - f("bits") / b["params"]["total"].as_f64().unwrap()).abs() < 1e-12
    );
    assert!(
        (f("capacity_ratio_used_rows") - f("bits") / b["params"]["capacity"].as_f64().unwrap())
            .abs()
            < 1e-12
    );
    // Perfect-recall terms from the closed form: N·log2(N0/N), N·K·C·log2 D, K·D·log2(T^L/D) with
    // N0 = 400·400·1000.
    let want = [
        60.0 * (1.6e8f64 / 60.0).log2(),
        60.0 * 3.0 * 2.0 * 20f64.log2(),
        3.0 * 20.0 * (50f64.powi(2) / 20.0).log2(),
    ];
    for (i, w) in want.iter().enumerate() {
        assert!(
            (b["perfect_terms"][i].as_f64().unwrap() - w).abs() < 1e-6 * w,
            "term {i}"
        );
    }
    // The report reads bioD runs too.
    let (ok, md, err) = physlab(&ws, &["report", "bd", "--runs", runs_s]);
    assert!(ok, "{err}");
    assert!(md.contains("bioD: bits of knowledge"), "{md}");
    assert!(runs.join("bd/plots/capacity.svg").exists());

    // A finetune finds the pretraining run of its own point and seed; without it, it refuses clearly.
    let (ok, _, err) = physlab(&ws, &["run", "ft", "--point", "1", "--runs", runs_s]);
    assert!(!ok);
    assert!(err.contains("not a finished checkpoint"), "{err}");
    assert!(
        err.contains("pre/multi=2,permute=true/s0/checkpoints/final"),
        "{err}"
    );
    let (ok, _, err) = physlab(&ws, &["run", "pre", "--runs", runs_s]);
    assert!(ok, "{err}");
    let cfg = json(&runs.join("pre/multi=2,permute=true/s0/manifest.json"));
    assert_eq!(cfg["point"].as_str(), Some("multi=2,permute=true"));
    let (ok, _, err) = physlab(&ws, &["run", "ft", "--point", "1", "--runs", runs_s]);
    assert!(ok, "{err}");
    let resolved =
        std::fs::read_to_string(runs.join("ft/multi=2,permute=true/s0/config.resolved.toml"))
            .unwrap();
    assert!(
        resolved.contains("pre/multi=2,permute=true/s0/checkpoints/final"),
        "{resolved}"
    );
    assert!(resolved.contains("multi = 2"), "{resolved}");

    // A report of an experiment that has no runs says so.
    let (ok, _, err) = physlab(
        &ws,
        &[
            "report",
            "ft",
            "--runs",
            dir.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("no runs of this experiment"), "{err}");
}

/// The capacity fit over the runs where capacity binds: three widths of one bioD, R^max falling with width; a
/// threshold between the widest model's R^max and the next leaves it out of the fit (2 of 3 runs), a threshold
/// below all of them keeps every run, one above all of them leaves no fit and says so.
#[test]
fn the_capacity_fit_takes_the_runs_where_capacity_binds() {
    let (_dir, ws, runs) = lab();
    let runs_s = runs.to_str().unwrap();
    // Before running: each point's budget and, with --time, its training time predicted from a timed step.
    let (ok, out, err) = physlab(&ws, &["validate", "bdfit", "--time"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.matches("predicted training time on this CPU: ").count(),
        3,
        "{out}"
    );
    let (ok, _, err) = physlab(&ws, &["run", "bdfit", "--runs", runs_s]);
    assert!(ok, "{err}");
    let rmax = |d: usize| {
        json(&runs.join(format!("bdfit/d_model={d}/s0/eval.json")))["biod"]["capacity_ratio_max"]
            .as_f64()
            .unwrap()
    };
    let (r8, r16, r32) = (rmax(8), rmax(16), rmax(32));
    assert!(r8 > r16 && r16 > r32, "{r8} {r16} {r32}");
    let fit_points = |threshold: f64| {
        std::fs::write(&ws, workspace(threshold)).unwrap();
        let (ok, md, err) = physlab(&ws, &["report", "bdfit", "--runs", runs_s]);
        assert!(ok, "{err}");
        let r = json(&runs.join("bdfit/report.json"));
        (r["capacity_law"]["points"].as_u64(), md)
    };
    let (all, _) = fit_points(0.0);
    assert_eq!(all, Some(3));
    let (binding, md) = fit_points((r16 + r32) / 2.0);
    assert_eq!(binding, Some(2), "{md}");
    assert!(md.contains("(where capacity binds; 2 of 3 runs)"), "{md}");
    let (none, md) = fit_points(r8 * 2.0);
    assert_eq!(none, None);
    assert!(md.contains("No capacity-law fit yet"), "{md}");
}

#[test]
fn bad_recipes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    let cases = [
        (
            "[experiment.x]\ncorpus = { kind = \"uniform\", sequencez = 4 }\n",
            "sequencez",
        ),
        (
            "[experiment.x]\ncorpus = { kind = \"uniform\", sequences = 4, length = 8, vocab = 0 }\n",
            "corpus.vocab must be ≥ 2 (got 0)",
        ),
        (
            "[experiment.x]\ncorpus = { kind = \"bioD\", people = 10, name_pool_sizes = [2, 2] }\n",
            "corpus.name_pool_sizes",
        ),
        (
            "[experiment.x]\ncorpus = { kind = \"bioS\" }\n",
            "corpus.kind",
        ),
        (
            "[experiment.x]\nreport = { fit = \"both\" }\n",
            "report.fit",
        ),
        ("[experiment.x]\nreport = { metricz = [] }\n", "metricz"),
        (
            "[experiment.x]\nreport = { fit = \"data\", fit_min_rmax = 2.0 }\n",
            "fit_min_rmax",
        ),
        (
            "[experiment.x]\nreport = { fit = \"capacity\", plateau_max_loss_drop_pct = 1.0 }\n",
            "plateau_max_loss_drop_pct",
        ),
        (
            "[experiment.x]\nreport = { fit = \"plateau\", plateau_max_loss_drop_pct = -1.0 }\n",
            "plateau_max_loss_drop_pct = -1",
        ),
        (
            "[experiment.x.sweep]\nzip = { \"data.multi\" = [1, 2], \"data.permute\" = [false] }\n",
            "same number",
        ),
        (
            "[experiment.x]\nreport = { fit = \"capacity\", also_fit = [{ path = \"facts.stored_facts\" }] }\n",
            "report.also_fit fits other metrics",
        ),
        (
            "[experiment.x]\nreport = { fit = \"params\", also_fit = [{ path = \" \" }] }\n",
            "report.also_fit: an entry has an empty path",
        ),
        (
            "[experiment.x]\nreport = { fit = \"params\", also_fit = [{ path = \"a.b\", slope = 1.0 }] }\n",
            "slope",
        ),
        (
            "[experiment.x]\nreport = { fit = \"data\", best_of = \"train.lr\" }\n",
            "best_of takes each point's best run",
        ),
        (
            "[experiment.x]\nreport = { fit = \"capacity\", best_of = \"train.lr\" }\n[experiment.x.sweep]\ngrid = { \"train.exposures\" = [10, 20] }\n",
            "report.best_of = \"train.lr\": not a key this experiment's sweep varies (train.exposures)",
        ),
        (
            "[experiment.x]\nreport = { fit = \"capacity\", best_of = \"train.lr\" }\n[experiment.x.sweep]\ngrid = { \"train.lr\" = [1e-3, 2e-3], \"finetune.lr\" = [1e-4, 3e-4] }\n",
            "the sweep also varies `finetune.lr`",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&ws, text).unwrap();
        let (ok, out, err) = physlab(&ws, &["validate", "x"]);
        assert!(!ok, "{text} validated");
        assert!(
            out.contains(needle) || err.contains(needle),
            "{text}: expected `{needle}` in\n{out}\n{err}"
        );
    }
}

/// The run records written beside every report (runs.jsonl) carry the runs to a machine where their folders are
/// gone: a report from the records alone, or from one folder plus the records of the others, equals the report
/// from the folders (summary.csv and the headline's statistics byte for byte), and says where its runs came from.
/// A records file of another experiment, a damaged line and one run recorded in two files are refused by name.
#[test]
fn run_records_carry_the_runs_to_a_report_without_their_folders() {
    let (dir, ws, runs) = lab();
    let runs_s = runs.to_str().unwrap();
    let (ok, _, err) = physlab(&ws, &["run", "mem", "--runs", runs_s]);
    assert!(ok, "{err}");
    let (ok, _, err) = physlab(&ws, &["report", "mem", "--runs", runs_s]);
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(runs.join("mem/summary.csv")).unwrap();
    let headline = json(&runs.join("mem/report.json"))["headline"].clone();
    assert_eq!(headline[0]["stats"]["n"].as_u64(), Some(3));
    let records = dir.path().join("runs.jsonl");
    std::fs::copy(runs.join("mem/runs.jsonl"), &records).unwrap();
    let rec_s = records.to_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(&records).unwrap().lines().count(),
        3
    );
    // Every recorded run is in the folder too: the records add none, and the report says so.
    let (ok, md, err) = physlab(
        &ws,
        &["report", "mem", "--runs", runs_s, "--records", rec_s],
    );
    assert!(ok, "{err}");
    assert!(
        md.contains("3 finished run(s)") && md.contains("add none"),
        "{md}"
    );

    // A fresh machine: no run folders at all.
    let fresh = dir.path().join("fresh");
    let fresh_s = fresh.to_str().unwrap();
    let fresh_report = |records: &[&str]| {
        let mut args = vec!["report", "mem", "--runs", fresh_s];
        for r in records {
            args.extend(["--records", r]);
        }
        physlab(&ws, &args)
    };
    let (ok, md, err) = fresh_report(&[rec_s]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(fresh.join("mem/summary.csv")).unwrap(),
        csv
    );
    assert_eq!(json(&fresh.join("mem/report.json"))["headline"], headline);
    assert!(
        md.contains("3 finished run(s)") && md.contains("3 of them from the run records"),
        "{md}"
    );
    assert!(fresh.join("mem/plots/loss.svg").exists());

    // One folder left (seed 0, with a different final loss written into its eval.json so that the test sees which
    // copy was read): the folder's run wins, the records give the other two.
    std::fs::remove_dir_all(runs.join("mem/base/s1")).unwrap();
    std::fs::remove_dir_all(runs.join("mem/base/s2")).unwrap();
    let e0 = runs.join("mem/base/s0/eval.json");
    let mut v = json(&e0);
    v["train"]["final_loss"] = 123.0.into();
    std::fs::write(&e0, serde_json::to_vec(&v).unwrap()).unwrap();
    let (ok, md, err) = physlab(
        &ws,
        &["report", "mem", "--runs", runs_s, "--records", rec_s],
    );
    assert!(ok, "{err}");
    assert!(md.contains("2 of them from the run records"), "{md}");
    let csv2 = std::fs::read_to_string(runs.join("mem/summary.csv")).unwrap();
    let rows: Vec<&str> = csv2.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv2}");
    assert!(
        rows[0].contains(",123,") || rows[0].contains(",123.0,"),
        "{csv2}"
    );
    assert_eq!(rows[1..], csv.lines().skip(2).collect::<Vec<_>>()[..]);

    // Refused, each naming the file (and line).
    let other = dir.path().join("other.jsonl");
    let text = std::fs::read_to_string(&records).unwrap();
    std::fs::write(
        &other,
        text.replace("\"experiment\":\"mem\"", "\"experiment\":\"zdata\""),
    )
    .unwrap();
    let (ok, _, err) = fresh_report(&[other.to_str().unwrap()]);
    assert!(
        !ok && err.contains("other.jsonl:1: a run of experiment \"zdata\""),
        "{err}"
    );
    let damaged = dir.path().join("damaged.jsonl");
    let first = text.lines().next().unwrap();
    std::fs::write(
        &damaged,
        format!("{first}\n{}\n", &first[..first.len() / 2]),
    )
    .unwrap();
    let (ok, _, err) = fresh_report(&[damaged.to_str().unwrap()]);
    assert!(
        !ok && err.contains("damaged.jsonl:2: not a run record"),
        "{err}"
    );
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&records, &copy).unwrap();
    let (ok, _, err) = fresh_report(&[rec_s, copy.to_str().unwrap()]);
    assert!(!ok && err.contains("is recorded in both"), "{err}");
    let (ok, _, err) = fresh_report(&["/nonexistent/runs.jsonl"]);
    assert!(!ok && err.contains("/nonexistent/runs.jsonl"), "{err}");

    // `physlab run --records`: a recorded point is measured already and not run again (no folder made), by index
    // or over the whole sweep.
    let elsewhere = dir.path().join("elsewhere");
    let el = elsewhere.to_str().unwrap();
    let (ok, out, err) = physlab(
        &ws,
        &[
            "run",
            "mem",
            "--runs",
            el,
            "--point",
            "1",
            "--records",
            rec_s,
        ],
    );
    assert!(
        ok && out.contains("point 1 (base/s1) is recorded in"),
        "{out}{err}"
    );
    let (ok, out, err) = physlab(&ws, &["run", "mem", "--runs", el, "--records", rec_s]);
    assert!(
        ok && out.matches("measured already, not run again").count() == 3,
        "{out}{err}"
    );
    assert!(!elsewhere.join("mem").exists());
    // A worker claims no recorded run; `physlab plan` shows them as recorded, and a finished folder as done.
    let (ok, _, err) = physlab(&ws, &["worker", "mem", "--runs", el, "--records", rec_s]);
    assert!(ok, "{err}");
    assert!(!elsewhere.join("mem").exists());
    let (ok, out, err) = physlab(&ws, &["plan", "mem", "--runs", runs_s, "--records", rec_s]);
    assert!(ok, "{err}");
    let states: Vec<&str> = out
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(states, ["done", "recorded", "recorded"], "{out}");
    assert!(
        out.contains("2 recorded") && out.contains("in ") && out.contains("runs.jsonl"),
        "{out}"
    );
    let (ok, out, _) = physlab(&ws, &["plan", "mem", "--runs", runs_s]);
    assert!(ok && out.contains("2 pending"), "{out}");
    // Some runs of it, or several experiments, as scripts/run-queue.sh lists them: a table per experiment (its
    // items merged, in index order), the records of each from --results, and the time left in all; with --time
    // an experiment with nothing measured has its step timed here.
    let results = dir.path().join("results");
    std::fs::create_dir_all(results.join("mem")).unwrap();
    std::fs::copy(&records, results.join("mem/runs.jsonl")).unwrap();
    let res_s = results.to_str().unwrap();
    let (ok, out, err) = physlab(
        &ws,
        &[
            "plan",
            "mem:2",
            "mem:0",
            "--runs",
            runs_s,
            "--results",
            res_s,
        ],
    );
    assert!(ok, "{err}");
    let rows: Vec<(&str, &str)> = out
        .lines()
        .skip(1)
        .take(2)
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap_or(""), w.next().unwrap_or(""))
        })
        .collect();
    assert_eq!(rows, [("0", "done"), ("2", "recorded")], "{out}");
    assert!(
        out.contains("in all: 2 run(s) of 1 experiment(s): 1 done, 1 recorded; about 0:00:00"),
        "{out}"
    );
    let (ok, out, err) = physlab(
        &ws,
        &[
            "plan",
            "mem",
            "zdata:0,2",
            "--runs",
            runs_s,
            "--results",
            res_s,
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("zdata: 2 run(s): 2 pending")
            && out.contains("in all: 5 run(s) of 2 experiment(s): 1 done, 2 pending, 2 recorded")
            && out.contains("not counting 2 run(s) with no step time yet"),
        "{out}"
    );
    // Then the runs left in the order named (done and recorded ones skipped), each with its projected end.
    timeline(&out, ["zdata:0", "zdata:2"], "no step time yet");
    let (ok, out, err) = physlab(&ws, &["plan", "zdata:1", "--runs", runs_s, "--time"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("at the step times timed here") && !out.contains("not counting"),
        "{out}"
    );
    // The table is in index order; the timeline in the order named, each end after the one before.
    let (ok, out, err) = physlab(
        &ws,
        &["plan", "zdata:2", "zdata:0", "--runs", runs_s, "--time"],
    );
    assert!(ok, "{err}");
    timeline(&out, ["zdata:2", "zdata:0"], "ends ~");
    let (ok, _, err) = physlab(
        &ws,
        &["plan", "mem", "zdata", "--runs", runs_s, "--records", rec_s],
    );
    assert!(
        !ok && err.contains("with several experiments use --results"),
        "{err}"
    );
    let (ok, _, err) = physlab(&ws, &["plan", "mem:7", "--runs", runs_s]);
    assert!(
        !ok && err.contains("mem:7: mem has runs 0 to 2 (no run 7)"),
        "{err}"
    );
    let (ok, _, err) = physlab(&ws, &["plan", "mem:1,x", "--runs", runs_s]);
    assert!(
        !ok && err.contains("mem:1,x: \"x\" is not a run index"),
        "{err}"
    );

    // Records rebuilt from a summary.csv (runs whose folders and records are both gone) give the same summary; an
    // existing output is not overwritten.
    let summary = dir.path().join("summary.csv");
    std::fs::write(&summary, &csv).unwrap();
    let rebuilt = dir.path().join("rebuilt.jsonl");
    let args = [
        "records",
        "mem",
        "--from-summary",
        summary.to_str().unwrap(),
        "--out",
        rebuilt.to_str().unwrap(),
    ];
    let (ok, out, err) = physlab(&ws, &args);
    assert!(ok && out.contains("wrote 3 run record(s)"), "{out}{err}");
    let again = dir.path().join("again");
    let (ok, _, err) = physlab(
        &ws,
        &[
            "report",
            "mem",
            "--runs",
            again.to_str().unwrap(),
            "--records",
            rebuilt.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(again.join("mem/summary.csv")).unwrap(),
        csv
    );
    let before = std::fs::read(&rebuilt).unwrap();
    let (ok, _, err) = physlab(&ws, &args);
    assert!(
        !ok && err.contains("exists already; not overwritten"),
        "{err}"
    );
    assert_eq!(std::fs::read(&rebuilt).unwrap(), before);
}

/// `report.reference` (a convergence check): each run's metric beside the reference run of its seed, read from
/// the reference's folder, or, with the folder gone, from `results/<reference>/runs.jsonl` beside the workspace;
/// a damaged record is said in the report, which is still written.
#[test]
fn a_convergence_check_is_reported_against_its_reference_run() {
    let (dir, ws, runs) = lab();
    let runs_s = runs.to_str().unwrap();
    for exp in ["mem", "memconv"] {
        let (ok, _, err) = physlab(&ws, &["run", exp, "--runs", runs_s, "--point", "0"]);
        assert!(ok, "{err}");
    }
    let bits = |exp: &str| {
        json(&runs.join(exp).join("base/s0/eval.json"))["corpus"]["memorized_bits"]
            .as_f64()
            .unwrap()
    };
    let (ours, theirs) = (bits("memconv"), bits("mem"));
    let change = 100.0 * (ours - theirs) / theirs.abs();
    let check = |md: &str| {
        let row = md
            .lines()
            .find(|l| l.starts_with("| `base` | 0 |"))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(
            row.contains(&format!("{change:+.2}%")),
            "{row} (expected {change:+.2}%)"
        );
        let verdict = if change.abs() <= 5.0 {
            "| **met** |"
        } else if change > 0.0 {
            "| **not met: more** |"
        } else {
            "| **not met: less** |"
        };
        assert!(row.ends_with(verdict), "{row}");
    };
    let (ok, md, err) = physlab(&ws, &["report", "memconv", "--runs", runs_s]);
    assert!(ok, "{err}");
    check(&md);
    let rj = json(&runs.join("memconv/report.json"));
    assert!((rj["reference"]["rows"][0]["reference"].as_f64().unwrap() - theirs).abs() < 1e-9);

    // The reference's folder gone, its records committed beside the workspace.
    let (ok, _, err) = physlab(&ws, &["report", "mem", "--runs", runs_s]);
    assert!(ok, "{err}");
    let results = dir.path().join("results/mem");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::copy(runs.join("mem/runs.jsonl"), results.join("runs.jsonl")).unwrap();
    std::fs::remove_dir_all(runs.join("mem")).unwrap();
    let (ok, md, err) = physlab(&ws, &["report", "memconv", "--runs", runs_s]);
    assert!(ok, "{err}");
    check(&md);

    // A damaged record: the report says so and is still written.
    std::fs::write(results.join("runs.jsonl"), "{ not a record\n").unwrap();
    let (ok, md, err) = physlab(&ws, &["report", "memconv", "--runs", runs_s]);
    assert!(ok, "{err}");
    assert!(
        md.contains("No reference run could be read")
            && md.contains("runs.jsonl:1: not a run record"),
        "{md}"
    );
    assert!(
        md.contains("| `base` | 0 |") && md.contains("no finished reference run"),
        "{md}"
    );
}

/// `physlab plan`'s closing timeline: the runs named, in this order, each line saying `says`.
fn timeline<const N: usize>(out: &str, runs: [&str; N], says: &str) {
    let order: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("in the order named"))
        .skip(1)
        .collect();
    let named: Vec<&str> = order
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(named, runs, "{out}");
    assert!(order.iter().all(|l| l.contains(says)), "{out}");
}
