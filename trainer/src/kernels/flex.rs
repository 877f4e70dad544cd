//! The fused kernels on burn-flex's raw buffers (f32; any other dtype returns `None` and the plain path runs).
//!
//! - GELU forward and backward: one vectorized pass ([`super::math`]), chunks spread over the cores.
//! - Cross-entropy: per row max, Σ exp and the log-sum-exp (kept for the backward, which writes
//!   dnll · (softmax − one-hot) in one pass); rows spread over the cores.
//! - Linear: y = x·W + b with the bias written first and the GEMM accumulating onto it; the backward's three
//!   products (dx = dy·Wᵀ, dW = xᵀ·dy, db = column sums) on the stored layouts, no transposed copies. Outputs are
//!   allocated once (burn-flex's matmul zeroes a byte buffer and then copies it into an aligned one).
//! - Causal attention: per (batch, head), in parallel: q and k gathered from the fused qkv projection with
//!   rotary applied on the way, S = q·kᵀ (the `gemm` crate, the one burn-flex uses), a causal softmax in place,
//!   y = P·v written straight into the `[B, T, heads·head_dim]` layout the output projection reads. The
//!   probabilities are kept for the backward (B·heads·T² floats, as the plain path keeps them), which computes
//!   dv = Pᵀ·dy, dP = dy·vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, dq = dS·k, dk = dSᵀ·q, undoes the rotation
//!   and writes dqkv in the input's layout. No T×T mask, no layout copies.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::{math, AttentionSpec};
use crate::layers::rope_tables;

/// Elements per parallel chunk of an element-wise kernel.
const CHUNK: usize = 1 << 14;

/// A buffer of `n` floats written by `write(i, chunk)`, the chunks (`size` elements each, the last shorter) in
/// parallel, without zero-filling it first: `vec![0.0; n]` for the kernels' outputs was ~6% of a capacity-law step
/// (perf put 27–31% of the calling thread's samples in `memset`; removing the fill, 4 alternations of
/// `physlab bench train --case capacity`: 30.8 → 28.9 ms/step).
///
/// # Safety
/// `write(i, chunk)` must write every element of `chunk` (elements `i·size ..` of the buffer). It gets them as
/// `MaybeUninit`, so it cannot read one before writing it.
unsafe fn written<F>(n: usize, size: usize, write: F) -> Vec<f32>
where
    F: Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
{
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(size.max(1))
        .enumerate()
        .for_each(|(i, c)| write(i, c));
    // SAFETY: the chunks cover the first n elements and the caller's `write` wrote each of them whole.
    unsafe { v.set_len(n) };
    v
}

/// `dst` as floats once every element has been written.
///
/// # Safety
/// Every element of `dst` must have been written.
unsafe fn assume_written(dst: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller guarantees every element is initialised.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

fn contiguous_f32(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| t.to_contiguous())
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape.to_vec()))
}

/// Integer targets as i64, whatever the int dtype of the backend.
fn ints(t: &FlexTensor) -> Vec<i64> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::I64 => t.as_slice::<i64>().expect("contiguous").to_vec(),
        DType::I32 => t
            .as_slice::<i32>()
            .expect("contiguous")
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DType::I16 => t
            .as_slice::<i16>()
            .expect("contiguous")
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DType::U32 => t
            .as_slice::<u32>()
            .expect("contiguous")
            .iter()
            .map(|&v| v as i64)
            .collect(),
        other => panic!("cross-entropy targets: unsupported int dtype {other:?}"),
    }
}

/// y = f(x) element-wise, over chunks on the pool; `f` writes every element of the chunk it is given (x's chunk
/// has the same length).
fn map_unary(x: &FlexTensor, f: fn(&[f32], &mut [MaybeUninit<f32>])) -> Option<FlexTensor> {
    let x = contiguous_f32(x)?;
    let xs = slice(&x);
    // SAFETY: `f` writes every element of its chunk (the contract above).
    let y = unsafe {
        written(xs.len(), CHUNK, |i, y| {
            f(&xs[i * CHUNK..i * CHUNK + y.len()], y)
        })
    };
    Some(tensor(y, x.shape()))
}

/// dx = g(x, dy) element-wise (an element-wise op's backward); `g` writes every element of its chunk.
fn map_unary_backward(
    x: &FlexTensor,
    dy: &FlexTensor,
    what: &str,
    g: fn(&[f32], &[f32], &mut [MaybeUninit<f32>]),
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = dy.to_contiguous();
    let (xs, dys) = (slice(&x), slice(&dy));
    assert_eq!(xs.len(), dys.len(), "{what} backward: gradient shape");
    // SAFETY: `g` writes every element of its chunk (x's and dy's chunks have its length).
    let dx = unsafe {
        written(xs.len(), CHUNK, |i, dx| {
            let r = i * CHUNK..i * CHUNK + dx.len();
            g(&xs[r.clone()], &dys[r], dx)
        })
    };
    tensor(dx, x.shape())
}

