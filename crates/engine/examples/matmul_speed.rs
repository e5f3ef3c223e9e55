//! Compares candle's matmul with the packed kernels on decode-shaped products.
//! cargo run --release --example matmul_speed
use candle_core::{Device, Tensor};
use std::time::Instant;
use valuedrift_engine::matmul::{supported, PackedWeight, Precision};

fn main() {
    for &(m, n, k) in &[(64, 576, 576), (64, 1536, 576), (64, 576, 1536), (64, 49152, 576), (256, 1536, 576), (1024, 1536, 576)] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let flops = 2.0 * (m * n * k) as f64;
        let reps = (2e10 / flops).clamp(3.0, 200.0) as usize;
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let _ = xt.matmul(&wt.t().unwrap()).unwrap();
        let t = Instant::now();
        for _ in 0..reps {
            let _ = xt.matmul(&wt.t().unwrap()).unwrap();
        }
        let candle = flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
        let mut line = format!("m={m:5} n={n:6} k={k:5}  candle {candle:6.1} GFLOP/s");
        for p in [Precision::F32, Precision::Bf16] {
            if !supported(p) {
                continue;
            }
            let pw = PackedWeight::pack(&w, n, k, p);
            let _ = pw.matmul(&x, m);
            let t = Instant::now();
            for _ in 0..reps {
                let _ = pw.matmul(&x, m);
            }
            line += &format!("  packed {p:?} {:6.1}", flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        println!("{line}");
    }
}
