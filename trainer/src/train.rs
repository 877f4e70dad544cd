//! The training loop, written by hand (burn's custom-training-loop example): it counts steps, tokens and
//! exposures, takes the learning rate as a pure function of the step, appends metrics.jsonl and saves a
//! final checkpoint (safetensors weights + config), complete only once its DONE marker is written.
//!
//! Checkpoints are written crash-safe (every file flushed to disk, a temporary folder renamed into place, DONE
//! last) with a `checksums.json` (sha256 of each file) that every load verifies; a load also checks the model
//! shape before burn sees a record and that every parameter is finite, so a damaged, foreign or diverged
//! checkpoint is a one-line error naming it and the file, never a panic or a silently wrong model. `--resume`
//! takes the newest step checkpoint that loads, reporting each newer one that does not.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use physlab_generators::fsio::{atomic_write, sync_dir, sync_file};
use physlab_generators::WindowMixer;
use serde::{Deserialize, Serialize};

use crate::kernels::TrainBackend;
use crate::lora::{FreezeAllButLora, LoraShape};
use crate::model::{token_nll, Gpt, GptShape};
use crate::optim::{clip_grad_norm, AdamW};
use crate::precision::{Precision, PrecisionScope};
use crate::schedule::lr_at;

/// The largest `train.exposures` a recipe may ask for (the papers go to 1000; more is a typo, and a budget of
/// 1e30 exposures would overflow the step count).
pub const MAX_EXPOSURES: f64 = 1e6;

/// Set (by a signal handler, or by anyone) to stop training at the next step boundary with a complete step
/// checkpoint ([`TrainError::Stopped`]). Only an atomic store: safe to set from a signal handler.
pub static STOP_REQUESTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The training part of a recipe. The budget is `exposures` (converted to steps from the dataset's measured
/// tokens per biography) unless `steps` is set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// How many times each person's knowledge is seen: steps = N·E·(tokens per biography) / (batch·context).
    pub exposures: f64,
    /// A budget in steps instead of exposures (0: use `tokens` or `exposures`).
    pub steps: usize,
    /// A budget in training tokens (0: use `exposures`); `steps` wins over it.
    pub tokens: u64,
    pub batch_size: usize,
    pub context: usize,
    pub lr: f64,
    /// Cosine decay ends at `min_lr_ratio`·lr.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps, capped at a tenth of the run (+1) so that short runs still decay.
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Steps between metrics lines and progress lines.
    pub log_every: usize,
    /// Clip gradients to this global L2 norm (0: no clipping).
    pub grad_clip: f64,
    /// Steps between complete checkpoints (weights, optimizer moments, step, data cursor); 0: only the final one.
    pub checkpoint_every: usize,
    /// Complete step checkpoints kept (the newest ones).
    pub keep_checkpoints: usize,
    /// Which targets the loss counts: every token, or only answers (a question's prompt is not a target).
    pub loss_on: LossOn,
    /// Start from the weights of a finished checkpoint folder (`…/checkpoints/final`) instead of a fresh
    /// initialisation: finetuning. Empty: train from scratch.
    pub init_from: String,
    /// Train on these streams of the dataset, in equal shares of windows (e.g. `["qa_train"]` for QA
    /// finetuning). Empty: the dataset's own mixture.
    pub streams: Vec<String>,
    /// LoRA finetuning (needs `init_from`): rank of the updates of the attention's query and value (0: none).
    pub lora_qv_rank: usize,
    /// LoRA finetuning: rank of the token embedding's update (0: none).
    pub lora_embedding_rank: usize,
    /// LoRA α: updates are scaled by α / rank (0: α = rank).
    pub lora_alpha: f64,
    /// Matrix-product precision: `auto` (f32 on CPU, bf16-mixed on CUDA), `f32`, `bf16-mixed` (bf16 products
    /// with f32 master weights, optimizer moments, norms, softmax and loss; see `crate::precision`). Not written
    /// when `auto`, so the resolved configs of runs made before the key existed stay the same.
    #[serde(skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Steps between evaluations while training (0: none): a run given a [`StepEval`] calls it at step 0, every
    /// `eval_every` steps and at the last step, and writes what it returns to `curve.jsonl` (e.g. P_train and
    /// P_test QA accuracy against the finetune step). Not written when 0, so the resolved configs of runs made
    /// before the key existed stay the same.
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_every: usize,
    /// How documents are cut into training windows: `stream` (they run on from one window into the next; the
    /// default) or `aligned` (every window opens with `<eot>` and a whole document, documents never split, the
    /// rest padded and not trained on; the paper's windows, see [`physlab_generators::corpus::SourceCursor`]).
    /// With `aligned`, an exposure budget counts the windows a pass fills. Not written when `stream`, so the
    /// resolved configs of runs made before the key existed stay the same.
    #[serde(skip_serializing_if = "Windows::is_stream")]
    pub windows: Windows,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// `train.windows`: see [`TrainConfig::windows`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Windows {
    #[default]
    Stream,
    Aligned,
}

