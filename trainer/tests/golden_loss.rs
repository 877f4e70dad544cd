//! Golden loss: the first 30 steps of a tiny deterministic CPU run, pinned in `tests/golden/loss-tiny.json`. A
//! change that alters training (data order, initialisation, the model, the optimizer, the schedule) moves these
//! numbers and fails here. To accept such a change deliberately, regenerate the file:
//!
//! ```sh
//! PHYSLAB_BLESS=1 cargo test --release -p physlab-trainer --test golden_loss
//! ```
//!
//! Tolerance: 1e-4 relative per step. Same binary and machine give identical numbers; the tolerance leaves room
//! for a different SIMD path on another x86-64 processor (float sums in another order), while any change of the
//! training itself moves the loss by far more (the test checks that another seed moves it by > 1e-2).

use std::path::PathBuf;

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::train::{train, MetricsLine};
use physlab_trainer::{CpuTrain, ModelConfig, TrainConfig};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/loss-tiny.json")
}

fn run(seed: u64) -> Vec<f64> {
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
        steps: 30,
        batch_size: 4,
        context: 64,
        lr: 3e-3,
        warmup_steps: 5,
        log_every: 1,
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
    train::<CpuTrain>(
        &cfg,
        shape,
        &mut windows,
        manifest.tokens_for_exposures(1.0),
        seed,
        dir.path(),
        &Default::default(),
        false,
    )
    .unwrap();
    std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<MetricsLine>(l).unwrap().loss)
        .collect()
}

#[test]
fn the_first_steps_of_a_tiny_run_match_the_pinned_losses() {
    let losses = run(0);
    assert_eq!(losses.len(), 30);
    let path = golden_path();
    if std::env::var_os("PHYSLAB_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let json = serde_json::json!({
            "what": "training loss (nats/token) of steps 1..30: bioS(40 people, seed 1), gpt2-1-1 d=64, batch 4 x 64, lr 3e-3, warm-up 5, seed 0, burn-flex f32",
            "losses": losses,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate it with PHYSLAB_BLESS=1)", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let golden: Vec<f64> = v["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(golden.len(), losses.len());
    for (i, (g, l)) in golden.iter().zip(&losses).enumerate() {
        assert!(
            ((g - l) / g).abs() < 1e-4,
            "step {}: loss {l} vs pinned {g}; if training was changed on purpose, regenerate with PHYSLAB_BLESS=1",
            i + 1
        );
    }
    // The pinned curve learns: its last steps are well below its first.
    assert!(
        golden[29] < golden[0] * 0.9,
        "{} → {}",
        golden[0],
        golden[29]
    );
    // And the check can fail: another seed (initialisation and data order) moves the curve far beyond the
    // tolerance.
    let other = run(1);
    let moved = golden
        .iter()
        .zip(&other)
        .map(|(g, l)| ((g - l) / g).abs())
        .fold(0.0, f64::max);
    assert!(moved > 1e-2, "another seed moved the curve by only {moved}");
}
