//! Hugging Face `transformers` export and import of physlab models (issue 18): the tensors of a physlab checkpoint
//! renamed and laid out as a standard `transformers` architecture, with its `config.json`, and back.
//!
//! | family              | transformers class   | what changes                                                     |
//! |---------------------|----------------------|------------------------------------------------------------------|
//! | `gpt2`, `gpt2mlp1`  | `GPTNeoXForCausalLM` | Linear weights transposed; qkv rows interleaved per head         |
//! | `gpt2abs`           | `GPT2LMHeadModel`    | names only (GPT-2's `Conv1D` keeps burn's [in, out] layout)      |
//! | `llama`, whole head | `LlamaForCausalLM`   | Linear weights transposed; qkv split into q, k, v                |
//! | `llama`, part head  | `Phi3ForCausalLM`    | Linear weights transposed; gate and up stacked in `gate_up_proj` |
//!
//! The mathematics match term by term (see `bench/torch_reference.py`, which `trainer/tests/reference.rs` checks
//! physlab against): pre-norm blocks with a sequential residual (`use_parallel_residual = false`), LayerNorm ε 1e-5 or
//! RMSNorm ε 1e-5, the erf GELU (`"gelu"` in transformers; `"gelu_new"` would be the tanh form), attention scaled by
//! 1/√head_dim, and GPT-NeoX's rotary convention, which is physlab's: "rotate half" on the first r dims of each head
//! (`partial_rotary_factor = r / head_dim`), frequencies base^(−2j/r). So no q/k row permutation is needed for
//! rotary; GPT-NeoX's only difference is that `query_key_value`'s output holds q, k, v *per head*
//! (`[heads, 3, head_dim]`) where physlab's holds them per part (`[3, heads, head_dim]`). Llama in transformers
//! rotates whole heads only, so a `llama` that rotates part of each head (physlab's default, a quarter) goes out as
//! Phi-3, which is Llama with partial rotary, a fused qkv (physlab's order) and a fused gate/up projection.
//! `gpt2mlp1` (d→d MLP) is GPT-NeoX with `intermediate_size = d`. `gpt2mlp0` (no MLP) and `moe` have no standard
//! equivalent and are refused. No family needs a zero bias: the GPT-2 families have every bias that GPT-NeoX and
//! GPT-2 have, and Llama/Phi-3 have none, as physlab's `llama`.
//!
//! Every mapping is a bijection of f32 values (transposes, row permutations, concatenations), so export → import
//! gives the very same bits.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::layers::LAYER_NORM_EPS;
use crate::lora::LoraShape;
use crate::model::{Arch, Family, FfnKind, GptShape, NormKind, Positions};

/// RMSNorm's ε (burn's `RmsNormConfig` default, which `GptShape::init` keeps).
pub const RMS_NORM_EPS: f64 = 1e-5;

/// A float tensor held as f32 values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors by name.
pub type Tensors = BTreeMap<String, Tensor32>;

/// The `transformers` architecture a physlab model goes out as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfArch {
    GptNeox,
    Gpt2,
    Llama,
    Phi3,
}

impl HfArch {
    /// The class `AutoModelForCausalLM` builds.
    pub fn class(self) -> &'static str {
        match self {
            HfArch::GptNeox => "GPTNeoXForCausalLM",
            HfArch::Gpt2 => "GPT2LMHeadModel",
            HfArch::Llama => "LlamaForCausalLM",
            HfArch::Phi3 => "Phi3ForCausalLM",
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            HfArch::GptNeox => "gpt_neox",
            HfArch::Gpt2 => "gpt2",
            HfArch::Llama => "llama",
            HfArch::Phi3 => "phi3",
        }
    }
}

