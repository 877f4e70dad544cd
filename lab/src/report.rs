//! `physlab report <experiment>`: reads every finished run of `runs/<experiment>/<point>/s<seed>/` and writes
//! `report.md` (statistics over seeds per point, the headline metrics against the published figures with a
//! one-sided t-test, the capacity-law fit), `summary.csv` (one line per run), `report.json` and SVG plots (loss
//! curves; bits against parameters with the 2- and 1-bit/param lines).
//!
//! Three stages, usable on their own: [`load`] reads the finished runs, [`compute`] is pure (statistics, tests,
//! fits, curves; unit-tested below against closed forms), and [`render_md`] / [`render_csv`] / [`render_json`] /
//! [`write`] turn the result into text and files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use physlab_eval::fit::{proportional, ProportionalFit};
use physlab_eval::plot::{Legend, Plot, Series, Style};
use physlab_eval::stats::{SeedStats, TTest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::recipe::{Fit, MetricSpec, ReportSpec};

/// One finished run.
#[derive(Clone, Serialize, Deserialize)]
pub struct Run {
    /// The point's folder name.
    pub point: String,
    pub seed: u64,
    /// Its eval.json.
    pub eval: Value,
    /// (step, loss), the last line of each step.
    pub curve: Vec<(f64, f64)>,
    /// The accuracy curves of curve.jsonl (`train.eval_every`): stream → (step, exact-match accuracy).
    #[serde(default)]
    pub accuracy: BTreeMap<String, Vec<(f64, f64)>>,
    /// The held-out excess curves of curve.jsonl (early stopping on a corpus run): "validation" / "held_out" →
    /// (step, excess in bits/token).
    #[serde(default)]
    pub excess_curve: BTreeMap<String, Vec<(f64, f64)>>,
    /// A mixture of experts' routing while training (metrics.jsonl's `router_dropped` and `router_gate`):
    /// "dropped" / "gate" → (step, value); empty for other models and for runs logged before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, Vec<(f64, f64)>>,
    /// Values of the report's columns that neither eval.json nor the curves here can give, by column label: a
    /// record rebuilt from an earlier report's summary.csv (`records_from_summary`) has no curve, so the loss
    /// drop over the last tenth is kept as that report computed it. Read only where the run cannot compute it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recorded: BTreeMap<String, f64>,
}

/// Looks `path` up in eval.json: dotted keys; inside an array, the element whose `stream`, `attribute` or `name`
/// equals the segment, or whose `layer` is its number (`routing.1.gate_mean`).
pub fn lookup(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.iter().find(|e| {
                ["stream", "attribute", "name"]
                    .iter()
                    .any(|k| e.get(k).and_then(Value::as_str) == Some(seg))
                    || (e
                        .get("layer")
                        .and_then(Value::as_u64)
                        .is_some_and(|l| l.to_string() == seg))
            })?,
            _ => return None,
        };
    }
    cur.as_f64()
}

/// A bits-of-knowledge field of a bioS or a bioD evaluation.
fn knowledge(v: &Value, field: &str) -> Option<f64> {
    lookup(v, &format!("bios.{field}")).or_else(|| lookup(v, &format!("biod.{field}")))
}

/// Mean whole-value accuracy over the attributes counted in the bits.
fn mean_whole_value(v: &Value) -> Option<f64> {
    let attrs = v.pointer("/bios/attributes")?.as_array()?;
    let acc: Vec<f64> = attrs
        .iter()
        .filter(|a| a.get("counted_in_bits").and_then(Value::as_bool) == Some(true))
        .filter(|a| a.get("attribute").and_then(Value::as_str) != Some("pronoun"))
        .filter_map(|a| a.get("whole_value_accuracy").and_then(Value::as_f64))
        .collect();
    (!acc.is_empty()).then(|| acc.iter().sum::<f64>() / acc.len() as f64)
}

fn read_curve(path: &Path) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut by_step: BTreeMap<u64, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let (Some(s), Some(l)) = (
                v.get("step").and_then(Value::as_u64),
                v.get("loss").and_then(Value::as_f64),
            ) {
                by_step.insert(s, l); // readers keep the last line of a step
            }
        }
    }
    by_step.into_iter().map(|(s, l)| (s as f64, l)).collect()
}

/// Curves by name: name → (step, value).
type NamedCurves = BTreeMap<String, Vec<(f64, f64)>>;

/// A mixture of experts' routing from a run's metrics.jsonl: "dropped" (`router_dropped`) and "gate"
/// (`router_gate`) as (step, value), the last line of each step; empty when every gate is 0 (not a mixture, or
/// logged before these fields).
fn read_routing(path: &Path) -> NamedCurves {
    let Ok(text) = std::fs::read_to_string(path) else {
        return NamedCurves::new();
    };
    let mut by: BTreeMap<&str, BTreeMap<u64, f64>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(step) = v.get("step").and_then(Value::as_u64) else {
            continue;
        };
        for (name, key) in [("dropped", "router_dropped"), ("gate", "router_gate")] {
            if let Some(x) = v.get(key).and_then(Value::as_f64) {
                by.entry(name).or_default().insert(step, x);
            }
        }
    }
    if !by.get("gate").is_some_and(|g| g.values().any(|&x| x > 0.0)) {
        return NamedCurves::new();
    }
    by.into_iter()
        .map(|(k, m)| {
            (
                k.to_string(),
                m.into_iter().map(|(s, x)| (s as f64, x)).collect(),
            )
        })
        .collect()
}

/// The `<stream>/accuracy` values of a run's curve.jsonl by stream, as (step, accuracy), the last line of each
/// step; empty when the run made no curve.
fn read_accuracy(path: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
    read_curve_values(path, "/accuracy")
}

/// The `<name><suffix>` values of a run's curve.jsonl by name, as (step, value), the last line of each step.
fn read_curve_values(path: &Path, suffix: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut by: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(step) = m.get("step").and_then(Value::as_u64) else {
            continue;
        };
        for (k, v) in &m {
            if let (Some(stream), Some(a)) = (k.strip_suffix(suffix), v.as_f64()) {
                by.entry(stream.to_string()).or_default().insert(step, a);
            }
        }
    }
    by.into_iter()
        .map(|(k, m)| (k, m.into_iter().map(|(s, a)| (s as f64, a)).collect()))
        .collect()
}

/// A number inside a name, ordered by value (`f64::total_cmp`).
#[derive(Debug, Clone, Copy)]
struct NameNumber(f64);

impl PartialEq for NameNumber {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for NameNumber {}
impl PartialOrd for NameNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for NameNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sort key that orders the numbers inside names by value: `d_model=8` before `d_model=16`, `s2` before `s10`,
/// and decimals as decimals (`lr=0.0001` before `lr=0.0003` before `lr=0.001`; `1e-3` reads as 0.001). A number
/// is a run of digits, then optionally `.` and digits, then optionally `e`, a sign and digits.
fn natural_key(s: &str) -> Vec<(String, NameNumber)> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut key = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < b.len() {
        if !digit(i) {
            i += 1;
            continue;
        }
        let start = i;
        while digit(i) {
            i += 1;
        }
        if b.get(i) == Some(&b'.') && digit(i + 1) {
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(b.get(i + 1), Some(b'-' | b'+')));
            if digit(i + 1 + sign) {
                i += 1 + sign;
                while digit(i) {
                    i += 1;
                }
            }
        }
        // Only ASCII was consumed, so both ends are char boundaries; a run too long for f64 saturates to inf.
        let value = s[start..i].parse::<f64>().unwrap_or(f64::INFINITY);
        key.push((s[text_start..start].to_string(), NameNumber(value)));
        text_start = i;
    }
    key.push((s[text_start..].to_string(), NameNumber(0.0)));
    key
}

/// eval.json written before stop 23 divided bits by the used-rows parameter count (`params.capacity`) in
/// `capacity_ratio` / `capacity_ratio_max`, and took memorized bits as the training set's entropy − NLL. The
/// headline now counts every parameter (the paper's count, `params.total`) and keeps the used rows beside it
/// (`capacity_ratio_used_rows`), and memorized bits are Morris's per-sequence sum (`memorized_bits_aggregate`
/// keeps the old sum). An older eval.json is read the new way: its ratios are recomputed from `bits`,
/// `perfect_recall_bits` and `params.total`, the old ones moved to the `_used_rows` keys, and its memorized bits
/// (the aggregate) moved to `memorized_bits_aggregate`, leaving `memorized_bits` absent (it needs the
/// per-sequence losses, which that file does not hold). A current eval.json is left as it is.
pub fn upgrade_counts(eval: &mut Value) {
    fn section(v: &mut Value) {
        let Some(o) = v.as_object_mut() else { return };
        let total = o
            .get("params")
            .and_then(|p| p.get("total"))
            .and_then(Value::as_f64);
        if o.contains_key("capacity_ratio") && !o.contains_key("capacity_ratio_used_rows") {
            if let (Some(total), Some(bits), Some(perfect)) = (
                total,
                o.get("bits").and_then(Value::as_f64),
                o.get("perfect_recall_bits").and_then(Value::as_f64),
            ) {
                let old = o["capacity_ratio"].clone();
                let old_max = o.get("capacity_ratio_max").cloned().unwrap_or(Value::Null);
                o.insert("capacity_ratio_used_rows".into(), old);
                o.insert("capacity_ratio_max_used_rows".into(), old_max);
                o.insert("capacity_ratio".into(), serde_json::json!(bits / total));
                o.insert(
                    "capacity_ratio_max".into(),
                    serde_json::json!(perfect / total),
                );
            }
        }
        if o.get("memorized_bits").is_some_and(|m| !m.is_null())
            && !o.contains_key("memorized_bits_aggregate")
        {
            let old = o.remove("memorized_bits").unwrap_or(Value::Null);
            o.insert("memorized_bits_aggregate".into(), old);
            o.insert("memorized_bits".into(), Value::Null);
            o.insert("bits_per_param".into(), Value::Null);
        }
    }
    for_each_section(eval, section);
}

/// Applies `f` to each section of an eval.json that holds bits or a capacity: bios, its own-orders twin, biod,
/// corpus and each quantized copy.
fn for_each_section(eval: &mut Value, f: fn(&mut Value)) {
    for key in ["bios", "bios_own_orders", "biod", "corpus"] {
        if let Some(v) = eval.get_mut(key) {
            f(v);
        }
    }
    if let Some(q) = eval.get_mut("quantized").and_then(Value::as_object_mut) {
        for v in q.values_mut() {
            f(v);
        }
    }
}

/// `stored_fraction` (bits / perfect_recall_bits) in each knowledge section that has both but not it: an eval.json
/// or a record written before the field existed. Runs read from folders and from records alike.
pub fn derive_stored_fraction(eval: &mut Value) {
    for_each_section(eval, |v| {
        let Some(o) = v.as_object_mut() else { return };
        if o.get("stored_fraction").is_some_and(|x| !x.is_null()) {
            return;
        }
        if let (Some(bits), Some(perfect)) = (
            o.get("bits").and_then(Value::as_f64),
            o.get("perfect_recall_bits").and_then(Value::as_f64),
        ) {
            if perfect > 0.0 {
                o.insert("stored_fraction".into(), serde_json::json!(bits / perfect));
            }
        }
    });
}

fn collect_runs(dir: &Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading {}: no runs of this experiment (run it first: `physlab run <experiment>`)",
            dir.display()
        )
    })?;
    let mut points: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.to_string_lossy().contains(".incomplete-"))
        .collect();
    points.sort_by_key(|p| natural_key(&p.to_string_lossy()));
    for pdir in points {
        let point = pdir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        // The seed folders `s<seed>`, each with its seed parsed once.
        let mut seeds: Vec<(u64, PathBuf)> = std::fs::read_dir(&pdir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter_map(|p| {
                let seed = p.file_name()?.to_str()?.strip_prefix('s')?.parse().ok()?;
                Some((seed, p))
            })
            .collect();
        seeds.sort();
        for (seed, sdir) in seeds {
            if !sdir.join("DONE").exists() {
                continue;
            }
            let path = sdir.join("eval.json");
            let eval: Value = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?;
            // A run counts only with the evaluation a finished run writes (an empty or foreign eval.json beside
            // a DONE marker would enter the statistics as n = 1 with no values).
            let complete = ["experiment", "point", "seed"]
                .iter()
                .all(|k| eval.get(k).is_some());
            if !complete {
                bail!(
                    "{}: not the evaluation of a finished run (no experiment, point or seed in it), though {} \
                     exists; rerun that point (delete its DONE) or remove the folder",
                    path.display(),
                    sdir.join("DONE").display()
                );
            }
            let mut eval = eval;
            upgrade_counts(&mut eval);
            derive_stored_fraction(&mut eval);
            runs.push(Run {
                point: point.clone(),
                seed,
                eval,
                curve: read_curve(&sdir.join("metrics.jsonl")),
                accuracy: read_accuracy(&sdir.join(physlab_trainer::train::CURVE_FILE)),
                excess_curve: read_curve_values(
                    &sdir.join(physlab_trainer::train::CURVE_FILE),
                    "/excess_bits_per_token",
                ),
                routing: read_routing(&sdir.join("metrics.jsonl")),
                recorded: BTreeMap::new(),
            });
        }
    }
    if runs.is_empty() {
        bail!(
            "{}: no finished run (a run is finished when its DONE file exists)",
            dir.display()
        );
    }
    Ok(runs)
}

/// A metric column: label, how to read it, decimals.
struct Column {
    label: String,
    path: Option<String>,
    digits: usize,
    /// A value computed from the run rather than read from eval.json (then `path` is unused).
    derived: Option<fn(&Run) -> Option<f64>>,
}

/// How much the training loss still fell over the last 10% of the run, in percent of its value there (the mean
/// loss of the first logging interval at or after 90% of the steps against the last one): near 0 when the curve
/// has flattened, the convergence check of a capacity measurement (issue 13).
/// The column of [`loss_drop_last_tenth`].
const LOSS_DROP: &str = "training loss still falling over the last 10% of steps (%)";

/// The column of every run's parameter count (the paper's: all of them), whichever section holds it.
const PARAMS: &str = "parameters (all)";

/// The parameter count of a bioS / bioD / corpus evaluation.
fn params_total(run: &Run) -> Option<f64> {
    knowledge(&run.eval, "params.total").or_else(|| lookup(&run.eval, "corpus.params.total"))
}

/// [`loss_drop_last_tenth`], or the figure a record kept when it has no curve.
fn loss_drop(run: &Run) -> Option<f64> {
    loss_drop_last_tenth(run).or_else(|| run.recorded.get(LOSS_DROP).copied())
}

fn loss_drop_last_tenth(run: &Run) -> Option<f64> {
    let last = run.curve.last()?;
    let from = run.curve.iter().find(|(s, _)| *s >= 0.9 * last.0)?;
    (from.0 < last.0).then(|| 100.0 * (from.1 - last.1) / from.1)
}

fn columns(runs: &[Run], spec: &ReportSpec) -> Vec<Column> {
    let c = |label: &str, path: &str, digits: usize| Column {
        label: label.into(),
        path: Some(path.into()),
        digits,
        derived: None,
    };
    let mut cols = vec![
        c("bits of knowledge", "bios.bits", 0),
        c("bits/person", "bios.bits_per_person", 2),
        c("R (bits/param)", "bios.capacity_ratio", 4),
        c("R^max", "bios.capacity_ratio_max", 4),
        c(
            "R, used embedding rows only",
            "bios.capacity_ratio_used_rows",
            4,
        ),
        c("p1 loss_name (nats)", "bios.loss_name", 3),
        c("p2 loss_value (nats)", "bios.loss_value", 3),
        Column {
            label: "whole-value accuracy (mean of 5 attributes)".into(),
            path: None,
            digits: 3,
            derived: None,
        },
    ];
    // The evaluation in each person's own training biographies (`bios_own_orders`, multi/permute runs).
    cols.push(c(
        "own orders: bits of knowledge",
        "bios_own_orders.bits",
        0,
    ));
    cols.push(c(
        "own orders: R (bits/param)",
        "bios_own_orders.capacity_ratio",
        4,
    ));
    cols.push(c(
        "own orders: p1 loss_name (nats)",
        "bios_own_orders.loss_name",
        3,
    ));
    cols.push(c(
        "own orders: p2 loss_value (nats)",
        "bios_own_orders.loss_value",
        3,
    ));
    let mut streams: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.eval
                .get("qa")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|q| q.get("stream").and_then(Value::as_str).map(String::from))
        })
        .collect();
    streams.sort();
    streams.dedup();
    for s in streams {
        cols.push(c(
            &format!("QA exact match, {s}"),
            &format!("qa.{s}.accuracy"),
            3,
        ));
    }
    let mut quants: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.eval
                .get("quantized")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys().cloned())
        })
        .collect();
    quants.sort();
    quants.dedup();
    for q in quants {
        cols.push(c(&format!("bits, {q}"), &format!("quantized.{q}.bits"), 0));
        cols.push(c(
            &format!("R, {q}"),
            &format!("quantized.{q}.capacity_ratio"),
            4,
        ));
    }
    cols.push(c("bioD: bits of knowledge (Def. 4.1)", "biod.bits", 0));
    cols.push(c("bioD: R (bits/param)", "biod.capacity_ratio", 4));
    cols.push(c("bioD: R^max", "biod.capacity_ratio_max", 4));
    cols.push(c(
        "bioD: R, used embedding rows only",
        "biod.capacity_ratio_used_rows",
        4,
    ));
    cols.push(c("bioD: p1 loss_name (nats)", "biod.loss_name", 3));
    cols.push(c("bioD: p2 loss_value (nats)", "biod.loss_value", 3));
    cols.push(c("bioD: p3 loss_value1 (nats)", "biod.loss_value1", 3));
    cols.push(c(
        "bioD: whole-value accuracy",
        "biod.whole_value_accuracy",
        3,
    ));
    cols.push(c(
        "corpus: entropy rate H (bits/token)",
        "corpus.entropy_bits_per_token",
        4,
    ));
    cols.push(c(
        "corpus: loss (bits/token)",
        "corpus.loss_bits_per_token",
        4,
    ));
    cols.push(c(
        "corpus: excess loss (bits/token; over the sample's true surprisal where known, else over H)",
        "corpus.excess_bits_per_token",
        4,
    ));
    cols.push(c(
        "corpus: loss − H (bits/token)",
        "corpus.excess_over_rate_bits_per_token",
        4,
    ));
    cols.push(c("corpus: memorized bits", "corpus.memorized_bits", 0));
    cols.push(c(
        "corpus: memorized bits/param",
        "corpus.bits_per_param",
        4,
    ));
    cols.push(c(
        "early stopping: held-out excess at the validation minimum (bits/token)",
        "early_stopping.excess_bits_per_token",
        4,
    ));
    cols.push(c("early stopping: its step", "early_stopping.best_step", 0));
    cols.push(c(
        "early stopping: held-out excess at the last step (bits/token)",
        "early_stopping.last_excess_bits_per_token",
        4,
    ));
    cols.push(c(
        "facts: value loss on facts whose key was seen, at the early-stopping step (bits/fact)",
        "facts.seen_bits_per_fact_at_best",
        4,
    ));
    cols.push(c(
        "facts: value loss on facts whose key was never seen, at the early-stopping step (bits/fact)",
        "facts.unseen_bits_per_fact_at_best",
        3,
    ));
    cols.push(Column {
        label: PARAMS.into(),
        path: None,
        digits: 0,
        derived: Some(params_total),
    });
    cols.push(c("corpus: tokens scored", "corpus.tokens", 0));
    cols.push(c("corpus: data tokens", "data_tokens", 0));
    cols.push(c("final training loss (nats/token)", "train.final_loss", 3));
    cols.push(Column {
        label: LOSS_DROP.into(),
        path: None,
        digits: 2,
        derived: Some(loss_drop),
    });
    cols.push(c("exposures", "exposures", 1));
    cols.push(c("wall time (s)", "wall_s", 1));
    for m in &spec.metrics {
        if !cols
            .iter()
            .any(|c| c.path.as_deref() == Some(m.path.as_str()))
        {
            cols.push(c(&label_of(m), &m.path, 4));
        }
    }
    // What an excess-loss fit reads, so that a summary holds every number the report's fit was made from.
    if matches!(spec.fit, Fit::Data | Fit::Params) {
        let (x, y) = excess_fit_paths(spec);
        for path in [x, y] {
            if !cols.iter().any(|c| c.path.as_deref() == Some(path)) {
                cols.push(c(path, path, 4));
            }
        }
    }
    cols
}