pub fn gelu(x: &FlexTensor) -> Option<FlexTensor> {
    map_unary(x, math::gelu_slice)
}

pub fn gelu_backward(x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
    map_unary_backward(x, dy, "gelu", math::gelu_backward_slice)
}

pub fn silu(x: &FlexTensor) -> Option<FlexTensor> {
    map_unary(x, math::silu_slice)
}

pub fn silu_backward(x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
    map_unary_backward(x, dy, "silu", math::silu_backward_slice)
}

/// Rows per parallel task of the cross-entropy kernels.
fn rows_per_task(v: usize) -> usize {
    (CHUNK / v.max(1)).max(1)
}

/// (nll, logsumexp) per row of `logits [.., V]` for `targets [..]`.
pub fn cross_entropy(
    logits: &FlexTensor,
    targets: &FlexTensor,
) -> Option<(FlexTensor, FlexTensor)> {
    let logits = contiguous_f32(logits)?;
    let shape = logits.shape();
    let v = shape[shape.num_dims() - 1];
    let x = slice(&logits);
    let n = x.len() / v.max(1);
    let t = ints(targets);
    assert_eq!(
        t.len(),
        n,
        "cross-entropy: {} targets for {n} rows of logits",
        t.len()
    );
    let mut nll = vec![0.0f32; n];
    let mut lse = vec![0.0f32; n];
    let rows = rows_per_task(v);
    nll.par_chunks_mut(rows)
        .zip(lse.par_chunks_mut(rows))
        .enumerate()
        .for_each(|(c, (nll, lse))| {
            let mut scratch = vec![0.0f32; v];
            for (r, (nll, lse)) in nll.iter_mut().zip(lse.iter_mut()).enumerate() {
                let i = c * rows + r;
                let row = &x[i * v..(i + 1) * v];
                let target = t[i];
                assert!(
                    (0..v as i64).contains(&target),
                    "cross-entropy: target {target} outside the vocabulary 0..{v}"
                );
                let m = math::max(row);
                let s = math::exp_shifted_sum(row, m, &mut scratch);
                *lse = m + s.ln();
                *nll = *lse - row[target as usize];
            }
        });
    let out_shape = targets.shape();
    Some((tensor(nll, out_shape.clone()), tensor(lse, out_shape)))
}

/// dlogits = dnll · (softmax(logits) − one-hot(target)).
pub fn cross_entropy_backward(
    logits: &FlexTensor,
    targets: &FlexTensor,
    lse: &FlexTensor,
    dnll: &FlexTensor,
) -> FlexTensor {
    let logits = logits.to_contiguous();
    let (lse, dnll) = (lse.to_contiguous(), dnll.to_contiguous());
    let shape = logits.shape();
    let v = shape[shape.num_dims() - 1];
    let x = slice(&logits);
    let (lse, dnll) = (slice(&lse), slice(&dnll));
    let t = ints(targets);
    let rows = rows_per_task(v);
    // SAFETY: every row of the chunk is written whole by `exp_shifted_scaled`, its target element then again.
    let dx = unsafe {
        written(x.len(), rows * v, |c, dx| {
            for (r, drow) in dx.chunks_mut(v).enumerate() {
                let i = c * rows + r;
                let row = &x[i * v..(i + 1) * v];
                math::exp_shifted_scaled(row, lse[i], dnll[i], drow);
                // The same operations as the row's other elements, then − dnll.
                let k = t[i] as usize;
                drow[k].write(math::exp(row[k] - lse[i]) * dnll[i] - dnll[i]);
            }
        })
    };
    tensor(dx, shape)
}

/// Rows (and columns) per block of the attention products: a block of rows needs the columns up to its end only.
const BLOCK: usize = 64;

/// Shapes of an attention call, checked once.
struct Dims {
    b: usize,
    t: usize,
    d: usize,
    h: usize,
    hd: usize,
    r: usize,
    scale: f32,
}

fn dims(qkv: &FlexTensor, spec: AttentionSpec) -> Dims {
    let s = qkv.shape();
    assert_eq!(s.num_dims(), 3, "attention: qkv must be [batch, T, 3·d]");
    let (b, t, d3) = (s[0], s[1], s[2]);
    assert!(d3 % 3 == 0, "attention: qkv width {d3} is not 3·d");
    let d = d3 / 3;
    let h = spec.n_head;
    assert!(
        h > 0 && d % h == 0,
        "attention: d = {d} not divisible by {h} heads"
    );
    let hd = d / h;
    let r = spec.rotary_dims;
    assert!(
        r <= hd && r.is_multiple_of(2),
        "attention: rotary dims {r} for head dim {hd}"
    );
    Dims {
        b,
        t,
        d,
        h,
        hd,
        r,
        scale: (1.0 / (hd as f64).sqrt()) as f32,
    }
}