/// The architecture a model of `shape` exports as, or a one-line reason why it has none.
pub fn hf_arch(shape: &GptShape) -> Result<HfArch, String> {
    let family = shape.arch.family.name();
    if shape.lora != LoraShape::default() {
        return Err(format!(
            "this {family} model carries LoRA adapters (a LoRA finetune): the transformers architectures have no place for them"
        ));
    }
    match (shape.arch.family, shape.arch.ffn) {
        (Family::Gpt2mlp0, _) => Err(
            "gpt2mlp0 has no feed-forward part (its blocks are attention only): no transformers architecture has such blocks"
                .into(),
        ),
        (Family::Moe, _) => Err(
            "moe (a top-1 mixture of capacity-limited GELU experts) has no standard transformers equivalent".into(),
        ),
        (Family::Gpt2abs, FfnKind::Gelu { .. }) => Ok(HfArch::Gpt2),
        (Family::Gpt2 | Family::Gpt2mlp1, FfnKind::Gelu { .. }) => Ok(HfArch::GptNeox),
        (Family::Llama, FfnKind::SwiGlu { .. }) if shape.rotary_dims == shape.head_dim() => {
            Ok(HfArch::Llama)
        }
        (Family::Llama, FfnKind::SwiGlu { .. }) => Ok(HfArch::Phi3),
        (f, ffn) => Err(format!(
            "{} with feed-forward {ffn:?} is not a model physlab builds",
            f.name()
        )),
    }
}

/// One bijection between physlab tensors and transformers tensors. Each side is a list of row blocks: a physlab
/// tensor contributes its rows (a Linear weight [in, out] first transposed to [out, in] when `transpose`; a bias
/// or norm vector one value per row); the rows of the physlab side, concatenated in order, become the rows of the
/// transformers side after `perm` (transformers row r = physlab row perm[r]).
struct Entry {
    hf: Vec<(String, Vec<usize>)>,
    pl: Vec<(String, Vec<usize>)>,
    transpose: bool,
    perm: Option<Vec<usize>>,
}

fn entry(hf: &str, pl: &str, shape: &[usize], transpose: bool) -> Entry {
    let hf_shape = if transpose {
        vec![shape[1], shape[0]]
    } else {
        shape.to_vec()
    };
    Entry {
        hf: vec![(hf.into(), hf_shape)],
        pl: vec![(pl.into(), shape.to_vec())],
        transpose,
        perm: None,
    }
}

/// GPT-NeoX's `query_key_value` output row for (head h, part p ∈ q,k,v, dim j) is h·3·hd + p·hd + j; physlab's is
/// p·d + h·hd + j.
fn neox_qkv_perm(n_head: usize, head_dim: usize) -> Vec<usize> {
    let d = n_head * head_dim;
    let mut perm = Vec::with_capacity(3 * d);
    for h in 0..n_head {
        for p in 0..3 {
            for j in 0..head_dim {
                perm.push(p * d + h * head_dim + j);
            }
        }
    }
    perm
}

