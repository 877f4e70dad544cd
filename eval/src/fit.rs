//! Fits: the capacity law (bits ∝ parameters, slope = bits/param), pure power laws (excess loss ∝ x^−a) and the
//! scaling law L = E + A/N^a + B/D^b.
//!
//! The linear fits are ordinary least squares with their textbook standard errors. The scaling law is fitted as
//! Hoffmann et al. (Chinchilla, 2022) do: minimise the Huber loss (δ = 1e-3) of log-residuals
//! `log L̂ − log L` over (log A, log B, log E, a, b) from a grid of initialisations, keeping the best; the
//! optimiser is `argmin`'s Nelder–Mead. Uncertainties of the scaling-law parameters come from a bootstrap over the
//! points (resampled with replacement, ChaCha8 seeded, refitted from the best point).

use argmin::core::{CostFunction, Error as ArgminError, Executor, State};
use argmin::solver::neldermead::NelderMead;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::stats::t_quantile;

/// A fitted quantity with its standard error and 95% confidence interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
    pub ci95: (f64, f64),
}

impl Estimate {
    fn with_t(value: f64, se: f64, df: f64) -> Estimate {
        let h = t_quantile(0.95, df) * se;
        Estimate {
            value,
            std_error: se,
            ci95: (value - h, value + h),
        }
    }
}

/// y = slope · x through the origin (bits = R · parameters). Needs ≥ 2 points.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProportionalFit {
    pub slope: Estimate,
    pub points: usize,
    pub r2: f64,
}

pub fn proportional(x: &[f64], y: &[f64]) -> Option<ProportionalFit> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let sxx: f64 = x.iter().map(|v| v * v).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let slope = sxy / sxx;
    let sse: f64 = x.iter().zip(y).map(|(a, b)| (b - slope * a).powi(2)).sum();
    let df = (n - 1) as f64;
    let se = (sse / df / sxx).sqrt();
    let mean_y = y.iter().sum::<f64>() / n as f64;
    let sst: f64 = y.iter().map(|b| (b - mean_y).powi(2)).sum();
    Some(ProportionalFit {
        slope: Estimate::with_t(slope, se, df),
        points: n,
        r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
    })
}

/// y = c · x^(−exponent), fitted by least squares on (ln x, ln y). Needs ≥ 3 points with x, y > 0.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PowerLawFit {
    /// The decay exponent a of y ∝ x^−a.
    pub exponent: Estimate,
    /// ln c.
    pub log_coefficient: Estimate,
    pub points: usize,
    pub r2: f64,
}

pub fn power_law(x: &[f64], y: &[f64]) -> Option<PowerLawFit> {
    let n = x.len();
    if n < 3 || y.len() != n || x.iter().chain(y).any(|v| *v <= 0.0 || !v.is_finite()) {
        return None;
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let mx = lx.iter().sum::<f64>() / n as f64;
    let my = ly.iter().sum::<f64>() / n as f64;
    let sxx: f64 = lx.iter().map(|v| (v - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = lx
        .iter()
        .zip(&ly)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    let sst: f64 = ly.iter().map(|b| (b - my).powi(2)).sum();
    let df = (n - 2) as f64;
    let s2 = sse / df;
    let se_slope = (s2 / sxx).sqrt();
    let se_int = (s2 * (1.0 / n as f64 + mx * mx / sxx)).sqrt();
    Some(PowerLawFit {
        exponent: Estimate::with_t(-slope, se_slope, df),
        log_coefficient: Estimate::with_t(intercept, se_int, df),
        points: n,
        r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
    })
}

/// L(N, D) = E + A/N^a + B/D^b.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScalingLaw {
    pub e: f64,
    pub a_coef: f64,
    pub a: f64,
    pub b_coef: f64,
    pub b: f64,
}

impl ScalingLaw {
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.e + self.a_coef / n.powf(self.a) + self.b_coef / d.powf(self.b)
    }

    /// From the optimiser's coordinates (ln A, ln B, ln E, a, b).
    fn from_theta(t: &[f64]) -> ScalingLaw {
        ScalingLaw {
            a_coef: t[0].exp(),
            b_coef: t[1].exp(),
            e: t[2].exp(),
            a: t[3],
            b: t[4],
        }
    }

    fn theta(&self) -> Vec<f64> {
        vec![
            self.a_coef.ln(),
            self.b_coef.ln(),
            self.e.ln(),
            self.a,
            self.b,
        ]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScalingLawFit {
    pub law: ScalingLaw,
    /// Bootstrap standard deviations of (E, A, a, B, b); NaN when no bootstrap was asked for.
    pub std_error: ScalingLaw,
    /// The summed Huber loss of the log-residuals at the optimum.
    pub huber_loss: f64,
    pub points: usize,
    pub initialisations: usize,
    pub bootstrap: usize,
}

const HUBER_DELTA: f64 = 1e-3;

fn huber(r: f64) -> f64 {
    let a = r.abs();
    if a <= HUBER_DELTA {
        0.5 * r * r
    } else {
        HUBER_DELTA * (a - 0.5 * HUBER_DELTA)
    }
}

struct HuberCost<'a> {
    n: &'a [f64],
    d: &'a [f64],
    loss: &'a [f64],
}

/// log-sum-exp of (ln A − a ln N, ln B − b ln D, ln E): ln L̂, stable for any sizes.
fn log_pred(t: &[f64], n: f64, d: f64) -> f64 {
    let terms = [t[0] - t[3] * n.ln(), t[1] - t[4] * d.ln(), t[2]];
    let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + terms.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

impl CostFunction for HuberCost<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, t: &Self::Param) -> Result<f64, ArgminError> {
        // Exponents are kept in [0, 3]: outside, the cost is made large so the simplex turns back.
        let penalty: f64 = [t[3], t[4]]
            .iter()
            .map(|e| {
                if (0.0..=3.0).contains(e) {
                    0.0
                } else {
                    1e3 * (1.0 + e.abs())
                }
            })
            .sum();
        let s: f64 = (0..self.n.len())
            .map(|i| huber(log_pred(t, self.n[i], self.d[i]) - self.loss[i].ln()))
            .sum();
        Ok(s + penalty)
    }
}

fn nelder_mead(cost: HuberCost<'_>, start: &[f64]) -> Option<(Vec<f64>, f64)> {
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut p = start.to_vec();
        p[i] += if i < 3 { 0.5 } else { 0.1 };
        simplex.push(p);
    }
    let solver = NelderMead::new(simplex).with_sd_tolerance(1e-10).ok()?;
    let res = Executor::new(cost, solver)
        .configure(|s| s.max_iters(4000))
        .run()
        .ok()?;
    let state = res.state();
    Some((state.get_best_param()?.clone(), state.get_best_cost()))
}

