//! The model zoo (Part 3.3 §5–9 notation). Every model is a pre-norm decoder-only transformer with ℓ layers and
//! h heads, d = 64·h by default, causal attention, no dropout; the presets differ in their parts:
//!
//! | preset          | positions                  | norm      | feed-forward                    | embedding |
//! |-----------------|----------------------------|-----------|---------------------------------|-----------|
//! | `gpt2-ℓ-h`      | rotary (¼ of head dims)    | LayerNorm | GELU MLP d→4d→d                 | tied      |
//! | `gpt2abs-ℓ-h`   | learned absolute           | LayerNorm | GELU MLP d→4d→d                 | tied      |
//! | `gpt2mlp1-ℓ-h`  | rotary                     | LayerNorm | GELU MLP d→d→d (GPT2_1/4)       | tied      |
//! | `gpt2mlp0-ℓ-h`  | rotary                     | LayerNorm | none (GPT2_0)                   | tied      |
//! | `llama-ℓ-h`     | rotary                     | RMSNorm   | SwiGLU d→h'→d, h' = 8d/3 (÷16)  | untied    |
//! | `moe-ℓ-h`       | rotary                     | LayerNorm | top-1 of `experts` MLPs d→d→d   | tied      |
//!
//! `num_params` and `flops_per_token` sit beside the model (nanoGPT's `get_num_params`, `estimate_mfu`).

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNormConfig, Linear, LinearConfig, RmsNormConfig,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::{AttentionSpec, Kernels};
pub use crate::layers::{Attention, Block, Ffn, Mlp, Norm, Rope, SwiGlu};
use crate::lora::{Lora, LoraShape};
use crate::moe::Moe;

/// The model part of a recipe. `preset` names a family and size (`gpt2-4-4`, `llama-2-2`); the other fields
/// override it when non-zero.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `<family>-<layers>-<heads>`, family one of gpt2, gpt2abs, gpt2mlp1, gpt2mlp0, llama, moe.
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
    /// Mixture of experts: number of experts (Part 3.3: 32).
    pub experts: usize,
    /// Mixture of experts: tokens an expert takes, as a multiple of an even share.
    pub capacity_factor: f64,
    /// Mixture of experts: weight of the load-balancing loss added to the training loss.
    pub router_aux_weight: f64,
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
            experts: 32,
            capacity_factor: 1.25,
            router_aux_weight: 0.01,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    Rotary,
    Absolute,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    Layer,
    Rms,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    None,
    Gelu {
        hidden: usize,
    },
    SwiGlu {
        hidden: usize,
    },
    Moe {
        experts: usize,
        hidden: usize,
        capacity_factor: f64,
    },
}

/// The model families (the first part of a preset's name).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Gpt2,
    Gpt2abs,
    Gpt2mlp1,
    Gpt2mlp0,
    Llama,
    Moe,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Gpt2,
        Family::Gpt2abs,
        Family::Gpt2mlp1,
        Family::Gpt2mlp0,
        Family::Llama,
        Family::Moe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Gpt2 => "gpt2",
            Family::Gpt2abs => "gpt2abs",
            Family::Gpt2mlp1 => "gpt2mlp1",
            Family::Gpt2mlp0 => "gpt2mlp0",
            Family::Llama => "llama",
            Family::Moe => "moe",
        }
    }
}

/// A model family's parts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Arch {
    pub family: Family,
    pub positions: Positions,
    pub norm: NormKind,
    pub ffn: FfnKind,
    pub tied: bool,
    /// Biases in the linear layers (GPT-2 yes, LLaMA no).
    pub bias: bool,
}

/// Fully resolved shape of a model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct GptShape {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub context: usize,
    /// Rotated dims per head (even; 0 with absolute positions).
    pub rotary_dims: usize,
    pub rope_base: f64,
    pub init_std: f64,
    pub router_aux_weight: f64,
    /// LoRA adapters (none unless finetuning with them).
    #[serde(default)]
    pub lora: LoraShape,
}

