//! A top-1 mixture of experts (Switch Transformer, Fedus et al. 2021), as in Part 3.3 §9: a linear router picks
//! one expert (a GELU MLP d→h→d) per token and scales its output by the router probability; each expert takes at
//! most `capacity = ceil(capacity_factor · tokens / experts)` tokens of a batch, in order, and a token over
//! capacity skips the layer (the residual carries it). The load-balancing loss is E · Σ_e f_e · P_e, with f_e the
//! share of tokens routed to expert e and P_e its mean router probability (1 when perfectly balanced).
//!
//! What a layer did with a batch (tokens per expert, tokens served within capacity, the chosen experts'
//! probabilities) is kept, while [`record_routing`] runs, as one [`Routing`] per layer call on the calling thread:
//! the training log's dropped share and gate, and the evaluation's per-layer routing, read it.

use std::cell::RefCell;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::layers::Mlp;

/// One mixture layer's routing of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// Tokens in the batch.
    pub tokens: usize,
    /// Tokens routed to each expert (before capacity).
    pub counts: Vec<usize>,
    /// Tokens that went through their expert (the rest were over its capacity and skipped the layer).
    pub served: usize,
    /// Σ over the batch of the chosen expert's router probability (the gate that scales its output).
    pub gate_sum: f64,
    /// Each token's chosen expert, in the batch's order (row-major over [batch, T]).
    pub choices: Vec<u32>,
}

thread_local! {
    static ROUTING: RefCell<Option<Vec<Routing>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, beside its result, the routing of every mixture layer that ran on this thread meanwhile,
/// in call order (a model of L mixture layers gives L per forward pass). Nested calls each see their own; a model
/// without a mixture gives none. Recording costs one more read of the router's probabilities per layer.
pub fn record_routing<T>(f: impl FnOnce() -> T) -> (T, Vec<Routing>) {
    let outer = ROUTING.with(|r| r.borrow_mut().replace(Vec::new()));
    let out = f();
    let mine = ROUTING.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (out, mine.unwrap_or_default())
}

fn recording() -> bool {
    ROUTING.with(|r| r.borrow().is_some())
}

/// Tokens an expert takes from a batch of `tokens`: ⌈factor · tokens / experts⌉ (an infinite factor saturates
/// to no limit).
pub fn capacity(capacity_factor: f64, tokens: usize, experts: usize) -> usize {
    ((capacity_factor * tokens as f64) / experts as f64).ceil() as usize
}

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
        let capacity = capacity(self.capacity_factor, n, e);
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
        if recording() {
            let served = counts.iter().map(|&c| c.min(capacity)).sum();
            let gate_sum: f32 =
                burn::tensor::ElementConversion::elem(probs.clone().max_dim(1).sum().into_scalar());
            let r = Routing {
                tokens: n,
                counts: counts.clone(),
                served,
                gate_sum: gate_sum as f64,
                choices: choice.iter().map(|&c| c as u32).collect(),
            };
            ROUTING.with(|log| {
                if let Some(v) = log.borrow_mut().as_mut() {
                    v.push(r);
                }
            });
        }
        let f: Vec<f32> = counts.iter().map(|&c| c as f32 / n as f32).collect();
        let f = Tensor::<B, 1>::from_floats(f.as_slice(), &device);
        let p_mean = probs.mean_dim(0).reshape([e]);
        let aux = (f * p_mean).sum().mul_scalar(e as f64);
        (out.reshape([b, t, d]), aux)
    }
}

/// One mixture layer's routing over many batches (how the evaluation reports it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LayerRouting {
    /// The layer among the model's mixture layers (0 first).
    pub layer: usize,
    /// Tokens routed.
    pub tokens: u64,
    /// Mean router probability of the chosen expert, the gate its output is scaled by: 1/E for a uniform router,
    /// 1 for a certain one.
    pub gate_mean: f64,
    /// The busiest expert's share of the tokens (1/E when balanced).
    pub top_share: f64,
    /// Experts that received at least one token.
    pub experts_used: usize,
    /// Experts in the layer.
    pub experts: usize,
    /// Share of the tokens that would be over capacity at `capacity_factor`, in the batches as they ran.
    pub over_capacity: f64,
    /// The capacity factor `over_capacity` is counted at (the training one).
    pub capacity_factor: f64,
}

/// Per-layer routing from what [`record_routing`] recorded over forward passes of a model with `layers` mixture
/// layers (record i belongs to layer i mod `layers`), counting the tokens over capacity at `capacity_factor`.
pub fn summarize_routing(
    records: &[Routing],
    layers: usize,
    capacity_factor: f64,
) -> Vec<LayerRouting> {
    (0..layers)
        .filter_map(|layer| {
            let mine: Vec<&Routing> = records.iter().skip(layer).step_by(layers).collect();
            let experts = mine.first()?.counts.len();
            let tokens: usize = mine.iter().map(|r| r.tokens).sum();
            let mut load = vec![0usize; experts];
            let mut over = 0usize;
            for r in &mine {
                let cap = capacity(capacity_factor, r.tokens, experts);
                for (l, &c) in load.iter_mut().zip(&r.counts) {
                    *l += c;
                    over += c.saturating_sub(cap);
                }
            }
            let t = tokens.max(1) as f64;
            Some(LayerRouting {
                layer,
                tokens: tokens as u64,
                gate_mean: mine.iter().map(|r| r.gate_sum).sum::<f64>() / t,
                top_share: load.iter().copied().max().unwrap_or(0) as f64 / t,
                experts_used: load.iter().filter(|&&c| c > 0).count(),
                experts,
                over_capacity: over as f64 / t,
                capacity_factor,
            })
        })
        .collect()
}