impl Windows {
    pub fn is_stream(&self) -> bool {
        *self == Windows::Stream
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    All,
    Answers,
}

impl Default for TrainConfig {
    fn default() -> Self {
        // Part 3.3: AdamW, β = (0.9, 0.98), ε = 1e-6, wd 0.01, lr 1e-3, cosine decay to 0.1×.
        TrainConfig {
            exposures: 100.0,
            steps: 0,
            tokens: 0,
            batch_size: 16,
            context: 128,
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 100,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            epsilon: 1e-6,
            log_every: 25,
            grad_clip: 1.0,
            checkpoint_every: 1000,
            keep_checkpoints: 2,
            loss_on: LossOn::All,
            init_from: String::new(),
            streams: Vec::new(),
            lora_qv_rank: 0,
            lora_embedding_rank: 0,
            lora_alpha: 0.0,
            precision: Precision::Auto,
            eval_every: 0,
            windows: Windows::Stream,
        }
    }
}

impl TrainConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.steps == 0
            && (self.exposures.is_nan() || self.exposures <= 0.0 || self.exposures > MAX_EXPOSURES)
        {
            p.push(format!(
                "train.exposures = {} must lie in (0, {MAX_EXPOSURES}] (or set train.steps)",
                self.exposures
            ));
        }
        // A number that is not finite validates against `> 0` or `≥ 0` and then fails (or never updates) at
        // run time: every float of the config must be finite.
        for (k, v) in [
            ("exposures", self.exposures),
            ("lr", self.lr),
            ("min_lr_ratio", self.min_lr_ratio),
            ("weight_decay", self.weight_decay),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("epsilon", self.epsilon),
            ("grad_clip", self.grad_clip),
            ("lora_alpha", self.lora_alpha),
        ] {
            if !v.is_finite() {
                p.push(format!("train.{k} = {v} must be a finite number"));
            }
        }
        if self.batch_size == 0 {
            p.push("train.batch_size must be ≥ 1".into());
        }
        if self.context < 2 {
            p.push("train.context must be ≥ 2".into());
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            p.push(format!("train.lr = {} must be > 0", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            p.push(format!(
                "train.min_lr_ratio = {} must lie in [0, 1]",
                self.min_lr_ratio
            ));
        }
        for (k, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                p.push(format!("train.{k} = {v} must lie in [0, 1)"));
            }
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            p.push(format!(
                "train.weight_decay = {} must be ≥ 0",
                self.weight_decay
            ));
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            p.push(format!("train.epsilon = {} must be > 0", self.epsilon));
        }
        if self.log_every == 0 {
            p.push("train.log_every must be ≥ 1".into());
        }
        if self.grad_clip.is_nan() || self.grad_clip < 0.0 {
            p.push(format!(
                "train.grad_clip = {} must be ≥ 0 (0: off)",
                self.grad_clip
            ));
        }
        if (self.lora_qv_rank > 0 || self.lora_embedding_rank > 0) && self.init_from.is_empty() {
            p.push(
                "train.lora_* adapts a pretrained model: set train.init_from to its checkpoint"
                    .into(),
            );
        }
        if self.lora_alpha.is_nan() || self.lora_alpha < 0.0 {
            p.push("train.lora_alpha must be ≥ 0 (0: α = rank)".into());
        }
        if self.checkpoint_every > 0 && self.keep_checkpoints == 0 {
            p.push("train.keep_checkpoints must be ≥ 1 when train.checkpoint_every > 0".into());
        }
        p
    }

    /// Tokens a step consumes (every window position is a target).
    pub fn tokens_per_step(&self) -> usize {
        self.batch_size * self.context
    }

    /// Steps for the budget: E · (training tokens per exposure) / (batch·context), rounded up. For bioS one
    /// exposure is N · (tokens per biography, measured) divided by the biographies' share of the mixture
    /// ([`physlab_generators::Manifest::tokens_for_exposures`]).
    pub fn total_steps(&self, tokens_per_exposure: f64) -> usize {
        if self.steps > 0 {
            return self.steps;
        }
        let tokens = if self.tokens > 0 {
            self.tokens as f64
        } else {
            self.exposures * tokens_per_exposure
        };
        ((tokens / self.tokens_per_step() as f64).ceil() as usize).max(1)
    }

    /// Exposures that `steps` steps give.
    pub fn exposures_of(&self, steps: usize, tokens_per_exposure: f64) -> f64 {
        (steps * self.tokens_per_step()) as f64 / tokens_per_exposure
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the loss became {loss} at step {step}; the run is stopped (lower train.lr?). Complete checkpoints written before it are kept: `--resume` continues from the newest")]
    NonFinite { step: usize, loss: f32 },
    #[error("saving the checkpoint to {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A finished checkpoint (`checkpoints/final`, or `train.init_from`) that cannot be read or verified.
    #[error("loading the checkpoint {path}: {msg}")]
    LoadCheckpoint { path: PathBuf, msg: String },
    #[error("drawing the initial weights: {0}")]
    InitialWeights(String),
    #[error("stopped on request (a signal) at step {step}: a complete checkpoint is in {checkpoint}; `--resume` continues from it")]
    Stopped { step: usize, checkpoint: PathBuf },
    #[error("config: {0}")]
    Config(String),
    /// A step checkpoint that cannot be read or verified, or (with `path` the checkpoints folder) none that can.
    #[error("cannot resume from {path}: {msg}")]
    Resume { path: PathBuf, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One metrics.jsonl line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: usize,
    pub tokens: u64,
    pub exposures: f64,
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping, mean over the interval.
    #[serde(default)]
    pub grad_norm: f64,
    /// Mixture of experts: load-balancing loss summed over its mixture layers, mean over the interval (1 a layer
    /// when balanced; 0 for other models).
    #[serde(default)]
    pub router_loss: f64,
    /// Mixture of experts: share of the tokens (over layers and the interval's steps) that were over their
    /// expert's capacity and skipped the layer (0 for other models).
    #[serde(default)]
    pub router_dropped: f64,
    /// Mixture of experts: mean router probability of the chosen expert, the gate its output is scaled by (1/E
    /// for a uniform router; 0 for other models).
    #[serde(default)]
    pub router_gate: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub steps: usize,
    pub tokens: u64,
    pub exposures: f64,
    /// Mean training loss (nats/token) over the first and the last logging interval.
    pub first_loss: f64,
    pub final_loss: f64,
    /// Training seconds over every process that trained this run (a resumed run adds its earlier ones).
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub checkpoint: PathBuf,
    /// The step this process started from (0, or the checkpoint it resumed).
    pub resumed_from: usize,
    /// Training seconds of the earlier processes a resumed run continues (0 for a run trained in one go).
    #[serde(default)]
    pub resumed_wall_s: f64,
    /// The precision it trained in (`train.precision` resolved for the backend).
    #[serde(default)]
    pub precision: Precision,
}

/// `x` per routed token, 0 when nothing was routed (a model without a mixture).
fn per_routed(x: f64, routed: u64) -> f64 {
    if routed > 0 {
        x / routed as f64
    } else {
        0.0
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// What one training step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepResult {
    /// The language-model loss (nats/token; over answer tokens with `loss_on = answers`).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Mixture of experts' load-balancing loss (0 for other models).
    pub router_loss: f64,
    /// Mixture of experts: tokens routed, summed over its layers (0 for other models), those served within
    /// capacity, and the sum of their chosen experts' probabilities.
    pub routed: usize,
    pub served: usize,
    pub gate_sum: f64,
}

/// One training step: forward, loss (masked to answers if asked, plus a mixture's load-balancing loss),
/// backward, global-norm clipping, AdamW. `batch` is (inputs, targets, target weights), each `dims[0] × dims[1]`.
/// A non-finite loss is returned as it is, and the model is then not updated.
#[allow(clippy::too_many_arguments)]
pub fn train_step<B: TrainBackend>(
    model: Gpt<B>,
    optim: &mut Optim<B>,
    cfg: &TrainConfig,
    shape: &GptShape,
    lr: f64,
    batch: (Vec<i32>, Vec<i32>, Vec<f32>),
    dims: [usize; 2],
    device: &B::Device,
) -> (Gpt<B>, StepResult) {
    let (x, y, w) = batch;
    let [b, t] = dims;
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(x, [b, t]), device);
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(y, [b, t]), device);
    let ((logits, aux), routing) = crate::moe::record_routing(|| model.forward_aux(x));
    let routed = routing.iter().map(|r| r.tokens).sum();
    let served = routing.iter().map(|r| r.served).sum();
    let gate_sum = routing.iter().map(|r| r.gate_sum).sum();
    let nll = token_nll(logits, y);
    // Every target counts (stream windows, the loss on all tokens): the plain mean. Otherwise the mean over the
    // targets whose weight is 1: answers only, or an aligned window's text without its padding.
    let every = cfg.loss_on == LossOn::All && w.iter().all(|&x| x == 1.0);
    let lm_loss = match cfg.loss_on {
        _ if every => nll.mean(),
        LossOn::All | LossOn::Answers => {
            // Mean over the targets of weight 1 (a batch with none gives 0).
            let n = w.iter().sum::<f32>().max(1.0);
            let w = Tensor::<B, 2>::from_data(TensorData::new(w, [b, t]), device);
            (nll * w).sum().div_scalar(n)
        }
    };
    // A mixture of experts adds its load-balancing loss; the reported loss is the language-model loss.
    let (loss, router_loss) = match aux {
        Some(a) => {
            let r: f32 = burn::tensor::ElementConversion::elem(a.clone().into_scalar());
            (
                lm_loss.clone() + a.mul_scalar(shape.router_aux_weight),
                r as f64,
            )
        }
        None => (lm_loss.clone(), 0.0),
    };
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let loss_value: f32 = burn::tensor::ElementConversion::elem(lm_loss.into_scalar());
    if !loss_value.is_finite() {
        return (
            model,
            StepResult {
                loss: loss_value as f64,
                grad_norm: f64::NAN,
                router_loss,
                routed,
                served,
                gate_sum,
            },
        );
    }
    let grad_norm = clip_grad_norm::<B, Gpt<B>>(&model, &mut grads, cfg.grad_clip);
    let model = optim.step(lr, model, grads);
    (
        model,
        StepResult {
            loss: loss_value as f64,
            grad_norm,
            router_loss,
            routed,
            served,
            gate_sum,
        },
    )
}

/// A fresh optimizer for `cfg`.
pub fn optimizer<B: TrainBackend>(cfg: &TrainConfig) -> Optim<B> {
    AdamW {
        beta1: cfg.beta1 as f32,
        beta2: cfg.beta2 as f32,
        epsilon: cfg.epsilon as f32,
        weight_decay: cfg.weight_decay as f32,
    }
    .init()
}

/// What a step checkpoint records besides the weights and the optimizer: enough to continue the same loss curve.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
    pub total_steps: usize,
    pub tokens: u64,
    /// The data cursor: windows drawn from the mixer so far (a resumed run draws and drops as many).
    pub windows: u64,
    /// The logging interval in progress (sum of losses and of gradient norms, steps).
    #[serde(deserialize_with = "f64_or_nan")]
    pub interval_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub interval_grad_norm: f64,
    /// Sum of the mixture-of-experts load-balancing losses over the interval (0 for other models).
    #[serde(deserialize_with = "f64_or_nan")]
    pub interval_router: f64,
    /// Mixture of experts over the interval: tokens routed (over layers), served within capacity, and the sum of
    /// the chosen experts' probabilities (0 for other models; absent from checkpoints written before them).
    #[serde(default)]
    pub interval_routed: u64,
    #[serde(default)]
    pub interval_served: u64,
    #[serde(default)]
    pub interval_gate: f64,
    pub interval_n: usize,
    /// Mean loss of the first and of the last logging interval: NaN until the first one ends (JSON `null`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub first_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub last_loss: f64,
    /// Training seconds before this checkpoint (over all processes).
    #[serde(deserialize_with = "f64_or_nan")]
    pub elapsed_s: f64,
    pub train: TrainConfig,
    pub shape: GptShape,
}

