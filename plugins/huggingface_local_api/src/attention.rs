//! Scaled dot-product attention over the key/value cache, for f32 on the
//! CPU.
//!
//! candle's route (a batched matrix product per step, an additive mask
//! tensor, softmax, a second product, then a transpose copy) costs more in
//! dispatch and copies than in arithmetic at decoding sizes. This routine
//! reads the queries and the cache in place, skips masked columns instead of
//! adding a mask, and writes its output directly in the `[batch, seq,
//! heads * head_dim]` layout the output projection takes. One task per
//! (row, head), run by [`parallel_for`]; each value is computed the same way
//! whatever the batch.

use crate::elementwise::exp;
use crate::linear::{parallel_for, OutPtr};

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Rows of the batch.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// New columns in this call.
    pub t: usize,
    /// Cached columns before this call.
    pub past: usize,
    /// Columns the cache tensors hold per head.
    pub capacity: usize,
}

/// What each query may see besides the causal rule.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Multiplies the scores.
    pub scale: f32,
    /// gemma2's `tanh(s / cap) * cap` on the scores.
    pub softcap: Option<f32>,
    /// Sliding window: a query sees at most this many columns, itself included.
    pub window: Option<usize>,
}

/// Attention for queries `q` (`[batch, heads, t, head_dim]`) over the cache
/// `k`, `v` (`[batch, kv_heads, capacity, head_dim]`, the first `past + t`
/// columns filled). `valid[row][col]` says which cached columns hold real
/// tokens; a query sees itself and earlier valid columns (within the
/// window). Returns `[batch, t, heads * head_dim]`.
pub fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    valid: &[Vec<bool>],
    shape: Shape,
    options: Options,
) -> Vec<f32> {
    let Shape {
        batch,
        heads,
        kv_heads,
        head_dim: hd,
        t,
        past,
        capacity,
    } = shape;
    let mut out = vec![0f32; batch * t * heads * hd];
    let dst = OutPtr(out.as_mut_ptr());
    parallel_for(batch * heads, |task| {
        let (row, head) = (task / heads, task % heads);
        let kv = row * kv_heads + head / (heads / kv_heads);
        let cache = kv * capacity * hd..(kv * capacity + past + t) * hd;
        let q = &q[task * t * hd..(task + 1) * t * hd];
        let o = head_attention(q, &k[cache.clone()], &v[cache], &valid[row], shape, options);
        for qi in 0..t {
            let at = ((row * t + qi) * heads + head) * hd;
            // SAFETY: `out` holds `batch * t * heads * hd` values and
            // outlives the parallel call; task (row, head) writes only the
            // `hd` values of its head in each of its row's `t` columns, so no
            // two tasks write the same value and nobody reads `out` meanwhile.
            unsafe { std::ptr::copy_nonoverlapping(o[qi * hd..].as_ptr(), dst.at(at), hd) };
        }
    });
    out
}

fn head_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    valid: &[bool],
    shape: Shape,
    options: Options,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide(
                q: &[f32],
                k: &[f32],
                v: &[f32],
                valid: &[bool],
                shape: Shape,
                options: Options,
            ) -> Vec<f32> {
                head_body::<x86::Avx512>(q, k, v, valid, shape, options)
            }
            // SAFETY: the CPU reported AVX-512F just above.
            return unsafe { wide(q, k, v, valid, shape, options) };
        }
    }
    head_body::<Plain>(q, k, v, valid, shape, options)
}

/// A dot product routine.
trait Dot {
    fn dot(a: &[f32], b: &[f32]) -> f32;
}

/// Portable code.
struct Plain;

impl Dot for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX-512 intrinsics; only used inside functions compiled for AVX-512F
    /// after the CPU reported it.
    pub(super) struct Avx512;

    impl super::Dot for Avx512 {
        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            // SAFETY: `Avx512` is only chosen by `head_attention` after the
            // CPU reported AVX-512F; every load stays within `n` values of
            // both slices (the tail load is masked).
            unsafe {
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = _mm512_setzero_ps();
                let mut i = 0;
                while i + 16 <= n {
                    acc = _mm512_fmadd_ps(
                        _mm512_loadu_ps(pa.add(i)),
                        _mm512_loadu_ps(pb.add(i)),
                        acc,
                    );
                    i += 16;
                }
                if i < n {
                    let mask: __mmask16 = (1u16 << (n - i)) - 1;
                    let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                    let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                    acc = _mm512_fmadd_ps(x, y, acc);
                }
                _mm512_reduce_add_ps(acc)
            }
        }
    }
}

/// One head: `[t, head_dim]` out of `t` queries and the head's cached keys
/// and values (`[past + t, head_dim]`).
#[inline(always)]
fn head_body<D: Dot>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    valid: &[bool],
    shape: Shape,
    options: Options,
) -> Vec<f32> {
    let hd = shape.head_dim;
    let cols = shape.past + shape.t;
    let mut out = vec![0f32; shape.t * hd];
    let mut scores: Vec<f32> = Vec::with_capacity(cols);
    // Several queries: the keys transposed (`[head_dim][cols]`) let each
    // score row be built from contiguous multiply-adds over the columns
    // instead of one short dot product (and its reduction) per column.
    let keys_t = if shape.t > 1 {
        let mut kt = vec![0f32; hd * cols];
        for (col, key) in k.chunks_exact(hd).take(cols).enumerate() {
            for (d, x) in key.iter().enumerate() {
                kt[d * cols + col] = *x;
            }
        }
        Some(kt)
    } else {
        None
    };
    for (qi, o) in out.chunks_exact_mut(hd).enumerate() {
        let q_col = shape.past + qi;
        let qv = &q[qi * hd..(qi + 1) * hd];
        let first = options.window.map_or(0, |w| (q_col + 1).saturating_sub(w));
        scores.clear();
        match &keys_t {
            Some(kt) => {
                scores.resize(q_col + 1 - first, 0.0);
                for (d, a) in qv.iter().enumerate() {
                    let row = &kt[d * cols + first..d * cols + q_col + 1];
                    for (s, x) in scores.iter_mut().zip(row) {
                        *s += a * x;
                    }
                }
            }
            None => {
                // A plain loop: a closure would not inherit the caller's
                // target features, and the intrinsics would become calls.
                for col in first..=q_col {
                    scores.push(D::dot(qv, &k[col * hd..(col + 1) * hd]));
                }
            }
        }
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let col = first + j;
            if col != q_col && !valid[col] {
                *s = f32::NEG_INFINITY;
                continue;
            }
            *s *= options.scale;
            if let Some(cap) = options.softcap {
                *s = (*s / cap).tanh() * cap;
            }
            max = max.max(*s);
        }
        for s in scores.iter_mut() {
            let e = exp(*s - max);
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { e };
        }
        let inv = 1.0 / sum(&scores);
        for (j, p) in scores.iter().enumerate() {
            if *p == 0.0 {
                continue;
            }
            let p = p * inv;
            let col = first + j;
            for (o, x) in o.iter_mut().zip(&v[col * hd..(col + 1) * hd]) {
                *o += p * x;
            }
        }
    }
    out
}

/// The sum of `v` in sixteen partial sums (so it vectorizes).
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let body = v.len() / LANES * LANES;
    for c in v[..body].chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut total = v[body..].iter().sum::<f32>();
    for a in acc {
        total += a;
    }
    total
}

/// Sixteen partial sums, so the loop becomes one vector chain.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let body = a.len() / LANES * LANES;
    for (ca, cb) in a[..body]
        .chunks_exact(LANES)
        .zip(b[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in a[body..].iter().zip(&b[body..]) {
        tail += x * y;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0] + tail
}
