#![allow(clippy::needless_range_loop)] // index loops over fixed register tiles read clearest

//! AVX-512 microkernels over packed panels: f32 FMA, and bf16 pairs through the AVX512-BF16
//! dot-product instruction.

use super::{KC, NR};
use std::arch::x86_64::*;

/// Rows of x per microkernel call: 8 rows × 2 vectors of accumulators.
const MR: usize = 8;

/// All row blocks of one panel, f32: out[r][0..NR] for r < m at row stride `ld`.
///
/// # Safety
/// The CPU has AVX-512F; x holds at least m × k values, panel k × NR, and `out` is valid for
/// writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx512f")]
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
/// The CPU has AVX-512F; x holds at least (m - 1)·stride + kc values, block kc × NR, and `out`
/// is valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f32_block(x: &[f32], stride: usize, m: usize, kc: usize, block: &[f32], out: *mut f32, ld: usize, accumulate: bool) {
    debug_assert!((m == 0 || x.len() >= (m - 1) * stride + kc) && block.len() >= kc * NR && (m == 0 || ld >= NR));
    // SAFETY: the caller upholds the contract above: the CPU has the enabled features, and
    // every load and store below stays inside x, the block and the m × NR block at `out`.
    unsafe {
        let mut r0 = 0;
        while r0 < m {
            let mr = MR.min(m - r0);
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            if accumulate {
                for r in 0..mr {
                    acc[r][0] = _mm512_loadu_ps(out.add((r0 + r) * ld));
                    acc[r][1] = _mm512_loadu_ps(out.add((r0 + r) * ld + 16));
                }
            }
            let wp = block.as_ptr();
            let xp = x.as_ptr().add(r0 * stride);
            macro_rules! body {
                ($mr:expr) => {
                    for kk in 0..kc {
                        let w0 = _mm512_loadu_ps(wp.add(kk * NR));
                        let w1 = _mm512_loadu_ps(wp.add(kk * NR + 16));
                        for r in 0..$mr {
                            let xb = _mm512_set1_ps(*xp.add(r * stride + kk));
                            acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
                            acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
                        }
                    }
                };
            }
            // Constant row counts let the compiler keep the accumulators in registers.
            match mr {
                8 => body!(8),
                7 => body!(7),
                6 => body!(6),
                5 => body!(5),
                4 => body!(4),
                3 => body!(3),
                2 => body!(2),
                _ => body!(1),
            }
            for r in 0..mr {
                _mm512_storeu_ps(out.add((r0 + r) * ld), acc[r][0]);
                _mm512_storeu_ps(out.add((r0 + r) * ld + 16), acc[r][1]);
            }
            r0 += MR;
        }
    }
}

/// All row blocks of one panel with bf16 dot products; `x` and `panel` hold bf16 pairs.
///
/// # Safety
/// The CPU has AVX-512F, BW and BF16; x holds at least m × k2 pairs, panel k2 × NR, and `out` is
/// valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
pub(super) unsafe fn bf16_panel(x: &[u32], m: usize, k2: usize, panel: &[u32], out: *mut f32, ld: usize) {
    debug_assert!(x.len() >= m * k2 && panel.len() >= k2 * NR && (m == 0 || ld >= NR));
    let mut k0 = 0;
    while k0 < k2 {
        let kc = (KC / 2).min(k2 - k0);
        // SAFETY: the caller's contract; block k0..k0+kc of every row and of the panel lies
        // inside x and the panel.
        unsafe { bf16_block(&x[k0..], k2, m, kc, &panel[k0 * NR..], out, ld, k0 > 0) };
        k0 += kc;
    }
}

/// One K block of one panel with bf16 dot products: out[r] (+)= x[r][0..kc] · block for r < m,
/// in pairs (row r of x starts at r·stride pairs; the block holds kc × NR pairs). With
/// `accumulate`, adds to what `out` holds; otherwise overwrites it.
///
/// # Safety
/// The CPU has AVX-512F, BW and BF16; x holds at least (m - 1)·stride + kc pairs, block kc × NR,
/// and `out` is valid for writes (and reads) of m rows of NR values at stride ld.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bf16_block(x: &[u32], stride: usize, m: usize, kc: usize, block: &[u32], out: *mut f32, ld: usize, accumulate: bool) {
    debug_assert!((m == 0 || x.len() >= (m - 1) * stride + kc) && block.len() >= kc * NR && (m == 0 || ld >= NR));
    // SAFETY: the caller upholds the contract above: the CPU has the enabled features, and
    // every load and store below stays inside x, the block and the m × NR block at `out`.
    unsafe {
        let mut r0 = 0;
        while r0 < m {
            let mr = MR.min(m - r0);
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            if accumulate {
                for r in 0..mr {
                    acc[r][0] = _mm512_loadu_ps(out.add((r0 + r) * ld));
                    acc[r][1] = _mm512_loadu_ps(out.add((r0 + r) * ld + 16));
                }
            }
            let wp = block.as_ptr();
            let xp = x.as_ptr().add(r0 * stride);
            macro_rules! body {
                ($mr:expr) => {
                    for kk in 0..kc {
                        let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(kk * NR) as *const _));
                        let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(kk * NR + 16) as *const _));
                        for r in 0..$mr {
                            let xb: __m512bh = std::mem::transmute(_mm512_set1_epi32(*xp.add(r * stride + kk) as i32));
                            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xb, w0);
                            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xb, w1);
                        }
                    }
                };
            }
            match mr {
                8 => body!(8),
                7 => body!(7),
                6 => body!(6),
                5 => body!(5),
                4 => body!(4),
                3 => body!(3),
                2 => body!(2),
                _ => body!(1),
            }
            for r in 0..mr {
                _mm512_storeu_ps(out.add((r0 + r) * ld), acc[r][0]);
                _mm512_storeu_ps(out.add((r0 + r) * ld + 16), acc[r][1]);
            }
            r0 += MR;
        }
    }
}