impl GptShape {
    /// The same shape without LoRA adapters (what a pretrained checkpoint has).
    pub fn without_lora(&self) -> GptShape {
        GptShape {
            lora: LoraShape::default(),
            ..*self
        }
    }
}

impl ModelConfig {
    fn preset_parts(&self) -> Result<(Family, usize, usize), String> {
        let parts: Vec<&str> = self.preset.split('-').collect();
        let usage = || {
            format!(
                "model.preset {:?} is not a known preset; expected `<family>-<layers>-<heads>` with family one of {}, e.g. `gpt2-2-2`",
                self.preset,
                Family::ALL.map(Family::name).join(", ")
            )
        };
        match parts.as_slice() {
            [f, l, h] => {
                let family = Family::ALL
                    .into_iter()
                    .find(|x| x.name() == *f)
                    .ok_or_else(usage)?;
                match (l.parse::<usize>(), h.parse::<usize>()) {
                    (Ok(l), Ok(h)) if l > 0 && h > 0 => Ok((family, l, h)),
                    _ => Err(format!(
                        "model.preset {:?}: layers and heads must be positive integers",
                        self.preset
                    )),
                }
            }
            _ => Err(usage()),
        }
    }

    /// Every problem with the config (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let family = match self.preset_parts() {
            Ok((f, _, _)) => f,
            Err(e) => {
                p.push(e);
                return p;
            }
        };
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
        if !self.rope_base.is_finite() || self.rope_base <= 1.0 {
            p.push("model.rope_base must be > 1".into());
        }
        if !self.init_std.is_finite() || self.init_std <= 0.0 {
            p.push("model.init_std must be > 0".into());
        }
        if family == Family::Moe {
            if self.experts < 2 {
                p.push("model.experts must be ≥ 2".into());
            }
            if self.capacity_factor.is_nan() || self.capacity_factor <= 0.0 {
                p.push("model.capacity_factor must be > 0".into());
            }
            if self.router_aux_weight.is_nan() || self.router_aux_weight < 0.0 {
                p.push("model.router_aux_weight must be ≥ 0".into());
            }
        }
        p
    }

    fn dims(&self) -> (usize, usize, usize) {
        let (_, pl, ph) = self.preset_parts().unwrap_or((Family::Gpt2, 1, 1));
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

    fn arch(&self, family: Family, d: usize) -> Arch {
        let gpt2 = |ffn| Arch {
            family,
            positions: Positions::Rotary,
            norm: NormKind::Layer,
            ffn,
            tied: true,
            bias: true,
        };
        match family {
            Family::Gpt2abs => Arch {
                positions: Positions::Absolute,
                ..gpt2(FfnKind::Gelu { hidden: 4 * d })
            },
            Family::Gpt2mlp1 => gpt2(FfnKind::Gelu { hidden: d }),
            Family::Gpt2mlp0 => gpt2(FfnKind::None),
            Family::Llama => Arch {
                family,
                positions: Positions::Rotary,
                norm: NormKind::Rms,
                ffn: FfnKind::SwiGlu {
                    hidden: (8 * d / 3).div_ceil(16) * 16,
                },
                tied: false,
                bias: false,
            },
            Family::Moe => gpt2(FfnKind::Moe {
                experts: self.experts,
                hidden: d,
                capacity_factor: self.capacity_factor,
            }),
            Family::Gpt2 => gpt2(FfnKind::Gelu { hidden: 4 * d }),
        }
    }

    pub fn shape(&self, vocab_size: usize, context: usize) -> Result<GptShape, String> {
        let p = self.problems();
        if !p.is_empty() {
            return Err(p.join("; "));
        }
        let (family, _, _) = self.preset_parts()?;
        let (n_layer, n_head, d_model) = self.dims();
        let arch = self.arch(family, d_model);
        Ok(GptShape {
            arch,
            n_layer,
            n_head,
            d_model,
            vocab_size,
            context,
            rotary_dims: match arch.positions {
                Positions::Rotary => self.rotary_dims(d_model / n_head),
                Positions::Absolute => 0,
            },
            rope_base: self.rope_base,
            init_std: self.init_std,
            router_aux_weight: self.router_aux_weight,
            lora: LoraShape::default(),
        })
    }
}

