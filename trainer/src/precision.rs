//! Training precision, as the field does mixed precision (PyTorch autocast, Micikevicius et al. 2018): the master
//! weights, the gradients accumulated into them and AdamW's moments stay f32; in `bf16-mixed` the matrix products
//! (every linear layer, the tied output head, attention's q·kᵀ and p·v) take bf16 inputs, accumulate in f32 (what
//! tensor cores and burn-flex's bf16 GEMM do), round the result to bf16 (as autocast's bf16 matmul returns it) and
//! hand it on in f32; LayerNorm statistics, softmax, GELU, the loss and
//! every evaluation quantity are f32. The mixture of experts' router stays f32 (as the Switch Transformer keeps it).
//!
//! Which products run in bf16 is decided when the forward pass is built, by [`matmuls_in_bf16`] on the calling
//! thread; autodiff then differentiates the casts (a cast's backward casts the gradient back), so the backward
//! products run in bf16 too and the weight gradients arrive in f32. The training loop sets it for the duration of
//! [`crate::train::train`] with a [`PrecisionScope`]; everything else (evaluation, sampling, probes) runs f32.
//! The same code runs on the CPU backend, which is how it is tested without a GPU (`trainer/tests/precision.rs`).

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// `train.precision`: `auto` (the backend's default: f32 on CPU, bf16-mixed on CUDA), `f32`, or `bf16-mixed`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16Mixed,
}

impl Precision {
    /// `auto` resolved for backend `B`; `f32` and `bf16-mixed` as they are.
    pub fn resolve<B: crate::kernels::Kernels>(self) -> Precision {
        match self {
            Precision::Auto => B::default_precision(),
            p => p,
        }
    }

    pub fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }

    /// The recipe's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
        }
    }
}

thread_local! {
    static BF16_MATMULS: Cell<bool> = const { Cell::new(false) };
}

/// Whether the matrix products built on this thread now take bf16 inputs.
pub fn matmuls_in_bf16() -> bool {
    BF16_MATMULS.with(|c| c.get())
}

/// Sets the matrix products' precision on this thread until dropped (then the previous one is back). `Auto` must
/// be resolved first ([`Precision::resolve`]); it counts as f32 here.
pub struct PrecisionScope {
    previous: bool,
}

impl PrecisionScope {
    pub fn enter(p: Precision) -> Self {
        let previous = BF16_MATMULS.with(|c| c.replace(p == Precision::Bf16Mixed));
        PrecisionScope { previous }
    }
}

impl Drop for PrecisionScope {
    fn drop(&mut self) {
        BF16_MATMULS.with(|c| c.set(self.previous));
    }
}

/// a · b from bf16 inputs, its bf16 result handed on in f32, while [`matmuls_in_bf16`]; else as it is.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if matmuls_in_bf16() {
        a.cast(FloatDType::BF16)
            .matmul(b.cast(FloatDType::BF16))
            .cast(FloatDType::F32)
    } else {
        a.matmul(b)
    }
}

/// Rounds every element to the nearest bf16 (ties to even) and back to f32: what a bf16 cast keeps. Used by the
/// tests to state the expected value of a bf16 product.
pub fn round_bf16(x: f32) -> f32 {
    burn::tensor::bf16::from_f32(x).to_f32()
}