fn entries(shape: &GptShape, arch: HfArch) -> Vec<Entry> {
    let d = shape.d_model;
    let v = shape.vocab_size;
    let hidden = match shape.arch.ffn {
        FfnKind::Gelu { hidden } | FfnKind::SwiGlu { hidden } => hidden,
        _ => 0,
    };
    let mut e = Vec::new();
    match arch {
        HfArch::GptNeox => {
            e.push(entry(
                "gpt_neox.embed_in.weight",
                "wte.weight",
                &[v, d],
                false,
            ));
            for i in 0..shape.n_layer {
                let h = format!("gpt_neox.layers.{i}.");
                let p = format!("blocks.{i}.");
                for (hn, pn) in [
                    ("input_layernorm", "ln_1"),
                    ("post_attention_layernorm", "ln_2"),
                ] {
                    e.push(entry(
                        &format!("{h}{hn}.weight"),
                        &format!("{p}{pn}.Layer.gamma"),
                        &[d],
                        false,
                    ));
                    e.push(entry(
                        &format!("{h}{hn}.bias"),
                        &format!("{p}{pn}.Layer.beta"),
                        &[d],
                        false,
                    ));
                }
                let perm = neox_qkv_perm(shape.n_head, shape.head_dim());
                let mut w = entry(
                    &format!("{h}attention.query_key_value.weight"),
                    &format!("{p}attn.qkv.weight"),
                    &[d, 3 * d],
                    true,
                );
                w.perm = Some(perm.clone());
                e.push(w);
                let mut b = entry(
                    &format!("{h}attention.query_key_value.bias"),
                    &format!("{p}attn.qkv.bias"),
                    &[3 * d],
                    false,
                );
                b.perm = Some(perm);
                e.push(b);
                for (hn, pn, i_, o) in [
                    ("attention.dense", "attn.proj", d, d),
                    ("mlp.dense_h_to_4h", "ffn.Gelu.fc", d, hidden),
                    ("mlp.dense_4h_to_h", "ffn.Gelu.proj", hidden, d),
                ] {
                    e.push(entry(
                        &format!("{h}{hn}.weight"),
                        &format!("{p}{pn}.weight"),
                        &[i_, o],
                        true,
                    ));
                    e.push(entry(
                        &format!("{h}{hn}.bias"),
                        &format!("{p}{pn}.bias"),
                        &[o],
                        false,
                    ));
                }
            }
            e.push(entry(
                "gpt_neox.final_layer_norm.weight",
                "ln_f.Layer.gamma",
                &[d],
                false,
            ));
            e.push(entry(
                "gpt_neox.final_layer_norm.bias",
                "ln_f.Layer.beta",
                &[d],
                false,
            ));
        }
        HfArch::Gpt2 => {
            e.push(entry(
                "transformer.wte.weight",
                "wte.weight",
                &[v, d],
                false,
            ));
            e.push(entry(
                "transformer.wpe.weight",
                "wpe.weight",
                &[shape.context, d],
                false,
            ));
            for i in 0..shape.n_layer {
                let h = format!("transformer.h.{i}.");
                let p = format!("blocks.{i}.");
                for (hn, pn) in [("ln_1", "ln_1"), ("ln_2", "ln_2")] {
                    e.push(entry(
                        &format!("{h}{hn}.weight"),
                        &format!("{p}{pn}.Layer.gamma"),
                        &[d],
                        false,
                    ));
                    e.push(entry(
                        &format!("{h}{hn}.bias"),
                        &format!("{p}{pn}.Layer.beta"),
                        &[d],
                        false,
                    ));
                }
                // GPT-2's Conv1D stores [in, out], as burn's Linear does.
                for (hn, pn, i_, o) in [
                    ("attn.c_attn", "attn.qkv", d, 3 * d),
                    ("attn.c_proj", "attn.proj", d, d),
                    ("mlp.c_fc", "ffn.Gelu.fc", d, hidden),
                    ("mlp.c_proj", "ffn.Gelu.proj", hidden, d),
                ] {
                    e.push(entry(
                        &format!("{h}{hn}.weight"),
                        &format!("{p}{pn}.weight"),
                        &[i_, o],
                        false,
                    ));
                    e.push(entry(
                        &format!("{h}{hn}.bias"),
                        &format!("{p}{pn}.bias"),
                        &[o],
                        false,
                    ));
                }
            }
            e.push(entry(
                "transformer.ln_f.weight",
                "ln_f.Layer.gamma",
                &[d],
                false,
            ));
            e.push(entry(
                "transformer.ln_f.bias",
                "ln_f.Layer.beta",
                &[d],
                false,
            ));
        }
        HfArch::Llama | HfArch::Phi3 => {
            e.push(entry(
                "model.embed_tokens.weight",
                "wte.weight",
                &[v, d],
                false,
            ));
            for i in 0..shape.n_layer {
                let h = format!("model.layers.{i}.");
                let p = format!("blocks.{i}.");
                for (hn, pn) in [
                    ("input_layernorm", "ln_1"),
                    ("post_attention_layernorm", "ln_2"),
                ] {
                    e.push(entry(
                        &format!("{h}{hn}.weight"),
                        &format!("{p}{pn}.Rms.gamma"),
                        &[d],
                        false,
                    ));
                }
                let qkv = (format!("{p}attn.qkv.weight"), vec![d, 3 * d]);
                let gate = (format!("{p}ffn.SwiGlu.gate.weight"), vec![d, hidden]);
                let up = (format!("{p}ffn.SwiGlu.up.weight"), vec![d, hidden]);
                if arch == HfArch::Llama {
                    e.push(Entry {
                        hf: ["q_proj", "k_proj", "v_proj"]
                            .iter()
                            .map(|n| (format!("{h}self_attn.{n}.weight"), vec![d, d]))
                            .collect(),
                        pl: vec![qkv],
                        transpose: true,
                        perm: None,
                    });
                    e.push(entry(
                        &format!("{h}mlp.gate_proj.weight"),
                        &gate.0,
                        &gate.1,
                        true,
                    ));
                    e.push(entry(&format!("{h}mlp.up_proj.weight"), &up.0, &up.1, true));
                } else {
                    e.push(Entry {
                        hf: vec![(format!("{h}self_attn.qkv_proj.weight"), vec![3 * d, d])],
                        pl: vec![qkv],
                        transpose: true,
                        perm: None,
                    });
                    e.push(Entry {
                        hf: vec![(format!("{h}mlp.gate_up_proj.weight"), vec![2 * hidden, d])],
                        pl: vec![gate, up],
                        transpose: true,
                        perm: None,
                    });
                }
                e.push(entry(
                    &format!("{h}self_attn.o_proj.weight"),
                    &format!("{p}attn.proj.weight"),
                    &[d, d],
                    true,
                ));
                e.push(entry(
                    &format!("{h}mlp.down_proj.weight"),
                    &format!("{p}ffn.SwiGlu.down.weight"),
                    &[hidden, d],
                    true,
                ));
            }
            e.push(entry("model.norm.weight", "ln_f.Rms.gamma", &[d], false));
            e.push(entry("lm_head.weight", "lm_head.weight", &[d, v], true));
        }
    }
    e
}

