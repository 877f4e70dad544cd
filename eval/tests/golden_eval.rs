//! Golden evaluation: the evaluation outputs (p1, p2, bits, R, whole-value accuracy) of a tiny deterministic CPU
//! run, pinned in `tests/golden/eval-tiny.json`, the way `trainer/tests/golden_loss.rs` pins training. A change
//! that alters the evaluator (the Def. 4.3 bits, which tokens count for p1 and p2, the canonical-order evaluation
//! biography, the parameter count) or the training before it moves these numbers and fails here. To accept such
//! a change deliberately, regenerate the file:
//!
//! ```sh
//! PHYSLAB_BLESS=1 cargo test --release -p physlab-eval --test golden_eval
//! ```
//!
//! Tolerance: 1e-4 relative (the golden loss's, for another SIMD path's float sums); the test checks that another
//! seed moves the bits by far more.

use std::path::PathBuf;

use physlab_eval::{evaluate_bios, BioSEval};
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::train::train;
use physlab_trainer::{CpuTrain, ModelConfig, TrainConfig};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eval-tiny.json")
}

fn run(seed: u64) -> BioSEval {
    let dir = tempfile::tempdir().unwrap();
    let bios = BioS::build(
        &BioSConfig {
            people: 40,
            ..BioSConfig::default()
        },
        1,
    )
    .unwrap();
    let manifest = bios.write(&dir.path().join("data"), |_| {}).unwrap();
    let ds = Dataset::open(&dir.path().join("data")).unwrap();
    let sources = mixture_sources(&ds, Some(&bios)).unwrap();
    let mut windows = mixer(&sources, seed).unwrap();
    let cfg = TrainConfig {
        steps: 120,
        batch_size: 8,
        context: 96,
        lr: 3e-3,
        warmup_steps: 10,
        log_every: 20,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 64,
        ..ModelConfig::default()
    }
    .shape(manifest.vocab_size, cfg.context)
    .unwrap();
    let device = Default::default();
    let (model, _) = train::<CpuTrain>(
        &cfg,
        shape,
        &mut windows,
        manifest.tokens_for_exposures(1.0),
        seed,
        dir.path(),
        &device,
        false,
    )
    .unwrap();
    evaluate_bios(
        &model,
        &bios,
        shape.num_params(manifest.used_vocab),
        16,
        &device,
    )
}

fn figures(e: &BioSEval) -> Vec<(&'static str, f64)> {
    let whole = e
        .attributes
        .iter()
        .map(|a| a.whole_value_accuracy)
        .sum::<f64>()
        / e.attributes.len() as f64;
    vec![
        ("loss_name", e.loss_name),
        ("loss_value", e.loss_value),
        ("bits", e.bits),
        ("capacity_ratio_used_rows", e.capacity_ratio_used_rows),
        ("perfect_recall_bits", e.perfect_recall_bits),
        ("mean_whole_value_accuracy", whole),
    ]
}

#[test]
fn the_evaluation_of_a_tiny_run_matches_the_pinned_figures() {
    let got = figures(&run(0));
    let path = golden_path();
    if std::env::var_os("PHYSLAB_BLESS").is_some() {
        let mut m = serde_json::Map::new();
        m.insert("what".into(), "evaluate_bios after 120 steps: bioS(40 people, seed 1), gpt2-1-1 d=64, batch 8 x 96, lr 3e-3, warm-up 10, seed 0, burn-flex f32".into());
        for (k, v) in &got {
            m.insert((*k).into(), (*v).into());
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate it with PHYSLAB_BLESS=1)", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (k, g) in &got {
        let pinned = v[*k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {}", path.display()));
        let tol = 1e-4 * pinned.abs().max(1e-3);
        assert!(
            (g - pinned).abs() <= tol,
            "{k}: {g} vs pinned {pinned}; if the evaluator or training changed on purpose, regenerate with PHYSLAB_BLESS=1"
        );
    }
    // The pinned run learned something, and stored fewer bits than perfect recall.
    let bits = v["bits"].as_f64().unwrap();
    assert!(bits > 0.0 && bits < v["perfect_recall_bits"].as_f64().unwrap());
    // And the check can fail: another seed moves the bits far beyond the tolerance.
    let other = figures(&run(1));
    let moved = ((other[2].1 - bits) / bits).abs();
    assert!(moved > 1e-2, "another seed moved the bits by only {moved}");
}
