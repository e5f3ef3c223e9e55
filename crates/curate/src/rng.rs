//! The curation's draws, from the project's seeded SplitMix64: they depend only on the seed, on
//! every platform and with every version of the dependencies.

pub use valuedrift_trace::significance::SplitMix64;

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    let unit = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    lo + (hi - lo) * unit
}

/// A seeded Fisher-Yates shuffle.
pub fn shuffle<T>(rng: &mut SplitMix64, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}
