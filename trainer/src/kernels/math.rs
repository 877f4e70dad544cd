//! Branch-free single-precision `exp`, GELU and SiLU pieces that the compiler vectorizes (the loops that call them are
//! compiled once per instruction set with `multiversion` and chosen at run time).
//!
//! - [`exp`]: Cephes `expf` (range reduction by ln 2 split in two parts, degree-6 polynomial, the power of two
//!   built in the exponent bits); relative error about 2 ulp on [-87, 88], exactly 0 below −87.3, +inf above 88.7.
//! - [`erfc_abs_scaled`]: Abramowitz & Stegun 7.1.26, the approximation PyTorch's vectorized CPU `erf` uses
//!   (`aten/src/ATen/cpu/vec/vec256/vec256_float.h`); absolute error of erf ≤ 1.5e-7.
//!
//! The tests in `trainer/tests/kernels.rs` check both against the standard library's `exp` and `erf` (via f64).

use std::mem::MaybeUninit;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9 (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// e^x: accurate on [−87.3, 88.3], exactly 0 below −87.3 and +inf above 88.3 (the true value overflows at
/// 88.72; the lab's kernels call it with x ≤ 0 only). NaN is not expected.
///
/// Branch-free and without float→int casts (a saturating `as i32` keeps the loops scalar): the power of two is
/// built from n's bits after adding 2²³ (n is an integer in [−126, 127], so n + 127 + 2²³ is exact and its low
/// mantissa bits are n + 127).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.3, 88.3);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201E-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    const TWO_23: f32 = 8_388_608.0;
    let biased = (n + (127.0 + TWO_23))
        .to_bits()
        .wrapping_sub(TWO_23.to_bits());
    let scale = f32::from_bits(biased << 23);
    let y = e * scale;
    if x < -87.3 {
        0.0
    } else if x > 88.3 {
        f32::INFINITY
    } else {
        y
    }
}

/// For z ≥ 0 returns (erfc(z), e^(−z²)): A&S 7.1.26, erfc(z) ≈ t·P(t)·e^(−z²) with t = 1/(1 + 0.3275911 z).
/// Written for the tails: 1 ± erf is formed from erfc without cancellation.
#[inline(always)]
pub fn erfc_abs_scaled(z: f32) -> (f32, f32) {
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let e = exp(-z * z);
    (p * t * e, e)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Φ(x) (the standard normal CDF) and φ(x) (its density).
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    let z = x.abs() * FRAC_1_SQRT_2;
    let (erfc, e) = erfc_abs_scaled(z);
    let half_tail = 0.5 * erfc;
    let cdf = if x >= 0.0 { 1.0 - half_tail } else { half_tail };
    // e = exp(−z²) = exp(−x²/2)
    (cdf, FRAC_1_SQRT_2PI * e)
}

/// GELU (the exact, erf form): x·Φ(x).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf_pdf(x).0
}

/// d GELU / dx = Φ(x) + x·φ(x).
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let (cdf, pdf) = normal_cdf_pdf(x);
    cdf + x * pdf
}

/// The logistic σ(x) = 1/(1 + e^(−x)) with [`exp`]: e^(−x) saturates to +inf below x = −88.3 (σ = 0) and to 0
/// above 87.3 (σ = 1), so it holds over all of f32.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// SiLU (swish): x·σ(x).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// d SiLU / dx = σ(x)·(1 + x·(1 − σ(x))).
#[inline(always)]
pub fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

/// Σ x with 16 partial sums (so that the loop vectorizes; inlined into the multiversioned callers).
#[inline(always)]
fn sum16(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Loops over slices, compiled for AVX-512, AVX2+FMA and the baseline, picked at run time.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn gelu_slice(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(gelu(x));
    }
}

/// dx = dy · GELU'(x).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn gelu_backward_slice(x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        dx.write(dy * gelu_grad(x));
    }
}

/// SiLU of a slice (see [`gelu_slice`]).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn silu_slice(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(silu(x));
    }
}

/// dx = dy · SiLU'(x).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn silu_backward_slice(x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        dx.write(dy * silu_grad(x));
    }
}

/// y = e^(x − shift), returning Σ y.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn exp_shifted_sum(x: &[f32], shift: f32, y: &mut [f32]) -> f32 {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = exp(x - shift);
    }
    sum16(&y[..x.len().min(y.len())])
}

/// y = e^(x − shift) · a (the softmax's gradient row before its target's −a, with shift the log-sum-exp).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn exp_shifted_scaled(x: &[f32], shift: f32, a: f32, y: &mut [MaybeUninit<f32>]) {
    for (y, &x) in y.iter_mut().zip(x) {
        y.write(exp(x - shift) * a);
    }
}

