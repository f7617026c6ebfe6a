//! Linear layers with our own f32 matrix product on the CPU.
//!
//! [`Linear`] repacks an f32 weight `W` (`[out, in]`) once, at load time,
//! into column blocks of [`BLOCK_COLS`] outputs stored input-major
//! (`[block][in][BLOCK_COLS]`). One micro-kernel then serves every input
//! size: it keeps up to [`MR`] input rows times one column block in
//! registers and walks the input dimension once, adding one broadcast input
//! value times one contiguous weight vector per step. Decoding (one row per
//! sequence) streams each weight once, contiguously; a prompt pass reuses
//! each weight block from cache for [`MR`] rows at a time.
//!
//! Every output value is a single fused multiply-add chain over the input
//! dimension in index order, computed by one thread. So a row's result does
//! not depend on the other rows of the call (a batch decodes exactly as its
//! rows alone, and a prompt pass agrees with single steps), nor on the
//! number of threads, nor on the SIMD width (the AVX-512 and AVX2 kernels
//! give the same bits). Work is split over the current rayon pool by column
//! block and row chunk.
//!
//! Weights that are not f32 on the CPU keep candle's matrix product.

use candle_core::{DType, Device, Module, Storage, Tensor};
use rayon::prelude::*;

/// Outputs per column block (four 16-wide vectors).
pub const BLOCK_COLS: usize = 64;

/// Input rows per micro-kernel call.
pub const MR: usize = 6;

/// Input rows per parallel task.
const ROW_CHUNK: usize = 8 * MR;

/// A weight `[n, k]` repacked as `[ceil(n / 64)][k][64]`, zero-padded,
/// starting at `data[offset]`.
#[derive(Clone, Debug)]
struct Packed {
    n: usize,
    k: usize,
    offset: usize,
    data: Vec<f32>,
}

/// The huge-page size the packed weights are aligned to (x86-64 and
/// aarch64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// A zeroed buffer of `len` values whose start (`data[offset]`) is aligned to
/// [`HUGE_PAGE`] and which the kernel is asked to back with transparent huge
/// pages. Decoding streams every weight once per token, and with 4 KiB pages
/// the TLB misses (two-level walks in a virtual machine) cost a third of the
/// memory bandwidth.
fn huge_page_buffer(len: usize) -> (Vec<f32>, usize) {
    let floats_per_page = HUGE_PAGE / std::mem::size_of::<f32>();
    // Whole huge pages (the last one is partly unused), plus slack to align.
    let rounded = len.next_multiple_of(floats_per_page);
    let mut data: Vec<f32> = Vec::with_capacity(rounded + floats_per_page);
    let start = data.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let offset = (aligned - start) / std::mem::size_of::<f32>();
    #[cfg(target_os = "linux")]
    {
        let bytes = rounded * std::mem::size_of::<f32>();
        if bytes > 0 {
            // SAFETY: `[aligned, aligned + bytes)` lies inside the allocation
            // of `data` (capacity `rounded` plus one huge page of slack), and
            // MADV_HUGEPAGE only changes how the kernel backs those pages,
            // never their contents. A failure just leaves small pages.
            let rc =
                unsafe { libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) };
            if rc != 0 {
                log::debug!("madvise(MADV_HUGEPAGE) failed; weights use small pages");
            }
        }
    }
    // Touching the memory after the advice lets the page faults take huge pages.
    data.resize(offset + len, 0.0);
    (data, offset)
}

impl Packed {
    fn new(w: &[f32], n: usize, k: usize) -> Self {
        let blocks = n.div_ceil(BLOCK_COLS);
        let len = blocks * k * BLOCK_COLS;
        let (mut data, offset) = huge_page_buffer(len);
        data[offset..]
            .par_chunks_mut(k * BLOCK_COLS)
            .enumerate()
            .for_each(|(b, block)| {
                let first = b * BLOCK_COLS;
                for c in 0..BLOCK_COLS.min(n - first) {
                    let row = &w[(first + c) * k..(first + c + 1) * k];
                    for (kk, v) in row.iter().enumerate() {
                        block[kk * BLOCK_COLS + c] = *v;
                    }
                }
            });
        Packed { n, k, offset, data }
    }

    fn weights(&self) -> &[f32] {
        &self.data[self.offset..]
    }

    fn blocks(&self) -> usize {
        self.n.div_ceil(BLOCK_COLS)
    }

