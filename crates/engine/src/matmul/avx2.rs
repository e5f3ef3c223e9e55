#![allow(clippy::needless_range_loop)] // index loops over fixed register tiles read clearest

//! AVX2+FMA microkernels over the same packed panels as the AVX-512 ones.
//!
//! A 32-column panel is run as two 16-column halves (two 8-lane vectors each), so a row block's
//! accumulators, the weight vectors and a broadcast fit the 16 ymm registers. Each output is
//! accumulated over k in the same order, with the same fused multiply-adds and the same K
//! blocks, as the AVX-512 f32 kernel: the two f32 kernels give bit-identical products.
//!
//! bf16 has no dot-product instruction here: both operands are already rounded to bf16, each
//! pair is widened to two f32 (a shift and a mask, exact) and multiplied-added in f32. A
//! product of two bf16 values is exact in f32, so this matches a bf16 dot product up to its
//! rounding of the pair's sum.

use super::{KC, NR};
use std::arch::x86_64::*;

/// Columns per half panel: two 8-lane vectors.
const HALF: usize = NR / 2;
/// Rows per f32 microkernel call: 12 accumulators, 2 weight vectors and a broadcast.
const MR_F32: usize = 6;
/// Rows per bf16 call: 8 accumulators, 4 widened weight vectors, the mask and a broadcast.
const MR_BF16: usize = 4;

/// All row blocks of one panel, f32: out[r][0..NR] for r < m at row stride `ld`.
///
/// # Safety
/// The CPU has AVX2 and FMA; x holds at least m × k values, panel k × NR, and `out` is valid for
/// writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn f32_panel(x: &[f32], m: usize, k: usize, panel: &[f32], out: *mut f32, ld: usize) {
    debug_assert!(x.len() >= m * k && panel.len() >= k * NR && (m == 0 || ld >= NR));
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        // SAFETY: the caller's contract; block k0..k0+kc of every row and of the panel lies
        // inside x and the panel.
        unsafe { f32_block(&x[k0..], k, m, kc, &panel[k0 * NR..], out, ld, k0 > 0) };
        k0 += kc;
    }
}

/// One K block of one panel, f32: out[r] (+)= x[r][0..kc] · block, for r < m, where row r of x
/// starts at r·stride and the block holds kc × NR weights. With `accumulate`, adds to what
/// `out` holds (the earlier K blocks); otherwise overwrites it.
///
/// # Safety
/// The CPU has AVX2 and FMA; x holds at least (m - 1)·stride + kc values, block kc × NR, and
/// `out` is valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f32_block(x: &[f32], stride: usize, m: usize, kc: usize, block: &[f32], out: *mut f32, ld: usize, accumulate: bool) {
    debug_assert!((m == 0 || x.len() >= (m - 1) * stride + kc) && block.len() >= kc * NR && (m == 0 || ld >= NR));
    // SAFETY: the caller upholds the contract above: the CPU has the enabled features, and
    // every load and store below stays inside x, the block and the m × NR block at `out`
    // (column offsets are below HALF + 8 <= NR).
    unsafe {
        for col in [0, HALF] {
            let mut r0 = 0;
            while r0 < m {
                let mr = MR_F32.min(m - r0);
                let mut acc = [[_mm256_setzero_ps(); 2]; MR_F32];
                if accumulate {
                    for r in 0..mr {
                        acc[r][0] = _mm256_loadu_ps(out.add((r0 + r) * ld + col));
                        acc[r][1] = _mm256_loadu_ps(out.add((r0 + r) * ld + col + 8));
                    }
                }
                let wp = block.as_ptr().add(col);
                let xp = x.as_ptr().add(r0 * stride);
                macro_rules! body {
                    ($mr:expr) => {
                        for kk in 0..kc {
                            let w0 = _mm256_loadu_ps(wp.add(kk * NR));
                            let w1 = _mm256_loadu_ps(wp.add(kk * NR + 8));
                            for r in 0..$mr {
                                let xb = _mm256_set1_ps(*xp.add(r * stride + kk));
                                acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
                                acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
                            }
                        }
                    };
                }
                // Constant row counts let the compiler keep the accumulators in registers.
                match mr {
                    6 => body!(6),
                    5 => body!(5),
                    4 => body!(4),
                    3 => body!(3),
                    2 => body!(2),
                    _ => body!(1),
                }
                for r in 0..mr {
                    _mm256_storeu_ps(out.add((r0 + r) * ld + col), acc[r][0]);
                    _mm256_storeu_ps(out.add((r0 + r) * ld + col + 8), acc[r][1]);
                }
                r0 += MR_F32;
            }
        }
    }
}

