//! `format=json`: the text JSON-escaped into one `data:` line, and a cheap
//! bound on how long that comes out.

use super::frame::push_run;
use super::scan::{self, Needles};
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

pub(super) fn push_json_escaped(frame: &mut Frame, seg: Segment<'_>, off: usize) {
    let bytes = match seg {
        Segment::Replacement => {
            frame.lit(REPLACEMENT);
            return;
        }
        Segment::Valid(bytes) => bytes,
    };
    // One scan finds every byte to escape: LF, the rarer control bytes (CR,
    // tab, ESC…), `"` and `\\`.
    let mut run = 0;
    // Short runs go straight onto the scratch; its pieces are brought up to
    // date once, not per line, and before any other piece is added.
    let mut mark = frame.scratch.len();
    scan::each_hit(bytes, Needles::JsonEscapes, |hit| {
        let text = &bytes[run..hit];
        if text.len() >= POINT_AT {
            frame.grew(mark);
            frame.text(text, off + run);
            mark = frame.scratch.len();
        } else {
            push_run(&mut frame.scratch, bytes, run, hit);
        }
        // The LF of each line as a literal: a copy of known length is a
        // store, not a `memcpy` call.
        match bytes[hit] {
            b'\n' => frame.scratch.extend_from_slice(b"\\n"),
            byte => frame.scratch.extend_from_slice(json_escape(byte)),
        }
        run = hit + 1;
    });
    frame.grew(mark);
    frame.text(&bytes[run..], off + run);
}

/// Appends `text` to `out` as the inside of a JSON string (RFC 8259).
pub fn escape_json_into(out: &mut String, text: &str) {
    let mut run = 0;
    scan::each_hit(text.as_bytes(), Needles::JsonEscapes, |hit| {
        // Every escaped byte is ASCII, so `hit` is a character boundary and
        // the clean run before it is copied whole.
        out.push_str(&text[run..hit]);
        // The escapes are ASCII, so they are valid UTF-8.
        out.push_str(std::str::from_utf8(json_escape(text.as_bytes()[hit])).unwrap_or("?"));
        run = hit + 1;
    });
    out.push_str(&text[run..]);
}
