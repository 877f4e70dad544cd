//! AdamW as in PyTorch (`torch.optim.AdamW`), with decoupled weight decay applied only to weights of rank ≥ 2
//! (matrices and embeddings; not biases or LayerNorm gains, as nanoGPT groups them), and GPT-style gradient
//! clipping by the *global* norm over all parameters (burn's own clipping works per tensor).
//!
//! The update of a parameter θ with gradient g at step t (bias-corrected moments, ε outside the square root):
//! m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  θ ← θ·(1 − lr·wd·[rank ≥ 2]) − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, SimpleOptimizer};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};

use crate::kernels::{AdamWStep, Kernels};

#[derive(Clone, Debug)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// Per-parameter state: the step count and both moments.
#[derive(Record, Clone)]
pub struct AdamWState<B: Backend, const D: usize> {
    pub time: usize,
    pub moment_1: Tensor<B, D>,
    pub moment_2: Tensor<B, D>,
}

impl<B: Kernels> SimpleOptimizer<B> for AdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (b1, b2) = (self.beta1, self.beta2);
        // One fused pass where the backend has it (CPU), with the same arithmetic as the tensor ops below.
        let time = state.as_ref().map_or(1, |s| s.time + 1);
        let hyper = AdamWStep {
            lr,
            beta1: b1,
            beta2: b2,
            epsilon: self.epsilon,
            decay: if D >= 2 {
                lr * self.weight_decay as f64
            } else {
                0.0
            },
            time,
        };
        let prim = |t: &Tensor<B, D>| t.clone().into_primitive().tensor();
        let moments = state
            .as_ref()
            .map(|s| (prim(&s.moment_1), prim(&s.moment_2)));
        if let Some((p, m, v)) = B::fused_adamw(
            &prim(&tensor),
            &prim(&grad),
            moments.as_ref().map(|(m, v)| (m, v)),
            hyper,
        ) {
            let t = |p| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(p));
            return (
                t(p),
                Some(AdamWState {
                    time,
                    moment_1: t(m),
                    moment_2: t(v),
                }),
            );
        }
        let state = match state {
            Some(s) => AdamWState {
                time: s.time + 1,
                moment_1: s
                    .moment_1
                    .mul_scalar(b1)
                    .add(grad.clone().mul_scalar(1.0 - b1)),
                moment_2: s
                    .moment_2
                    .mul_scalar(b2)
                    .add(grad.square().mul_scalar(1.0 - b2)),
            },
            None => AdamWState {
                time: 1,
                moment_1: grad.clone().mul_scalar(1.0 - b1),
                moment_2: grad.square().mul_scalar(1.0 - b2),
            },
        };
        let t = state.time as i32;
        let m_hat = state.moment_1.clone().div_scalar(1.0 - b1.powi(t));
        let v_hat = state.moment_2.clone().div_scalar(1.0 - b2.powi(t));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(self.epsilon));
        let decay = if D >= 2 {
            lr * self.weight_decay as f64
        } else {
            0.0
        };
        let decayed = if decay == 0.0 {
            tensor
        } else {
            tensor.mul_scalar(1.0 - decay)
        };
        (decayed - delta.mul_scalar(lr), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AdamWState {
            time: state.time,
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
        }
    }
}

impl AdamW {
    pub fn init<B: crate::kernels::TrainBackend, M: AutodiffModule<B>>(
        self,
    ) -> OptimizerAdaptor<AdamW, M, B> {
        OptimizerAdaptor::from(self)
    }
}

/// Sums the squares of every gradient of `module`'s parameters (on the inner backend).
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of the gradients of `module`.
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = SquaredNorm::<B> { grads, total: None };
    module.visit(&mut v);
    match v.total {
        Some(t) => {
            let s: f64 = burn::tensor::ElementConversion::elem(t.into_scalar());
            s.sqrt()
        }
        None => 0.0,
    }
}

/// Clips the gradients to a global L2 norm of at most `max_norm` (0: no clipping) and returns the norm before
/// clipping. Scaling by `max_norm / norm` when the norm is larger, as `torch.nn.utils.clip_grad_norm_`
/// (which adds 1e-6 to the norm).
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = grad_norm::<B, M>(module, grads);
    if max_norm > 0.0 && norm > max_norm {
        let mut s = Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
        };
        module.visit(&mut s);
    }
    norm
}