/// Parameter counts (nanoGPT `get_num_params`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParamCounts {
    pub total: usize,
    /// Everything but the token embedding and, when untied, the output layer.
    pub non_embedding: usize,
    /// For capacity (SPEC §3): embedding (and untied output) rows only for the tokens that occur in the data.
    pub capacity: usize,
}

impl GptShape {
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    fn norm_params(&self) -> usize {
        match self.arch.norm {
            NormKind::Layer => 2 * self.d_model,
            NormKind::Rms => self.d_model,
        }
    }

    fn linear(&self, i: usize, o: usize) -> usize {
        i * o + if self.arch.bias { o } else { 0 }
    }

    /// Parameters of one feed-forward part (and its norm), 0 without one.
    fn ffn_params(&self) -> usize {
        let d = self.d_model;
        match self.arch.ffn {
            FfnKind::None => 0,
            FfnKind::Gelu { hidden } => {
                self.norm_params() + self.linear(d, hidden) + self.linear(hidden, d)
            }
            FfnKind::SwiGlu { hidden } => {
                self.norm_params() + 2 * self.linear(d, hidden) + self.linear(hidden, d)
            }
            FfnKind::Moe {
                experts, hidden, ..
            } => {
                // The router has no bias; the experts are GPT-2 MLPs.
                self.norm_params() + d * experts + experts * (d * hidden + hidden + hidden * d + d)
            }
        }
    }

    /// Counts from the shape: per block a norm, attention (qkv d→3d and out d→d), and the feed-forward part
    /// with its norm; a final norm; learned positions (T·d) when absolute; the token embedding V·d, and the
    /// output layer V·d when untied.
    pub fn num_params(&self, used_vocab: usize) -> ParamCounts {
        let d = self.d_model;
        let block =
            self.norm_params() + self.linear(d, 3 * d) + self.linear(d, d) + self.ffn_params();
        let positions = match self.arch.positions {
            Positions::Absolute => self.context * d,
            Positions::Rotary => 0,
        };
        let non_embedding = self.n_layer * block + self.norm_params() + positions;
        let tables = if self.arch.tied { 1 } else { 2 };
        let total = non_embedding + tables * self.vocab_size * d;
        let capacity = non_embedding + tables * used_vocab.min(self.vocab_size) * d;
        ParamCounts {
            total,
            non_embedding,
            capacity,
        }
    }

