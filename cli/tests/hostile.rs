//! Hostile and careless input through the binary (issue 17): names that would lead out of the output folder,
//! folders physlab did not make, outputs that are physlab's own inputs, numbers that are not finite or do not fit
//! in memory, sweeps whose points would share a folder, and a report over a run folder that is not a finished
//! run. Each case was found against an earlier build (it wrote outside `--runs`, moved a user's folder aside,
//! truncated a shard, validated and then aborted or trained without updates) and must now be a one-line error
//! naming the key, file or path, with nothing lost.

use std::path::Path;

mod common;

/// (success, stdout, stderr) of `physlab --workspace ws args…`, run in `cwd`.
fn physlab_in(cwd: &Path, ws: &Path, args: &[&str]) -> (bool, String, String) {
    common::physlab_in(Some(cwd), ws, args)
}

const TINY: &str = r#"
[experiment.tiny]
data.people = 20
model.preset = "gpt2-1-1"
model.d_model = 16
train.steps = 4
train.batch_size = 2
train.context = 96
train.log_every = 2
"#;

fn workspace(dir: &Path, text: &str) -> std::path::PathBuf {
    let ws = dir.join("workspace.toml");
    std::fs::write(&ws, text).unwrap();
    ws
}

/// Every file under `dir`, relative, sorted: what a command left behind.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// An experiment or dataset named `../../escape`, `/abs` or with a slash is refused when the workspace is read,
/// before any path is built; nothing is written anywhere.
#[test]
fn names_that_would_leave_the_output_folder_are_refused() {
    for (table, name) in [
        ("experiment", "../../escape"),
        ("experiment", "/tmp/physlab-abs"),
        ("experiment", "a/b"),
        ("dataset", "../../x"),
        ("dataset", ".hidden"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        let body = if table == "experiment" {
            "data.people = 20\ntrain.steps = 2"
        } else {
            "people = 20"
        };
        let ws = workspace(&inner, &format!("[{table}.\"{name}\"]\n{body}\n"));
        let before = tree(d.path());
        let args: &[&str] = if table == "experiment" {
            &["run", name, "--runs", "runs"]
        } else {
            &["generate", name]
        };
        let (ok, _, err) = physlab_in(&inner, &ws, args);
        let err = err.trim();
        assert!(!ok, "{name}: {err}");
        assert!(
            err.contains(&format!("{table} name {name:?}")),
            "{name}: {err}"
        );
        assert!(err.contains("workspace.toml"), "{name}: {err}");
        assert_eq!(tree(d.path()), before, "{name} wrote something");
        assert!(!Path::new("/tmp/physlab-abs").exists());
    }
}

/// `generate --out` a folder of the user's (no manifest.json, no recipe.toml of physlab's) is refused and left
/// exactly as it was; it used to be moved aside as an "incomplete dataset".
#[test]
fn generate_never_moves_a_folder_it_did_not_make() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), "[dataset.small]\npeople = 20\n");
    let thesis = d.path().join("thesis");
    std::fs::create_dir(&thesis).unwrap();
    std::fs::write(thesis.join("thesis.tex"), "\\documentclass{article}").unwrap();
    let before = tree(d.path());
    let (ok, _, err) = physlab_in(d.path(), &ws, &["generate", "small", "--out", "thesis"]);
    assert!(!ok);
    assert!(
        err.contains("thesis") && err.contains("not a physlab dataset folder"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(tree(d.path()), before);
    assert_eq!(
        std::fs::read_to_string(thesis.join("thesis.tex")).unwrap(),
        "\\documentclass{article}"
    );
    // A folder physlab began (its recipe.toml, no manifest: the writer died) is still moved aside and redone.
    let (ok, _, err) = physlab_in(d.path(), &ws, &["generate", "small", "--out", "mine"]);
    assert!(ok, "{err}");
    std::fs::remove_file(d.path().join("mine/manifest.json")).unwrap();
    let (ok, _, err) = physlab_in(d.path(), &ws, &["generate", "small", "--out", "mine"]);
    assert!(ok, "{err}");
    assert!(err.contains("moved to"), "{err}");
}

/// `run` into a run folder that exists but is not a physlab run (no config.resolved.toml) refuses and moves
/// nothing.
#[test]
fn run_never_moves_a_folder_it_did_not_make() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), TINY);
    let target = d.path().join("runs/tiny/base/s0");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("notes.txt"), "mine").unwrap();
    let before = tree(d.path());
    let (ok, _, err) = physlab_in(d.path(), &ws, &["run", "tiny", "--runs", "runs"]);
    assert!(!ok);
    assert!(err.contains("is not a physlab run folder"), "{err}");
    // Only the run's lock file beside it (taken before anything is looked at) is new.
    let after: Vec<String> = tree(d.path())
        .into_iter()
        .filter(|p| p != "runs/tiny/base/s0.lock")
        .collect();
    assert_eq!(after, before);
}

