//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same oracles the fuzz targets call, under plain `cargo test`: every seed
//! and every crash once found (kept as a regression case) stays checked on
//! stable Rust, without libFuzzer.

use std::fs;
use std::path::PathBuf;

/// Runs every file of `fuzz/corpus/<target>/` through `oracle`, naming the
/// file that fails; there must be at least one.
fn replay(target: &str, oracle: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        if std::panic::catch_unwind(|| oracle(&data)).is_err() {
            panic!("{target}: {} breaks the oracle (see the panic above)", path.display());
        }
    }
}

#[test]
fn http_head_corpus() {
    replay("http_head", ssecommander::harness::oracle::http_head);
}

#[test]
fn query_argv_corpus() {
    replay("query_argv", ssecommander::harness::oracle::query_argv);
}

#[test]
fn sse_encoder_corpus() {
    replay("sse_encoder", ssecommander::harness::oracle::sse_encoder);
}

#[test]
fn chunked_corpus() {
    replay("chunked", ssecommander::harness::oracle::chunked);
}

#[test]
fn line_scan_corpus() {
    replay("line_scan", ssecommander::harness::oracle::line_scan);
}
