//! `physlab evaluate <run>`: evaluates a finished bioS run's final checkpoint again, without retraining, in each
//! person's own training biographies ([`physlab_eval::evaluate_bios_own_orders`]), and merges the result into the
//! run's `eval.json` under `bios_own_orders` (every other key kept, the file replaced atomically). For runs
//! finished before the run itself wrote that key.
//!
//! `physlab evaluate <run> --routing`: evaluates a finished mixture-of-experts run (bioS, or a bioD corpus) again
//! with its routing recorded and merges the per-layer routing into eval.json under `routing`, as runs now write
//! it themselves.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::biod::evaluate_biod;
use physlab_eval::{evaluate_bios, evaluate_bios_own_orders, render_table};
use physlab_generators::biod::BioD;
use physlab_generators::bios::BioS;
use physlab_generators::fsio::atomic_write;
use physlab_trainer::moe::record_routing;
use physlab_trainer::train::load_checkpoint;
use physlab_trainer::{Cpu, ParamCounts};
use tracing::info;

use crate::recipe::RunConfig;
use crate::run::{
    own_orders_differ, own_orders_title, render_routing, routing_of, OWN_ORDERS_KEY, ROUTING_KEY,
};
use physlab_generators::DataConfig;

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// eval.json as a JSON object, or an error naming the file.
fn read_eval(path: &Path) -> Result<JsonMap> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => bail!("{}: not a JSON object", path.display()),
        Err(e) => bail!("{}: not JSON ({e})", path.display()),
    }
}

/// Merges `key` into the run's eval.json, read again under the run's lease so that nothing written meanwhile is
/// lost, and replaces the file atomically.
fn merge_eval(run: &Path, key: &str, value: serde_json::Value) -> Result<()> {
    let path = run.join("eval.json");
    let _lease = crate::lease::RunLease::acquire(run, false)?;
    let mut merged = read_eval(&path)?;
    merged.insert(key.into(), value);
    atomic_write(
        &path,
        &serde_json::to_vec_pretty(&serde_json::Value::Object(merged))?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    info!("merged {key} into {}", path.display());
    Ok(())
}

/// `run` canonicalized and its config.
fn run_config(run: &Path) -> Result<(std::path::PathBuf, RunConfig)> {
    let run = std::fs::canonicalize(run)
        .with_context(|| format!("{}: not a run folder", run.display()))?;
    let rc = RunConfig::of_run(&run)?;
    Ok((run, rc))
}

/// The run's eval.json, for a finished run (DONE) only.
fn finished_eval(run: &Path) -> Result<JsonMap> {
    if !run.join("DONE").exists() {
        bail!(
            "{}: not a finished run (no DONE): its eval.json is written when it finishes",
            run.display()
        );
    }
    read_eval(&run.join("eval.json"))
}

/// Re-evaluates a finished mixture-of-experts run (bioS, or a bioD corpus) with its routing recorded, merges the
/// per-layer routing into eval.json under `routing`, and returns the routing table with the bits found again
/// beside those in eval.json (the same checkpoint and data give the same figure).
pub fn evaluate_routing(run: &Path, batch: Option<usize>) -> Result<String> {
    let (run, rc) = run_config(run)?;
    let run = &run;
    let batch = batch.unwrap_or(rc.eval.batch);
    if batch == 0 {
        bail!("--batch must be positive");
    }
    let before = finished_eval(run)?;
    let eval_path = run.join("eval.json");
    let key = match &rc.corpus {
        None => "bios",
        Some(DataConfig::BioD(_)) => "biod",
        Some(other) => bail!(
            "{}: --routing re-evaluates bioS and bioD runs; this one trained on a {} corpus",
            run.display(),
            other.kind()
        ),
    };
    let section = before.get(key);
    let params: ParamCounts = section
        .and_then(|b| b.get("params"))
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .with_context(|| format!("{}: no {key}.params", eval_path.display()))?;
    let bits_before = section
        .and_then(|b| b.get("bits"))
        .and_then(serde_json::Value::as_f64)
        .map_or("none".into(), |b| format!("{b:.0}"));
    let ckpt = run.join("checkpoints").join("final");
    let device = Default::default();
    let (model, _) = load_checkpoint::<Cpu>(&ckpt, &device)
        .with_context(|| format!("loading {}", ckpt.display()))?;
    if model.moe_layers() == 0 {
        bail!(
            "{}: model {} has no mixture of experts: nothing is routed",
            run.display(),
            rc.model.preset
        );
    }
    let model = model.without_token_dropping();
    let rebuilt = || {
        format!(
            "rebuilding the dataset of {}",
            run.join("config.resolved.toml").display()
        )
    };
    let t = std::time::Instant::now();
    let (bits, records) = match &rc.corpus {
        Some(DataConfig::BioD(c)) => {
            let data = BioD::build(c, rc.seed).with_context(rebuilt)?;
            let (e, r) =
                record_routing(|| evaluate_biod::<Cpu>(&model, &data, params, batch, &device));
            (e.bits, r)
        }
        _ => {
            let data = BioS::build(&rc.data, rc.seed).with_context(rebuilt)?;
            let (e, r) =
                record_routing(|| evaluate_bios::<Cpu>(&model, &data, params, batch, &device));
            (e.bits, r)
        }
    };
    let routing = routing_of(&model, &records, rc.model.capacity_factor)
        .context("the evaluation ran no mixture layer")?;
    info!(
        "evaluated again in {:.1}s: {bits:.0} bits ({key}.bits in eval.json: {bits_before})",
        t.elapsed().as_secs_f64()
    );
    merge_eval(run, ROUTING_KEY, serde_json::to_value(&routing)?)?;
    Ok(format!(
        "{}: evaluated again, {bits:.0} bits ({key}.bits in eval.json: {bits_before}){}",
        run.display(),
        render_routing(&routing)
    ))
}

/// Evaluates `run`'s `checkpoints/final` in the people's own training biographies, `batch` biographies per
/// forward pass (None: the run's `eval.batch`), merges `bios_own_orders` into its eval.json and returns the table.
pub fn evaluate_run(run: &Path, batch: Option<usize>) -> Result<String> {
    let (run, rc) = run_config(run)?;
    let run = &run;
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
    let batch = batch.unwrap_or(rc.eval.batch);
    if batch == 0 {
        bail!("--batch must be positive");
    }
    // Read and checked before the model is loaded, so that a bad file fails in a second.
    let before = finished_eval(run)?;
    let eval_path = run.join("eval.json");
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

    merge_eval(run, OWN_ORDERS_KEY, serde_json::to_value(&own)?)?;
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