/// Rows of a tensor of `shape` (a vector: one value per row; a matrix transposed first when `transpose`).
fn rows_of(t: &Tensor32, transpose: bool) -> (usize, Vec<f32>) {
    match (t.shape.as_slice(), transpose) {
        ([r, c], true) => {
            let (r, c) = (*r, *c);
            let mut out = vec![0.0; r * c];
            for i in 0..r {
                for j in 0..c {
                    out[j * r + i] = t.data[i * c + j];
                }
            }
            (r, out)
        }
        ([_], _) => (1, t.data.clone()),
        (s, _) => (s[1..].iter().product(), t.data.clone()),
    }
}

/// The inverse of [`rows_of`]: a tensor of `shape` from its rows.
fn from_rows(rows: &[f32], shape: &[usize], transpose: bool) -> Tensor32 {
    let data = match (shape, transpose) {
        ([r, c], true) => {
            let (r, c) = (*r, *c);
            let mut out = vec![0.0; r * c];
            for i in 0..r {
                for j in 0..c {
                    out[i * c + j] = rows[j * r + i];
                }
            }
            out
        }
        _ => rows.to_vec(),
    };
    Tensor32 {
        shape: shape.to_vec(),
        data,
    }
}

/// Moves each entry's tensors from one side (`src`, taken out of `from`) to the other, checking names and shapes.
fn convert(
    entries: &[Entry],
    from: &mut Tensors,
    to_hf: bool,
    what: &str,
) -> Result<Tensors, String> {
    let mut out = Tensors::new();
    for e in entries {
        let (src, dst) = if to_hf {
            (&e.pl, &e.hf)
        } else {
            (&e.hf, &e.pl)
        };
        // The source side's rows, in order.
        let mut rows: Vec<f32> = Vec::new();
        let mut row_len = 0;
        for (name, shape) in src {
            let t = from
                .remove(name)
                .ok_or_else(|| format!("{what} lacks the tensor {name}"))?;
            if &t.shape != shape {
                return Err(format!(
                    "{what}: tensor {name} has shape {:?}, expected {shape:?}",
                    t.shape
                ));
            }
            // physlab matrices are [in, out] and give their rows transposed; transformers tensors are already rows.
            let (len, r) = rows_of(&t, e.transpose && to_hf);
            row_len = len;
            rows.extend(r);
        }
        if let Some(perm) = &e.perm {
            let mut permuted = vec![0.0; rows.len()];
            for (r, &p) in perm.iter().enumerate() {
                let (dst_row, src_row) = if to_hf { (r, p) } else { (p, r) };
                permuted[dst_row * row_len..(dst_row + 1) * row_len]
                    .copy_from_slice(&rows[src_row * row_len..(src_row + 1) * row_len]);
            }
            rows = permuted;
        }
        let mut at = 0;
        for (name, shape) in dst {
            let n: usize = shape.iter().product();
            let t = from_rows(&rows[at..at + n], shape, e.transpose && !to_hf);
            at += n;
            out.insert(name.clone(), t);
        }
    }
    if let Some(extra) = from.keys().next() {
        return Err(format!(
            "{what} holds tensors the model does not have: {extra}{}",
            if from.len() > 1 {
                format!(" … ({} in all)", from.len())
            } else {
                String::new()
            }
        ));
    }
    Ok(out)
}

