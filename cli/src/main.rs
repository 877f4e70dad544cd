//! `physlab`: run named experiment recipes from workspace.toml end to end
//! (generate → train → evaluate → table), or validate them without training.

use std::path::{Path, PathBuf};

use physlab_lab::{bench, check, generate, hf, probe, recipe, report, run, sample, sweep};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "physlab",
    version,
    about = "Controlled experiments on language models with synthetic data of known content"
)]
struct Cli {
    /// The recipe file.
    #[arg(long, global = true, default_value = "workspace.toml")]
    workspace: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the dataset, train, evaluate and print the table, for every point of an experiment.
    Run {
        experiment: String,
        /// Override a recipe key: `--set train.exposures=50` (highest precedence).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run only the point with this index (see `physlab plan <experiment>`).
        #[arg(long, alias = "index")]
        point: Option<usize>,
        /// Take the index from the scheduler: SLURM_ARRAY_TASK_ID (Slurm job arrays) or JOB_COMPLETION_INDEX
        /// (Kubernetes indexed jobs).
        #[arg(long, conflicts_with = "point")]
        index_from_env: bool,
        /// Where run folders go.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Check the recipe and print the plan, without generating or training.
        #[arg(long)]
        dry_run: bool,
        /// Continue an unfinished run of the same config from its newest complete checkpoint.
        #[arg(long)]
        resume: bool,
        /// When another process holds a run folder, wait for it instead of refusing.
        #[arg(long)]
        wait: bool,
        /// Where to train: cpu (burn-flex) or cuda (needs `--features cuda` and an NVIDIA driver).
        #[arg(long, value_enum, default_value = "cpu")]
        backend: run::BackendKind,
        /// Run records (a committed results/<experiment>/runs.jsonl): a point and seed recorded there was measured
        /// already, on another machine, and is not run again here. Repeatable.
        #[arg(long)]
        records: Vec<PathBuf>,
    },
    /// The runs of an experiment by index: point, seed, folder, tokens, steps and state (done, running, stale,
    /// unfinished, pending), with progress and ETA. Reads only: safe while workers run. Several experiments, or
    /// some runs of one (`capacity-law-cpu:49,46`, as scripts/run-queue.sh takes them), give a table each and the
    /// training time left in all.
    #[command(alias = "status")]
    Plan {
        /// EXPERIMENT, or EXPERIMENT:INDEX[,INDEX…] for some of its runs.
        #[arg(required = true, value_name = "EXPERIMENT[:INDEX,…]")]
        experiments: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Run records (results/<experiment>/runs.jsonl): a run recorded there and not finished here shows as
        /// "recorded" and counts nothing toward the time left. Repeatable; for one experiment (with several,
        /// use --results).
        #[arg(long)]
        records: Vec<PathBuf>,
        /// A results folder: each experiment's run records are read from RESULTS/<experiment>/runs.jsonl where
        /// that file exists.
        #[arg(long)]
        results: Option<PathBuf>,
        /// For an experiment with runs to train and none measured yet, time its step here (5 steps, as
        /// `physlab validate`) to count them in the time left.
        #[arg(long)]
        time: bool,
    },
    /// Claim and run the experiment's runs that no live process holds (resuming unfinished ones), until none is
    /// left. Start one per machine or GPU on a shared runs folder: they drain the sweep with no coordinator.
    Worker {
        experiment: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: run::BackendKind,
        /// Run records (results/<experiment>/runs.jsonl): a run recorded there was measured already and is not
        /// claimed. Repeatable.
        #[arg(long)]
        records: Vec<PathBuf>,
    },
    /// Write an sbatch job-array script for an experiment (one run per array task, requeued after a checkpoint on
    /// Slurm's time-limit warning); submit it with `sbatch FILE`.
    Slurm {
        experiment: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// The script file (default: print it).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        partition: Option<String>,
        #[arg(long, default_value_t = 0)]
        gpus_per_task: usize,
        #[arg(long, default_value_t = 2)]
        cpus: usize,
        /// Time limit per task (Slurm's format, e.g. 04:00:00).
        #[arg(long, default_value = "04:00:00")]
        time: String,
        /// At most this many tasks at once (`--array=0-K%P`).
        #[arg(long)]
        max_parallel: Option<usize>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: run::BackendKind,
    },
    /// Write a dataset (`[dataset.<name>]`, or an experiment's data) with its manifest and ground truth.
    Generate {
        /// A `[dataset.<name>]` of the workspace, or an experiment (its data section and seed).
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The dataset folder (default: data/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write text.jsonl (every document as text).
        #[arg(long)]
        jsonl: bool,
    },
    /// Check a dataset against its manifest (every shard's sha256, the vocabulary, the truth table), then print
    /// the manifest (facts, streams, mixture) and sample documents.
    Inspect {
        /// A dataset folder.
        dir: PathBuf,
        /// Documents shown per stream.
        #[arg(long, default_value_t = 3)]
        samples: usize,
    },
    /// Write every document of a dataset as JSON lines (text, and prompt/answer for questions), or as Parquet
    /// (documents.parquet with stream, doc, person, text, prompt, answer; truth.parquet, the ground truth).
    Export {
        dir: PathBuf,
        /// jsonl (one file) or parquet (a folder of two files, for `datasets.load_dataset("parquet", …)`).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Output file for jsonl (default: <dir>/text.jsonl), folder for parquet (default: <dir>/parquet). Never a
        /// file of the dataset itself.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Write a finished run's model as a folder Hugging Face transformers loads (`AutoModelForCausalLM` and
    /// `AutoTokenizer.from_pretrained(DIR)`), with physlab's logits and greedy answers for a fixed batch beside it
    /// (`physlab_logits.safetensors`; `python3 bench/hf_check.py DIR` compares). gpt2 and gpt2mlp1 go out as
    /// GPT-NeoX, gpt2abs as GPT-2, llama as Llama (whole heads rotated) or Phi-3 (part of each head rotated);
    /// gpt2mlp0 and moe have no standard equivalent and are refused.
    ExportModel {
        /// A finished run folder (runs/<experiment>/<point>/s<seed>).
        run: PathBuf,
        /// The format: hf.
        #[arg(long, default_value = "hf")]
        format: String,
        /// The output folder: new or empty (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a transformers folder written by export-model (and perhaps edited and saved again in Python) back into
    /// a physlab final checkpoint, RUN_DIR/checkpoints/final, that physlab's loaders accept.
    ImportModel {
        /// The transformers folder (config.json, model.safetensors).
        dir: PathBuf,
        /// The run folder to write checkpoints/final into (which must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks (see `physlab bench train --help`).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check a recipe or a dataset (or all of them) without training: keys, values, points and the budget
    /// arithmetic.
    Validate {
        experiment: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Predict every point's training time on this machine's CPU (its model's step timed here). Without it,
        /// only the points of one named experiment are timed, and only when their step is CPU-sized.
        #[arg(long)]
        time: bool,
    },
    /// Look at a trained model's continuations: of --prompt texts, or of a question stream's prompts (the true
    /// answer beside each, and the exact-match accuracy), with greedy decoding, sampling (temperature, top-k,
    /// top-p) or beam search.
    Sample {
        /// A finished run folder (runs/<experiment>/<point>/s<seed>).
        run: PathBuf,
        /// A prompt in the dataset's words (repeatable); without one, the questions of --questions.
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// The question stream to draw prompts from (default: the dataset's first, e.g. qa_train).
        #[arg(long)]
        questions: Option<String>,
        /// Continuations per prompt, or questions shown.
        #[arg(long, default_value_t = 5)]
        n: usize,
        #[arg(long, value_enum, default_value = "greedy")]
        strategy: Strategy,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Keep only the k most likely tokens (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Keep the smallest set of tokens whose probability reaches p (1: all).
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Beams of beam search.
        #[arg(long, default_value_t = 4)]
        beams: usize,
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        /// Seed of the sampling stream.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// P- and Q-probing of a finished bioS run (Part 3.1 §5): can a linear head on the last hidden layer, at the
    /// person's name, read each attribute? Writes probe.json into the run folder (or --out).
    Probe {
        /// A finished run folder (runs/<experiment>/<point>/s<seed>).
        run: PathBuf,
        /// Which probes: p (the biography read, probed at the name), q (only the name read), or both.
        #[arg(long, value_enum, default_value = "both")]
        kind: ProbeChoice,
        /// Share of the people the probes train on (the first ones); the others score them.
        #[arg(long, default_value_t = 0.75)]
        train_share: f64,
        /// Passes over the training people.
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0.01)]
        weight_decay: f64,
        /// Rank of a token-embedding update trained with the heads (Part 3.1); 0: a linear probe on the frozen
        /// hidden states (much cheaper: no backward pass through the model).
        #[arg(long, default_value_t = 0)]
        rank: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// P-probe each person's own first training biography (its templates and sentence order, as trained)
        /// rather than the canonical one, which a `permute` model may never have seen: ordinal positions (before
        /// the 1st … 6th value), each cell scored over the people whose value is not yet in the text there.
        #[arg(long)]
        own_order: bool,
        /// With --own-order: also drop each target's own position (right before its value, where the model
        /// predicts it as the next token), so every cell reads storage ahead of the text.
        #[arg(long, requires = "own_order")]
        strict: bool,
        /// A checkpoint folder other than the run's checkpoints/final (e.g. checkpoints/step-00020000).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Where probe.json goes: a folder, or a file name ending in .json (default: the run folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate a finished bioS run's final checkpoint again, without retraining, in each person's own training
    /// biographies (templates and sentence orders as trained; the employer counts its city where the city comes
    /// first), and merge the result into the run's eval.json under `bios_own_orders`. With --routing, a finished
    /// mixture-of-experts run (bioS or bioD) instead: its evaluation again with the routing recorded, merged
    /// under `routing` (per layer: the chosen expert's mean probability, the busiest expert's share, the experts
    /// used, the tokens over capacity at the training factor), as runs now write it themselves.
    Evaluate {
        /// A finished run folder (runs/<experiment>/<point>/s<seed>).
        run: PathBuf,
        /// Biographies per forward pass (default: the run's eval.batch).
        #[arg(long)]
        batch: Option<usize>,
        /// Record a mixture of experts' routing instead of the own-order evaluation.
        #[arg(long)]
        routing: bool,
    },
    /// Compare an experiment's headline metrics (its report, made anew from the runs) with a committed
    /// report.json, for CI: exits 1 when one leaves the tolerance or is missing; --junit writes a JUnit XML report.
    Check {
        experiment: String,
        /// The reference report (e.g. results/<experiment>/report.json).
        #[arg(long)]
        against: PathBuf,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Relative tolerance of each headline mean.
        #[arg(long, default_value_t = 0.02)]
        tolerance: f64,
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Rebuild the run records (runs.jsonl) of an experiment from an earlier report's summary.csv, for a report
    /// that must include runs whose folders and records are gone: every value the summary holds, back in its place
    /// in eval.json, with the parameter counts as bits / R; no curves. Writes a new file (never overwrites one).
    Records {
        experiment: String,
        /// The earlier report's summary.csv (e.g. results/<experiment>/summary.csv).
        #[arg(long)]
        from_summary: PathBuf,
        /// The records file to write (e.g. results/<experiment>/runs.jsonl); it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarise every finished run of an experiment: statistics over seeds (mean, std, n), the headline metrics
    /// against the published figures (one-sided t-test), the capacity-law fit, SVG plots; writes
    /// runs/<experiment>/report.md, report.json, summary.csv, runs.jsonl and plots/.
    Report {
        experiment: String,
        /// Where run folders are.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Run records (runs.jsonl, written beside every report) of runs whose folders are not here, e.g. a
        /// committed results/<experiment>/runs.jsonl on a fresh machine; a run finished in the folder is read from
        /// there. Repeatable.
        #[arg(long)]
        records: Vec<PathBuf>,
    },
    /// One page over the committed results: each results/<experiment>/report.json's SPEC row, runs, headline
    /// figures beside the published ones, law and checks, linked to its report, ordered by row; writes
    /// results/INDEX.md.
    Index {
        /// The results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ProbeChoice {
    P,
    Q,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Strategy {
    Greedy,
    Sample,
    Beam,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time the real training step (forward, loss, backward, clipping, AdamW) for a small (2 layers, d=128),
    /// a medium (4 layers, d=256), the capacity-law recipes' shape (2 layers, d=64, context 512) and, with --all,
    /// a Part 3.3-size (GPT2-12-12, context 512) model.
    Train {
        /// Timed steps per model (after warm-up); the median is reported.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Include the Part 3.3-size model (slow on CPU).
        #[arg(long)]
        all: bool,
        /// Also run the same model and step in PyTorch (bench/torch_train.py) and print the ratio.
        #[arg(long)]
        torch: bool,
        /// Where to time it: cpu (burn-flex, the small/medium/Part 3.3 models) or cuda (burn-cuda, bf16-mixed and f32, a
        /// GPT2-12-12-size model at context 512, 16 sequences; needs `--features cuda` and an NVIDIA driver).
        #[arg(long, value_enum, default_value = "cpu")]
        backend: run::BackendKind,
        /// GPU peak for the MFU (TFLOP/s, dense bf16; H100 SXM: 989).
        #[arg(long, default_value_t = 989.0)]
        peak_tflops: f64,
        /// Repeat the measurement this many times, the sides alternating, and print the median ratio (the
        /// machines are shared: one round can land on a burst of someone else's load).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Also time the plain composition of burn ops (the fused kernels off, as PHYSLAB_KERNELS=plain) and
        /// print the fused kernels' speed-up.
        #[arg(long)]
        plain: bool,
        /// Write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Time only these cases (small, medium, capacity, part33); repeatable. Default: every case (part33 with
        /// --all).
        #[arg(long = "case")]
        cases: Vec<String>,
    },
}

/// Keeps freed memory in the process instead of returning it to the kernel: training allocates and frees the same
/// large tensors every step, and with glibc's defaults each one is a fresh mmap whose pages the kernel must fault
/// in and zero (BURN-NOTES measured 12–15% of a step there). Raising the mmap and trim thresholds (to glibc's
/// 32 MB maximum for mmap) reuses the heap. Measured with `physlab bench train` (README). `PHYSLAB_MALLOC=default`
/// keeps glibc's defaults, for comparisons.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var("PHYSLAB_MALLOC").as_deref() != Ok("default") {
        // SAFETY: mallopt only changes allocator parameters; it is called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        }
    }
}

/// The exit status of a run stopped by SIGTERM/SIGUSR1 after writing its checkpoint (the Slurm script requeues
/// on it).
const STOPPED_EXIT: i32 = 3;

fn main() {
    // `physlab validate | head` should end quietly when the reader goes away, as other command-line tools do,
    // not panic on a broken pipe: restore the default SIGPIPE action that Rust's runtime ignores.
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tune_allocator();
    // SIGTERM, and SIGUSR1 (Slurm's warning before the time limit or preemption: `--signal=USR1@120`): training
    // writes a complete checkpoint at the next step boundary and the process exits with STOPPED_EXIT, so that a
    // requeued job resumes it.
    extern "C" fn on_stop_signal(_: libc::c_int) {
        physlab_trainer::train::STOP_REQUESTED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: the handler only stores to an atomic (async-signal-safe); installed before any thread exists.
    unsafe {
        let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGUSR1, handler);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    // The command runs on one of rayon's threads, not beside them: a parallel kernel called from outside the
    // pool hands its work over and sleeps until it is done (a futex wake and wait per call, ~150 calls a training
    // step), and every serial stretch between kernels left the pool's threads idle. Called from a pool thread,
    // the caller takes part in the work. Measured with `physlab bench train` (see README, Speed).
    // The pool's threads get the main thread's usual 8 MiB of stack (the default for spawned threads is 2 MiB).
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global()
    {
        eprintln!("error: starting the thread pool: {e}");
        std::process::exit(1);
    }
    if let Err(e) = rayon::scope(|_| real_main()) {
        eprintln!("error: {e:#}");
        let stopped = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<physlab_trainer::train::TrainError>(),
                Some(physlab_trainer::train::TrainError::Stopped { .. })
            )
        });
        std::process::exit(if stopped { STOPPED_EXIT } else { 1 });
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            experiment,
            sets,
            point,
            runs,
            index_from_env,
            dry_run,
            resume,
            wait,
            backend,
            records,
        } => {
            let point = if index_from_env {
                let (var, v) = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]
                    .iter()
                    .find_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--index-from-env: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set"
                        )
                    })?;
                Some(v.trim().parse::<usize>().map_err(|_| {
                    anyhow::anyhow!("--index-from-env: {var} = {v:?} is not an index")
                })?)
            } else {
                point
            };
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = recipe::parse_sets(&sets)?;
            let mut points = ws.points(&experiment, &sets)?;
            // Runs measured already (their records committed) are not run again.
            let recorded = report::Recorded::read(&records, &experiment)?;
            let record_of = |p: &recipe::Point| recorded.file_of(&p.name, p.seed);
            let skip = |p: &recipe::Point, path: &Path| {
                println!(
                    "point {} ({}/s{}) is recorded in {}: measured already, not run again",
                    p.index,
                    p.name,
                    p.seed,
                    path.display()
                )
            };
            match point {
                Some(k) => {
                    if let Some(path) = points.get(k).and_then(|p| record_of(p).map(|r| (p, r))) {
                        skip(path.0, path.1);
                        return Ok(());
                    }
                }
                None => {
                    for p in &points {
                        if let Some(path) = record_of(p) {
                            skip(p, path);
                        }
                    }
                    points.retain(|p| record_of(p).is_none());
                    if points.is_empty() {
                        return Ok(());
                    }
                }
            }
            run::run_experiment(
                &experiment,
                &points,
                point,
                &runs,
                dry_run,
                resume,
                backend,
                wait,
            )
        }
        Command::Plan {
            experiments,
            sets,
            runs,
            records,
            results,
            time,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = recipe::parse_sets(&sets)?;
            // The items of one experiment together (a queue lists them one run at a time), in first-named order.
            let mut asked: Vec<(&str, Option<Vec<usize>>)> = Vec::new();
            for item in &experiments {
                let (experiment, only) = sweep::parse_plan_item(item)?;
                match asked.iter_mut().find(|(e, _)| *e == experiment) {
                    Some((_, have)) => match (have.as_mut(), only) {
                        (Some(h), Some(o)) => h.extend(o),
                        _ => *have = None,
                    },
                    None => asked.push((experiment, only)),
                }
            }
            if asked.len() > 1 && !records.is_empty() {
                anyhow::bail!(
                    "--records names one experiment's records; with several experiments use --results DIR"
                );
            }
            let mut cache = std::collections::HashMap::new();
            let mut totals = Vec::new();
            for (i, (experiment, only)) in asked.iter().enumerate() {
                let experiment = *experiment;
                let mut points = ws.points(experiment, &sets)?;
                if let Some(only) = only {
                    if let Some(k) = only.iter().find(|&&k| k >= points.len()) {
                        anyhow::bail!(
                            "{experiment}:{k}: {experiment} has runs 0 to {} (no run {k})",
                            points.len() - 1
                        );
                    }
                    points.retain(|p| only.contains(&p.index));
                }
                let mut files = records.clone();
                if let Some(dir) = &results {
                    let f = dir.join(experiment).join("runs.jsonl");
                    if f.exists() {
                        files.push(f);
                    }
                }
                let recorded = report::Recorded::read(&files, experiment)?;
                if i > 0 {
                    println!();
                }
                let mut timer = |p: &recipe::Point| run::step_seconds(p, &mut cache);
                totals.push(sweep::print_plan(
                    experiment,
                    &run::with_runs(&points, &runs),
                    &runs,
                    &recorded,
                    time.then_some(
                        &mut timer as &mut dyn FnMut(&recipe::Point) -> anyhow::Result<f64>,
                    ),
                )?);
            }
            if asked.len() > 1 || asked.iter().any(|(_, only)| only.is_some()) {
                println!("\n{}", sweep::plan_total_line(asked.len(), &totals));
                // The runs left in the order named (a queue's order), with the clock at which each would end.
                let mut seen = std::collections::HashSet::new();
                let mut order = Vec::new();
                for item in &experiments {
                    let (experiment, only) = sweep::parse_plan_item(item)?;
                    let Some(i) = asked.iter().position(|(e, _)| *e == experiment) else {
                        continue;
                    };
                    let left = &totals[i].left_by_index;
                    let indices = only.unwrap_or_else(|| left.keys().copied().collect());
                    for k in indices {
                        if let Some(l) = left.get(&k) {
                            if seen.insert((experiment, k)) {
                                order.push((format!("{experiment}:{k}"), *l));
                            }
                        }
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                print!("{}", sweep::plan_order_lines(&order, now));
            }
            Ok(())
        }
        Command::Worker {
            experiment,
            sets,
            runs,
            backend,
            records,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let mut points = ws.points(&experiment, &recipe::parse_sets(&sets)?)?;
            // A recorded run was measured already; its folder, if any, is left as it is.
            let recorded = report::Recorded::read(&records, &experiment)?;
            points.retain(|p| recorded.file_of(&p.name, p.seed).is_none());
            sweep::worker(&experiment, &run::with_runs(&points, &runs), &runs, backend).map(|_| ())
        }
        Command::Slurm {
            experiment,
            sets,
            runs,
            out,
            partition,
            gpus_per_task,
            cpus,
            time,
            max_parallel,
            backend,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let points = ws.points(&experiment, &recipe::parse_sets(&sets)?)?;
            let script = sweep::slurm_script(&sweep::SlurmArgs {
                experiment: &experiment,
                runs: &runs,
                workspace: &cli.workspace,
                sets: &sets,
                points: points.len(),
                partition: partition.as_deref(),
                gpus_per_task,
                cpus,
                time: &time,
                max_parallel,
                backend,
            })?;
            let logs = runs.join(&experiment).join("slurm");
            std::fs::create_dir_all(&logs)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", logs.display()))?;
            match out {
                Some(path) => {
                    if path.exists() {
                        anyhow::bail!("{}: exists; not overwritten", path.display());
                    }
                    physlab_generators::fsio::atomic_write(&path, script.as_bytes())
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                    eprintln!(
                        "wrote {} ({} array tasks; logs in {}); submit with: sbatch {}",
                        path.display(),
                        points.len(),
                        logs.display(),
                        path.display()
                    );
                }
                None => print!("{script}"),
            }
            Ok(())
        }
        Command::Generate {
            name,
            sets,
            out,
            jsonl,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = recipe::parse_sets(&sets)?;
            let recipe = if ws.datasets.contains_key(&name) || !ws.experiments.contains_key(&name) {
                ws.dataset(&name, &sets)?
            } else {
                let p = ws.points(&name, &sets)?.remove(0);
                // The data the experiment's first point trains on: its corpus (bioD, Zipf, …), else its bioS.
                match p.config.corpus {
                    Some(corpus) => recipe::DatasetRecipe {
                        description: p.config.description.clone(),
                        seed: p.seed,
                        shard_documents: run::CORPUS_SHARD_DOCUMENTS,
                        data: corpus,
                    },
                    None => recipe::DatasetRecipe {
                        description: p.config.description.clone(),
                        seed: p.seed,
                        shard_documents: p.config.data.shard_biographies as u64,
                        data: physlab_generators::DataConfig::BioS(p.config.data),
                    },
                }
            };
            let out = out.unwrap_or_else(|| PathBuf::from("data").join(&name));
            generate::generate(&name, &recipe, &out, jsonl)
        }
        Command::Bench(BenchCommand::Train {
            steps,
            all,
            torch,
            plain,
            rounds,
            json,
            backend,
            peak_tflops,
            cases,
        }) => match backend {
            run::BackendKind::Cpu => {
                bench::bench_train(all, steps, torch, plain, rounds, json.as_deref(), &cases)
            }
            #[cfg(feature = "cuda")]
            run::BackendKind::Cuda => {
                bench::bench_train_cuda(steps, torch, peak_tflops, json.as_deref())
            }
            #[cfg(not(feature = "cuda"))]
            run::BackendKind::Cuda => {
                let _ = peak_tflops;
                run::BackendKind::Cuda.check()
            }
        },
        Command::ExportModel { run, format, out } => hf::export_model(&run, &format, &out),
        Command::ImportModel { dir, out } => hf::import_model(&dir, &out),
        Command::Inspect { dir, samples } => {
            let ds = physlab_generators::Dataset::open(&dir)?;
            // Everything shown is checked first: every shard against its sha256, the vocabulary and the truth table.
            let v = ds.verify()?;
            generate::print_summary(&ds, samples)?;
            println!(
                "  verified    {} files ({} shards, {} documents, {} tokens, {:.1} MB) against the manifest",
                v.files,
                v.shards,
                v.documents,
                v.tokens,
                v.bytes as f64 / 1e6
            );
            Ok(())
        }
        Command::Export {
            dir,
            format,
            out,
            force,
        } => {
            let ds = physlab_generators::Dataset::open(&dir)?;
            match format {
                ExportFormat::Jsonl => {
                    let out = out.unwrap_or_else(|| dir.join("text.jsonl"));
                    let n = generate::export_jsonl(&ds, &out, force)?;
                    println!("{n} documents → {}", out.display());
                }
                ExportFormat::Parquet => {
                    let out = out.unwrap_or_else(|| dir.join("parquet"));
                    let (docs, truth) = generate::export_parquet(&ds, &out, force)?;
                    println!(
                        "{docs} documents → {}/documents.parquet{}",
                        out.display(),
                        if truth > 0 {
                            format!(
                                ", {truth} ground-truth rows → {}/truth.parquet",
                                out.display()
                            )
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Sample {
            run,
            prompts,
            questions,
            n,
            strategy,
            temperature,
            top_k,
            top_p,
            beams,
            max_tokens,
            seed,
        } => {
            let decoding = match strategy {
                Strategy::Greedy => physlab_eval::decode::Decoding::Greedy,
                Strategy::Sample => physlab_eval::decode::Decoding::Sample {
                    temperature,
                    top_k,
                    top_p,
                },
                Strategy::Beam => physlab_eval::decode::Decoding::Beam { width: beams },
            };
            sample::sample(sample::SampleArgs {
                run: &run,
                prompts: &prompts,
                questions: questions.as_deref(),
                n,
                decoding,
                max_tokens,
                seed,
            })
        }
        Command::Probe {
            run,
            kind,
            train_share,
            epochs,
            batch,
            lr,
            weight_decay,
            rank,
            seed,
            own_order,
            strict,
            checkpoint,
            out,
        } => {
            use physlab_eval::probe::{ProbeConfig, ProbeKind};
            let kinds = match kind {
                ProbeChoice::P => vec![ProbeKind::P],
                ProbeChoice::Q => vec![ProbeKind::Q],
                ProbeChoice::Both => vec![ProbeKind::P, ProbeKind::Q],
            };
            if epochs == 0
                || batch == 0
                || lr.is_nan()
                || lr <= 0.0
                || weight_decay.is_nan()
                || weight_decay < 0.0
            {
                anyhow::bail!(
                    "--epochs, --batch and --lr must be positive, --weight-decay not negative"
                );
            }
            probe::probe_run(
                &run,
                &kinds,
                &ProbeConfig {
                    train_share,
                    epochs,
                    batch,
                    lr,
                    weight_decay,
                    embedding_rank: rank,
                    seed,
                    own_order,
                    strict,
                },
                checkpoint.as_deref(),
                out.as_deref(),
            )
        }
        Command::Evaluate {
            run,
            batch,
            routing,
        } => {
            let table = if routing {
                physlab_lab::evaluate::evaluate_routing(&run, batch)?
            } else {
                physlab_lab::evaluate::evaluate_run(&run, batch)?
            };
            println!("{table}");
            Ok(())
        }
        Command::Check {
            experiment,
            against,
            runs,
            tolerance,
            junit,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let spec = ws.report_spec(&experiment)?;
            report::report(&experiment, &runs, &[], &spec, "", &[])?;
            let current = runs.join(&experiment).join("report.json");
            let outcomes = check::compare(&current, &against, tolerance)?;
            for o in &outcomes {
                println!(
                    "{} {:<70} reference {:<12.6} current {}",
                    if o.passed { "ok  " } else { "FAIL" },
                    o.name,
                    o.reference,
                    o.current
                        .map_or("missing".to_string(), |c| format!("{c:.6}"))
                );
            }
            if let Some(path) = junit {
                physlab_generators::fsio::atomic_write(
                    &path,
                    check::junit(&experiment, &outcomes, tolerance).as_bytes(),
                )
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} headline metric(s) of {experiment} left the tolerance {tolerance} of {}",
                    outcomes.len(),
                    against.display()
                );
            }
            println!(
                "{experiment}: {} headline metric(s) within {tolerance} of {}",
                outcomes.len(),
                against.display()
            );
            Ok(())
        }
        Command::Records {
            experiment,
            from_summary,
            out,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let spec = ws.report_spec(&experiment)?;
            if out.exists() {
                anyhow::bail!(
                    "{}: exists already; not overwritten (name a new file, or move it away yourself)",
                    out.display()
                );
            }
            let text = std::fs::read_to_string(&from_summary)
                .with_context(|| format!("reading {}", from_summary.display()))?;
            let runs = report::records_from_summary(
                &experiment,
                &text,
                &from_summary.display().to_string(),
                &spec,
            )?;
            physlab_generators::fsio::atomic_write(
                &out,
                report::render_records(&experiment, &runs)?.as_bytes(),
            )
            .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} run record(s) of {experiment} to {} (from {}; no curves)",
                runs.len(),
                out.display(),
                from_summary.display()
            );
            Ok(())
        }
        Command::Report {
            experiment,
            runs,
            records,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let spec = ws.report_spec(&experiment)?;
            let description = ws
                .points(&experiment, &[])
                .ok()
                .and_then(|p| p.first().map(|p| p.config.description.clone()))
                .unwrap_or_default();
            // A reference run (report.reference) is read from its folder under --runs or its committed records.
            let reference_records: Vec<PathBuf> = spec
                .reference
                .iter()
                .map(|r| {
                    cli.workspace
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join("results")
                        .join(&r.experiment)
                        .join(report::RECORDS_FILE)
                })
                .filter(|p| p.is_file())
                .collect();
            let md = report::report(
                &experiment,
                &runs,
                &records,
                &spec,
                &description,
                &reference_records,
            )?;
            println!("{md}");
            eprintln!(
                "wrote {}/{{report.md, report.json, summary.csv, runs.jsonl, plots/}}",
                runs.join(&experiment).display()
            );
            Ok(())
        }
        Command::Index { results } => {
            let path = physlab_lab::index::write(&results)?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        Command::Validate {
            experiment,
            sets,
            time,
        } => {
            let mut timings = std::collections::HashMap::new();
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = recipe::parse_sets(&sets)?;
            let single = experiment.is_some();
            let (names, datasets): (Vec<String>, Vec<String>) = match experiment {
                Some(e) if ws.datasets.contains_key(&e) && !ws.experiments.contains_key(&e) => {
                    (vec![], vec![e])
                }
                Some(e) => (vec![e], vec![]),
                None => (
                    ws.experiments.keys().cloned().collect(),
                    ws.datasets.keys().cloned().collect(),
                ),
            };
            let mut failed = 0;
            for name in &datasets {
                match ws.dataset(name, &sets) {
                    Ok(d) => println!(
                        "dataset {name}: ok, kind {}, seed {}{}",
                        d.data.kind(),
                        d.seed,
                        if d.description.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", d.description)
                        }
                    ),
                    Err(e) => {
                        failed += 1;
                        println!("dataset {name}: INVALID\n{e:#}");
                    }
                }
            }
            for name in &names {
                match ws.points(name, &sets) {
                    Ok(points) => {
                        println!("{name}: ok, {} point(s)", points.len());
                        for p in &points {
                            println!("  {}", run::plan_line(p)?);
                            // One named experiment is timed unless its step is GPU-sized; --time times all.
                            if time || (single && run::cpu_sized(p)?) {
                                println!("      {}", run::predicted_runtime(p, &mut timings)?);
                            } else if single {
                                println!(
                                    "      predicted training time: not timed on this CPU (a step of over {:.0} GFLOP; --time times it anyway)",
                                    run::CPU_STEP_GFLOP
                                );
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{name}: INVALID\n{e:#}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} recipe(s) invalid in {}", cli.workspace.display());
            }
            Ok(())
        }
    }
}
