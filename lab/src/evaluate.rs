//! `physlab evaluate <run>`: evaluates a finished bioS run's final checkpoint again, without retraining, in each
//! person's own training biographies ([`physlab_eval::evaluate_bios_own_orders`]), and merges the result into the
//! run's `eval.json` under `bios_own_orders` (every other key kept, the file replaced atomically). For runs
//! finished before the run itself wrote that key.
//!
//! `physlab evaluate <run> --routing`: evaluates a finished mixture-of-experts run (bioS, or a bioD corpus) again
//! with its routing recorded and merges the per-layer routing into eval.json under `routing`, as runs now write
//! it themselves. For a bioD run it also measures how consistently each fact is routed across the sentence
//! orders the person was trained in, and merges that under `routing_consistency` ([`RoutingConsistency`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::biod::evaluate_biod;
use physlab_eval::{evaluate_bios, evaluate_bios_own_orders, render_table};
use physlab_generators::biod::BioD;
use physlab_generators::bios::BioS;
use physlab_generators::fsio::atomic_write;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::moe::record_routing;
use physlab_trainer::train::load_checkpoint;
use physlab_trainer::{Cpu, Gpt, ParamCounts};
use rand::{Rng, SeedableRng};
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

/// Merges the `(key, value)` entries into the run's eval.json, read again under the run's lease so that nothing
/// written meanwhile is lost, and replaces the file atomically, once.
fn merge_eval(run: &Path, entries: Vec<(&str, serde_json::Value)>) -> Result<()> {
    let path = run.join("eval.json");
    let _lease = crate::lease::RunLease::acquire(run, false)?;
    let mut merged = read_eval(&path)?;
    let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
    for (key, value) in entries {
        merged.insert(key.into(), value);
    }
    atomic_write(
        &path,
        &serde_json::to_vec_pretty(&serde_json::Value::Object(merged))?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    info!("merged {} into {}", keys.join(", "), path.display());
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
    // bioD: also the routing consistency, on the same dataset (None: its people were trained in one order).
    let (bits, records, consistency) = match &rc.corpus {
        Some(DataConfig::BioD(c)) => {
            let data = BioD::build(c, rc.seed).with_context(rebuilt)?;
            let (e, r) =
                record_routing(|| evaluate_biod::<Cpu>(&model, &data, params, batch, &device));
            let cons = routing_consistency::<Cpu>(&model, &data, batch, &device);
            (e.bits, r, Some((cons, c.multi)))
        }
        _ => {
            let data = BioS::build(&rc.data, rc.seed).with_context(rebuilt)?;
            let (e, r) =
                record_routing(|| evaluate_bios::<Cpu>(&model, &data, params, batch, &device));
            (e.bits, r, None)
        }
    };
    let routing = routing_of(&model, &records, rc.model.capacity_factor)
        .context("the evaluation ran no mixture layer")?;
    info!(
        "evaluated again in {:.1}s: {bits:.0} bits ({key}.bits in eval.json: {bits_before})",
        t.elapsed().as_secs_f64()
    );
    let mut entries = vec![(ROUTING_KEY, serde_json::to_value(&routing)?)];
    let consistency_table = match consistency {
        Some((cons, multi)) if cons.is_empty() => format!(
            "\nrouting consistency: not measured (each person trained in {multi} sentence order(s); it needs 2)\n"
        ),
        Some((cons, _)) => {
            entries.push((CONSISTENCY_KEY, serde_json::to_value(&cons)?));
            render_consistency(&cons)
        }
        None => String::new(),
    };
    merge_eval(run, entries)?;
    Ok(format!(
        "{}: evaluated again, {bits:.0} bits ({key}.bits in eval.json: {bits_before}){}{consistency_table}",
        run.display(),
        render_routing(&routing)
    ))
}

/// eval.json's key for [`RoutingConsistency`].
pub const CONSISTENCY_KEY: &str = "routing_consistency";
/// People sampled, and training orders of each, for the routing consistency.
const CONSISTENCY_PEOPLE: usize = 512;
const CONSISTENCY_ORDERS: usize = 8;
/// Independent draws of each group for the baseline.
const CONSISTENCY_DRAWS: usize = 16;

/// How consistently one mixture layer routes the same fact: a person's biography in several of the sentence orders
/// it was trained in, and at each position whose next token is a value token (where the model must recall the
/// value), the expert chosen in each order. A fact stored in one expert's weights is recalled only when its
/// tokens reach that expert; if the order (the context) rather than the fact decides the expert, each expert sees
/// a fact in only some of its exposures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoutingConsistency {
    /// The layer among the model's mixture layers (0 first).
    pub layer: usize,
    /// People sampled (the first ones) and the training orders (emissions 0, 1, …) of each.
    pub people: usize,
    pub orders: usize,
    /// Value-predicting positions per person.
    pub positions: usize,
    /// Mean over (person, position) of the share of its orders that chose its most common expert (1: always the
    /// same expert; 1/orders at the least).
    pub consistency: f64,
    /// The same for choices drawn independently from this layer's choices at these positions (pooled): what a
    /// router that ignored the fact and followed only the layer's loads would give.
    pub independent: f64,
    /// Mean over the positions (attribute and value token: the slot, whoever the person) of the share of all
    /// people's orders that chose the slot's most common expert: near 1 when the slot, not the person, decides the
    /// expert, so that one expert holds that slot's values for everyone.
    pub slot_consistency: f64,
    /// Experts chosen at ≥ 1% of these positions.
    pub value_experts: usize,
}

