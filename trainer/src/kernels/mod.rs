//! Fused kernels through burn's backend extension: linear layers, GELU, LayerNorm, per-token cross-entropy and
//! causal self-attention with rotary embedding, each with a real backward, and the AdamW update.
//!
//! The model calls the functions of this module ([`linear`], [`gelu`], [`silu`], [`layer_norm`], [`token_nll`],
//! [`causal_attention`]) instead of composing burn ops; `crate::optim` asks for [`Kernels::fused_adamw`].
//! [`Kernels`] is implemented for every backend the lab uses:
//! - `Flex` (CPU) runs hand-written kernels ([`flex`]) on the raw f32 buffers: one pass per op instead of a chain
//!   of element-wise ops, layout copies and a T×T mask; rows and (batch, head) pairs spread over both cores.
//! - `Autodiff<B>` records one graph node per fused op whose backward calls the inner backend's backward kernel,
//!   or, when the inner backend has no fused kernel (CUDA, or a dtype other than f32), falls back to the plain
//!   composition, which autodiff differentiates op by op.
//! - Any other backend (`Cuda`) uses the plain composition ([`plain`]) unchanged.
//!
//! Every fused kernel is checked against the plain path, forward and backward, in `trainer/tests/kernels.rs` and
//! `kernels_model.rs` (the tolerances are stated there). `PHYSLAB_KERNELS=plain` (or [`set_fused`]) turns the fused kernels off, so a
//! bench can time both paths in one process.

pub mod flex;
pub mod math;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Bool, Int, Tensor, TensorPrimitive};

/// The shape of a causal self-attention: heads, rotated dims per head (GPT-NeoX rotate-half on the first
/// `rotary_dims` of each head), rotary base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    pub n_head: usize,
    pub rotary_dims: usize,
    pub rope_base: f64,
}

/// The scalars of one AdamW step (see `crate::optim`): `decay` = lr·wd for weights of rank ≥ 2, else 0; `time`
/// counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub decay: f64,
    pub time: usize,
}

// 0 = not read yet, 1 = fused, 2 = plain.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the fused kernels are used (default yes; `PHYSLAB_KERNELS=plain` turns them off).
pub fn fused_enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let fused = std::env::var("PHYSLAB_KERNELS").as_deref() != Ok("plain");
            MODE.store(if fused { 1 } else { 2 }, Ordering::Relaxed);
            fused
        }
    }
}

