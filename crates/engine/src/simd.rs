//! CPU feature detection and the building blocks of the CPU kernels: a macro that compiles a
//! function for AVX-512 and AVX2 and picks one at run time (the crate itself is built for
//! baseline x86-64), and a vectorizable exp.

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

/// Defines a function whose body is compiled three times (AVX-512, AVX2+FMA, baseline) and picks
/// the best for this CPU at run time. Helpers the body calls must be `#[inline(always)]` to be
/// compiled with the same features.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                match $crate::simd::level() {
                    $crate::simd::Level::Avx512 | $crate::simd::Level::Avx512Bf16 => return unsafe { avx512($($arg),*) },
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            inner($($arg),*)
        }
    };
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
    let p = 1.0 + f * (std::f32::consts::LN_2 + f * (0.240_226_5 + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355 + f * 0.000_154_035_3)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    let r = p * f32::from_bits(bits);
    if x < -87.0 { 0.0 } else { r }
}

crate::multiversion! {
/// Σ v², vectorized.
pub fn sum_squares(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum()
}
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
