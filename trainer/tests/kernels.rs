//! Every fused kernel against the plain composition of burn ops it replaces (`physlab_trainer::kernels::plain`,
//! the model's code before the kernels), forward and backward, on CPU.
//!
//! Tolerances: the kernels sum in other orders than burn (and GELU/`exp` use polynomial approximations), so
//! results differ by f32 rounding. Each comparison allows |fused − plain| ≤ 2e-5 · max|plain| + 1e-6, far below
//! any real bug (a wrong sign, a missing mask, a transposed head or a rotary index off by one moves results by
//! O(max|plain|)). The scalar approximations are checked against f64 references: `exp` within 4e-7 relative
//! (Cephes expf is documented at ~2 ulp), erf-GELU within 1.5e-7 absolute of erf (Abramowitz & Stegun 7.1.26's
//! bound for erf, times the factor x/2).

use physlab_trainer::burn::tensor::{Distribution, Int, Tensor, TensorData};
use physlab_trainer::kernels::{self, math, plain, AttentionSpec};
use physlab_trainer::{Cpu, CpuTrain};

fn values<const D: usize>(t: Tensor<CpuTrain, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn inner_values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Asserts |a − b| ≤ 2e-5 · max|b| + 1e-6 element-wise.
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 2e-5 * scale + 1e-6;
    let (i, worst) = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |(bi, bw), (i, w)| if w > bw { (i, w) } else { (bi, bw) },
        );
    assert!(
        worst <= tol && a.iter().all(|v| v.is_finite()),
        "{what}: element {i} differs by {worst} (fused {}, plain {}; tolerance {tol}, max|plain| {scale})",
        a[i],
        b[i]
    );
}

fn random<const D: usize>(shape: [usize; D], std: f64, seed: u64) -> Tensor<Cpu, D> {
    <Cpu as physlab_trainer::burn::tensor::backend::Backend>::seed(&Default::default(), seed);
    Tensor::random(shape, Distribution::Normal(0.0, std), &Default::default())
}

#[test]
fn exp_matches_f64_within_4e_7_relative() {
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let r = (x as f64).exp();
        let e = ((math::exp(x) as f64) - r).abs() / r;
        worst = worst.max(e);
        x += 0.00731;
    }
    assert!(worst < 4e-7, "worst relative error {worst}");
    assert_eq!(math::exp(-100.0), 0.0);
    assert_eq!(math::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(math::exp(0.0), 1.0);
    assert!(math::exp(100.0).is_infinite());
}