    /// `y = x W^T` for `m` rows of `x` (`[m, k]`, row-major); `y` is `[m, n]`.
    fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert!(
            x.len() == m * k && y.len() == m * n,
            "packed matmul: slice lengths do not match m={m}, k={k}, n={n}"
        );
        let kernel = select_kernel();
        let chunks = m.div_ceil(ROW_CHUNK);
        let blocks = self.blocks();
        let out = OutPtr(y.as_mut_ptr());
        let run_task = |task: usize| {
            let (b, chunk) = (task / chunks, task % chunks);
            let col0 = b * BLOCK_COLS;
            let cols = BLOCK_COLS.min(n - col0);
            let wb = &self.weights()[b * k * BLOCK_COLS..(b + 1) * k * BLOCK_COLS];
            let row_end = ((chunk + 1) * ROW_CHUNK).min(m);
            let mut row = chunk * ROW_CHUNK;
            while row < row_end {
                let rows = MR.min(row_end - row);
                let mut tile = [0f32; MR * BLOCK_COLS];
                kernel(&x[row * k..(row + rows) * k], rows, k, wb, &mut tile);
                for r in 0..rows {
                    let src = &tile[r * BLOCK_COLS..r * BLOCK_COLS + cols];
                    // SAFETY: `y` holds `m * n` values (asserted above) and
                    // outlives the parallel loop; task (b, chunk) writes only
                    // rows of its chunk and columns of its block, so no two
                    // tasks write the same value and nobody reads `y` meanwhile.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            src.as_ptr(),
                            out.at((row + r) * n + col0),
                            cols,
                        );
                    }
                }
                row += rows;
            }
        };
        parallel_for(blocks * chunks, run_task);
    }
}

/// Runs `task(0..n)` on the current thread count. When that count equals
/// the size of candle's barrier pool, the pool runs them: its workers spin
/// for a moment between calls, and a decoding step makes ~150 short
/// parallel calls in a row (waking a sleeping rayon worker for each cost a
/// sixth of the step on the project's VM). Otherwise rayon runs them.
pub fn parallel_for(n: usize, task: impl Fn(usize) + Sync + Send) {
    let threads = rayon::current_num_threads();
    let spinning = candle_core::utils::barrier_pool();
    if threads > 1 && spinning.n_workers() + 1 == threads {
        spinning.execute_chunked(n, |range| range.for_each(&task));
    } else {
        (0..n).into_par_iter().for_each(task);
    }
}

/// The output pointer shared by the tasks of one parallel call (a product
/// here, an attention call in `attention.rs`).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);

impl OutPtr {
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: the tasks of one call (`Packed::matmul`, `attention::attend`)
// write disjoint parts of the output through this pointer; see the comment
// at each write.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

#[derive(Clone, Debug)]
enum Weight {
    Packed(Packed),
    Dense(Tensor),
}

/// `y = x W^T + b` with `W` of shape `[out, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer over a `[out, in]` weight and an optional `[out]` bias. An
    /// f32 weight on the CPU is repacked for the own kernel (using the
    /// current rayon pool) and the tensor is dropped.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let packable = matches!(weight.device(), Device::Cpu)
            && weight.dtype() == DType::F32
            && weight.rank() == 2;
        if !packable {
            return Ok(Linear {
                weight: Weight::Dense(weight),
                bias,
            });
        }
        let (n, k) = weight.dims2()?;
        let weight = weight.contiguous()?;
        let packed = {
            let (storage, layout) = weight.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("linear: a CPU tensor without CPU storage");
            };
            let w = &cpu.as_slice::<f32>()?[layout.start_offset()..][..n * k];
            Packed::new(w, n, k)
        };
        Ok(Linear {
            weight: Weight::Packed(packed),
            bias,
        })
    }

    fn packed_forward(&self, p: &Packed, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out_shape = x.dims().to_vec();
        let Some(last) = out_shape.last_mut() else {
            candle_core::bail!("linear: a scalar input");
        };
        if *last != p.k {
            candle_core::bail!(
                "linear: input width {} does not match weight [{}, {}]",
                last,
                p.n,
                p.k
            );
        }
        *last = p.n;
        let x = x.contiguous()?;
        let m = x.elem_count() / p.k;
        let mut y = vec![0f32; m * p.n];
        {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("linear: packed weights used off the CPU");
            };
            let xs = &cpu.as_slice::<f32>()?[layout.start_offset()..][..m * p.k];
            p.matmul(xs, m, &mut y);
        }
        Tensor::from_vec(y, out_shape, &Device::Cpu)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            Weight::Packed(p) if x.dtype() == DType::F32 && x.device().is_cpu() => {
                self.packed_forward(p, x)?
            }
            Weight::Packed(_) => {
                candle_core::bail!("linear: f32 CPU weights need an f32 CPU input")
            }
            Weight::Dense(w) => {
                let w = w.t()?;
                match x.rank() {
                    2 => x.matmul(&w)?,
                    _ => x.broadcast_matmul(&w)?,
                }
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `tile[r * 64 + c] = sum_kk x[r * k + kk] * wb[kk * 64 + c]` for
/// `rows <= MR` input rows and one packed column block `wb`.
type Kernel = fn(&[f32], usize, usize, &[f32], &mut [f32; MR * BLOCK_COLS]);

fn select_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::kernel_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return x86::kernel_avx2;
        }
    }
    kernel_portable
}