/// physlab tensors (burn's names and layouts, as in a checkpoint's model.safetensors) → transformers tensors.
pub fn to_hf_tensors(shape: &GptShape, physlab: &Tensors) -> Result<(HfArch, Tensors), String> {
    let arch = hf_arch(shape)?;
    let mut from = physlab.clone();
    let out = convert(&entries(shape, arch), &mut from, true, "the checkpoint")?;
    Ok((arch, out))
}

/// transformers tensors → physlab tensors for the model of `shape`. For a tied model, a stored `lm_head.weight`
/// (which some savers write beside the embedding) must equal the embedding, or stand in for it when alone.
pub fn from_hf_tensors(shape: &GptShape, hf: &Tensors) -> Result<Tensors, String> {
    let arch = hf_arch(shape)?;
    let mut from = hf.clone();
    // Buffers older transformers versions saved beside the weights (causal masks, rotary frequencies).
    from.retain(|k, _| {
        !(k.ends_with(".inv_freq")
            || k.ends_with(".attn.bias") && arch == HfArch::Gpt2
            || k.ends_with(".masked_bias")
            || k.ends_with(".attention.bias") && arch == HfArch::GptNeox)
    });
    if shape.arch.tied {
        let emb = match arch {
            HfArch::GptNeox => "gpt_neox.embed_in.weight",
            _ => "transformer.wte.weight",
        };
        for head in ["lm_head.weight", "embed_out.weight"] {
            if let Some(h) = from.remove(head) {
                match from.get(emb) {
                    Some(e) if *e != h => {
                        return Err(format!(
                            "{head} differs from {emb}, but the model's output layer is tied to its embedding"
                        ))
                    }
                    Some(_) => {}
                    None => {
                        from.insert(emb.into(), h);
                    }
                }
            }
        }
    }
    convert(&entries(shape, arch), &mut from, false, "model.safetensors")
}

/// `partial_rotary_factor` for r rotated dims of a head of `head_dim`: r/head_dim, nudged up (if ever needed) so
/// that transformers' `int(head_dim * factor)` gives back r.
fn rotary_factor(r: usize, head_dim: usize) -> f64 {
    let mut f = r as f64 / head_dim as f64;
    while ((head_dim as f64) * f) < r as f64 {
        f = f64::from_bits(f.to_bits() + 1);
    }
    f
}

