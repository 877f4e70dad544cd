//! `physlab evaluate <run>`: evaluates a finished bioS run's final checkpoint again, without retraining, in each
//! person's own training biographies ([`physlab_eval::evaluate_bios_own_orders`]), and merges the result into the
//! run's `eval.json` under `bios_own_orders` (every other key kept, the file replaced atomically). For runs
//! finished before the run itself wrote that key.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::{evaluate_bios_own_orders, render_table};
use physlab_generators::bios::BioS;
use physlab_generators::fsio::atomic_write;
use physlab_trainer::train::load_checkpoint;
use physlab_trainer::{Cpu, ParamCounts};
use tracing::info;

use crate::recipe::RunConfig;
use crate::run::{own_orders_differ, own_orders_title, OWN_ORDERS_KEY};

/// Evaluates `run`'s `checkpoints/final` in the people's own training biographies, `batch` biographies per
/// forward pass (None: the run's `eval.batch`), merges `bios_own_orders` into its eval.json and returns the table.
pub fn evaluate_run(run: &Path, batch: Option<usize>) -> Result<String> {
    let run = &std::fs::canonicalize(run)
        .with_context(|| format!("{}: not a run folder", run.display()))?;
    let rc = RunConfig::of_run(run)?;
    if rc.corpus.is_some() {
        bail!(
            "{}: the own-order evaluation reads bioS biographies; this run trained on a `corpus`",
            run.display()
        );
    }
    if rc.data.fresh {
        bail!(
            "{}: data.fresh draws a new biography at every emission, so nobody has biographies of their own to \
             evaluate in",
            run.display()
        );
    }
    if !own_orders_differ(&rc.data) {
        bail!(
            "{}: bioS single without permute (name in the first sentence) trains on the canonical evaluation \
             biography itself: its own-order evaluation is the `bios` one already in eval.json",
            run.display()
        );
    }
    if !run.join("DONE").exists() {
        bail!(
            "{}: not a finished run (no DONE): its eval.json is written when it finishes",
            run.display()
        );
    }
    let batch = batch.unwrap_or(rc.eval.batch);
    if batch == 0 {
        bail!("--batch must be positive");
    }
    let eval_path = run.join("eval.json");
    // Read and checked before the model is loaded, so that a bad file fails in a second.
    let read_eval = || -> Result<serde_json::Map<String, serde_json::Value>> {
        let bytes = std::fs::read(&eval_path)
            .with_context(|| format!("reading {}", eval_path.display()))?;
        match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => bail!("{}: not a JSON object", eval_path.display()),
            Err(e) => bail!("{}: not JSON ({e})", eval_path.display()),
        }
    };
    let before = read_eval()?;
    // The parameter counts of the canonical evaluation, so that both report the same R.
    let params: ParamCounts = before
        .get("bios")
        .and_then(|b| b.get("params"))
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .with_context(|| format!("{}: no bios.params", eval_path.display()))?;
    let exposures = before
        .get("exposures")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN);

    let data = BioS::build(&rc.data, rc.seed).with_context(|| {
        format!(
            "rebuilding the dataset of {}",
            run.join("config.resolved.toml").display()
        )
    })?;
    let ckpt = run.join("checkpoints").join("final");
    let device = Default::default();
    let (model, _) = load_checkpoint::<Cpu>(&ckpt, &device)
        .with_context(|| format!("loading {}", ckpt.display()))?;
    let model = model.without_token_dropping();
    let t = std::time::Instant::now();
    let Some(own) = evaluate_bios_own_orders::<Cpu>(&model, &data, params, batch, &device) else {
        bail!("{}: no own biographies to evaluate in", run.display());
    };
    info!(
        "evaluated {} people in their {} own training biographies each in {:.1}s: {:.0} bits",
        own.people,
        own.biographies_per_person,
        t.elapsed().as_secs_f64(),
        own.bits
    );

    // One owner of the run folder while eval.json is replaced; the file is read again under the lease, so that
    // nothing written meanwhile is lost.
    let _lease = crate::lease::RunLease::acquire(run, false)?;
    let mut merged = read_eval()?;
    merged.insert(OWN_ORDERS_KEY.into(), serde_json::to_value(&own)?);
    atomic_write(
        &eval_path,
        &serde_json::to_vec_pretty(&serde_json::Value::Object(merged))?,
    )
    .with_context(|| format!("writing {}", eval_path.display()))?;
    info!("merged {OWN_ORDERS_KEY} into {}", eval_path.display());
    let title = format!(
        "{} / {} / seed {}",
        before
            .get("experiment")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?"),
        before
            .get("point")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?"),
        rc.seed
    );
    Ok(render_table(&own_orders_title(&title), &own, exposures))
}
