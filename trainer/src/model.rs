//! GPT2-ℓ-h (Part 3.3 notation): ℓ layers, h heads, d = 64·h by default; pre-LayerNorm GPT-2 blocks with a GELU
//! MLP d→4d→d, rotary position embedding (GPT-NeoX style, base 10,000, on a fraction of each head's dims — 1/4 in
//! the paper), no dropout, tied input/output embedding. Reads top to bottom like nanoGPT's `model.py`.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The model part of a recipe. `preset` names a size (`gpt2-4-4`); the other fields override it when non-zero.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `gpt2-<layers>-<heads>`: d_model = 64 · heads unless `d_model` is set.
    pub preset: String,
    /// Override of the preset's layer count (0: the preset's).
    pub n_layer: usize,
    /// Override of the preset's head count (0: the preset's).
    pub n_head: usize,
    /// Override of the model width (0: 64 · heads).
    pub d_model: usize,
    /// Fraction of each head's dimensions that rotary embedding rotates (paper: 0.25).
    pub rotary_fraction: f64,
    pub rope_base: f64,
    /// Std of the normal initialisation (GPT-2: 0.02).
    pub init_std: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            preset: "gpt2-2-2".into(),
            n_layer: 0,
            n_head: 0,
            d_model: 0,
            rotary_fraction: 0.25,
            rope_base: 10_000.0,
            init_std: 0.02,
        }
    }
}

/// Fully resolved shape of a GPT2-rotary model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct GptShape {
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub context: usize,
    /// Rotated dims per head (even).
    pub rotary_dims: usize,
    pub rope_base: f64,
    pub init_std: f64,
}

impl ModelConfig {
    fn preset_shape(&self) -> Result<(usize, usize), String> {
        let parts: Vec<&str> = self.preset.split('-').collect();
        match parts.as_slice() {
            ["gpt2", l, h] => match (l.parse::<usize>(), h.parse::<usize>()) {
                (Ok(l), Ok(h)) if l > 0 && h > 0 => Ok((l, h)),
                _ => Err(format!("model.preset {:?}: layers and heads must be positive integers", self.preset)),
            },
            _ => Err(format!("model.preset {:?} is not a known preset; expected `gpt2-<layers>-<heads>`, e.g. `gpt2-2-2`", self.preset)),
        }
    }

    /// Every problem with the config (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.preset_shape() {
            p.push(e);
            return p;
        }
        let (l, h, d) = self.dims();
        if l == 0 || h == 0 {
            p.push("model.n_layer and model.n_head must be ≥ 1".into());
        } else if d % h != 0 {
            p.push(format!(
                "model.d_model = {d} is not divisible by n_head = {h}"
            ));
        } else if !self.rotary_dims(d / h).is_multiple_of(2) {
            p.push(
                "model.rotary_fraction must give an even number of rotated dims per head".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.rotary_fraction) {
            p.push(format!(
                "model.rotary_fraction = {} must lie in [0, 1]",
                self.rotary_fraction
            ));
        }
        if self.rope_base <= 1.0 {
            p.push("model.rope_base must be > 1".into());
        }
        if self.init_std <= 0.0 {
            p.push("model.init_std must be > 0".into());
        }
        p
    }

    fn dims(&self) -> (usize, usize, usize) {
        let (pl, ph) = self.preset_shape().unwrap_or((1, 1));
        let l = if self.n_layer > 0 { self.n_layer } else { pl };
        let h = if self.n_head > 0 { self.n_head } else { ph };
        let d = if self.d_model > 0 {
            self.d_model
        } else {
            64 * h
        };
        (l, h, d)
    }

    fn rotary_dims(&self, head_dim: usize) -> usize {
        let r = (head_dim as f64 * self.rotary_fraction).round() as usize;
        r - r % 2
    }

    pub fn shape(&self, vocab_size: usize, context: usize) -> Result<GptShape, String> {
        let p = self.problems();
        if !p.is_empty() {
            return Err(p.join("; "));
        }
        let (n_layer, n_head, d_model) = self.dims();
        Ok(GptShape {
            n_layer,
            n_head,
            d_model,
            vocab_size,
            context,
            rotary_dims: self.rotary_dims(d_model / n_head),
            rope_base: self.rope_base,
            init_std: self.init_std,
        })
    }
}

/// Parameter counts (nanoGPT `get_num_params`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParamCounts {
    pub total: usize,
    /// Everything but the (tied) token embedding.
    pub non_embedding: usize,
    /// For capacity (SPEC §3): embedding rows only for the tokens that occur in the data.
    pub capacity: usize,
}