/// The transformers `config.json` of a model of `shape` exported as `arch` (float32; `<eot>`, id 0, as BOS and
/// EOS). `physlab` carries what transformers does not need (the family, the training step and tokens).
pub fn hf_config(shape: &GptShape, arch: HfArch, physlab: Value) -> Value {
    let d = shape.d_model;
    let hidden = match shape.arch.ffn {
        FfnKind::Gelu { hidden } | FfnKind::SwiGlu { hidden } => hidden,
        _ => 0,
    };
    let factor = rotary_factor(shape.rotary_dims, shape.head_dim());
    let mut c = match arch {
        HfArch::GptNeox => json!({
            "hidden_size": d,
            "num_hidden_layers": shape.n_layer,
            "num_attention_heads": shape.n_head,
            "intermediate_size": hidden,
            "hidden_act": "gelu",
            "max_position_embeddings": shape.context,
            "layer_norm_eps": LAYER_NORM_EPS,
            "use_parallel_residual": false,
            "attention_bias": true,
            "attention_dropout": 0.0,
            "hidden_dropout": 0.0,
            "tie_word_embeddings": true,
            "rope_parameters": {"rope_type": "default", "rope_theta": shape.rope_base, "partial_rotary_factor": factor},
            // The same for transformers 4.x, which reads these names.
            "rotary_pct": factor,
            "rotary_emb_base": shape.rope_base,
        }),
        HfArch::Gpt2 => json!({
            "n_embd": d,
            "n_layer": shape.n_layer,
            "n_head": shape.n_head,
            "n_inner": hidden,
            "n_positions": shape.context,
            "n_ctx": shape.context,
            "activation_function": "gelu",
            "layer_norm_epsilon": LAYER_NORM_EPS,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": true,
        }),
        HfArch::Llama | HfArch::Phi3 => {
            let mut rope = json!({"rope_type": "default", "rope_theta": shape.rope_base});
            let mut c = json!({
                "hidden_size": d,
                "num_hidden_layers": shape.n_layer,
                "num_attention_heads": shape.n_head,
                "num_key_value_heads": shape.n_head,
                "head_dim": shape.head_dim(),
                "intermediate_size": hidden,
                "hidden_act": "silu",
                "max_position_embeddings": shape.context,
                "rms_norm_eps": RMS_NORM_EPS,
                "attention_bias": false,
                "attention_dropout": 0.0,
                "tie_word_embeddings": false,
                "rope_theta": shape.rope_base,
            });
            if arch == HfArch::Llama {
                c["mlp_bias"] = json!(false);
            } else {
                rope["partial_rotary_factor"] = json!(factor);
                c["partial_rotary_factor"] = json!(factor);
                c["original_max_position_embeddings"] = json!(shape.context);
                c["sliding_window"] = Value::Null;
                c["resid_pdrop"] = json!(0.0);
                c["embd_pdrop"] = json!(0.0);
            }
            c["rope_parameters"] = rope;
            c
        }
    };
    let common = json!({
        "architectures": [arch.class()],
        "model_type": arch.model_type(),
        "vocab_size": shape.vocab_size,
        "initializer_range": shape.init_std,
        "bos_token_id": 0,
        "eos_token_id": 0,
        // Phi-3's default pad id (32000) lies outside small vocabularies; generation_config.json sets <eot>.
        "pad_token_id": Value::Null,
        "use_cache": true,
        "dtype": "float32",
        "physlab": physlab,
    });
    for (k, v) in common.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

fn get<'a>(c: &'a Value, key: &str) -> Result<&'a Value, String> {
    c.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("config.json lacks {key}"))
}

fn get_usize(c: &Value, key: &str) -> Result<usize, String> {
    get(c, key)?
        .as_u64()
        .filter(|&v| v > 0)
        .map(|v| v as usize)
        .ok_or_else(|| format!("config.json: {key} must be a positive integer"))
}

fn get_f64(c: &Value, key: &str, default: f64) -> Result<f64, String> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format!("config.json: {key} must be a number")),
    }
}

/// `key` must be `want` (or absent when `default` is `want`): a setting physlab's model has no other value for.
fn require(c: &Value, key: &str, want: Value, default: Value) -> Result<(), String> {
    let got = c.get(key).cloned().unwrap_or(default);
    let same = match (&got, &want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "config.json: {key} = {got}, but physlab's model has {want} (it cannot compute this model)"
        ))
    }
}