/// `dst[m×n]` (row-major) = lhs · rhs, where lhs(i, p) = `lhs[i·lrs + p·lcs]` and rhs(p, j) = `rhs[p·rrs + j·rcs]`.
/// Single-threaded (callers parallelise over heads); [`matmul_par`] can also accumulate (dst += lhs · rhs).
fn matmul(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    lhs: &[f32],
    lstride: (usize, usize),
    rhs: &[f32],
    rstride: (usize, usize),
) {
    gemm_call(mnk, dst, mnk.1, false, lhs, lstride, rhs, rstride, false);
}

/// [`matmul`] into rows of `dst` that are `dst_rs` apart (a block of a wider matrix).
fn matmul_rows(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lstride: (usize, usize),
    rhs: &[f32],
    rstride: (usize, usize),
) {
    gemm_call(mnk, dst, dst_rs, false, lhs, lstride, rhs, rstride, false);
}

/// Whether a product is worth all cores (burn-flex's threshold: m·n·k ≥ 192³).
fn worth_parallel((m, n, k): (usize, usize, usize)) -> bool {
    m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192
}

/// [`matmul`] over all cores when the product is large enough ([`worth_parallel`]).
fn matmul_par(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lstride: (usize, usize),
    rhs: &[f32],
    rstride: (usize, usize),
) {
    gemm_call(
        mnk,
        dst,
        mnk.1,
        accumulate,
        lhs,
        lstride,
        rhs,
        rstride,
        worth_parallel(mnk),
    );
}

/// A new `[m, n]` buffer = lhs·rhs, over all cores when worth it, never zero-filled first (see [`written`]).
fn matmul_par_new(
    mnk: (usize, usize, usize),
    lhs: &[f32],
    lstride: (usize, usize),
    rhs: &[f32],
    rstride: (usize, usize),
) -> Vec<f32> {
    let len = mnk.0 * mnk.1;
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: `dst` has room for the m·n floats; without accumulating, gemm reads none of them and writes each
    // (and `gemm_raw` zero-fills them when k = 0), so all len are initialised before `set_len`.
    unsafe {
        gemm_raw(
            mnk,
            dst.as_mut_ptr(),
            len,
            mnk.1,
            false,
            lhs,
            lstride,
            rhs,
            rstride,
            worth_parallel(mnk),
        );
        dst.set_len(len);
    }
    dst
}

#[allow(clippy::too_many_arguments)]
fn gemm_call(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lstride: (usize, usize),
    rhs: &[f32],
    rstride: (usize, usize),
    parallel: bool,
) {
    // SAFETY: a slice is writable and initialised over its length.
    unsafe {
        gemm_raw(
            mnk,
            dst.as_mut_ptr(),
            dst.len(),
            dst_rs,
            accumulate,
            lhs,
            lstride,
            rhs,
            rstride,
            parallel,
        )
    }
}