/// Turns the fused kernels on or off for the whole process (benches compare both paths this way).
pub fn set_fused(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// A backend with the lab's kernels. The `k_*` functions are what models call; the `fused_*` functions are a
/// backend's raw kernels (`None`: it has none for this input, use the plain composition).
pub trait Kernels: Backend {
    /// The training precision `train.precision = "auto"` means on this backend (see `crate::precision`): f32,
    /// unless a backend says otherwise (CUDA: bf16-mixed).
    fn default_precision() -> crate::precision::Precision {
        crate::precision::Precision::F32
    }

    /// GELU, erf form. The result may come back as a 2-D view of the input's shape ([`gelu`] restores it).
    fn k_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match Self::fused_gelu(&x) {
            Some(y) => y,
            None => prim(plain::gelu(tensor::<Self, 2>(flat2::<Self>(x)))),
        }
    }

    /// SiLU (x·σ(x), LLaMA's gate). Element-wise, as [`Kernels::k_gelu`].
    fn k_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match Self::fused_silu(&x) {
            Some(y) => y,
            None => prim(plain::silu(tensor::<Self, 2>(flat2::<Self>(x)))),
        }
    }

    /// −ln softmax(logits)[target] per position: logits `[.., V]`, targets `[..]` → `[..]`.
    fn k_token_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        match Self::fused_cross_entropy(&logits, &targets) {
            Some((nll, _lse)) => nll,
            None => prim(plain::token_nll_flat::<Self>(logits, targets)),
        }
    }

    /// Causal self-attention with rotary embedding: qkv `[B, T, 3·d]` (laid out `[B, T, 3, heads, head_dim]`)
    /// → `[B, T, d]` (laid out `[B, T, heads, head_dim]`), before the output projection.
    fn k_causal_attention(qkv: FloatTensor<Self>, spec: AttentionSpec) -> FloatTensor<Self> {
        match Self::fused_attention(&qkv, spec) {
            Some((y, _probs)) => y,
            None => prim(plain::causal_attention(tensor::<Self, 3>(qkv), spec)),
        }
    }

    /// LayerNorm over the last dim: (x − mean)/√(var + eps)·γ + β (biased variance, as PyTorch and burn).
    fn k_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match Self::fused_layer_norm(&x, &gamma, &beta, eps) {
            Some((y, _stats)) => y,
            None => plain_layer_norm::<Self>(x, gamma, beta, eps),
        }
    }

    /// y `[N, out]` = x `[N, in]` · W (+ b), W `[in, out]` or, `transposed`, `[out, in]` (a tied embedding table
    /// as the output head).
    fn k_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: Option<FloatTensor<Self>>,
        transposed: bool,
    ) -> FloatTensor<Self> {
        match Self::fused_linear(&x, &w, b.as_ref(), transposed) {
            Some(y) => y,
            None => plain_linear::<Self>(x, w, b, transposed),
        }
    }

    fn fused_gelu(_x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }
    fn fused_silu(_x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }
    /// One AdamW update of a parameter in one pass: (θ, m, v) after the step (`moments` None at the first).
    fn fused_adamw(
        _param: &FloatTensor<Self>,
        _grad: &FloatTensor<Self>,
        _moments: Option<(&FloatTensor<Self>, &FloatTensor<Self>)>,
        _hyper: AdamWStep,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }
    fn fused_linear(
        _x: &FloatTensor<Self>,
        _w: &FloatTensor<Self>,
        _b: Option<&FloatTensor<Self>>,
        _transposed: bool,
    ) -> Option<FloatTensor<Self>> {
        None
    }
    /// (dx, dW in the weight's stored layout, db when there is a bias).
    fn fused_linear_backward(
        _x: FloatTensor<Self>,
        _w: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
        _has_bias: bool,
        _transposed: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    ) {
        unreachable!("fused_linear_backward without fused_linear")
    }
    /// (y, per-row (mean, 1/σ) `[rows, 2]`).
    fn fused_layer_norm(
        _x: &FloatTensor<Self>,
        _gamma: &FloatTensor<Self>,
        _beta: &FloatTensor<Self>,
        _eps: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }
    /// (dx, dγ, dβ).
    fn fused_layer_norm_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _stats: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        unreachable!("fused_layer_norm_backward without fused_layer_norm")
    }
    fn fused_gelu_backward(_x: FloatTensor<Self>, _dy: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("fused_gelu_backward without fused_gelu")
    }
    fn fused_silu_backward(_x: FloatTensor<Self>, _dy: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("fused_silu_backward without fused_silu")
    }
    /// (nll, logsumexp), both shaped like the targets.
    fn fused_cross_entropy(
        _logits: &FloatTensor<Self>,
        _targets: &IntTensor<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }
    fn fused_cross_entropy_backward(
        _logits: FloatTensor<Self>,
        _targets: IntTensor<Self>,
        _lse: FloatTensor<Self>,
        _dnll: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        unreachable!("fused_cross_entropy_backward without fused_cross_entropy")
    }
    /// (output, attention probabilities `[B, heads, T, T]`, kept for the backward).
    fn fused_attention(
        _qkv: &FloatTensor<Self>,
        _spec: AttentionSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }
    fn fused_attention_backward(
        _qkv: FloatTensor<Self>,
        _probs: FloatTensor<Self>,
        _dy: FloatTensor<Self>,
        _spec: AttentionSpec,
    ) -> FloatTensor<Self> {
        unreachable!("fused_attention_backward without fused_attention")
    }
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A float primitive of any rank seen as 2-D `[rest, last]` (GELU is element-wise: the plain path runs on this
/// view and [`gelu`] gives the result the input's shape back).
fn flat2<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    use burn::tensor::TensorMetadata;
    let shape = x.shape();
    let n = shape.num_elements();
    let last = shape[shape.num_dims() - 1].max(1);
    B::float_reshape(x, burn::tensor::Shape::new([n / last, last]))
}