/// `export --out` one of the dataset's own files is refused (it once truncated a shard to 0 bytes); an existing
/// output needs --force; the export is complete or absent.
#[test]
fn export_never_overwrites_its_inputs_or_an_existing_file_without_force() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), "[dataset.small]\npeople = 20\n");
    let (ok, _, err) = physlab_in(d.path(), &ws, &["generate", "small", "--out", "ds"]);
    assert!(ok, "{err}");
    let ds = d.path().join("ds");
    let shard = std::fs::read_dir(&ds)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tok"))
        .expect("a shard");
    let bytes = std::fs::read(&shard).unwrap();
    let index = shard.with_extension("idx");
    for target in [
        shard.clone(),
        index,
        ds.join("manifest.json"),
        ds.join("vocab.json"),
        ds.join("people.jsonl"),
    ] {
        let t = target.display().to_string();
        for extra in [&[][..], &["--force"][..]] {
            let mut args = vec!["export", "ds", "--out", &t];
            args.extend_from_slice(extra);
            let (ok, _, err) = physlab_in(d.path(), &ws, &args);
            assert!(!ok, "{t}");
            assert!(err.contains("inside the dataset folder"), "{err}");
        }
    }
    assert_eq!(std::fs::read(&shard).unwrap(), bytes);
    let out = d.path().join("out.jsonl");
    std::fs::write(&out, "precious").unwrap();
    let (ok, _, err) = physlab_in(d.path(), &ws, &["export", "ds", "--out", "out.jsonl"]);
    assert!(!ok);
    assert!(
        err.contains("out.jsonl") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    let (ok, stdout, err) = physlab_in(
        d.path(),
        &ws,
        &["export", "ds", "--out", "out.jsonl", "--force"],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("documents"), "{stdout}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 20, "one biography a person");
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

/// Numbers that are not finite, or too large to mean anything, are refused by `validate` with the key named:
/// each of these once validated ("ok") and then ran 18446744073709551615 steps, trained without an update, or
/// failed only at step 1.
#[test]
fn numbers_out_of_range_are_refused_before_work() {
    let d = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("train.exposures=inf", "train.exposures"),
        ("train.exposures=1e30", "train.exposures"),
        ("train.exposures=nan", "train.exposures"),
        ("train.epsilon=inf", "train.epsilon"),
        ("train.lr=inf", "train.lr"),
        ("train.weight_decay=nan", "train.weight_decay"),
        ("model.rope_base=inf", "model.rope_base"),
        ("data.qa.mix_ratio=nan", "data.qa.mix_ratio"),
    ] {
        let ws = workspace(d.path(), "[experiment.e]\ndata.people = 20\n");
        let (ok, stdout, err) = physlab_in(d.path(), &ws, &["validate", "e", "--set", set]);
        assert!(!ok, "{set}: {stdout}");
        assert!(stdout.contains(key), "{set}: {stdout} {err}");
        assert!(!stdout.contains("18446744073709551615"), "{stdout}");
    }
}

/// A context (or batch) that cannot fit in this machine's memory is refused before anything is allocated, with
/// the estimate; it once validated and then aborted allocating 51 GB.
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_with_the_figures() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), TINY);
    let (ok, _, err) = physlab_in(
        d.path(),
        &ws,
        &[
            "run",
            "tiny",
            "--runs",
            "runs",
            "--dry-run",
            "--set",
            "train.context=100000000",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("training needs about") && err.contains("GB") && err.contains("train.context"),
        "{err}"
    );
    assert!(!d.path().join("runs").exists());
    // The plan line states the estimate for an ordinary run too.
    let (ok, stdout, err) = physlab_in(d.path(), &ws, &["validate", "tiny"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("memory ≈"), "{stdout}");
}

/// A sweep whose values give two points one folder name is refused, and so is `--set` on a swept key (it made
/// every point the same while their folders kept their old names).
#[test]
fn sweeps_whose_points_would_share_a_folder_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(
        d.path(),
        r#"
[experiment.dup]
data.people = 20
[experiment.dup.sweep]
grid = { "train.lr" = [1e-3, 0.001] }

[experiment.ok]
data.people = 20
[experiment.ok.sweep]
grid = { "model.preset" = ["gpt2-1-1", "gpt2-2-1"] }
"#,
    );
    let (ok, stdout, _) = physlab_in(d.path(), &ws, &["validate", "dup"]);
    assert!(!ok);
    assert!(
        stdout.contains("two points of the sweep are both named lr=0.001"),
        "{stdout}"
    );
    let (ok, stdout, _) = physlab_in(d.path(), &ws, &["validate", "ok"]);
    assert!(ok, "{stdout}");
    let (ok, stdout, _) = physlab_in(
        d.path(),
        &ws,
        &["validate", "ok", "--set", "model.preset=gpt2-1-1"],
    );
    assert!(!ok);
    assert!(
        stdout.contains("--set model.preset: the experiment sweeps this key"),
        "{stdout}"
    );
}