/// serde_json writes a non-finite f64 as `null` (a state saved before the first logging interval ended has NaN
/// losses): `null` reads back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The optimizer the trainer uses on a model.
pub type Optim<B> = burn::optim::adaptor::OptimizerAdaptor<AdamW, Gpt<B>, B>;

/// The complete step checkpoints of a run (`checkpoints/step-NNNNNNNN/DONE`), newest first.
pub fn complete_checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("checkpoints")) else {
        return Vec::new();
    };
    let mut steps: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path().join("DONE").exists().then(|| (step, e.path()))
        })
        .collect();
    steps.sort();
    steps.into_iter().rev().map(|s| s.1).collect()
}

/// The newest complete step checkpoint of a run (`checkpoints/step-*/DONE`), if any.
pub fn newest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    complete_checkpoints(run_dir).into_iter().next()
}

/// Trains a model of `shape` on windows from `data` and saves it under `run_dir/checkpoints/final`, with a
/// complete checkpoint every `checkpoint_every` steps. With `resume`, continues from the newest complete step
/// checkpoint of `run_dir` (if there is one): weights, optimizer moments, step and data cursor are restored, so
/// the loss curve goes on as if the run had never stopped.
#[allow(clippy::too_many_arguments)]
pub fn train<B: TrainBackend>(
    cfg: &TrainConfig,
    shape: GptShape,
    data: &mut WindowMixer<'_>,
    tokens_per_exposure: f64,
    seed: u64,
    run_dir: &Path,
    device: &B::Device,
    resume: bool,
) -> Result<(Gpt<B::InnerBackend>, TrainOutcome), TrainError> {
    train_with_eval::<B>(
        cfg,
        shape,
        data,
        tokens_per_exposure,
        seed,
        run_dir,
        device,
        resume,
        None,
    )
}

/// An evaluation made while training (see [`TrainConfig::eval_every`]): given the step and the model in its
/// inference form, named scalars (`"qa_test/accuracy"`, …). It reads the model only, and draws nothing from the
/// data cursor or any random stream, so the training is the same with it and without it.
pub type StepEval<'a, B> = dyn FnMut(usize, &Gpt<B>) -> Vec<(String, f64)> + 'a;