/// burn's own linear (x·W + b), or x·Wᵀ for a `[out, in]` weight.
fn plain_linear<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: Option<FloatTensor<B>>,
    transposed: bool,
) -> FloatTensor<B> {
    if crate::precision::matmuls_in_bf16() {
        // bf16 inputs, f32 accumulation, f32 result; the bias is added in f32.
        let x = tensor::<B, 2>(x);
        let w = tensor::<B, 2>(w);
        let w = if transposed { w.transpose() } else { w };
        let y = crate::precision::matmul(x, w);
        return prim(match b {
            Some(b) => y + tensor::<B, 1>(b).unsqueeze_dim(0),
            None => y,
        });
    }
    if transposed {
        let y = B::float_matmul(x, B::float_swap_dims(w, 0, 1));
        match b {
            Some(b) => {
                let n = burn::tensor::TensorMetadata::shape(&b)[0];
                B::float_add(y, B::float_reshape(b, burn::tensor::Shape::new([1, n])))
            }
            None => y,
        }
    } else {
        B::linear(x, w, b)
    }
}

/// burn's own LayerNorm (the composition of its `ModuleOps::layer_norm` default, differentiated op by op).
fn plain_layer_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> FloatTensor<B> {
    B::layer_norm(x, gamma, Some(beta), eps)
}

/// LayerNorm over the last dim with scale γ and shift β (see [`Kernels::k_layer_norm`]).
pub fn layer_norm<B: Kernels, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    tensor(B::k_layer_norm(prim(x), prim(gamma), prim(beta), eps))
}

/// x `[N, in]` · W + b for W `[in, out]` (see [`Kernels::k_linear`]).
/// In bf16-mixed precision (`crate::precision`) the plain composition runs with bf16 products.
pub fn linear<B: Kernels>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    if crate::precision::matmuls_in_bf16() {
        return plain::linear(x, w, b, false);
    }
    tensor(B::k_linear(prim(x), prim(w), b.map(prim), false))
}

/// x `[N, d]` · Wᵀ for a `[V, d]` table W (the tied output head).
pub fn linear_transposed<B: Kernels>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if crate::precision::matmuls_in_bf16() {
        return plain::linear(x, w, None, true);
    }
    tensor(B::k_linear(prim(x), prim(w), None, true))
}

/// GELU (erf form) of a tensor of any rank.
pub fn gelu<B: Kernels, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let shape = x.shape();
    tensor::<B, D>(B::float_reshape(B::k_gelu(prim(x)), shape))
}

/// SiLU (x·σ(x)) of a tensor of any rank.
pub fn silu<B: Kernels, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let shape = x.shape();
    tensor::<B, D>(B::float_reshape(B::k_silu(prim(x)), shape))
}

/// Per-token natural-log cross-entropy −ln p(target): logits `[batch, T, V]`, targets `[batch, T]` →
/// `[batch, T]`.
pub fn token_nll<B: Kernels>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    tensor(B::k_token_nll(prim(logits), targets.into_primitive()))
}

/// Causal self-attention with rotary embedding on a fused qkv projection (see [`Kernels::k_causal_attention`]).
/// In bf16-mixed precision the plain composition runs, with bf16 products and an f32 softmax.
pub fn causal_attention<B: Kernels>(qkv: Tensor<B, 3>, spec: AttentionSpec) -> Tensor<B, 3> {
    if crate::precision::matmuls_in_bf16() {
        return plain::causal_attention(qkv, spec);
    }
    tensor(B::k_causal_attention(prim(qkv), spec))
}

