//! `format=raw`: one `data:` line per output line.

use super::frame::{push_run, POINT_AT};
use super::scan::{self, Needles};
use super::utf8::{Segment, REPLACEMENT};
use super::Frame;

/// Splits raw text into `data:` lines: each CR, LF or CRLF ends a line; the
/// final line end of the event is implied by the blank line that ends it.
pub(super) struct RawLines {
    /// Offset of the segment text within the frame's text.
    pub(super) base: usize,
    /// The previous byte was CR: a following LF belongs to it.
    pub(super) pending_cr: bool,
    /// A `data:` line is open (nothing to write before more text).
    pub(super) line_open: bool,
}

impl RawLines {
    pub(super) fn push(&mut self, frame: &mut Frame, seg: Segment<'_>, off: usize) {
        match seg {
            Segment::Replacement => {
                self.open(frame);
                frame.lit(REPLACEMENT);
                self.pending_cr = false;
            }
            Segment::Valid(bytes) => {
                let base = self.base + off;
                let at = usize::from(self.pending_cr && bytes.first() == Some(&b'\n'));
                self.pending_cr = false;
                let at = self.lines(frame, bytes, base, at);
                if at < bytes.len() {
                    self.open(frame);
                    frame.text(&bytes[at..], base + at);
                }
            }
        }
    }

    /// Adds each line of `bytes` from `at` that a CR or LF ends; returns
    /// where the unended rest begins.
    fn lines(&mut self, frame: &mut Frame, bytes: &[u8], base: usize, mut at: usize) -> usize {
        // Short lines go straight onto the scratch; its pieces are brought up
        // to date once, not per line, and before any pointed-at line.
        let mut mark = frame.scratch.len();
        scan::each_hit(bytes, Needles::LineEnds, |end| {
            if end < at {
                return; // the LF of a CRLF already taken
            }
            let line = &bytes[at..end];
            if line.len() >= POINT_AT {
                frame.grew(mark);
                if !self.line_open {
                    frame.lit(b"\ndata: ");
                }
                frame.text(line, base + at);
                mark = frame.scratch.len();
            } else {
                if !self.line_open {
                    frame.scratch.extend_from_slice(b"\ndata: ");
                }
                push_run(&mut frame.scratch, bytes, at, end);
            }
            self.line_open = false;
            at = end + 1;
            if bytes[end] == b'\r' {
                if bytes.get(at) == Some(&b'\n') {
                    at += 1;
                } else if at == bytes.len() {
                    self.pending_cr = true;
                }
            }
        });
        frame.grew(mark);
        at
    }

    /// Starts a new `data:` line if the previous one was ended.
    fn open(&mut self, frame: &mut Frame) {
        if !self.line_open {
            frame.lit(b"\ndata: ");
            self.line_open = true;
        }
    }
}
