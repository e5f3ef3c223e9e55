//! The engine's integration tests, one binary: real models against reference numbers from
//! transformers and TRL (fixtures/reference, ../shared/fixtures).
//! `VALUEDRIFT_TEST_DEVICE=cuda` runs them on a GPU (build with `--features cuda`).

mod common;
mod embedding;
mod generation;
mod inputs;
mod probe;
mod quantized;
mod reference;
mod scoring;
mod training;