    /// Training FLOPs per token (forward + backward = 3 × forward), counting matmuls only: 6 × the matmul
    /// parameters a token goes through (one expert of a mixture, plus its router) + 6·V·d for the output layer
    /// + 12·ℓ·T·d for attention scores (PaLM appendix B / nanoGPT `estimate_mfu`).
    pub fn flops_per_token(&self) -> f64 {
        let d = self.d_model as f64;
        let ffn = match self.arch.ffn {
            FfnKind::None => 0.0,
            FfnKind::Gelu { hidden } => 2.0 * d * hidden as f64,
            FfnKind::SwiGlu { hidden } => 3.0 * d * hidden as f64,
            FfnKind::Moe {
                experts, hidden, ..
            } => 2.0 * d * hidden as f64 + d * experts as f64,
        };
        let matmul_params = self.n_layer as f64 * (4.0 * d * d + ffn) + self.vocab_size as f64 * d;
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
        let bias = self.arch.bias;
        let lin = |i: usize, o: usize, w: &Initializer| {
            LinearConfig::new(i, o)
                .with_bias(bias)
                .with_initializer(w.clone())
                .init(device)
        };
        let norm = || match self.arch.norm {
            NormKind::Layer => Norm::Layer(
                LayerNormConfig::new(d)
                    .with_epsilon(crate::layers::LAYER_NORM_EPS)
                    .init(device),
            ),
            NormKind::Rms => Norm::Rms(RmsNormConfig::new(d).init(device)),
        };
        let mlp = |hidden: usize| Mlp {
            fc: lin(d, hidden, &init),
            proj: lin(hidden, d, &proj_init),
        };
        let blocks = (0..self.n_layer)
            .map(|_| {
                let ffn = match self.arch.ffn {
                    FfnKind::None => None,
                    FfnKind::Gelu { hidden } => Some(Ffn::Gelu(mlp(hidden))),
                    FfnKind::SwiGlu { hidden } => Some(Ffn::SwiGlu(SwiGlu {
                        gate: lin(d, hidden, &init),
                        up: lin(d, hidden, &init),
                        down: lin(hidden, d, &proj_init),
                    })),
                    FfnKind::Moe {
                        experts,
                        hidden,
                        capacity_factor,
                    } => Some(Ffn::Moe(Moe {
                        router: LinearConfig::new(d, experts)
                            .with_bias(false)
                            .with_initializer(init.clone())
                            .init(device),
                        experts: (0..experts).map(|_| mlp(hidden)).collect(),
                        capacity_factor,
                    })),
                };
                Block {
                    ln_1: norm(),
                    attn: Attention {
                        qkv: lin(d, 3 * d, &init),
                        proj: lin(d, d, &proj_init),
                        n_head: self.n_head,
                        lora_q: self.lora_qv(device),
                        lora_v: self.lora_qv(device),
                    },
                    ln_2: ffn.as_ref().map(|_| norm()),
                    ffn,
                }
            })
            .collect();
        Gpt {
            wte: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(init.clone())
                .init(device),
            wpe: (self.arch.positions == Positions::Absolute).then(|| {
                EmbeddingConfig::new(self.context, d)
                    .with_initializer(init.clone())
                    .init(device)
            }),
            blocks,
            ln_f: norm(),
            lm_head: (!self.arch.tied).then(|| {
                LinearConfig::new(d, self.vocab_size)
                    .with_bias(false)
                    .with_initializer(init.clone())
                    .init(device)
            }),
            lora_emb: (self.lora.embedding_rank > 0).then(|| {
                let r = self.lora.embedding_rank;
                Lora::embedding(self.vocab_size, d, r, self.lora.alpha_for(r), device)
            }),
            rotary_dims: self.rotary_dims,
            rope_base: self.rope_base,
        }
    }

    fn lora_qv<B: Backend>(&self, device: &B::Device) -> Option<Lora<B>> {
        let r = self.lora.qv_rank;
        (r > 0).then(|| {
            Lora::linear(
                self.d_model,
                self.d_model,
                r,
                self.lora.alpha_for(r),
                device,
            )
        })
    }

    /// The model's LoRA parameters (A and B of every adapter).
    pub fn lora_params(&self) -> usize {
        let d = self.d_model;
        let qv = if self.lora.qv_rank > 0 {
            self.n_layer * 2 * 2 * d * self.lora.qv_rank
        } else {
            0
        };
        let emb = self.lora.embedding_rank * (self.vocab_size + d);
        qv + emb
    }
}

#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    wte: Embedding<B>,
    /// Learned absolute positions (`gpt2abs`).
    wpe: Option<Embedding<B>>,
    blocks: Vec<Block<B>>,
    ln_f: Norm<B>,
    /// The output layer when it is not tied to the embedding (`llama`).
    lm_head: Option<Linear<B>>,
    /// LoRA update of the token embedding (and so of the tied output layer).
    lora_emb: Option<Lora<B>>,
    rotary_dims: usize,
    rope_base: f64,
}

impl<B: Kernels> Gpt<B> {
    /// The same model with every mixture-of-experts layer routing every token to its expert (capacity unlimited):
    /// how it is evaluated, sampled and probed. Training drops the tokens over an expert's capacity
    /// (`model.capacity_factor`), which depend on the rest of the batch; an evaluation that did so would score a
    /// sequence by what else, padding included, shares its batch (Part 3.3 evaluates at a capacity factor of 8).
    pub fn without_token_dropping(mut self) -> Self {
        for block in self.blocks.iter_mut() {
            if let Some(crate::layers::Ffn::Moe(m)) = block.ffn.as_mut() {
                m.capacity_factor = f64::INFINITY;
            }
        }
        self
    }

