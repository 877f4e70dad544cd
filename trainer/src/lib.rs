//! physlab trainer: GPT2-rotary on burn 0.21 (`burn-flex` on CPU), a hand-written training loop that counts steps,
//! tokens and exposures, AdamW with warm-up and cosine decay, metrics.jsonl and safetensors checkpoints.

pub mod cuda_probe;
pub mod hf;
pub mod kernels;
pub mod layers;
pub mod lora;
pub mod model;
pub mod moe;
pub mod optim;
pub mod precision;
pub mod quant;
pub mod schedule;
pub mod tensorboard;
pub mod train;

pub use burn;
pub use model::{Gpt, GptShape, ModelConfig, ParamCounts};
pub use precision::Precision;
pub use train::{LossOn, TrainConfig, TrainError, TrainOutcome, Windows};

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
/// The default CPU backend with autodiff, for training.
pub type CpuTrain = burn::backend::Autodiff<burn::backend::Flex>;

/// The GPU backend: burn-cuda with f32 tensors (master weights, optimizer moments, activations between products);
/// training runs its matrix products in bf16 by default (`train.precision`, `crate::precision`). burn 0.21 has no
/// automatic mixed precision: a backend of bf16 tensors would keep the weights and moments in bf16 too.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32, i32>;
/// The GPU backend with autodiff, for training.
#[cfg(feature = "cuda")]
pub type GpuTrain = burn::backend::Autodiff<Gpu>;

/// Whether this build can run on an NVIDIA GPU here: compiled with the `cuda` feature, the driver's device node,
/// a driver library new enough, and NVRTC (see [`cuda_probe`]). burn panics when a CUDA device is touched without
/// them, so callers check this first and turn a refusal into a clear one-line error. `Ok` describes what was found.
pub fn cuda_available() -> Result<String, String> {
    if !cfg!(feature = "cuda") {
        return Err("this physlab was built without CUDA: build it with `--features cuda` (e.g. `cargo run --release --features cuda -- run …`)".into());
    }
    cuda_probe::probe_system().verdict()
}