impl GptShape {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Counts from the shape: per block 2 LayerNorms (2·2d), attention qkv (3d²+3d) and out (d²+d), MLP
    /// (4d²+4d) and (4d²+d); a final LayerNorm (2d); the tied embedding V·d.
    pub fn num_params(&self, used_vocab: usize) -> ParamCounts {
        let d = self.d_model;
        let block =
            4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
        let non_embedding = self.n_layer * block + 2 * d;
        let total = non_embedding + self.vocab_size * d;
        let capacity = non_embedding + used_vocab.min(self.vocab_size) * d;
        ParamCounts {
            total,
            non_embedding,
            capacity,
        }
    }

    /// Training FLOPs per token (forward + backward = 3 × forward), counting matmuls only: 6·N_nonemb-matmul
    /// + 6·V·d for the output layer + 12·ℓ·T·d for attention scores (PaLM appendix B / nanoGPT `estimate_mfu`).
    pub fn flops_per_token(&self) -> f64 {
        let d = self.d_model as f64;
        let matmul_params = self.n_layer as f64 * 12.0 * d * d + self.vocab_size as f64 * d;
        6.0 * matmul_params + 12.0 * self.n_layer as f64 * self.context as f64 * d
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Gpt<B> {
        let init = Initializer::Normal {
            mean: 0.0,
            std: self.init_std,
        };
        // GPT-2 scales the residual projections by 1/sqrt(2·layers).
        let proj_init = Initializer::Normal {
            mean: 0.0,
            std: self.init_std / (2.0 * self.n_layer as f64).sqrt(),
        };
        let d = self.d_model;
        let blocks = (0..self.n_layer)
            .map(|_| Block {
                ln_1: LayerNormConfig::new(d).init(device),
                attn: Attention {
                    qkv: LinearConfig::new(d, 3 * d)
                        .with_initializer(init.clone())
                        .init(device),
                    proj: LinearConfig::new(d, d)
                        .with_initializer(proj_init.clone())
                        .init(device),
                    n_head: self.n_head,
                    rotary_dims: self.rotary_dims,
                },
                ln_2: LayerNormConfig::new(d).init(device),
                mlp: Mlp {
                    fc: LinearConfig::new(d, 4 * d)
                        .with_initializer(init.clone())
                        .init(device),
                    proj: LinearConfig::new(4 * d, d)
                        .with_initializer(proj_init.clone())
                        .init(device),
                },
            })
            .collect();
        Gpt {
            wte: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(init)
                .init(device),
            blocks,
            ln_f: LayerNormConfig::new(d).init(device),
            rotary_dims: self.rotary_dims,
            rope_base: self.rope_base,
        }
    }
}

/// Rotary tables (GPT-NeoX "rotate half" on the first `dims` dims of each head), built for each forward pass
/// (T·dims values): they hold no state, so nothing about them is saved or trained.
pub struct Rope<B: Backend> {
    /// [T, dims]
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    dims: usize,
}

impl<B: Backend> Rope<B> {
    pub fn new(dims: usize, context: usize, base: f64, device: &B::Device) -> Self {
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
        let shape = [context, dims];
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

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
    n_head: usize,
    rotary_dims: usize,
}

impl<B: Backend> Attention<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4, Bool>,
    ) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let hd = d / self.n_head;
        let qkv = self.qkv.forward(x).reshape([b, t, 3, self.n_head, hd]);
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i, 1)
                .reshape([b, t, self.n_head, hd])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (rope.apply(split(0)), rope.apply(split(1)), split(2));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt());
        let att = softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
        let y = att.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        self.proj.forward(y)
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    fc: Linear<B>,
    proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj.forward(gelu(self.fc.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    ln_1: LayerNorm<B>,
    attn: Attention<B>,
    ln_2: LayerNorm<B>,
    mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4, Bool>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), rope, mask);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    wte: Embedding<B>,
    blocks: Vec<Block<B>>,
    ln_f: LayerNorm<B>,
    rotary_dims: usize,
    rope_base: f64,
}

impl<B: Backend> Gpt<B> {
    /// Token ids [batch, T] → logits [batch, T, vocab] (output layer tied to the embedding).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let mut x = self.wte.forward(tokens);
        // true above the diagonal: a position never attends to later ones.
        let mask = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).reshape([1, 1, t, t]);
        let rope = Rope::new(self.rotary_dims, t, self.rope_base, &device);
        for block in &self.blocks {
            x = block.forward(x, &rope, mask.clone());
        }
        let x = self.ln_f.forward(x);
        let [_, _, d] = x.dims();
        let w = self.wte.weight.val(); // [V, d]
        let v = w.dims()[0];
        x.reshape([b * t, d])
            .matmul(w.transpose())
            .reshape([b, t, v])
    }
}

/// Per-token natural-log cross-entropy −ln p(target), shape [batch, T].
pub fn token_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, t, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    logp.gather(2, targets.reshape([b, t, 1]))
        .reshape([b, t])
        .neg()
}