/// One line of `curve.jsonl`: the step and the scalars of the [`StepEval`].
fn curve_line(step: usize, values: &[(String, f64)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("step".into(), step.into());
    for (k, v) in values {
        m.insert(k.clone(), serde_json::json!(v));
    }
    let mut s = serde_json::Value::Object(m).to_string();
    s.push('\n');
    s
}

/// The log line's view of a [`StepEval`]'s scalars: accuracies (`…/accuracy`) in percent without the suffix,
/// every other scalar (losses in bits, …) with four significant digits.
fn eval_summary(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| match k.strip_suffix("/accuracy") {
            Some(name) => format!("{name} {:.1}%", 100.0 * v),
            None => format!("{k} {}", significant(*v, 4)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `v` with `digits` significant digits, in fixed notation (no exponent between 1e-4 and 1e6).
fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i64;
    if !(-4..6).contains(&magnitude) {
        return format!("{v:.prec$e}", prec = digits.saturating_sub(1));
    }
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    format!("{v:.decimals$}")
}

/// [`train`], calling `eval` (when given and `cfg.eval_every > 0`) at step 0, every `cfg.eval_every` steps and at
/// the last step; its values go to `run_dir/curve.jsonl` (one JSON line per evaluation, cut back like
/// `metrics.jsonl` on resume) and to TensorBoard as `eval/<name>`.
#[allow(clippy::too_many_arguments)]
pub fn train_with_eval<B: TrainBackend>(
    cfg: &TrainConfig,
    shape: GptShape,
    data: &mut WindowMixer<'_>,
    tokens_per_exposure: f64,
    seed: u64,
    run_dir: &Path,
    device: &B::Device,
    resume: bool,
    mut eval: Option<&mut StepEval<'_, B::InnerBackend>>,
) -> Result<(Gpt<B::InnerBackend>, TrainOutcome), TrainError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(TrainError::Config(problems.join("; ")));
    }
    let total = cfg.total_steps(tokens_per_exposure);
    // Before any window is drawn (a resume replays the windows the same way).
    data.set_aligned(cfg.windows == Windows::Aligned);
    // Products in the run's precision until training ends; the returned model is evaluated in f32.
    let precision = cfg.precision.resolve::<B>();
    let scope = PrecisionScope::enter(precision);
    tracing::info!("precision: {}", precision.name());
    let lora = LoraShape {
        qv_rank: cfg.lora_qv_rank,
        embedding_rank: cfg.lora_embedding_rank,
        alpha: cfg.lora_alpha,
    };
    let shape = GptShape { lora, ..shape };
    // burn-flex's seed is process-global: one training per process.
    B::seed(device, seed);
    let mut model: Gpt<B> = if cfg.init_from.is_empty() {
        init_model::<B>(&shape, seed, device)?
    } else {
        let dir = Path::new(&cfg.init_from);
        let (m, s) = load_checkpoint::<B>(dir, device)?;
        if s.without_lora() != shape.without_lora() {
            return Err(TrainError::Config(format!(
                "train.init_from = {}: its model shape differs from this run's ({s:?} vs {shape:?})",
                dir.display()
            )));
        }
        tracing::info!("initialised from {}", dir.display());
        if lora.any() {
            let m = m
                .with_lora(&shape, device)
                .map(&mut FreezeAllButLora::new());
            tracing::info!(
                "LoRA: q/v rank {}, embedding rank {}; {} trainable parameters, the pretrained ones frozen",
                lora.qv_rank,
                lora.embedding_rank,
                shape.lora_params()
            );
            m
        } else {
            m
        }
    };
    let mut optim: Optim<B> = optimizer(cfg);
    let warmup = cfg.warmup_steps.min(total / 10 + 1);
    let (b, t) = (cfg.batch_size, cfg.context);

    let mut st = TrainState {
        step: 0,
        total_steps: total,
        tokens: 0,
        windows: 0,
        interval_loss: 0.0,
        interval_grad_norm: 0.0,
        interval_router: 0.0,
        interval_routed: 0,
        interval_served: 0,
        interval_gate: 0.0,
        interval_n: 0,
        first_loss: f64::NAN,
        last_loss: f64::NAN,
        elapsed_s: 0.0,
        train: cfg.clone(),
        shape,
    };
    if resume {
        // The newest complete step checkpoint that verifies and fits this run; a damaged or foreign one is
        // reported and the next older one tried. Nothing is deleted here.
        let candidates = complete_checkpoints(run_dir);
        let mut failures: Vec<String> = Vec::new();
        let mut resumed = None;
        for ck in &candidates {
            let attempt =
                load_step_checkpoint::<B>(ck, &shape, model.clone(), optimizer(cfg), device)
                    .and_then(|(m, o, s)| {
                        if s.train != *cfg {
                            Err(TrainError::Resume {
                                path: ck.clone(),
                                msg: "its train config (state.json) differs from this run's".into(),
                            })
                        } else {
                            Ok((m, o, s))
                        }
                    });
            match attempt {
                Ok(loaded) => {
                    resumed = Some((ck.clone(), loaded));
                    break;
                }
                Err(e) => {
                    tracing::warn!("{e}; trying an older checkpoint");
                    let name = ck.file_name().unwrap_or_default().to_string_lossy();
                    failures.push(match e {
                        TrainError::Resume { msg, .. } => format!("{name}: {msg}"),
                        other => format!("{name}: {other}"),
                    });
                }
            }
        }
        match resumed {
            Some((ck, (m, o, s))) => {
                model = if lora.any() {
                    m.map(&mut FreezeAllButLora::new())
                } else {
                    m
                };
                optim = o;
                data.fast_forward(s.windows, t + 1);
                tracing::info!(
                    "resumed from {} (step {}/{}, {} windows replayed)",
                    ck.display(),
                    s.step,
                    total,
                    s.windows
                );
                st = s;
            }
            None if !candidates.is_empty() => {
                return Err(TrainError::Resume {
                    path: run_dir.join("checkpoints"),
                    msg: format!(
                        "none of its {} complete step checkpoints loads (all are kept): {}",
                        candidates.len(),
                        failures.join("; ")
                    ),
                });
            }
            None => tracing::info!(
                "no complete step checkpoint in {}: training from step 0",
                run_dir.join("checkpoints").display()
            ),
        }
        // Lines after the step resumed from were written before the run stopped: they are written again.
        truncate_metrics(&run_dir.join("metrics.jsonl"), st.step)?;
        truncate_metrics(&run_dir.join(CURVE_FILE), st.step)?;
    }
    let resumed_from = st.step;

    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io(&metrics_path))?;
    // The same lines as TensorBoard scalars (a file per process; a failure to write them is a warning only).
    let mut tb = match crate::tensorboard::EventWriter::create(run_dir, "train") {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "TensorBoard events in {}: {e}",
                run_dir.join("tb").display()
            );
            None
        }
    };
    let curve_path = run_dir.join(CURVE_FILE);
    let eval_every = if eval.is_some() { cfg.eval_every } else { 0 };
    if eval_every > 0 && st.step == 0 {
        // A run resumed before its first checkpoint may have written lines already (before the file is opened:
        // the cut replaces the file).
        truncate_lines(&curve_path, 0, |_| false)?;
    }
    let mut curve = if eval_every > 0 {
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&curve_path)
                .map_err(io(&curve_path))?,
        )
    } else {
        None
    };
    // Evaluates, and writes the line (and the TensorBoard scalars) for `step`.
    let mut evaluate = |step: usize,
                        model: &Gpt<B>,
                        tb: &mut Option<crate::tensorboard::EventWriter>|
     -> Result<(), TrainError> {
        let (Some(f), Some(file)) = (eval.as_mut(), curve.as_mut()) else {
            return Ok(());
        };
        let t = Instant::now();
        // In f32 whatever the run's precision, as the evaluation after training (the scope restores it).
        let f32_scope = PrecisionScope::enter(Precision::F32);
        let values = f(step, &model.valid());
        drop(f32_scope);
        let line = curve_line(step, &values);
        file.write_all(line.as_bytes()).map_err(io(&curve_path))?;
        if let Some(w) = tb {
            let named: Vec<(String, f64)> = values
                .iter()
                .map(|(k, v)| (format!("eval/{k}"), *v))
                .collect();
            let refs: Vec<(&str, f64)> = named.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            if let Err(e) = w.scalars(step as u64, &refs) {
                tracing::warn!("TensorBoard events {}: {e}", w.path.display());
                *tb = None;
            }
        }
        tracing::info!(
            "eval at step {step}: {} ({:.1}s)",
            eval_summary(&values),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    };
    if eval_every > 0 && st.step == 0 {
        evaluate(0, &model, &mut tb)?;
    }
    let bar = if std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_position(st.step as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
                .expect("template"),
        );
        Some(pb)
    } else {
        None
    };

    let start = Instant::now();
    let elapsed_before = st.elapsed_s;
    for step in st.step..total {
        let lr = lr_at(step, total, cfg.lr, warmup, cfg.min_lr_ratio);
        let (x, y, w) = data.next_batch_weighted(b, t, cfg.loss_on == LossOn::Answers);
        st.windows += b as u64;
        let (m, r) = train_step(
            model,
            &mut optim,
            cfg,
            &shape,
            lr,
            (x, y, w),
            [b, t],
            device,
        );
        model = m;
        if !r.loss.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: r.loss as f32,
            });
        }
        let (loss_value, norm, router_value) = (r.loss, r.grad_norm, r.router_loss);
        st.interval_loss += loss_value;
        st.interval_grad_norm += norm;
        st.interval_router += router_value;
        st.interval_routed += r.routed as u64;
        st.interval_served += r.served as u64;
        st.interval_gate += r.gate_sum;
        st.interval_n += 1;
        let done = step + 1;
        st.step = done;
        st.tokens = (done * b * t) as u64;

        if done % cfg.log_every == 0 || done == total {
            let mean = st.interval_loss / st.interval_n as f64;
            if st.first_loss.is_nan() {
                st.first_loss = mean;
            }
            st.last_loss = mean;
            let elapsed = elapsed_before + start.elapsed().as_secs_f64();
            let tok_s = ((done - resumed_from) * b * t) as f64 / start.elapsed().as_secs_f64();
            let line = MetricsLine {
                step: done,
                tokens: st.tokens,
                exposures: cfg.exposures_of(done, tokens_per_exposure),
                loss: mean,
                lr,
                grad_norm: st.interval_grad_norm / st.interval_n as f64,
                router_loss: st.interval_router / st.interval_n as f64,
                router_dropped: per_routed(
                    (st.interval_routed - st.interval_served) as f64,
                    st.interval_routed,
                ),
                router_gate: per_routed(st.interval_gate, st.interval_routed),
                tokens_per_s: tok_s,
                elapsed_s: elapsed,
            };
            st.interval_loss = 0.0;
            st.interval_grad_norm = 0.0;
            let moe = st.interval_routed > 0;
            st.interval_router = 0.0;
            st.interval_routed = 0;
            st.interval_served = 0;
            st.interval_gate = 0.0;
            st.interval_n = 0;
            let mut s = serde_json::to_string(&line).expect("json");
            s.push('\n');
            metrics.write_all(s.as_bytes()).map_err(io(&metrics_path))?;
            if let Some(w) = &mut tb {
                let r = w.scalars(
                    done as u64,
                    &[
                        ("train/loss", line.loss),
                        ("train/lr", line.lr),
                        ("train/grad_norm", line.grad_norm),
                        ("train/tokens_per_s", line.tokens_per_s),
                        ("train/exposures", line.exposures),
                    ],
                );
                let r = r.and_then(|()| {
                    if moe {
                        w.scalars(
                            done as u64,
                            &[
                                ("train/router_loss", line.router_loss),
                                ("train/router_dropped", line.router_dropped),
                                ("train/router_gate", line.router_gate),
                            ],
                        )
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = r {
                    tracing::warn!("TensorBoard events {}: {e}", w.path.display());
                    tb = None;
                }
            }
            let eta = start.elapsed().as_secs_f64() / (done - resumed_from) as f64
                * (total - done) as f64;
            let router = if moe {
                format!(
                    " router: balance {:.2} dropped {:.1}% gate {:.3}",
                    line.router_loss,
                    100.0 * line.router_dropped,
                    line.router_gate
                )
            } else {
                String::new()
            };
            let msg = format!(
                "step {done}/{total} ({:.0}%) loss {mean:.3} lr {lr:.2e} |g| {:.2} tok/s {:.1}k eta {}{router}",
                100.0 * done as f64 / total as f64,
                line.grad_norm,
                tok_s / 1000.0,
                fmt_duration(eta)
            );
            match &bar {
                Some(pb) => {
                    pb.set_position(done as u64);
                    pb.set_message(format!("loss {mean:.3} tok/s {:.1}k", tok_s / 1000.0));
                    pb.println(msg);
                }
                None => tracing::info!("{msg}"),
            }
        }
        if eval_every > 0 && (done % eval_every == 0 || done == total) {
            evaluate(done, &model, &mut tb)?;
        }
        if cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0 && done < total {
            st.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
            save_step_checkpoint(&model, &optim, &st, run_dir, cfg.keep_checkpoints)?;
        }
        // A stop asked for (SIGTERM, or Slurm's SIGUSR1 before the time limit): a complete checkpoint at this
        // step boundary, then out, so that `--resume` (a requeued job) continues the same curve.
        if STOP_REQUESTED.load(std::sync::atomic::Ordering::Relaxed) && done < total {
            st.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
            let ck =
                save_step_checkpoint(&model, &optim, &st, run_dir, cfg.keep_checkpoints.max(1))?;
            if let Some(pb) = &bar {
                pb.finish_and_clear();
            }
            return Err(TrainError::Stopped {
                step: done,
                checkpoint: ck,
            });
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let wall = start.elapsed().as_secs_f64();
    drop(scope);
    let model = model.valid();
    let tokens = (total * b * t) as u64;
    let checkpoint = save_checkpoint(&model, &shape, run_dir, total, tokens)?;
    Ok((
        model,
        TrainOutcome {
            steps: total,
            tokens,
            exposures: cfg.exposures_of(total, tokens_per_exposure),
            first_loss: st.first_loss,
            final_loss: st.last_loss,
            wall_s: elapsed_before + wall,
            tokens_per_s: ((total - resumed_from) * b * t) as f64 / wall,
            checkpoint,
            resumed_from,
            resumed_wall_s: elapsed_before,
            precision,
        },
    ))
}

/// The evaluations made while training ([`train_with_eval`]), one JSON line each, in the run folder.
pub const CURVE_FILE: &str = "curve.jsonl";

/// The files of a step checkpoint that its checksums.json covers (DONE and checksums.json aside).
pub const STEP_FILES: [&str; 3] = ["model.bin", "optimizer.bin", "state.json"];
/// The files of a final checkpoint that its checksums.json covers (DONE and checksums.json aside).
pub const FINAL_FILES: [&str; 3] = ["model.safetensors", "config.json", "state.json"];
/// The file, written after every other file and before DONE, holding the sha256 of each of them.
pub const CHECKSUMS: &str = "checksums.json";

/// checksums.json: file name → sha256 (lowercase hex) of that file of the checkpoint folder.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checksums {
    sha256: std::collections::BTreeMap<String, String>,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `dir/checksums.json` for `files` (already written and flushed to disk).
fn write_checksums(dir: &Path, files: &[&str]) -> Result<(), TrainError> {
    let mut sha256 = std::collections::BTreeMap::new();
    for f in files {
        let p = dir.join(f);
        sha256.insert(f.to_string(), sha256_file(&p).map_err(io(&p))?);
    }
    let p = dir.join(CHECKSUMS);
    atomic_write(
        &p,
        &serde_json::to_vec_pretty(&Checksums { sha256 }).expect("json"),
    )
    .map_err(io(&p))
}

/// Checks the checkpoint folder `dir` against its checksums.json, which must list each of `files` (and every file
/// it lists must match). `Ok(false)`: no checksums.json, a checkpoint written before physlab recorded checksums,
/// which is read without verification (warned). `Err`: a one-line reason naming the file.
fn verify_checksums(dir: &Path, files: &[&str]) -> Result<bool, String> {
    let p = dir.join(CHECKSUMS);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "{}: no {CHECKSUMS} (written by an older physlab): its files cannot be verified",
                dir.display()
            );
            return Ok(false);
        }
        Err(e) => return Err(format!("{CHECKSUMS}: {e}")),
    };
    let sums: Checksums = serde_json::from_slice(&text).map_err(|e| format!("{CHECKSUMS}: {e}"))?;
    if let Some(f) = files.iter().find(|f| !sums.sha256.contains_key(**f)) {
        return Err(format!("{CHECKSUMS} does not list {f}"));
    }
    for (f, want) in &sums.sha256 {
        // Names come from the file: only plain file names inside the checkpoint are followed.
        if f.contains(['/', '\\']) || f.starts_with('.') {
            return Err(format!(
                "{CHECKSUMS} lists {f:?}, not a file of the checkpoint"
            ));
        }
        let got = sha256_file(&dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
        if got != *want {
            return Err(format!(
                "{f}: its sha256 {got} differs from {want} recorded in {CHECKSUMS} when the checkpoint was \
                 written (the file was changed or damaged since)"
            ));
        }
    }
    Ok(true)
}

/// Each float parameter's dotted name and dims, and (if asked) the first non-finite value found.
struct ParamScan {
    path: Vec<String>,
    shapes: Vec<(String, Vec<usize>)>,
    check_finite: bool,
    non_finite: Option<String>,
}

impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for ParamScan {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let name = self.path.join(".");
        let t = param.val();
        let dims = t.dims().to_vec();
        if self.check_finite && self.non_finite.is_none() {
            let data = t.into_data();
            let bad = data.iter::<f32>().enumerate().find(|(_, v)| !v.is_finite());
            if let Some((i, v)) = bad {
                self.non_finite = Some(format!(
                    "parameter {name} {dims:?} holds {v} at element {i}: the weights are not finite"
                ));
            }
        }
        self.shapes.push((name, dims));
    }
}

