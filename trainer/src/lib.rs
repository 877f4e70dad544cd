//! physlab trainer: GPT2-rotary on burn 0.21 (`burn-flex` on CPU), a hand-written training loop that counts steps,
//! tokens and exposures, AdamW with warm-up and cosine decay, metrics.jsonl and safetensors checkpoints.

pub mod model;
pub mod optim;
pub mod schedule;
pub mod train;

pub use burn;
pub use model::{Gpt, GptShape, ModelConfig, ParamCounts};
pub use train::{TrainConfig, TrainError, TrainOutcome};

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
/// The default CPU backend with autodiff, for training.
pub type CpuTrain = burn::backend::Autodiff<burn::backend::Flex>;
