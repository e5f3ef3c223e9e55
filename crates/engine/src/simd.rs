//! CPU feature detection and the building blocks of the CPU kernels: a macro that compiles a
//! function for AVX-512 and AVX2 and picks one at run time (the crate itself is built for
//! baseline x86-64), and a vectorizable exp.

/// A kernel family: the instruction sets a kernel was compiled for. Ordered weakest first, so a
/// family can run wherever the CPU's family is at least as strong.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    /// Plain x86-64 (SSE2), or any other architecture: portable Rust only.
    Baseline,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 F, BW and VL, with AVX2 and FMA.
    Avx512,
    /// `Avx512` plus AVX512-BF16 dot products.
    Avx512Bf16,
}

/// The environment variable that caps the kernel family (`baseline`, `avx2`, `avx512`,
/// `avx512bf16`, or `auto`), so every family can be tested on a CPU that has them all.
pub const KERNELS_VAR: &str = "VALUEDRIFT_KERNELS";

impl Level {
    pub const ALL: [Level; 4] = [Level::Baseline, Level::Avx2, Level::Avx512, Level::Avx512Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Bf16 => "avx512bf16",
        }
    }

    /// The strongest family this CPU runs: every feature the family's functions are compiled
    /// with must be present (`multiversion!` compiles with avx512f,avx512bw,avx512vl,avx2,fma).
    pub fn detected() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let avx512 = avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl");
            if avx512 && is_x86_feature_detected!("avx512bf16") {
                return Level::Avx512Bf16;
            }
            if avx512 {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    /// The family `VALUEDRIFT_KERNELS` asks for (None for unset or `auto`).
    pub fn requested() -> Result<Option<Level>, String> {
        match std::env::var(KERNELS_VAR) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("auto") => Ok(None),
            Ok(v) => Level::ALL
                .into_iter()
                .find(|l| v.eq_ignore_ascii_case(l.name()))
                .map(Some)
                .ok_or_else(|| format!("{KERNELS_VAR}={v:?} is not a kernel family (auto, baseline, avx2, avx512, avx512bf16)")),
            Err(e) => Err(format!("{KERNELS_VAR}: {e}")),
        }
    }
}

/// The kernel family this process runs: the CPU's own, capped by `VALUEDRIFT_KERNELS`. Decided
/// once, so a packed weight made under one family is never run under another. A request above
/// what the CPU has, or a value that names no family, is reported on stderr and capped, never
/// honoured: no path reachable from safe code can run an instruction the CPU lacks.
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = Level::detected();
        match Level::requested() {
            Ok(None) => detected,
            Ok(Some(want)) if want <= detected => want,
            Ok(Some(want)) => {
                eprintln!("warning: {KERNELS_VAR}={} asks for more than this CPU has; using {}", want.name(), detected.name());
                detected
            }
            Err(message) => {
                eprintln!("warning: {message}; using {}", detected.name());
                detected
            }
        }
    })
}

/// Defines a function whose body is compiled three times (AVX-512, AVX2+FMA, baseline) and picks
/// the one `level()` allows. Helpers the body calls must be `#[inline(always)]` to be compiled
/// with the same features.
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
                    // SAFETY: level() is Avx512 or stronger only when the CPU has every feature
                    // `avx512` is compiled with (Level::detected checks exactly those).
                    $crate::simd::Level::Avx512 | $crate::simd::Level::Avx512Bf16 => return unsafe { avx512($($arg),*) },
                    // SAFETY: level() is Avx2 only when the CPU has AVX2 and FMA.
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
    let p =
        1.0 + f * (std::f32::consts::LN_2 + f * (0.240_226_5 + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355 + f * 0.000_154_035_3)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    let r = p * f32::from_bits(bits);
    if x < -87.0 {
        0.0
    } else {
        r
    }
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

    #[test]
    fn families_are_ordered_and_never_above_the_cpu() {
        use super::{level, Level};
        assert!(Level::Baseline < Level::Avx2 && Level::Avx2 < Level::Avx512 && Level::Avx512 < Level::Avx512Bf16);
        assert!(level() <= Level::detected());
        for l in Level::ALL {
            assert_eq!(Level::ALL.into_iter().find(|x| x.name() == l.name()), Some(l));
        }
        // Under a forced family (the CI subset runs with VALUEDRIFT_KERNELS=avx2), the switch holds.
        if let Ok(Some(want)) = Level::requested() {
            assert_eq!(level(), want.min(Level::detected()), "{} is honoured up to the CPU's family", super::KERNELS_VAR);
        }
    }
}