/// The largest element (−inf for an empty slice).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(rest) {
        m = if v > m { v } else { m };
    }
    m
}

/// y *= a
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn scale(y: &mut [f32], a: f32) {
    for v in y.iter_mut() {
        *v *= a;
    }
}

/// Σ x·y
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    dot16(x, y)
}

/// Σ x·y with 16 partial sums (inlined into the multiversioned callers).
#[inline(always)]
fn dot16(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0.0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// y = e^(y − shift) in place, returning Σ y.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn exp_shifted_sum_inplace(y: &mut [f32], shift: f32) -> f32 {
    for v in y.iter_mut() {
        *v = exp(*v - shift);
    }
    sum16(y)
}

/// The softmax backward of one row, in place: dp ← p ⊙ (dp − c) · scale, with c = Σ p ⊙ dp.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn softmax_backward_row(p: &[f32], dp: &mut [f32], c: f32, scale: f32) {
    for (d, &p) in dp.iter_mut().zip(p) {
        *d = p * (*d - c) * scale;
    }
}

/// (mean, 1/√(var + eps)) of a row, two passes (the variance of the centred values, biased).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn mean_rstd(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum16(x) / n;
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let d = v - mean;
            *a += d * d;
        }
    }
    let var = (acc.iter().sum::<f32>() + tail) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// y = (x − mean)·rstd·γ + β
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn normalize_affine(
    x: &[f32],
    mean: f32,
    rstd: f32,
    gamma: &[f32],
    beta: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        y.write((x - mean) * rstd * g + b);
    }
}

/// One row of the LayerNorm backward: accumulates dγ += dy·x̂ and dβ += dy, and writes
/// dx = rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)). `xhat` and `gg` are scratch rows.
#[allow(clippy::too_many_arguments)]
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn layer_norm_row_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: f32,
    rstd: f32,
    xhat: &mut [f32],
    gg: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [MaybeUninit<f32>],
) {
    let n = x.len();
    for j in 0..n {
        let xh = (x[j] - mean) * rstd;
        let g = dy[j] * gamma[j];
        xhat[j] = xh;
        gg[j] = g;
        dgamma[j] += dy[j] * xh;
        dbeta[j] += dy[j];
    }
    let inv = 1.0 / n as f32;
    let m1 = sum16(&gg[..n]) * inv;
    let m2 = dot16(&gg[..n], &xhat[..n]) * inv;
    for j in 0..n {
        dx[j].write(rstd * (gg[j] - m1 - xhat[j] * m2));
    }
}

/// acc += x
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

/// AdamW's per-step scalars, rounded to f32 as burn's scalar ops round them.
pub struct AdamWConsts {
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    bias1: f32,
    bias2: f32,
    eps: f32,
    keep: Option<f32>,
    lr: f32,
}

impl AdamWConsts {
    pub fn new(h: super::AdamWStep) -> Self {
        let t = h.time as i32;
        AdamWConsts {
            b1: h.beta1,
            one_minus_b1: 1.0 - h.beta1,
            b2: h.beta2,
            one_minus_b2: 1.0 - h.beta2,
            bias1: 1.0 - h.beta1.powi(t),
            bias2: 1.0 - h.beta2.powi(t),
            eps: h.epsilon,
            keep: (h.decay != 0.0).then_some((1.0 - h.decay) as f32),
            lr: h.lr as f32,
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt+sse4.2",
    "x86_64+avx2+fma+sse4.2",
    "aarch64+neon"
))]
pub fn adamw_slice(
    p: &[f32],
    g: &[f32],
    m: Option<&[f32]>,
    v: Option<&[f32]>,
    k: &AdamWConsts,
    po: &mut [f32],
    mo: &mut [f32],
    vo: &mut [f32],
) {
    for i in 0..p.len() {
        let gi = g[i];
        let (mi, vi) = match (m, v) {
            (Some(m), Some(v)) => (
                m[i] * k.b1 + gi * k.one_minus_b1,
                v[i] * k.b2 + gi * gi * k.one_minus_b2,
            ),
            _ => (gi * k.one_minus_b1, gi * gi * k.one_minus_b2),
        };
        mo[i] = mi;
        vo[i] = vi;
        let delta = (mi / k.bias1) / ((vi / k.bias2).sqrt() + k.eps);
        let decayed = match k.keep {
            Some(keep) => p[i] * keep,
            None => p[i],
        };
        po[i] = decayed - delta * k.lr;
    }
}
