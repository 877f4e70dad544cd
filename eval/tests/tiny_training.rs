//! End to end on CPU: generate a tiny bioS, train a tiny GPT2-rotary, evaluate the bits.

use physlab_eval::evaluate_bios;
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::train::{load_checkpoint, train, MetricsLine};
use physlab_trainer::{Cpu, CpuTrain, ModelConfig, TrainConfig};

#[test]
fn loss_falls_and_bits_are_positive_and_at_most_the_perfect_recall_bits() {
    let dir = tempfile::tempdir().unwrap();
    let bios = BioS::build(
        &BioSConfig {
            people: 60,
            ..BioSConfig::default()
        },
        4,
    )
    .unwrap();
    let manifest = bios.write(&dir.path().join("data"), |_| {}).unwrap();
    let data = Dataset::open(&dir.path().join("data")).unwrap();
    let sources = mixture_sources(&data, Some(&bios)).unwrap();
    let mut windows = mixer(&sources, 4).unwrap();
    let model_cfg = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 64,
        ..ModelConfig::default()
    };
    let train_cfg = TrainConfig {
        steps: 240,
        batch_size: 8,
        context: 96,
        lr: 3e-3,
        warmup_steps: 10,
        log_every: 10,
        ..TrainConfig::default()
    };
    let shape = model_cfg
        .shape(manifest.vocab_size, train_cfg.context)
        .unwrap();
    let device = Default::default();
    let (model, outcome) = train::<CpuTrain>(
        &train_cfg,
        shape,
        &mut windows,
        manifest.tokens_for_exposures(1.0),
        4,
        dir.path(),
        &device,
        false,
    )
    .unwrap();

    // metrics.jsonl has one line per interval and the loss falls well below its start (ln V ≈ 8 at init).
    let lines: Vec<MetricsLine> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 24);
    assert!(
        lines[0].loss > 6.0,
        "initial loss {} should be near ln V",
        lines[0].loss
    );
    assert!(
        outcome.final_loss < 0.6 * outcome.first_loss,
        "loss {} → {}",
        outcome.first_loss,
        outcome.final_loss
    );

    let params = shape.num_params(manifest.used_vocab);
    let eval = evaluate_bios::<Cpu>(&model, &bios, params, 16, &device);
    assert!(
        eval.bits > 0.0,
        "bits {} (p1 {}, p2 {})",
        eval.bits,
        eval.loss_name,
        eval.loss_value
    );
    assert!(
        eval.bits <= eval.capacity_ratio_max * params.total as f64,
        "bits {} above R^max·P",
        eval.bits
    );
    assert!(
        (eval.capacity_ratio_max * params.total as f64
            - manifest.fact("perfect_recall_bits").unwrap())
        .abs()
            < 1e-6
    );
    assert_eq!(eval.attributes.len(), 7, "six attributes and the pronoun");

    // The checkpoint reloads to the same model: identical evaluation.
    let (reloaded, _) = load_checkpoint::<Cpu>(&outcome.checkpoint, &device).unwrap();
    let again = evaluate_bios::<Cpu>(&reloaded, &bios, params, 16, &device);
    assert_eq!(eval, again);
}