fn label_of(m: &MetricSpec) -> String {
    if m.label.is_empty() {
        m.path.clone()
    } else {
        m.label.clone()
    }
}

fn value(run: &Run, col: &Column) -> Option<f64> {
    if let Some(f) = col.derived {
        return f(run);
    }
    match &col.path {
        Some(p) => lookup(&run.eval, p),
        None => mean_whole_value(&run.eval).or_else(|| run.recorded.get(&col.label).copied()),
    }
}

/// A headline metric at one point: ours over seeds against the published figure.
#[derive(Serialize)]
pub struct Headline {
    pub metric: String,
    pub path: String,
    pub point: String,
    #[serde(skip)]
    pub alternative: physlab_eval::stats::Alternative,
    pub stats: SeedStats,
    pub published: Option<f64>,
    pub test: Option<TTest>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    experiment: &'a str,
    row: &'a str,
    claim: &'a str,
    runs: usize,
    points: &'a BTreeMap<String, BTreeMap<String, SeedStats>>,
    headline: Vec<&'a Headline>,
    capacity_law: Option<&'a ProportionalFit>,
    memorization_law: Option<&'a ProportionalFit>,
    memorization_plateau: Option<&'a PlateauSection>,
    best_of: Option<&'a BestOfSection>,
    excess_power_law: Option<&'a physlab_eval::fit::PowerLawFit>,
    #[serde(skip_serializing_if = "<[AlsoFitRow]>::is_empty")]
    also_power_laws: &'a [AlsoFitRow],
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a ReferenceSection>,
    #[serde(skip_serializing_if = "<[RatioRow]>::is_empty")]
    ratios: &'a [RatioRow],
}

/// `report.reference`: each run's metric beside the reference run of the same seed (e.g. a convergence check
/// against the run it checks).
#[derive(Clone, Debug, Serialize)]
pub struct ReferenceSection {
    pub experiment: String,
    pub point: String,
    pub metric: String,
    pub tolerance_pct: f64,
    /// Where the reference runs were looked for (their folder and records files).
    pub looked_in: Vec<String>,
    /// Why no reference run could be read, when none could (e.g. no finished run, a damaged record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub rows: Vec<ReferenceRow>,
}

/// One run against its reference.
#[derive(Clone, Debug, Serialize)]
pub struct ReferenceRow {
    pub point: String,
    pub seed: u64,
    pub value: Option<f64>,
    /// The reference run's value (None: no finished run of that point and seed, or no such value).
    pub reference: Option<f64>,
    /// value − reference, in the metric's own unit.
    pub difference: Option<f64>,
    /// 100 · (value − reference) / reference; None where the reference is ≤ 0, where a percent of it is no
    /// relative change (a model that stored −3,516 bits: +821 bits is not "+23%").
    pub change_pct: Option<f64>,
    /// |change| ≤ tolerance (None without a percent).
    pub within: Option<bool>,
}

/// [`ReferenceSection`] of `runs` against `reference` (the reference experiment's runs, any point).
pub fn reference_section(
    spec: &crate::recipe::ReferenceSpec,
    runs: &[Run],
    reference: &[Run],
    looked_in: Vec<String>,
) -> ReferenceSection {
    let rows = runs
        .iter()
        .map(|r| {
            let value = lookup(&r.eval, &spec.metric);
            let refv = reference
                .iter()
                .find(|q| {
                    q.seed == r.seed
                        && if spec.point.is_empty() {
                            crate::recipe::same_point(&q.point, &r.point)
                        } else {
                            q.point == spec.point
                        }
                })
                .and_then(|q| lookup(&q.eval, &spec.metric));
            let difference = value.zip(refv).map(|(v, q)| v - q);
            let change_pct = match (value, refv) {
                (Some(v), Some(q)) if q > 0.0 => Some(100.0 * (v - q) / q),
                _ => None,
            };
            ReferenceRow {
                point: r.point.clone(),
                seed: r.seed,
                value,
                reference: refv,
                difference,
                change_pct,
                within: change_pct.map(|c| c.abs() <= spec.tolerance_pct),
            }
        })
        .collect();
    ReferenceSection {
        experiment: spec.experiment.clone(),
        point: spec.point.clone(),
        metric: spec.metric.clone(),
        tolerance_pct: spec.tolerance_pct,
        looked_in,
        error: None,
        rows,
    }
}

/// `report.ratios`: one metric's ratio between two points.
#[derive(Clone, Debug, Serialize)]
pub struct RatioRow {
    pub label: String,
    pub metric: String,
    pub numerator: String,
    pub denominator: String,
    pub published: Option<f64>,
    /// Each seed both points have finished: their values and the ratio.
    pub seeds: Vec<RatioSeed>,
    /// The numerator's mean over its seeds over the denominator's mean over its seeds (every finished seed of
    /// each, paired or not); None when a point has no value yet or a mean is not positive.
    pub ratio_of_means: Option<f64>,
    /// Over the paired seeds: the geometric mean of the ratios and its 95% interval (Student's t on the log
    /// ratios, n − 1 degrees of freedom); None with fewer than two paired seeds or a value ≤ 0 (no log).
    pub paired: Option<PairedRatio>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RatioSeed {
    pub seed: u64,
    pub numerator: f64,
    pub denominator: f64,
    /// None unless both values are positive (a ratio of capacities, bits or accuracies; R ≤ 0 stores nothing).
    pub ratio: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PairedRatio {
    pub n: usize,
    pub geometric_mean: f64,
    pub ci95: (f64, f64),
    /// Whether the published ratio lies inside the interval (None: no published ratio).
    pub published_inside: Option<bool>,
}

/// [`RatioRow`]s of `runs` (the runs the report tables, i.e. after `best_of`).
fn ratio_rows(runs: &[Run], specs: &[crate::recipe::RatioSpec]) -> Vec<RatioRow> {
    specs
        .iter()
        .map(|r| {
            let values = |p: &str| -> Vec<(u64, f64)> {
                of_point(runs, p)
                    .filter_map(|q| lookup(&q.eval, &r.metric).map(|v| (q.seed, v)))
                    .collect()
            };
            let (num, den) = (values(&r.numerator), values(&r.denominator));
            let seeds: Vec<RatioSeed> = num
                .iter()
                .filter_map(|&(seed, a)| {
                    den.iter()
                        .find(|(s, _)| *s == seed)
                        .map(|&(_, b)| RatioSeed {
                            seed,
                            numerator: a,
                            denominator: b,
                            ratio: (a > 0.0 && b > 0.0).then(|| a / b),
                        })
                })
                .collect();
            let mean = |v: &[(u64, f64)]| SeedStats::of(&v.iter().map(|x| x.1).collect::<Vec<_>>());
            let ratio_of_means = match (mean(&num), mean(&den)) {
                (Some(a), Some(b)) if a.mean > 0.0 && b.mean > 0.0 => Some(a.mean / b.mean),
                _ => None,
            };
            let logs: Option<Vec<f64>> = seeds.iter().map(|s| s.ratio.map(f64::ln)).collect();
            let paired = logs
                .filter(|l| l.len() >= 2)
                .and_then(|l| SeedStats::of(&l))
                .map(|st| {
                    let half = physlab_eval::stats::t_quantile(0.95, (st.n - 1) as f64) * st.sem();
                    let ci95 = ((st.mean - half).exp(), (st.mean + half).exp());
                    PairedRatio {
                        n: st.n,
                        geometric_mean: st.mean.exp(),
                        ci95,
                        published_inside: r.published.map(|p| ci95.0 <= p && p <= ci95.1),
                    }
                });
            RatioRow {
                label: if r.label.is_empty() {
                    format!("{} / {}", r.numerator, r.denominator)
                } else {
                    r.label.clone()
                },
                metric: r.metric.clone(),
                numerator: r.numerator.clone(),
                denominator: r.denominator.clone(),
                published: r.published,
                seeds,
                ratio_of_means,
                paired,
            }
        })
        .collect()
}

/// `report.best_of`: each point's best value of a swept key (the paper's bioD protocol, the best of 3 learning
/// rates): the value whose runs stored the most bits of knowledge, mean over its seeds; every seed of that value
/// is kept, so the seeds spread around one chosen setting rather than each taking its own maximum.
#[derive(Clone, Debug, Serialize)]
pub struct BestOfSection {
    /// The swept key, e.g. `train.lr`, and its segment in a point's name (`lr`).
    pub key: String,
    pub segment: String,
    pub each: Vec<BestOfChoice>,
}

/// One point: every value of the key that ran, with its mean bits over its seeds, and the one kept.
#[derive(Clone, Debug, Serialize)]
pub struct BestOfChoice {
    /// The point's name without the key.
    pub point: String,
    /// Each value tried (as in the folder name), numbers in increasing order.
    pub tried: Vec<BestOfValue>,
    /// The value kept: the highest mean bits over `compared_on` (a value without bits only when none of the
    /// point's has any).
    pub best: String,
    /// The seeds the choice compared: those every value with bits has run, so that seeds added later at the
    /// chosen value (seeds 1–2 where the protocol picked on seed 0) do not move the choice by their spread; empty
    /// when the values share no seed, and then each value's mean over all its seeds is compared.
    pub compared_on: Vec<u64>,
    /// Whether values on both sides of the kept one were tried (ran, with bits): None when they were; else
    /// "highest tried" or "lowest tried" (the best may lie beyond it: issue 13's ×0.5 / ×2 probe around the rate
    /// used), or "only value tried".
    pub edge: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BestOfValue {
    pub value: String,
    /// Mean bits of knowledge over the seeds that ran (None when no run has bits).
    pub mean_bits: Option<f64>,
    pub seeds: Vec<u64>,
    /// Mean bits over the point's `compared_on` seeds (all its seeds where that is empty): what the choice read.
    pub compared_bits: Option<f64>,
}

/// Keeps, for every point (its name without `key`'s segment), the runs of its best value of `key` (the highest
/// mean bits of knowledge over that value's seeds), renamed to the point's name without the segment. Runs whose
/// name lacks the segment are kept as they are.
fn best_of(runs: &[Run], key: &str) -> (Vec<Run>, BestOfSection) {
    let segment = key.rsplit('.').next().unwrap_or(key).to_string();
    // point without the segment → value → indices of its runs; points in the order first read.
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match crate::recipe::split_point_name(&r.point, key) {
            Some((rest, value)) => {
                if !groups.contains_key(&rest) {
                    order.push(rest.clone());
                }
                groups
                    .entry(rest)
                    .or_default()
                    .entry(value)
                    .or_default()
                    .push(i);
            }
            None => kept.push(r.clone()),
        }
    }
    let mut each = Vec::new();
    for point in order {
        let mut tried: Vec<(BestOfValue, &Vec<usize>)> = groups[&point]
            .iter()
            .map(|(value, members)| {
                let bits: Vec<f64> = members
                    .iter()
                    .filter_map(|&i| knowledge(&runs[i].eval, "bits"))
                    .collect();
                let mean_bits =
                    (!bits.is_empty()).then(|| bits.iter().sum::<f64>() / bits.len() as f64);
                let seeds = members.iter().map(|&i| runs[i].seed).collect();
                (
                    BestOfValue {
                        value: value.clone(),
                        mean_bits,
                        seeds,
                        compared_bits: None,
                    },
                    members,
                )
            })
            .collect();
        // The seeds every value with bits has run; the choice compares the values on those.
        let with_bits = |m: &Vec<usize>| -> BTreeSet<u64> {
            m.iter()
                .filter(|&&i| knowledge(&runs[i].eval, "bits").is_some())
                .map(|&i| runs[i].seed)
                .collect()
        };
        let mut sets = tried
            .iter()
            .filter(|(v, _)| v.mean_bits.is_some())
            .map(|(_, m)| with_bits(m));
        let common: BTreeSet<u64> = match sets.next() {
            Some(first) => sets.fold(first, |a, b| a.intersection(&b).copied().collect()),
            None => BTreeSet::new(),
        };
        for (v, members) in tried.iter_mut() {
            let bits: Vec<f64> = members
                .iter()
                .filter(|&&i| common.is_empty() || common.contains(&runs[i].seed))
                .filter_map(|&i| knowledge(&runs[i].eval, "bits"))
                .collect();
            v.compared_bits =
                (!bits.is_empty()).then(|| bits.iter().sum::<f64>() / bits.len() as f64);
        }
        // Numbers by value, anything else in natural order.
        tried.sort_by(
            |a, b| match (a.0.value.parse::<f64>(), b.0.value.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => natural_key(&a.0.value).cmp(&natural_key(&b.0.value)),
            },
        );
        let (best, members) = tried
            .iter()
            .max_by(|a, b| {
                a.0.compared_bits
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&b.0.compared_bits.unwrap_or(f64::NEG_INFINITY))
            })
            .expect("a point has at least one value");
        for &i in members.iter() {
            let mut r = runs[i].clone();
            r.point = point.clone();
            kept.push(r);
        }
        let best = best.value.clone();
        let measured: Vec<&str> = tried
            .iter()
            .filter(|(v, _)| v.compared_bits.is_some())
            .map(|(v, _)| v.value.as_str())
            .collect();
        let edge = match measured.iter().position(|v| *v == best) {
            _ if measured.len() < 2 => Some("only value tried".to_string()),
            Some(0) => Some("lowest tried".to_string()),
            Some(i) if i + 1 == measured.len() => Some("highest tried".to_string()),
            _ => None,
        };
        each.push(BestOfChoice {
            point,
            tried: tried.into_iter().map(|(v, _)| v).collect(),
            best,
            compared_on: common.into_iter().collect(),
            edge,
        });
    }
    // The table's point order: natural order of the names, seeds ascending.
    kept.sort_by(|a, b| {
        natural_key(&a.point)
            .cmp(&natural_key(&b.point))
            .then(a.seed.cmp(&b.seed))
    });
    (
        kept,
        BestOfSection {
            key: key.to_string(),
            segment,
            each,
        },
    )
}

/// `fit = "plateau"`: Morris et al.'s memorization capacity, the plateau of memorized bits per parameter over
/// the runs whose training set holds at least `threshold` bits of entropy per parameter.
#[derive(Clone, Debug, Serialize)]
pub struct PlateauSection {
    /// Bits of training-set entropy per parameter from which a run is on the plateau (None: every run).
    pub threshold: Option<f64>,
    /// Runs with memorized bits, and those on the plateau.
    pub runs: usize,
    pub on_plateau: usize,
    /// Memorized bits per parameter (all parameters) over the runs on the plateau, with the 95% t-interval of
    /// their mean (None for fewer than two).
    pub bits_per_param: Option<SeedStats>,
    pub ci95: Option<(f64, f64)>,
    /// The saturation criterion (`plateau_max_loss_drop_pct`): the most the training loss may still fall over
    /// the last 10% of a run on the plateau, in percent.
    pub saturation_max_loss_drop_pct: Option<f64>,
    /// Runs on the plateau that meet the criterion (None without one). Only when all of them do is the plateau
    /// a capacity; otherwise it is a lower bound.
    pub saturated: Option<usize>,
    /// Every run with memorized bits, in point and seed order.
    pub each: Vec<PlateauRun>,
    /// The sizes on the plateau in the order of their training-set entropy: whether the plateau is level.
    pub sizes: Vec<PlateauSize>,
    /// Memorized bits against the training set's entropy (bits), per point (mean ± std over seeds).
    #[serde(skip)]
    pub series: Vec<Series>,
}

/// One point on the plateau: its entropy per parameter and its memorized bits per parameter, mean over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct PlateauSize {
    pub point: String,
    pub entropy_per_param: f64,
    pub memorized_bits_per_param: f64,
    pub seeds: usize,
}

pub(crate) fn fmt(v: f64, digits: usize) -> String {
    if v.abs() >= 1e4 && digits == 0 {
        // thousands separators for bits
        let s = format!("{v:.0}");
        let (sign, d) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, ch) in d.chars().enumerate() {
            if i > 0 && (d.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else {
        format!("{v:.digits$}")
    }
}

/// Decimals for a headline number: none for counts of bits, more for ratios and accuracies.
pub(crate) fn auto_digits(v: f64) -> usize {
    match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 1.0 => 3,
        _ => 4,
    }
}

/// A p-value with three significant digits.
fn fmt_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.2e}")
    }
}

pub(crate) fn stats_cell(s: &SeedStats, digits: usize) -> String {
    if s.n == 1 {
        format!("{} (n = 1)", fmt(s.mean, digits))
    } else {
        format!(
            "{} ± {} (n = {})",
            fmt(s.mean, digits),
            fmt(s.std, digits),
            s.n
        )
    }
}

/// A headline row: a metric at a point against its published figure.
enum HeadlineRow {
    /// The metric names a point that has no finished run yet.
    Pending {
        metric: String,
        point: String,
        published: Option<f64>,
    },
    Measured(Headline),
}

/// The capacity section: which runs the fit takes, the fit when sizes differ, the bits-against-parameters series.
pub struct CapacitySection {
    /// " with R^max ≥ m (…)" or empty: which runs entered the fit.
    which: String,
    pub fit: Option<ProportionalFit>,
    /// Whether the experiment asked for the capacity law (`fit = "capacity"`).
    asked: bool,
    /// One series per point (mean ± std over seeds); empty when no run measured bits.
    pub series: Vec<Series>,
    /// Each point's perfect-recall bits (all the data's bits; R^max × parameters), at its parameter count: the
    /// ceiling its bits can reach, drawn beside them.
    pub ceiling: Vec<(f64, f64)>,
}

/// The power-law section of corpus runs (`fit = "data"` / `"params"`).
pub struct ExcessSection {
    /// Runs left out because their excess loss was ≤ 0.
    pub excluded: usize,
    /// "training tokens D" or "parameters N".
    what: &'static str,
    /// The eval.json paths of x and of the excess loss fitted.
    paths: (String, String),
    pub fit: Option<physlab_eval::fit::PowerLawFit>,
    expected: Option<f64>,
    /// The runs, the fitted line and the theory's line.
    series: Vec<Series>,
    /// `report.also_fit`: other metrics against the same x.
    pub also: Vec<AlsoFitRow>,
}

