//! AdamW and global-norm clipping against hand-computed values.

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use physlab_trainer::optim::{clip_grad_norm, grad_norm, AdamW};
use physlab_trainer::CpuTrain;

#[derive(Module, Debug)]
struct Two<B: burn::tensor::backend::Backend> {
    w: Param<Tensor<B, 2>>,
    b: Param<Tensor<B, 1>>,
}

fn setup() -> (Two<CpuTrain>, GradientsParams) {
    let dev = Default::default();
    let two = Two::<CpuTrain> {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.5, 4.0], [2, 2]),
            &dev,
        )),
        b: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![3.0f32, -1.0], [2]),
            &dev,
        )),
    };
    // loss = Σ w·cw + Σ b·cb: the gradients are cw = [3, 0, 0, 4] and cb = [0, 12].
    let cw = Tensor::<CpuTrain, 2>::from_data(
        TensorData::new(vec![3.0f32, 0.0, 0.0, 4.0], [2, 2]),
        &dev,
    );
    let cb = Tensor::<CpuTrain, 1>::from_data(TensorData::new(vec![0.0f32, 12.0], [2]), &dev);
    let loss = (two.w.val() * cw).sum() + (two.b.val() * cb).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &two);
    (two, grads)
}

fn values<const D: usize>(t: Tensor<CpuTrain, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// ‖g‖ = sqrt(3² + 4² + 12²) = 13 exactly; clipping to 6.5 halves every gradient (factor 6.5 / (13 + 1e-6)).
#[test]
fn global_norm_clipping_scales_all_gradients_together() {
    let (two, mut grads) = setup();
    assert!((grad_norm::<CpuTrain, _>(&two, &grads) - 13.0).abs() < 1e-6);
    let before = clip_grad_norm::<CpuTrain, _>(&two, &mut grads, 6.5);
    assert!((before - 13.0).abs() < 1e-6);
    assert!((grad_norm::<CpuTrain, _>(&two, &grads) - 6.5).abs() < 1e-5);
    // A bound above the norm leaves the gradients alone.
    let (two, mut grads) = setup();
    clip_grad_norm::<CpuTrain, _>(&two, &mut grads, 100.0);
    assert!((grad_norm::<CpuTrain, _>(&two, &grads) - 13.0).abs() < 1e-6);
}

/// First AdamW step (PyTorch's formula): m̂ = g, v̂ = g², so θ1 = θ0·(1 − lr·wd) − lr·g/(|g| + ε) for a matrix, and
/// θ0 − lr·g/(|g| + ε) for a vector (no decay on rank-1 parameters). lr = 0.1, wd = 0.5, ε = 1e-6.
#[test]
fn adamw_decays_only_matrices_and_matches_the_closed_form() {
    let (two, grads) = setup();
    let mut optim = AdamW {
        beta1: 0.9,
        beta2: 0.98,
        epsilon: 1e-6,
        weight_decay: 0.5,
    }
    .init::<CpuTrain, Two<CpuTrain>>();
    let two = optim.step(0.1, two, grads);
    let step = |g: f32| {
        if g == 0.0 {
            0.0
        } else {
            0.1 * g / (g.abs() + 1e-6)
        }
    };
    let w0 = [1.0f32, -2.0, 0.5, 4.0];
    let gw = [3.0f32, 0.0, 0.0, 4.0];
    let want_w: Vec<f32> = w0
        .iter()
        .zip(gw)
        .map(|(w, g)| w * (1.0 - 0.05) - step(g))
        .collect();
    let b0 = [3.0f32, -1.0];
    let gb = [0.0f32, 12.0];
    let want_b: Vec<f32> = b0.iter().zip(gb).map(|(b, g)| b - step(g)).collect();
    for (got, want) in values(two.w.val()).iter().zip(&want_w) {
        assert!((got - want).abs() < 1e-6, "w: {got} vs {want}");
    }
    for (got, want) in values(two.b.val()).iter().zip(&want_b) {
        assert!((got - want).abs() < 1e-6, "b: {got} vs {want}");
    }
}
