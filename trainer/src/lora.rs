//! LoRA (Hu et al. 2021) for QA finetuning, as Part 3.1 uses it: low-rank updates on the attention's query and
//! value projections and, separately, on the token embedding (Part 3.1 / SPEC §6: rank 8–16 on q/v, 128 on the
//! embedding, because the BIO → QA format shift needs it). W' = W + (α/r)·A·B with B = 0 at the start (A = 0 for
//! the embedding), so finetuning starts from the pretrained model exactly; the pretrained weights are frozen and
//! only A and B train.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

/// A low-rank update ΔW = scale · A·B of a [d_in, d_out] weight.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    pub a: Param<Tensor<B, 2>>,
    pub b: Param<Tensor<B, 2>>,
    pub scale: f64,
}

impl<B: Backend> Lora<B> {
    /// For a linear map: A ~ N(0, 1/d_in), B = 0.
    pub fn linear(d_in: usize, d_out: usize, rank: usize, alpha: f64, device: &B::Device) -> Self {
        Lora {
            a: Param::from_tensor(Tensor::random(
                [d_in, rank],
                Distribution::Normal(0.0, 1.0 / (d_in as f64).sqrt()),
                device,
            )),
            b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
            scale: alpha / rank as f64,
        }
    }

    /// For an embedding table [V, d]: A = 0 [V, r], B ~ N(0, 1) [r, d] (as PEFT initialises embeddings).
    pub fn embedding(vocab: usize, d: usize, rank: usize, alpha: f64, device: &B::Device) -> Self {
        Lora {
            a: Param::from_tensor(Tensor::zeros([vocab, rank], device)),
            b: Param::from_tensor(Tensor::random(
                [rank, d],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            scale: alpha / rank as f64,
        }
    }

    /// x [batch, T, d_in] → the update's output [batch, T, d_out].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let out = self.b.dims()[1];
        x.reshape([b * t, d])
            .matmul(self.a.val())
            .matmul(self.b.val())
            .mul_scalar(self.scale)
            .reshape([b, t, out])
    }

    /// The full update scale·A·B.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

/// Where LoRA goes and its ranks (0: none there).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LoraShape {
    pub qv_rank: usize,
    pub embedding_rank: usize,
    /// α: the update is scaled by α / rank (α = rank gives 1).
    pub alpha: f64,
}

impl LoraShape {
    pub fn any(&self) -> bool {
        self.qv_rank > 0 || self.embedding_rank > 0
    }

    pub fn alpha_for(&self, rank: usize) -> f64 {
        if self.alpha > 0.0 {
            self.alpha
        } else {
            rank as f64
        }
    }
}

/// Sets every parameter to require gradients only inside a [`Lora`] module: the pretrained weights are frozen.
pub struct FreezeAllButLora {
    stack: Vec<String>,
}

impl FreezeAllButLora {
    pub fn new() -> Self {
        FreezeAllButLora { stack: Vec::new() }
    }
}

impl Default for FreezeAllButLora {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> ModuleMapper<B> for FreezeAllButLora {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.stack.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let in_lora = self.stack.iter().any(|c| c.ends_with(":Lora"));
        param.set_require_grad(in_lora)
    }
}