    /// How many of its blocks are mixtures of experts (0 for the other families).
    pub fn moe_layers(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| matches!(b.ffn, Some(crate::layers::Ffn::Moe(_))))
            .count()
    }

    /// Adds fresh LoRA adapters of `lora` (zero update at first) to a pretrained model.
    pub fn with_lora(mut self, shape: &GptShape, device: &B::Device) -> Self {
        let lora = GptShape {
            lora: shape.lora,
            ..*shape
        };
        for block in self.blocks.iter_mut() {
            block.attn.lora_q = lora.lora_qv(device);
            block.attn.lora_v = lora.lora_qv(device);
        }
        if lora.lora.embedding_rank > 0 {
            let r = lora.lora.embedding_rank;
            self.lora_emb = Some(Lora::embedding(
                lora.vocab_size,
                lora.d_model,
                r,
                lora.lora.alpha_for(r),
                device,
            ));
        }
        self
    }

    /// Token ids [batch, T] → logits [batch, T, vocab].
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_aux(tokens).0
    }

    /// Logits and, for a mixture of experts, the load-balancing loss summed over layers.
    pub fn forward_aux(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 3>, Option<Tensor<B, 1>>) {
        let (x, aux, table) = self.hidden_aux(tokens);
        (self.head(x, table), aux)
    }

    /// Final-norm hidden states, the MoE loss, and the LoRA-updated embedding table when there is one.
    #[allow(clippy::type_complexity)]
    fn hidden_aux(
        &self,
        tokens: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 1>>, Option<Tensor<B, 2>>) {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        // With an embedding LoRA the table is W + scale·A·B, for the input and the tied output alike.
        let table = self
            .lora_emb
            .as_ref()
            .map(|l| self.wte.weight.val() + l.delta());
        let mut x = match &table {
            Some(w) => {
                let d = w.dims()[1];
                w.clone()
                    .select(0, tokens.reshape([b * t]))
                    .reshape([b, t, d])
            }
            None => self.wte.forward(tokens),
        };
        if let Some(wpe) = &self.wpe {
            let pos = Tensor::<B, 1, Int>::arange(0..t as i64, &device).reshape([1, t]);
            x = x + wpe.forward(pos);
        }
        let spec = AttentionSpec {
            n_head: 0, // each block's own
            rotary_dims: self.rotary_dims,
            rope_base: self.rope_base,
        };
        let mut aux: Option<Tensor<B, 1>> = None;
        for block in &self.blocks {
            let (y, a) = block.forward(x, spec);
            x = y;
            if let Some(a) = a {
                aux = Some(match aux {
                    Some(s) => s + a,
                    None => a,
                });
            }
        }
        (self.ln_f.forward(x), aux, table)
    }

    /// The last hidden layer (after the final norm), [batch, T, d]: what a linear probe reads (Part 3.1 §5).
    pub fn forward_hidden(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.hidden_aux(tokens).0
    }

    /// The output layer on hidden states [batch, T, d] → logits [batch, T, vocab].
    fn head(&self, x: Tensor<B, 3>, table: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        match &self.lm_head {
            Some(head) => crate::layers::linear(head, x),
            None => {
                let w = table.unwrap_or_else(|| self.wte.weight.val()); // [V, d]
                let v = w.dims()[0];
                crate::kernels::linear_transposed(x.reshape([b * t, d]), w).reshape([b, t, v])
            }
        }
    }
}

/// Per-token natural-log cross-entropy −ln p(target), shape [batch, T] (fused on CPU: see [`crate::kernels`]).
pub fn token_nll<B: Kernels>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    crate::kernels::token_nll(logits, targets)
}
