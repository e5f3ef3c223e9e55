//! Tells the tests whether the build machine's CPU has two packed-kernel families (AVX-512 as
//! well as AVX2), so a test that compares them is reported by cargo as ignored where it cannot
//! compare anything. Tests and builds run on the same machine here and in CI.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(build_cpu_avx512)");
    #[cfg(target_arch = "x86_64")]
    if std::env::var("HOST").ok() == std::env::var("TARGET").ok() {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx2") && has!("fma") {
            println!("cargo::rustc-cfg=build_cpu_avx512");
        }
    }
}