/// The same chains without SIMD intrinsics (`mul_add` keeps the rounding of
/// the fused kernels).
fn kernel_portable(
    x: &[f32],
    rows: usize,
    k: usize,
    wb: &[f32],
    tile: &mut [f32; MR * BLOCK_COLS],
) {
    for r in 0..rows {
        let acc = &mut tile[r * BLOCK_COLS..(r + 1) * BLOCK_COLS];
        acc.fill(0.0);
        for (kk, w) in wb.chunks_exact(BLOCK_COLS).enumerate() {
            let a = x[r * k + kk];
            for (o, w) in acc.iter_mut().zip(w) {
                *o = a.mul_add(*w, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK_COLS, MR};
    use std::arch::x86_64::*;

    /// `R` rows times 64 columns in 4 x R AVX-512 accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `x` must hold `R * k` values and `wb`
    /// `k * 64`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512<const R: usize>(
        x: *const f32,
        k: usize,
        wb: *const f32,
        tile: &mut [f32; MR * BLOCK_COLS],
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for kk in 0..k {
            let w = wb.add(kk * BLOCK_COLS);
            let w0 = _mm512_loadu_ps(w);
            let w1 = _mm512_loadu_ps(w.add(16));
            let w2 = _mm512_loadu_ps(w.add(32));
            let w3 = _mm512_loadu_ps(w.add(48));
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*x.add(r * k + kk));
                acc[0] = _mm512_fmadd_ps(a, w0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, w1, acc[1]);
                acc[2] = _mm512_fmadd_ps(a, w2, acc[2]);
                acc[3] = _mm512_fmadd_ps(a, w3, acc[3]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(tile.as_mut_ptr().add(r * BLOCK_COLS + v * 16), *acc);
            }
        }
    }

    /// `R` rows times 64 columns, one 16-column half-panel pair at a time in
    /// 8-wide AVX2 vectors (at most 12 accumulators fit the 16 registers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `x` must hold `R * k` values and
    /// `wb` `k * 64`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const R: usize>(
        x: *const f32,
        k: usize,
        wb: *const f32,
        tile: &mut [f32; MR * BLOCK_COLS],
    ) {
        for quarter in 0..4 {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for kk in 0..k {
                let w = wb.add(kk * BLOCK_COLS + quarter * 16);
                let w0 = _mm256_loadu_ps(w);
                let w1 = _mm256_loadu_ps(w.add(8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_ps(*x.add(r * k + kk));
                    acc[0] = _mm256_fmadd_ps(a, w0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a, w1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let dst = tile.as_mut_ptr().add(r * BLOCK_COLS + quarter * 16);
                _mm256_storeu_ps(dst, acc[0]);
                _mm256_storeu_ps(dst.add(8), acc[1]);
            }
        }
    }

    macro_rules! kernel {
        ($name:ident, $tile:ident) => {
            /// Dispatches `rows` (1..=MR) to the tile routine of that height.
            pub(super) fn $name(
                x: &[f32],
                rows: usize,
                k: usize,
                wb: &[f32],
                tile: &mut [f32; MR * BLOCK_COLS],
            ) {
                assert!(
                    (1..=MR).contains(&rows) && x.len() >= rows * k && wb.len() >= k * BLOCK_COLS,
                    "linear kernel: slice lengths do not match rows={rows}, k={k}"
                );
                let (x, wb) = (x.as_ptr(), wb.as_ptr());
                // SAFETY: `select_kernel` picks this kernel only after the CPU
                // reported the features the tile routine enables, and the
                // assertion above gives the slice lengths it requires.
                unsafe {
                    match rows {
                        1 => $tile::<1>(x, k, wb, tile),
                        2 => $tile::<2>(x, k, wb, tile),
                        3 => $tile::<3>(x, k, wb, tile),
                        4 => $tile::<4>(x, k, wb, tile),
                        5 => $tile::<5>(x, k, wb, tile),
                        _ => $tile::<6>(x, k, wb, tile),
                    }
                }
            }
        };
    }

    kernel!(kernel_avx512, tile_avx512);
    kernel!(kernel_avx2, tile_avx2);
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
    fn the_packed_product_matches_candles() {
        let dev = Device::Cpu;
        for (m, k, n) in [(1, 37, 130), (3, 64, 129), (5, 576, 192), (50, 100, 70)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let lin = Linear::new(w.clone(), None).unwrap();
            let got: Vec<f32> = lin
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want = reference(&x, &w);
            assert_eq!(got.len(), want.len());
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
        let x = Tensor::randn(0f32, 1.0, (61, 100), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (300, 100), &dev).unwrap();
        let lin = Linear::new(w, None).unwrap();
        let all: Vec<Vec<f32>> = lin.forward(&x).unwrap().to_vec2().unwrap();
        for (i, row) in all.iter().enumerate() {
            let alone: Vec<Vec<f32>> = lin
                .forward(&x.narrow(0, i, 1).unwrap())
                .unwrap()
                .to_vec2()
                .unwrap();
            assert_eq!(&alone[0], row, "row {i}");
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        let (k, rows) = (45, MR);
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0)
            .collect();
        let wb: Vec<f32> = (0..k * BLOCK_COLS)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let mut want = [0f32; MR * BLOCK_COLS];
        kernel_portable(&x, rows, k, &wb, &mut want);
        let mut got = [0f32; MR * BLOCK_COLS];
        select_kernel()(&x, rows, k, &wb, &mut got);
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let mut avx2 = [0f32; MR * BLOCK_COLS];
            x86::kernel_avx2(&x, rows, k, &wb, &mut avx2);
            assert_eq!(avx2, want);
        }
    }
}
