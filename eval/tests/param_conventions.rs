//! Issue 13's counting conventions. The headline capacity ratio counts every parameter, the token embedding for the
//! whole vocabulary (the paper's count: "all of the model's parameters, with the embedding of the fixed bioS
//! vocabulary", SPEC §5a); the used-rows count stays beside it. And Morris et al.'s memorized bits take the
//! per-sequence maximum of the model and the reference, checked on a hand example.

use physlab_eval::corpus::morris_memorized_bits;
use physlab_eval::evaluate_bios;
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::Dataset;
use physlab_trainer::train::init_model;
use physlab_trainer::{Cpu, ModelConfig};

#[test]
fn the_capacity_ratio_counts_the_whole_vocabulary_and_the_used_rows_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = BioS::build(
        &BioSConfig {
            people: 12,
            ..BioSConfig::default()
        },
        3,
    )
    .unwrap();
    let manifest = data.write(&dir.path().join("data"), |_| {}).unwrap();
    Dataset::open(&dir.path().join("data")).unwrap();
    // Twelve people use a small part of bioS's fixed vocabulary (every pool's tokens).
    assert!(
        manifest.used_vocab * 2 < manifest.vocab_size,
        "used {} of {}",
        manifest.used_vocab,
        manifest.vocab_size
    );
    let d = 32;
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: d,
        ..ModelConfig::default()
    }
    .shape(manifest.vocab_size, 96)
    .unwrap();
    let params = shape.num_params(manifest.used_vocab);
    // By hand (tied embedding, rotary: no position table): the two counts differ by the unused rows only.
    assert_eq!(
        params.total - params.capacity,
        (manifest.vocab_size - manifest.used_vocab) * d
    );
    assert_eq!(params.total, params.non_embedding + manifest.vocab_size * d);
    let device = Default::default();
    let model = init_model::<Cpu>(&shape, 0, &device).unwrap();
    let e = evaluate_bios(&model, &data, params, 8, &device);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    assert!(close(e.capacity_ratio, e.bits / params.total as f64));
    assert!(close(
        e.capacity_ratio_max,
        e.perfect_recall_bits / params.total as f64
    ));
    assert!(close(
        e.capacity_ratio_used_rows,
        e.bits / params.capacity as f64
    ));
    assert!(close(
        e.capacity_ratio_max_used_rows,
        e.perfect_recall_bits / params.capacity as f64
    ));
    // The paper's count is the larger, so its R^max is the smaller.
    assert!(e.capacity_ratio_max < e.capacity_ratio_max_used_rows);
    let table = physlab_eval::render_table("t", &e, 1.0);
    assert!(
        table.contains("parameters (all: the paper's count)"),
        "{table}"
    );
    assert!(table.contains("used rows only"), "{table}");
}

#[test]
fn morris_memorized_bits_take_the_better_model_per_sequence() {
    // Three sequences of 20 reference bits each: the model compresses the first to 10 bits (10 memorized), the
    // second to 30 (worse than the reference: the joint compression keeps the reference's 20, so 0 memorized,
    // not −10), the third to 5 (15 memorized). Morris: 25 bits; the aggregate entropy − NLL would say 60 − 45 = 15.
    let model = [10.0, 30.0, 5.0];
    let reference = [20.0, 20.0, 20.0];
    assert_eq!(morris_memorized_bits(&model, &reference), 25.0);
    let aggregate: f64 = reference.iter().sum::<f64>() - model.iter().sum::<f64>();
    assert_eq!(aggregate, 15.0);
    // Nothing memorized when the model is never better than the reference; everything when it is perfect.
    assert_eq!(morris_memorized_bits(&[20.0, 25.0], &[20.0, 20.0]), 0.0);
    assert_eq!(morris_memorized_bits(&[0.0, 0.0], &[20.0, 7.5]), 27.5);
}
