//! Post-training quantization: error bounds, levels per channel, which parameters are touched.

use physlab_trainer::burn::module::{Module, ModuleVisitor, Param};
use physlab_trainer::burn::tensor::{Distribution, Tensor};
use physlab_trainer::quant::{fake_quantize, quantize, Quant};
use physlab_trainer::{Cpu, ModelConfig};

fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Symmetric per-channel rounding: every weight moves by at most half a step (scale/2, scale = max|w|/q_max of
/// its channel), each channel holds at most 2·q_max + 1 levels, the channel's largest weight is exact, and a
/// zero channel stays zero.
#[test]
fn per_channel_rounding_is_within_half_a_step() {
    let device = Default::default();
    let mut x = Tensor::<Cpu, 2>::random([64, 32], Distribution::Normal(0.0, 1.0), &device);
    x = x.slice_assign([0..64, 5..6], Tensor::zeros([64, 1], &device));
    let xs = values(x.clone());
    for (q, levels) in [(Quant::Int8, 255), (Quant::Int4, 15)] {
        for channel_dim in [0usize, 1] {
            let y = values(fake_quantize(x.clone(), channel_dim, q));
            let (rows, cols) = (64, 32);
            let n_channels = if channel_dim == 0 { rows } else { cols };
            for c in 0..n_channels {
                let idx: Vec<usize> = if channel_dim == 0 {
                    (0..cols).map(|j| c * cols + j).collect()
                } else {
                    (0..rows).map(|i| i * cols + c).collect()
                };
                let max = idx.iter().map(|&i| xs[i].abs()).fold(0.0f32, f32::max);
                let step = max / q.q_max() as f32;
                let mut seen: Vec<i64> = Vec::new();
                for &i in &idx {
                    assert!(
                        (xs[i] - y[i]).abs() <= step / 2.0 + 1e-6,
                        "{q:?} dim {channel_dim}"
                    );
                    if step > 0.0 {
                        seen.push((y[i] / step).round() as i64);
                    } else {
                        assert_eq!(y[i], 0.0);
                    }
                }
                seen.sort();
                seen.dedup();
                assert!(seen.len() <= levels);
                if max > 0.0 {
                    let at_max = idx.iter().find(|&&i| xs[i].abs() == max).unwrap();
                    assert!(
                        (y[*at_max] - xs[*at_max]).abs() < 1e-5,
                        "the largest weight is a level"
                    );
                }
            }
        }
    }
    // int4 is coarser than int8.
    let err = |q| {
        let y = values(fake_quantize(x.clone(), 1, q));
        xs.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f32>()
    };
    assert!(err(Quant::Int4) > 10.0 * err(Quant::Int8));
}

struct Collect(Vec<(usize, Vec<f32>)>);
impl ModuleVisitor<Cpu> for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Cpu, D>>) {
        self.0
            .push((D, p.val().into_data().iter::<f32>().collect()));
    }
}

/// Every weight matrix changes and takes few levels; biases and norm gains do not change.
#[test]
fn quantizing_a_model_touches_matrices_only() {
    let shape = ModelConfig {
        preset: "gpt2-2-1".into(),
        d_model: 32,
        ..ModelConfig::default()
    }
    .shape(60, 16)
    .unwrap();
    let model = shape.init::<Cpu>(&Default::default());
    let mut before = Collect(Vec::new());
    model.visit(&mut before);
    let q = quantize(model, Quant::Int4);
    let mut after = Collect(Vec::new());
    q.visit(&mut after);
    assert_eq!(before.0.len(), after.0.len());
    for ((d, a), (_, b)) in before.0.iter().zip(&after.0) {
        if *d == 2 {
            assert_ne!(a, b, "a matrix is quantized");
            let mut levels: Vec<i64> = b.iter().map(|v| (v * 1e4).round() as i64).collect();
            levels.sort();
            levels.dedup();
            // int4: at most 15 levels per channel; the whole matrix has at most 15 × channels.
            assert!(levels.len() <= 15 * 60, "{}", levels.len());
        } else {
            assert_eq!(a, b, "rank-1 parameters stay f32");
        }
    }
    // The embedding [60, 32] (also the tied output layer) is quantized per token row: each row is an integer
    // multiple of its own max/7.
    let (_, wte) = after
        .0
        .iter()
        .find(|(d, v)| *d == 2 && v.len() == 60 * 32)
        .unwrap();
    for row in wte.chunks(32) {
        let step = row.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 7.0;
        for v in row {
            let k = v / step;
            assert!(
                (k - k.round()).abs() < 1e-3,
                "row value {v} is not a multiple of {step}"
            );
        }
    }
}