fn fit_once(n: &[f64], d: &[f64], loss: &[f64], starts: &[Vec<f64>]) -> Option<(ScalingLaw, f64)> {
    starts
        .iter()
        .filter_map(|s| nelder_mead(HuberCost { n, d, loss }, s))
        .filter(|(_, c)| c.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, c)| (ScalingLaw::from_theta(&t), c))
}

/// Fits L = E + A/N^a + B/D^b to (parameters N, data D, loss L) points (L > 0; ≥ 6 points for five parameters to
/// be determined), from a grid of initialisations (Chinchilla's approach), with `bootstrap` resamples for the
/// standard errors (0: none).
pub fn scaling_law(
    n: &[f64],
    d: &[f64],
    loss: &[f64],
    bootstrap: usize,
    seed: u64,
) -> Option<ScalingLawFit> {
    let m = n.len();
    if m < 6 || d.len() != m || loss.len() != m || loss.iter().any(|l| *l <= 0.0) {
        return None;
    }
    let min_loss = loss.iter().copied().fold(f64::INFINITY, f64::min);
    let mut starts = Vec::new();
    for la in [0.0, 5.0, 10.0] {
        for lb in [0.0, 5.0, 10.0] {
            for a in [0.2, 0.5, 1.0] {
                for b in [0.2, 0.5, 1.0] {
                    starts.push(vec![la, lb, (0.5 * min_loss).ln(), a, b]);
                }
            }
        }
    }
    let (law, cost) = fit_once(n, d, loss, &starts)?;
    let mut std_error = ScalingLaw {
        e: f64::NAN,
        a_coef: f64::NAN,
        a: f64::NAN,
        b_coef: f64::NAN,
        b: f64::NAN,
    };
    if bootstrap > 1 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut laws = Vec::new();
        for _ in 0..bootstrap {
            let idx: Vec<usize> = (0..m).map(|_| rng.random_range(0..m)).collect();
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            if let Some((l, _)) = fit_once(&pick(n), &pick(d), &pick(loss), &[law.theta()]) {
                laws.push(l);
            }
        }
        let sd = |f: &dyn Fn(&ScalingLaw) -> f64| {
            crate::stats::SeedStats::of(&laws.iter().map(f).collect::<Vec<_>>())
                .map(|s| s.std)
                .unwrap_or(f64::NAN)
        };
        std_error = ScalingLaw {
            e: sd(&|l| l.e),
            a_coef: sd(&|l| l.a_coef),
            a: sd(&|l| l.a),
            b_coef: sd(&|l| l.b_coef),
            b: sd(&|l| l.b),
        };
    }
    Some(ScalingLawFit {
        law,
        std_error,
        huber_loss: cost,
        points: m,
        initialisations: starts.len(),
        bootstrap,
    })
}
