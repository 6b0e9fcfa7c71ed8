//! Fuzz target: every input goes through `ssecommander::harness::oracle::sse_encoder`, which
//! panics on a broken promise. `tests/corpus.rs` replays the corpus through
//! the same function under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ssecommander::harness::oracle::sse_encoder(data));
