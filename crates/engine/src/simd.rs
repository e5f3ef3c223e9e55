//! Small vector kernels for the CPU paths, compiled for AVX-512 and AVX2 and chosen at run time
//! (the crate itself is built for baseline x86-64).

#[inline(always)]
pub fn dot_inline(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler keep several vector accumulators in flight.
    let mut acc = [0f32; 16];
    let chunks = a.len() / 16 * 16;
    for i in (0..chunks).step_by(16) {
        for j in 0..16 {
            acc[j] += a[i + j] * b[i + j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[inline(always)]
fn axpy_generic(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::dot_inline(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_inline(a, b)
    }
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy_avx512(alpha: f32, x: &[f32], y: &mut [f32]) {
        super::axpy_generic(alpha, x, y)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_avx2(alpha: f32, x: &[f32], y: &mut [f32]) {
        super::axpy_generic(alpha, x, y)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Avx512Bf16,
    Avx512,
    Avx2,
    Baseline,
}

pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("VALUEDRIFT_NO_AVX512").is_none() && is_x86_feature_detected!("avx512f") {
                if is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512bw") {
                    return Level::Avx512Bf16;
                }
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match level() {
            Level::Avx512Bf16 | Level::Avx512 => return x86::dot_avx512(a, b),
            Level::Avx2 => return x86::dot_avx2(a, b),
            Level::Baseline => {}
        }
    }
    dot_inline(a, b)
}

/// y += alpha * x
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match level() {
            Level::Avx512Bf16 | Level::Avx512 => return x86::axpy_avx512(alpha, x, y),
            Level::Avx2 => return x86::axpy_avx2(alpha, x, y),
            Level::Baseline => {}
        }
    }
    axpy_generic(alpha, x, y)
}

/// Runs `f` compiled for the best vector extension of this CPU: `f` and whatever it inlines
/// (`#[inline(always)]` helpers) get AVX-512 or AVX2 code.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        unsafe {
            match level() {
                Level::Avx512Bf16 | Level::Avx512 => return avx512(f),
                Level::Avx2 => return avx2(f),
                Level::Baseline => {}
            }
        }
    }
    f()
}

/// exp(x) for f32 in a form the compiler vectorizes (no branches, no libm call): 2^(x·log2 e)
/// split into an integer power set in the exponent bits and a degree-6 polynomial for the
/// fraction. Relative error below 1e-5 on [-87, 88] (mostly from rounding x·log2 e in f32);
/// inputs below -87 give 0.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    let t = (x * std::f32::consts::LOG2_E).clamp(-126.0, 127.0);
    let n = (t + 0.5).floor();
    let f = t - n;
    // 2^f on [-0.5, 0.5]: Taylor coefficients of exp(f·ln2); the error term is below 2e-7.
    let p = 1.0 + f * (0.693_147_2 + f * (0.240_226_5 + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355 + f * 0.000_154_035_3)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    let r = p * f32::from_bits(bits);
    if x < -87.0 { 0.0 } else { r }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_fast_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (super::exp_fast(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 1e-5, "relative error {worst}");
        assert_eq!(super::exp_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp_fast(-100.0), 0.0);
    }
}