/// The plain compositions of burn ops: what the fused kernels must equal, and what backends without them run.
pub mod plain {
    use super::*;
    use crate::layers::Rope;

    pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::activation::gelu(x)
    }

    pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::activation::silu(x)
    }

    pub fn linear<B: Backend>(
        x: Tensor<B, 2>,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
        transposed: bool,
    ) -> Tensor<B, 2> {
        tensor(plain_linear::<B>(prim(x), prim(w), b.map(prim), transposed))
    }

    pub fn layer_norm<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        gamma: Tensor<B, 1>,
        beta: Tensor<B, 1>,
        eps: f64,
    ) -> Tensor<B, D> {
        tensor(plain_layer_norm::<B>(prim(x), prim(gamma), prim(beta), eps))
    }

    pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [b, t, _] = logits.dims();
        let logp = burn::tensor::activation::log_softmax(logits, 2);
        logp.gather(2, targets.reshape([b, t, 1]))
            .reshape([b, t])
            .neg()
    }

    /// [`token_nll`] on primitives of any rank (logits `[.., V]`, targets `[..]`).
    pub(super) fn token_nll_flat<B: Backend>(
        logits: FloatTensor<B>,
        targets: IntTensor<B>,
    ) -> Tensor<B, 1> {
        use burn::tensor::TensorMetadata;
        let shape = logits.shape();
        let v = shape[shape.num_dims() - 1];
        let n = shape.num_elements() / v.max(1);
        let logits = tensor::<B, 2>(B::float_reshape(logits, burn::tensor::Shape::new([n, v])));
        let targets = Tensor::<B, 1, Int>::from_primitive(B::int_reshape(
            targets,
            burn::tensor::Shape::new([n]),
        ));
        token_nll(logits.reshape([1, n, v]), targets.reshape([1, n])).reshape([n])
    }

    /// Causal self-attention with rotary embedding, composed of burn ops (the model's code before the fused
    /// kernel; the reference of `trainer/tests/kernels.rs`).
    pub fn causal_attention<B: Backend>(qkv: Tensor<B, 3>, spec: AttentionSpec) -> Tensor<B, 3> {
        let [b, t, d3] = qkv.dims();
        let d = d3 / 3;
        let h = spec.n_head;
        let hd = d / h;
        let device = qkv.device();
        let rope = Rope::new(spec.rotary_dims, t, spec.rope_base, &device);
        // true above the diagonal: a position never attends to later ones.
        let mask = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).reshape([1, 1, t, t]);
        let qkv = qkv.reshape([b, t, 3, h, hd]);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, t, h, hd])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (rope.apply(split(0)), rope.apply(split(1)), split(2));
        // The two products follow the training precision (`crate::precision::matmul`); the softmax is f32.
        let scores =
            crate::precision::matmul(q, k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt());
        let att = burn::tensor::activation::softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
        crate::precision::matmul(att, v)
            .swap_dims(1, 2)
            .reshape([b, t, d])
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Autodiff: one node per fused op.

/// A fused op with one differentiable input, as recorded by [`record_unary`]: what its backward keeps, and the
/// inner backend's backward kernel.
trait UnaryFused<B: Kernels>: core::fmt::Debug + 'static {
    type State: Clone + Send + core::fmt::Debug + 'static;
    fn backward(state: Self::State, dy: FloatTensor<B>) -> FloatTensor<B>;
}

/// The autodiff node of a [`UnaryFused`] op.
#[derive(Debug)]
struct UnaryNode<K>(core::marker::PhantomData<fn() -> K>);

impl<B: Kernels, K: UnaryFused<B>> Backward<B, 1> for UnaryNode<K> {
    type State = K::State;
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, K::backward(ops.state, dy));
        }
    }
}

