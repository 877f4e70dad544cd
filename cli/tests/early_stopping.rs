//! Issue 13, row 17's data sweep: early stopping on held-out data (`train.eval_every` on a Markov corpus). The
//! validation and held-out excess are measured while training, the step is chosen on validation only, the figure
//! is the held-out excess there, and measuring it leaves the training unchanged.

mod common;

use common::{json, lines, physlab_in};
use serde_json::Value;

const RECIPES: &str = r#"
[defaults]
model.preset = "gpt2-1-1"
model.d_model = 32
train.batch_size = 4
train.context = 32
train.lr = 1e-2
train.warmup_steps = 10
train.log_every = 10
train.steps = 240

[experiment.plain]
corpus = { kind = "markov", vocab = 32, exponent = 1.5, order = 1, documents = 16, doc_tokens = 31 }

[experiment.stopped]
corpus = { kind = "markov", vocab = 32, exponent = 1.5, order = 1, documents = 16, doc_tokens = 31 }
train.eval_every = 20

[experiment.uniform-curve]
corpus = { kind = "uniform", vocab = 16, length = 8, sequences = 20 }
train.eval_every = 20
"#;

#[test]
fn early_stopping_chooses_on_validation_reads_held_out_and_leaves_training_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, RECIPES).unwrap();
    let runs = dir.path().join("runs");
    let r = runs.display().to_string();

    let (ok, out, err) = physlab_in(Some(dir.path()), &ws, &["validate", "stopped"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("held-out excess every 20 steps, early stopping on 512 validation documents"),
        "{out}"
    );
    let (ok, out, err) = physlab_in(Some(dir.path()), &ws, &["validate", "uniform-curve"]);
    assert!(!ok, "{out}");
    assert!(out.contains("train.eval_every draws"), "{out}{err}");

    for exp in ["plain", "stopped"] {
        let (ok, _, err) = physlab_in(Some(dir.path()), &ws, &["run", exp, "--runs", &r]);
        assert!(ok, "{exp}: {err}");
    }
    let plain = runs.join("plain/base/s0");
    let stopped = runs.join("stopped/base/s0");

    // The same training: every logged loss and gradient norm.
    let (a, b) = (
        lines(&plain.join("metrics.jsonl")),
        lines(&stopped.join("metrics.jsonl")),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for k in ["step", "loss", "grad_norm"] {
            assert_eq!(x[k], y[k], "{k} differs with early stopping on: {x} vs {y}");
        }
    }
    assert!(!plain.join("curve.jsonl").exists());
    assert!(json(&plain.join("eval.json"))
        .get("early_stopping")
        .is_none());

    // The curve: step 0, every 20 steps, the last; both excess figures at each.
    let c = lines(&stopped.join("curve.jsonl"));
    let steps: Vec<u64> = c.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..=240).step_by(20).collect::<Vec<u64>>());
    let val = |l: &Value| l["validation/excess_bits_per_token"].as_f64().unwrap();
    let test = |l: &Value| l["held_out/excess_bits_per_token"].as_f64().unwrap();
    // Untrained, a model is far from the source; trained, much closer (excess in bits/token over the samples' own
    // surprisal, so it is KL-like and should be ≥ 0 up to noise at the best step).
    assert!(test(&c[0]) > 1.0, "{}", test(&c[0]));

    let e = json(&stopped.join("eval.json"));
    let es = &e["early_stopping"];
    let best = es["best_step"].as_u64().unwrap();
    let min_val = c.iter().map(val).fold(f64::INFINITY, f64::min);
    let at_best = c.iter().find(|l| l["step"].as_u64() == Some(best)).unwrap();
    assert_eq!(val(at_best), min_val, "the step is the validation minimum");
    assert_eq!(
        es["validation_excess_bits_per_token"].as_f64(),
        Some(min_val)
    );
    assert_eq!(es["excess_bits_per_token"].as_f64(), Some(test(at_best)));
    assert_eq!(es["evaluations"].as_u64(), Some(13));
    assert_eq!(es["last_step"].as_u64(), Some(240));
    assert!(test(at_best) < 0.5 * test(&c[0]), "{}", test(at_best));
    // The last point of the curve is the trained model the end-of-training evaluation scores: the same figure.
    let end = e["corpus"]["excess_bits_per_token"].as_f64().unwrap();
    let last = es["last_excess_bits_per_token"].as_f64().unwrap();
    assert!((end - last).abs() < 1e-9, "{end} vs {last}");
    // Without early stopping the same run ends at the same figure.
    let plain_end = json(&plain.join("eval.json"))["corpus"]["excess_bits_per_token"]
        .as_f64()
        .unwrap();
    assert!((plain_end - end).abs() < 1e-9, "{plain_end} vs {end}");
    // 496 training tokens over 1,024 (context, next) pairs, ~190 passes: the small set over-fits, and the
    // held-out excess at the stopping step is below the one at the end.
    assert!(best < 240, "best step {best}");
    assert!(es["excess_bits_per_token"].as_f64().unwrap() < last);
}