/// All row blocks of one panel of bf16 pairs. `x` holds the rows already rounded to bf16 and
/// widened to f32, k2 pairs (2·k2 values) per row; the panel holds k2 × NR pairs.
///
/// # Safety
/// The CPU has AVX2 and FMA; x holds at least m × 2·k2 values, panel k2 × NR, and `out` is
/// valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn bf16_panel(x: &[f32], m: usize, k2: usize, panel: &[u32], out: *mut f32, ld: usize) {
    debug_assert!(x.len() >= m * 2 * k2 && panel.len() >= k2 * NR && (m == 0 || ld >= NR));
    let mut k0 = 0;
    while k0 < k2 {
        let kc = (KC / 2).min(k2 - k0);
        // SAFETY: the caller's contract; pairs k0..k0+kc of every row (values 2·k0..) and of
        // the panel lie inside x and the panel.
        unsafe { bf16_block(&x[2 * k0..], 2 * k2, m, kc, &panel[k0 * NR..], out, ld, k0 > 0) };
        k0 += kc;
    }
}

/// One K block of one panel of bf16 pairs: out[r] (+)= x[r] · block for r < m, where row r of
/// x (bf16 values widened to f32) starts at r·stride values and holds 2·kc of them, and the
/// block holds kc × NR pairs. With `accumulate`, adds to what `out` holds; otherwise
/// overwrites it.
///
/// # Safety
/// The CPU has AVX2 and FMA; x holds at least (m - 1)·stride + 2·kc values, block kc × NR pairs,
/// and `out` is valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bf16_block(x: &[f32], stride: usize, m: usize, kc: usize, block: &[u32], out: *mut f32, ld: usize, accumulate: bool) {
    debug_assert!((m == 0 || x.len() >= (m - 1) * stride + 2 * kc) && block.len() >= kc * NR && (m == 0 || ld >= NR));
    // SAFETY: as for `f32_block`: the caller upholds the contract, and every access stays inside
    // x (row stride `stride`), the block and the m × NR block at `out`.
    unsafe {
        let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        // A pair's low half is the even k, its high half the odd k; bf16 bits are the top half of an f32.
        macro_rules! widen {
            ($p:expr) => {{
                let p = $p;
                (_mm256_castsi256_ps(_mm256_slli_epi32(p, 16)), _mm256_castsi256_ps(_mm256_and_si256(p, high)))
            }};
        }
        for col in [0, HALF] {
            let mut r0 = 0;
            while r0 < m {
                let mr = MR_BF16.min(m - r0);
                let mut acc = [[_mm256_setzero_ps(); 2]; MR_BF16];
                if accumulate {
                    for r in 0..mr {
                        acc[r][0] = _mm256_loadu_ps(out.add((r0 + r) * ld + col));
                        acc[r][1] = _mm256_loadu_ps(out.add((r0 + r) * ld + col + 8));
                    }
                }
                let wp = block.as_ptr().add(col);
                let xp = x.as_ptr().add(r0 * stride);
                macro_rules! body {
                    ($mr:expr) => {
                        for kk in 0..kc {
                            let (w0_even, w0_odd) = widen!(_mm256_loadu_si256(wp.add(kk * NR) as *const __m256i));
                            let (w1_even, w1_odd) = widen!(_mm256_loadu_si256(wp.add(kk * NR + 8) as *const __m256i));
                            for r in 0..$mr {
                                let row = xp.add(r * stride + 2 * kk);
                                let (x_even, x_odd) = (_mm256_set1_ps(*row), _mm256_set1_ps(*row.add(1)));
                                // The odd product first, as AVX512-BF16's dot product adds them.
                                acc[r][0] = _mm256_fmadd_ps(x_even, w0_even, _mm256_fmadd_ps(x_odd, w0_odd, acc[r][0]));
                                acc[r][1] = _mm256_fmadd_ps(x_even, w1_even, _mm256_fmadd_ps(x_odd, w1_odd, acc[r][1]));
                            }
                        }
                    };
                }
                match mr {
                    4 => body!(4),
                    3 => body!(3),
                    2 => body!(2),
                    _ => body!(1),
                }
                for r in 0..mr {
                    _mm256_storeu_ps(out.add((r0 + r) * ld + col), acc[r][0]);
                    _mm256_storeu_ps(out.add((r0 + r) * ld + col + 8), acc[r][1]);
                }
                r0 += MR_BF16;
            }
        }
    }
}