fn scan_params<B: burn::tensor::backend::Backend>(model: &Gpt<B>, check_finite: bool) -> ParamScan {
    let mut s = ParamScan {
        path: Vec::new(),
        shapes: Vec::new(),
        check_finite,
        non_finite: None,
    };
    model.visit(&mut s);
    s
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "burn panicked".into())
}

/// One line: a library's multi-line message joined with "; ".
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Keeps the lines of metrics.jsonl up to `step` (atomically): a resumed run writes the later steps again.
/// Lines that do not parse (a line cut short by a crash) are dropped too.
fn truncate_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
    truncate_lines(path, step, |s| s as usize <= step)
}

/// Keeps the JSON lines of `path` whose `"step"` passes `keep` (lines without one are dropped); `step` is for the
/// log line only.
fn truncate_lines(path: &Path, step: usize, keep: impl Fn(u64) -> bool) -> Result<(), TrainError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (mut kept, mut dropped) = (String::new(), 0usize);
    for line in text.lines() {
        let s = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step")?.as_u64());
        match s {
            Some(s) if keep(s) => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        atomic_write(path, kept.as_bytes()).map_err(io(path))?;
        tracing::info!(
            "{}: {dropped} lines after step {step} dropped (they are written again)",
            path.display()
        );
    }
    Ok(())
}

