//! The SSE encoder (`ssecommander::sse`): bytes of child output in, frames out.
//!
//! Every benchmark reports `Throughput::Bytes` of *input* text (what the child
//! wrote), so MB/s figures compare directly with the end-to-end payload rate.
//!
//! - `encode/{json,raw}/{lines100,line64k,escapes}`: one `Encoder::output` of a
//!   64 KiB read, then the frame's `parts` walked and their lengths summed (what
//!   `writev` would be handed). Inputs: 100-byte lines; one 64 KiB line; text
//!   needing escapes (CR, tabs, quotes, backslashes, control bytes, multi-byte
//!   UTF-8, invalid bytes).
//! - `pipe_text/{json,raw}/{parts,to_vec}`: `PipeText::feed` of consecutive
//!   64 KiB reads of a stream of 100-byte lines (reads end mid-line, so the
//!   held-partial-line path runs as it does in the server), each frame consumed
//!   by summing `parts` lengths, or copied with `to_vec` to show what a copy
//!   per event would cost.
//!
//! Run: `cargo bench --bench encoder` (groups are short: 1 s warm-up, 3 s
//! measurement; pass `-- --measurement-time 10` for steadier numbers).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssecommander::sse::{Encoder, Format, Frame, PipeText, Stream};

/// The size of one pipe read in the server.
const READ: usize = 64 * 1024;

const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:-_=+()[]{}<>!?#%&*/|~^";

/// `len` bytes of lines of `line_len` bytes (printable ASCII, no quotes or
/// backslashes, LF-terminated), as `shared/bench/gen-data.py` writes them.
fn lines(line_len: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0usize;
    while out.len() < len {
        let body = line_len - 1;
        for k in 0..body {
            out.push(ALPHA[(i * 7 + k) % ALPHA.len()]);
        }
        out.push(b'\n');
        i += 1;
    }
    out.truncate(len);
    out
}

/// About `len` bytes of text that needs escaping in every line: progress-bar
/// CRs, tabs, quotes, backslashes, control bytes, multi-byte UTF-8 and invalid
/// bytes, ending at a line end.
fn escapes(len: usize) -> Vec<u8> {
    let pieces: [&[u8]; 10] = [
        b"progress 42%\r",
        b"key\t\"value\"\t",
        b"C:\\path\\to\\file ",
        b"\x1b[1;32mgreen\x1b[0m ",
        "héllo wörld — ünïcode ✓ 日本語 🚀 ".as_bytes(),
        b"bad \xff\xfe bytes \xc3\x28 ",
        b"bell\x07 nul\x00 ",
        b"plain ascii text that needs nothing at all ",
        b"\r\n",
        b"\n",
    ];
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(pieces[i % pieces.len()]);
        i += 1;
    }
    let end = out.iter().rposition(|&b| b == b'\n').map_or(out.len(), |i| i + 1);
    out.truncate(end);
    out
}

/// Sums the lengths of a frame's pieces, chunked as the server sends them.
fn consume(frame: &Frame, text: &[u8]) -> usize {
    frame.parts(text, true).map(<[u8]>::len).sum()
}

fn formats() -> [(&'static str, Format); 2] {
    [("json", Format::Json), ("raw", Format::Raw)]
}

fn encode(c: &mut Criterion) {
    let one_line = lines(READ, READ); // 65,535 bytes and its LF
    let inputs = [
        ("lines100", lines(100, READ / 100 * 100)),
        ("line64k", one_line),
        ("escapes", escapes(READ)),
    ];
    let mut group = c.benchmark_group("encode");
    for (fname, format) in formats() {
        for (iname, text) in &inputs {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(fname, iname), text, |b, text| {
                let mut enc = Encoder::new(format);
                b.iter(|| {
                    let frame = enc.output(Stream::Stdout, black_box(text));
                    black_box(consume(frame, text))
                });
            });
        }
    }
    group.finish();
}

fn pipe_text(c: &mut Criterion) {
    // 101 reads: 64 KiB is not a multiple of 100, so successive reads end at
    // different places within a line, as reads of `cat` do.
    const READS: usize = 101;
    let stream = lines(100, READ * READS);
    let mut group = c.benchmark_group("pipe_text");
    group.throughput(Throughput::Bytes(READ as u64));
    for (fname, format) in formats() {
        group.bench_function(BenchmarkId::new(fname, "parts"), |b| {
            let mut enc = Encoder::new(format);
            let mut pipe = PipeText::new(Stream::Stdout);
            let mut at = 0;
            let mut total = 0usize;
            b.iter(|| {
                let read = &stream[at * READ..(at + 1) * READ];
                at = (at + 1) % READS;
                pipe.feed(&mut enc, black_box(read), &mut |frame, text| {
                    total += consume(frame, text);
                    true
                });
            });
            black_box(total);
        });
        group.bench_function(BenchmarkId::new(fname, "to_vec"), |b| {
            let mut enc = Encoder::new(format);
            let mut pipe = PipeText::new(Stream::Stdout);
            let mut at = 0;
            let mut total = 0usize;
            b.iter(|| {
                let read = &stream[at * READ..(at + 1) * READ];
                at = (at + 1) % READS;
                pipe.feed(&mut enc, black_box(read), &mut |frame, text| {
                    let copy = frame.to_vec(text, true);
                    total += black_box(copy).len();
                    true
                });
            });
            black_box(total);
        });
    }
    group.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = short();
    targets = encode, pipe_text
}
criterion_main!(benches);
