//! physlab trainer: GPT2-rotary on burn 0.21 (`burn-flex` on CPU), a hand-written training loop that counts steps,
//! tokens and exposures, AdamW with warm-up and cosine decay, metrics.jsonl and safetensors checkpoints.

pub mod kernels;
pub mod layers;
pub mod lora;
pub mod model;
pub mod moe;
pub mod optim;
pub mod quant;
pub mod schedule;
pub mod train;

pub use burn;
pub use model::{Gpt, GptShape, ModelConfig, ParamCounts};
pub use train::{LossOn, TrainConfig, TrainError, TrainOutcome};

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
/// The default CPU backend with autodiff, for training.
pub type CpuTrain = burn::backend::Autodiff<burn::backend::Flex>;

/// The GPU backend: burn-cuda with bf16 tensors (parameters, activations and optimizer moments in bf16: burn
/// 0.21 has no automatic mixed precision).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<burn::tensor::bf16, i32>;
/// The GPU backend with autodiff, for training.
#[cfg(feature = "cuda")]
pub type GpuTrain = burn::backend::Autodiff<Gpu>;

/// Whether this build can run on an NVIDIA GPU here: compiled with the `cuda` feature, and an NVIDIA driver
/// present (its device node and `libcuda.so.1`). burn panics when a CUDA device is touched without a driver, so
/// callers check this first and turn a refusal into a clear error.
pub fn cuda_available() -> Result<(), String> {
    if !cfg!(feature = "cuda") {
        return Err("this physlab was built without CUDA: build it with `--features cuda` (e.g. `cargo run --release --features cuda -- run …`)".into());
    }
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        return Err("no NVIDIA driver on this machine (/dev/nvidiactl is missing): run on CPU (`--backend cpu`)".into());
    }
    let mut dirs: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/nvidia/lib64",
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/compat",
            "/usr/lib/wsl/lib",
        ]
        .map(String::from),
    );
    if dirs
        .iter()
        .any(|d| std::path::Path::new(d).join("libcuda.so.1").exists())
    {
        Ok(())
    } else {
        Err(format!(
            "the NVIDIA driver library libcuda.so.1 is not in LD_LIBRARY_PATH nor in {}: install the driver or set LD_LIBRARY_PATH",
            dirs.join(", ")
        ))
    }
}
