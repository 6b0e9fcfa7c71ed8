//! Where events end: whole lines, a partial line when flushed or past
//! [`MAX_HELD`], and slices of a text whose one event would be too large.

use super::{char_boundary, Encoder, Frame, Stream, MAX_FRAME};

/// A partial line is sent once this much of it has piled up, so one endless
/// line (a progress spinner, `yes | tr -d '\n'`) still streams, and a pipe's
/// held bytes stay bounded.
pub const MAX_HELD: usize = 64 * 1024;

/// Input bytes per event when a text is sent in slices: at most 7 times
/// larger once encoded, so within [`MAX_FRAME`].
const SLICE: usize = MAX_FRAME / 8;

/// End of the last complete line in `bytes` (just past its CR or LF), or 0.
pub fn last_line_end(bytes: &[u8]) -> usize {
    memchr::memrchr2(b'\n', b'\r', bytes).map_or(0, |i| i + 1)
}

/// Gets each event ready now with the text its pieces point into; returns
/// true while the sink takes more without queueing.
pub type Emit<'a> = dyn FnMut(&Frame, &[u8]) -> bool + 'a;

/// One pipe's text on its way to events: it holds an unfinished line until
/// the line ends, [`PipeText::flush`] is called, or [`MAX_HELD`] piles up.
///
/// When the sink stops taking events in the middle of a text sent in slices
/// (see [`MAX_FRAME`]), the rest waits unencoded in a backlog, which
/// [`PipeText::drain`] sends before anything newer.
#[derive(Debug)]
pub struct PipeText {
    stream: Stream,
    held: Vec<u8>,
    /// Text cut into events but not yet sent: the sink stopped taking them.
    backlog: Vec<u8>,
    /// The backlog is whole lines (else a piece of an unfinished line, which
    /// may be cut anywhere between characters).
    backlog_lines: bool,
    /// The last event ended inside a line: the rest of that line was
    /// already cut once, and may be cut again.
    mid_line: bool,
}

impl PipeText {
    /// An empty buffer for `stream`.
    pub fn new(stream: Stream) -> PipeText {
        PipeText {
            stream,
            held: Vec::new(),
            backlog: Vec::new(),
            backlog_lines: true,
            mid_line: false,
        }
    }

    /// The stream this text comes from.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// True while an unfinished line waits to be sent.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// True while text the sink did not take waits to be sent: feed nothing
    /// new before [`PipeText::drain`] has sent it.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Bytes held, for accounting.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Takes `n` bytes just read into `buf[at..]` (only when there is no
    /// backlog). `buf[..at]` is free room: a held partial line that fits
    /// there is moved in front of the new bytes, so the event that ends it
    /// is encoded from one slice of the read buffer. Without the room, the
    /// whole read would be appended to the held line: a copy of every byte
    /// when lines are short (every read ends inside one).
    pub fn feed_after(&mut self, enc: &mut Encoder, buf: &mut [u8], at: usize, n: usize, emit: &mut Emit<'_>) {
        let held = self.held.len();
        if held == 0 || held > at {
            return self.feed(enc, &buf[at..at + n], emit);
        }
        buf[at - held..at].copy_from_slice(&self.held);
        self.held.clear();
        self.feed(enc, &buf[at - held..at + n], emit);
    }

    /// Takes newly read bytes (only when there is no backlog).
    pub fn feed(&mut self, enc: &mut Encoder, bytes: &[u8], emit: &mut Emit<'_>) {
        let cut = last_line_end(bytes);
        if self.held.is_empty() {
            if cut > 0 {
                let sent = send(enc, self.stream, &bytes[..cut], true, &mut self.mid_line, emit);
                self.keep(&bytes[sent..cut], true);
            }
        } else if cut > 0 {
            self.held.extend_from_slice(&bytes[..cut]);
            let sent = send(enc, self.stream, &self.held, true, &mut self.mid_line, emit);
            self.keep_held(sent, self.held.len(), true);
        }
        self.held.extend_from_slice(&bytes[cut..]);
        if self.held.len() >= MAX_HELD {
            self.flush(enc, emit);
        }
    }

    /// `held[sent..end]` was not taken: it becomes the backlog (the buffer
    /// itself moves, nothing is copied); `held[end..]` stays held.
    fn keep_held(&mut self, sent: usize, end: usize, lines: bool) {
        if sent == end {
            self.held.drain(..end);
            return;
        }
        let mut rest = std::mem::take(&mut self.held);
        self.held = rest.split_off(end);
        rest.drain(..sent);
        if self.backlog.is_empty() {
            self.backlog = rest;
        } else {
            self.backlog.extend_from_slice(&rest);
        }
        self.backlog_lines = lines;
    }

