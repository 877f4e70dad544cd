//! Issue 14: the accuracy curve of a finetune (`train.eval_every`): P_train and P_test exact match against the
//! step in `curve.jsonl` and the report's plot, without changing the training.

mod common;

use common::{lines, physlab_in};
use serde_json::Value;
use std::path::Path;

const RECIPES: &str = r#"
[defaults.model]
preset = "gpt2-1-1"
[defaults.train]
batch_size = 8
context = 128
lr = 3e-3
warmup_steps = 5

[experiment.pre]
data.people = 60
data.qa.enabled = true
train.steps = 60
train.log_every = 10

[experiment.ft-plain]
data.people = 60
data.qa.enabled = true
train.init_from = "{runs}/pre/base/s0/checkpoints/final"
train.streams = ["qa_train"]
train.loss_on = "answers"
train.lora_qv_rank = 4
train.lora_embedding_rank = 8
train.steps = 40
train.log_every = 5

[experiment.ft-curve]
data.people = 60
data.qa.enabled = true
train.init_from = "{runs}/pre/base/s0/checkpoints/final"
train.streams = ["qa_train"]
train.loss_on = "answers"
train.lora_qv_rank = 4
train.lora_embedding_rank = 8
train.steps = 40
train.log_every = 5
train.eval_every = 15
eval.curve_questions = 60

[experiment.bio-curve]
data.people = 60
data.qa.enabled = true
train.steps = 10
train.eval_every = 5
"#;

/// The tensors of a safetensors file: its header without `__metadata__` (whose key order is not fixed) and
/// its data bytes.
fn tensors(path: &Path) -> (Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.as_object_mut().unwrap().remove("__metadata__");
    (header, bytes[8 + n..].to_vec())
}

#[test]
fn the_accuracy_curve_is_written_and_leaves_the_training_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, RECIPES).unwrap();
    let runs = dir.path().join("runs");
    let r = runs.display().to_string();
    for exp in ["pre", "ft-plain", "ft-curve"] {
        let (ok, _, err) = physlab_in(Some(dir.path()), &ws, &["run", exp, "--runs", &r]);
        assert!(ok, "{exp}: {err}");
    }
    let plain = runs.join("ft-plain/base/s0");
    let curve = runs.join("ft-curve/base/s0");

    // The same training: every logged loss and gradient norm, and every final weight, bit for bit.
    let (a, b) = (
        lines(&plain.join("metrics.jsonl")),
        lines(&curve.join("metrics.jsonl")),
    );
    assert_eq!(a.len(), 8);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for k in ["step", "loss", "grad_norm"] {
            assert_eq!(x[k], y[k], "{k} differs with the curve on: {x} vs {y}");
        }
    }
    let w = "checkpoints/final/model.safetensors";
    assert!(
        tensors(&plain.join(w)) == tensors(&curve.join(w)),
        "the final weights differ with the curve on"
    );
    assert!(!plain.join("curve.jsonl").exists());

    // The curve: step 0, every 15 steps and the last step, P_train and P_test, overall and per attribute.
    let c = lines(&curve.join("curve.jsonl"));
    let steps: Vec<u64> = c.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 15, 30, 40]);
    for l in &c {
        for stream in ["qa_train", "qa_test"] {
            for k in [
                "accuracy",
                "birth_date",
                "birth_city",
                "university",
                "major",
                "employer",
            ] {
                let v = l[format!("{stream}/{k}")].as_f64().unwrap_or(-1.0);
                assert!((0.0..=1.0).contains(&v), "{stream}/{k} = {v} in {l}");
            }
        }
    }
    // 60 questions a stream: accuracies are multiples of 1/60.
    let acc = c[3]["qa_train/accuracy"].as_f64().unwrap();
    assert!((acc * 60.0 - (acc * 60.0).round()).abs() < 1e-9, "{acc}");

    // The report plots it and lists it.
    let (ok, _, err) = physlab_in(Some(dir.path()), &ws, &["report", "ft-curve", "--runs", &r]);
    assert!(ok, "{err}");
    assert!(runs.join("ft-curve/plots/accuracy.svg").exists());
    let md = std::fs::read_to_string(runs.join("ft-curve/report.md")).unwrap();
    assert!(
        md.contains("Accuracy against the step") && md.contains("| base | qa_test | 0: "),
        "{md}"
    );
}

#[test]
fn a_curve_without_questions_to_train_on_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, RECIPES).unwrap();
    let r = dir.path().join("runs").display().to_string();
    let (ok, _, err) = physlab_in(Some(dir.path()), &ws, &["run", "bio-curve", "--runs", &r]);
    assert!(!ok);
    assert!(
        err.contains("train.eval_every") && err.contains("no question stream"),
        "{err}"
    );
}

/// A curve where there is nothing to draw it on is refused before any work: on a uniform corpus run (no questions
/// and no held-out documents: a zipf, markov or facts run draws its held-out excess instead, for early stopping;
/// `cli/tests/early_stopping.rs`), or with no questions per stream.
#[test]
fn a_curve_on_a_corpus_or_of_no_questions_is_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(
        &ws,
        r#"
[experiment.uniform-curve]
corpus = { kind = "uniform", vocab = 64, length = 15, sequences = 8 }
train.steps = 3
train.eval_every = 1
[experiment.no-questions]
data.people = 20
data.qa.enabled = true
train.steps = 3
train.eval_every = 1
eval.curve_questions = 0
"#,
    )
    .unwrap();
    for (exp, needles) in [
        ("uniform-curve", ["train.eval_every", "uniform"]),
        ("no-questions", ["train.eval_every", "eval.curve_questions"]),
    ] {
        let (ok, out, err) = physlab_in(Some(dir.path()), &ws, &["validate", exp]);
        assert!(!ok, "{exp} validated: {out}");
        let said = format!("{out}{err}");
        assert!(needles.iter().all(|n| said.contains(n)), "{exp}: {said}");
    }
}
