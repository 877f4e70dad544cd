//! A whole model with the fused kernels against the same model on the plain path: loss and the gradient of every
//! parameter, for every family of the zoo. One test in this file: it switches the process-wide kernel mode
//! (`kernels::set_fused`), which other tests running in parallel threads would see.
//!
//! Tolerance as in `kernels.rs`: |fused − plain| ≤ 2e-5 · max|plain| + 1e-8 per parameter tensor, and 1e-5
//! relative on the loss.

use physlab_trainer::burn::module::{Module, ModuleVisitor, Param};
use physlab_trainer::burn::optim::GradientsParams;
use physlab_trainer::burn::tensor::backend::Backend;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::kernels;
use physlab_trainer::model::token_nll;
use physlab_trainer::{CpuTrain, ModelConfig};

struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor<CpuTrain> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<CpuTrain, D>>) {
        let g = self
            .grads
            .get::<<CpuTrain as physlab_trainer::burn::tensor::backend::AutodiffBackend>::InnerBackend, D>(
                param.id,
            )
            .expect("every parameter gets a gradient");
        self.out.push((
            format!("{:?} {:?}", param.id, g.dims()),
            g.into_data().iter::<f32>().collect(),
        ));
    }
}

fn loss_and_grads(preset: &str, fused: bool) -> (f32, Vec<(String, Vec<f32>)>) {
    kernels::set_fused(fused);
    let device = Default::default();
    CpuTrain::seed(&device, 7);
    let shape = ModelConfig {
        preset: preset.into(),
        d_model: 64,
        experts: 4,
        capacity_factor: 4.0,
        // Larger than GPT-2's 0.02, so that attention is far from uniform and every path carries gradient.
        init_std: 0.3,
        ..ModelConfig::default()
    }
    .shape(97, 24)
    .unwrap();
    let model = shape.init::<CpuTrain>(&device);
    let (b, t) = (3, 24);
    let x: Vec<i32> = (0..b * t).map(|i| (i * 31 + 5) % 97).collect();
    let y: Vec<i32> = (0..b * t).map(|i| (i * 17 + 3) % 97).collect();
    let x = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(x, [b, t]), &device);
    let y = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(y, [b, t]), &device);
    let (logits, aux) = model.forward_aux(x);
    let mut loss = token_nll(logits, y).mean();
    if let Some(a) = aux {
        loss = loss + a.mul_scalar(0.01);
    }
    let value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut c = Collect {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    (value, c.out)
}

#[test]
fn every_family_has_the_same_loss_and_gradients_with_fused_kernels() {
    for preset in [
        "gpt2-2-2",
        "gpt2abs-2-1",
        "gpt2mlp1-1-2",
        "gpt2mlp0-2-2",
        "llama-2-2",
        "moe-1-1",
    ] {
        let (lf, gf) = loss_and_grads(preset, true);
        let (lp, gp) = loss_and_grads(preset, false);
        assert!(
            (lf - lp).abs() <= 1e-5 * lp.abs(),
            "{preset}: loss {lf} fused vs {lp} plain"
        );
        assert_eq!(gf.len(), gp.len());
        for ((name, a), (_, b)) in gf.iter().zip(&gp) {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                worst <= 2e-5 * scale + 1e-8,
                "{preset}: gradient of {name} differs by {worst} (max|plain| {scale})"
            );
        }
    }
    kernels::set_fused(true);
}