/// erf by its Taylor series, for |z| ≤ 3.5 (the largest term is e^(z²) ≈ 2e5 times the result, so f64 keeps
/// ~1e-11 of it).
fn erf_f64(z: f64) -> f64 {
    assert!(z.abs() <= 3.5);
    // Σ (−1)^n z^(2n+1) / (n! (2n+1)) · 2/√π
    let mut sum = 0.0;
    let mut term = z; // (−1)^n z^(2n+1) / n!
    for n in 0..200 {
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
        term *= -z * z / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// erfc(z) for z ≥ 4 by its asymptotic series e^(−z²)/(z√π)·(1 − 1/(2z²) + 3/(4z⁴) − 15/(8z⁶) + 105/(16z⁸));
/// the first omitted term, 945/(32 z¹⁰), bounds the relative error: 3e-5 at z = 4.
fn erfc_tail_f64(z: f64) -> f64 {
    assert!(z >= 4.0);
    let u = 1.0 / (2.0 * z * z);
    (-z * z).exp() / (z * std::f64::consts::PI.sqrt())
        * (1.0 - u + 3.0 * u * u - 15.0 * u.powi(3) + 105.0 * u.powi(4))
}

#[test]
fn gelu_matches_the_erf_form_within_the_erf_bound() {
    let mut x = -4.9f32;
    while x < 4.9 {
        let xf = x as f64;
        let exact = 0.5 * xf * (1.0 + erf_f64(xf / std::f64::consts::SQRT_2));
        let err = (math::gelu(x) as f64 - exact).abs();
        // A&S 7.1.26: |erf error| ≤ 1.5e-7, so |GELU error| ≤ |x|/2 · 1.5e-7, plus the f32 rounding of Φ (formed
        // as 1 − erfc/2: about two ulp of 1) and of the product.
        let eps = f32::EPSILON as f64;
        let bound = 0.5 * xf.abs() * (1.5e-7 + 2.0 * eps) + 2.0 * eps * exact.abs();
        assert!(err <= bound + 1e-9, "GELU({x}): error {err} > {bound}");
        // d/dx GELU = Φ(x) + x·φ(x)
        let cdf = 0.5 * (1.0 + erf_f64(xf / std::f64::consts::SQRT_2));
        let pdf = (-xf * xf / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let g = (math::gelu_grad(x) as f64 - (cdf + xf * pdf)).abs();
        assert!(g < 3e-7 * (1.0 + xf.abs()), "GELU'({x}): error {g}");
        x += 0.0137;
    }
    // Beyond |x| = 4.9, GELU is relu within |x|·Φ(−|x|) < 2e-6.
    for x in [-9.0f32, -7.7, -6.0, -4.95, 4.95, 6.0, 7.7, 9.0] {
        assert!((math::gelu(x) - x.max(0.0)).abs() < 2e-6, "GELU({x})");
        assert!(
            (math::gelu_grad(x) - if x > 0.0 { 1.0 } else { 0.0 }).abs() < 2e-5,
            "GELU'({x})"
        );
    }
    // The negative tail is formed from erfc, without the 1 + erf cancellation (which in f32 gives exactly 0 at
    // x = −6), so it keeps a relative accuracy: GELU(−6) = −3·erfc(6/√2) ≈ −5.92e-9. A&S 7.1.26 bounds the
    // absolute error only; its relative error in this tail is a few 1e-3 (3.6e-3 measured here).
    let exact = -3.0 * erfc_tail_f64(6.0 / std::f64::consts::SQRT_2);
    let rel = ((math::gelu(-6.0) as f64) - exact).abs() / exact.abs();
    assert!(rel < 1e-2, "GELU(-6) = {} vs {exact}", math::gelu(-6.0));
}

/// An element-wise kernel against its plain composition, forward on the inner backend and forward and backward
/// through autodiff, on a small odd shape and one spanning several parallel chunks.
fn element_wise_matches_the_plain_path(
    what: &str,
    fused: fn(Tensor<CpuTrain, 3>) -> Tensor<CpuTrain, 3>,
    fused_inner: fn(Tensor<Cpu, 3>) -> Tensor<Cpu, 3>,
    plain: fn(Tensor<CpuTrain, 3>) -> Tensor<CpuTrain, 3>,
    plain_inner: fn(Tensor<Cpu, 3>) -> Tensor<Cpu, 3>,
) {
    for (shape, seed) in [([3usize, 5, 7], 1u64), ([2, 64, 513], 2)] {
        let x0 = random(shape, 3.0, seed);
        let r = random(shape, 1.0, seed + 100);
        assert_close(
            &format!("{what} forward (inner backend)"),
            &inner_values(fused_inner(x0.clone())),
            &inner_values(plain_inner(x0.clone())),
        );
        let grad = |f: fn(Tensor<CpuTrain, 3>) -> Tensor<CpuTrain, 3>| {
            let x = Tensor::<CpuTrain, 3>::from_inner(x0.clone()).require_grad();
            let y = f(x.clone());
            let loss = (y.clone() * Tensor::from_inner(r.clone())).sum();
            let g = loss.backward();
            (values(y), inner_values(x.grad(&g).expect("grad")))
        };
        let ((yf, gf), (yp, gp)) = (grad(fused), grad(plain));
        assert_eq!(yf.len(), shape.iter().product::<usize>());
        assert_close(&format!("{what} forward"), &yf, &yp);
        assert_close(&format!("{what} backward"), &gf, &gp);
    }
}

#[test]
fn gelu_forward_and_backward_equal_the_plain_path() {
    element_wise_matches_the_plain_path(
        "gelu",
        kernels::gelu,
        kernels::gelu,
        plain::gelu,
        plain::gelu,
    );
}

#[test]
fn silu_forward_and_backward_equal_the_plain_path() {
    element_wise_matches_the_plain_path(
        "silu",
        kernels::silu,
        kernels::silu,
        plain::silu,
        plain::silu,
    );
}

/// SiLU x·σ(x) and its derivative σ(x)(1 + x(1 − σ(x))) against f64, over the range where either is not yet
/// its limit and in both saturated tails (no NaN or infinity from e^(−x) overflowing).
#[test]
fn silu_matches_f64() {
    let mut x = -30.0f32;
    while x < 30.0 {
        let xf = x as f64;
        let sig = 1.0 / (1.0 + (-xf).exp());
        let (y, g) = (xf * sig, sig * (1.0 + xf * (1.0 - sig)));
        // exp's 4e-7 relative error moves σ by at most that much relatively; a few f32 roundings on top.
        let tol_y = 1e-6 * y.abs() + 1e-30;
        assert!(
            (math::silu(x) as f64 - y).abs() <= tol_y,
            "SiLU({x}) = {} vs {y}",
            math::silu(x)
        );
        assert!(
            (math::silu_grad(x) as f64 - g).abs() <= 1e-6 * (1.0 + xf.abs()),
            "SiLU'({x})"
        );
        x += 0.0173;
    }
    for x in [-200.0f32, -89.0, -88.5, 88.5, 200.0, f32::MAX, f32::MIN] {
        let (y, g) = (math::silu(x), math::silu_grad(x));
        assert!(
            y.is_finite() && g.is_finite(),
            "SiLU({x}) = {y}, SiLU'({x}) = {g}"
        );
        if x < 0.0 {
            assert!(
                y <= 0.0 && y > -1e-30 && g.abs() < 1e-30,
                "SiLU({x}) = {y}, SiLU'({x}) = {g}"
            );
        } else {
            assert!(y == x && g == 1.0, "SiLU({x}) = {y}, SiLU'({x}) = {g}");
        }
    }
}

#[test]
fn cross_entropy_forward_and_backward_equal_the_plain_path() {
    for (b, t, v, seed) in [
        (2usize, 9usize, 37usize, 3u64),
        (4, 128, 512, 4),
        (1, 1, 1, 5),
    ] {
        let logits0 = random([b, t, v], 4.0, seed);
        let targets: Vec<i32> = (0..b * t).map(|i| ((i * 7919 + 13) % v) as i32).collect();
        let targets =
            Tensor::<Cpu, 2, Int>::from_data(TensorData::new(targets, [b, t]), &Default::default());
        let r = random([b, t], 1.0, seed + 7);
        let run = |fused: bool| {
            let logits = Tensor::<CpuTrain, 3>::from_inner(logits0.clone()).require_grad();
            let tg = Tensor::<CpuTrain, 2, Int>::from_inner(targets.clone());
            let nll = if fused {
                kernels::token_nll(logits.clone(), tg)
            } else {
                plain::token_nll(logits.clone(), tg)
            };
            let g = (nll.clone() * Tensor::from_inner(r.clone()))
                .sum()
                .backward();
            (values(nll), inner_values(logits.grad(&g).expect("grad")))
        };
        let ((nf, gf), (np, gp)) = (run(true), run(false));
        assert_eq!(nf.len(), b * t);
        assert_close(&format!("nll {b}x{t}x{v}"), &nf, &np);
        assert_close(&format!("dlogits {b}x{t}x{v}"), &gf, &gp);
    }
}

#[test]
fn cross_entropy_is_exact_on_a_hand_example() {
    // logits (0, ln 2, ln 5): softmax (1/8, 2/8, 5/8); −ln p[2] = ln(8/5).
    let logits = Tensor::<Cpu, 3>::from_data(
        TensorData::new(vec![0.0f32, 2f32.ln(), 5f32.ln()], [1, 1, 3]),
        &Default::default(),
    );
    let t =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![2i32], [1, 1]), &Default::default());
    let nll = inner_values(kernels::token_nll(logits, t))[0];
    assert!((nll - (8.0f32 / 5.0).ln()).abs() < 1e-6, "{nll}");
}

fn attention_case(b: usize, t: usize, h: usize, hd: usize, rotary_dims: usize, seed: u64) {
    let d = h * hd;
    let spec = AttentionSpec {
        n_head: h,
        rotary_dims,
        rope_base: 10_000.0,
    };
    let qkv0 = random([b, t, 3 * d], 1.0, seed);
    let r = random([b, t, d], 1.0, seed + 1);
    let run = |fused: bool| {
        let qkv = Tensor::<CpuTrain, 3>::from_inner(qkv0.clone()).require_grad();
        let y = if fused {
            kernels::causal_attention(qkv.clone(), spec)
        } else {
            plain::causal_attention(qkv.clone(), spec)
        };
        assert_eq!(y.dims(), [b, t, d]);
        let g = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
        (values(y), inner_values(qkv.grad(&g).expect("grad")))
    };
    let ((yf, gf), (yp, gp)) = (run(true), run(false));
    let what = format!("attention b={b} t={t} heads={h} hd={hd} rotary={rotary_dims}");
    assert_close(&format!("{what} forward"), &yf, &yp);
    assert_close(&format!("{what} dqkv"), &gf, &gp);
    // Without autodiff (evaluation) the same output.
    assert_close(
        &format!("{what} forward (inner backend)"),
        &inner_values(kernels::causal_attention(qkv0.clone(), spec)),
        &yp,
    );
}

#[test]
fn attention_forward_and_backward_equal_the_plain_path() {
    attention_case(2, 16, 2, 32, 8, 10); // the model's rotary fraction ¼
    attention_case(1, 37, 3, 16, 16, 11); // rotary on every dim, odd T
    attention_case(3, 5, 1, 8, 0, 12); // absolute positions (no rotary)
    attention_case(1, 1, 2, 4, 2, 13); // a single position
    attention_case(2, 128, 2, 64, 16, 14); // the quickstart's shape
    attention_case(1, 200, 2, 16, 4, 15); // several blocks of 64, the last one partial
}

#[test]
fn attention_is_causal() {
    // Changing the last position's q, k, v moves no earlier output.
    let spec = AttentionSpec {
        n_head: 2,
        rotary_dims: 4,
        rope_base: 10_000.0,
    };
    let (t, d) = (12, 32);
    let a = random([1, t, 3 * d], 1.0, 20);
    let tail = random([1, 1, 3 * d], 1.0, 21);
    let b = Tensor::cat(vec![a.clone().narrow(1, 0, t - 1), tail], 1);
    let (ya, yb) = (
        inner_values(kernels::causal_attention(a, spec)),
        inner_values(kernels::causal_attention(b, spec)),
    );
    assert_eq!(ya[..(t - 1) * d], yb[..(t - 1) * d]);
    assert_ne!(ya[(t - 1) * d..], yb[(t - 1) * d..]);
}

#[test]
fn layer_norm_forward_and_backward_equal_the_plain_path() {
    for (shape, seed) in [
        ([2usize, 7, 13], 30u64),
        ([4, 128, 128], 31),
        ([1, 3, 1], 32),
    ] {
        let d = shape[2];
        let x0 = random(shape, 2.0, seed).add_scalar(3.0); // an offset, so the mean matters
        let g0 = random([d], 1.0, seed + 1);
        let b0 = random([d], 1.0, seed + 2);
        let r = random(shape, 1.0, seed + 3);
        let run = |fused: bool| {
            let x = Tensor::<CpuTrain, 3>::from_inner(x0.clone()).require_grad();
            let g = Tensor::<CpuTrain, 1>::from_inner(g0.clone()).require_grad();
            let b = Tensor::<CpuTrain, 1>::from_inner(b0.clone()).require_grad();
            let y = if fused {
                kernels::layer_norm(x.clone(), g.clone(), b.clone(), 1e-5)
            } else {
                plain::layer_norm(x.clone(), g.clone(), b.clone(), 1e-5)
            };
            let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
            (
                values(y),
                inner_values(x.grad(&grads).expect("dx")),
                inner_values(g.grad(&grads).expect("dgamma")),
                inner_values(b.grad(&grads).expect("dbeta")),
            )
        };
        let (f, p) = (run(true), run(false));
        let what = format!("layer norm {shape:?}");
        assert_close(&format!("{what} forward"), &f.0, &p.0);
        assert_close(&format!("{what} dx"), &f.1, &p.1);
        assert_close(&format!("{what} dgamma"), &f.2, &p.2);
        assert_close(&format!("{what} dbeta"), &f.3, &p.3);
        assert_close(
            &format!("{what} forward (inner backend)"),
            &inner_values(kernels::layer_norm(
                x0.clone(),
                g0.clone(),
                b0.clone(),
                1e-5,
            )),
            &p.0,
        );
    }
}

#[test]
fn linear_forward_and_backward_equal_the_plain_path() {
    // (rows, in, out, bias, weight stored [out, in]); the large case crosses the threshold of the parallel GEMM.
    for (n, d_in, d_out, bias, transposed, seed) in [
        (7usize, 5usize, 3usize, true, false, 40u64),
        (33, 16, 48, false, false, 41),
        (19, 24, 10, false, true, 42),
        (512, 256, 384, true, false, 43),
        (300, 128, 512, false, true, 44),
    ] {
        let x0 = random([n, d_in], 1.0, seed);
        let w0 = if transposed {
            random([d_out, d_in], 0.2, seed + 1)
        } else {
            random([d_in, d_out], 0.2, seed + 1)
        };
        let b0 = random([d_out], 1.0, seed + 2);
        let r = random([n, d_out], 1.0, seed + 3);
        let run = |fused: bool| {
            let x = Tensor::<CpuTrain, 2>::from_inner(x0.clone()).require_grad();
            let w = Tensor::<CpuTrain, 2>::from_inner(w0.clone()).require_grad();
            let b = Tensor::<CpuTrain, 1>::from_inner(b0.clone()).require_grad();
            let bias = bias.then(|| b.clone());
            let y = match (fused, transposed) {
                (true, false) => kernels::linear(x.clone(), w.clone(), bias),
                (true, true) => kernels::linear_transposed(x.clone(), w.clone()),
                (false, t) => plain::linear(x.clone(), w.clone(), bias, t),
            };
            assert_eq!(y.dims(), [n, d_out]);
            let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
            (
                values(y),
                inner_values(x.grad(&grads).expect("dx")),
                inner_values(w.grad(&grads).expect("dW")),
                b.grad(&grads).map(inner_values),
            )
        };
        let (f, p) = (run(true), run(false));
        let what = format!("linear {n}x{d_in}→{d_out} bias={bias} transposed={transposed}");
        assert_close(&format!("{what} forward"), &f.0, &p.0);
        assert_close(&format!("{what} dx"), &f.1, &p.1);
        assert_close(&format!("{what} dW"), &f.2, &p.2);
        assert_eq!(
            f.3.is_some(),
            bias,
            "{what}: a bias gradient exactly when there is a bias"
        );
        if let (Some(a), Some(b)) = (&f.3, &p.3) {
            assert_close(&format!("{what} db"), a, b);
        }
    }
}
