//! Fused against plain where the switch is process-wide: a whole model (loss and the gradient of every parameter,
//! for every family of the zoo) and the AdamW update. One test in this file: it switches the kernel mode
//! (`kernels::set_fused`), which other tests running in parallel threads would see.
//!
//! Tolerance as in `kernels.rs`: |fused − plain| ≤ 2e-5 · max|plain| + 1e-8 per parameter tensor, and 1e-5
//! relative on the loss. The fused AdamW does the tensor ops' f32 arithmetic in the same order: equal within 1 ulp
//! (4 steps, weight decay on and off).

use physlab_trainer::burn::module::{Module, ModuleVisitor, Param};
use physlab_trainer::burn::optim::GradientsParams;
use physlab_trainer::burn::optim::SimpleOptimizer;
use physlab_trainer::burn::tensor::backend::Backend;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::kernels;
use physlab_trainer::model::token_nll;
use physlab_trainer::optim::AdamW;
use physlab_trainer::Cpu;
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

fn adamw_steps<const D: usize>(shape: [usize; D], fused: bool) -> Vec<f32> {
    kernels::set_fused(fused);
    let device = Default::default();
    Cpu::seed(&device, 11);
    let opt = AdamW {
        beta1: 0.9,
        beta2: 0.98,
        epsilon: 1e-6,
        weight_decay: 0.1,
    };
    let mut p = Tensor::<Cpu, D>::random(
        shape,
        physlab_trainer::burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut state = None;
    for step in 0..4 {
        let g = Tensor::<Cpu, D>::random(
            shape,
            physlab_trainer::burn::tensor::Distribution::Normal(0.0, 0.1 * (step + 1) as f64),
            &device,
        );
        let (p2, s2) = opt.step(1e-2, p, g, state);
        p = p2;
        state = s2;
    }
    let s = state.expect("state");
    assert_eq!(s.time, 4);
    let mut out: Vec<f32> = p.into_data().iter::<f32>().collect();
    out.extend(s.moment_1.into_data().iter::<f32>());
    out.extend(s.moment_2.into_data().iter::<f32>());
    out
}

fn assert_ulps(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ulp = f32::EPSILON * y.abs().max(f32::MIN_POSITIVE);
        assert!(
            (x - y).abs() <= ulp,
            "{what}: element {i}: fused {x} vs plain {y}"
        );
    }
}

#[test]
fn fused_and_plain_paths_agree_for_every_family_and_the_optimizer() {
    // AdamW: a matrix (decayed) and a vector (not decayed).
    assert_ulps(
        "adamw [33, 70]",
        &adamw_steps([33, 70], true),
        &adamw_steps([33, 70], false),
    );
    assert_ulps(
        "adamw [517]",
        &adamw_steps([517], true),
        &adamw_steps([517], false),
    );

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
