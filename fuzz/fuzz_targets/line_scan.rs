//! Fuzz target: every input goes through `ssecommander::harness::oracle::line_scan`,
//! which panics when a vector scan of line ends or JSON escapes finds other
//! bytes than the portable scanner and a plain byte filter. `tests/corpus.rs`
//! replays the corpus through the same function under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ssecommander::harness::oracle::line_scan(data));
