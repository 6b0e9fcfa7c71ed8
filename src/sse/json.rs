//! `format=json`: the text JSON-escaped into one `data:` line, and a cheap
//! bound on how long that comes out.

use super::frame::push_short;
use super::utf8::{Segment, REPLACEMENT};
use super::{Frame, MAX_FRAME, POINT_AT};

/// The longest a JSON output event is besides its escaped text: the `id:`
/// line with a 20-digit id, the `event:` line, the `data:` line's JSON around
/// the text, and the blank line.
const JSON_FRAME_OVERHEAD: usize = 96;

/// An upper bound on the length of the JSON output event of `text`, if that
/// bound is within [`MAX_FRAME`]. An escape is at most 6 bytes for 1
/// (`\u0000`), `"` and `\\` become 2, and U+FFFD is 3 bytes for at least 1
/// invalid byte: each byte below 0x20 adds at most 5, `"` and `\\` 1, and
/// each byte from 0x80 at most 2. The common case (ASCII with no `"` or
/// `\\`) costs two fast scans and one count.
pub(super) fn json_bound(text: &[u8]) -> Option<usize> {
    let budget = MAX_FRAME.checked_sub(JSON_FRAME_OVERHEAD + text.len())?;
    if 5 * text.len() <= budget {
        return Some(JSON_FRAME_OVERHEAD + 6 * text.len());
    }
    let mut growth = 5 * count_blocks(text, |b| u8::from(b < 0x20));
    if growth > budget {
        return None;
    }
    if memchr::memchr2(b'"', b'\\', text).is_some() {
        growth += count_blocks(text, |b| u8::from(b == b'"') + u8::from(b == b'\\'));
    }
    if !text.is_ascii() {
        growth += 2 * count_blocks(text, |b| u8::from(b >= 0x80));
    }
    (growth <= budget).then_some(JSON_FRAME_OVERHEAD + text.len() + growth)
}

/// How many bytes of `bytes` `hit` counts (it gives 0 or 1), a 128-byte
/// block at a time: a byte-wide sum per block (at most 128, no overflow)
/// compiles to vector compares and adds, with one widening sum per block.
#[inline(always)]
fn count_blocks(bytes: &[u8], hit: impl Fn(u8) -> u8 + Copy) -> usize {
    bytes
        .chunks(128)
        .map(|block| usize::from(block.iter().fold(0u8, |n, &b| n + hit(b))))
        .sum()
}

/// The JSON escape of each byte below 0x20 (RFC 8259 §7).
static CONTROL_ESCAPES: [[u8; 6]; 32] = control_escapes();

const fn control_escapes() -> [[u8; 6]; 32] {
    let hex = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut b = 0;
    while b < 32 {
        table[b] = [b'\\', b'u', b'0', b'0', hex[b >> 4], hex[b & 0xf]];
        b += 1;
    }
    table
}

fn json_escape(byte: u8) -> &'static [u8] {
    match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => &CONTROL_ESCAPES[(byte & 0x1f) as usize],
    }
}

fn needs_json_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

pub(super) fn push_json_escaped(frame: &mut Frame, seg: Segment<'_>, off: usize) {
    let bytes = match seg {
        Segment::Replacement => {
            frame.lit(REPLACEMENT);
            return;
        }
        Segment::Valid(bytes) => bytes,
    };
    // Most output has no control byte but LF: one pass over the whole
    // segment settles that, instead of a check of each line's stretch.
    let controls = has_rare_control(bytes);
    let run = line_ends!(Three, memchr::memchr3_iter, (b'\n', b'"', b'\\'), bytes, |hits| {
        json_runs(frame, bytes, off, controls, hits)
    });
    let run = if controls {
        escape_controls(frame, bytes, off, run, bytes.len())
    } else {
        run
    };
    frame.text(&bytes[run..], off + run);
}

/// Adds `bytes` up to its last common escape (`"`, `\\`, LF: `hits` are
/// their places), escaped; returns where the rest begins.
fn json_runs<I>(frame: &mut Frame, bytes: &[u8], off: usize, controls: bool, hits: I) -> usize
where
    I: Iterator<Item = usize>,
{
    let mut run = 0;
    // Short runs go straight onto the scratch; its pieces are brought up to
    // date once, not per line, and before any other piece is added.
    let mut mark = frame.scratch.len();
    for hit in hits {
        if controls {
            frame.grew(mark);
            run = escape_controls(frame, bytes, off, run, hit);
            mark = frame.scratch.len();
        }
        let text = &bytes[run..hit];
        if text.len() >= POINT_AT {
            frame.grew(mark);
            frame.text(text, off + run);
            mark = frame.scratch.len();
        } else {
            push_short(&mut frame.scratch, text);
        }
        // The LF of each line as a literal: a copy of known length is a
        // store, not a `memcpy` call.
        match bytes[hit] {
            b'\n' => frame.scratch.extend_from_slice(b"\\n"),
            byte => frame.scratch.extend_from_slice(json_escape(byte)),
        }
        run = hit + 1;
    }
    frame.grew(mark);
    run
}

/// True if `bytes` holds a byte below 0x20 other than LF (CR, tab, ESC…).
/// Fixed-size blocks with no early exit inside compile to vector compares.
fn has_rare_control(bytes: &[u8]) -> bool {
    any_block(bytes, |b| u8::from(b < 0x20) & u8::from(b != b'\n'))
}

/// True if `hit` is non-zero for some byte of `bytes`, checked a 64-byte
/// block at a time (no early exit inside a block: vector compares).
#[inline(always)]
fn any_block(bytes: &[u8], hit: impl Fn(u8) -> u8 + Copy) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    let found = blocks
        .by_ref()
        .any(|block| block.iter().fold(0u8, |seen, &b| seen | hit(b)) != 0);
    found || blocks.remainder().iter().any(|&b| hit(b) != 0)
}

/// Adds `bytes[from..to]` up to and including its last rarer control byte
/// (CR, tab, ESC…), escaped; returns where the plain rest begins. The
/// stretch is checked a block at a time, so a run of progress-bar CRs costs
/// one block each, not a rescan to the next LF.
fn escape_controls(frame: &mut Frame, bytes: &[u8], off: usize, from: usize, to: usize) -> usize {
    let mut run = from;
    while let Some(i) = next_control(bytes, run, to) {
        frame.text(&bytes[run..i], off + run);
        frame.lit(json_escape(bytes[i]));
        run = i + 1;
    }
    run
}

/// The first byte below 0x20 in `bytes[from..to]`.
fn next_control(bytes: &[u8], from: usize, to: usize) -> Option<usize> {
    let stretch = &bytes[from..to];
    for (n, block) in stretch.chunks(64).enumerate() {
        // No early exit inside the block: this compiles to vector compares.
        if block.iter().fold(0u8, |seen, &b| seen | u8::from(b < 0x20)) != 0 {
            let start = from + n * 64;
            return block.iter().position(|&b| b < 0x20).map(|i| start + i);
        }
    }
    None
}

/// Appends `text` to `out` as the inside of a JSON string (RFC 8259).
pub fn escape_json_into(out: &mut String, text: &str) {
    // Names and ids (a job id on every event of a multiplexed stream)
    // rarely hold anything to escape.
    if !text.bytes().any(needs_json_escape) {
        out.push_str(text);
        return;
    }
    for ch in text.chars() {
        if ch.is_ascii() && needs_json_escape(ch as u8) {
            // The escapes are ASCII, so they are valid UTF-8.
            out.push_str(std::str::from_utf8(json_escape(ch as u8)).unwrap_or("?"));
        } else {
            out.push(ch);
        }
    }
}