/// `report` over a run folder with a DONE marker but an empty eval.json refuses, naming the file, instead of
/// counting it as a finished run (n = 1 in the statistics).
#[test]
fn report_refuses_an_evaluation_that_is_not_a_finished_runs() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), TINY);
    let run = d.path().join("runs/tiny/base/s0");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("eval.json"), "{}").unwrap();
    std::fs::write(run.join("DONE"), "").unwrap();
    let (ok, _, err) = physlab_in(d.path(), &ws, &["report", "tiny", "--runs", "runs"]);
    assert!(!ok);
    assert!(
        err.contains("eval.json") && err.contains("not the evaluation of a finished run"),
        "{err}"
    );
    assert!(!d.path().join("runs/tiny/report.md").exists());
}

/// `physlab generate <experiment>` writes the experiment's own data: its `corpus` (bioD here), not a default bioS.
#[test]
fn generate_an_experiment_writes_its_corpus() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(
        d.path(),
        r#"
[experiment.bd]
corpus = { kind = "bioD", people = 30, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50 }
model.preset = "gpt2-1-1"
train.steps = 2
"#,
    );
    let (ok, stdout, err) = physlab_in(d.path(), &ws, &["generate", "bd", "--out", "bd"]);
    assert!(ok, "{err}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("bd/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["kind"], "bioD", "{stdout}");
    assert_eq!(m["config"]["people"], 30);
}

/// `inspect` checks what it shows: a shard with one flipped byte is refused naming the shard (it used to print
/// samples from it), and an intact dataset says how much it verified.
#[test]
fn inspect_verifies_before_it_shows() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(d.path(), "[dataset.small]\npeople = 20\n");
    let (ok, _, err) = physlab_in(d.path(), &ws, &["generate", "small", "--out", "ds"]);
    assert!(ok, "{err}");
    let (ok, stdout, err) = physlab_in(d.path(), &ws, &["inspect", "ds"]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("verified") && stdout.contains("against the manifest"),
        "{stdout}"
    );
    let shard = d.path().join("ds/bio-00000.tok");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&shard, bytes).unwrap();
    let (ok, stdout, err) = physlab_in(d.path(), &ws, &["inspect", "ds"]);
    assert!(!ok, "{stdout}");
    assert!(err.contains("bio-00000.tok"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !stdout.contains("[0]"),
        "showed a sample of a damaged shard: {stdout}"
    );
}

/// A report metric whose point is not a point of the sweep is a validation error, and one whose path matches
/// nothing in any finished run is an error of `report` naming the path (both rows were once dropped without a
/// word); a point with no finished run yet is shown as such.
#[test]
fn report_metrics_that_match_nothing_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let base = TINY.to_string();
    let ws = workspace(
        d.path(),
        &format!(
            "{base}report = {{ metrics = [ {{ path = \"bios.bits\", point = \"nosuch\" }} ] }}\n"
        ),
    );
    let (ok, stdout, _) = physlab_in(d.path(), &ws, &["validate", "tiny"]);
    assert!(!ok);
    assert!(
        stdout.contains("point \"nosuch\"") && stdout.contains("not a point of this sweep"),
        "{stdout}"
    );
    let ws = workspace(
        d.path(),
        &format!("{base}report = {{ metrics = [ {{ path = \"bios.bitz\" }} ] }}\n"),
    );
    let (ok, _, err) = physlab_in(d.path(), &ws, &["run", "tiny", "--runs", "runs"]);
    assert!(ok, "{err}");
    let (ok, _, err) = physlab_in(d.path(), &ws, &["report", "tiny", "--runs", "runs"]);
    assert!(!ok);
    assert!(
        err.contains("path \"bios.bitz\"") && err.contains("matches nothing"),
        "{err}"
    );
    let ws = workspace(
        d.path(),
        &format!("{base}report = {{ metrics = [ {{ path = \"bios.bits\" }} ] }}\n"),
    );
    let (ok, md, err) = physlab_in(d.path(), &ws, &["report", "tiny", "--runs", "runs"]);
    assert!(ok, "{err}");
    assert!(
        md.contains("| bios.bits | `base` |") || md.contains("`base`"),
        "{md}"
    );
}
