//! SVG plots (plotters): lines and points with optional error bars, linear or log axes, and reference lines
//! y = k·x (the 2- and 1-bit/param lines of a capacity plot).

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub enum Style {
    Line,
    Points,
    /// Open circles: a bound or reference value beside the measured points (a capacity plot's perfect recall).
    Hollow,
    /// A line through filled circles: a few measured values joined in order (bits against the learning rate).
    LinePoints,
    /// A dashed line: the companion of a solid one in the same colour (P_train beside P_test).
    Dashed,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Half-widths of vertical error bars, one per point.
    pub error: Option<Vec<f64>>,
    pub style: Style,
    /// The palette colour (an index); None: the series' own index in the plot.
    pub color: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Reference lines y = k·x, with their labels.
    pub guides: Vec<(String, f64)>,
    /// Where the legend goes.
    pub legend: Legend,
    /// Room above the data for the legend (a band of ~8% of the height per legend row): for plots whose lines
    /// fill every corner.
    pub legend_room: bool,
}

/// A legend's corner; `Auto`: upper right for falling data, upper left otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Legend {
    #[default]
    Auto,
    UpperLeft,
    UpperRight,
    LowerRight,
}

/// A tick label: plain decimals (trailing zeros cut) between 1e-3 and 1e5, scientific notation outside.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A log axis's ticks over `[lo, hi]`: every 1–9 × 10^k inside it for the light grid, and the labelled ones:
/// with `sparse` only 1, 2 and 5 × 10^k (at every integer multiple, 0.007, 0.008 and 0.009 run into each other),
/// otherwise all. Each value once (plotters' own log ticks drew 10 × 10^k and 1 × 10^(k+1) both, and skipped the
/// multiples below the first power of ten inside the range).
pub fn log_ticks(lo: f64, hi: f64, sparse: bool) -> (Vec<f64>, Vec<f64>) {
    let (mut labelled, mut light) = (Vec::new(), Vec::new());
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return (labelled, light);
    }
    let tol = 1e-9;
    for k in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        for m in 1..=9 {
            // m · 10^k as the decimal it prints as (0.0005, not 0.0005000000000000001).
            let v: f64 = format!("{m}e{k}").parse().unwrap_or(f64::NAN);
            if v >= lo * (1.0 - tol) && v <= hi * (1.0 + tol) {
                light.push(v);
                if !sparse || matches!(m, 1 | 2 | 5) {
                    labelled.push(v);
                }
            }
        }
    }
    (labelled, light)
}

fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (if log { 0.1 } else { 0.0 }, 1.0);
    }
    if log {
        // At least a factor of 10 in all, so that a log axis shows a labelled tick.
        let pad = (10.0 / (hi / lo)).sqrt().max(1.3);
        (lo / pad, hi * pad)
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9 * hi.abs().max(1.0));
        (lo - pad, hi + pad)
    }
}

impl Plot {
    /// Writes the plot as an SVG file of `width`×`height` pixels.
    pub fn write_svg(&self, path: &Path, width: u32, height: u32) -> Result<(), String> {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (x0, x1) = range(xs, self.log_x);
        let ys = self.series.iter().flat_map(|s| {
            s.points.iter().enumerate().flat_map(move |(i, p)| {
                let e = s.error.as_ref().map_or(0.0, |e| e[i]);
                [p.1 - e, p.1 + e]
            })
        });
        let guide_ys = self
            .guides
            .iter()
            .flat_map(|(_, k)| [k * x0, k * x1])
            .collect::<Vec<_>>();
        let (mut y0, mut y1) = range(
            ys.chain(guide_ys.iter().copied().filter(|_| false)),
            self.log_y,
        );
        // Guides should be visible but not stretch the data off the plot: include them within a factor of 4.
        for g in &guide_ys {
            if *g > 0.0 || !self.log_y {
                y0 = y0.min(g.max(y0 / 4.0));
                y1 = y1.max(g.min(y1 * 4.0));
            }
        }
        if self.legend_room {
            let rows = (self.series.len() + self.guides.len()) as f64;
            let share = 0.08 * rows;
            if self.log_y {
                y1 *= (y1 / y0).powf(share);
            } else {
                y1 += (y1 - y0) * share;
            }
        }
        // Drawn into memory, then written atomically: a failed write never leaves a truncated plot.
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            self.render(&root, path, (x0, x1), (y0, y1))?;
        }
        physlab_generators::fsio::atomic_write(path, svg.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    fn render(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
        path: &Path,
        (x0, x1): (f64, f64),
        (y0, y1): (f64, f64),
    ) -> Result<(), String> {
        // On a log axis that spans a factor of 8 or more, label only 1, 2 and 5 times a power of ten.
        let log = |a: f64, b: f64| {
            let (labelled, light) = log_ticks(a, b, b / a >= 8.0);
            (a..b)
                .log_scale()
                .with_key_points(labelled)
                .with_light_points(light)
        };
        let r = match (self.log_x, self.log_y) {
            (false, false) => self.draw(root, x0..x1, y0..y1),
            (true, false) => self.draw(root, log(x0, x1), y0..y1),
            (false, true) => self.draw(root, x0..x1, log(y0, y1)),
            (true, true) => self.draw(root, log(x0, x1), log(y0, y1)),
        };
        r.map_err(|e| format!("plotting {}: {e}", path.display()))?;
        root.present()
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// `legend`, or with `Auto` upper right for falling data (loss curves, power laws), upper left otherwise:
    /// where the data is not.
    fn legend_position(&self) -> SeriesLabelPosition {
        match self.legend {
            Legend::UpperLeft => return SeriesLabelPosition::UpperLeft,
            Legend::UpperRight => return SeriesLabelPosition::UpperRight,
            Legend::LowerRight => return SeriesLabelPosition::LowerRight,
            Legend::Auto => {}
        }
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .collect();
        let first = pts.iter().copied().min_by(|a, b| a.0.total_cmp(&b.0));
        let last = pts.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0));
        match (first, last) {
            (Some(f), Some(l)) if f.1 > l.1 => SeriesLabelPosition::UpperRight,
            _ => SeriesLabelPosition::UpperLeft,
        }
    }

