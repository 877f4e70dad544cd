//! `physlab check`: an experiment's headline metrics against a committed report (issue 16, item 8), for CI
//! systems: exits non-zero when a metric leaves its tolerance or is missing, and writes a JUnit XML report.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One headline metric compared.
pub struct Outcome {
    pub name: String,
    pub reference: f64,
    pub current: Option<f64>,
    pub passed: bool,
}

fn key(h: &Value) -> String {
    format!(
        "{} @ {}",
        h["metric"].as_str().unwrap_or_default(),
        h["point"].as_str().unwrap_or_default()
    )
}

fn headline(report: &Value, path: &Path) -> Result<Vec<(String, f64)>> {
    let rows = report["headline"].as_array().with_context(|| {
        format!(
            "{}: no headline table (not a physlab report.json)",
            path.display()
        )
    })?;
    Ok(rows
        .iter()
        .filter_map(|h| Some((key(h), h["stats"]["mean"].as_f64()?)))
        .collect())
}

/// Compares the headline means of `current` (a report.json) with `reference`'s: each within `tolerance` of the
/// reference, relative (|current − reference| ≤ tolerance · |reference|, or ≤ tolerance where the reference is 0).
pub fn compare(current: &Path, reference: &Path, tolerance: f64) -> Result<Vec<Outcome>> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        bail!("--tolerance {tolerance}: must be a finite number ≥ 0");
    }
    let read = |p: &Path| -> Result<Value> {
        serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))
    };
    let (cur, refr) = (read(current)?, read(reference)?);
    let cur = headline(&cur, current)?;
    let refr = headline(&refr, reference)?;
    if refr.is_empty() {
        bail!(
            "{}: its headline table is empty: nothing to check",
            reference.display()
        );
    }
    Ok(refr
        .into_iter()
        .map(|(name, r)| {
            let c = cur.iter().find(|(n, _)| *n == name).map(|x| x.1);
            let passed = c.is_some_and(|c| {
                (c - r).abs() <= tolerance * r.abs().max(if r == 0.0 { 1.0 } else { 0.0 })
            });
            Outcome {
                name,
                reference: r,
                current: c,
                passed,
            }
        })
        .collect())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML report: one test case a metric, a failure where it left its tolerance or is missing.
pub fn junit(experiment: &str, outcomes: &[Outcome], tolerance: f64) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"physlab check {}\" tests=\"{}\" failures=\"{failures}\">",
        xml_escape(experiment),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\"",
            xml_escape(experiment),
            xml_escape(&o.name)
        );
        if o.passed {
            x.push_str("/>\n");
        } else {
            let msg = match o.current {
                Some(c) => format!(
                    "{c} differs from the reference {} by more than {tolerance} (relative)",
                    o.reference
                ),
                None => format!(
                    "missing from the current report (reference {})",
                    o.reference
                ),
            };
            let _ = write!(
                x,
                ">\n    <failure message=\"{}\"/>\n  </testcase>\n",
                xml_escape(&msg)
            );
        }
    }
    x.push_str("</testsuite>\n");
    x
}
