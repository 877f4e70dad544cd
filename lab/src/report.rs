//! `physlab report <experiment>`: reads every finished run of `runs/<experiment>/<point>/s<seed>/` and writes
//! `report.md` (statistics over seeds per point, the headline metrics against the published figures with a
//! one-sided t-test, the capacity-law fit), `summary.csv` (one line per run), `report.json` and SVG plots (loss
//! curves; bits against parameters with the 2- and 1-bit/param lines).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use physlab_eval::fit::{proportional, ProportionalFit};
use physlab_eval::plot::{Plot, Series, Style};
use physlab_eval::stats::{SeedStats, TTest};
use serde::Serialize;
use serde_json::Value;

use crate::recipe::{Fit, MetricSpec, ReportSpec};

/// One finished run.
struct Run {
    point: String,
    seed: u64,
    eval: Value,
    /// (step, loss), the last line of each step.
    curve: Vec<(f64, f64)>,
    /// The accuracy curves of curve.jsonl (`train.eval_every`): stream → (step, exact-match accuracy).
    accuracy: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Looks `path` up in eval.json: dotted keys; inside an array, the element whose `stream`, `attribute` or `name`
/// equals the segment.
pub fn lookup(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.iter().find(|e| {
                ["stream", "attribute", "name"]
                    .iter()
                    .any(|k| e.get(k).and_then(Value::as_str) == Some(seg))
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

/// The `<stream>/accuracy` values of a run's curve.jsonl by stream, as (step, accuracy), the last line of each
/// step; empty when the run made no curve.
fn read_accuracy(path: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
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
            if let (Some(stream), Some(a)) = (k.strip_suffix("/accuracy"), v.as_f64()) {
                by.entry(stream.to_string()).or_default().insert(step, a);
            }
        }
    }
    by.into_iter()
        .map(|(k, m)| (k, m.into_iter().map(|(s, a)| (s as f64, a)).collect()))
        .collect()
}

/// A sort key that orders the numbers inside names by value: `d_model=8` before `d_model=16`, `s2` before `s10`.
fn natural_key(s: &str) -> Vec<(String, u128)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let mut n: u128 = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as u128);
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
            chars.next();
        }
    }
    key.push((text, 0));
    key
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
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&pdir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with('s') && n[1..].parse::<u64>().is_ok())
            })
            .collect();
        seeds.sort_by_key(|p| natural_key(&p.to_string_lossy()));
        for sdir in seeds {
            if !sdir.join("DONE").exists() {
                continue;
            }
            let seed = sdir.file_name().unwrap().to_string_lossy()[1..]
                .parse()
                .unwrap_or(0);
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
            runs.push(Run {
                point: point.clone(),
                seed,
                eval,
                curve: read_curve(&sdir.join("metrics.jsonl")),
                accuracy: read_accuracy(&sdir.join(physlab_trainer::train::CURVE_FILE)),
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
    cols.push(c("corpus: data tokens", "data_tokens", 0));
    cols.push(c("final training loss (nats/token)", "train.final_loss", 3));
    cols.push(Column {
        label: "training loss still falling over the last 10% of steps (%)".into(),
        path: None,
        digits: 2,
        derived: Some(loss_drop_last_tenth),
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
        None => mean_whole_value(&run.eval),
    }
}

#[derive(Serialize)]
struct Headline {
    metric: String,
    path: String,
    point: String,
    stats: SeedStats,
    published: Option<f64>,
    test: Option<TTest>,
}

#[derive(Serialize)]
struct ReportJson {
    experiment: String,
    row: String,
    claim: String,
    runs: usize,
    points: BTreeMap<String, BTreeMap<String, SeedStats>>,
    headline: Vec<Headline>,
    capacity_law: Option<ProportionalFit>,
    memorization_law: Option<ProportionalFit>,
    excess_power_law: Option<physlab_eval::fit::PowerLawFit>,
}

fn fmt(v: f64, digits: usize) -> String {
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
fn auto_digits(v: f64) -> usize {
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

fn stats_cell(s: &SeedStats, digits: usize) -> String {
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

/// Writes the report of `experiment` into `runs/<experiment>/` and returns the text of report.md.
pub fn report(
    experiment: &str,
    runs_dir: &Path,
    spec: &ReportSpec,
    description: &str,
) -> Result<String> {
    let dir = runs_dir.join(experiment);
    let runs = collect_runs(&dir)?;
    let cols = columns(&runs, spec);
    let mut points: Vec<String> = runs.iter().map(|r| r.point.clone()).collect();
    points.dedup();

    // Statistics per point and column.
    let mut table: BTreeMap<String, BTreeMap<String, SeedStats>> = BTreeMap::new();
    for p in &points {
        let mine: Vec<&Run> = runs.iter().filter(|r| &r.point == p).collect();
        for c in &cols {
            let vals: Vec<f64> = mine.iter().filter_map(|r| value(r, c)).collect();
            if let Some(s) = SeedStats::of(&vals) {
                table
                    .entry(p.clone())
                    .or_default()
                    .insert(c.label.clone(), s);
            }
        }
    }

    let mut md = String::new();
    writeln!(md, "# Report: {experiment}\n")?;
    if !description.is_empty() {
        writeln!(md, "{description}\n")?;
    }
    if !spec.row.is_empty() || !spec.claim.is_empty() {
        writeln!(
            md,
            "SPEC §5 row {}: **published:** {}\n",
            spec.row, spec.claim
        )?;
    }
    let seeds_of = |p: &str| -> String {
        runs.iter()
            .filter(|r| r.point == p)
            .map(|r| r.seed.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        md,
        "{} finished run(s) in `{}`; points: {}.\n",
        runs.len(),
        dir.display(),
        points
            .iter()
            .map(|p| format!("`{p}` (seeds {})", seeds_of(p)))
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    // Headline metrics against the published figures.
    let mut headline = Vec::new();
    if !spec.metrics.is_empty() {
        writeln!(md, "## Headline\n")?;
        writeln!(
            md,
            "| metric | point | ours: mean ± std (n) | published | one-sided t-test |"
        )?;
        writeln!(md, "|---|---|---|---|---|")?;
        for m in &spec.metrics {
            // A path that no finished run has is a mistake in the recipe, not a row to drop quietly.
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
            if !m.point.is_empty() && !points.contains(&m.point) {
                writeln!(
                    md,
                    "| {} | `{}` | no finished run yet | {} | - |",
                    label_of(m),
                    m.point,
                    m.published.map_or("-".into(), |v| format!("{v}")),
                )?;
                continue;
            }
            for p in points
                .iter()
                .filter(|p| m.point.is_empty() || **p == m.point)
            {
                let vals: Vec<f64> = runs
                    .iter()
                    .filter(|r| &r.point == p)
                    .filter_map(|r| lookup(&r.eval, &m.path))
                    .collect();
                let Some(s) = SeedStats::of(&vals) else {
                    continue;
                };
                let test = m.published.and_then(|pb| s.t_test(pb, m.alternative));
                let test_cell = match (&test, m.published) {
                    (Some(t), _) => format!(
                        "H1: mean {} published; t = {:.2}, df = {}, p = {}",
                        match m.alternative {
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
                    "| {} | `{p}` | {} | {} | {test_cell} |",
                    label_of(m),
                    stats_cell(&s, auto_digits(s.mean)),
                    m.published.map_or("-".into(), |v| format!("{v}")),
                )?;
                headline.push(Headline {
                    metric: label_of(m),
                    path: m.path.clone(),
                    point: p.clone(),
                    stats: s,
                    published: m.published,
                    test,
                });
            }
        }
        writeln!(md)?;
    }

    // Everything measured, per point.
    writeln!(md, "## Per point (mean ± sample std over seeds)\n")?;
    write!(md, "| metric |")?;
    for p in &points {
        write!(md, " `{p}` |")?;
    }
    writeln!(md)?;
    write!(md, "|---|")?;
    for _ in &points {
        write!(md, "---|")?;
    }
    writeln!(md)?;
    for c in &cols {
        if !points
            .iter()
            .any(|p| table.get(p).is_some_and(|t| t.contains_key(&c.label)))
        {
            continue;
        }
        write!(md, "| {} |", c.label)?;
        for p in &points {
            match table.get(p).and_then(|t| t.get(&c.label)) {
                Some(s) => write!(md, " {} |", stats_cell(s, c.digits))?,
                None => write!(md, " - |")?,
            }
        }
        writeln!(md)?;
    }
    writeln!(md)?;

    // Capacity: bits against parameters, and the capacity-law fit when sizes differ.
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let capacity_point = |r: &Run| -> Option<(f64, f64)> {
        Some((
            knowledge(&r.eval, "params.capacity")?,
            knowledge(&r.eval, "bits")?,
        ))
    };
    let caps: Vec<(f64, f64)> = runs.iter().filter_map(capacity_point).collect();
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
            " with R^max ≥ {m} (where capacity binds; {} of {} runs)",
            fitted.len(),
            caps.len()
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
    if let Some(f) = &capacity_law {
        writeln!(md, "## Capacity law\n")?;
        writeln!(
            md,
            "bits = R · parameters (counted for capacity), least squares through the origin over {} runs{which}: \
             **R = {:.4} bits/param** (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}).\n",
            f.points, f.slope.value, f.slope.std_error, f.slope.ci95.0, f.slope.ci95.1, f.r2
        )?;
    } else if spec.fit == Fit::Capacity {
        writeln!(
            md,
            "No capacity-law fit yet: it needs runs at ≥ 2 model sizes{which}.\n"
        )?;
    }
    if !caps.is_empty() {
        let mut series = Vec::new();
        for p in &points {
            let mine: Vec<(f64, f64)> = runs
                .iter()
                .filter(|r| &r.point == p)
                .filter_map(capacity_point)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let bits: Vec<f64> = mine.iter().map(|m| m.1).collect();
            let s = SeedStats::of(&bits).expect("non-empty");
            series.push(Series {
                name: format!("{p} (mean ± std, n = {})", s.n),
                points: vec![(mine[0].0, s.mean)],
                error: Some(vec![s.std]),
                style: Style::Points,
            });
        }
        let plot = Plot {
            title: format!("{experiment}: bits of knowledge vs parameters"),
            x_label: "parameters (counted for capacity)".into(),
            y_label: "bits of knowledge".into(),
            log_x: true,
            log_y: true,
            series,
            guides: vec![("2 bits/param".into(), 2.0), ("1 bit/param".into(), 1.0)],
        };
        plot.write_svg(&plots.join("capacity.svg"), 800, 560)
            .map_err(anyhow::Error::msg)?;
        writeln!(md, "![bits vs parameters](plots/capacity.svg)\n")?;
    }

    // Corpus runs: memorized bits against parameters; excess loss against data or parameters.
    let mem: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            Some((
                lookup(&r.eval, "corpus.params.capacity")?,
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
    if let Some(f) = &memorization_law {
        writeln!(
            md,
            "## Memorization capacity\n\nmemorized bits = k · parameters, least squares through the origin over {} runs: \
             **k = {:.4} bits/param** (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}).\n",
            f.points, f.slope.value, f.slope.std_error, f.slope.ci95.0, f.slope.ci95.1, f.r2
        )?;
    }
    let mut excess_fit = None;
    if matches!(spec.fit, Fit::Data | Fit::Params) {
        let xpath = if spec.fit == Fit::Data {
            "data_tokens"
        } else {
            "corpus.params.capacity"
        };
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|r| {
                Some((
                    lookup(&r.eval, xpath)?,
                    lookup(&r.eval, "corpus.excess_bits_per_token")?,
                ))
            })
            .collect();
        let positive: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1 > 0.0).collect();
        if positive.len() < pts.len() {
            writeln!(
                md,
                "**{} run(s) measured a loss below the entropy rate** (excess ≤ 0): left out of the fit; \
                 a loss below H means a bug or too few tokens scored.\n",
                pts.len() - positive.len()
            )?;
        }
        let (x, y): (Vec<f64>, Vec<f64>) = positive.iter().copied().unzip();
        let what = if spec.fit == Fit::Data {
            "training tokens D"
        } else {
            "parameters N"
        };
        match physlab_eval::fit::power_law(&x, &y) {
            Some(f) => {
                writeln!(
                    md,
                    "## Power law\n\nexcess loss = c · {what}^−a, least squares on logs over {} runs: **a = {:.4}** \
                     (standard error {:.4}; 95% CI {:.4} – {:.4}; R² {:.3}){}.\n",
                    f.points,
                    f.exponent.value,
                    f.exponent.std_error,
                    f.exponent.ci95.0,
                    f.exponent.ci95.1,
                    f.r2,
                    spec.expected_exponent
                        .map(|e| format!("; theory: a = {e:.4}"))
                        .unwrap_or_default()
                )?;
                let mut series = vec![Series {
                    name: "runs".into(),
                    points: positive.clone(),
                    error: None,
                    style: Style::Points,
                }];
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
                    });
                }
                Plot {
                    title: format!("{experiment}: excess loss over the entropy"),
                    x_label: what.into(),
                    y_label: "excess loss (bits/token)".into(),
                    log_x: true,
                    log_y: true,
                    series,
                    guides: Vec::new(),
                }
                .write_svg(&plots.join("excess.svg"), 800, 560)
                .map_err(anyhow::Error::msg)?;
                writeln!(md, "![excess loss](plots/excess.svg)\n")?;
                excess_fit = Some(f);
            }
            None => writeln!(
                md,
                "No power-law fit: it needs ≥ 3 runs with a positive excess loss.\n"
            )?,
        }
    }

    // Loss curves: the mean over seeds of each point.
    let mut series = Vec::new();
    for p in &points {
        let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in runs.iter().filter(|r| &r.point == p) {
            for &(s, l) in &r.curve {
                by_step.entry(s as u64).or_default().push(l);
            }
        }
        if by_step.is_empty() {
            continue;
        }
        let n = runs.iter().filter(|r| &r.point == p).count();
        series.push(Series {
            name: format!("{p} (mean of {n} seed(s))"),
            points: by_step
                .into_iter()
                .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
                .collect(),
            error: None,
            style: Style::Line,
        });
    }
    if !series.is_empty() {
        Plot {
            title: format!("{experiment}: training loss"),
            x_label: "step".into(),
            y_label: "loss (nats/token)".into(),
            log_x: false,
            log_y: true,
            series,
            guides: Vec::new(),
        }
        .write_svg(&plots.join("loss.svg"), 800, 560)
        .map_err(anyhow::Error::msg)?;
        writeln!(md, "![training loss](plots/loss.svg)\n")?;
    }

    // Accuracy curves (train.eval_every): exact match against the step, per point and stream, mean over seeds.
    let mut series = Vec::new();
    let mut curve_rows = String::new();
    for p in &points {
        let of_point: Vec<&Run> = runs.iter().filter(|r| &r.point == p).collect();
        let streams: BTreeSet<&String> = of_point.iter().flat_map(|r| r.accuracy.keys()).collect();
        for stream in streams {
            let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for r in &of_point {
                for &(s, a) in r.accuracy.get(stream).into_iter().flatten() {
                    by_step.entry(s as u64).or_default().push(a);
                }
            }
            let points: Vec<(f64, f64)> = by_step
                .into_iter()
                .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            writeln!(
                curve_rows,
                "| {p} | {stream} | {} |",
                points
                    .iter()
                    .map(|(s, a)| format!("{s:.0}: {:.1}%", 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            series.push(Series {
                name: format!("{p}: {stream} (mean of {} seed(s))", of_point.len()),
                points,
                error: None,
                style: Style::Line,
            });
        }
    }
    if !series.is_empty() {
        Plot {
            title: format!("{experiment}: exact-match accuracy while training"),
            x_label: "step".into(),
            y_label: "accuracy".into(),
            log_x: false,
            log_y: false,
            series,
            guides: Vec::new(),
        }
        .write_svg(&plots.join("accuracy.svg"), 800, 560)
        .map_err(anyhow::Error::msg)?;
        writeln!(
            md,
            "## Accuracy against the step\n\nGreedy exact match on the first questions of each stream (`eval.curve_questions`), every `train.eval_every` steps; mean over seeds.\n\n![accuracy while training](plots/accuracy.svg)\n\n| point | stream | step: accuracy |\n|---|---|---|\n{curve_rows}"
        )?;
    }

    // summary.csv: one line per run.
    let mut csv = String::from("point,seed");
    for c in &cols {
        write!(csv, ",\"{}\"", c.label.replace('"', "'"))?;
    }
    csv.push('\n');
    for r in &runs {
        write!(csv, "\"{}\",{}", r.point, r.seed)?;
        for c in &cols {
            match value(r, c) {
                Some(v) => write!(csv, ",{v}")?,
                None => csv.push(','),
            }
        }
        csv.push('\n');
    }
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        physlab_generators::fsio::atomic_write(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))
    };
    write("summary.csv", csv.as_bytes())?;
    let json = ReportJson {
        experiment: experiment.into(),
        row: spec.row.clone(),
        claim: spec.claim.clone(),
        runs: runs.len(),
        points: table,
        headline,
        capacity_law,
        memorization_law,
        excess_power_law: excess_fit,
    };
    write("report.json", &serde_json::to_vec_pretty(&json)?)?;
    write("report.md", md.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::{loss_drop_last_tenth, natural_key, Run};

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
    }
}
