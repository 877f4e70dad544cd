//! `physlab bench train`: the real training step (forward, loss, backward, global-norm clipping, AdamW) timed on
//! random tokens after a warm-up, median over several steps, for named model sizes; tokens/s, ms/step,
//! achieved GFLOP/s against the machine's FP32 peak, and the process's peak memory. With `--torch`, the same
//! model and step in PyTorch (`bench/torch_train.py`, eager, all cores) run in the same invocation, so the
//! result is a ratio measured side by side.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use physlab_trainer::kernels::TrainBackend;
use physlab_trainer::train::{optimizer, train_step};
use physlab_trainer::{CpuTrain, ModelConfig, Precision, TrainConfig};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One benchmark configuration.
#[derive(Clone, Debug, Serialize)]
pub struct BenchCase {
    pub name: &'static str,
    pub preset: String,
    pub d_model: usize,
    pub vocab: usize,
    pub context: usize,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
}

/// The cases: the two of ../shared/BURN-NOTES.md (2 layers d=128 and 4 layers d=256, vocab 512, context 128,
/// batch 32), the shape the capacity-law recipes train (`capacity-law-cpu`: gpt2-2-1 at d = 64, context 512,
/// 4 sequences, the dense bioD's 354 tokens) and a Part 3.3-size model (GPT2-12-12, d=768, the paper's 3,275 used
/// tokens, context 512; one sequence per step on CPU).
pub fn cases(all: bool, steps: usize) -> Vec<BenchCase> {
    let mut v = vec![
        BenchCase {
            name: "small",
            preset: "gpt2-2-2".into(),
            d_model: 128,
            vocab: 512,
            context: 128,
            batch: 32,
            steps,
            warmup: 3,
        },
        BenchCase {
            name: "medium",
            preset: "gpt2-4-4".into(),
            d_model: 256,
            vocab: 512,
            context: 128,
            batch: 32,
            steps,
            warmup: 3,
        },
        BenchCase {
            name: "capacity",
            preset: "gpt2-2-1".into(),
            d_model: 64,
            vocab: 354,
            context: 512,
            batch: 4,
            steps,
            warmup: 3,
        },
    ];
    if all {
        v.push(BenchCase {
            name: "part33",
            preset: "gpt2-12-12".into(),
            d_model: 768,
            vocab: 3275,
            context: 512,
            batch: 1,
            steps: steps.min(5),
            warmup: 1,
        });
    }
    v
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub case: BenchCase,
    pub params: usize,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    pub gflops: f64,
    pub peak_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The process's peak resident memory so far (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// FP32 peak of this machine: cores × the clock /proc/cpuinfo reports × FLOP/cycle (two FMA units: 16 lanes each
/// with full-width AVX-512, 8 with AVX2 or AMD Zen 4's double-pumped AVX-512). A virtual machine may report its
/// nominal clock while the core boosts above it, so the percentage is an estimate.
pub fn fp32_peak_gflops() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mhz = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    // Two FMA units per core: 16 f32 lanes each with AVX-512 (Intel, AMD Zen 5), 8 with AVX2 — and on AMD Zen 4
    // (family 25), whose AVX-512 runs on 256-bit units.
    let family = info
        .lines()
        .find(|l| l.starts_with("cpu family"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let amd_256bit = info.contains("AuthenticAMD") && family < 26;
    let per_cycle = if info.contains("avx512f") && !amd_256bit {
        64.0
    } else {
        32.0
    };
    (
        cores as f64 * mhz / 1000.0 * per_cycle,
        format!("{cores} cores × {mhz:.0} MHz × {per_cycle} FLOP/cycle"),
    )
}

/// What the machine's best dense kernel reaches here: a 2048³ f32 matmul on burn-flex, median of 5 after one
/// warm-up. The training step's GFLOP/s are best read against this as well as against the clock-based estimate
/// (a virtual machine may report a nominal clock below the one its cores run at).
pub fn gemm_reference_gflops() -> f64 {
    use physlab_trainer::burn::tensor::{Distribution, Tensor};
    let n: usize = 2048;
    let device = Default::default();
    let a =
        Tensor::<physlab_trainer::Cpu, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    let b =
        Tensor::<physlab_trainer::Cpu, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    let mut times = Vec::new();
    for i in 0..6 {
        let start = Instant::now();
        let c = a.clone().matmul(b.clone());
        let _ = c.into_data();
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    2.0 * (n * n * n) as f64 / median(times) / 1e9
}

/// Times the training step of `case` on burn-flex.
pub fn run_burn(case: &BenchCase) -> Result<BenchResult> {
    run_burn_on::<CpuTrain>(case, &Default::default(), Precision::F32)
}

/// Times the training step of `case` on backend `B` in `precision` (waiting for the device at the end of every
/// step; the first `case.warmup` steps, which compile and autotune the kernels on a GPU, are not timed).
pub fn run_burn_on<B: TrainBackend>(
    case: &BenchCase,
    device: &B::Device,
    precision: Precision,
) -> Result<BenchResult> {
    let shape = case_shape(case)?;
    let s = time_step::<B>(
        &shape,
        case.batch,
        case.warmup,
        case.steps,
        device,
        precision,
    )
    .with_context(|| case.name)?;
    let tokens_per_s = (case.batch * case.context) as f64 / s;
    Ok(BenchResult {
        case: case.clone(),
        params: shape.num_params(case.vocab).total,
        ms_per_step: s * 1000.0,
        tokens_per_s,
        gflops: tokens_per_s * shape.flops_per_token() / 1e9,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// The median seconds of a training step (forward, loss, backward, clipping, AdamW) of a model of `shape` on
/// `batch` random windows of its context, over `steps` steps after `warmup` untimed ones, on backend `B` in
/// `precision` (waiting for the device at the end of every step).
pub fn time_step<B: TrainBackend>(
    shape: &physlab_trainer::GptShape,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &B::Device,
    precision: Precision,
) -> Result<f64> {
    let _scope = physlab_trainer::precision::PrecisionScope::enter(precision.resolve::<B>());
    let cfg = TrainConfig::default();
    let mut model = shape.init::<B>(device);
    let mut optim = optimizer::<B>(&cfg);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (b, t, v) = (batch, shape.context, shape.vocab_size as i32);
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let x: Vec<i32> = (0..b * t).map(|_| rng.random_range(0..v)).collect();
        let y: Vec<i32> = (0..b * t).map(|_| rng.random_range(0..v)).collect();
        let start = Instant::now();
        let (m, r) = train_step(
            model,
            &mut optim,
            &cfg,
            shape,
            1e-4,
            (x, y, vec![1.0; b * t]),
            [b, t],
            device,
        );
        B::sync(device).map_err(|e| anyhow::anyhow!("waiting for the device: {e:?}"))?;
        model = m;
        if !r.loss.is_finite() {
            bail!("the loss became {}", r.loss);
        }
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

/// Runs `bench/torch_train.py` for `case` on the CPU; `Ok(None)` with a message when PyTorch is missing.
pub fn run_torch(case: &BenchCase, params: usize) -> Result<Option<serde_json::Value>> {
    run_torch_on(case, params, "cpu", &["--dtype", "float32"])
}

/// Runs `bench/torch_train.py` for `case` on `device` (cpu, cuda) with the extra arguments `args` (e.g.
/// `--autocast bf16`, `--attention naive`).
pub fn run_torch_on(
    case: &BenchCase,
    params: usize,
    device: &str,
    args: &[&str],
) -> Result<Option<serde_json::Value>> {
    let script = Path::new("bench/torch_train.py");
    if !script.exists() {
        bail!(
            "{} not found: run the bench from the repository root",
            script.display()
        );
    }
    let layers: usize = case.preset.split('-').nth(1).unwrap_or("1").parse()?;
    let heads: usize = case.preset.split('-').nth(2).unwrap_or("1").parse()?;
    let out = Command::new("python3")
        .arg(script)
        .args(["--layers", &layers.to_string()])
        .args(["--heads", &heads.to_string()])
        .args(["--d-model", &case.d_model.to_string()])
        .args(["--vocab", &case.vocab.to_string()])
        .args(["--context", &case.context.to_string()])
        .args(["--batch", &case.batch.to_string()])
        .args(["--steps", &case.steps.to_string()])
        .args(["--warmup", &case.warmup.to_string()])
        .args(["--expect-params", &params.to_string()])
        .args(["--device", device])
        .args(args)
        .output()
        .context("running python3 (needed for --torch)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        eprintln!("PyTorch is not installed (`pip install torch`): the PyTorch side of the bench is skipped. {}", stderr.trim());
        return Ok(None);
    }
    if !out.status.success() {
        bail!("bench/torch_train.py failed: {}", stderr.trim());
    }
    let line = stdout.lines().last().unwrap_or_default();
    Ok(Some(serde_json::from_str(line).with_context(|| {
        format!("bench/torch_train.py printed {line:?}")
    })?))
}

/// A case's columns of a bench line: name, preset, d, V, T, B.
fn case_columns(case: &BenchCase) -> String {
    format!(
        "{:<7} {:<11} d={:<4} V={:<5} T={:<4} B={:<3}",
        case.name, case.preset, case.d_model, case.vocab, case.context, case.batch
    )
}

fn print_burn(label: &str, case: &BenchCase, r: &BenchResult, peak: f64) {
    println!(
        "{label:<10} {} {:>10} params  {:>9.1} ms/step  {:>9.0} tok/s  {:>7.1} GFLOP/s ({:>4.1}% of peak)  peak RSS {:.0} MB",
        case_columns(case),
        r.params,
        r.ms_per_step,
        r.tokens_per_s,
        r.gflops,
        100.0 * r.gflops / peak,
        r.peak_rss_mb
    );
}

pub fn bench_train(
    all: bool,
    steps: usize,
    torch: bool,
    plain: bool,
    rounds: usize,
    json: Option<&Path>,
    only: &[String],
) -> Result<()> {
    let all = all || only.iter().any(|c| c == "part33");
    let chosen: Vec<BenchCase> = cases(all, steps)
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
        .collect();
    if let Some(bad) = only
        .iter()
        .find(|o| !cases(true, steps).iter().any(|c| c.name == o.as_str()))
    {
        bail!("bench train --case {bad}: no such case; cases: small, medium, capacity, part33");
    }
    let (peak, how) = fp32_peak_gflops();
    println!("FP32 peak estimate {peak:.0} GFLOP/s ({how}); training step = forward + loss + backward + clip + AdamW, median of the timed steps after warm-up");
    let gemm = gemm_reference_gflops();
    println!(
        "reference: one 2048×2048×2048 f32 GEMM (burn-flex's matmul, the gemm crate, all cores) runs at {gemm:.1} GFLOP/s ({:.1}% of the estimate)",
        100.0 * gemm / peak
    );
    let rounds = rounds.max(1);
    let mut rows = Vec::new();
    for case in chosen {
        let fused_default = physlab_trainer::kernels::fused_enabled();
        let (mut ratios, mut speedups) = (Vec::new(), Vec::new());
        // Each round times every side once, one after the other, so that a burst of load from other tenants
        // of the machine lands on one round rather than on one side.
        for round in 0..rounds {
            if rounds > 1 {
                println!("round {}/{rounds}", round + 1);
            }
            let r = run_burn(&case)?;
            print_burn(
                if fused_default {
                    "burn-flex"
                } else {
                    "burn-plain"
                },
                &case,
                &r,
                peak,
            );
            let mut row =
                serde_json::json!({ "round": round, "burn": r, "gemm_reference_gflops": gemm });
            if plain && fused_default {
                physlab_trainer::kernels::set_fused(false);
                let p = run_burn(&case);
                physlab_trainer::kernels::set_fused(true);
                let p = p?;
                print_burn("burn-plain", &case, &p, peak);
                let speedup = r.tokens_per_s / p.tokens_per_s;
                println!(
                    "speed-up   {:<7} fused kernels / plain burn ops tokens/s = {speedup:.2}",
                    case.name
                );
                speedups.push(speedup);
                row["plain"] = serde_json::json!(p);
            }
            if torch {
                if let Some(t) = run_torch(&case, r.params)? {
                    let tps = t["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
                    let g = tps * r.gflops / r.tokens_per_s;
                    println!(
                        "pytorch    {:<7} {:<11} {:<38}{:>10} params  {:>9.1} ms/step  {:>9.0} tok/s  {:>7.1} GFLOP/s ({:>4.1}% of peak)  torch {} threads",
                        case.name,
                        case.preset,
                        "(same model and step, eager)",
                        t["params"].as_u64().unwrap_or(0),
                        t["ms_per_step"].as_f64().unwrap_or(f64::NAN),
                        tps,
                        g,
                        100.0 * g / peak,
                        t["threads"]
                    );
                    let ratio = r.tokens_per_s / tps;
                    println!(
                        "ratio      {:<7} burn / pytorch tokens/s = {ratio:.2}",
                        case.name
                    );
                    ratios.push(ratio);
                    row["torch"] = t;
                    row["ratio"] = serde_json::json!(ratio);
                }
            }
            rows.push(row);
        }
        if rounds > 1 {
            let span = |v: &[f64]| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{:.2} (median of {} rounds; {lo:.2}–{hi:.2})",
                    median(v.to_vec()),
                    v.len()
                )
            };
            if !ratios.is_empty() {
                println!(
                    "ratio      {:<7} burn / pytorch tokens/s = {}",
                    case.name,
                    span(&ratios)
                );
            }
            if !speedups.is_empty() {
                println!(
                    "speed-up   {:<7} fused kernels / plain burn ops tokens/s = {}",
                    case.name,
                    span(&speedups)
                );
            }
        }
    }
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_vec_pretty(&rows)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The GPU case of issue 6: a GPT2-12-12-size model (d = 768, the paper's 3,275 used tokens) at context 512,
/// 16 sequences per step.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn gpu_case(steps: usize) -> BenchCase {
    BenchCase {
        name: "gpu",
        preset: "gpt2-12-12".into(),
        d_model: 768,
        vocab: 3275,
        context: 512,
        batch: 16,
        steps,
        warmup: 3,
    }
}

/// `physlab bench train --backend cuda`: the GPU case on burn-cuda in bf16-mixed (the training default) and in
/// f32, and, with `--torch`, PyTorch on the same GPU as a PyTorch user would run it (f32 parameters under bf16
/// autocast, `scaled_dot_product_attention(is_causal=True)`, fused AdamW), with the explicit-softmax attention
/// as a second column; tokens/s and MFU against `peak_tflops` (dense bf16: H100 SXM 989). The CPU bench's
/// `small` case (the size of the lab's CPU recipes) is timed first the same way, under keys prefixed `small_`,
/// so that its figures stand beside the CPU bench's.
#[cfg(feature = "cuda")]
pub fn bench_train_cuda(
    steps: usize,
    torch: bool,
    peak_tflops: f64,
    json: Option<&Path>,
) -> Result<()> {
    let found = physlab_trainer::cuda_available().map_err(anyhow::Error::msg)?;
    println!("cuda: {found}");
    let mut row = serde_json::json!({ "peak_tflops": peak_tflops, "cuda": found });
    let small = cases(false, steps).swap_remove(0);
    time_case_cuda(&small, torch, peak_tflops, "small_", &mut row)?;
    time_case_cuda(&gpu_case(steps), torch, peak_tflops, "", &mut row)?;
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_vec_pretty(&row)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Times one case on burn-cuda (bf16-mixed, f32) and, with `torch`, in PyTorch on the same GPU; prints a line
/// each and records them in `row` under `prefix`.
#[cfg(feature = "cuda")]
fn time_case_cuda(
    case: &BenchCase,
    torch: bool,
    peak_tflops: f64,
    prefix: &str,
    row: &mut serde_json::Value,
) -> Result<()> {
    let device = Default::default();
    let mut burn_bf16 = f64::NAN;
    let mut flops_per_token = f64::NAN;
    for precision in [Precision::Bf16Mixed, Precision::F32] {
        let r = run_burn_on::<physlab_trainer::GpuTrain>(case, &device, precision)?;
        flops_per_token = r.gflops * 1e9 / r.tokens_per_s;
        let mfu = 100.0 * r.tokens_per_s * flops_per_token / (peak_tflops * 1e12);
        println!(
            "burn-cuda  {} {:<10} {:>10} params  {:>9.1} ms/step  {:>9.0} tok/s  MFU {:>5.1}%",
            case_columns(case),
            precision.name(),
            r.params,
            r.ms_per_step,
            r.tokens_per_s,
            mfu
        );
        if precision == Precision::Bf16Mixed {
            burn_bf16 = r.tokens_per_s;
        }
        row[format!("{prefix}burn_{}", precision.name())] =
            serde_json::json!({ "result": r, "mfu_percent": mfu });
    }
    println!(
        "MFU against {peak_tflops} TFLOP/s (dense bf16); training FLOPs per token {flops_per_token:.3e} (matmuls, 6N + attention)"
    );
    if torch {
        let n = params_of(case)?;
        for (label, args) in [
            ("sdpa", ["--autocast", "bf16", "--attention", "sdpa"]),
            ("naive", ["--autocast", "bf16", "--attention", "naive"]),
        ] {
            if let Some(t) = run_torch_on(case, n, "cuda", &args)? {
                let tps = t["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
                let mfu = 100.0 * tps * flops_per_token / (peak_tflops * 1e12);
                println!(
                    "pytorch    {:<7} {:<11} {:<49}{:>10} params  {:>9.1} ms/step  {:>9.0} tok/s  MFU {:>5.1}%",
                    case.name,
                    case.preset,
                    format!("(bf16 autocast, {label} attention, fused AdamW)"),
                    t["params"].as_u64().unwrap_or(0),
                    t["ms_per_step"].as_f64().unwrap_or(f64::NAN),
                    tps,
                    mfu
                );
                println!(
                    "ratio      {:<7} burn bf16-mixed / pytorch ({label}) tokens/s = {:.2}",
                    case.name,
                    burn_bf16 / tps
                );
                row[format!("{prefix}torch_{label}")] = serde_json::json!({ "result": t, "mfu_percent": mfu, "ratio": burn_bf16 / tps });
            } else {
                break;
            }
        }
    }
    Ok(())
}

/// The parameter count of a bench case's model.
#[cfg(feature = "cuda")]
fn params_of(case: &BenchCase) -> Result<usize> {
    Ok(case_shape(case)?.num_params(case.vocab).total)
}

/// The model shape a bench case times.
fn case_shape(case: &BenchCase) -> Result<physlab_trainer::GptShape> {
    ModelConfig {
        preset: case.preset.clone(),
        d_model: case.d_model,
        ..ModelConfig::default()
    }
    .shape(case.vocab, case.context)
    .map_err(anyhow::Error::msg)
}