    fn keep(&mut self, rest: &[u8], lines: bool) {
        if !rest.is_empty() {
            self.backlog.extend_from_slice(rest);
            self.backlog_lines = lines;
        }
    }

    /// Sends the backlog while the sink takes it; then a held line that has
    /// reached [`MAX_HELD`]. Returns true once nothing is left in the backlog.
    pub fn drain(&mut self, enc: &mut Encoder, emit: &mut Emit<'_>) -> bool {
        if !self.backlog.is_empty() {
            let sent = send(
                enc,
                self.stream,
                &self.backlog,
                self.backlog_lines,
                &mut self.mid_line,
                emit,
            );
            self.backlog.drain(..sent);
            if !self.backlog.is_empty() {
                return false;
            }
            self.backlog = Vec::new();
        }
        if self.held.len() >= MAX_HELD {
            self.flush(enc, emit);
        }
        self.backlog.is_empty()
    }

    /// Sends the held partial line, except an unfinished character at its
    /// end. Waits while there is a backlog (it comes first).
    pub fn flush(&mut self, enc: &mut Encoder, emit: &mut Emit<'_>) {
        if !self.backlog.is_empty() {
            return;
        }
        let end = char_boundary(&self.held);
        if end > 0 {
            let sent = send(enc, self.stream, &self.held[..end], false, &mut self.mid_line, emit);
            self.keep_held(sent, end, false);
        }
    }

    /// The pipe has ended: sends everything held (after the backlog); an
    /// unfinished character becomes U+FFFD. What the sink does not take
    /// stays in the backlog.
    pub fn finish(&mut self, enc: &mut Encoder, emit: &mut Emit<'_>) {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            if self.backlog.is_empty() {
                let sent = send(enc, self.stream, &held, false, &mut self.mid_line, emit);
                self.keep(&held[sent..], false);
            } else {
                self.keep(&held, false);
            }
        }
        self.held.shrink_to(0);
    }
}

/// Sends `text` as one event, or, when that event would be over
/// [`MAX_FRAME`], as several, stopping once `emit` says the sink is full.
/// Returns how many bytes of `text` were sent. `lines`: the text is whole
/// lines, cut only at line ends (or past [`MAX_HELD`] of one line, or where
/// `mid_line` says the line was cut already); `mid_line` is kept up to date.
fn send(
    enc: &mut Encoder,
    stream: Stream,
    text: &[u8],
    lines: bool,
    mid_line: &mut bool,
    emit: &mut Emit<'_>,
) -> usize {
    let saved = enc.checkpoint();
    let frame = enc.output(stream, text);
    if frame.len() <= MAX_FRAME {
        if !frame.is_empty() {
            emit(frame, text);
        }
        *mid_line = !ends_line(text);
        return text.len();
    }
    enc.restore(saved);
    let mut at = 0;
    while at < text.len() {
        let end = at + slice_end(&text[at..], lines && !*mid_line);
        let piece = &text[at..end];
        at = end;
        *mid_line = !ends_line(piece);
        let frame = enc.output(stream, piece);
        if !frame.is_empty() && !emit(frame, piece) {
            break;
        }
    }
    at
}

fn ends_line(text: &[u8]) -> bool {
    matches!(text.last(), None | Some(b'\n' | b'\r'))
}

/// Where the next slice of `text` ends: at most about [`SLICE`] bytes, at a
/// line end; between characters if `lines` is false or one line runs past
/// [`MAX_HELD`] (the contract lets a line that long be cut). A line shorter
/// than that is never cut, however large its escapes make it.
fn slice_end(text: &[u8], lines: bool) -> usize {
    if text.len() <= SLICE {
        return text.len();
    }
    let window = &text[..SLICE];
    let end = last_line_end(window);
    if end > 0 {
        return end;
    }
    if lines {
        let next = memchr::memchr2(b'\n', b'\r', &text[SLICE..]).map(|i| SLICE + i + 1);
        match next {
            Some(end) if end <= MAX_HELD => return end,
            None if text.len() <= MAX_HELD => return text.len(),
            _ => {}
        }
    }
    char_boundary(window).max(1)
}
