//! The test and bench harness, behind the `harness` cargo feature: never in
//! the shipped binary (`cargo build --release` leaves it out); tests,
//! benches and `fuzz/` turn it on.
//!
//! - [`oracle`]: the fuzz oracles, shared by `fuzz/` and `tests/corpus.rs`.

pub mod oracle;