/// Records `output`, computed by a fused kernel from `input`, as one node whose backward is `K`'s (the state is
/// built only when the input is tracked).
fn record_unary<B: Kernels, C: CheckpointStrategy, K: UnaryFused<B>>(
    input: &FloatTensor<Autodiff<B, C>>,
    state: impl FnOnce() -> K::State,
    output: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match UnaryNode::<K>(core::marker::PhantomData)
        .prepare::<C>([input.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state(), output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

#[derive(Debug)]
struct GeluOp;
impl<B: Kernels> UnaryFused<B> for GeluOp {
    type State = FloatTensor<B>;
    fn backward(x: Self::State, dy: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_gelu_backward(x, dy)
    }
}

#[derive(Debug)]
struct SiluOp;
impl<B: Kernels> UnaryFused<B> for SiluOp {
    type State = FloatTensor<B>;
    fn backward(x: Self::State, dy: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_silu_backward(x, dy)
    }
}

#[derive(Debug)]
struct CrossEntropyOp;
impl<B: Kernels> UnaryFused<B> for CrossEntropyOp {
    /// (logits, targets, log-sum-exp per row)
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);
    fn backward((logits, targets, lse): Self::State, dnll: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_cross_entropy_backward(logits, targets, lse, dnll)
    }
}

#[derive(Debug)]
struct AttentionOp;
impl<B: Kernels> UnaryFused<B> for AttentionOp {
    /// (qkv, probabilities, shape)
    type State = (FloatTensor<B>, FloatTensor<B>, AttentionSpec);
    fn backward((qkv, probs, spec): Self::State, dy: FloatTensor<B>) -> FloatTensor<B> {
        B::fused_attention_backward(qkv, probs, dy, spec)
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn default_precision() -> crate::precision::Precision {
        B::default_precision()
    }
    fn k_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(y) = B::fused_gelu(&x.primitive) else {
            return prim(plain::gelu(tensor::<Self, 2>(flat2::<Self>(x))));
        };
        record_unary::<B, C, GeluOp>(&x, || x.primitive.clone(), y)
    }
    fn k_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(y) = B::fused_silu(&x.primitive) else {
            return prim(plain::silu(tensor::<Self, 2>(flat2::<Self>(x))));
        };
        record_unary::<B, C, SiluOp>(&x, || x.primitive.clone(), y)
    }

    fn k_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: Option<FloatTensor<Self>>,
        transposed: bool,
    ) -> FloatTensor<Self> {
        let Some(y) = B::fused_linear(
            &x.primitive,
            &w.primitive,
            b.as_ref().map(|b| &b.primitive),
            transposed,
        ) else {
            return plain_linear::<Self>(x, w, b, transposed);
        };

        /// N = 3 with a bias, 2 without.
        #[derive(Debug)]
        struct LinearBackward<const N: usize>;
        impl<B: Kernels, const N: usize> Backward<B, N> for LinearBackward<N> {
            type State = (FloatTensor<B>, FloatTensor<B>, bool);
            fn backward(
                self,
                ops: Ops<Self::State, N>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, w, transposed) = ops.state;
                let (dx, dw, db) = B::fused_linear_backward(x, w, dy, N == 3, transposed);
                for (parent, g) in ops.parents.into_iter().zip([Some(dx), Some(dw), db]) {
                    if let (Some(parent), Some(g)) = (parent, g) {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }

        let state = (x.primitive.clone(), w.primitive.clone(), transposed);
        match b {
            Some(b) => match LinearBackward::<3>
                .prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            },
            None => match LinearBackward::<2>
                .prepare::<C>([x.node.clone(), w.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            },
        }
    }

    fn k_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let Some((y, stats)) =
            B::fused_layer_norm(&x.primitive, &gamma.primitive, &beta.primitive, eps)
        else {
            return plain_layer_norm::<Self>(x, gamma, beta, eps);
        };

        #[derive(Debug)]
        struct LayerNormBackward;
        impl<B: Kernels> Backward<B, 3> for LayerNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);
            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let dy = grads.consume::<B>(&ops.node);
                let (x, gamma, stats) = ops.state;
                let [dx, dgamma, dbeta] = B::fused_layer_norm_backward(x, gamma, stats, dy);
                for (parent, g) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }

        match LayerNormBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((x.primitive.clone(), gamma.primitive.clone(), stats), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn k_token_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let Some((nll, lse)) = B::fused_cross_entropy(&logits.primitive, &targets) else {
            return prim(plain::token_nll_flat::<Self>(logits, targets));
        };
        record_unary::<B, C, CrossEntropyOp>(
            &logits,
            || (logits.primitive.clone(), targets, lse),
            nll,
        )
    }

    fn k_causal_attention(qkv: FloatTensor<Self>, spec: AttentionSpec) -> FloatTensor<Self> {
        let Some((y, probs)) = B::fused_attention(&qkv.primitive, spec) else {
            return prim(plain::causal_attention(tensor::<Self, 3>(qkv), spec));
        };
        record_unary::<B, C, AttentionOp>(&qkv, || (qkv.primitive.clone(), probs, spec), y)
    }
}