/// The physlab shape of a transformers `config.json` this module writes (or one edited within what physlab can
/// compute: sizes, not the kind of computation). Every setting physlab has no other value for is checked.
pub fn shape_from_hf_config(c: &Value) -> Result<(GptShape, HfArch), String> {
    let model_type = get(c, "model_type")?
        .as_str()
        .ok_or("config.json: model_type must be a string")?;
    let arch = match model_type {
        "gpt_neox" => HfArch::GptNeox,
        "gpt2" => HfArch::Gpt2,
        "llama" => HfArch::Llama,
        "phi3" => HfArch::Phi3,
        other => {
            return Err(format!(
                "config.json: model_type {other:?} is not one physlab imports (gpt_neox, gpt2, llama, phi3)"
            ))
        }
    };
    let vocab_size = get_usize(c, "vocab_size")?;
    let init_std = get_f64(c, "initializer_range", 0.02)?;
    let rope = c.get("rope_parameters").cloned().unwrap_or(Value::Null);
    let rope_f = |key: &str, legacy: &str, default: f64| -> Result<f64, String> {
        match rope.get(key) {
            Some(v) if !v.is_null() => v
                .as_f64()
                .ok_or_else(|| format!("config.json: rope_parameters.{key} must be a number")),
            _ => get_f64(c, legacy, default),
        }
    };
    if let Some(t) = rope.get("rope_type").and_then(Value::as_str) {
        if t != "default" {
            return Err(format!(
                "config.json: rope_parameters.rope_type = {t:?}; physlab's rotary is the default kind"
            ));
        }
    }
    let (n_layer, n_head, d_model, context, hidden, rotary_dims, rope_base, family, norm);
    match arch {
        HfArch::GptNeox => {
            d_model = get_usize(c, "hidden_size")?;
            n_layer = get_usize(c, "num_hidden_layers")?;
            n_head = get_usize(c, "num_attention_heads")?;
            context = get_usize(c, "max_position_embeddings")?;
            hidden = get_usize(c, "intermediate_size")?;
            require(c, "hidden_act", json!("gelu"), json!("gelu"))?;
            require(c, "use_parallel_residual", json!(false), json!(true))?;
            require(c, "tie_word_embeddings", json!(true), json!(false))?;
            require(c, "attention_bias", json!(true), json!(true))?;
            require(c, "layer_norm_eps", json!(LAYER_NORM_EPS), json!(1e-5))?;
            let factor = rope_f("partial_rotary_factor", "rotary_pct", 0.25)?;
            rotary_dims = ((d_model / n_head.max(1)) as f64 * factor) as usize;
            rope_base = rope_f("rope_theta", "rotary_emb_base", 10_000.0)?;
            family = if hidden == 4 * d_model {
                Family::Gpt2
            } else if hidden == d_model {
                Family::Gpt2mlp1
            } else {
                return Err(format!(
                    "config.json: intermediate_size = {hidden}; physlab's GPT-2 MLPs are 4·d = {} (gpt2) or d = {d_model} (gpt2mlp1)",
                    4 * d_model
                ));
            };
            norm = NormKind::Layer;
        }
        HfArch::Gpt2 => {
            d_model = get_usize(c, "n_embd")?;
            n_layer = get_usize(c, "n_layer")?;
            n_head = get_usize(c, "n_head")?;
            context = get_usize(c, "n_positions")?;
            hidden = match c.get("n_inner") {
                None | Some(Value::Null) => 4 * d_model,
                Some(_) => get_usize(c, "n_inner")?,
            };
            require(c, "activation_function", json!("gelu"), json!("gelu_new"))?;
            require(c, "tie_word_embeddings", json!(true), json!(true))?;
            require(c, "layer_norm_epsilon", json!(LAYER_NORM_EPS), json!(1e-5))?;
            require(c, "scale_attn_weights", json!(true), json!(true))?;
            require(
                c,
                "scale_attn_by_inverse_layer_idx",
                json!(false),
                json!(false),
            )?;
            if hidden != 4 * d_model {
                return Err(format!(
                    "config.json: n_inner = {hidden}; physlab's gpt2abs MLP is 4·d = {}",
                    4 * d_model
                ));
            }
            rotary_dims = 0;
            rope_base = 10_000.0;
            family = Family::Gpt2abs;
            norm = NormKind::Layer;
        }
        HfArch::Llama | HfArch::Phi3 => {
            d_model = get_usize(c, "hidden_size")?;
            n_layer = get_usize(c, "num_hidden_layers")?;
            n_head = get_usize(c, "num_attention_heads")?;
            context = get_usize(c, "max_position_embeddings")?;
            hidden = get_usize(c, "intermediate_size")?;
            let heads = json!(n_head);
            require(c, "num_key_value_heads", heads.clone(), heads)?;
            let hd = json!(d_model / n_head);
            require(c, "head_dim", hd.clone(), hd)?;
            require(c, "hidden_act", json!("silu"), json!("silu"))?;
            require(c, "tie_word_embeddings", json!(false), json!(false))?;
            require(c, "attention_bias", json!(false), json!(false))?;
            require(c, "mlp_bias", json!(false), json!(false))?;
            require(c, "rms_norm_eps", json!(RMS_NORM_EPS), json!(1e-6))?;
            let swiglu = (8 * d_model / 3).div_ceil(16) * 16;
            if hidden != swiglu {
                return Err(format!(
                    "config.json: intermediate_size = {hidden}; physlab's llama SwiGLU of d = {d_model} is {swiglu} wide"
                ));
            }
            let factor = if arch == HfArch::Phi3 {
                rope_f("partial_rotary_factor", "partial_rotary_factor", 1.0)?
            } else {
                1.0
            };
            rotary_dims = ((d_model / n_head.max(1)) as f64 * factor) as usize;
            rope_base = rope_f("rope_theta", "rope_theta", 10_000.0)?;
            family = Family::Llama;
            norm = NormKind::Rms;
        }
    }
    if d_model % n_head != 0 || rotary_dims % 2 != 0 {
        return Err(format!(
            "config.json: hidden size {d_model} with {n_head} heads and {rotary_dims} rotary dims per head is not a physlab shape"
        ));
    }
    let ffn = if family == Family::Llama {
        FfnKind::SwiGlu { hidden }
    } else {
        FfnKind::Gelu { hidden }
    };
    let shape = GptShape {
        arch: Arch {
            family,
            positions: if family == Family::Gpt2abs {
                Positions::Absolute
            } else {
                Positions::Rotary
            },
            norm,
            ffn,
            tied: family != Family::Llama,
            bias: family != Family::Llama,
        },
        n_layer,
        n_head,
        d_model,
        vocab_size,
        context,
        rotary_dims,
        rope_base,
        init_std,
        router_aux_weight: crate::model::ModelConfig::default().router_aux_weight,
        lora: LoraShape::default(),
    };
    Ok((shape, arch))
}

