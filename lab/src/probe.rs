//! `physlab probe <run>`: P- and Q-probing of a finished bioS run's model (Part 3.1 §5; `physlab_eval::probe`).
//! Writes `probe.json` into the run folder and prints the accuracies per attribute.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::probe::{probe, ProbeConfig, ProbeEval, ProbeKind};
use physlab_generators::bios::BioS;
use physlab_trainer::train::load_checkpoint;
use physlab_trainer::CpuTrain;
use tracing::info;

use crate::recipe::RunConfig;

pub fn probe_run(run: &Path, kinds: &[ProbeKind], cfg: &ProbeConfig) -> Result<()> {
    let resolved = run.join("config.resolved.toml");
    let text = std::fs::read_to_string(&resolved).with_context(|| {
        format!(
            "reading {} (is {} a run folder?)",
            resolved.display(),
            run.display()
        )
    })?;
    let rc: RunConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", resolved.display()))?;
    if rc.corpus.is_some() {
        bail!(
            "{}: probing reads bioS biographies; this run trained on a `corpus`",
            run.display()
        );
    }
    let data = BioS::build(&rc.data, rc.seed)?;
    let ckpt = run.join("checkpoints").join("final");
    let mut out = Vec::new();
    for &kind in kinds {
        let device = Default::default();
        let (gpt, shape) = load_checkpoint::<CpuTrain>(&ckpt, &device)
            .with_context(|| format!("loading {}", ckpt.display()))?;
        let gpt = gpt.without_token_dropping();
        let t = std::time::Instant::now();
        let e = probe::<CpuTrain>(gpt, &shape, &data, kind, cfg, &device);
        info!(
            "{:?}-probing: mean test accuracy {:.1}% (train {:.1}%, majority baseline {:.1}%) in {:.1}s",
            kind,
            100.0 * e.mean_accuracy,
            100.0 * e.train_accuracy,
            100.0 * e.majority_baseline,
            t.elapsed().as_secs_f64()
        );
        out.push(e);
    }
    println!("{}", render(run, &out));
    let path = run.join("probe.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&out)?)
        .with_context(|| format!("writing {}", path.display()))?;
    info!("wrote {}", path.display());
    Ok(())
}

fn render(run: &Path, evals: &[ProbeEval]) -> String {
    let mut s = format!(
        "== probing {} (first value token, linear head on the last layer + rank-{} embedding update) ==\n",
        run.display(),
        evals.first().map_or(0, |e| e.config.embedding_rank)
    );
    s.push_str(&format!("{:<16}", "attribute"));
    for e in evals {
        s.push_str(&format!("{:>12}", format!("{:?}-probe", e.kind)));
    }
    s.push('\n');
    if let Some(first) = evals.first() {
        for a in first.accuracy.keys() {
            s.push_str(&format!("{a:<16}"));
            for e in evals {
                s.push_str(&format!("{:>11.1}%", 100.0 * e.accuracy[a]));
            }
            s.push('\n');
        }
    }
    for (label, f) in [
        (
            "mean (test)",
            (|e: &ProbeEval| e.mean_accuracy) as fn(&ProbeEval) -> f64,
        ),
        ("mean (train)", |e| e.train_accuracy),
        ("majority guess", |e| e.majority_baseline),
    ] {
        s.push_str(&format!("{label:<16}"));
        for e in evals {
            s.push_str(&format!("{:>11.1}%", 100.0 * f(e)));
        }
        s.push('\n');
    }
    if let Some(e) = evals.first() {
        s.push_str(&format!(
            "probes trained on {} people, scored on the other {}\n",
            e.train_people, e.test_people
        ));
    }
    s
}
