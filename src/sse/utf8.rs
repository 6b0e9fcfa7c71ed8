//! Walking text as UTF-8: valid runs and replacements, and where the last
//! whole character ends.

use super::scan;
use super::Frame;

/// U+FFFD REPLACEMENT CHARACTER, what invalid bytes become.
pub(super) const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// A run of valid UTF-8, or the place of one invalid sequence.
#[derive(Debug, Clone, Copy)]
pub(super) enum Segment<'a> {
    Valid(&'a [u8]),
    Replacement,
}

/// Walks `text` as `String::from_utf8_lossy` would: valid runs, and one
/// replacement per maximal invalid subpart. `f` gets the segment and the
/// offset of a valid run within `text`.
pub(super) fn for_each_utf8_segment<F>(text: &[u8], frame: &mut Frame, mut f: F)
where
    F: FnMut(&mut Frame, Segment<'_>, usize),
{
    if scan::is_ascii(text) {
        // The usual case, checked with vector compares: `from_utf8` walks
        // plain ASCII a word at a time, the largest cost of encoding 100-byte
        // raw lines after the copy itself.
        f(frame, Segment::Valid(text), 0);
        return;
    }
    let mut at = 0;
    while at < text.len() {
        match std::str::from_utf8(&text[at..]) {
            Ok(_) => {
                f(frame, Segment::Valid(&text[at..]), at);
                return;
            }
            Err(err) => {
                let valid = err.valid_up_to();
                if valid > 0 {
                    f(frame, Segment::Valid(&text[at..at + valid]), at);
                }
                f(frame, Segment::Replacement, at + valid);
                at += valid + err.error_len().unwrap_or(text.len() - at - valid);
            }
        }
    }
}

/// Length of `bytes` without a trailing unfinished UTF-8 character, so a
/// multi-byte character split across two reads is sent whole.
pub fn char_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A UTF-8 character is at most 4 bytes: look at the last 3 for a lead byte.
    for back in 1..=3.min(len) {
        let byte = bytes[len - back];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let width = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return len, // ASCII or not a lead: nothing to wait for
        };
        return if width > back { len - back } else { len };
    }
    len
}