/// `report.also_fit`: one metric as a power law y ∝ x^b of the excess fit's x.
#[derive(Clone, Debug, Serialize)]
pub struct AlsoFitRow {
    pub label: String,
    pub path: String,
    /// Runs with both x and y positive: the fit's points.
    pub runs: usize,
    /// b of y ∝ x^b with its standard error and 95% interval; None with fewer than 3 such runs.
    pub slope: Option<physlab_eval::fit::Estimate>,
    pub r2: Option<f64>,
    pub expected_slope: Option<f64>,
}

/// Fits each `report.also_fit` metric against `xpath` over the runs that have both, positive.
fn also_fits(runs: &[Run], xpath: &str, specs: &[crate::recipe::AlsoFitSpec]) -> Vec<AlsoFitRow> {
    specs
        .iter()
        .map(|a| {
            let (x, y): (Vec<f64>, Vec<f64>) = runs
                .iter()
                .filter_map(|r| Some((lookup(&r.eval, xpath)?, lookup(&r.eval, &a.path)?)))
                .filter(|(x, y)| *x > 0.0 && *y > 0.0)
                .unzip();
            let fit = physlab_eval::fit::power_law(&x, &y);
            AlsoFitRow {
                label: if a.label.is_empty() {
                    a.path.clone()
                } else {
                    a.label.clone()
                },
                path: a.path.clone(),
                runs: x.len(),
                // power_law gives the decay exponent a of y ∝ x^−a; b = −a.
                slope: fit.as_ref().map(|f| physlab_eval::fit::Estimate {
                    value: -f.exponent.value,
                    std_error: f.exponent.std_error,
                    ci95: (-f.exponent.ci95.1, -f.exponent.ci95.0),
                }),
                r2: fit.as_ref().map(|f| f.r2),
                expected_slope: a.expected_slope,
            }
        })
        .collect()
}

/// One accuracy curve (`train.eval_every`): a stream of one point, the mean over its seeds.
pub struct AccuracyCurve {
    pub point: String,
    pub stream: String,
    pub seeds: usize,
    /// (step, mean exact-match accuracy).
    pub points: Vec<(f64, f64)>,
}

/// Everything a report says, computed from the runs with no I/O: [`render_md`], [`render_csv`] and
/// [`render_json`] turn it into text, [`write`] puts that and the plots on disk.
pub struct Computed {
    experiment: String,
    description: String,
    row: String,
    claim: String,
    /// The folder the runs were read from (shown in report.md).
    dir: PathBuf,
    /// The finished runs' point names in order, and their seeds.
    pub points: Vec<(String, Vec<u64>)>,
    /// The metric columns: label and decimals.
    columns: Vec<(String, usize)>,
    /// point → column label → statistics over seeds.
    pub table: BTreeMap<String, BTreeMap<String, SeedStats>>,
    headline: Vec<HeadlineRow>,
    pub capacity: CapacitySection,
    pub memorization_law: Option<ProportionalFit>,
    pub plateau: Option<PlateauSection>,
    pub excess: Option<ExcessSection>,
    /// `report.best_of`: which run each point and seed kept.
    pub best_of: Option<BestOfSection>,
    /// Training loss per point, mean over seeds.
    loss: Vec<Series>,
    /// Accuracy curves per point and stream.
    pub accuracy: Vec<AccuracyCurve>,
    /// Held-out excess curves per point ("held_out" and "validation"), mean over seeds.
    pub excess_curves: Vec<AccuracyCurve>,
    /// A mixture of experts' routing while training per point ("dropped", "gate"), mean over seeds.
    pub routing: Vec<AccuracyCurve>,
    /// summary.csv: (point, seed, one value per column).
    rows: Vec<(String, u64, Vec<Option<f64>>)>,
    /// The records files read beside the folder, each with the number of its runs used (see [`RECORDS_FILE`]).
    pub from_records: RecordsUsed,
    /// `report.reference`: set by [`report`], which reads the reference runs.
    pub reference: Option<ReferenceSection>,
    /// `report.ratios`.
    pub ratios: Vec<RatioRow>,
}

impl Computed {
    /// The headline rows measured (not those still waiting for a run).
    pub fn headline(&self) -> Vec<&Headline> {
        self.headline
            .iter()
            .filter_map(|h| match h {
                HeadlineRow::Measured(m) => Some(m),
                HeadlineRow::Pending { .. } => None,
            })
            .collect()
    }
}

/// Load: every finished run of `runs_dir/<experiment>/`.
pub fn load(runs_dir: &Path, experiment: &str) -> Result<Vec<Run>> {
    collect_runs(&runs_dir.join(experiment))
}

/// The file `physlab report` writes beside report.json: every run it read, one JSON line each (its eval.json,
/// loss curve, accuracy and excess curves), so that a later report on a machine where the run folders are gone
/// (a fresh machine, a cleaned disk) can include them: `physlab report --records results/<experiment>/runs.jsonl`.
/// Checkpoints and data are not in it.
pub const RECORDS_FILE: &str = "runs.jsonl";

/// Per records file read, how many of its runs a report used.
pub type RecordsUsed = Vec<(PathBuf, usize)>;

/// One line of [`RECORDS_FILE`].
#[derive(Serialize, Deserialize)]
struct Record {
    experiment: String,
    #[serde(flatten)]
    run: Run,
}

/// The runs of `experiment` in a records file; an error names the file and line of a line that is not a record
/// of this experiment, or a run recorded twice.
pub fn read_records(path: &Path, experiment: &str) -> Result<Vec<Run>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the run records {}", path.display()))?;
    let mut runs: Vec<Run> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a run record (a line of a report's {RECORDS_FILE})",
                path.display(),
                i + 1
            )
        })?;
        if rec.experiment != experiment {
            bail!(
                "{}:{}: a run of experiment {:?}, not of {experiment:?}",
                path.display(),
                i + 1,
                rec.experiment
            );
        }
        if runs
            .iter()
            .any(|r| r.point == rec.run.point && r.seed == rec.run.seed)
        {
            bail!(
                "{}:{}: point {} seed {} is recorded twice",
                path.display(),
                i + 1,
                rec.run.point,
                rec.run.seed
            );
        }
        let mut run = rec.run;
        derive_stored_fraction(&mut run.eval);
        runs.push(run);
    }
    Ok(runs)
}

/// Which point and seed each records file holds, for the commands that skip or show a run measured already
/// (`physlab run`, `plan`, `worker`): the first file that records a run is the one named.
pub struct Recorded(Vec<(String, u64, PathBuf)>);

impl Recorded {
    /// Reads every file; an error names the file and line (see [`read_records`]).
    pub fn read(paths: &[PathBuf], experiment: &str) -> Result<Self> {
        let mut all = Vec::new();
        for path in paths {
            for r in read_records(path, experiment)? {
                all.push((r.point, r.seed, path.clone()));
            }
        }
        Ok(Recorded(all))
    }

    /// The file recording `point` at `seed`, if one does.
    pub fn file_of(&self, point: &str, seed: u64) -> Option<&Path> {
        self.0
            .iter()
            .find(|(name, s, _)| name == point && *s == seed)
            .map(|(_, _, path)| path.as_path())
    }
}

/// [`RECORDS_FILE`]'s text for `runs`.
pub fn render_records(experiment: &str, runs: &[Run]) -> Result<String> {
    let mut out = String::new();
    for r in runs {
        let line = serde_json::to_string(&Record {
            experiment: experiment.to_string(),
            run: r.clone(),
        })?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Rebuilds the runs of an earlier report from its summary.csv, for a report whose run folders (and run records)
/// are gone: every value the file holds goes back to its place in eval.json (the report's own columns, the recipe's
/// metrics), the parameter counts come back as bits / R (knowledge) and memorized bits / bits per parameter
/// (corpus), rounded to the integer they were, and the figures computed from curves (the loss drop over the last
/// tenth) or over a section (the mean whole-value accuracy) are kept in `recorded`. Curves are not in a summary,
/// so their plots lose these runs. Each eval is marked `reconstructed_from` with `source`. An error names the
/// column or line the report could not have written.
pub fn records_from_summary(
    experiment: &str,
    csv_text: &str,
    source: &str,
    spec: &ReportSpec,
) -> Result<Vec<Run>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{source}: no header line"))?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < 2 || header[0] != "point" || header[1] != "seed" {
        bail!("{source}: not a report's summary.csv (its first columns are not point, seed)");
    }
    // Where each column goes: a path in eval.json, or `recorded` for a column computed from what a summary lacks.
    let fixed = columns(&[], spec);
    let place = |label: &str| -> Option<Option<String>> {
        if let Some(c) = fixed.iter().find(|c| c.label == label) {
            return Some(c.path.clone());
        }
        if let Some(stream) = label.strip_prefix("QA exact match, ") {
            return Some(Some(format!("qa.{stream}.accuracy")));
        }
        if let Some(q) = label.strip_prefix("bits, ") {
            return Some(Some(format!("quantized.{q}.bits")));
        }
        if let Some(q) = label.strip_prefix("R, ") {
            return Some(Some(format!("quantized.{q}.capacity_ratio")));
        }
        None
    };
    let places: Vec<Option<String>> = header[2..]
        .iter()
        .map(|label| {
            place(label).ok_or_else(|| {
                anyhow::anyhow!(
                    "{source}: column {label:?} is not one `physlab report` writes for {experiment} (its recipe's \
                     metrics included)"
                )
            })
        })
        .collect::<Result<_>>()?;
    let mut runs: Vec<Run> = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.with_context(|| format!("{source}:{line}: not a CSV line"))?;
        let point = row.get(0).unwrap_or_default().to_string();
        let seed: u64 = row
            .get(1)
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{source}:{line}: the seed is not a whole number"))?;
        let mut eval = serde_json::json!({
            "experiment": experiment,
            "point": point,
            "seed": seed,
            "reconstructed_from": source,
        });
        let mut recorded = BTreeMap::new();
        for (k, cell) in row.iter().skip(2).enumerate() {
            if cell.is_empty() {
                continue;
            }
            let v: f64 = cell.parse().with_context(|| {
                format!(
                    "{source}:{line}: {:?} is not a number ({:?})",
                    cell,
                    header[k + 2]
                )
            })?;
            match &places[k] {
                Some(path) => set_path(&mut eval, path, v),
                None => {
                    recorded.insert(header[k + 2].clone(), v);
                }
            }
        }
        // The parameter counts the fits read: the summary's own column, or (older summaries) from the ratios.
        if let Some(p) = recorded.remove(PARAMS) {
            if let Some(section) = ["bios", "biod", "corpus"]
                .into_iter()
                .find(|s| eval.get(*s).is_some())
            {
                set_path(&mut eval, &format!("{section}.params.total"), p);
            }
        }
        for (section, bits, ratio) in [
            ("bios", "bits", "capacity_ratio"),
            ("biod", "bits", "capacity_ratio"),
            ("corpus", "memorized_bits", "bits_per_param"),
        ] {
            let b = lookup(&eval, &format!("{section}.{bits}"));
            let r = lookup(&eval, &format!("{section}.{ratio}"));
            let known = lookup(&eval, &format!("{section}.params.total")).is_some();
            if let (Some(b), Some(r), false) = (b, r, known) {
                if r != 0.0 {
                    set_path(
                        &mut eval,
                        &format!("{section}.params.total"),
                        (b / r).round(),
                    );
                }
            }
        }
        if runs.iter().any(|r| r.point == point && r.seed == seed) {
            bail!("{source}:{line}: point {point} seed {seed} appears twice");
        }
        runs.push(Run {
            point,
            seed,
            eval,
            curve: Vec::new(),
            accuracy: BTreeMap::new(),
            excess_curve: BTreeMap::new(),
            routing: BTreeMap::new(),
            recorded,
        });
    }
    if runs.is_empty() {
        bail!("{source}: no run in it");
    }
    Ok(runs)
}

/// Sets `path` (dotted) in `v` to `x`, making the objects on the way; `qa.<stream>.<field>` goes into the element
/// of the `qa` array whose `stream` is `<stream>`, as eval.json holds it.
fn set_path(v: &mut Value, path: &str, x: f64) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = v;
    let mut i = 0;
    while i + 1 < segs.len() {
        let seg = segs[i];
        if seg == "qa" && i + 2 < segs.len() {
            let arr = cur
                .as_object_mut()
                .map(|m| m.entry("qa").or_insert_with(|| Value::Array(Vec::new())));
            let Some(Value::Array(arr)) = arr else {
                return;
            };
            let stream = segs[i + 1];
            let at = match arr
                .iter()
                .position(|e| e.get("stream").and_then(Value::as_str) == Some(stream))
            {
                Some(at) => at,
                None => {
                    arr.push(serde_json::json!({ "stream": stream }));
                    arr.len() - 1
                }
            };
            cur = &mut arr[at];
            i += 2;
            continue;
        }
        let Some(m) = cur.as_object_mut() else {
            return;
        };
        cur = m
            .entry(seg)
            .or_insert_with(|| Value::Object(Default::default()));
        i += 1;
    }
    if let (Some(m), Some(last)) = (cur.as_object_mut(), segs.last()) {
        m.insert((*last).to_string(), serde_json::json!(x));
    }
}