const FACTS: &str = r#"
[experiment.facts]
corpus = { kind = "facts", keys = 300, exponent = 1.5, key_tokens = 2, key_alphabet = 20, values = 8, documents = 40, facts_per_document = 6 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.batch_size = 8
train.context = 32
train.lr = 1e-2
train.warmup_steps = 10
train.log_every = 50
train.steps = 300
train.eval_every = 50
"#;

/// A facts run scores the value tokens of the held-out documents only (1,024 documents × 6 facts), and its
/// unseen share is what the documents say: recounted here from the rendered tokens (keys as token pairs, not the
/// generator's ranks). A trained model knows the seen facts: its value loss is far below log2 8 = 3 bits, and
/// above what the unseen facts alone must cost it when it spreads their values (it cannot know them).
#[test]
fn a_facts_run_scores_values_only_and_counts_the_unseen_keys() {
    use physlab_generators::facts::{Facts, FactsConfig};
    use std::collections::HashSet;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, FACTS).unwrap();
    let runs = dir.path().join("runs");
    let (ok, out, err) = physlab_in(
        Some(dir.path()),
        &ws,
        &["run", "facts", "--runs", &runs.display().to_string()],
    );
    assert!(ok, "{out}{err}");
    let e = json(&runs.join("facts/base/s0/eval.json"));
    assert_eq!(e["corpus"]["tokens"].as_u64(), Some(1024 * 6));
    assert_eq!(e["corpus"]["documents"].as_u64(), Some(1024));
    assert_eq!(e["facts"]["held_out_facts"].as_u64(), Some(1024 * 6));
    assert_eq!(e["facts"]["training_facts"].as_u64(), Some(240));

    let f = Facts::build(
        &FactsConfig {
            keys: 300,
            exponent: 1.5,
            key_tokens: 2,
            key_alphabet: 20,
            values: 8,
            value_tokens: 1,
            documents: 40,
            facts_per_document: 6,
        },
        0,
    )
    .unwrap();
    let keys = |d: u64| -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        f.render_document(d, &mut v);
        v.chunks(3).map(|c| (c[0], c[1])).collect()
    };
    let seen: HashSet<(u32, u32)> = (0..40).flat_map(keys).collect();
    let unseen = (40..40 + 1024)
        .flat_map(keys)
        .filter(|k| !seen.contains(k))
        .count();
    let share = unseen as f64 / (1024.0 * 6.0);
    assert!(share > 0.0);
    // (serde_json's default parser may be one ulp off the printed value.)
    let got = e["facts"]["unseen_fraction"].as_f64().unwrap();
    assert!((got - share).abs() < 1e-12, "{got} vs {share}");
    assert_eq!(
        e["facts"]["distinct_training_keys"].as_u64(),
        Some(seen.len() as u64)
    );

    // The split by seen and unseen keys averages back to the whole, at the end and at the early-stopping step,
    // and a fact the training set showed costs less than one it never did.
    let f = &e["facts"];
    let mix = |seen: &str, unseen: &str| {
        (1.0 - share) * f[seen].as_f64().unwrap() + share * f[unseen].as_f64().unwrap()
    };
    let end = e["corpus"]["excess_bits_per_token"].as_f64().unwrap();
    let whole = mix("seen_bits_per_fact", "unseen_bits_per_fact");
    assert!((whole - end).abs() < 1e-9, "{whole} vs {end}");
    let best = mix("seen_bits_per_fact_at_best", "unseen_bits_per_fact_at_best");
    let stopped = e["early_stopping"]["excess_bits_per_token"]
        .as_f64()
        .unwrap();
    assert!((best - stopped).abs() < 1e-9, "{best} vs {stopped}");
    assert!(f["seen_bits_per_fact"].as_f64() < f["unseen_bits_per_fact"].as_f64());

    // The value loss under the key law (all 300 ranks scored once each, p_k-weighted): what the held-out sample
    // estimates. The sample's mean of 6,144 costs of 0 to ~5 bits has a standard error of at most ~0.03 bits,
    // so 0.15 is five of them. The bits held count the facts the model knows, at most all 300 × 3 bits.
    let expected = f["expected_value_bits_per_fact"].as_f64().unwrap();
    assert!((expected - end).abs() < 0.15, "{expected} vs {end}");
    let at_best = f["expected_value_bits_per_fact_at_best"].as_f64().unwrap();
    assert!((at_best - stopped).abs() < 0.15, "{at_best} vs {stopped}");
    assert_eq!(f["expected_top_ranks"].as_u64(), Some(300));
    assert_eq!(f["expected_tail_mass"].as_f64(), Some(0.0));
    assert!(f["expected_tail_bits_per_fact"].is_null());
    let held = f["stored_value_bits"].as_f64().unwrap();
    assert!(held > 0.0 && held <= 300.0 * 3.0, "{held}");
    assert!((f["stored_facts"].as_f64().unwrap() - held / 3.0).abs() < 1e-9);
    let params = e["corpus"]["params"]["total"].as_f64().unwrap();
    assert!((f["stored_bits_per_param"].as_f64().unwrap() - held / params).abs() < 1e-12);
    // Held as the most frequent facts, those bits would leave at most the whole mass's cost and at least nothing.
    let quanta = f["quanta_value_bits_per_fact"].as_f64().unwrap();
    assert!((0.0..3.0).contains(&quanta), "{quanta}");
    let curve = std::fs::read_to_string(runs.join("facts/base/s0/curve.jsonl")).unwrap();
    // Steps 0, 50, …, 300.
    assert_eq!(
        curve.matches("\"expected/value_bits_per_fact\"").count(),
        7,
        "{curve}"
    );

    let loss = e["early_stopping"]["excess_bits_per_token"]
        .as_f64()
        .unwrap();
    assert!(
        loss < 0.5 * 3.0,
        "the seen facts are learned: {loss} bits/fact"
    );
    assert!(
        loss > 0.5 * share * 3.0,
        "the unseen facts cost: {loss} vs {share}"
    );
}
