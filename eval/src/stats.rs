//! Statistics over seeds: mean, sample standard deviation, n, and a one-sided one-sample t-test of the mean against
//! a published figure (Student's t distribution from `statrs`).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Which side of the published figure the test asks about.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Alternative {
    /// H1: the true mean is below the published figure (the default: "do we fall short of the paper?").
    #[default]
    Less,
    /// H1: the true mean is above it.
    Greater,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeedStats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); 0 for one value.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl SeedStats {
    /// `None` for an empty slice.
    pub fn of(values: &[f64]) -> Option<SeedStats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(SeedStats {
            n,
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// Standard error of the mean.
    pub fn sem(&self) -> f64 {
        self.std / (self.n as f64).sqrt()
    }

    /// `mean ± std (n = …)` with `digits` decimals.
    pub fn display(&self, digits: usize) -> String {
        format!(
            "{:.digits$} ± {:.digits$} (n = {})",
            self.mean, self.std, self.n
        )
    }

    /// One-sided one-sample t-test of the mean against `published`: the p-value of a t statistic at least as
    /// extreme as the one seen, in the direction `alt`, with n − 1 degrees of freedom. `None` when it is not
    /// defined: fewer than two values, or no spread at all.
    pub fn t_test(&self, published: f64, alt: Alternative) -> Option<TTest> {
        if self.n < 2 || self.std <= 0.0 || !self.std.is_finite() {
            return None;
        }
        let df = (self.n - 1) as f64;
        let t = (self.mean - published) / self.sem();
        let dist = StudentsT::new(0.0, 1.0, df).ok()?;
        let p = match alt {
            Alternative::Less => dist.cdf(t),
            Alternative::Greater => dist.sf(t),
        };
        Some(TTest {
            published,
            alternative: alt,
            t,
            df,
            p_value: p,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TTest {
    pub published: f64,
    pub alternative: Alternative,
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
}

/// The two-sided `level` (e.g. 0.95) quantile factor of Student's t with `df` degrees of freedom: the half-width
/// of a confidence interval is this times the standard error.
pub fn t_quantile(level: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|d| d.inverse_cdf(0.5 + level / 2.0))
        .unwrap_or(f64::NAN)
}
