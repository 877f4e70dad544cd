//! `physlab index`: one page over the committed results. Each `results/<experiment>/report.json` (written by
//! `physlab report`, copied by scripts/publish-results.sh) gives a line: the SPEC row it backs, its runs, its
//! headline figures beside the published ones, and its law (capacity fit, plateau, power law, the check against a
//! reference run, ratios between points), with a link to its report. Ordered by row, so a reader of the README's
//! table finds the folder behind each number. Reads report.json only; writes `results/INDEX.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use physlab_eval::stats::SeedStats;
use serde_json::Value;

use crate::report::{auto_digits, fmt, stats_cell};

/// The file `physlab index` writes in the results folder.
pub const INDEX_FILE: &str = "INDEX.md";

/// One experiment's line.
struct Entry {
    experiment: String,
    row: String,
    runs: Option<u64>,
    headline: Vec<String>,
    law: Vec<String>,
}

/// The leading number of a SPEC row ("9–11 (full finetune)" → 9), for ordering; rows without one go last.
fn row_key(row: &str) -> u64 {
    let digits: String = row.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(u64::MAX)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn ci(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    Some((num(a.first()?)?, num(a.get(1)?)?))
}

fn r3(v: f64) -> String {
    format!("{v:.3}")
}

/// A `{ "value", "ci95" }` estimate as "v (95% CI a–b)".
fn estimate(v: &Value) -> Option<String> {
    let value = num(&v["value"])?;
    Some(match ci(&v["ci95"]) {
        Some((a, b)) => format!("{} (95% CI {}–{})", r3(value), r3(a), r3(b)),
        None => r3(value),
    })
}

fn entry(experiment: &str, j: &Value) -> Entry {
    let mut headline = Vec::new();
    let rows: &[Value] = j["headline"].as_array().map_or(&[], Vec::as_slice);
    for h in rows {
        let Ok(stats) = serde_json::from_value::<SeedStats>(h["stats"].clone()) else {
            continue;
        };
        let published = num(&h["published"])
            .map(|p| format!(" (published {p})"))
            .unwrap_or_default();
        // A metric given at every point names the point.
        let metric = h["metric"].as_str().unwrap_or("?");
        let point = match h["point"].as_str() {
            Some(p) if rows.iter().filter(|o| o["metric"] == h["metric"]).count() > 1 => {
                format!(" `{p}`")
            }
            _ => String::new(),
        };
        headline.push(format!(
            "{metric}{point}: {}{published}",
            stats_cell(&stats, auto_digits(stats.mean))
        ));
    }
    let mut law = Vec::new();
    for (key, name) in [
        ("capacity_law", "capacity law R"),
        ("memorization_law", "memorization law"),
    ] {
        if let Some(e) = estimate(&j[key]["slope"]) {
            let runs = num(&j[key]["points"])
                .map(|n| format!(", {n} runs"))
                .unwrap_or_default();
            law.push(format!("{name} = {e} bits/param{runs}"));
        }
    }
    let plateau = &j["memorization_plateau"];
    if let Ok(s) = serde_json::from_value::<SeedStats>(plateau["bits_per_param"].clone()) {
        let interval = ci(&plateau["ci95"])
            .map(|(a, b)| format!(" (95% CI {}–{})", r3(a), r3(b)))
            .unwrap_or_default();
        law.push(format!(
            "plateau {} bits/param{interval} over {} run(s)",
            r3(s.mean),
            s.n
        ));
    }
    if let Some(e) = estimate(&j["excess_power_law"]["exponent"]) {
        law.push(format!("power-law exponent {e}"));
    }
    let reference = &j["reference"];
    for r in reference["rows"].as_array().into_iter().flatten() {
        let experiment = reference["experiment"].as_str().unwrap_or("?");
        let Some(change) = num(&r["change_pct"]) else {
            // A reference ≤ 0 has no percent and no verdict: the difference alone (report.rs's ReferenceRow).
            if let Some(d) = num(&r["difference"]) {
                law.push(format!(
                    "against {experiment} (s{}): {d:+.3} (the reference is ≤ 0: no percent)",
                    r["seed"]
                ));
            }
            continue;
        };
        let verdict = match r["within"].as_bool() {
            Some(true) => "met",
            Some(false) => "not met",
            None => "-",
        };
        law.push(format!(
            "against {experiment} (s{}): {change:+.2}%, within ±{}%: {verdict}",
            r["seed"],
            num(&reference["tolerance_pct"]).unwrap_or(f64::NAN),
        ));
    }
    for r in j["ratios"].as_array().into_iter().flatten() {
        let ours = num(&r["paired"]["geometric_mean"]).or_else(|| num(&r["ratio_of_means"]));
        let Some(ours) = ours else {
            continue;
        };
        let seeds = r["seeds"].as_array().map_or(0, Vec::len);
        let published = num(&r["published"])
            .map(|p| format!(" (published {p})"))
            .unwrap_or_default();
        law.push(format!(
            "{}: {} over {seeds} seed(s){published}",
            r["label"].as_str().unwrap_or("ratio"),
            r3(ours)
        ));
    }
    Entry {
        experiment: experiment.to_string(),
        row: j["row"].as_str().unwrap_or_default().to_string(),
        runs: j["runs"].as_u64(),
        headline,
        law,
    }
}

/// INDEX.md's text over `results` (every subfolder with a report.json; the others are named at the end). A
/// report.json that cannot be read or parsed is an error naming it.
pub fn render(results: &Path) -> Result<String> {
    let mut entries = Vec::new();
    let mut other = Vec::new();
    let dir =
        std::fs::read_dir(results).with_context(|| format!("reading {}", results.display()))?;
    for e in dir {
        let e = e.with_context(|| format!("reading {}", results.display()))?;
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path().join("report.json");
        if !path.is_file() {
            other.push(name);
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let j: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a report.json ({e})", path.display()))?;
        if !j.is_object() {
            anyhow::bail!("{}: not a report.json (not a JSON object)", path.display());
        }
        entries.push(entry(&name, &j));
    }
    entries.sort_by(|a, b| (row_key(&a.row), &a.experiment).cmp(&(row_key(&b.row), &b.experiment)));
    other.sort();
    let mut md = String::new();
    writeln!(md, "# Results index\n")?;
    writeln!(
        md,
        "Written by `physlab index` from each `<experiment>/report.json` here (`physlab report`, copied by \
         `scripts/publish-results.sh`); do not edit by hand. Ordered by the SPEC §5 row each experiment backs; \
         mean ± sample std over seeds (n). The README's results table says what each row's figures mean.\n"
    )?;
    writeln!(
        md,
        "| SPEC row | experiment | runs | headline | law / check |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    let cell = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join("<br>").replace('|', "\\|")
        }
    };
    for e in &entries {
        writeln!(
            md,
            "| {} | [{}]({}/report.md) | {} | {} | {} |",
            if e.row.is_empty() { "-" } else { &e.row },
            e.experiment,
            e.experiment,
            e.runs.map_or("-".into(), |n| fmt(n as f64, 0)),
            cell(&e.headline),
            cell(&e.law)
        )?;
    }
    if !other.is_empty() {
        writeln!(
            md,
            "\nFolders without a report.json: {}.",
            other
                .iter()
                .map(|o| format!("[{o}]({o}/)"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(md)
}

/// Writes `results/INDEX.md` (atomically) and returns its path.
pub fn write(results: &Path) -> Result<PathBuf> {
    let md = render(results)?;
    let path = results.join(INDEX_FILE);
    physlab_generators::fsio::atomic_write(&path, md.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(dir: &Path, name: &str, j: &Value) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(
            dir.join(name).join("report.json"),
            serde_json::to_vec(j).unwrap(),
        )
        .unwrap();
    }

    /// Each report.json gives its line, in row order (a row's leading number; "9–11" after "1 (check)"), with its
    /// headline figures, its law and checks; a folder without one is named; a damaged one is an error naming it.
    #[test]
    fn the_index_lists_each_report_by_row_with_its_figures() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(
            r,
            "cap",
            &json!({ "row": "1", "runs": 16, "headline": [
                { "metric": "R (bits/param)", "stats": { "n": 2, "mean": 1.8, "std": 0.05, "min": 1.75, "max": 1.85 }, "published": 2.0 }
            ], "capacity_law": { "slope": { "value": 1.7998, "std_error": 0.05, "ci95": [1.6506, 1.9489] }, "points": 5, "r2": 0.78 } }),
        );
        put(
            r,
            "cap-check",
            &json!({ "row": "1 (convergence check)", "runs": 1, "headline": [], "reference": {
                "experiment": "cap", "tolerance_pct": 5.0, "rows": [
                    { "seed": 0, "change_pct": 5.29, "within": false },
                    { "seed": 1, "change_pct": null, "within": null },
                    { "seed": 2, "difference": 821.0, "change_pct": null, "within": null } ] } }),
        );
        put(
            r,
            "extract",
            &json!({ "row": "9–11 (full finetune)", "runs": 15, "headline": [
                { "metric": "bits | stored", "point": "a", "stats": { "n": 1, "mean": 243522.0, "std": 0.0, "min": 243522.0, "max": 243522.0 }, "published": null },
                { "metric": "QA", "point": "lr=1", "stats": { "n": 1, "mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5 } },
                { "metric": "QA", "point": "lr=2", "stats": { "n": 1, "mean": 0.25, "std": 0.0, "min": 0.25, "max": 0.25 } }
            ], "ratios": [ { "label": "a over b", "seeds": [1, 2], "paired": { "geometric_mean": 1.7320508 }, "ratio_of_means": 1.125, "published": 1.3 } ] }),
        );
        put(
            r,
            "zipf",
            &json!({ "row": "17 (data)", "runs": 15, "excess_power_law": { "exponent": { "value": 0.3347, "ci95": [0.3168, 0.3526] } },
                     "memorization_plateau": { "bits_per_param": { "n": 4, "mean": 2.5636, "std": 0.06, "min": 2.5, "max": 2.6 }, "ci95": [2.4698, 2.6573] } }),
        );
        std::fs::create_dir_all(r.join("gpu-check")).unwrap();
        let md = render(r).unwrap();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 5, "{md}"); // the header and four experiments
        assert!(rows[1].starts_with("| 1 | [cap](cap/report.md) | 16 | R (bits/param): 1.800 ± 0.050 (n = 2) (published 2) | capacity law R = 1.800 (95% CI 1.651–1.949) bits/param, 5 runs |"), "{md}");
        assert!(rows[2].starts_with("| 1 (convergence check) | [cap-check](cap-check/report.md) | 1 | - | against cap (s0): +5.29%, within ±5%: not met<br>against cap (s2): +821.000 (the reference is ≤ 0: no percent) |"), "{md}");
        // A `|` inside a cell is escaped; bits get separators.
        assert!(rows[3].contains("bits \\| stored: 243,522 (n = 1)<br>QA `lr=1`: 0.5000 (n = 1)<br>QA `lr=2`: 0.2500 (n = 1) |"), "{md}");
        assert!(
            rows[3].ends_with("| a over b: 1.732 over 2 seed(s) (published 1.3) |"),
            "{md}"
        );
        assert!(rows[4].contains("plateau 2.564 bits/param (95% CI 2.470–2.657) over 4 run(s)<br>power-law exponent 0.335 (95% CI 0.317–0.353)"), "{md}");
        assert!(
            md.contains("Folders without a report.json: [gpu-check](gpu-check/)."),
            "{md}"
        );
        let path = write(r).unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), md);
        // A damaged report.json stops the index with its name; nothing is written over the old index.
        std::fs::write(r.join("zipf/report.json"), b"{ \"row\": ").unwrap();
        let e = format!("{:#}", write(r).unwrap_err());
        assert!(e.contains("zipf/report.json: not a report.json"), "{e}");
        assert_eq!(std::fs::read_to_string(r.join(INDEX_FILE)).unwrap(), md);
        assert!(render(&r.join("nosuch")).is_err());
    }
}