/// dst (rows `dst_rs` apart) = lhs·rhs, or += with `accumulate`, by the gemm crate, every index bounds-checked
/// first. Without `accumulate`, dst is only written.
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` floats, and, with `accumulate`, those floats initialised.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_len: usize,
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_rs >= n && dst_len >= (m - 1) * dst_rs + n,
        "matmul: dst bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i's n floats are within dst_len (checked above); all-zero bits are 0.0f32.
                unsafe { std::ptr::write_bytes(dst.add(i * dst_rs), 0, n) };
            }
        }
        return;
    }
    assert!(
        (m - 1) * lrs + (k - 1) * lcs < lhs.len(),
        "matmul: lhs bounds"
    );
    assert!(
        (k - 1) * rrs + (n - 1) * rcs < rhs.len(),
        "matmul: rhs bounds"
    );
    // SAFETY: every index gemm reads or writes is within the slices and dst's length (checked above); dst is read
    // only when accumulating, when the caller guarantees it is initialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lcs as isize,
            lrs as isize,
            rhs.as_ptr(),
            rcs as isize,
            rrs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// The weight of a linear map as stored: `[in, out]` (burn's `Linear`) or `[out, in]` (a tied embedding table
/// used as the output head).
fn weight_strides(transposed: bool, d_in: usize, d_out: usize) -> (usize, usize) {
    // (stride along in, stride along out)
    if transposed {
        (1, d_in)
    } else {
        (d_out, 1)
    }
}

/// y `[N, out]` = x `[N, in]` · W (+ b), W `[in, out]` or, `transposed`, `[out, in]`.
pub fn linear(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    transposed: bool,
) -> Option<FlexTensor> {
    let x = contiguous_f32(x)?;
    let w = contiguous_f32(w)?;
    let b = match b {
        Some(b) => Some(contiguous_f32(b)?),
        None => None,
    };
    let (xs, ws) = (slice(&x), slice(&w));
    let xshape = x.shape();
    let wshape = w.shape();
    if xshape.num_dims() != 2 || wshape.num_dims() != 2 {
        return None;
    }
    let (n, d_in) = (xshape[0], xshape[1]);
    let (wi, wo) = (wshape[0], wshape[1]);
    let d_out = if transposed { wi } else { wo };
    assert_eq!(
        if transposed { wo } else { wi },
        d_in,
        "linear: weight {wshape:?} for inputs of width {d_in}"
    );
    let (s_in, s_out) = weight_strides(transposed, d_in, d_out);
    let y = match &b {
        Some(b) => {
            let bs = slice(b);
            assert_eq!(bs.len(), d_out, "linear: bias width");
            // SAFETY: every row of every chunk (whole rows of d_out) gets the d_out bias values.
            let mut y = unsafe {
                written(n * d_out, d_out * 64, |_, rows| {
                    for r in rows.chunks_mut(d_out) {
                        for (o, &v) in r.iter_mut().zip(bs) {
                            o.write(v);
                        }
                    }
                })
            };
            matmul_par(
                (n, d_out, d_in),
                &mut y,
                true,
                xs,
                (d_in, 1),
                ws,
                (s_in, s_out),
            );
            y
        }
        None => matmul_par_new((n, d_out, d_in), xs, (d_in, 1), ws, (s_in, s_out)),
    };
    Some(tensor(y, Shape::new([n, d_out])))
}

/// (dx, dW, db) of [`linear`] for the output gradient `dy [N, out]`; dW in the weight's stored layout.
pub fn linear_backward(
    x: &FlexTensor,
    w: &FlexTensor,
    dy: &FlexTensor,
    has_bias: bool,
    transposed: bool,
) -> (FlexTensor, FlexTensor, Option<FlexTensor>) {
    let (x, w, dy) = (x.to_contiguous(), w.to_contiguous(), dy.to_contiguous());
    let (xs, ws, g) = (slice(&x), slice(&w), slice(&dy));
    let xshape = x.shape();
    let (n, d_in) = (xshape[0], xshape[1]);
    let wshape = w.shape();
    let d_out = if transposed { wshape[0] } else { wshape[1] };
    let (s_in, s_out) = weight_strides(transposed, d_in, d_out);
    // dx = dy · Wᵀ: Wᵀ(o, i) = W(i, o)
    let dx = matmul_par_new((n, d_in, d_out), g, (d_out, 1), ws, (s_out, s_in));
    // dW = xᵀ · dy, written in the stored layout: [in, out], or [out, in] as dyᵀ · x.
    let dw = if transposed {
        matmul_par_new((d_out, d_in, n), g, (1, d_out), xs, (d_in, 1))
    } else {
        matmul_par_new((d_in, d_out, n), xs, (1, d_in), g, (d_out, 1))
    };
    let db = has_bias.then(|| {
        // Column sums in fixed row blocks, added in block order (deterministic).
        let block = 256;
        let partial: Vec<Vec<f32>> = g
            .par_chunks(block * d_out)
            .map(|rows| {
                let mut acc = vec![0.0f32; d_out];
                for r in rows.chunks(d_out) {
                    math::add_assign(&mut acc, r);
                }
                acc
            })
            .collect();
        let mut db = vec![0.0f32; d_out];
        for p in &partial {
            math::add_assign(&mut db, p);
        }
        tensor(db, Shape::new([d_out]))
    });
    (tensor(dx, xshape), tensor(dw, wshape), db)
}

/// Rotary embedding of one head's row (GPT-NeoX rotate-half on the first `r` dims), as `Rope::apply` computes
/// it: x·cos + rotate_half(x)·sin.
#[inline]
fn rope_row(x: &[f32], cos: &[f32], sin: &[f32], r: usize, out: &mut [f32]) {
    let half = r / 2;
    for e in 0..half {
        out[e] = x[e] * cos[e] + (-x[e + half]) * sin[e];
    }
    for e in half..r {
        out[e] = x[e] * cos[e] + x[e - half] * sin[e];
    }
    out[r..x.len()].copy_from_slice(&x[r..]);
}

/// The transpose of [`rope_row`]: g·cos + rotate_halfᵀ(g·sin), rotate_halfᵀ(u) = [u₂, −u₁].
#[inline]
fn rope_row_backward(g: &[f32], cos: &[f32], sin: &[f32], r: usize, out: &mut [f32]) {
    let half = r / 2;
    for e in 0..half {
        out[e] = g[e] * cos[e] + g[e + half] * sin[e + half];
    }
    for e in half..r {
        out[e] = g[e] * cos[e] - g[e - half] * sin[e - half];
    }
    out[r..g.len()].copy_from_slice(&g[r..]);
}

/// One head's q (rotated), k (rotated) and v, each `[T, head_dim]`, gathered from qkv.
fn gather_head(
    x: &[f32],
    dm: &Dims,
    b: usize,
    h: usize,
    tables: &(Vec<f32>, Vec<f32>),
) -> [Vec<f32>; 3] {
    let (t, d, hd, r) = (dm.t, dm.d, dm.hd, dm.r);
    let mut q = vec![0.0f32; t * hd];
    let mut k = vec![0.0f32; t * hd];
    let mut v = vec![0.0f32; t * hd];
    for i in 0..t {
        let base = (b * t + i) * 3 * d + h * hd;
        let (cos, sin) = (&tables.0[i * r..(i + 1) * r], &tables.1[i * r..(i + 1) * r]);
        rope_row(
            &x[base..base + hd],
            cos,
            sin,
            r,
            &mut q[i * hd..(i + 1) * hd],
        );
        rope_row(
            &x[base + d..base + d + hd],
            cos,
            sin,
            r,
            &mut k[i * hd..(i + 1) * hd],
        );
        v[i * hd..(i + 1) * hd].copy_from_slice(&x[base + 2 * d..base + 2 * d + hd]);
    }
    [q, k, v]
}

type Tables = std::sync::Arc<(Vec<f32>, Vec<f32>)>;

/// The rotary tables for at least `dm.t` positions (row t depends on t alone, so a longer table serves any
/// shorter sequence by its first rows), built once per (dims, base) and kept, longer when a longer sequence
/// comes: building them took T·dims `powf`, `sin` and `cos` in every attention call, forward and backward.
fn head_tables(dm: &Dims, spec: AttentionSpec) -> Tables {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<(usize, u64), Tables>>> = OnceLock::new();
    if dm.r == 0 {
        return Tables::default();
    }
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let entry = cache.entry((dm.r, spec.rope_base.to_bits())).or_default();
    if entry.0.len() < dm.t * dm.r {
        *entry = std::sync::Arc::new(rope_tables(dm.r, dm.t, spec.rope_base));
    }
    entry.clone()
}

/// (y `[B, T, d]`, probabilities `[B, heads, T, T]`).
pub fn causal_attention(qkv: &FlexTensor, spec: AttentionSpec) -> Option<(FlexTensor, FlexTensor)> {
    let qkv = contiguous_f32(qkv)?;
    let dm = dims(&qkv, spec);
    let x = slice(&qkv);
    let tables = head_tables(&dm, spec);
    let (t, hd) = (dm.t, dm.hd);
    let len = dm.b * dm.h * t * t;
    let mut probs: Vec<f32> = Vec::with_capacity(len);
    let heads: Vec<Vec<f32>> = probs.spare_capacity_mut()[..len]
        .par_chunks_mut(t * t)
        .enumerate()
        .map(|(task, p)| {
            let (b, h) = (task / dm.h, task % dm.h);
            let [q, k, v] = gather_head(x, &dm, b, h, &tables);
            let mut y = vec![0.0f32; t * hd];
            // Row blocks [r0, r1) see columns [0, r1) only (the causal triangle, up to a block); the columns
            // beyond are zeros.
            for r0 in (0..t).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(t);
                for i in r0..r1 {
                    p[i * t + r1..(i + 1) * t].fill(MaybeUninit::new(0.0));
                }
                // S = q·kᵀ, into columns [0, r1) of the block's rows
                let rows = &mut p[r0 * t..r1 * t];
                // SAFETY: `rows` is writable over its length; without accumulating, gemm only writes it.
                unsafe {
                    gemm_raw(
                        (r1 - r0, r1, hd),
                        rows.as_mut_ptr().cast::<f32>(),
                        rows.len(),
                        t,
                        false,
                        &q[r0 * hd..],
                        (hd, 1),
                        &k,
                        (1, hd),
                        false,
                    )
                };
                // SAFETY: the block's rows are written whole: columns [0, r1) by gemm, the rest above.
                let rows = unsafe { assume_written(rows) };
                for i in 0..r1 - r0 {
                    let row = &mut rows[i * t..(i + 1) * t];
                    let (past, future) = row.split_at_mut(r0 + i + 1);
                    math::scale(past, dm.scale);
                    let m = math::max(past);
                    let s = math::exp_shifted_sum_inplace(past, m);
                    math::scale(past, 1.0 / s);
                    future[..r1 - r0 - i - 1].fill(0.0);
                }
                // y = P·v
                let yr = &mut y[r0 * hd..];
                matmul((r1 - r0, hd, r1), yr, rows, (t, 1), &v, (hd, 1));
            }
            y
        })
        .collect();
    // SAFETY: the tasks' chunks cover the first len elements, and each task wrote every row block of its chunk.
    unsafe { probs.set_len(len) };
    // Each batch row's heads into its `[T, d]` slab, the rows in parallel.
    // SAFETY: a slab's t rows are d = heads·head_dim wide, and each head writes its head_dim columns of each.
    let y = unsafe {
        written(dm.b * t * dm.d, t * dm.d, |b, yb| {
            for (h, yh) in heads[b * dm.h..(b + 1) * dm.h].iter().enumerate() {
                for i in 0..t {
                    let o = i * dm.d + h * hd;
                    for (o, &v) in yb[o..o + hd].iter_mut().zip(&yh[i * hd..(i + 1) * hd]) {
                        o.write(v);
                    }
                }
            }
        })
    };
    Some((
        tensor(y, Shape::new([dm.b, t, dm.d])),
        tensor(probs, Shape::new([dm.b, dm.h, t, t])),
    ))
}

/// dqkv `[B, T, 3·d]` from the output's gradient `dy [B, T, d]`.
pub fn causal_attention_backward(
    qkv: &FlexTensor,
    probs: &FlexTensor,
    dy: &FlexTensor,
    spec: AttentionSpec,
) -> FlexTensor {
    let qkv = qkv.to_contiguous();
    let probs = probs.to_contiguous();
    let dy = dy.to_contiguous();
    let dm = dims(&qkv, spec);
    let (x, p_all, g) = (slice(&qkv), slice(&probs), slice(&dy));
    let tables = head_tables(&dm, spec);
    let (t, d, hd, r) = (dm.t, dm.d, dm.hd, dm.r);
    let grads: Vec<[Vec<f32>; 3]> = (0..dm.b * dm.h)
        .into_par_iter()
        .map(|task| {
            let (b, h) = (task / dm.h, task % dm.h);
            let [q, k, v] = gather_head(x, &dm, b, h, &tables);
            let p = &p_all[task * t * t..(task + 1) * t * t];
            let mut gy = vec![0.0f32; t * hd];
            for i in 0..t {
                let o = (b * t + i) * d + h * hd;
                gy[i * hd..(i + 1) * hd].copy_from_slice(&g[o..o + hd]);
            }
            // Row blocks [r0, r1) of P and dS are zero beyond column r1; column blocks [c0, c1) are zero above
            // row c0. The products below skip those zeros (the causal triangle, up to a block).
            let mut dv = vec![0.0f32; t * hd];
            let mut ds = vec![0.0f32; t * t];
            let mut dqr = vec![0.0f32; t * hd];
            let mut dkr = vec![0.0f32; t * hd];
            for r0 in (0..t).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(t);
                // dv[c0..c1] = P[c0.., c0..c1]ᵀ · dy[c0..]
                let (c0, c1) = (r0, r1);
                matmul(
                    (c1 - c0, hd, t - c0),
                    &mut dv[c0 * hd..],
                    &p[c0 * t + c0..],
                    (1, t),
                    &gy[c0 * hd..],
                    (hd, 1),
                );
                // dP = dy·vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale in place
                let rows = &mut ds[r0 * t..];
                matmul_rows(
                    (r1 - r0, r1, hd),
                    rows,
                    t,
                    &gy[r0 * hd..],
                    (hd, 1),
                    &v,
                    (1, hd),
                );
                for i in r0..r1 {
                    let pr = &p[i * t..i * t + i + 1];
                    let dr = &mut ds[i * t..(i + 1) * t];
                    let (past, future) = dr.split_at_mut(i + 1);
                    let c = math::dot(pr, past);
                    math::softmax_backward_row(pr, past, c, dm.scale);
                    future[..r1 - i - 1].fill(0.0);
                }
                // dq[r0..r1] = dS[r0..r1, ..r1] · k[..r1] (for the rotated q and k)
                let (dsr, dqb) = (&ds[r0 * t..], &mut dqr[r0 * hd..]);
                matmul((r1 - r0, hd, r1), dqb, dsr, (t, 1), &k, (hd, 1));
            }
            // dk[c0..c1] = dS[c0.., c0..c1]ᵀ · q[c0..] (needs every row block of dS first)
            for c0 in (0..t).step_by(BLOCK) {
                let c1 = (c0 + BLOCK).min(t);
                matmul(
                    (c1 - c0, hd, t - c0),
                    &mut dkr[c0 * hd..],
                    &ds[c0 * t + c0..],
                    (1, t),
                    &q[c0 * hd..],
                    (hd, 1),
                );
            }
            let (mut dq, mut dk) = (vec![0.0f32; t * hd], vec![0.0f32; t * hd]);
            for i in 0..t {
                let (cos, sin) = if r > 0 {
                    (&tables.0[i * r..(i + 1) * r], &tables.1[i * r..(i + 1) * r])
                } else {
                    (&[][..], &[][..])
                };
                let s = i * hd..(i + 1) * hd;
                rope_row_backward(&dqr[s.clone()], cos, sin, r, &mut dq[s.clone()]);
                rope_row_backward(&dkr[s.clone()], cos, sin, r, &mut dk[s]);
            }
            [dq, dk, dv]
        })
        .collect();
    // Each batch row's heads into its `[T, 3·d]` slab, the rows in parallel.
    // SAFETY: a slab's t rows are 3·d wide, and each head writes its head_dim columns of q, k and v in each.
    let dx = unsafe {
        written(x.len(), t * 3 * d, |b, dxb| {
            for (h, parts) in grads[b * dm.h..(b + 1) * dm.h].iter().enumerate() {
                for i in 0..t {
                    let base = i * 3 * d + h * hd;
                    for (s, part) in parts.iter().enumerate() {
                        let src = &part[i * hd..(i + 1) * hd];
                        for (o, &v) in dxb[base + s * d..base + s * d + hd].iter_mut().zip(src) {
                            o.write(v);
                        }
                    }
                }
            }
        })
    };
    tensor(dx, qkv.shape())
}

/// Rows per parallel task of the LayerNorm kernels (fixed, so the γ/β gradient sums are deterministic).
fn ln_rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).clamp(1, 256)
}

/// (y, stats `[rows, 2]` = (mean, 1/√(var + eps)) per row).
pub fn layer_norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> Option<(FlexTensor, FlexTensor)> {
    let x = contiguous_f32(x)?;
    let gamma = contiguous_f32(gamma)?;
    let beta = contiguous_f32(beta)?;
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let (xs, g, bt) = (slice(&x), slice(&gamma), slice(&beta));
    assert!(
        g.len() == d && bt.len() == d,
        "layer norm: γ/β of width {} for rows of {d}",
        g.len()
    );
    let n = xs.len() / d.max(1);
    let mut y: Vec<f32> = Vec::with_capacity(xs.len());
    let mut stats = vec![0.0f32; 2 * n];
    let rows = ln_rows_per_task(d);
    y.spare_capacity_mut()[..xs.len()]
        .par_chunks_mut(rows * d)
        .zip(stats.par_chunks_mut(rows * 2))
        .enumerate()
        .for_each(|(c, (y, st))| {
            for (r, (yr, st)) in y.chunks_mut(d).zip(st.chunks_mut(2)).enumerate() {
                let i = c * rows + r;
                let xr = &xs[i * d..(i + 1) * d];
                let (mean, rstd) = math::mean_rstd(xr, eps as f32);
                math::normalize_affine(xr, mean, rstd, g, bt, yr);
                st[0] = mean;
                st[1] = rstd;
            }
        });
    // SAFETY: the chunks cover the first xs.len() elements, and `normalize_affine` wrote every row of each.
    unsafe { y.set_len(xs.len()) };
    Some((tensor(y, shape), tensor(stats, Shape::new([n, 2]))))
}

/// (dx, dγ, dβ): x̂ = (x − mean)·rstd, dβ = Σ dy, dγ = Σ dy·x̂, dx = rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)).
pub fn layer_norm_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    stats: &FlexTensor,
    dy: &FlexTensor,
) -> [FlexTensor; 3] {
    let (x, gamma, stats, dy) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        stats.to_contiguous(),
        dy.to_contiguous(),
    );
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let (xs, g, st, gy) = (slice(&x), slice(&gamma), slice(&stats), slice(&dy));
    let mut dx: Vec<f32> = Vec::with_capacity(xs.len());
    let rows = ln_rows_per_task(d);
    // Per task: partial dγ and dβ, summed below in task order.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx.spare_capacity_mut()[..xs.len()]
        .par_chunks_mut(rows * d)
        .enumerate()
        .map(|(c, dx)| {
            let mut dg = vec![0.0f32; d];
            let mut db = vec![0.0f32; d];
            let mut xhat = vec![0.0f32; d];
            let mut gg = vec![0.0f32; d];
            for (r, dxr) in dx.chunks_mut(d).enumerate() {
                let i = c * rows + r;
                let xr = &xs[i * d..(i + 1) * d];
                let dyr = &gy[i * d..(i + 1) * d];
                let (mean, rstd) = (st[2 * i], st[2 * i + 1]);
                math::layer_norm_row_backward(
                    xr, dyr, g, mean, rstd, &mut xhat, &mut gg, &mut dg, &mut db, dxr,
                );
            }
            (dg, db)
        })
        .collect();
    // SAFETY: the chunks cover the first xs.len() elements, and `layer_norm_row_backward` wrote every row of each.
    unsafe { dx.set_len(xs.len()) };
    let mut dgamma = vec![0.0f32; d];
    let mut dbeta = vec![0.0f32; d];
    for (dg, db) in &partials {
        for j in 0..d {
            dgamma[j] += dg[j];
            dbeta[j] += db[j];
        }
    }
    [
        tensor(dx, shape),
        tensor(dgamma, Shape::new([d])),
        tensor(dbeta, Shape::new([d])),
    ]
}

/// One AdamW step in one pass over (θ, g, m, v), element by element in the order `crate::optim`'s tensor ops
/// compute it: m' = m·β1 + g·(1−β1); v' = v·β2 + g²·(1−β2); m̂ = m'/(1−β1^t); v̂ = v'/(1−β2^t);
/// θ' = θ·(1 − decay) − (m̂/(√v̂ + ε))·lr.
pub fn adamw(
    param: &FlexTensor,
    grad: &FlexTensor,
    moments: Option<(&FlexTensor, &FlexTensor)>,
    h: super::AdamWStep,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    let p = contiguous_f32(param)?;
    let g = contiguous_f32(grad)?;
    let (m, v) = match moments {
        Some((m, v)) => (Some(contiguous_f32(m)?), Some(contiguous_f32(v)?)),
        None => (None, None),
    };
    let (ps, gs) = (slice(&p), slice(&g));
    assert_eq!(ps.len(), gs.len(), "adamw: gradient shape");
    let n = ps.len();
    let (mut p2, mut m2, mut v2) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let ms = m.as_ref().map(slice);
    let vs = v.as_ref().map(slice);
    let k = math::AdamWConsts::new(h);
    p2.par_chunks_mut(CHUNK)
        .zip(m2.par_chunks_mut(CHUNK).zip(v2.par_chunks_mut(CHUNK)))
        .enumerate()
        .for_each(|(c, (po, (mo, vo)))| {
            let r = c * CHUNK..(c * CHUNK + po.len());
            math::adamw_slice(
                &ps[r.clone()],
                &gs[r.clone()],
                ms.map(|m| &m[r.clone()]),
                vs.map(|v| &v[r.clone()]),
                &k,
                po,
                mo,
                vo,
            );
        });
    let shape = p.shape();
    Some((
        tensor(p2, shape.clone()),
        tensor(m2, shape.clone()),
        tensor(v2, shape),
    ))
}

#[cfg(test)]
mod tests {
    use super::{head_tables, rope_tables, slice, tensor, AttentionSpec, Dims};
    use burn::tensor::Shape;

    /// The probabilities are written without a zero-fill first: every entry past the diagonal must still be
    /// exactly 0 (the columns beyond each causal block as much as those inside it), every row a distribution.
    #[test]
    fn attention_probabilities_are_zero_past_the_diagonal() {
        // T = 150: two full blocks of 64 and a partial one; 2 batch rows × 3 heads of 8.
        let (b, t, h, hd) = (2, 150, 3, 8);
        let d = h * hd;
        let qkv: Vec<f32> = (0..b * t * 3 * d)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0)
            .collect();
        let spec = AttentionSpec {
            n_head: h,
            rotary_dims: 4,
            rope_base: 10000.0,
        };
        let (y, probs) =
            super::causal_attention(&tensor(qkv, Shape::new([b, t, 3 * d])), spec).unwrap();
        assert_eq!(slice(&y).len(), b * t * d);
        let p = slice(&probs);
        assert_eq!(p.len(), b * h * t * t);
        for (r, row) in p.chunks(t).enumerate() {
            let i = r % t;
            assert!(
                row[i + 1..].iter().all(|&v| v == 0.0),
                "row {r}: non-zero past the diagonal"
            );
            assert!(
                row[..=i].iter().all(|&v| v > 0.0 && v.is_finite()),
                "row {r}"
            );
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {r} sums to {sum}");
        }
        assert!(slice(&y).iter().all(|v| v.is_finite()));
    }

    /// The kept rotary tables give, for any length asked, the rows built for that length: a shorter sequence
    /// after a longer one reads the longer table's first rows; a longer one rebuilds it.
    #[test]
    fn kept_rotary_tables_serve_every_length() {
        let spec = AttentionSpec {
            n_head: 1,
            rotary_dims: 4,
            // A base no other test uses, so the cache starts empty for it.
            rope_base: 12345.0,
        };
        let dm = |t| Dims {
            b: 1,
            t,
            d: 8,
            h: 1,
            hd: 8,
            r: 4,
            scale: 1.0,
        };
        for t in [16, 8, 40, 3] {
            let kept = head_tables(&dm(t), spec);
            let (cos, sin) = rope_tables(4, t, spec.rope_base);
            assert!(kept.0.len() >= t * 4);
            assert_eq!(kept.0[..t * 4], cos[..], "cos at T = {t}");
            assert_eq!(kept.1[..t * 4], sin[..], "sin at T = {t}");
        }
        assert_eq!(head_tables(&dm(3), spec).0.len(), 40 * 4);
    }
}
