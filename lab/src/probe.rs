//! `physlab probe <run>`: P- and Q-probing of a finished bioS run's model (Part 3.1 §5; `physlab_eval::probe`).
//! Writes `probe.json` (into the run folder, or `--out`) and prints, per target, the accuracy at each probe
//! position beside the chance level, the number of classes and the training people per class.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::probe::{probe, ProbeConfig, ProbeEval, ProbeKind, MIN_PER_CLASS};
use physlab_generators::bios::BioS;
use physlab_trainer::kernels::TrainBackend;
use physlab_trainer::model::Gpt;
use physlab_trainer::train::{load_checkpoint, load_step_checkpoint, optimizer, TrainState};
use physlab_trainer::{CpuTrain, GptShape};
use tracing::info;

use crate::recipe::RunConfig;

/// What `probe.json` holds.
#[derive(serde::Serialize)]
struct ProbeFile<'a> {
    run: String,
    checkpoint: String,
    people: usize,
    /// Wall time of each probe, seconds (hidden states, training, scoring).
    wall_s: Vec<f64>,
    probes: &'a [ProbeEval],
}

/// Probes the model of `run` (its `checkpoints/final`, or `checkpoint`) and writes `probe.json` into `out`
/// (default: the run folder).
pub fn probe_run(
    run: &Path,
    kinds: &[ProbeKind],
    cfg: &ProbeConfig,
    checkpoint: Option<&Path>,
    out: Option<&Path>,
) -> Result<()> {
    let rc = RunConfig::of_run(run)?;
    if rc.corpus.is_some() {
        bail!(
            "{}: probing reads bioS biographies; this run trained on a `corpus`",
            run.display()
        );
    }
    if !(cfg.train_share > 0.0 && cfg.train_share < 1.0) {
        bail!(
            "the training share must lie strictly between 0 and 1, not {}",
            cfg.train_share
        );
    }
    let data = BioS::build(&rc.data, rc.seed)?;
    let ckpt = checkpoint.map_or_else(|| run.join("checkpoints").join("final"), Path::to_path_buf);
    let mut evals = Vec::new();
    let mut walls = Vec::new();
    for &kind in kinds {
        let device = Default::default();
        let (gpt, shape) = load_any::<CpuTrain>(&ckpt, &device)
            .with_context(|| format!("loading {}", ckpt.display()))?;
        let gpt = gpt.without_token_dropping();
        let t = std::time::Instant::now();
        let e = probe::<CpuTrain>(gpt, &shape, &data, kind, cfg, &device, &mut |line| {
            info!("{kind:?}-probe: {line} ({:.0}s)", t.elapsed().as_secs_f64())
        });
        let wall = t.elapsed().as_secs_f64();
        info!(
            "{kind:?}-probing of {} people done in {wall:.1}s ({} steps)",
            data.n_people(),
            e.steps
        );
        evals.push(e);
        walls.push(wall);
    }
    println!("{}", render(&ckpt, &evals, &walls));
    // `--out` names a folder (probe.json goes inside it), or the file itself when it ends in `.json`.
    let path = match out {
        Some(o) if o.extension().is_some_and(|e| e == "json") => o.to_path_buf(),
        Some(o) => o.join("probe.json"),
        None => run.join("probe.json"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = ProbeFile {
        run: run.display().to_string(),
        checkpoint: ckpt.display().to_string(),
        people: data.n_people(),
        wall_s: walls,
        probes: &evals,
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {}", path.display()))?;
    info!("wrote {}", path.display());
    Ok(())
}

/// Loads a final checkpoint (`model.safetensors`) or a step checkpoint (`model.bin`, written during training).
fn load_any<B: TrainBackend>(ckpt: &Path, device: &B::Device) -> Result<(Gpt<B>, GptShape)> {
    if !ckpt.join("model.bin").exists() {
        return Ok(load_checkpoint::<B>(ckpt, device)?);
    }
    let path = ckpt.join("state.json");
    let st: TrainState = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let shape = st.shape;
    let model = shape.init::<B>(device);
    let (model, _, _) =
        load_step_checkpoint::<B>(ckpt, &shape, model, optimizer(&st.train), device)?;
    Ok((model, shape))
}

/// One table: a row per target; for each probe its accuracy at each position (test people), then the chance
/// level, the classes and the training people per class.
fn render(ckpt: &Path, evals: &[ProbeEval], walls: &[f64]) -> String {
    let Some(first) = evals.first() else {
        return String::new();
    };
    let mut s = format!(
        "== probing {} ==\nhead: the value's class; {}; test accuracy on people the probe did not train on\n",
        ckpt.display(),
        if first.config.embedding_rank == 0 {
            "linear on the frozen last hidden layer".to_string()
        } else {
            format!(
                "linear on the last hidden layer + rank-{} embedding update",
                first.config.embedding_rank
            )
        }
    );
    // Column labels: P@<attribute whose value follows>, Q@name.
    let short = |p: &str| {
        if let Some(k) = p.strip_prefix("before_value_") {
            return format!("v{k}");
        }
        match p.trim_start_matches("before_") {
            "birth_date" => "date",
            "birth_city" => "bcity",
            "university" => "univ",
            "employer" => "empl",
            "employer_city" => "ecity",
            other => other,
        }
        .to_string()
    };
    s.push_str(&format!("{:<14}", "target"));
    for e in evals {
        for p in &e.positions {
            s.push_str(&format!("{:>9}", format!("{:?}@{}", e.kind, short(p))));
        }
    }
    s.push_str(&format!(
        "{:>9}{:>9}{:>11}\n",
        "chance", "classes", "train/cls"
    ));
    for (t, target) in first.targets.iter().enumerate() {
        s.push_str(&format!("{:<14}", target.target));
        for e in evals {
            for a in &e.targets[t].accuracy {
                // A cell no test person is scored in (an own-order mask left none) has no accuracy (NaN).
                if a.is_nan() {
                    s.push_str(&format!("{:>9}", "-"));
                } else {
                    s.push_str(&format!("{:>8.1}%", 100.0 * a));
                }
            }
        }
        s.push_str(&format!(
            "{:>8.1}%{:>9}{:>11.1}{}\n",
            100.0 * target.chance,
            target.classes,
            target.train_per_class,
            if target.train_per_class < MIN_PER_CLASS {
                " (few)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!("{:<14}", "mean train"));
    for e in evals {
        for p in 0..e.positions.len() {
            // Over the targets scored at this position (an own-order mask may leave a cell no one).
            let scored: Vec<f64> = e
                .targets
                .iter()
                .map(|t| t.train_accuracy[p])
                .filter(|a| !a.is_nan())
                .collect();
            if scored.is_empty() {
                s.push_str(&format!("{:>9}", "-"));
            } else {
                let m = scored.iter().sum::<f64>() / scored.len() as f64;
                s.push_str(&format!("{:>8.1}%", 100.0 * m));
            }
        }
    }
    s.push('\n');
    let own = evals
        .iter()
        .any(|e| e.kind == ProbeKind::P && e.config.own_order);
    if own {
        s.push_str("P positions (own order): P@vK is the token right before the K-th value of the person's own first training biography (its templates and sentence order); each cell scores only the test people whose value (for the employer's city, the employer's too) is not yet in the text there: every cell tests stored knowledge\n");
        if evals.iter().any(|e| e.config.own_order && e.config.strict) {
            s.push_str("strict: a target's own position (right before its value, where the model predicts it next) is dropped too, so each cell reads only values that come later in the text; '-': no test person left in the cell\n");
        }
        if let Some(e) = evals.iter().find(|e| e.kind == ProbeKind::P) {
            s.push_str("test people scored per cell (target: P@v1 … P@v6):");
            for t in &e.targets {
                let n: Vec<String> = t.tested.iter().map(usize::to_string).collect();
                s.push_str(&format!(" {} {};", t.target, n.join("/")));
            }
            s.push('\n');
        }
    } else {
        s.push_str("P positions: the token right before each attribute's value in the canonical biography (P@date: after \"<name> was born on\"); ");
    }
    s.push_str("Q: the last name token of `<eot> name`\n");
    if !own && evals.iter().any(|e| e.kind == ProbeKind::P) {
        s.push_str("P cells right of a target's own column read a state after its sentence: the value is in the text there (and the employer's city follows from the employer), so only the target's own column and those left of it (P@date for all) test stored knowledge\n");
    }
    for (e, w) in evals.iter().zip(walls) {
        s.push_str(&format!(
            "{:?}: trained on {} people ({} epochs, {} steps of {}, lr {}), scored on the other {}, {:.1}s\n",
            e.kind, e.train_people, e.config.epochs, e.steps, e.config.batch, e.config.lr, e.test_people, w
        ));
    }
    if !first.few_per_class.is_empty() {
        s.push_str(&format!(
            "fewer than {MIN_PER_CLASS} training people per class: {}\n",
            first.few_per_class.join(", ")
        ));
    }
    s
}
