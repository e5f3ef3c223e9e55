//! Tells the tests whether the build machine's CPU runs the packed kernels (AVX2 and FMA), so
//! that a test that needs them is reported by cargo as ignored (with the reason) where the CPU
//! lacks them, instead of passing without checking anything. Tests and builds run on the same
//! machine here and in CI; where they do not, each such test also asserts the family at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(build_cpu_packed_kernels)");
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    #[cfg(target_arch = "x86_64")]
    if native && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        println!("cargo::rustc-cfg=build_cpu_packed_kernels");
    }
    let _ = native;
}