/// Routing consistency of every mixture layer of `model` on the first people of `data` in their first training
/// orders; none when the people were trained in fewer than two orders.
fn routing_consistency<B: physlab_trainer::kernels::Kernels>(
    model: &Gpt<B>,
    data: &BioD,
    batch: usize,
    device: &B::Device,
) -> Vec<RoutingConsistency> {
    let orders = data.config.multi.min(CONSISTENCY_ORDERS);
    let people = data.n_people().min(CONSISTENCY_PEOPLE);
    let layers = model.moe_layers();
    if orders < 2 || people == 0 || layers == 0 {
        return Vec::new();
    }
    // (person, emission) → its sequence and the positions predicting its value tokens, attribute by attribute.
    let mut seqs: Vec<(usize, Vec<u32>, Vec<usize>)> = Vec::with_capacity(people * orders);
    for p in 0..people {
        for e in 0..orders {
            let r = data.render(p, e);
            let mut seq = Vec::with_capacity(r.tokens.len() + 1);
            seq.push(physlab_generators::tokenizer::EOT);
            seq.extend_from_slice(&r.tokens);
            // The value token at biography position s + i is seq[s + i + 1], predicted at seq position s + i.
            let at: Vec<usize> = r
                .values
                .iter()
                .flat_map(|v| v.start..v.start + v.len)
                .collect();
            seqs.push((p, seq, at));
        }
    }
    let positions = seqs[0].2.len();
    // groups[layer][person · positions + j]: the experts chosen over the person's orders.
    let mut groups = vec![vec![Vec::with_capacity(orders); people * positions]; layers];
    for chunk in seqs.chunks(batch.max(1)) {
        let t = chunk[0].1.len();
        let flat: Vec<i64> = chunk
            .iter()
            .flat_map(|(_, s, _)| s.iter().map(|&x| x as i64))
            .collect();
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [chunk.len(), t]), device);
        let (_, records) = record_routing(|| model.forward(x));
        for (layer, rec) in records.iter().enumerate().take(layers) {
            for (row, (p, _, at)) in chunk.iter().enumerate() {
                for (j, &pos) in at.iter().enumerate() {
                    groups[layer][p * positions + j].push(rec.choices[row * t + pos]);
                }
            }
        }
    }
    groups
        .iter()
        .enumerate()
        .map(|(layer, g)| {
            let (consistency, independent) = mode_share(g, CONSISTENCY_DRAWS, layer as u64);
            let slots: Vec<Vec<u32>> = (0..positions)
                .map(|j| {
                    (0..people)
                        .flat_map(|p| g[p * positions + j].iter().copied())
                        .collect()
                })
                .collect();
            let slot_consistency =
                slots.iter().map(|v| group_mode_share(v)).sum::<f64>() / positions as f64;
            let mut load = std::collections::HashMap::<u32, usize>::new();
            for &c in g.iter().flatten() {
                *load.entry(c).or_default() += 1;
            }
            let total = (people * orders * positions) as f64;
            let value_experts = load.values().filter(|&&n| n as f64 >= 0.01 * total).count();
            RoutingConsistency {
                layer,
                people,
                orders,
                positions,
                consistency,
                independent,
                slot_consistency,
                value_experts,
            }
        })
        .collect()
}