/// Writes `checkpoints/step-NNNNNNNN/{model.bin, optimizer.bin, state.json, checksums.json, DONE}` into a
/// temporary folder (each file flushed to disk, checksums.json after the files it covers, DONE last), renames it
/// into place and flushes `checkpoints/`, then removes all but the newest `keep` complete step checkpoints.
pub fn save_step_checkpoint<B: TrainBackend>(
    model: &Gpt<B>,
    optim: &Optim<B>,
    st: &TrainState,
    run_dir: &Path,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    use burn::optim::Optimizer;
    use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
    let dir = run_dir.join("checkpoints");
    let name = format!("step-{:08}", st.step);
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    sync_dir(run_dir).map_err(io(run_dir))?;
    // burn's record keeps each parameter's id, which keys the optimizer's moments: both are written with it.
    let weights = tmp.join("model");
    BinFileRecorder::<FullPrecisionSettings>::default()
        .record(model.clone().into_record(), weights.clone())
        .map_err(|e| TrainError::Checkpoint {
            path: weights.clone(),
            msg: e.to_string(),
        })?;
    let opt = tmp.join("optimizer");
    BinFileRecorder::<FullPrecisionSettings>::default()
        .record(optim.to_record(), opt.clone())
        .map_err(|e| TrainError::Checkpoint {
            path: opt.clone(),
            msg: e.to_string(),
        })?;
    for f in ["model.bin", "optimizer.bin"] {
        let p = tmp.join(f);
        sync_file(&p).map_err(io(&p))?;
    }
    let state = tmp.join("state.json");
    atomic_write(&state, &serde_json::to_vec_pretty(st).expect("json")).map_err(io(&state))?;
    finish_checkpoint(&tmp, &dst, &STEP_FILES)?;
    prune_step_checkpoints(&dir, keep)?;
    Ok(dst)
}