    fn draw<X, Y>(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
        xr: X,
        yr: Y,
    ) -> Result<(), Box<dyn std::error::Error + '_>>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(xr, yr)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(if self.log_x { 30 } else { 10 })
            .y_labels(if self.log_y { 30 } else { 10 })
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        let (xa, xb) = {
            let r = chart.x_range();
            (r.start, r.end)
        };
        for (gi, (label, k)) in self.guides.iter().enumerate() {
            let color = BLACK.mix(0.35 + 0.25 * gi as f64);
            let n = 64;
            let pts = (0..=n).map(|i| {
                let x = if self.log_x {
                    xa * (xb / xa).powf(i as f64 / n as f64)
                } else {
                    xa + (xb - xa) * i as f64 / n as f64
                };
                (x, k * x)
            });
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, color.stroke_width(1)))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(s.color.unwrap_or(i)).to_rgba();
            let line = color.stroke_width(2);
            let points = s.points.iter().copied();
            match s.style {
                Style::Line | Style::LinePoints => {
                    chart.draw_series(LineSeries::new(points, line))?;
                }
                Style::Dashed => {
                    chart.draw_series(DashedLineSeries::new(points, 7, 4, line))?;
                }
                Style::Points | Style::Hollow => {}
            }
            // The markers: filled for measured points, open for a bound beside them.
            let marker = match s.style {
                Style::Points | Style::LinePoints => Some((4, color.filled())),
                Style::Hollow => Some((6, line)),
                Style::Line | Style::Dashed => None,
            };
            if let Some((radius, shape)) = marker {
                chart.draw_series(
                    s.points
                        .iter()
                        .map(move |&(x, y)| Circle::new((x, y), radius, shape)),
                )?;
            }
            // The legend entry: the line (solid, or two dashes) and the marker, as drawn.
            let (solid, dashed) = match s.style {
                Style::Line | Style::LinePoints => (true, false),
                Style::Dashed => (false, true),
                Style::Points | Style::Hollow => (false, false),
            };
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    let path = |from: i32, to: i32, on: bool| {
                        PathElement::new(if on { vec![(from, 0), (to, 0)] } else { vec![] }, line)
                    };
                    let (radius, shape) = marker.unwrap_or((0, line));
                    EmptyElement::at((x, y))
                        + path(0, 18, solid)
                        + path(0, 7, dashed)
                        + path(11, 18, dashed)
                        + Circle::new((9, 0), radius, shape)
                });
            if let Some(err) = &s.error {
                chart.draw_series(s.points.iter().zip(err).map(|(&(x, y), &e)| {
                    ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(1), 8)
                }))?;
            }
        }
        if !self.series.is_empty() || !self.guides.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(self.legend_position())
                .draw()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{log_ticks, tick};

    /// The 1/2/5 labels of a wide log axis, the multiples below its first power of ten included, each value once
    /// (plotters drew 0.01 twice and no 5e-4 on capacity-law-cpu's learning-rate axis, 3.3e-4 to 1.2e-2).
    #[test]
    fn a_wide_log_axis_labels_one_two_and_five_each_once() {
        let (labelled, light) = log_ticks(3.3e-4, 1.2e-2, true);
        assert_eq!(labelled, [5e-4, 1e-3, 2e-3, 5e-3, 1e-2]);
        let printed: Vec<String> = labelled.iter().map(|v| tick(*v)).collect();
        assert_eq!(printed, ["5.0e-4", "0.001", "0.002", "0.005", "0.01"]);
        // The light grid: 4e-4 … 9e-4, 1e-3 … 9e-3, 1e-2: 6 + 9 + 1.
        assert_eq!(light.len(), 16);
        assert_eq!((light[0], light[15]), (4e-4, 1e-2));
        let (all, _) = log_ticks(2e4, 1.1e5, false);
        assert_eq!(all, [2e4, 3e4, 4e4, 5e4, 6e4, 7e4, 8e4, 9e4, 1e5]);
        // Ends exactly on a tick keep it; an empty or non-positive range has none.
        assert_eq!(log_ticks(1.0, 10.0, true).0, [1.0, 2.0, 5.0, 10.0]);
        assert!(log_ticks(0.0, 1.0, true).0.is_empty());
        assert!(log_ticks(2.0, 1.0, true).1.is_empty());
    }
}