/// Reads a safetensors file's float tensors as f32 (F32 as is; BF16 and F16 widened exactly).
pub fn read_safetensors(bytes: &[u8]) -> Result<Tensors, String> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = Tensors::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(format!(
                    "tensor {name} is {other:?}; physlab reads F32, BF16 and F16"
                ))
            }
        };
        out.insert(
            name,
            Tensor32 {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Writes f32 tensors as a safetensors file (with `metadata`; transformers wants `format = pt`).
pub fn write_safetensors(tensors: &Tensors, metadata: &[(&str, &str)]) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("shape matches data"),
            )
        })
        .collect();
    let meta = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::tensor::serialize(views, Some(meta)).expect("serializes")
}

/// A model's tensors under physlab's names (burn's module paths), as its checkpoint's model.safetensors holds them.
pub fn model_tensors<B: burn::tensor::backend::Backend>(
    model: &crate::model::Gpt<B>,
) -> Result<Tensors, String> {
    use burn_store::{ModuleSnapshot, SafetensorsStore};
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    let bytes = store.get_bytes().map_err(|e| e.to_string())?;
    read_safetensors(&bytes)
}

/// The model of `shape` with exactly `tensors` as its weights (every tensor of the model, no other).
pub fn model_from_tensors<B: burn::tensor::backend::Backend>(
    shape: &GptShape,
    tensors: &Tensors,
    device: &B::Device,
) -> Result<crate::model::Gpt<B>, String> {
    use burn::module::Module;
    use burn_store::{ModuleSnapshot, SafetensorsStore};
    let bytes = write_safetensors(tensors, &[]);
    let mut model = shape.without_lora().init::<B>(device);
    let applied = model
        .load_from(&mut SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true))
        .map_err(|e| e.to_string())?;
    if let Some((p, _)) = applied.missing.first() {
        return Err(format!("no weights for the model's tensor {p}"));
    }
    if let Some(p) = applied.unused.first() {
        return Err(format!("the tensor {p} is not the model's"));
    }
    Ok(model.map(&mut crate::train::ToF32))
}
