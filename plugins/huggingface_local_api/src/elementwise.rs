//! Element-wise f32 kernels for the CPU: a vectorizable `exp` and the
//! fused `silu(gate) * up` of gated MLPs.

use rayon::prelude::*;

/// `e^x` in plain arithmetic that vectorizes (libm's `expf` is one call
/// per value and was most of a prompt pass's attention time): `x = n ln2 +
/// r` with |r| <= ln2 / 2, Cephes' degree-6 polynomial for `e^r`, and `2^n`
/// put into the exponent bits. Relative error about 2e-7 (a few ulp);
/// inputs are clamped to [-87, 88], so results stay finite and normal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `silu(gate) * up` for rows laid out as `[gate (width) | up (width)]`
/// (the fused gate/up projection's output); returns `[rows, width]`. One
/// pass instead of candle's strided silu, product and copies.
pub fn silu_mul(gate_up: &[f32], width: usize) -> Vec<f32> {
    let rows = gate_up.len() / (2 * width).max(1);
    let mut out = vec![0f32; rows * width];
    out.par_chunks_mut(width)
        .zip(gate_up.par_chunks(2 * width))
        .for_each(|(o, gu)| silu_mul_row(&gu[..width], &gu[width..], o));
    out
}

fn silu_mul_row(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide(gate: &[f32], up: &[f32], out: &mut [f32]) {
                silu_mul_body(gate, up, out)
            }
            // SAFETY: the CPU reported AVX-512F just above.
            return unsafe { wide(gate, up, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
                silu_mul_body(gate, up, out)
            }
            // SAFETY: the CPU reported AVX2 just above.
            return unsafe { avx2(gate, up, out) };
        }
    }
    silu_mul_body(gate, up, out)
}

#[inline(always)]
fn silu_mul_body(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = *g / (1.0 + exp(-*g)) * *u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, libm {want}"
            );
        }
    }

    #[test]
    fn silu_mul_matches_the_formula() {
        let gu: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) / 3.0).collect();
        let got = silu_mul(&gu, 10);
        assert_eq!(got.len(), 20);
        for (r, row) in got.chunks(10).enumerate() {
            for (j, v) in row.iter().enumerate() {
                let g = gu[r * 20 + j];
                let u = gu[r * 20 + 10 + j];
                let want = g / (1.0 + (-g).exp()) * u;
                assert!(
                    (v - want).abs() < 1e-5 * (1.0 + want.abs()),
                    "{v} vs {want}"
                );
            }
        }
    }
}