/// Keeps the newest `keep` complete step checkpoints in `dir` (a run's `checkpoints/`) and removes the rest of
/// what this writer leaves there: older complete checkpoints, `step-N.tmp` folders of interrupted writes, and
/// `step-N` folders without their DONE marker. A step folder only ever appears complete (it is renamed into place
/// with DONE inside), so one without DONE is what an earlier removal left when its process was killed part way.
/// Each folder is renamed to `step-N.old` before it is removed, so a removal cut short leaves a name the next
/// call clears, never a half-deleted `step-N`.
pub fn prune_step_checkpoints(dir: &Path, keep: usize) -> Result<(), TrainError> {
    let mut complete: Vec<(usize, PathBuf)> = Vec::new();
    let mut leftovers: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some(rest) = n.strip_prefix("step-") else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(k) = rest.parse::<usize>().ok().filter(|_| number(rest)) {
            if e.path().join("DONE").exists() {
                complete.push((k, e.path()));
            } else {
                leftovers.push(e.path());
            }
        } else if let Some(k) = rest.strip_suffix(".tmp").or(rest.strip_suffix(".old")) {
            if number(k) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    complete.sort();
    let drop = complete.len().saturating_sub(keep);
    leftovers.extend(complete.into_iter().take(drop).map(|(_, p)| p));
    for p in leftovers {
        let mut old = p.clone().into_os_string();
        old.push(".old");
        let old = PathBuf::from(old);
        std::fs::rename(&p, &old).map_err(io(&p))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Completes the temporary checkpoint folder `tmp` whose `files` are written and flushed: checksums.json, DONE,
/// the folder flushed, renamed to `dst` (replacing an older one of the same name), the parent flushed.
fn finish_checkpoint(tmp: &Path, dst: &Path, files: &[&str]) -> Result<(), TrainError> {
    write_checksums(tmp, files)?;
    let marker = tmp.join("DONE");
    atomic_write(&marker, b"").map_err(io(&marker))?;
    sync_dir(tmp).map_err(io(tmp))?;
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(io(dst))?;
    }
    std::fs::rename(tmp, dst).map_err(io(dst))?;
    let parent = dst.parent().unwrap_or(Path::new("."));
    sync_dir(parent).map_err(io(parent))
}

/// Loads a step checkpoint into `model` and `optim`, which must have `shape`. The checkpoint is verified first
/// (DONE; checksums.json, or a warning for one written before it existed; the model shape in state.json), and the
/// loaded weights after (each parameter's dims, all finite): every failure is a one-line `TrainError::Resume`
/// naming the folder and the file.
pub fn load_step_checkpoint<B: TrainBackend>(
    dir: &Path,
    shape: &GptShape,
    model: Gpt<B>,
    optim: Optim<B>,
    device: &B::Device,
) -> Result<(Gpt<B>, Optim<B>, TrainState), TrainError> {
    use burn::optim::Optimizer;
    use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let fail = |msg: String| TrainError::Resume {
        path: dir.to_path_buf(),
        msg,
    };
    if !dir.join("DONE").exists() {
        return Err(fail("incomplete checkpoint (no DONE marker)".into()));
    }
    verify_checksums(dir, &STEP_FILES).map_err(fail)?;
    let text =
        std::fs::read(dir.join("state.json")).map_err(|e| fail(format!("state.json: {e}")))?;
    let st: TrainState =
        serde_json::from_slice(&text).map_err(|e| fail(format!("state.json: {e}")))?;
    if st.shape != *shape {
        return Err(fail(format!(
            "state.json records a model of shape {:?}, this run's model has shape {:?}",
            st.shape, shape
        )));
    }
    let expected = scan_params(&model, false).shapes;
    let model_record = BinFileRecorder::<FullPrecisionSettings>::default()
        .load(dir.join("model"), device)
        .map_err(|e| fail(format!("model.bin: {}", one_line(&e.to_string()))))?;
    // burn panics on a record of another structure; state.json's shape rules that out for checkpoints whose files
    // verify, and this catches an unverifiable (older) one whose model.bin is foreign.
    let model =
        catch_unwind(AssertUnwindSafe(|| model.load_record(model_record))).map_err(|p| {
            fail(format!(
                "model.bin does not fit the model: {}",
                one_line(&panic_text(p))
            ))
        })?;
    let loaded = scan_params(&model, true);
    if let Some(((name, want), (_, got))) =
        expected.iter().zip(&loaded.shapes).find(|(a, b)| a != b)
    {
        return Err(fail(format!(
            "model.bin: parameter {name} has dims {got:?}, the model {want:?}"
        )));
    }
    if expected.len() != loaded.shapes.len() {
        return Err(fail(format!(
            "model.bin holds {} parameters, the model {}",
            loaded.shapes.len(),
            expected.len()
        )));
    }
    if let Some(m) = loaded.non_finite {
        return Err(fail(format!("model.bin: {m}")));
    }
    let record = BinFileRecorder::<FullPrecisionSettings>::default()
        .load(dir.join("optimizer"), device)
        .map_err(|e| fail(format!("optimizer.bin: {}", one_line(&e.to_string()))))?;
    let optim = catch_unwind(AssertUnwindSafe(|| optim.load_record(record))).map_err(|p| {
        fail(format!(
            "optimizer.bin does not fit the model: {}",
            one_line(&panic_text(p))
        ))
    })?;
    Ok((model, optim, st))
}

/// Writes `checkpoints/final/{model.safetensors, config.json, state.json, checksums.json}` into a temporary
/// folder (each file flushed to disk), then the DONE marker, then renames the folder into place: a checkpoint
/// without DONE is never read.
pub fn save_checkpoint<B: burn::tensor::backend::Backend>(
    model: &Gpt<B>,
    shape: &GptShape,
    run_dir: &Path,
    step: usize,
    tokens: u64,
) -> Result<PathBuf, TrainError> {
    let dir = run_dir.join("checkpoints");
    let tmp = dir.join("final.tmp");
    let dst = dir.join("final");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    sync_dir(run_dir).map_err(io(run_dir))?;
    let weights = tmp.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&weights).metadata("physlab.model", "gpt2-rotary");
    model
        .save_into(&mut store)
        .map_err(|e| TrainError::Checkpoint {
            path: weights.clone(),
            msg: e.to_string(),
        })?;
    drop(store);
    sync_file(&weights).map_err(io(&weights))?;
    let cfg = tmp.join("config.json");
    atomic_write(&cfg, &serde_json::to_vec_pretty(shape).expect("json")).map_err(io(&cfg))?;
    let state = tmp.join("state.json");
    let st = serde_json::json!({ "step": step, "tokens": tokens });
    atomic_write(&state, &serde_json::to_vec_pretty(&st).expect("json")).map_err(io(&state))?;
    finish_checkpoint(&tmp, &dst, &FINAL_FILES)?;
    Ok(dst)
}

/// A fresh model of `shape` whose initial weights are drawn on the CPU backend from `seed` and then moved to `B`,
/// so that one seed gives the same initial weights on every backend (burn-cuda's random numbers are not
/// burn-flex's: the first GPU check saw CPU and CUDA runs of one recipe end 12% apart in bits from different
/// initial weights, while their evaluators agreed to 6e-6 on the same weights).
pub fn init_model<B: burn::tensor::backend::Backend>(
    shape: &GptShape,
    seed: u64,
    device: &B::Device,
) -> Result<Gpt<B>, TrainError> {
    use burn::tensor::backend::Backend as _;
    let cpu_device = Default::default();
    crate::Cpu::seed(&cpu_device, seed);
    let cpu: Gpt<crate::Cpu> = shape.init(&cpu_device);
    let fail = TrainError::InitialWeights;
    let mut store = SafetensorsStore::from_bytes(None);
    cpu.save_into(&mut store).map_err(|e| fail(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| fail(e.to_string()))?;
    let mut model = shape.init::<B>(device);
    model
        .load_from(&mut SafetensorsStore::from_bytes(Some(bytes)))
        .map_err(|e| fail(e.to_string()))?;
    Ok(model)
}

/// Loads a checkpoint written by [`save_checkpoint`]. Refuses one without its DONE marker, one whose files do
/// not match its checksums.json (one written before checksums existed loads with a warning), weights whose
/// tensors do not fit the model of its config.json, and weights that are not all finite: each a one-line
/// `TrainError::LoadCheckpoint` naming the folder and the file.
pub fn load_checkpoint<B: burn::tensor::backend::Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Gpt<B>, GptShape), TrainError> {
    let fail = |msg: String| TrainError::LoadCheckpoint {
        path: dir.to_path_buf(),
        msg,
    };
    if !dir.join("DONE").exists() {
        return Err(fail("incomplete checkpoint (no DONE marker)".into()));
    }
    verify_checksums(dir, &FINAL_FILES).map_err(fail)?;
    let text =
        std::fs::read(dir.join("config.json")).map_err(|e| fail(format!("config.json: {e}")))?;
    let shape: GptShape =
        serde_json::from_slice(&text).map_err(|e| fail(format!("config.json: {e}")))?;
    let mut model = shape.init::<B>(device);
    let weights = dir.join("model.safetensors");
    // burn-store refuses a tensor of other dims; missing and extra tensors are refused here (a partial load would
    // keep random initial weights, and extra tensors mean the weights are another model's).
    let mut store = SafetensorsStore::from_file(&weights).allow_partial(true);
    let applied = model
        .load_from(&mut store)
        .map_err(|e| fail(format!("model.safetensors: {}", one_line(&e.to_string()))))?;
    let listed = |v: &[String]| {
        let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 3 {
            s.push_str(&format!(" … ({} in all)", v.len()));
        }
        s
    };
    let missing: Vec<String> = applied.missing.iter().map(|(p, _)| p.clone()).collect();
    if !missing.is_empty() {
        return Err(fail(format!(
            "model.safetensors lacks tensors of the model in config.json: {}",
            listed(&missing)
        )));
    }
    if !applied.unused.is_empty() {
        return Err(fail(format!(
            "model.safetensors holds tensors the model in config.json does not have: {}",
            listed(&applied.unused)
        )));
    }
    // burn-store keeps the file's dtype; the lab computes in f32 on every backend, so a file written in another
    // float dtype (bf16 or f16 by an older GPU build, or by another tool) is converted as it loads.
    let model = model.map(&mut ToF32);
    if let Some(m) = scan_params(&model, true).non_finite {
        return Err(fail(format!("model.safetensors: {m}")));
    }
    Ok((model, shape))
}

/// Casts every float parameter that is not f32 to f32 (keeping its id and trainability).
pub struct ToF32;

impl<B: burn::tensor::backend::Backend> burn::module::ModuleMapper<B> for ToF32 {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        param.map(|t| {
            if t.dtype() == burn::tensor::DType::F32 {
                t
            } else {
                // A leaf again (the cast is not part of any graph), as trainable as before.
                let trainable = t.is_require_grad();
                t.cast(burn::tensor::FloatDType::F32)
                    .detach()
                    .set_require_grad(trainable)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eval_log_line_shows_accuracies_in_percent_and_other_scalars_rounded() {
        let values = vec![
            ("qa_test/accuracy".to_string(), 0.4721),
            (
                "expected/value_bits_per_fact".to_string(),
                104.93287595937932,
            ),
            ("held_out/excess_bits_per_token".to_string(), 0.0123456),
            ("validation/loss".to_string(), 0.0),
            ("tiny".to_string(), 1.5e-7),
            ("huge".to_string(), 2.5e9),
        ];
        assert_eq!(
            eval_summary(&values),
            "qa_test 47.2%, expected/value_bits_per_fact 104.9, held_out/excess_bits_per_token 0.01235, \
             validation/loss 0, tiny 1.500e-7, huge 2.500e9"
        );
        assert_eq!(eval_summary(&[]), "");
        assert_eq!(significant(-3.14159, 3), "-3.14");
        assert_eq!(significant(123456.0, 4), "123456");
        assert_eq!(significant(f64::NAN, 4), "NaN");
    }
}
