//! Model structure tests: parameter counts by hand, causality, the exposure budget.

use physlab_trainer::burn::module::Module;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::{Cpu, ModelConfig, TrainConfig};

#[test]
fn parameter_counts_match_the_module_and_a_hand_count() {
    let cfg = ModelConfig {
        preset: "gpt2-2-2".into(),
        ..ModelConfig::default()
    };
    let shape = cfg.shape(1000, 64).unwrap();
    assert_eq!(
        (shape.n_layer, shape.n_head, shape.d_model, shape.head_dim()),
        (2, 2, 128, 64)
    );
    assert_eq!(shape.rotary_dims, 16, "1/4 of a 64-dim head");
    let model = shape.init::<Cpu>(&Default::default());
    let counts = shape.num_params(600);
    assert_eq!(counts.total, model.num_params());
    // By hand for d = 128: a block is 12·d² + 13·d = 196,608 + 1,664 = 198,272; two blocks and the final
    // LayerNorm (256) give 396,800 non-embedding; the tied embedding adds 1000·128.
    assert_eq!(counts.non_embedding, 396_800);
    assert_eq!(counts.total, 396_800 + 128_000);
    assert_eq!(
        counts.capacity,
        396_800 + 600 * 128,
        "only the rows of the 600 used tokens count"
    );
}

#[test]
fn a_position_never_sees_later_tokens() {
    let shape = ModelConfig {
        preset: "gpt2-2-2".into(),
        d_model: 32,
        ..ModelConfig::default()
    }
    .shape(50, 16)
    .unwrap();
    let device = Default::default();
    let model = shape.init::<Cpu>(&device);
    let a: Vec<i32> = (0..16).map(|i| i * 7 % 50).collect();
    let mut b = a.clone();
    b[10] = 3; // change one token: logits before position 10 must not move.
    let run = |x: Vec<i32>| -> Vec<f32> {
        let t = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(x, [1, 16]), &device);
        model.forward(t).into_data().iter::<f32>().collect()
    };
    let (la, lb) = (run(a), run(b));
    let v = 50;
    for pos in 0..16 {
        let diff: f32 = (0..v)
            .map(|k| (la[pos * v + k] - lb[pos * v + k]).abs())
            .fold(0.0, f32::max);
        if pos < 10 {
            assert!(diff < 1e-6, "position {pos} changed by {diff}");
        } else if pos == 10 {
            assert!(diff > 1e-6, "position 10 must see its own token");
        }
    }
}

#[test]
fn exposures_convert_to_steps_from_tokens_per_biography() {
    let t = TrainConfig {
        exposures: 100.0,
        batch_size: 16,
        context: 128,
        ..TrainConfig::default()
    };
    // 1000 people × 100 exposures × 64.5 tokens = 6.45M tokens over 2048 per step = 3149.4 → 3150 steps.
    assert_eq!(t.total_steps(1000.0 * 64.5), 3150);
    assert!((t.exposures_of(3150, 1000.0 * 64.5) - 100.0).abs() < 0.05);
    let t = TrainConfig { steps: 7, ..t };
    assert_eq!(t.total_steps(1000.0 * 64.5), 7);
}
