//! Tells the tests which packed-kernel families the build machine's CPU has, so that a test that
//! needs one is reported by cargo as ignored (with the reason) where the CPU lacks it, instead of
//! passing without checking anything. Tests and builds run on the same machine here and in CI;
//! where they do not, each such test also asserts the family at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(build_cpu_avx512)");
    println!("cargo::rustc-check-cfg=cfg(build_cpu_avx512bf16)");
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    #[cfg(target_arch = "x86_64")]
    if native {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx2") && has!("fma");
        if avx512 {
            println!("cargo::rustc-cfg=build_cpu_avx512");
        }
        if avx512 && has!("avx512bf16") {
            println!("cargo::rustc-cfg=build_cpu_avx512bf16");
        }
    }
    let _ = native;
}
