//! Linear layers with a fast path for few rows of f32 on the CPU.
//!
//! Decoding multiplies one row (or one row per batched sequence) by each
//! weight matrix: a matrix-vector product that is limited by how fast the
//! weights stream from memory. candle's general matrix multiply is built
//! for large products, so for up to [`GEMV_MAX_ROWS`] rows this module
//! streams each weight row once, dots it with every input row, and splits
//! the weight rows over the current rayon pool. Each output value is
//! computed by one thread in a fixed order, so a row's result does not
//! depend on the other rows of the batch (batched decoding equals
//! one-by-one decoding) nor on the number of threads.

use candle_core::{DType, Device, Module, Storage, Tensor, D};
use rayon::prelude::*;

/// Inputs with at most this many rows take the matrix-vector path.
pub const GEMV_MAX_ROWS: usize = 32;

/// Weight rows handed to one rayon task.
const ROWS_PER_TASK: usize = 64;

/// `y = x W^T + b` with `W` of shape `[out, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    fast: bool,
}

impl Linear {
    /// A layer over a `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let fast = matches!(weight.device(), Device::Cpu)
            && weight.dtype() == DType::F32
            && weight.is_contiguous()
            && weight.rank() == 2;
        Linear { weight, bias, fast }
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn gemv(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, k) = self.weight.dims2()?;
        let x = x.contiguous()?;
        let mut out_shape = x.dims().to_vec();
        let last = out_shape.len() - 1;
        if out_shape[last] != k {
            candle_core::bail!(
                "linear: input width {} does not match weight {:?}",
                out_shape[last],
                self.weight.shape()
            );
        }
        out_shape[last] = n;
        let m = x.elem_count() / k;
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let (x_storage, x_layout) = x.storage_and_layout();
        let (Storage::Cpu(w_cpu), Storage::Cpu(x_cpu)) = (&*w_storage, &*x_storage) else {
            candle_core::bail!("linear fast path used off the CPU");
        };
        let w = &w_cpu.as_slice::<f32>()?[w_layout.start_offset()..][..n * k];
        let xs = &x_cpu.as_slice::<f32>()?[x_layout.start_offset()..][..m * k];
        // Computed as [n, m] (weight-row major) so tasks own disjoint chunks.
        let mut out_t = vec![0f32; n * m];
        let kernel = select_kernel();
        out_t
            .par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * ROWS_PER_TASK;
                let rows = chunk.len() / m;
                kernel(xs, m, k, &w[first * k..(first + rows) * k], chunk);
            });
        drop(w_storage);
        drop(x_storage);
        let out = if m == 1 {
            out_t
        } else {
            let mut out = vec![0f32; n * m];
            for (j, row) in out_t.chunks_exact(m).enumerate() {
                for (i, v) in row.iter().enumerate() {
                    out[i * n + j] = *v;
                }
            }
            out
        };
        Tensor::from_vec(out, out_shape, &Device::Cpu)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let k = x.dim(D::Minus1)?;
        let rows = x.elem_count() / k.max(1);
        let y = if self.fast && x.dtype() == DType::F32 && rows <= GEMV_MAX_ROWS {
            self.gemv(x)?
        } else {
            let w = self.weight.t()?;
            match x.rank() {
                2 => x.matmul(&w)?,
                _ => x.broadcast_matmul(&w)?,
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Computes `out[j * m + i] = dot(x_i, w_j)` for the weight rows in `w`.
type Kernel = fn(&[f32], usize, usize, &[f32], &mut [f32]);

fn select_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return kernel_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return kernel_avx2;
        }
    }
    kernel_portable
}

/// Sixteen independent partial sums, so the compiler vectorizes the loop at
/// any SIMD width while the summation order stays the same everywhere.
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
    // Pairwise reduction of the lanes.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0] + tail
}

#[inline(always)]
fn kernel_body(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    for (w_row, out_row) in w.chunks_exact(k).zip(out.chunks_exact_mut(m)) {
        for (i, o) in out_row.iter_mut().enumerate() {
            *o = dot(&xs[i * k..(i + 1) * k], w_row);
        }
    }
}

fn kernel_portable(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    kernel_body(xs, m, k, w, out)
}

#[cfg(target_arch = "x86_64")]
fn kernel_avx2(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "avx2")]
    unsafe fn inner(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
        kernel_body(xs, m, k, w, out)
    }
    // SAFETY: only selected by `select_kernel` after the CPU reported AVX2.
    unsafe { inner(xs, m, k, w, out) }
}

#[cfg(target_arch = "x86_64")]
fn kernel_avx512(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "avx512f")]
    unsafe fn inner(xs: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
        kernel_body(xs, m, k, w, out)
    }
    // SAFETY: only selected by `select_kernel` after the CPU reported AVX-512F.
    unsafe { inner(xs, m, k, w, out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &Tensor, w: &Tensor) -> Vec<f32> {
        x.matmul(&w.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn fast_path_matches_the_general_product() {
        let dev = Device::Cpu;
        for (m, k, n) in [(1, 37, 130), (3, 64, 129), (5, 576, 192)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let lin = Linear::new(w.clone(), None);
            let got: Vec<f32> = lin
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want = reference(&x, &w);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 1e-3 * (1.0 + b.abs()),
                    "{a} vs {b} (m={m} k={k} n={n})"
                );
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 100), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (300, 100), &dev).unwrap();
        let lin = Linear::new(w, None);
        let all: Vec<Vec<f32>> = lin.forward(&x).unwrap().to_vec2().unwrap();
        for (i, row) in all.iter().enumerate() {
            let alone: Vec<Vec<f32>> = lin
                .forward(&x.narrow(0, i, 1).unwrap())
                .unwrap()
                .to_vec2()
                .unwrap();
            assert_eq!(&alone[0], row);
        }
    }
}