impl Kernels for burn::backend::Flex {
    fn fused_gelu(x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        fused_enabled().then(|| flex::gelu(x)).flatten()
    }
    fn fused_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::gelu_backward(&x, &dy)
    }
    fn fused_silu(x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        fused_enabled().then(|| flex::silu(x)).flatten()
    }
    fn fused_silu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::silu_backward(&x, &dy)
    }
    fn fused_adamw(
        param: &FloatTensor<Self>,
        grad: &FloatTensor<Self>,
        moments: Option<(&FloatTensor<Self>, &FloatTensor<Self>)>,
        hyper: AdamWStep,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        fused_enabled()
            .then(|| flex::adamw(param, grad, moments, hyper))
            .flatten()
    }
    fn fused_linear(
        x: &FloatTensor<Self>,
        w: &FloatTensor<Self>,
        b: Option<&FloatTensor<Self>>,
        transposed: bool,
    ) -> Option<FloatTensor<Self>> {
        fused_enabled()
            .then(|| flex::linear(x, w, b, transposed))
            .flatten()
    }
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        has_bias: bool,
        transposed: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    ) {
        flex::linear_backward(&x, &w, &dy, has_bias, transposed)
    }
    fn fused_layer_norm(
        x: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: &FloatTensor<Self>,
        eps: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        fused_enabled()
            .then(|| flex::layer_norm(x, gamma, beta, eps))
            .flatten()
    }
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        flex::layer_norm_backward(&x, &gamma, &stats, &dy)
    }
    fn fused_cross_entropy(
        logits: &FloatTensor<Self>,
        targets: &IntTensor<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        fused_enabled()
            .then(|| flex::cross_entropy(logits, targets))
            .flatten()
    }
    fn fused_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        dnll: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex::cross_entropy_backward(&logits, &targets, &lse, &dnll)
    }
    fn fused_attention(
        qkv: &FloatTensor<Self>,
        spec: AttentionSpec,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        fused_enabled()
            .then(|| flex::causal_attention(qkv, spec))
            .flatten()
    }
    fn fused_attention_backward(
        qkv: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        spec: AttentionSpec,
    ) -> FloatTensor<Self> {
        flex::causal_attention_backward(&qkv, &probs, &dy, spec)
    }
}

/// CUDA has no fused kernels of the lab's own (burn-cuda's fusion compiles element-wise chains); it trains in
/// bf16-mixed precision by default.
#[cfg(feature = "cuda")]
impl Kernels for crate::Gpu {
    fn default_precision() -> crate::precision::Precision {
        crate::precision::Precision::Bf16Mixed
    }
}

/// A backend the trainer can train on: autodiff with kernels, over an inner backend with kernels (the
/// evaluators run the inner one).
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: Kernels> + Kernels
{
}
impl<B> TrainBackend for B where
    B: burn::tensor::backend::AutodiffBackend<InnerBackend: Kernels> + Kernels
{
}
