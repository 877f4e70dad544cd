//! Post-training weight quantization (Part 3.3 §7): every weight matrix is rounded to int8 or int4, symmetric
//! and per output channel, then dequantized back to f32 ("fake quantization"), so the quantized model is
//! evaluated by the same code path and its capacity measured in bits like any other.
//!
//! For a channel c with weights w: scale s = max|w| / q_max (q_max = 127 for int8, 7 for int4) and
//! w' = s · clamp(round(w / s), −q_max, q_max). A Linear weight is [in, out]: a channel is a column. An
//! embedding [V, d] (also the tied output layer) is quantized per row: each token's vector is a channel.
//! Biases and normalisation gains (rank 1) stay in f32, as weight-only quantization leaves them.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::Gpt;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Quant {
    Int8,
    Int4,
}

impl Quant {
    pub fn q_max(self) -> f64 {
        match self {
            Quant::Int8 => 127.0,
            Quant::Int4 => 7.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quant::Int8 => "int8",
            Quant::Int4 => "int4",
        }
    }
}

/// Quantizes `x` [rows, cols] symmetrically along `channel_dim` (0: a scale per row, 1: per column).
pub fn fake_quantize<B: Backend>(x: Tensor<B, 2>, channel_dim: usize, q: Quant) -> Tensor<B, 2> {
    let reduce = 1 - channel_dim;
    let q_max = q.q_max();
    // A channel of zeros keeps scale 0 → stays zero (the division uses a floor to avoid 0/0).
    let scale = x.clone().abs().max_dim(reduce).div_scalar(q_max);
    let safe = scale.clone().clamp_min(1e-30);
    x.div(safe).round().clamp(-q_max, q_max).mul(scale)
}

struct Quantizer {
    q: Quant,
    /// Container types from the root to the current module.
    stack: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Quantizer {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.stack.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if D != 2 {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let embedding = self.stack.last().is_some_and(|c| c.ends_with(":Embedding"));
        let dims = tensor.dims();
        let t2: Tensor<B, 2> = tensor.reshape([dims[0], dims[1]]);
        let out = fake_quantize(t2, if embedding { 0 } else { 1 }, self.q);
        Param::from_mapped_value(id, out.reshape(dims), mapper)
    }
}

/// The model with every weight matrix quantized to `q` (and dequantized back).
pub fn quantize<B: Backend>(model: Gpt<B>, q: Quant) -> Gpt<B> {
    model.map(&mut Quantizer {
        q,
        stack: Vec::new(),
    })
}
