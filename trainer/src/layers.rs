//! The pieces the model zoo is built from: normalisation (LayerNorm, RMSNorm), causal self-attention with rotary
//! position embedding, and the feed-forward variants (GELU MLP d→h→d, SwiGLU gated MLP, a top-1 mixture of
//! experts in [`crate::moe`]).

use burn::module::Module;
use burn::nn::{LayerNorm, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::kernels::{self, AttentionSpec, Kernels};

use crate::lora::Lora;
use crate::moe::Moe;

/// LayerNorm (GPT-2) or RMSNorm (LLaMA).
#[derive(Module, Debug)]
pub enum Norm<B: Backend> {
    Layer(LayerNorm<B>),
    Rms(RmsNorm<B>),
}

/// LayerNorm's ε (burn's and PyTorch's default), set at initialisation and given to the fused kernel (burn keeps
/// the module's own copy private).
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl<B: Kernels> Norm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Norm::Layer(n) => match &n.beta {
                Some(beta) => kernels::layer_norm(x, n.gamma.val(), beta.val(), LAYER_NORM_EPS),
                None => n.forward(x),
            },
            Norm::Rms(n) => n.forward(x),
        }
    }
}

/// A linear layer applied to `[batch, T, d]` as one `[batch·T, d]` matrix: one GEMM forward and one for each
/// gradient (burn's broadcast path runs a GEMM per batch row and sums `batch` weight gradients).
pub fn linear<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let y = kernels::linear(
        x.reshape([b * t, d]),
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
    );
    let out = y.dims()[1];
    y.reshape([b, t, out])
}

/// Rotary tables (GPT-NeoX "rotate half" on the first `dims` dims of each head), built for each forward pass
/// (T·dims values): they hold no state, so nothing about them is saved or trained.
pub struct Rope<B: Backend> {
    /// [T, dims]
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    dims: usize,
}

/// The rotary tables (cos, sin), each `[context, dims]` row-major: angle t·base^(−2(i mod dims/2)/dims), computed
/// in f64 and rounded to f32 (the plain path and the fused attention kernel share them).
pub fn rope_tables(dims: usize, context: usize, base: f64) -> (Vec<f32>, Vec<f32>) {
    let half = dims / 2;
    let mut cos = Vec::with_capacity(context * dims);
    let mut sin = Vec::with_capacity(context * dims);
    for t in 0..context {
        for i in 0..dims {
            let inv_freq = base.powf(-2.0 * (i % half.max(1)) as f64 / dims.max(1) as f64);
            let a = t as f64 * inv_freq;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

impl<B: Backend> Rope<B> {
    pub fn new(dims: usize, context: usize, base: f64, device: &B::Device) -> Self {
        let (mut cos, mut sin) = rope_tables(dims, context, base);
        let shape = [context, dims.max(1)];
        if dims == 0 {
            cos = vec![1.0; context];
            sin = vec![0.0; context];
        }
        Rope {
            cos: Tensor::<B, 1>::from_floats(cos.as_slice(), device).reshape(shape),
            sin: Tensor::<B, 1>::from_floats(sin.as_slice(), device).reshape(shape),
            dims,
        }
    }

    /// x: [batch, heads, T, head_dim].
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.dims == 0 {
            return x;
        }
        let [_, _, t, hd] = x.dims();
        let half = self.dims / 2;
        let rot = x.clone().narrow(3, 0, self.dims);
        let x1 = rot.clone().narrow(3, 0, half);
        let x2 = rot.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = self
            .cos
            .clone()
            .narrow(0, 0, t)
            .reshape([1, 1, t, self.dims]);
        let sin = self
            .sin
            .clone()
            .narrow(0, 0, t)
            .reshape([1, 1, t, self.dims]);
        let out = rot * cos + rotated * sin;
        if self.dims == hd {
            out
        } else {
            let pass = x.narrow(3, self.dims, hd - self.dims);
            Tensor::cat(vec![out, pass], 3)
        }
    }
}

/// Causal multi-head self-attention: one qkv projection, rotary on q and k, softmax over earlier positions.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub n_head: usize,
    /// LoRA updates of the query and value projections (finetuning).
    pub lora_q: Option<Lora<B>>,
    pub lora_v: Option<Lora<B>>,
}

impl<B: Kernels> Attention<B> {
    /// `spec.n_head` is this layer's own head count (the spec brings the rotary part).
    pub fn forward(&self, x: Tensor<B, 3>, spec: AttentionSpec) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let mut qkv = linear(&self.qkv, x.clone());
        if self.lora_q.is_some() || self.lora_v.is_some() {
            let device = x.device();
            let part = |l: &Option<Lora<B>>| match l {
                Some(l) => l.forward(x.clone()),
                None => Tensor::zeros([b, t, d], &device),
            };
            let zeros = Tensor::zeros([b, t, d], &device);
            qkv = qkv + Tensor::cat(vec![part(&self.lora_q), zeros, part(&self.lora_v)], 2);
        }
        let y = kernels::causal_attention(
            qkv,
            AttentionSpec {
                n_head: self.n_head,
                ..spec
            },
        );
        linear(&self.proj, y)
    }
}

/// GPT-2 MLP: d → h → d with GELU (h = 4d; GPT2_1/4 has h = d).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc: Linear<B>,
    pub proj: Linear<B>,
}

impl<B: Kernels> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear(&self.proj, kernels::gelu(linear(&self.fc, x)))
    }
}

/// LLaMA's gated MLP: down(silu(gate(x)) ⊙ up(x)), no biases.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    pub gate: Linear<B>,
    pub up: Linear<B>,
    pub down: Linear<B>,
}

impl<B: Kernels> SwiGlu<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear(
            &self.down,
            kernels::silu(linear(&self.gate, x.clone())) * linear(&self.up, x),
        )
    }
}

/// The feed-forward part of a block. (A mixture holds many experts; the enum is built once per model, so its
/// size difference does not matter.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Ffn<B: Backend> {
    Gelu(Mlp<B>),
    SwiGlu(SwiGlu<B>),
    Moe(Moe<B>),
}

impl<B: Kernels> Ffn<B> {
    /// The output and, for a mixture of experts, its load-balancing loss.
    pub fn forward(&self, x: Tensor<B, 3>) -> (Tensor<B, 3>, Option<Tensor<B, 1>>) {
        match self {
            Ffn::Gelu(m) => (m.forward(x), None),
            Ffn::SwiGlu(m) => (m.forward(x), None),
            Ffn::Moe(m) => {
                let (y, aux) = m.forward(x);
                (y, Some(aux))
            }
        }
    }
}

/// A pre-norm transformer block; `ffn: None` is GPT2_0 (attention only).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub ln_1: Norm<B>,
    pub attn: Attention<B>,
    pub ln_2: Option<Norm<B>>,
    pub ffn: Option<Ffn<B>>,
}

impl<B: Kernels> Block<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        spec: AttentionSpec,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 1>>) {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), spec);
        match (&self.ln_2, &self.ffn) {
            (Some(ln), Some(ffn)) => {
                let (y, aux) = ffn.forward(ln.forward(x.clone()));
                (x + y, aux)
            }
            _ => (x, None),
        }
    }
}
