//! A top-1 mixture of experts (Switch Transformer, Fedus et al. 2021), as in Part 3.3 §9: a linear router picks
//! one expert (a GELU MLP d→h→d) per token and scales its output by the router probability; each expert takes at
//! most `capacity = ceil(capacity_factor · tokens / experts)` tokens of a batch, in order, and a token over
//! capacity skips the layer (the residual carries it). The load-balancing loss is E · Σ_e f_e · P_e, with f_e the
//! share of tokens routed to expert e and P_e its mean router probability (1 when perfectly balanced).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::layers::Mlp;

#[derive(Module, Debug)]
pub struct Moe<B: Backend> {
    pub router: Linear<B>,
    pub experts: Vec<Mlp<B>>,
    pub capacity_factor: f64,
}

impl<B: crate::kernels::Kernels> Moe<B> {
    /// x: [batch, T, d] → (output [batch, T, d], load-balancing loss [1]).
    pub fn forward(&self, x: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 1>) {
        let [b, t, d] = x.dims();
        let n = b * t;
        let e = self.experts.len();
        let device = x.device();
        let flat = x.reshape([n, d]);
        let probs = softmax(self.router.forward(flat.clone()), 1);
        let choice: Vec<i64> = probs.clone().argmax(1).into_data().iter::<i64>().collect();
        // An infinite factor (evaluation: `Gpt::without_token_dropping`) saturates to no limit.
        let capacity = ((self.capacity_factor * n as f64) / e as f64).ceil() as usize;
        let mut out = Tensor::<B, 2>::zeros([n, d], &device);
        let mut counts = vec![0usize; e];
        for (k, expert) in self.experts.iter().enumerate() {
            let ids: Vec<i64> = (0..n as i64)
                .filter(|&i| choice[i as usize] == k as i64)
                .take(capacity)
                .collect();
            counts[k] = choice.iter().filter(|&&c| c == k as i64).count();
            if ids.is_empty() {
                continue;
            }
            let m = ids.len();
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [m]), &device);
            let xs = flat.clone().select(0, idx.clone());
            let gate = probs.clone().select(0, idx.clone()).narrow(1, k, 1); // [m, 1]
            let ys = expert.forward(xs.unsqueeze_dim::<3>(0)).reshape([m, d]) * gate;
            out = out.select_assign(0, idx, ys, IndexingUpdateOp::Add);
        }
        let f: Vec<f32> = counts.iter().map(|&c| c as f32 / n as f32).collect();
        let f = Tensor::<B, 1>::from_floats(f.as_slice(), &device);
        let p_mean = probs.mean_dim(0).reshape([e]);
        let aux = (f * p_mean).sum().mul_scalar(e as f64);
        (out.reshape([b, t, d]), aux)
    }
}