/// The runs of the folder (when it exists) and of the records files: a point and seed finished in the folder is
/// read from there, a record of it ignored; a record of one point and seed in two files is an error. Returns the
/// runs in report order and, per records file, how many of its runs were used.
pub fn load_with_records(
    runs_dir: &Path,
    experiment: &str,
    records: &[PathBuf],
) -> Result<(Vec<Run>, RecordsUsed)> {
    let dir = runs_dir.join(experiment);
    let mut runs = if records.is_empty() || dir.is_dir() {
        match collect_runs(&dir) {
            Ok(r) => r,
            // With records, a folder without a finished run is no error: the records may hold them all.
            Err(_) if !records.is_empty() && !has_finished_run(&dir) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    let in_folder: Vec<(String, u64)> = runs.iter().map(|r| (r.point.clone(), r.seed)).collect();
    let mut from: Vec<(PathBuf, usize)> = Vec::new();
    let mut seen: BTreeMap<(String, u64), PathBuf> = BTreeMap::new();
    for path in records {
        let mut used = 0;
        for r in read_records(path, experiment)? {
            let key = (r.point.clone(), r.seed);
            if let Some(other) = seen.get(&key) {
                bail!(
                    "point {} seed {} is recorded in both {} and {}: keep it in one",
                    key.0,
                    key.1,
                    other.display(),
                    path.display()
                );
            }
            seen.insert(key.clone(), path.clone());
            if !in_folder.contains(&key) {
                runs.push(r);
                used += 1;
            }
        }
        from.push((path.clone(), used));
    }
    if runs.is_empty() {
        bail!(
            "{}: no finished run, and no record of one in {}",
            dir.display(),
            records
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    runs.sort_by(|a, b| {
        natural_key(&a.point)
            .cmp(&natural_key(&b.point))
            .then(a.seed.cmp(&b.seed))
    });
    Ok((runs, from))
}

/// Whether any `<point>/s<seed>/DONE` exists under `dir`.
fn has_finished_run(dir: &Path) -> bool {
    let Ok(points) = std::fs::read_dir(dir) else {
        return false;
    };
    points.filter_map(|e| e.ok()).any(|p| {
        std::fs::read_dir(p.path()).is_ok_and(|seeds| {
            seeds
                .filter_map(|e| e.ok())
                .any(|s| s.path().join("DONE").exists())
        })
    })
}

/// One run of a memorization sweep, against the plateau's threshold and the saturation criterion.
#[derive(Clone, Debug, Serialize)]
pub struct PlateauRun {
    pub point: String,
    pub seed: u64,
    /// Bits of training-set entropy per parameter.
    pub entropy_per_param: f64,
    pub memorized_bits_per_param: f64,
    /// Whether the run counts toward the plateau (past the threshold).
    pub on_plateau: bool,
    /// How much the training loss still fell over the last 10% of the steps (%), when the run logged enough.
    pub loss_drop_last_tenth_pct: Option<f64>,
    /// Against the criterion (None without one or without a curve to read).
    pub saturated: Option<bool>,
}

/// The memorization plateau over `runs` (see [`PlateauSection`]).
fn plateau_section(runs: &[Run], names: &[String], spec: &ReportSpec) -> PlateauSection {
    // (training-set entropy in bits, memorized bits, parameters) of a run.
    let of = |r: &Run| -> Option<(f64, f64, f64)> {
        let h = lookup(&r.eval, "corpus.entropy_bits_per_token")?;
        let tokens = lookup(&r.eval, "corpus.tokens")?;
        Some((
            h * tokens,
            lookup(&r.eval, "corpus.memorized_bits")?,
            lookup(&r.eval, "corpus.params.total")?,
        ))
    };
    let all: Vec<(f64, f64, f64)> = runs.iter().filter_map(of).collect();
    let on: Vec<f64> = all
        .iter()
        .filter(|(x, _, p)| {
            spec.plateau_min_entropy_per_param
                .is_none_or(|t| x / p >= t)
        })
        .map(|(_, m, p)| m / p)
        .collect();
    let max_drop = spec.plateau_max_loss_drop_pct;
    let each: Vec<PlateauRun> = runs
        .iter()
        .filter_map(|r| {
            let (x, m, p) = of(r)?;
            let drop = loss_drop(r);
            Some(PlateauRun {
                point: r.point.clone(),
                seed: r.seed,
                entropy_per_param: x / p,
                memorized_bits_per_param: m / p,
                on_plateau: spec
                    .plateau_min_entropy_per_param
                    .is_none_or(|t| x / p >= t),
                loss_drop_last_tenth_pct: drop,
                saturated: max_drop.zip(drop).map(|(t, d)| d < t),
            })
        })
        .collect();
    let saturated = max_drop.map(|_| {
        each.iter()
            .filter(|r| r.on_plateau && r.saturated == Some(true))
            .count()
    });
    let stats = SeedStats::of(&on);
    let ci95 = stats.as_ref().filter(|s| s.n >= 2).map(|s| {
        let half =
            physlab_eval::stats::t_quantile(0.95, (s.n - 1) as f64) * s.std / (s.n as f64).sqrt();
        (s.mean - half, s.mean + half)
    });
    let mut series = Vec::new();
    for p in names {
        let pts: Vec<(f64, f64, f64)> = of_point(runs, p).filter_map(of).collect();
        let mem: Vec<f64> = pts.iter().map(|t| t.1).collect();
        if let (Some(first), Some(s)) = (pts.first(), SeedStats::of(&mem)) {
            series.push(Series {
                name: format!("{p} (mean ± std, n = {})", s.n),
                points: vec![(first.0, s.mean)],
                error: Some(vec![s.std]),
                style: Style::Points,
                color: None,
            });
        }
    }
    // The plateau drawn as a level across the runs on it, where they share one model (k · P bits).
    let on_runs: Vec<&(f64, f64, f64)> = all
        .iter()
        .filter(|(x, _, p)| {
            spec.plateau_min_entropy_per_param
                .is_none_or(|t| x / p >= t)
        })
        .collect();
    let one_model = on_runs.windows(2).all(|w| w[0].2 == w[1].2);
    if let (Some(st), Some(first), true) = (&stats, on_runs.first(), one_model) {
        let lo = on_runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = on_runs
            .iter()
            .map(|r| r.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let level = st.mean * first.2;
        let interval = ci95.map_or(String::new(), |(a, b)| format!("95% CI {a:.2}–{b:.2}; "));
        series.push(Series {
            name: format!(
                "plateau: {:.2} bits/param ({interval}{} runs)",
                st.mean, st.n
            ),
            points: vec![(lo / 1.15, level), (hi * 1.15, level)],
            error: None,
            style: Style::Line,
            color: None,
        });
    }
    // The plateau's sizes, each the mean over its seeds, in the order of their training-set entropy.
    let mut sizes: Vec<PlateauSize> = Vec::new();
    for r in each.iter().filter(|r| r.on_plateau) {
        match sizes.iter_mut().find(|s| s.point == r.point) {
            Some(s) => {
                s.memorized_bits_per_param += r.memorized_bits_per_param;
                s.seeds += 1;
            }
            None => sizes.push(PlateauSize {
                point: r.point.clone(),
                entropy_per_param: r.entropy_per_param,
                memorized_bits_per_param: r.memorized_bits_per_param,
                seeds: 1,
            }),
        }
    }
    for s in &mut sizes {
        s.memorized_bits_per_param /= s.seeds as f64;
    }
    sizes.sort_by(|a, b| a.entropy_per_param.total_cmp(&b.entropy_per_param));
    PlateauSection {
        sizes,
        threshold: spec.plateau_min_entropy_per_param,
        runs: all.len(),
        on_plateau: on.len(),
        bits_per_param: stats,
        ci95,
        saturation_max_loss_drop_pct: max_drop,
        saturated,
        each,
        series,
    }
}

/// Compute: statistics over seeds per point, the headline against the published figures, the fits the spec asks
/// for and the curves, from runs already loaded. Pure: reads and writes nothing. Errors when a headline metric's
/// path matches nothing in any run (a mistake in the recipe, not a row to drop quietly).
pub fn compute(
    experiment: &str,
    dir: &Path,
    runs: &[Run],
    spec: &ReportSpec,
    description: &str,
) -> Result<Computed> {
    if runs.is_empty() {
        bail!("{}: no finished run to report", dir.display());
    }
    // summary.csv lists every run under its own name; with `best_of` everything else sees each point's best.
    let all_runs = runs;
    let chosen;
    let (runs, best) = match &spec.best_of {
        Some(key) => {
            let (kept, section) = best_of(runs, key);
            chosen = kept;
            (&chosen[..], Some(section))
        }
        None => (runs, None),
    };
    let cols = columns(all_runs, spec);
    let mut names: Vec<String> = runs.iter().map(|r| r.point.clone()).collect();
    names.dedup();

    // Statistics per point and column.
    let mut table: BTreeMap<String, BTreeMap<String, SeedStats>> = BTreeMap::new();
    for p in &names {
        for c in &cols {
            let vals: Vec<f64> = of_point(runs, p).filter_map(|r| value(r, c)).collect();
            if let Some(s) = SeedStats::of(&vals) {
                table
                    .entry(p.clone())
                    .or_default()
                    .insert(c.label.clone(), s);
            }
        }
    }

    // Headline metrics against the published figures.
    let mut headline = Vec::new();
    for m in &spec.metrics {
        if !runs.iter().any(|r| lookup(&r.eval, &m.path).is_some()) {
            let keys: Vec<String> = runs[0]
                .eval
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            bail!(
                "report.metrics: path {:?} ({}) matches nothing in the {} finished run(s) of {experiment}; \
                 eval.json's top-level keys: {}",
                m.path,
                label_of(m),
                runs.len(),
                keys.join(", ")
            );
        }
        if !m.point.is_empty() && !names.contains(&m.point) {
            headline.push(HeadlineRow::Pending {
                metric: label_of(m),
                point: m.point.clone(),
                published: m.published,
            });
            continue;
        }
        for p in names
            .iter()
            .filter(|p| m.point.is_empty() || **p == m.point)
        {
            let vals: Vec<f64> = of_point(runs, p)
                .filter_map(|r| lookup(&r.eval, &m.path))
                .collect();
            let Some(s) = SeedStats::of(&vals) else {
                continue;
            };
            let test = m.published.and_then(|pb| s.t_test(pb, m.alternative));
            headline.push(HeadlineRow::Measured(Headline {
                metric: label_of(m),
                path: m.path.clone(),
                point: p.clone(),
                alternative: m.alternative,
                stats: s,
                published: m.published,
                test,
            }));
        }
    }

    // Capacity: bits against parameters, and the capacity-law fit when sizes differ.
    let capacity_point = |r: &Run| -> Option<(f64, f64)> {
        Some((
            knowledge(&r.eval, "params.total")?,
            knowledge(&r.eval, "bits")?,
        ))
    };
    let caps = runs.iter().filter_map(capacity_point).count();
    // The runs the fit uses: those where capacity binds (R^max ≥ `fit_min_rmax`), or every run.
    let binds = |r: &&Run| match spec.fit_min_rmax {
        None => true,
        Some(m) => knowledge(&r.eval, "capacity_ratio_max").is_some_and(|x| x >= m),
    };
    let fitted: Vec<(f64, f64)> = runs
        .iter()
        .filter(binds)
        .filter_map(capacity_point)
        .collect();
    let mut distinct: Vec<f64> = fitted.iter().map(|c| c.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let which = match spec.fit_min_rmax {
        Some(m) => format!(
            " with R^max ≥ {m} (where capacity binds; {} of {caps} runs)",
            fitted.len()
        ),
        None => String::new(),
    };
    // The capacity law is one family at several sizes: fitted only when the experiment asks (`fit = "capacity"`).
    let capacity_law = if spec.fit == Fit::Capacity && distinct.len() >= 2 {
        let (x, y): (Vec<f64>, Vec<f64>) = fitted.iter().copied().unzip();
        proportional(&x, &y)
    } else {
        None
    };
    let mut cap_series = Vec::new();
    let mut ceiling = Vec::new();
    for p in &names {
        let mine: Vec<(f64, f64)> = of_point(runs, p).filter_map(capacity_point).collect();
        if mine.is_empty() {
            continue;
        }
        let bits: Vec<f64> = mine.iter().map(|m| m.1).collect();
        let Some(s) = SeedStats::of(&bits) else {
            continue;
        };
        cap_series.push(Series {
            name: format!("{p} (mean ± std, n = {})", s.n),
            points: vec![(mine[0].0, s.mean)],
            error: Some(vec![s.std]),
            style: Style::Points,
            color: None,
        });
        // Records rebuilt from a summary (`physlab records`) hold R^max and the parameters, not the bits.
        let perfect: Vec<f64> = of_point(runs, p)
            .filter_map(|r| {
                knowledge(&r.eval, "perfect_recall_bits").or_else(|| {
                    Some(
                        knowledge(&r.eval, "capacity_ratio_max")?
                            * knowledge(&r.eval, "params.total")?,
                    )
                })
            })
            .collect();
        if let Some(s) = SeedStats::of(&perfect) {
            ceiling.push((mine[0].0, s.mean));
        }
    }

    // Corpus runs: memorized bits against parameters; excess loss against data or parameters.
    let mem: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            Some((
                lookup(&r.eval, "corpus.params.total")?,
                lookup(&r.eval, "corpus.memorized_bits")?,
            ))
        })
        .collect();
    let mut mem_sizes: Vec<f64> = mem.iter().map(|m| m.0).collect();
    mem_sizes.sort_by(f64::total_cmp);
    mem_sizes.dedup();
    let memorization_law = if mem_sizes.len() >= 2 {
        let (x, y): (Vec<f64>, Vec<f64>) = mem.iter().copied().unzip();
        proportional(&x, &y)
    } else {
        None
    };
    let excess = matches!(spec.fit, Fit::Data | Fit::Params).then(|| excess_section(runs, spec));
    let plateau = (spec.fit == Fit::Plateau).then(|| plateau_section(runs, &names, spec));

    // Loss curves: the mean over seeds of each point.
    let mut loss = Vec::new();
    for p in &names {
        let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in of_point(runs, p) {
            for &(s, l) in &r.curve {
                by_step.entry(s as u64).or_default().push(l);
            }
        }
        if by_step.is_empty() {
            continue;
        }
        let n = of_point(runs, p).count();
        loss.push(Series {
            name: format!("{p} (mean of {n} seed(s))"),
            points: mean_by_step(by_step),
            error: None,
            style: Style::Line,
            color: None,
        });
    }

    // Accuracy curves (train.eval_every): exact match against the step, per point and stream, mean over seeds.
    let curves = |get: &dyn Fn(&Run) -> &NamedCurves| {
        let mut out = Vec::new();
        for p in &names {
            let mine: Vec<&Run> = of_point(runs, p).collect();
            let streams: BTreeSet<&String> = mine.iter().flat_map(|r| get(r).keys()).collect();
            for stream in streams {
                let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                for r in &mine {
                    for &(s, a) in get(r).get(stream).into_iter().flatten() {
                        by_step.entry(s as u64).or_default().push(a);
                    }
                }
                out.push(AccuracyCurve {
                    point: p.clone(),
                    stream: stream.clone(),
                    seeds: mine.len(),
                    points: mean_by_step(by_step),
                });
            }
        }
        out
    };
    let accuracy = curves(&|r: &Run| &r.accuracy);
    let excess_curves = curves(&|r: &Run| &r.excess_curve);
    let routing = curves(&|r: &Run| &r.routing);

    let rows = all_runs
        .iter()
        .map(|r| {
            (
                r.point.clone(),
                r.seed,
                cols.iter().map(|c| value(r, c)).collect(),
            )
        })
        .collect();
    Ok(Computed {
        experiment: experiment.into(),
        description: description.into(),
        row: spec.row.clone(),
        claim: spec.claim.clone(),
        dir: dir.to_path_buf(),
        points: names
            .iter()
            .map(|p| (p.clone(), of_point(runs, p).map(|r| r.seed).collect()))
            .collect(),
        columns: cols.iter().map(|c| (c.label.clone(), c.digits)).collect(),
        table,
        headline,
        capacity: CapacitySection {
            which,
            fit: capacity_law,
            asked: spec.fit == Fit::Capacity,
            series: cap_series,
            ceiling,
        },
        memorization_law,
        plateau,
        excess,
        best_of: best,
        reference: None,
        ratios: ratio_rows(runs, &spec.ratios),
        loss,
        accuracy,
        excess_curves,
        routing,
        rows,
        from_records: Vec::new(),
    })
}

fn of_point<'a>(runs: &'a [Run], p: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter().filter(move |r| r.point == p)
}

fn mean_by_step(by_step: BTreeMap<u64, Vec<f64>>) -> Vec<(f64, f64)> {
    by_step
        .into_iter()
        .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

/// The eval.json paths of an excess-loss fit's x (training tokens or parameters) and y (the excess).
fn excess_fit_paths(spec: &ReportSpec) -> (&str, &str) {
    let x = if spec.fit == Fit::Data {
        "data_tokens"
    } else {
        spec.fit_params
            .as_deref()
            .unwrap_or("corpus.params.capacity")
    };
    let y = spec
        .fit_excess
        .as_deref()
        .unwrap_or("corpus.excess_bits_per_token");
    (x, y)
}

/// The excess loss over the entropy as a power law of the training tokens or the parameters (corpus runs).
fn excess_section(runs: &[Run], spec: &ReportSpec) -> ExcessSection {
    let (xpath, ypath) = excess_fit_paths(spec);
    let what = if spec.fit == Fit::Data {
        "training tokens D"
    } else {
        "parameters N"
    };
    let pts: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| Some((lookup(&r.eval, xpath)?, lookup(&r.eval, ypath)?)))
        .collect();
    let positive: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1 > 0.0).collect();
    let (x, y): (Vec<f64>, Vec<f64>) = positive.iter().copied().unzip();
    let fit = physlab_eval::fit::power_law(&x, &y);
    let mut series = Vec::new();
    if let Some(f) = &fit {
        series.push(Series {
            name: "runs".into(),
            points: positive.clone(),
            error: None,
            style: Style::Points,
            color: None,
        });
        let (lo, hi) = x
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        let line = |a: f64, lc: f64| -> Vec<(f64, f64)> {
            (0..=32)
                .map(|i| {
                    let xv = lo * (hi / lo).powf(i as f64 / 32.0);
                    (xv, (lc - a * xv.ln()).exp())
                })
                .collect()
        };
        series.push(Series {
            name: format!("fit: a = {:.3}", f.exponent.value),
            points: line(f.exponent.value, f.log_coefficient.value),
            error: None,
            style: Style::Line,
            color: None,
        });
        if let Some(e) = spec.expected_exponent {
            // The theory's slope through the fit's centre (geometric means of x and y).
            let mx = x.iter().map(|v| v.ln()).sum::<f64>() / x.len() as f64;
            let my = y.iter().map(|v| v.ln()).sum::<f64>() / y.len() as f64;
            series.push(Series {
                name: format!("theory: a = {e:.3}"),
                points: line(e, my + e * mx),
                error: None,
                style: Style::Line,
                color: None,
            });
        }
    }
    ExcessSection {
        paths: (xpath.to_string(), ypath.to_string()),
        excluded: pts.len() - positive.len(),
        what,
        fit,
        expected: spec.expected_exponent,
        series,
        also: also_fits(runs, xpath, &spec.also_fit),
    }
}

/// The capacity plot's series: each point's bits (mean ± std over seeds), the points' perfect recall (open
/// circles: how far below its data's bits each point stays), and the fitted law bits = R·P across the fitted
/// sizes with its interval in the legend.
fn capacity_series(cap: &CapacitySection) -> Vec<Series> {
    let mut series = cap.series.clone();
    if !cap.ceiling.is_empty() {
        series.push(Series {
            name: "perfect recall: all the data's bits (R^max × parameters)".into(),
            points: cap.ceiling.clone(),
            error: None,
            style: Style::Hollow,
            color: None,
        });
    }
    if let Some(f) = &cap.fit {
        let xs = cap.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let lo = xs.clone().fold(f64::INFINITY, f64::min);
        let hi = xs.fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi.is_finite() {
            let r = f.slope.value;
            let (a, b) = (lo / 1.15, hi * 1.15);
            series.push(Series {
                name: format!(
                    "fit: R = {:.2} bits/param (95% CI {:.2}–{:.2}; {} runs)",
                    r, f.slope.ci95.0, f.slope.ci95.1, f.points
                ),
                points: vec![(a, r * a), (b, r * b)],
                error: None,
                style: Style::Line,
                color: None,
            });
        }
    }
    series
}

/// `report.best_of` drawn: per point, the mean bits of each value tried, joined in the value's order, so the
/// kept value and whether it is bracketed can be seen. Only numeric values; points with fewer than two of them
/// are left out (the table lists them). Returns the series and whether the x axis is logarithmic (positive
/// values spanning a factor of 4 or more, as learning rates tried by doublings do); None when nothing is left.
fn best_of_series(b: &BestOfSection) -> Option<(Vec<Series>, bool)> {
    let series: Vec<Series> = b
        .each
        .iter()
        .filter_map(|e| {
            let points: Vec<(f64, f64)> = e
                .tried
                .iter()
                .filter_map(|v| Some((v.value.parse::<f64>().ok()?, v.mean_bits?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (points.len() >= 2).then(|| Series {
                name: format!("{} (kept {}={})", e.point, b.segment, e.best),
                points,
                error: None,
                style: Style::LinePoints,
                color: None,
            })
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let lo = xs.clone().fold(f64::INFINITY, f64::min);
    let hi = xs.fold(f64::NEG_INFINITY, f64::max);
    Some((series, lo > 0.0 && hi / lo >= 4.0))
}

/// Curves in one colour per point (in order of first appearance), each named and styled by `label`.
fn per_point_series(
    curves: &[AccuracyCurve],
    label: impl Fn(&AccuracyCurve) -> (String, Style),
) -> Vec<Series> {
    let mut points: Vec<&str> = Vec::new();
    curves
        .iter()
        .map(|a| {
            let slot = points
                .iter()
                .position(|p| *p == a.point)
                .unwrap_or_else(|| {
                    points.push(&a.point);
                    points.len() - 1
                });
            let (name, style) = label(a);
            Series {
                name,
                points: a.points.clone(),
                error: None,
                style,
                color: Some(slot),
            }
        })
        .collect()
}

/// The accuracy curves, one colour per point: the held-out streams (P_test: `qa_test`, `*_test`) solid, the
/// trained-on ones dashed, so that a point's over-training (its dashed line climbing away from its solid one)
/// reads at a glance.
fn accuracy_series(curves: &[AccuracyCurve]) -> Vec<Series> {
    per_point_series(curves, |a| {
        let trained = a.stream.ends_with("_train");
        (
            format!("{}: {} (mean of {} seed(s))", a.point, a.stream, a.seeds),
            if trained { Style::Dashed } else { Style::Line },
        )
    })
}

/// The routing curves, one colour per point: the share of tokens over capacity solid, the chosen expert's mean
/// probability (the gate) dashed.
fn routing_series(curves: &[AccuracyCurve]) -> Vec<Series> {
    per_point_series(curves, |a| {
        let (what, style) = if a.stream == "gate" {
            ("gate (chosen expert's probability)", Style::Dashed)
        } else {
            ("tokens over capacity", Style::Line)
        };
        (
            format!("{}: {what} (mean of {} seed(s))", a.point, a.seeds),
            style,
        )
    })
}

/// The plots a report draws, by file name under `plots/`, with the series `compute` made (none when empty).
fn plots(c: &Computed) -> Vec<(&'static str, Plot)> {
    let experiment = &c.experiment;
    let mut out = Vec::new();
    if !c.capacity.series.is_empty() {
        out.push((
            "capacity.svg",
            Plot {
                title: format!("{experiment}: bits of knowledge vs parameters"),
                x_label: "parameters (all, the paper's count)".into(),
                y_label: "bits of knowledge".into(),
                log_x: true,
                log_y: true,
                series: capacity_series(&c.capacity),
                guides: vec![("2 bits/param".into(), 2.0), ("1 bit/param".into(), 1.0)],
                // Bits rise with parameters below the 2-bit line: the lower right is empty.
                legend: Legend::LowerRight,
                legend_room: false,
            },
        ));
    }
    if let Some((series, log_x)) = c.best_of.as_ref().and_then(best_of_series) {
        let b = c.best_of.as_ref().expect("read above");
        out.push((
            "best-of.svg",
            Plot {
                title: format!("{experiment}: bits of knowledge vs {}", b.segment),
                x_label: format!("{} ({})", b.segment, b.key),
                y_label: "bits of knowledge (mean over seeds)".into(),
                log_x,
                log_y: false,
                series,
                guides: Vec::new(),
                legend: Legend::UpperLeft,
                legend_room: true,
            },
        ));
    }
    if let Some(pl) = c.plateau.as_ref().filter(|p| !p.series.is_empty()) {
        out.push((
            "plateau.svg",
            Plot {
                title: format!("{experiment}: memorized bits vs the training set's entropy"),
                x_label: "training-set entropy (bits)".into(),
                y_label: "memorized bits (Morris)".into(),
                log_x: true,
                log_y: true,
                series: pl.series.clone(),
                guides: vec![("all of it".into(), 1.0)],
                ..Default::default()
            },
        ));
    }
    if let Some(e) = c.excess.as_ref().filter(|e| e.fit.is_some()) {
        out.push((
            "excess.svg",
            Plot {
                title: format!("{experiment}: excess loss over the entropy"),
                x_label: e.what.into(),
                // Facts experiments fit a loss per fact (`…_per_fact`), the others per token.
                y_label: if e.paths.1.ends_with("_per_fact") {
                    "excess loss (bits/fact)".into()
                } else {
                    "excess loss (bits/token)".into()
                },
                log_x: true,
                log_y: true,
                series: e.series.clone(),
                guides: Vec::new(),
                ..Default::default()
            },
        ));
    }
    if !c.loss.is_empty() {
        out.push((
            "loss.svg",
            Plot {
                title: format!("{experiment}: training loss"),
                x_label: "step".into(),
                y_label: "loss (nats/token)".into(),
                log_x: false,
                log_y: true,
                series: c.loss.clone(),
                guides: Vec::new(),
                ..Default::default()
            },
        ));
    }
    if !c.accuracy.is_empty() {
        out.push((
            "accuracy.svg",
            Plot {
                title: format!("{experiment}: exact-match accuracy while training"),
                x_label: "step".into(),
                y_label: "accuracy".into(),
                log_x: false,
                log_y: false,
                series: accuracy_series(&c.accuracy),
                guides: Vec::new(),
                ..Default::default()
            },
        ));
    }
    if !c.routing.is_empty() {
        out.push((
            "routing.svg",
            Plot {
                title: format!("{experiment}: mixture-of-experts routing while training"),
                x_label: "step".into(),
                y_label: "share".into(),
                log_x: false,
                log_y: false,
                series: routing_series(&c.routing),
                guides: Vec::new(),
                // Falling drops and a rising gate cross the whole width: the legend goes above them.
                legend: Legend::UpperLeft,
                legend_room: true,
            },
        ));
    }
    // Held-out excess while training (early stopping): the test curve of each point, log scale.
    let held_out: Vec<Series> = c
        .excess_curves
        .iter()
        .filter(|a| a.stream == "held_out")
        .map(|a| Series {
            name: format!("{} (mean of {} seed(s))", a.point, a.seeds),
            // Steps from 1 and positive values only: the axes are logarithmic.
            points: a
                .points
                .iter()
                .copied()
                .filter(|&(s, v)| s > 0.0 && v > 0.0)
                .collect(),
            error: None,
            style: Style::Line,
            color: None,
        })
        .collect();
    if !held_out.is_empty() {
        out.push((
            "excess-curve.svg",
            Plot {
                title: format!("{experiment}: held-out excess while training"),
                x_label: "step".into(),
                y_label: "held-out excess (bits/token)".into(),
                log_x: true,
                log_y: true,
                series: held_out,
                guides: Vec::new(),
                ..Default::default()
            },
        ));
    }
    out
}

/// Render: report.md's text.
pub fn render_md(c: &Computed) -> Result<String> {
    let experiment = &c.experiment;
    let mut md = String::new();
    writeln!(md, "# Report: {experiment}\n")?;
    if !c.description.is_empty() {
        writeln!(md, "{}\n", c.description)?;
    }
    if !c.row.is_empty() || !c.claim.is_empty() {
        writeln!(md, "SPEC §5 row {}: **published:** {}\n", c.row, c.claim)?;
    }
    let recorded: usize = c.from_records.iter().map(|(_, n)| n).sum();
    let records = if c.from_records.is_empty() {
        String::new()
    } else if recorded == 0 {
        format!(
            " (the run records {} add none: every run they hold is here)",
            c.from_records
                .iter()
                .map(|(p, _)| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            " ({} of them from the run records {}, their folders not here)",
            recorded,
            c.from_records
                .iter()
                .map(|(p, n)| format!("`{}`: {n}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    writeln!(
        md,
        "{} finished run(s) in `{}`{records}; points: {}.\n",
        c.rows.len(),
        c.dir.display(),
        c.points
            .iter()
            .map(|(p, seeds)| format!(
                "`{p}` (seeds {})",
                seeds
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    if !c.headline.is_empty() {
        writeln!(md, "## Headline\n")?;
        writeln!(
            md,
            "| metric | point | ours: mean ± std (n) | published | one-sided t-test |"
        )?;
        writeln!(md, "|---|---|---|---|---|")?;
        let published = |p: Option<f64>| p.map_or("-".into(), |v| format!("{v}"));
        for h in &c.headline {
            match h {
                HeadlineRow::Pending {
                    metric,
                    point,
                    published: pb,
                } => writeln!(
                    md,
                    "| {metric} | `{point}` | no finished run yet | {} | - |",
                    published(*pb)
                )?,
                HeadlineRow::Measured(h) => {
                    let test_cell = match (&h.test, h.published) {
                        (Some(t), _) => format!(
                            "H1: mean {} published; t = {:.2}, df = {}, p = {}",
                            match h.alternative {
                                physlab_eval::stats::Alternative::Less => "<",
                                physlab_eval::stats::Alternative::Greater => ">",
                            },
                            t.t,
                            t.df,
                            fmt_p(t.p_value)
                        ),
                        (None, Some(_)) => "not defined (n < 2 or no spread)".into(),
                        (None, None) => "-".into(),
                    };
                    writeln!(
                        md,
                        "| {} | `{}` | {} | {} | {test_cell} |",
                        h.metric,
                        h.point,
                        stats_cell(&h.stats, auto_digits(h.stats.mean)),
                        published(h.published),
                    )?;
                }
            }
        }
        writeln!(md)?;
    }

    if let Some(r) = &c.reference {
        writeln!(
            md,
            "## Against the reference run
"
        )?;
        let which = if r.point.is_empty() {
            "the same point".to_string()
        } else {
            format!("point `{}`", r.point)
        };
        writeln!(
            md,
            "`{}` of each run beside that of `{}` {which} at the same seed; within ±{}% of it counts as met \
             (fixed in the recipe; outside it, the last column says on which side). Reference runs looked for in {}.\n",
            r.metric,
            r.experiment,
            r.tolerance_pct,
            r.looked_in
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        )?;
        if let Some(e) = &r.error {
            writeln!(md, "No reference run could be read: {e}\n")?;
        }
        writeln!(
            md,
            "| point | seed | this run | reference | change | within ±{}% |",
            r.tolerance_pct
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| fmt(v, auto_digits(v)));
        for row in &r.rows {
            writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} |",
                row.point,
                row.seed,
                num(row.value),
                row.reference
                    .map_or("no finished reference run".to_string(), |v| num(Some(v))),
                match (row.change_pct, row.difference) {
                    (Some(c), _) => format!("{c:+.2}%"),
                    // A reference at or below zero: the difference itself (a percent of it means nothing).
                    (None, Some(d)) => format!(
                        "{} (the reference is ≤ 0: no percent)",
                        if d >= 0.0 {
                            format!("+{}", num(Some(d)))
                        } else {
                            num(Some(d))
                        }
                    ),
                    (None, None) => "-".into(),
                },
                // Outside the line, which side: a convergence check that stored more and a rate that stored
                // less are different findings.
                match (row.within, row.change_pct) {
                    (Some(true), _) => "**met**",
                    (Some(false), Some(c)) if c > 0.0 => "**not met: more**",
                    (Some(false), _) => "**not met: less**",
                    (None, _) => "-",
                }
            )?;
        }
        writeln!(md)?;
    }

    if !c.ratios.is_empty() {
        writeln!(md, "## Ratios between points\n")?;
        writeln!(
            md,
            "Each ratio seed by seed (the seeds both points have finished), the ratio of the two points' means over \
             all their seeds, and over the paired seeds the geometric mean with its 95% interval (Student's t on the \
             log ratios).\n"
        )?;
        writeln!(
            md,
            "| ratio | metric | per seed | ratio of means | paired: geometric mean (95% CI) | published |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        let r3 = |v: f64| format!("{v:.3}");
        for r in &c.ratios {
            let per_seed = if r.seeds.is_empty() {
                "no seed finished at both points yet".to_string()
            } else {
                r.seeds
                    .iter()
                    .map(|s| {
                        format!(
                            "s{}: {} / {} = {}",
                            s.seed,
                            fmt(s.numerator, auto_digits(s.numerator)),
                            fmt(s.denominator, auto_digits(s.denominator)),
                            s.ratio.map_or("- (a value ≤ 0)".into(), r3)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let paired = match &r.paired {
                Some(p) => format!(
                    "{} ({}–{}; n = {})",
                    r3(p.geometric_mean),
                    r3(p.ci95.0),
                    r3(p.ci95.1),
                    p.n
                ),
                None if r.seeds.iter().any(|s| s.ratio.is_none()) => {
                    "not defined (a value ≤ 0)".into()
                }
                None => "needs two paired seeds".into(),
            };
            let published = match (
                r.published,
                r.paired.as_ref().and_then(|p| p.published_inside),
            ) {
                (Some(v), Some(true)) => format!("{v} (inside the interval)"),
                (Some(v), Some(false)) => format!("{v} (**outside** the interval)"),
                (Some(v), None) => format!("{v}"),
                (None, _) => "-".into(),
            };
            writeln!(
                md,
                "| {} (`{}` / `{}`) | {} | {per_seed} | {} | {paired} | {published} |",
                r.label,
                r.numerator,
                r.denominator,
                r.metric,
                r.ratio_of_means.map_or("-".into(), r3),
            )?;
        }
        writeln!(md)?;
    }

    // Everything measured, per point.
    writeln!(md, "## Per point (mean ± sample std over seeds)\n")?;
    write!(md, "| metric |")?;
    for (p, _) in &c.points {
        write!(md, " `{p}` |")?;
    }
    writeln!(md)?;
    write!(md, "|---|")?;
    for _ in &c.points {
        write!(md, "---|")?;
    }
    writeln!(md)?;
    for (label, digits) in &c.columns {
        let cell = |p: &str| c.table.get(p).and_then(|t| t.get(label));
        if !c.points.iter().any(|(p, _)| cell(p).is_some()) {
            continue;
        }
        write!(md, "| {label} |")?;
        for (p, _) in &c.points {
            match cell(p) {
                Some(s) => write!(md, " {} |", stats_cell(s, *digits))?,
                None => write!(md, " - |")?,
            }
        }
        writeln!(md)?;
    }
    writeln!(md)?;

    if let Some(b) = &c.best_of {
        writeln!(md, "## Best of `{}`\n", b.key)?;
        writeln!(
            md,
            "Each point keeps the value of `{}` whose runs stored the most bits of knowledge, compared on the \
             seeds every value has run (mean over them; over each value's own seeds where they share none), with \
             every seed of that value (the paper's bioD protocol: the best of 3 learning rates); the tables above, \
             the headline and the fit use only the kept runs, summary.csv lists every run. A maximum over settings \
             is biased upwards by the runs' spread.\n",
            b.key
        )?;
        writeln!(
            md,
            "| point | {} tried: mean bits of knowledge (seeds) | compared on seeds | kept | values tried on both sides of it |",
            b.segment
        )?;
        writeln!(md, "|---|---|---|---|---|")?;
        for e in &b.each {
            let tried: Vec<String> = e
                .tried
                .iter()
                .map(|v| {
                    let seeds: Vec<String> = v.seeds.iter().map(u64::to_string).collect();
                    match v.mean_bits {
                        Some(x) => format!("{}: {} ({})", v.value, fmt(x, 0), seeds.join(", ")),
                        None => format!("{}: - ({})", v.value, seeds.join(", ")),
                    }
                })
                .collect();
            let on = if e.compared_on.is_empty() {
                "each value's own".to_string()
            } else {
                e.compared_on
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let bracketed = match &e.edge {
                None => "yes".to_string(),
                Some(edge) if edge == "only value tried" => format!("no: {edge}"),
                Some(edge) => format!("no: {edge} (the best may lie beyond it)"),
            };
            writeln!(
                md,
                "| `{}` | {} | {on} | {}={} | {bracketed} |",
                e.point,
                tried.join("; "),
                b.segment,
                e.best
            )?;
        }
        writeln!(md)?;
        if best_of_series(b).is_some() {
            writeln!(md, "![bits vs {}](plots/best-of.svg)\n", b.segment)?;
        }
    }

    let cap = &c.capacity;
    if let Some(f) = &cap.fit {
        writeln!(md, "## Capacity law\n")?;
        writeln!(
            md,
            "bits = R · parameters (all, the paper's count: the embedding of the whole vocabulary), least squares through the origin over {} runs{}: \
             **R = {:.4} bits/param** (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}).\n",
            f.points, cap.which, f.slope.value, f.slope.std_error, f.slope.ci95.0, f.slope.ci95.1, f.r2
        )?;
    } else if cap.asked {
        writeln!(
            md,
            "No capacity-law fit yet: it needs runs at ≥ 2 model sizes{}.\n",
            cap.which
        )?;
    }
    if !cap.series.is_empty() {
        writeln!(md, "![bits vs parameters](plots/capacity.svg)\n")?;
    }
    if let Some(f) = &c.memorization_law {
        writeln!(
            md,
            "## Memorization capacity\n\nmemorized bits = k · parameters, least squares through the origin over {} runs: \
             **k = {:.4} bits/param** (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}).\n",
            f.points, f.slope.value, f.slope.std_error, f.slope.ci95.0, f.slope.ci95.1, f.r2
        )?;
    }
    if let Some(pl) = &c.plateau {
        writeln!(md, "## Memorization plateau (Morris et al.)\n")?;
        let which = match pl.threshold {
            Some(t) => format!(
                "the {} of {} runs whose training set holds ≥ {t} bits of entropy per parameter",
                pl.on_plateau, pl.runs
            ),
            None => format!("all {} runs", pl.runs),
        };
        match (&pl.bits_per_param, pl.ci95) {
            (Some(s), Some((lo, hi))) => writeln!(
                md,
                "Memorized bits per parameter (all parameters) over {which}: **{:.4} bits/param** (std {:.4}; \
                 95% CI {lo:.4} – {hi:.4}).\n",
                s.mean, s.std
            )?,
            (Some(s), None) => writeln!(
                md,
                "Memorized bits per parameter over {which}: {:.4} (one run: no interval yet).\n",
                s.mean
            )?,
            _ => writeln!(md, "No run on the plateau yet ({which}).\n")?,
        }
        if let (Some(t), Some(sat)) = (pl.saturation_max_loss_drop_pct, pl.saturated) {
            if pl.on_plateau == 0 {
                // No run on the plateau: said above.
            } else if sat == pl.on_plateau {
                writeln!(
                    md,
                    "Every run on the plateau meets the saturation criterion (its training loss fell < {t}% over \
                     its last 10% of steps).\n"
                )?;
            } else {
                writeln!(
                    md,
                    "**{} of the {} runs on the plateau are not saturated** (their training loss fell ≥ {t}% over \
                     the last 10% of steps, or no curve was logged): the plateau is a lower bound on the capacity, \
                     not the capacity.\n",
                    pl.on_plateau - sat,
                    pl.on_plateau
                )?;
            }
        }
        // Whether the sizes on the plateau are level (means over seeds, in entropy order).
        if let [first, .., last] = pl.sizes.as_slice() {
            let path: Vec<String> = pl
                .sizes
                .iter()
                .map(|s| {
                    format!(
                        "{:.3} (`{}`, {:.1} bits of entropy/param)",
                        s.memorized_bits_per_param, s.point, s.entropy_per_param
                    )
                })
                .collect();
            writeln!(
                md,
                "Across the plateau's sizes, memorized bits per parameter (mean over seeds) go {}: the largest \
                 size holds {:.2}× what the smallest does. A plateau is level; one that falls as the data grows \
                 means the larger sets were not trained to saturation.\n",
                path.join(" → "),
                last.memorized_bits_per_param / first.memorized_bits_per_param
            )?;
        }
        if !pl.each.is_empty() {
            writeln!(
                md,
                "| point | seed | entropy / param | memorized bits / param | on the plateau | loss drop, last 10% | saturated |\n|---|---|---|---|---|---|---|"
            )?;
            for r in &pl.each {
                writeln!(
                    md,
                    "| `{}` | {} | {:.3} | {:.4} | {} | {} | {} |",
                    r.point,
                    r.seed,
                    r.entropy_per_param,
                    r.memorized_bits_per_param,
                    if r.on_plateau { "yes" } else { "no" },
                    r.loss_drop_last_tenth_pct
                        .map_or("-".into(), |d| format!("{d:.2}%")),
                    match r.saturated {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    }
                )?;
            }
            writeln!(md)?;
        }
        if !pl.series.is_empty() {
            writeln!(
                md,
                "![memorized bits vs training-set entropy](plots/plateau.svg)\n"
            )?;
        }
    }
    if let Some(e) = &c.excess {
        if e.excluded > 0 {
            writeln!(
                md,
                "**{} run(s) measured a loss below the entropy rate** (excess ≤ 0): left out of the fit; \
                 a loss below H means a bug or too few tokens scored.\n",
                e.excluded
            )?;
        }
        match &e.fit {
            Some(f) => {
                writeln!(
                    md,
                    "## Power law\n\nexcess loss = c · {}^−a, least squares on logs over {} runs: **a = {:.4}** \
                     (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}){}. The excess is `{}`, x is `{}`.\n",
                    e.what,
                    f.points,
                    f.exponent.value,
                    f.exponent.std_error,
                    f.exponent.ci95.0,
                    f.exponent.ci95.1,
                    f.r2,
                    e.expected
                        .map(|e| format!("; theory: a = {e:.4}"))
                        .unwrap_or_default(),
                    e.paths.1,
                    e.paths.0
                )?;
                writeln!(md, "![excess loss](plots/excess.svg)\n")?;
            }
            None => writeln!(
                md,
                "No power-law fit: it needs ≥ 3 runs with a positive excess loss.\n"
            )?,
        }
        if !e.also.is_empty() {
            writeln!(
                md,
                "Other metrics against the same x (`{}`), y ∝ x^b by least squares on logs:\n\n\
                 | metric | b | 95% CI | R² | runs | theory: b |\n|---|---|---|---|---|---|",
                e.paths.0
            )?;
            for a in &e.also {
                let (b, ci, r2) = match (&a.slope, a.r2) {
                    (Some(b), Some(r2)) => (
                        format!("**{:.4}** (standard error {:.4})", b.value, b.std_error),
                        format!("{:.4} – {:.4}", b.ci95.0, b.ci95.1),
                        format!("{r2:.3}"),
                    ),
                    _ => (
                        "no fit (needs ≥ 3 runs with both positive)".into(),
                        "-".into(),
                        "-".into(),
                    ),
                };
                writeln!(
                    md,
                    "| {} (`{}`) | {b} | {ci} | {r2} | {} | {} |",
                    a.label,
                    a.path,
                    a.runs,
                    a.expected_slope
                        .map(|b| format!("{b:.4}"))
                        .unwrap_or_else(|| "-".into())
                )?;
            }
            writeln!(md)?;
        }
    }
    if !c.loss.is_empty() {
        writeln!(md, "![training loss](plots/loss.svg)\n")?;
    }
    if !c.accuracy.is_empty() {
        let mut curve_rows = String::new();
        for a in &c.accuracy {
            writeln!(
                curve_rows,
                "| {} | {} | {} |",
                a.point,
                a.stream,
                a.points
                    .iter()
                    .map(|(s, a)| format!("{s:.0}: {:.1}%", 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        writeln!(
            md,
            "## Accuracy against the step\n\nGreedy exact match on the first questions of each stream (`eval.curve_questions`), every `train.eval_every` steps; mean over seeds.\n\n![accuracy while training](plots/accuracy.svg)\n\n| point | stream | step: accuracy |\n|---|---|---|\n{curve_rows}"
        )?;
    }
    if !c.routing.is_empty() {
        let mut rows = String::new();
        for a in c.routing.iter().filter(|a| a.stream == "dropped") {
            let gate = c
                .routing
                .iter()
                .find(|g| g.point == a.point && g.stream == "gate")
                .and_then(|g| g.points.last())
                .map_or("-".into(), |&(_, x)| format!("{x:.3}"));
            let at = |frac: f64| -> String {
                let last = a.points.last().map_or(0.0, |p| p.0);
                a.points
                    .iter()
                    .find(|(s, _)| *s >= frac * last)
                    .map_or("-".into(), |&(s, x)| {
                        format!("{:.1}% (step {s:.0})", 100.0 * x)
                    })
            };
            writeln!(
                rows,
                "| {} | {} | {} | {} | {} |",
                a.point,
                at(0.0),
                at(0.1),
                at(1.0),
                gate
            )?;
        }
        writeln!(
            md,
            "## Mixture-of-experts routing while training

The share of tokens over their expert's capacity (they skip the layer) and the chosen expert's mean router probability (the gate that scales its output; 1/E uniform), over the mixture layers and each logging interval (metrics.jsonl); mean over seeds.

![routing while training](plots/routing.svg)

| point | over capacity, first interval | at 10% of the steps | at the end | gate at the end |
|---|---|---|---|---|
{rows}"
        )?;
    }
    if c.excess_curves.iter().any(|a| a.stream == "held_out") {
        writeln!(
            md,
            "## Held-out excess against the step\n\nMeasured every `train.eval_every` steps on the validation and the held-out test documents; the early-stopping figure is the test value at the step of lowest validation value (columns \"early stopping\" above). Test curves, mean over seeds:\n\n![held-out excess while training](plots/excess-curve.svg)\n"
        )?;
    }
    Ok(md)
}

/// Render: summary.csv, one line per run.
pub fn render_csv(c: &Computed) -> Result<String> {
    let mut csv = String::from("point,seed");
    for (label, _) in &c.columns {
        write!(csv, ",\"{}\"", label.replace('"', "'"))?;
    }
    csv.push('\n');
    for (point, seed, values) in &c.rows {
        write!(csv, "\"{point}\",{seed}")?;
        for v in values {
            match v {
                Some(v) => write!(csv, ",{v}")?,
                None => csv.push(','),
            }
        }
        csv.push('\n');
    }
    Ok(csv)
}

/// Render: report.json.
pub fn render_json(c: &Computed) -> Result<Vec<u8>> {
    let json = ReportJson {
        experiment: &c.experiment,
        row: &c.row,
        claim: &c.claim,
        runs: c.rows.len(),
        points: &c.table,
        headline: c.headline(),
        capacity_law: c.capacity.fit.as_ref(),
        memorization_law: c.memorization_law.as_ref(),
        memorization_plateau: c.plateau.as_ref(),
        best_of: c.best_of.as_ref(),
        excess_power_law: c.excess.as_ref().and_then(|e| e.fit.as_ref()),
        also_power_laws: c.excess.as_ref().map_or(&[], |e| e.also.as_slice()),
        reference: c.reference.as_ref(),
        ratios: &c.ratios,
    };
    Ok(serde_json::to_vec_pretty(&json)?)
}

/// Writes report.md, summary.csv, report.json and the plots into `dir`; returns report.md's text.
pub fn write(dir: &Path, c: &Computed) -> Result<String> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)
        .with_context(|| format!("creating {}", plots_dir.display()))?;
    for (name, plot) in plots(c) {
        plot.write_svg(&plots_dir.join(name), 800, 560)
            .map_err(anyhow::Error::msg)?;
    }
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        physlab_generators::fsio::atomic_write(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))
    };
    let md = render_md(c)?;
    write("summary.csv", render_csv(c)?.as_bytes())?;
    write("report.json", &render_json(c)?)?;
    write("report.md", md.as_bytes())?;
    Ok(md)
}

/// Writes the report of `experiment` into `runs/<experiment>/` and returns the text of report.md:
/// [`load_with_records`] (the finished runs of the folder and those of `records` not in it) → [`compute`] →
/// [`write`], then [`RECORDS_FILE`] with every run read.
///
/// With `report.reference`, the reference runs are read from `runs_dir/<its experiment>` and the records files
/// `reference_records`; none found is said in the report, not an error.
pub fn report(
    experiment: &str,
    runs_dir: &Path,
    records: &[PathBuf],
    spec: &ReportSpec,
    description: &str,
    reference_records: &[PathBuf],
) -> Result<String> {
    let dir = runs_dir.join(experiment);
    let (runs, from) = load_with_records(runs_dir, experiment, records)?;
    let mut computed = compute(experiment, &dir, &runs, spec, description)?;
    computed.from_records = from;
    if let Some(r) = &spec.reference {
        let looked_in = std::iter::once(runs_dir.join(&r.experiment))
            .chain(reference_records.iter().cloned())
            .map(|p| p.display().to_string())
            .collect();
        let (theirs, error) = match load_with_records(runs_dir, &r.experiment, reference_records) {
            Ok((theirs, _)) => (theirs, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let mut section = reference_section(r, &runs, &theirs, looked_in);
        section.error = error;
        computed.reference = Some(section);
    }
    let md = write(&dir, &computed)?;
    let path = dir.join(RECORDS_FILE);
    physlab_generators::fsio::atomic_write(&path, render_records(experiment, &runs)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::{
        accuracy_series, best_of_series, capacity_series, compute, derive_stored_fraction,
        loss_drop_last_tenth, natural_key, plots, read_records, render_csv, render_json, render_md,
        upgrade_counts, Record, Run, RECORDS_FILE,
    };
    use crate::recipe::{Fit, MetricSpec, ReportSpec};
    use physlab_eval::plot::Style;
    use physlab_eval::stats::Alternative;
    use serde_json::json;
    use std::path::Path;

    fn run(point: &str, seed: u64, eval: serde_json::Value) -> Run {
        let mut eval = eval;
        eval["experiment"] = json!("x");
        eval["point"] = json!(point);
        eval["seed"] = json!(seed);
        Run {
            point: point.into(),
            seed,
            eval,
            curve: Vec::new(),
            accuracy: Default::default(),
            excess_curve: Default::default(),
            routing: Default::default(),
            recorded: Default::default(),
        }
    }

    fn bios(params: f64, bits: f64, rmax: f64) -> serde_json::Value {
        // The used-rows count is set apart from the paper's so that a fit on the wrong one fails.
        json!({ "bios": { "bits": bits, "params": { "total": params, "capacity": 0.5 * params }, "capacity_ratio_max": rmax, "perfect_recall_bits": rmax * params } })
    }

    /// A metric path walks objects by key and arrays by the element's stream, attribute or name, or its layer
    /// number (a mixture's per-layer routing).
    #[test]
    fn lookup_finds_array_elements_by_name_or_layer() {
        use crate::report::lookup;
        let v = json!({
            "qa": [ { "stream": "qa_test", "accuracy": 0.5 } ],
            "routing": [ { "layer": 0, "gate_mean": 0.15 }, { "layer": 1, "gate_mean": 0.45 } ],
        });
        assert_eq!(lookup(&v, "qa.qa_test.accuracy"), Some(0.5));
        assert_eq!(lookup(&v, "routing.0.gate_mean"), Some(0.15));
        assert_eq!(lookup(&v, "routing.1.gate_mean"), Some(0.45));
        assert_eq!(lookup(&v, "routing.2.gate_mean"), None);
        assert_eq!(lookup(&v, "routing.x.gate_mean"), None);
    }

    /// `report.reference`: each run against the reference run of its own seed, the change in percent of the
    /// reference and whether it is within the tolerance (inclusive); a seed the reference lacks says so.
    #[test]
    fn each_run_is_compared_with_the_reference_run_of_its_seed() {
        use crate::recipe::ReferenceSpec;
        let spec = ReferenceSpec {
            experiment: "base".into(),
            point: "lr=2".into(),
            metric: "bios.bits".into(),
            tolerance_pct: 5.0,
        };
        let ours = [
            run("base", 0, bios(1000.0, 1050.0, 2.0)), // +5%: within, the edge counts
            run("base", 1, bios(1000.0, 1100.0, 2.0)), // +10%
            run("base", 2, bios(1000.0, 900.0, 2.0)),  // no reference of seed 2
            run("base", 3, bios(1000.0, 940.0, 2.0)),  // −6%
        ];
        let theirs = [
            run("lr=2", 0, bios(1000.0, 1000.0, 2.0)),
            run("lr=2", 1, bios(1000.0, 1000.0, 2.0)),
            run("lr=1", 2, bios(1000.0, 950.0, 2.0)), // another point: not the reference
            run("lr=2", 3, bios(1000.0, 1000.0, 2.0)),
        ];
        let sec = super::reference_section(&spec, &ours, &theirs, vec!["runs/base".into()]);
        let got: Vec<_> = sec
            .rows
            .iter()
            .map(|r| {
                (
                    r.seed,
                    r.reference,
                    r.change_pct.map(|c| (c * 1e6).round() / 1e6),
                    r.within,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, Some(1000.0), Some(5.0), Some(true)),
                (1, Some(1000.0), Some(10.0), Some(false)),
                (2, None, None, None),
                (3, Some(1000.0), Some(-6.0), Some(false)),
            ]
        );
        let mut c = compute("x", Path::new("runs/x"), &ours, &ReportSpec::default(), "").unwrap();
        c.reference = Some(sec);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("| `base` | 0 | 1050 | 1000 | +5.00% | **met** |"),
            "{md}"
        );
        assert!(
            md.contains("| `base` | 1 | 1100 | 1000 | +10.00% | **not met: more** |"),
            "{md}"
        );
        assert!(
            md.contains("| `base` | 2 | 900 | no finished reference run | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| `base` | 3 | 940 | 1000 | -6.00% | **not met: less** |"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(json["reference"]["rows"][1]["within"], json!(false));
        assert_eq!(json["reference"]["rows"][1]["difference"], json!(100.0));

        // A reference at or below zero (a model that stored nothing): the difference, no percent, no verdict.
        let ours = [run("base", 0, bios(1000.0, -2695.0, 2.0))];
        let theirs = [run("lr=2", 0, bios(1000.0, -3516.0, 2.0))];
        let sec = super::reference_section(&spec, &ours, &theirs, vec!["runs/base".into()]);
        let row = &sec.rows[0];
        assert_eq!(
            (row.difference, row.change_pct, row.within),
            (Some(821.0), None, None)
        );
        let mut c = compute("x", Path::new("runs/x"), &ours, &ReportSpec::default(), "").unwrap();
        c.reference = Some(sec);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains(
                "| `base` | 0 | -2695 | -3516 | +821 (the reference is ≤ 0: no percent) | - |"
            ),
            "{md}"
        );

        // No `point`: each run against the reference run of its own point (its segments in any order) and seed.
        let same = ReferenceSpec {
            point: String::new(),
            ..spec
        };
        let ours = [
            run("lr=2,people=3", 0, bios(1000.0, 1040.0, 2.0)),
            run("lr=1,people=4", 0, bios(1000.0, 1200.0, 2.0)),
            run("lr=1,people=5", 0, bios(1000.0, 1200.0, 2.0)), // no namesake there
        ];
        let theirs = [
            run("people=4,lr=1", 0, bios(1000.0, 1000.0, 2.0)),
            run("lr=2,people=3", 0, bios(1000.0, 1000.0, 2.0)),
            run("lr=2,people=3", 1, bios(1000.0, 500.0, 2.0)), // another seed
            run("lr=1,people=55", 0, bios(1000.0, 1200.0, 2.0)), // not the same segments
        ];
        let sec = super::reference_section(&same, &ours, &theirs, vec!["runs/base".into()]);
        let got: Vec<_> = sec.rows.iter().map(|r| (r.reference, r.within)).collect();
        assert_eq!(
            got,
            [
                (Some(1000.0), Some(true)),
                (Some(1000.0), Some(false)),
                (None, None)
            ]
        );
        let mut c = compute("x", Path::new("runs/x"), &ours, &ReportSpec::default(), "").unwrap();
        c.reference = Some(sec);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("beside that of `base` the same point at the same seed"),
            "{md}"
        );
    }

    /// The saturation criterion: a run on the plateau whose loss fell ≥ the stated percentage over its last 10%
    /// (or that logged no curve) is not saturated, and then the plateau is called a lower bound; runs below the
    /// threshold are listed but do not count.
    #[test]
    fn the_plateau_is_a_capacity_only_when_every_run_on_it_is_saturated() {
        let corpus = |tokens: f64, mem: f64| {
            json!({ "corpus": { "entropy_bits_per_token": 9.0, "tokens": tokens, "memorized_bits": mem,
                                "params": { "total": 1000.0, "capacity": 500.0 } } })
        };
        // Steps 0..=100 with the loss at step 90 and at step 100 given: a drop of 100·(a − b)/a percent.
        let curve = |a: f64, b: f64| vec![(0.0, 9.0), (50.0, 5.0), (90.0, a), (100.0, b)];
        let with = |mut r: Run, c: Vec<(f64, f64)>| {
            r.curve = c;
            r
        };
        let spec = ReportSpec {
            fit: Fit::Plateau,
            plateau_min_entropy_per_param: Some(20.0),
            plateau_max_loss_drop_pct: Some(1.0),
            ..Default::default()
        };
        let saturated = vec![
            // Below the threshold and far from saturated: listed, not counted.
            with(run("n=1", 0, corpus(1000.0, 8500.0)), curve(2.0, 1.0)),
            with(run("n=4", 0, corpus(4000.0, 3400.0)), curve(4.0, 3.97)), // 0.75%
            with(run("n=8", 0, corpus(8000.0, 3500.0)), curve(4.0, 4.0)),  // 0%
        ];
        let c = compute("x", Path::new("runs/x"), &saturated, &spec, "").unwrap();
        let pl = c.plateau.as_ref().unwrap();
        assert_eq!((pl.on_plateau, pl.saturated), (2, Some(2)));
        assert_eq!(pl.each.len(), 3);
        assert_eq!(pl.each[0].saturated, Some(false));
        assert!(!pl.each[0].on_plateau);
        assert!((pl.each[1].loss_drop_last_tenth_pct.unwrap() - 0.75).abs() < 1e-9);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("Every run on the plateau meets the saturation criterion"),
            "{md}"
        );
        // n=4 holds 3.4 bits/param, n=8 3.5: level within 3%; report.json carries the sizes.
        let sizes: Vec<(&str, f64)> = pl
            .sizes
            .iter()
            .map(|s| (s.point.as_str(), s.memorized_bits_per_param))
            .collect();
        assert_eq!(sizes, [("n=4", 3.4), ("n=8", 3.5)]);
        let json: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(json["memorization_plateau"]["sizes"][1]["point"], "n=8");
        assert!(
            md.contains("the largest size holds 1.03× what the smallest does"),
            "{md}"
        );
        assert!(
            md.contains("| `n=4` | 0 | 36.000 | 3.4000 | yes | 0.75% | yes |"),
            "{md}"
        );

        // One run on the plateau falls 1.5% (not saturated), another logged no curve: 2 of 3 not saturated.
        let mut unsaturated = saturated.clone();
        unsaturated[2] = with(run("n=8", 0, corpus(8000.0, 3500.0)), curve(4.0, 3.94));
        unsaturated.push(run("n=8", 1, corpus(8000.0, 3600.0)));
        let c = compute("x", Path::new("runs/x"), &unsaturated, &spec, "").unwrap();
        let pl = c.plateau.as_ref().unwrap();
        assert_eq!((pl.on_plateau, pl.saturated), (3, Some(1)));
        assert_eq!(pl.each[3].saturated, None);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("**2 of the 3 runs on the plateau are not saturated**"),
            "{md}"
        );
        assert!(
            !md.contains("Every run on the plateau is saturated"),
            "{md}"
        );

        // Without a criterion nothing is judged.
        let spec = ReportSpec {
            plateau_max_loss_drop_pct: None,
            ..spec
        };
        let c = compute("x", Path::new("runs/x"), &unsaturated, &spec, "").unwrap();
        let pl = c.plateau.as_ref().unwrap();
        assert_eq!(pl.saturated, None);
        assert!(pl.each.iter().all(|r| r.saturated.is_none()));
    }

    /// `best_of`: each point keeps the value with the highest mean bits over the seeds every value ran (so seeds
    /// added later at the chosen value do not move the choice), with every seed of that value (renamed to the point
    /// without the key); the fit is the closed-form slope over the kept runs only, the others stay in
    /// summary.csv, and a point that ran one value keeps it.
    #[test]
    fn best_of_keeps_each_points_best_value_with_its_seeds_and_fits_over_those_only() {
        let runs = vec![
            // Mean 1.75e4 over two seeds at 1e-3 against 1.6e4 at 2e-3 (whose one seed beats seed 1 at 1e-3).
            run("lr=0.001,size=10000", 0, bios(1e4, 1.8e4, 3.0)),
            run("lr=0.001,size=10000", 1, bios(1e4, 1.7e4, 3.0)),
            run("lr=0.002,size=10000", 0, bios(1e4, 1.6e4, 3.0)),
            run("lr=0.0005,size=20000", 0, bios(2e4, 3.0e4, 3.0)),
            run("lr=0.001,size=20000", 0, bios(2e4, 3.9e4, 3.0)),
            run("lr=0.002,size=20000", 0, bios(2e4, 3.5e4, 3.0)),
            run("lr=0.002,size=20000", 1, bios(2e4, 4.1e4, 3.0)),
            // Seeds 1–2 added at the value seed 0 chose: 1e-3's mean over its three seeds (4.33e4) falls below
            // 2e-3's one seed (4.6e4), but on the seed both ran (0) 1e-3 holds more (5.0e4), and it stays.
            run("lr=0.001,size=30000", 0, bios(3e4, 5.0e4, 3.0)),
            run("lr=0.001,size=30000", 1, bios(3e4, 4.0e4, 3.0)),
            run("lr=0.001,size=30000", 2, bios(3e4, 4.0e4, 3.0)),
            run("lr=0.002,size=30000", 0, bios(3e4, 4.6e4, 3.0)),
        ];
        let spec = ReportSpec {
            fit: Fit::Capacity,
            best_of: Some("train.lr".into()),
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        // size=20000, compared on seed 0 (the one all three values ran): 1e-3's 3.9e4 over 2e-3's 3.5e4, though
        // 2e-3's seed 1 holds the single most bits.
        let kept = [
            (1e4, 1.8e4),
            (1e4, 1.7e4),
            (2e4, 3.9e4),
            (3e4, 5.0e4),
            (3e4, 4.0e4),
            (3e4, 4.0e4),
        ];
        let sxy: f64 = kept.iter().map(|(x, y)| x * y).sum();
        let sxx: f64 = kept.iter().map(|(x, _)| x * x).sum();
        let f = c.capacity.fit.as_ref().expect("fitted");
        assert_eq!(f.points, 6);
        assert!((f.slope.value - sxy / sxx).abs() < 1e-12);
        let names: Vec<(&str, &[u64])> = c
            .points
            .iter()
            .map(|(p, s)| (p.as_str(), s.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("size=10000", &[0u64, 1][..]),
                ("size=20000", &[0u64][..]),
                ("size=30000", &[0u64, 1, 2][..])
            ]
        );
        let b = c.best_of.as_ref().unwrap();
        let picks: Vec<(&str, &str)> = b
            .each
            .iter()
            .map(|e| (e.point.as_str(), e.best.as_str()))
            .collect();
        assert_eq!(
            picks,
            [
                ("size=10000", "0.001"),
                ("size=20000", "0.001"),
                ("size=30000", "0.001")
            ]
        );
        assert_eq!(b.each[2].compared_on, [0]);
        let md = render_md(&c).unwrap();
        assert!(
            md.contains(
                "| `size=20000` | 0.0005: 30,000 (0); 0.001: 39,000 (0); 0.002: 38,000 (0, 1) | 0 | lr=0.001 | yes |"
            ),
            "{md}"
        );
        // Whether the kept value has tried values on both sides (the ×0.5 / ×2 probe around it).
        let edges: Vec<Option<&str>> = b.each.iter().map(|e| e.edge.as_deref()).collect();
        assert_eq!(edges, [Some("lowest tried"), None, Some("lowest tried")]);
        assert!(
            md.contains("| lr=0.001 | no: lowest tried (the best may lie beyond it) |"),
            "{md}"
        );
        // Every run stays in summary.csv under its own name.
        let csv = render_csv(&c).unwrap();
        assert_eq!(csv.lines().count(), 1 + runs.len());
        assert!(csv.contains("\"lr=0.0005,size=20000\",0"), "{csv}");
        let json: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(json["best_of"]["each"][1]["tried"][2]["mean_bits"], 38000.0);
        // best-of.svg: per point, each value's mean bits over all its seeds, in the value's order, on a linear
        // axis here (0.0005–0.002 spans 4×: logarithmic; without it 2× only: linear).
        let (series, log_x) = best_of_series(b).expect("numeric values");
        assert!(log_x);
        let drawn: Vec<(&str, Vec<(f64, f64)>)> = series
            .iter()
            .map(|s| (s.name.as_str(), s.points.clone()))
            .collect();
        assert_eq!(
            drawn,
            [
                (
                    "size=10000 (kept lr=0.001)",
                    vec![(0.001, 1.75e4), (0.002, 1.6e4)]
                ),
                (
                    "size=20000 (kept lr=0.001)",
                    vec![(0.0005, 3.0e4), (0.001, 3.9e4), (0.002, 3.8e4)]
                ),
                (
                    "size=30000 (kept lr=0.001)",
                    vec![(0.001, 13.0e4 / 3.0), (0.002, 4.6e4)]
                ),
            ]
        );
        assert!(md.contains("![bits vs lr](plots/best-of.svg)"), "{md}");
        assert!(plots(&c).iter().any(|(n, _)| *n == "best-of.svg"));
        let narrow = compute("x", Path::new("runs/x"), &runs[..3], &spec, "").unwrap();
        let (_, log_x) = best_of_series(narrow.best_of.as_ref().unwrap()).unwrap();
        assert!(!log_x, "0.001–0.002 is drawn on a linear axis");
        // A point with one value only is not drawn; with none drawn there is no plot.
        let one = compute("x", Path::new("runs/x"), &runs[7..8], &spec, "").unwrap();
        assert!(best_of_series(one.best_of.as_ref().unwrap()).is_none());
        assert!(!render_md(&one).unwrap().contains("best-of.svg"));
        assert!(!plots(&one).iter().any(|(n, _)| *n == "best-of.svg"));
    }

    /// Accuracy curves: one colour per point (its streams share it), trained-on streams dashed, held-out solid.
    #[test]
    fn accuracy_curves_share_their_points_colour_and_dash_the_trained_stream() {
        let curve = |point: &str, stream: &str| super::AccuracyCurve {
            point: point.into(),
            stream: stream.into(),
            seeds: 1,
            points: vec![(0.0, 0.0), (100.0, 0.5)],
        };
        let series = accuracy_series(&[
            curve("lr=0.001", "qa_test"),
            curve("lr=0.001", "qa_train"),
            curve("lr=0.0003", "qa_test"),
            curve("lr=0.0003", "qa_train"),
            curve("lr=0.0003", "month_parity_train"),
        ]);
        let drawn: Vec<(Option<usize>, Style)> =
            series.iter().map(|s| (s.color, s.style.clone())).collect();
        assert_eq!(
            drawn,
            [
                (Some(0), Style::Line),
                (Some(0), Style::Dashed),
                (Some(1), Style::Line),
                (Some(1), Style::Dashed),
                (Some(1), Style::Dashed),
            ]
        );
        assert_eq!(series[1].name, "lr=0.001: qa_train (mean of 1 seed(s))");
    }

    /// The memorization plateau is the mean memorized bits per parameter over the runs past the threshold of
    /// training-set entropy per parameter, with the t-interval of that mean (closed form with t(0.975, 2)).
    #[test]
    fn the_memorization_plateau_is_the_mean_past_the_threshold() {
        let corpus = |tokens: f64, mem: f64| {
            json!({ "corpus": { "entropy_bits_per_token": 9.0, "tokens": tokens, "memorized_bits": mem,
                                "params": { "total": 1000.0, "capacity": 500.0 } } })
        };
        // Training sets of 9,000 / 36,000 / 72,000 bits for 1,000 parameters: 9, 36 and 72 bits per parameter.
        let runs = vec![
            run("n=1", 0, corpus(1000.0, 8500.0)),
            run("n=4", 0, corpus(4000.0, 3400.0)),
            run("n=8", 0, corpus(8000.0, 3500.0)),
            run("n=8", 1, corpus(8000.0, 3600.0)),
        ];
        let spec = ReportSpec {
            fit: Fit::Plateau,
            plateau_min_entropy_per_param: Some(20.0),
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let pl = c.plateau.as_ref().expect("a plateau section");
        assert_eq!((pl.runs, pl.on_plateau), (4, 3));
        let s = pl.bits_per_param.as_ref().unwrap();
        assert!((s.mean - 3.5).abs() < 1e-12, "{}", s.mean);
        assert!((s.std - 0.1).abs() < 1e-12, "{}", s.std);
        // t(0.975, 2) = (2q − 1)/√(2q(1 − q)) at q = 0.975 = 0.95/√0.04875 = 4.302652729749464.
        let half = 4.302_652_729_749_464 * 0.1 / 3f64.sqrt();
        let (lo, hi) = pl.ci95.unwrap();
        assert!((lo - (3.5 - half)).abs() < 1e-9 && (hi - (3.5 + half)).abs() < 1e-9);
        assert_eq!(
            pl.series.len(),
            4,
            "every point is plotted, and the plateau"
        );
        // The level: 3.5 bits/param × 1,000 parameters, across the runs on the plateau (36–72 bits/param).
        let level = &pl.series[3];
        assert_eq!(level.style, Style::Line);
        assert_eq!(
            level.points,
            [(36_000.0 / 1.15, 3500.0), (72_000.0 * 1.15, 3500.0)]
        );
        assert!(
            level.name.starts_with("plateau: 3.50 bits/param (95% CI"),
            "{}",
            level.name
        );
        // Two models on the plateau: no single level to draw.
        let mut mixed = runs.clone();
        mixed.push(run(
            "n=9",
            0,
            json!({ "corpus": { "entropy_bits_per_token": 9.0, "tokens": 9000.0, "memorized_bits": 7000.0,
                                "params": { "total": 2000.0, "capacity": 1000.0 } } }),
        ));
        let m = compute("x", Path::new("runs/x"), &mixed, &spec, "").unwrap();
        let pm = m.plateau.as_ref().unwrap();
        assert_eq!(pm.on_plateau, 4);
        assert_eq!(pm.series.len(), 4, "the four points, no level");
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("the 3 of 4 runs whose training set holds ≥ 20 bits"),
            "{md}"
        );
        assert!(md.contains("**3.5000 bits/param**"), "{md}");
    }

    /// A report rebuilt from its own summary.csv (`records_from_summary`: a fresh machine without the run folders)
    /// is the same report: summary.csv and report.json byte for byte, for a capacity fit over bioS runs (QA
    /// streams, quantized bits, whole-value accuracy, loss curves) and for a memorization plateau over corpus runs
    /// (whose saturation reads the loss drop the summary kept). A column no report writes is refused by name.
    #[test]
    fn a_report_rebuilt_from_its_summary_is_the_same_report() {
        let curve = |drop: f64| -> Vec<(f64, f64)> {
            (1..=20)
                .map(|i| {
                    (
                        i as f64 * 100.0,
                        if i >= 18 {
                            2.0 - drop * (i - 18) as f64
                        } else {
                            3.0
                        },
                    )
                })
                .collect()
        };
        let bio = |params: f64, bits: f64, acc: f64| {
            json!({
                "bios": { "bits": bits, "capacity_ratio": bits / params, "capacity_ratio_max": 3.0,
                          "params": { "total": params, "capacity": 0.5 * params }, "loss_name": 1.5,
                          "attributes": [
                              { "attribute": "birth_date", "counted_in_bits": true, "whole_value_accuracy": acc },
                              { "attribute": "major", "counted_in_bits": true, "whole_value_accuracy": 0.3 },
                              { "attribute": "pronoun", "counted_in_bits": true, "whole_value_accuracy": 1.0 } ] },
                "qa": [ { "stream": "qa_test", "accuracy": acc / 3.0 }, { "stream": "qa_train", "accuracy": acc } ],
                "quantized": { "int8": { "bits": bits * 0.99, "capacity_ratio": bits * 0.99 / params } },
                "train": { "final_loss": 1.9 }, "wall_s": 12.5
            })
        };
        let mut runs = vec![
            run("d=16", 0, bio(1234.0, 2345.678, 0.7)),
            run("d=16", 1, bio(1234.0, 2211.1, 0.65)),
            run("d=32", 0, bio(4321.0, 7654.321, 0.9)),
        ];
        for (k, r) in runs.iter_mut().enumerate() {
            r.curve = curve(0.01 * (k + 1) as f64);
        }
        let spec = ReportSpec {
            fit: Fit::Capacity,
            metrics: vec![MetricSpec {
                path: "qa.qa_test.accuracy".into(),
                label: "P_test".into(),
                published: Some(0.5),
                ..Default::default()
            }],
            ..Default::default()
        };
        let corpus = |tokens: f64, mem: f64| {
            json!({ "corpus": { "entropy_bits_per_token": 9.0, "tokens": tokens, "memorized_bits": mem,
                                "bits_per_param": mem / 1000.0, "params": { "total": 1000.0, "capacity": 500.0 } },
                    "data_tokens": tokens })
        };
        let mut mem = vec![
            run("n=1", 0, corpus(1000.0, 8500.0)),
            run("n=4", 0, corpus(4000.0, 3400.0)),
            run("n=8", 0, corpus(8000.0, 3500.0)),
        ];
        for (k, r) in mem.iter_mut().enumerate() {
            r.curve = curve(0.004 * k as f64);
        }
        let plateau = ReportSpec {
            fit: Fit::Plateau,
            plateau_min_entropy_per_param: Some(20.0),
            plateau_max_loss_drop_pct: Some(1.0),
            ..Default::default()
        };
        // An excess-loss fit against the used-rows count, which only the fit's own column carries.
        let excess = |cap: f64, ex: f64| {
            json!({ "corpus": { "entropy_bits_per_token": 1.0, "excess_bits_per_token": ex,
                                "params": { "total": 2.0 * cap + 7.0, "capacity": cap } } })
        };
        let params: Vec<Run> = [
            (1000.0, 0.9),
            (2000.0, 0.66),
            (4000.0, 0.45),
            (8000.0, 0.33),
        ]
        .iter()
        .map(|&(cap, ex)| run(&format!("d={cap}"), 0, excess(cap, ex)))
        .collect();
        let params_spec = ReportSpec {
            fit: Fit::Params,
            ..Default::default()
        };
        for (runs, spec) in [(runs, spec), (mem, plateau), (params, params_spec)] {
            let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
            let csv = render_csv(&c).unwrap();
            let back =
                super::records_from_summary("x", &csv, "results/x/summary.csv", &spec).unwrap();
            assert_eq!(back.len(), runs.len());
            assert!(back
                .iter()
                .all(|r| r.curve.is_empty()
                    && r.eval["reconstructed_from"] == "results/x/summary.csv"));
            let c2 = compute("x", Path::new("runs/x"), &back, &spec, "").unwrap();
            assert_eq!(render_csv(&c2).unwrap(), csv);
            // Each case has its fit (so that the comparison covers it).
            let j = String::from_utf8(render_json(&c).unwrap()).unwrap();
            let fitted = ["capacity_law", "memorization_plateau", "excess_power_law"]
                .iter()
                .filter(|k| {
                    !j.contains(&format!("\"{k}\": null")) && j.contains(&format!("\"{k}\""))
                })
                .count();
            assert_eq!(fitted, 1, "{j}");
            assert_eq!(
                String::from_utf8(render_json(&c2).unwrap()).unwrap(),
                String::from_utf8(render_json(&c).unwrap()).unwrap()
            );
        }
        let bad = "point,seed,\"bits of knowledge\",\"made up\"\n\"p\",0,1,2\n";
        let Err(err) = super::records_from_summary("x", bad, "s.csv", &ReportSpec::default())
        else {
            panic!("a column no report writes was read");
        };
        assert!(format!("{err:#}").contains("column \"made up\""), "{err:#}");
    }

    /// An eval.json of an older build (ratios over the used embedding rows, memorized bits as the aggregate) is
    /// read with the paper's count as the headline and the old figures under their new keys; a current one is left
    /// alone.
    #[test]
    fn an_older_eval_json_is_read_with_the_papers_count() {
        let mut old = json!({
            "bios": { "bits": 300.0, "perfect_recall_bits": 600.0, "params": { "total": 200, "capacity": 150 },
                      "capacity_ratio": 2.0, "capacity_ratio_max": 4.0 },
            "quantized": { "int8": { "bits": 100.0, "perfect_recall_bits": 600.0,
                                     "params": { "total": 200, "capacity": 150 },
                                     "capacity_ratio": 100.0 / 150.0, "capacity_ratio_max": 4.0 } },
            "corpus": { "memorized_bits": 50.0, "bits_per_param": 0.25, "params": { "total": 200, "capacity": 200 } }
        });
        upgrade_counts(&mut old);
        assert_eq!(old["bios"]["capacity_ratio"], json!(1.5));
        assert_eq!(old["bios"]["capacity_ratio_max"], json!(3.0));
        assert_eq!(old["bios"]["capacity_ratio_used_rows"], json!(2.0));
        assert_eq!(old["bios"]["capacity_ratio_max_used_rows"], json!(4.0));
        assert_eq!(old["quantized"]["int8"]["capacity_ratio"], json!(0.5));
        assert_eq!(old["corpus"]["memorized_bits_aggregate"], json!(50.0));
        assert!(old["corpus"]["memorized_bits"].is_null());
        assert!(old["corpus"]["bits_per_param"].is_null());
        let current = json!({
            "bios": { "bits": 300.0, "perfect_recall_bits": 600.0, "params": { "total": 200, "capacity": 150 },
                      "capacity_ratio": 1.5, "capacity_ratio_max": 3.0,
                      "capacity_ratio_used_rows": 2.0, "capacity_ratio_max_used_rows": 4.0 },
            "corpus": { "memorized_bits": 60.0, "memorized_bits_aggregate": 50.0, "bits_per_param": 0.3 }
        });
        let mut again = current.clone();
        upgrade_counts(&mut again);
        assert_eq!(again, current);
    }

    /// `stored_fraction` is derived as bits / perfect_recall_bits where an older eval.json or record lacks it (or
    /// holds null, a NaN written out), in every knowledge section; a value present is kept, and a section without
    /// both counts, or with no perfect-recall bits, gets none.
    #[test]
    fn the_stored_fraction_is_derived_where_an_older_evaluation_lacks_it() {
        let mut old = json!({
            "bios": { "bits": 300.0, "perfect_recall_bits": 600.0 },
            "biod": { "bits": 90.0, "perfect_recall_bits": 120.0, "stored_fraction": null },
            "quantized": { "int8": { "bits": 100.0, "perfect_recall_bits": 400.0 } },
            "bios_own_orders": { "bits": 10.0, "perfect_recall_bits": 0.0 },
            "corpus": { "memorized_bits": 50.0 }
        });
        derive_stored_fraction(&mut old);
        assert_eq!(old["bios"]["stored_fraction"], json!(0.5));
        assert_eq!(old["biod"]["stored_fraction"], json!(0.75));
        assert_eq!(old["quantized"]["int8"]["stored_fraction"], json!(0.25));
        assert!(old["bios_own_orders"].get("stored_fraction").is_none());
        assert!(old["corpus"].get("stored_fraction").is_none());
        let mut current = json!({ "biod": { "bits": 90.0, "perfect_recall_bits": 120.0, "stored_fraction": 0.7 } });
        derive_stored_fraction(&mut current);
        assert_eq!(current["biod"]["stored_fraction"], json!(0.7));
        // Records are read the same way.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORDS_FILE);
        let rec = Record {
            experiment: "e".into(),
            run: run(
                "lr=0.001",
                0,
                json!({ "biod": { "bits": 30.0, "perfect_recall_bits": 40.0 } }),
            ),
        };
        std::fs::write(&path, serde_json::to_string(&rec).unwrap() + "\n").unwrap();
        let runs = read_records(&path, "e").unwrap();
        assert_eq!(runs[0].eval["biod"]["stored_fraction"], json!(0.75));
    }

    /// The capacity law is least squares through the origin, R = Σxy / Σx² (closed form), over the runs where
    /// capacity binds: a run with R^max below `fit_min_rmax` is plotted but left out of the fit.
    #[test]
    fn the_capacity_law_is_the_closed_form_slope_over_the_runs_where_capacity_binds() {
        let binding = [
            (1e4, 2.1e4),
            (1e4, 1.9e4),
            (2e4, 4.1e4),
            (2e4, 3.8e4),
            (4e4, 8.2e4),
        ];
        let mut runs: Vec<Run> = binding
            .iter()
            .enumerate()
            .map(|(i, &(p, b))| run(&format!("size={}", p as u64), i as u64 % 2, bios(p, b, 3.0)))
            .collect();
        // Room to spare: stores all its 500 bits; it would pull the slope down if it were fitted.
        runs.push(run("size=80000", 0, bios(8e4, 500.0, 0.1)));
        let spec = ReportSpec {
            fit: Fit::Capacity,
            fit_min_rmax: Some(1.0),
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let f = c.capacity.fit.as_ref().expect("fitted");
        let sxy: f64 = binding.iter().map(|(x, y)| x * y).sum();
        let sxx: f64 = binding.iter().map(|(x, _)| x * x).sum();
        assert_eq!(f.points, 5);
        assert!(
            (f.slope.value - sxy / sxx).abs() < 1e-12,
            "{} vs {}",
            f.slope.value,
            sxy / sxx
        );
        assert_eq!(c.capacity.series.len(), 4, "every point is plotted");
        // The plot adds each point's perfect recall (open circles at its parameter count) and the fitted law
        // across the sizes, its slope the fit's.
        let drawn = capacity_series(&c.capacity);
        assert_eq!(drawn.len(), 6);
        let ceiling = &drawn[4];
        assert_eq!(ceiling.style, Style::Hollow);
        assert_eq!(ceiling.points.len(), 4);
        assert!(ceiling
            .points
            .iter()
            .any(|&(x, y)| x == 8e4 && (y - 0.1 * 8e4).abs() < 1e-6));
        let line = &drawn[5];
        assert_eq!(line.style, Style::Line);
        assert!(line
            .name
            .starts_with(&format!("fit: R = {:.2} bits/param", f.slope.value)));
        for &(x, y) in &line.points {
            assert!((y / x - f.slope.value).abs() < 1e-12);
        }
        let no_fit = compute("x", Path::new("runs/x"), &runs[..2], &spec, "").unwrap();
        assert_eq!(
            capacity_series(&no_fit.capacity).len(),
            2,
            "a point and its ceiling; no fit line"
        );
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("over 5 runs with R^max ≥ 1 (where capacity binds; 5 of 6 runs)"),
            "{md}"
        );
        // One size only: no fit, and the report says why.
        let one = compute("x", Path::new("runs/x"), &runs[..2], &spec, "").unwrap();
        assert!(one.capacity.fit.is_none());
        assert!(render_md(&one)
            .unwrap()
            .contains("No capacity-law fit yet: it needs runs at ≥ 2 model sizes"));
    }

    /// The headline t-test against the published figure, checked against Student's t with 2 degrees of freedom in
    /// closed form: for values 1, 2, 3 against 0, t = 2 / (1/√3) = √12 and P(T > t) = 1/2 − t / (2√(t² + 2)).
    #[test]
    fn the_headline_test_matches_the_closed_form_for_two_degrees_of_freedom() {
        let runs: Vec<Run> = [1.0, 2.0, 3.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| run("a", i as u64, json!({ "m": v })))
            .collect();
        let spec = ReportSpec {
            metrics: vec![MetricSpec {
                path: "m".into(),
                published: Some(0.0),
                alternative: Alternative::Greater,
                ..Default::default()
            }],
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let h = c.headline();
        assert_eq!(h.len(), 1);
        let t = h[0].test.as_ref().unwrap();
        let t0 = 12f64.sqrt();
        assert!((t.t - t0).abs() < 1e-12);
        assert_eq!(t.df, 2.0);
        let p = 0.5 - t0 / (2.0 * (t0 * t0 + 2.0).sqrt());
        assert!((t.p_value - p).abs() < 1e-9, "{} vs {p}", t.p_value);
        assert!(render_md(&c)
            .unwrap()
            .contains("H1: mean > published; t = 3.46, df = 2, p = 0.037"));
        let j: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(j["headline"][0]["stats"]["n"], 3);
        assert_eq!(j["runs"], 3);
    }

    /// `report.ratios`: the ratio seed by seed over the seeds both points finished, the ratio of the means over
    /// all seeds, and the geometric mean with a t interval on the log ratios. With two paired seeds the interval
    /// has one degree of freedom, whose 97.5% quantile is the Cauchy's, tan(0.475π), a closed form.
    #[test]
    fn ratios_between_points_are_paired_by_seed_with_a_log_t_interval() {
        use crate::recipe::RatioSpec;
        let runs = vec![
            run("a", 0, json!({ "m": 2.0 })),
            run("a", 1, json!({ "m": 3.0 })),
            run("a", 2, json!({ "m": 4.0 })), // b has no seed 2
            run("b", 0, json!({ "m": 1.0 })),
            run("b", 1, json!({ "m": 2.0 })),
            run("b", 3, json!({ "m": 5.0 })), // a has no seed 3
            run("c", 0, json!({ "m": -1.0 })),
            run("c", 1, json!({ "m": 1.0 })),
        ];
        let ratio = |num: &str, den: &str, published: Option<f64>| RatioSpec {
            metric: "m".into(),
            numerator: num.into(),
            denominator: den.into(),
            label: String::new(),
            published,
        };
        let spec = ReportSpec {
            ratios: vec![
                ratio("a", "b", Some(1.3)),
                ratio("a", "c", None),
                ratio("a", "d", Some(2.0)),
                ratio("a", "b", Some(50.0)),
            ],
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let r = &c.ratios[0];
        let per_seed: Vec<_> = r.seeds.iter().map(|s| (s.seed, s.ratio)).collect();
        assert_eq!(per_seed, vec![(0, Some(2.0)), (1, Some(1.5))]);
        // Means over every seed: a 3, b 8/3.
        assert!((r.ratio_of_means.unwrap() - 1.125).abs() < 1e-12);
        let p = r.paired.as_ref().unwrap();
        assert_eq!(p.n, 2);
        // Geometric mean √(2 · 1.5) = √3; the log ratios differ by ln(4/3), so the standard error is ln(4/3)/2.
        assert!((p.geometric_mean - 3f64.sqrt()).abs() < 1e-12);
        let half = (0.475 * std::f64::consts::PI).tan() * (4.0f64 / 3.0).ln() / 2.0;
        assert!(
            (p.ci95.0 - 3f64.sqrt() * (-half).exp()).abs() < 1e-9,
            "{:?}",
            p.ci95
        );
        assert!(
            (p.ci95.1 - 3f64.sqrt() * half.exp()).abs() < 1e-9,
            "{:?}",
            p.ci95
        );
        assert_eq!(p.published_inside, Some(true));
        assert_eq!(
            c.ratios[3].paired.as_ref().unwrap().published_inside,
            Some(false)
        );
        // A value ≤ 0 stores nothing: no ratio at that seed, none of the means (c's is 0), no interval.
        let per_seed: Vec<_> = c.ratios[1].seeds.iter().map(|s| s.ratio).collect();
        assert_eq!(per_seed, vec![None, Some(3.0)]);
        assert!(c.ratios[1].paired.is_none() && c.ratios[1].ratio_of_means.is_none());
        // A point with no run yet.
        assert!(c.ratios[2].seeds.is_empty() && c.ratios[2].ratio_of_means.is_none());
        let md = render_md(&c).unwrap();
        assert!(md.contains("## Ratios between points"), "{md}");
        assert!(
            md.contains("| a / b (`a` / `b`) | m | s0: 2.000 / 1.000 = 2.000; s1: 3.000 / 2.000 = 1.500 | 1.125 | 1.732 ("),
            "{md}"
        );
        assert!(md.contains("n = 2) | 1.3 (inside the interval) |"), "{md}");
        assert!(md.contains("| 50 (**outside** the interval) |"), "{md}");
        assert!(
            md.contains("s0: 2.000 / -1.000 = - (a value ≤ 0); s1: 3.000 / 1.000 = 3.000 | - | not defined (a value ≤ 0) | - |"),
            "{md}"
        );
        assert!(
            md.contains("| no seed finished at both points yet | - | needs two paired seeds | 2 |"),
            "{md}"
        );
        let j: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(j["ratios"][0]["seeds"][1]["ratio"], json!(1.5));
        assert!(
            (j["ratios"][0]["paired"]["geometric_mean"].as_f64().unwrap() - 3f64.sqrt()).abs()
                < 1e-12
        );
        // No ratios asked: no section, no key.
        let c = compute("x", Path::new("runs/x"), &runs, &ReportSpec::default(), "").unwrap();
        assert!(!render_md(&c).unwrap().contains("Ratios"));
        let j: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert!(j.get("ratios").is_none());
    }

    /// A headline metric whose path matches nothing is an error naming it; one for a point not yet run is a row
    /// saying so, and enters neither the tests nor report.json.
    #[test]
    fn headline_metrics_that_match_nothing_or_wait_for_a_run() {
        let runs = vec![run("a", 0, json!({ "m": 1.0 }))];
        let spec = |path: &str, point: &str| ReportSpec {
            metrics: vec![MetricSpec {
                path: path.into(),
                point: point.into(),
                published: Some(2.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = compute("x", Path::new("runs/x"), &runs, &spec("mm", ""), "")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("path \"mm\"") && e.contains("matches nothing"),
            "{e}"
        );
        let c = compute("x", Path::new("runs/x"), &runs, &spec("m", "b"), "").unwrap();
        assert!(c.headline().is_empty());
        assert!(render_md(&c)
            .unwrap()
            .contains("| m | `b` | no finished run yet | 2 | - |"));
        assert!(compute("x", Path::new("runs/x"), &[], &spec("m", ""), "").is_err());
    }

    /// The excess-loss power law recovers an exact exponent, and a run below the entropy (excess ≤ 0) is counted
    /// and left out of the fit.
    #[test]
    fn the_excess_power_law_recovers_its_exponent_and_leaves_out_negative_excess() {
        let mut runs: Vec<Run> = [1e3, 1e4, 1e5]
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                run(
                    &format!("d={i}"),
                    0,
                    json!({ "data_tokens": d, "corpus": { "excess_bits_per_token": 3.0 * f64::powf(d, -0.4) } }),
                )
            })
            .collect();
        runs.push(run(
            "d=3",
            0,
            json!({ "data_tokens": 1e6, "corpus": { "excess_bits_per_token": -0.01 } }),
        ));
        let spec = ReportSpec {
            fit: Fit::Data,
            expected_exponent: Some(0.4),
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let e = c.excess.as_ref().unwrap();
        assert_eq!(e.excluded, 1);
        let f = e.fit.as_ref().unwrap();
        assert_eq!(f.points, 3);
        assert!(
            (f.exponent.value - 0.4).abs() < 1e-9,
            "{}",
            f.exponent.value
        );
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("**1 run(s) measured a loss below the entropy rate**"),
            "{md}"
        );
        assert!(md.contains("theory: a = 0.4000"), "{md}");
        // The csv: a header and one line per run, an empty cell where a run lacks the column.
        let csv = render_csv(&c).unwrap();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.lines().nth(1).unwrap().starts_with("\"d=0\",0,"));
    }

    /// `fit_excess` and `fit_params` choose what is fitted: the early-stopped excess (exponent 0.5 here) over
    /// the end-of-training one (exponent 0.2), against the non-embedding count (0.5) rather than the capacity
    /// count (which would give another slope: it is not proportional to the non-embedding one here).
    #[test]
    fn the_fit_reads_the_excess_and_the_count_the_recipe_names() {
        let runs: Vec<Run> = [1e3, 1e4, 1e5]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                run(
                    &format!("n={i}"),
                    0,
                    json!({
                        "corpus": { "excess_bits_per_token": f64::powf(n, -0.2),
                                    "params": { "capacity": n + 5000.0, "non_embedding": n } },
                        "early_stopping": { "excess_bits_per_token": 2.0 * f64::powf(n, -0.5) },
                    }),
                )
            })
            .collect();
        let fit = |excess: Option<&str>, params: Option<&str>| {
            let spec = ReportSpec {
                fit: Fit::Params,
                fit_excess: excess.map(str::to_string),
                fit_params: params.map(str::to_string),
                ..Default::default()
            };
            let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
            let a = c
                .excess
                .as_ref()
                .unwrap()
                .fit
                .as_ref()
                .unwrap()
                .exponent
                .value;
            (a, render_md(&c).unwrap())
        };
        let (a, md) = fit(
            Some("early_stopping.excess_bits_per_token"),
            Some("corpus.params.non_embedding"),
        );
        assert!((a - 0.5).abs() < 1e-9, "{a}");
        assert!(md.contains("The excess is `early_stopping.excess_bits_per_token`, x is `corpus.params.non_embedding`"), "{md}");
        let (a, _) = fit(None, Some("corpus.params.non_embedding"));
        assert!((a - 0.2).abs() < 1e-9, "{a}");
        let (a, _) = fit(Some("early_stopping.excess_bits_per_token"), None);
        assert!(
            (a - 0.5).abs() > 0.05,
            "the capacity count is not the non-embedding one: {a}"
        );
    }

    /// `also_fit`: other metrics as power laws y ∝ x^b of the excess fit's x, the slope signed (a count that grows
    /// with the parameters has b > 0), runs with a missing or non-positive y left out of that fit only, fewer
    /// than 3 usable runs no fit; in report.md's table and report.json's `also_power_laws`.
    #[test]
    fn also_fit_fits_other_metrics_against_the_same_x() {
        let runs: Vec<Run> = [1e3, 4e3, 1.6e4, 6.4e4]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                // `held` grows as n^1 (and is 0 at the last run: left out), `loss` falls as n^-0.5 times a
                // scatter that makes the fit inexact; `sparse` exists on two runs only.
                let wobble = [1.0, 1.1, 0.95, 1.05][i];
                let mut facts = json!({ "held": if i == 3 { 0.0 } else { 0.02 * n },
                                        "loss": 300.0 * f64::powf(n, -0.5) * wobble });
                if i < 2 {
                    facts["sparse"] = json!(n);
                }
                run(
                    &format!("n={i}"),
                    0,
                    json!({ "corpus": { "excess_bits_per_token": 10.0 * f64::powf(n, -0.5), "params": { "total": n } },
                            "facts": facts }),
                )
            })
            .collect();
        let also = |path: &str, expected: Option<f64>| crate::recipe::AlsoFitSpec {
            path: path.into(),
            label: if path == "facts.held" {
                "facts held".into()
            } else {
                String::new()
            },
            expected_slope: expected,
        };
        let spec = ReportSpec {
            fit: Fit::Params,
            fit_params: Some("corpus.params.total".into()),
            also_fit: vec![
                also("facts.held", Some(1.0)),
                also("facts.loss", None),
                also("facts.sparse", None),
            ],
            ..Default::default()
        };
        let c = compute("x", Path::new("runs/x"), &runs, &spec, "").unwrap();
        let a = &c.excess.as_ref().unwrap().also;
        assert_eq!(a.len(), 3);
        let held = a[0].slope.as_ref().unwrap();
        assert_eq!(a[0].runs, 3);
        assert!((held.value - 1.0).abs() < 1e-9, "{}", held.value);
        assert!(held.ci95.0 <= held.value && held.value <= held.ci95.1);
        // The loss's slope by hand: least squares of ln y on ln x over the four runs.
        let lx: Vec<f64> = [1e3f64, 4e3, 1.6e4, 6.4e4].iter().map(|v| v.ln()).collect();
        let ly: Vec<f64> = [1e3f64, 4e3, 1.6e4, 6.4e4]
            .iter()
            .zip([1.0, 1.1, 0.95, 1.05])
            .map(|(n, w)| (300.0 * n.powf(-0.5) * w).ln())
            .collect();
        let (mx, my) = (lx.iter().sum::<f64>() / 4.0, ly.iter().sum::<f64>() / 4.0);
        let b = lx
            .iter()
            .zip(&ly)
            .map(|(x, y)| (x - mx) * (y - my))
            .sum::<f64>()
            / lx.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
        let loss = a[1].slope.as_ref().unwrap();
        assert!((loss.value - b).abs() < 1e-9, "{} against {b}", loss.value);
        assert!(loss.value < 0.0 && loss.std_error > 0.0 && a[1].r2.unwrap() < 1.0);
        assert_eq!(a[1].label, "facts.loss");
        assert_eq!((a[2].runs, a[2].slope.is_none()), (2, true));
        let md = render_md(&c).unwrap();
        assert!(
            md.contains("Other metrics against the same x (`corpus.params.total`)"),
            "{md}"
        );
        assert!(
            md.contains("| facts held (`facts.held`) | **1.0000**"),
            "{md}"
        );
        assert!(md.contains("| 3 | 1.0000 |"), "{md}");
        assert!(
            md.contains("| facts.sparse (`facts.sparse`) | no fit"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert_eq!(json["also_power_laws"].as_array().unwrap().len(), 3);
        assert!(
            (json["also_power_laws"][0]["slope"]["value"]
                .as_f64()
                .unwrap()
                - 1.0)
                .abs()
                < 1e-9
        );
        assert_eq!(json["also_power_laws"][0]["expected_slope"], json!(1.0));
        // Without also_fit, report.json has no such key.
        let plain = ReportSpec {
            also_fit: Vec::new(),
            ..spec
        };
        let c = compute("x", Path::new("runs/x"), &runs, &plain, "").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&render_json(&c).unwrap()).unwrap();
        assert!(json.get("also_power_laws").is_none());
    }

    /// The held-out excess curves of early stopping: averaged over seeds per point and step, plotted (test curve
    /// only) and named in report.md.
    #[test]
    fn excess_curves_are_averaged_over_seeds_and_plotted() {
        let with = |seed: u64, v: f64| {
            let mut r = run(
                "d=1",
                seed,
                json!({ "corpus": { "excess_bits_per_token": v } }),
            );
            r.excess_curve
                .insert("held_out".into(), vec![(0.0, 5.0), (10.0, v)]);
            r.excess_curve
                .insert("validation".into(), vec![(0.0, 5.0), (10.0, v + 0.1)]);
            r
        };
        let runs = vec![with(0, 1.0), with(1, 2.0)];
        let c = compute("x", Path::new("runs/x"), &runs, &ReportSpec::default(), "").unwrap();
        let held: Vec<&super::AccuracyCurve> = c
            .excess_curves
            .iter()
            .filter(|a| a.stream == "held_out")
            .collect();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].seeds, 2);
        assert_eq!(held[0].points, vec![(0.0, 5.0), (10.0, 1.5)]);
        assert_eq!(c.excess_curves.len(), 2, "validation too");
        assert!(super::plots(&c)
            .iter()
            .any(|(n, _)| *n == "excess-curve.svg"));
        assert!(render_md(&c)
            .unwrap()
            .contains("## Held-out excess against the step"));
    }

    /// The drop is read between the first logged step at or after 90% of the run and the last: a curve falling
    /// from 2.0 to 1.9 there has fallen 5%; a flat one 0; a run with one logged step has no tenth to read.
    #[test]
    fn the_loss_drop_over_the_last_tenth() {
        let run = |curve: Vec<(f64, f64)>| Run {
            point: String::new(),
            seed: 0,
            eval: serde_json::Value::Null,
            curve,
            accuracy: Default::default(),
            excess_curve: Default::default(),
            routing: Default::default(),
            recorded: Default::default(),
        };
        let falling: Vec<(f64, f64)> = (1..=20)
            .map(|i| {
                (
                    i as f64 * 50.0,
                    if i >= 18 {
                        2.0 - 0.05 * (i - 18) as f64
                    } else {
                        3.0
                    },
                )
            })
            .collect();
        // 90% of 1,000 is step 900 (i = 18, loss 2.0); the last is 1.9.
        assert!((loss_drop_last_tenth(&run(falling)).unwrap() - 5.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (1..=20).map(|i| (i as f64 * 50.0, 1.5)).collect();
        assert_eq!(loss_drop_last_tenth(&run(flat)), Some(0.0));
        assert_eq!(loss_drop_last_tenth(&run(vec![(10.0, 2.0)])), None);
    }

    #[test]
    fn numbers_in_point_names_sort_by_value() {
        let mut v = vec!["d_model=16", "d_model=128", "d_model=8", "s10", "s2", "a"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(
            v,
            ["a", "d_model=8", "d_model=16", "d_model=128", "s2", "s10"]
        );
        // Decimals by value: leading zeros after the point count (0.0001 < 0.001), exponents too, and a dot or an
        // `e` not followed by a digit is text.
        let mut v = vec![
            "lr=0.001,multi=5",
            "lr=0.0001,multi=5",
            "lr=0.001,multi=1",
            "lr=0.0003,multi=1",
            "lr=0.0001,multi=1",
            "lr=2e-3",
            "lr=0.0015",
        ];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(
            v,
            [
                "lr=0.0001,multi=1",
                "lr=0.0001,multi=5",
                "lr=0.0003,multi=1",
                "lr=0.001,multi=1",
                "lr=0.001,multi=5",
                "lr=0.0015",
                "lr=2e-3",
            ]
        );
        let mut v = vec![
            "preset=gpt2-3-1",
            "preset=gpt2-2-1",
            "f=1.5",
            "f=1.25",
            "x2e",
            "x1e",
            "y1.",
        ];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(
            v,
            [
                "f=1.25",
                "f=1.5",
                "preset=gpt2-2-1",
                "preset=gpt2-3-1",
                "x1e",
                "x2e",
                "y1."
            ]
        );
    }
}