/// The share of a group's most common value.
fn group_mode_share(g: &[u32]) -> f64 {
    let mut v = g.to_vec();
    v.sort_unstable();
    let best = v
        .chunk_by(|a, b| a == b)
        .map(<[u32]>::len)
        .max()
        .unwrap_or(0);
    best as f64 / g.len().max(1) as f64
}

/// The mean over `groups` of the share of each group's most common value, and the same for groups of the same
/// sizes drawn independently (with replacement) from all the groups' values pooled, `draws` times each (a ChaCha
/// stream from `seed`). Empty groups are left out.
fn mode_share(groups: &[Vec<u32>], draws: usize, seed: u64) -> (f64, f64) {
    let groups: Vec<&Vec<u32>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let pooled: Vec<u32> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut seen, mut drawn) = (0.0, 0.0);
    let mut buf = Vec::new();
    for g in &groups {
        seen += group_mode_share(g);
        for _ in 0..draws.max(1) {
            buf.clear();
            buf.extend((0..g.len()).map(|_| pooled[rng.random_range(0..pooled.len())]));
            drawn += group_mode_share(&buf);
        }
    }
    let n = groups.len() as f64;
    (seen / n, drawn / (n * draws.max(1) as f64))
}

/// The routing consistency as table lines.
fn render_consistency(c: &[RoutingConsistency]) -> String {
    let mut out = String::from("\nrouting consistency (the expert chosen where a value is recalled, across a person's training orders):\n");
    for r in c {
        out.push_str(&format!(
            "  mixture layer {}: {:.3} of a fact's {} orders go to its most common expert (independent draws from the layer's loads: {:.3}); per slot (attribute and value token, everyone's) {:.3} to the slot's most common expert; {} experts take ≥ 1% of these positions; {} people × {} positions\n",
            r.layer, r.consistency, r.orders, r.independent, r.slot_consistency, r.value_experts, r.people, r.positions
        ));
    }
    out
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

    merge_eval(run, vec![(OWN_ORDERS_KEY, serde_json::to_value(&own)?)])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand groups: [1, 1, 1, 1] → 1, [2, 3, 2, 2] → 0.75, mean 0.875; an empty group is left out. Pooled values all
    /// equal make any independent draw agree with itself (1); two values pooled half and half give groups of two
    /// that agree half the time (mode share 1 or 0.5: 0.75 expected).
    #[test]
    fn mode_share_counts_the_most_common_value_and_its_independent_baseline() {
        let (seen, _) = mode_share(&[vec![1, 1, 1, 1], vec![2, 3, 2, 2], vec![]], 4, 0);
        assert!((seen - 0.875).abs() < 1e-12, "{seen}");
        assert_eq!(mode_share(&[vec![5, 5], vec![5, 5, 5]], 8, 1), (1.0, 1.0));
        let halves: Vec<Vec<u32>> = (0..2000).map(|i| vec![i % 2, (i + 1) % 2]).collect();
        let (seen, drawn) = mode_share(&halves, 8, 2);
        assert_eq!(seen, 0.5);
        // 16,000 draws of a Bernoulli(1/2) agreement: standard error 0.5 · 0.5 / √16,000 ≈ 0.002.
        assert!((drawn - 0.75).abs() < 0.01, "{drawn}");
        assert!(mode_share(&[vec![]], 1, 0).0.is_nan());
    }
}
