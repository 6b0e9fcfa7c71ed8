//! The SSE encoder: child output in, event frames out, as pieces that point at
//! the bytes they encode.
//!
//! A [`Frame`] is a list of pieces: long runs of the child's own bytes, where
//! they lie (in the loop's read buffer or in a pipe's held partial line), and
//! a reused scratch buffer holding everything else: the id, field names, JSON
//! escapes, U+FFFD, and runs too short to be worth a `writev` slice of their
//! own ([`POINT_AT`]). The connection turns the pieces into `IoSlice`s, so a
//! long line that needs no escaping is never copied. [`PipeText`] decides
//! where events end: whole lines, a partial line only when told to flush it.
//!
//! This module does no I/O and reads no clock; the job decides when to flush.

use std::fmt::Write as _;

/// A partial line is sent once this much of it has piled up, so one endless
/// line (a progress spinner, `yes | tr -d '\n'`) still streams, and a pipe's
/// held bytes stay bounded.
pub const MAX_HELD: usize = 64 * 1024;

/// Where the text allows, an event's frame stays under about this size:
/// text that escapes heavily (NUL bytes become `\u0000`, six times their
/// size; empty raw lines seven) is sent as several smaller events, so the
/// bytes a stalled client leaves queued stay bounded (contract §3.7). Plain
/// text (a 64 KiB read of it encodes to about 66 KiB) stays one event.
pub const MAX_FRAME: usize = 80 * 1024;

/// Input bytes per event when a text is sent in slices: at most 7 times
/// larger once encoded, so within [`MAX_FRAME`].
const SLICE: usize = MAX_FRAME / 8;

/// The first line of a job stream (contract §7.3): EventSource waits a second
/// before it reconnects and resumes.
pub const RETRY: &[u8] = b"retry: 1000\n\n";

/// The heartbeat comment (contract §3.5), a complete SSE block on its own.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

/// How the output of a stream is written (`format=` on `/run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `data: {"type":"stdout","out":"…"}`: exact, JSON-escaped text.
    Json,
    /// One `data:` line per output line: for reading the wire by eye.
    Raw,
}

impl Format {
    /// Parses the `format` query value; `None` for an unknown one.
    pub fn from_query(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// Which pipe of the child some output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

impl Stream {
    /// The event name, also the JSON `type`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The name of an event (contract §3.2, §7.3), so what is sent can be
/// counted by name without looking at its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventName {
    /// Output from the child's stdout.
    #[default]
    Stdout,
    /// Output from the child's stderr.
    Stderr,
    /// The command could not start.
    Err,
    /// The command ended.
    Exit,
    /// A job viewer missed events the log no longer holds.
    Gap,
}

impl EventName {
    /// Every name, in the order of [`EventName::index`].
    pub const ALL: [EventName; 5] = [
        EventName::Stdout,
        EventName::Stderr,
        EventName::Err,
        EventName::Exit,
        EventName::Gap,
    ];

    /// The name as the `event:` line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Stdout => "stdout",
            EventName::Stderr => "stderr",
            EventName::Err => "err",
            EventName::Exit => "exit",
            EventName::Gap => "gap",
        }
    }

    /// Its place in [`EventName::ALL`], for counters kept in an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<Stream> for EventName {
    fn from(stream: Stream) -> EventName {
        match stream {
            Stream::Stdout => EventName::Stdout,
            Stream::Stderr => EventName::Stderr,
        }
    }
}

/// How a command ended, as the `exit` event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, if the child exited by itself.
    pub code: Option<i32>,
    /// The signal number that ended it, if one did.
    pub signal: Option<i32>,
    /// `--timeout` expired and the server stopped it.
    pub timed_out: bool,
}

/// Runs of the child's bytes at least this long are written from where they
/// lie; shorter ones are copied next to their neighbours. A `writev` slice
/// costs the kernel more than copying a short run: 100-byte lines pointed at
/// one by one (line, escape, line…) ran about 30 % slower than the copy.
pub const POINT_AT: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum Piece {
    /// A range of the text the frame encodes.
    Text(u32, u32),
    /// A range of the frame's scratch bytes.
    Scratch(u32, u32),
}

/// One encoded event, ready to be written.
///
/// Its pieces borrow nothing: text pieces are ranges into the `text` passed to
/// [`Frame::parts`], which must be the slice the frame was encoded from. The
/// scratch holds the field names, escapes, and short runs of text, copied.
#[derive(Debug, Default)]
pub struct Frame {
    pieces: Vec<Piece>,
    scratch: Vec<u8>,
    len: usize,
    /// The event's id.
    id: u64,
    /// The stream an output event carries; `None` for `err`, `exit`, `gap`.
    stream: Option<Stream>,
    /// The event's name.
    name: EventName,
    chunk_line: [u8; 20],
    chunk_line_len: usize,
}

/// Appends a short run of text (under [`POINT_AT`]) to `out`.
///
/// In 16-byte blocks, then 8, 4, 2, 1: each copy has a length known at
/// compile time, so it is a register store, where `extend_from_slice` of a
/// run of unknown length calls `memcpy`. musl's `memcpy` (the static box
/// builds) moves an unaligned head and tail a byte at a time: on 100-byte
/// lines it was 15 % of the static server's CPU (glibc's: 6 %).
#[inline]
fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len());
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if let Ok(block) = <&[u8; 16]>::try_from(block) {
            out.extend_from_slice(block);
        }
    }
    let mut rest = blocks.remainder();
    if let Some((block, tail)) = rest.split_first_chunk::<8>() {
        out.extend_from_slice(block);
        rest = tail;
    }
    if let Some((block, tail)) = rest.split_first_chunk::<4>() {
        out.extend_from_slice(block);
        rest = tail;
    }
    if let Some((block, tail)) = rest.split_first_chunk::<2>() {
        out.extend_from_slice(block);
        rest = tail;
    }
    if let Some(&byte) = rest.first() {
        out.push(byte);
    }
}

/// A frame's scratch above this is given back after use, so a job that once
/// sent a burst of short lines does not keep the memory while it idles.
const KEEP_SCRATCH: usize = 16 * 1024;

impl Frame {
    fn clear(&mut self) {
        self.pieces.clear();
        if self.scratch.capacity() > KEEP_SCRATCH && self.len < KEEP_SCRATCH / 4 {
            self.scratch = Vec::new();
        }
        self.scratch.clear();
        self.len = 0;
        self.chunk_line_len = 0;
    }

    /// Adds `run`, which lies at `start` in the frame's text.
    #[inline]
    fn text(&mut self, run: &[u8], start: usize) {
        if run.len() >= POINT_AT {
            self.len += run.len();
            self.pieces.push(Piece::Text(start as u32, (start + run.len()) as u32));
        } else {
            self.copy(run);
        }
    }

    /// Adds bytes by copying them into the scratch, extending the last piece
    /// when it is the scratch's tail.
    #[inline]
    fn copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.scratch.len();
        self.scratch.extend_from_slice(bytes);
        let end = self.scratch.len() as u32;
        self.len += bytes.len();
        match self.pieces.last_mut() {
            Some(Piece::Scratch(_, last_end)) if *last_end == start as u32 => *last_end = end,
            _ => self.pieces.push(Piece::Scratch(start as u32, end)),
        }
    }

    /// Accounts for the scratch bytes added since it was `start` long.
    #[inline]
    fn grew(&mut self, start: usize) {
        let end = self.scratch.len();
        if end == start {
            return;
        }
        self.len += end - start;
        let end = end as u32;
        match self.pieces.last_mut() {
            Some(Piece::Scratch(_, last_end)) if *last_end == start as u32 => *last_end = end,
            _ => self.pieces.push(Piece::Scratch(start as u32, end)),
        }
    }

    fn lit(&mut self, lit: &'static [u8]) {
        self.copy(lit);
    }

    fn scratch_str(&mut self, s: &str) {
        self.copy(s.as_bytes());
    }

    fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.copy(&digits[at..]);
    }

    fn seal(&mut self) {
        let mut line = [0u8; 20];
        let mut at = 0;
        // From the top nibble of a usize: 60 would overflow the shift on
        // 32-bit targets (armv7), where release builds mask it to 28.
        let mut shift = usize::BITS as i32 - 4;
        let mut started = false;
        while shift >= 0 {
            let nibble = (self.len >> shift) & 0xf;
            if nibble != 0 || started || shift == 0 {
                line[at] = b"0123456789abcdef"[nibble];
                at += 1;
                started = true;
            }
            shift -= 4;
        }
        line[at] = b'\r';
        line[at + 1] = b'\n';
        self.chunk_line = line;
        self.chunk_line_len = at + 2;
    }

    /// The event's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream of an output event (`None` for `err`, `exit` and `gap`).
    pub fn stream(&self) -> Option<Stream> {
        self.stream
    }

    /// The event's name.
    pub fn name(&self) -> EventName {
        self.name
    }

    /// True when there is nothing to send (raw output that was only the LF of
    /// a CRLF already sent as a line end).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame's length in bytes, without chunk framing.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The frame as byte slices in order; with `chunked`, wrapped in one
    /// HTTP/1.1 chunk. `text` must be the slice the frame was encoded from.
    /// An empty frame is no bytes at all, chunked or not: a chunk of size 0
    /// would end the response body.
    pub fn parts<'a>(&'a self, text: &'a [u8], chunked: bool) -> impl Iterator<Item = &'a [u8]> + Clone {
        // A measured frame (no pieces) has a length but no bytes.
        let (head, tail): (&[u8], &[u8]) = if chunked && !self.pieces.is_empty() {
            (&self.chunk_line[..self.chunk_line_len], b"\r\n")
        } else {
            (b"", b"")
        };
        std::iter::once(head)
            .chain(self.pieces.iter().map(move |piece| match *piece {
                Piece::Text(s, e) => &text[s as usize..e as usize],
                Piece::Scratch(s, e) => &self.scratch[s as usize..e as usize],
            }))
            .chain(std::iter::once(tail))
            .filter(|part| !part.is_empty())
    }

    /// The frame copied into one buffer (tests, fuzzing, and the rare path
    /// where it must be queued whole).
    pub fn to_vec(&self, text: &[u8], chunked: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len + 24);
        for part in self.parts(text, chunked) {
            out.extend_from_slice(part);
        }
        out
    }
}

/// Turns a stream's output into numbered SSE events (ids 1, 2, 3…).
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    next_id: u64,
    frame: Frame,
    /// Per stream: the last raw event ended with CR, so a leading LF is the
    /// second half of a CRLF, not an empty line.
    after_cr: [bool; 2],
    /// JSON output is only measured (see [`Encoder::set_measuring`]).
    measuring: bool,
}

impl Encoder {
    /// A new encoder whose first event has id 1.
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            next_id: 1,
            frame: Frame::default(),
            after_cr: [false; 2],
            measuring: false,
        }
    }

    /// With `on`, JSON output events get their ids and streams but no bytes,
    /// and a length that is an upper bound, not exact (the text is encoded
    /// only when the bound is over [`MAX_FRAME`], to cut it exactly as a
    /// full encoding would). For a sink that keeps the text, not the frame:
    /// a published job's log, whose viewers encode each event themselves.
    pub fn set_measuring(&mut self, on: bool) {
        self.measuring = on;
    }

    /// The format this encoder writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Gives back a large scratch buffer; called while the stream waits on
    /// a slow client, so a paused stream holds only what it must.
    pub fn release_scratch(&mut self) {
        if self.frame.scratch.capacity() > KEEP_SCRATCH {
            self.frame.scratch = Vec::new();
        }
    }

    /// What an event changes in the encoder, to undo an encoding.
    fn checkpoint(&self) -> (u64, [bool; 2]) {
        (self.next_id, self.after_cr)
    }

    fn restore(&mut self, (next_id, after_cr): (u64, [bool; 2])) {
        self.next_id = next_id;
        self.after_cr = after_cr;
    }

    /// The id the next event will carry.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn start(&mut self, name: EventName, event: &'static [u8]) {
        self.frame.clear();
        self.frame.name = name;
        self.frame.lit(b"id: ");
        let id = self.next_id;
        self.next_id += 1;
        self.frame.number(id);
        self.frame.id = id;
        self.frame.stream = None;
        self.frame.lit(event);
    }

    /// Makes `id` the id of the next event: a viewer of a job encodes the
    /// job's events with the ids the job gave them.
    pub fn set_next_id(&mut self, id: u64) {
        self.next_id = id;
    }

    /// The `gap` event of a job stream (contract §7.3): events `from` to
    /// `to` were not kept; its id is `to`.
    pub fn gap(&mut self, from: u64, to: u64) -> &Frame {
        self.next_id = to;
        self.start(EventName::Gap, b"\nevent: gap\ndata: {\"type\":\"gap\",\"from\":");
        self.frame.number(from);
        self.frame.lit(b",\"to\":");
        self.frame.number(to);
        self.frame.lit(b"}\n\n");
        self.frame.seal();
        &self.frame
    }

    /// Encodes `text` from `stream` as one event. Bytes that are not UTF-8
    /// become U+FFFD, including an unfinished character at the end (callers
    /// cut text at character boundaries unless the pipe has ended). The
    /// frame may be empty (see [`Frame::is_empty`]); then no id was used.
    pub fn output(&mut self, stream: Stream, text: &[u8]) -> &Frame {
        match self.format {
            Format::Json => self.json_output(stream, text),
            Format::Raw => self.raw_output(stream, text),
        }
        &self.frame
    }

    fn json_output(&mut self, stream: Stream, text: &[u8]) {
        if self.measuring {
            if let Some(bound) = json_bound(text) {
                self.frame.clear();
                self.frame.name = stream.into();
                self.frame.id = self.next_id;
                self.next_id += 1;
                self.frame.stream = Some(stream);
                self.frame.len = bound;
                return;
            }
        }
        self.start(
            stream.into(),
            match stream {
                Stream::Stdout => b"\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"",
                Stream::Stderr => b"\nevent: stderr\ndata: {\"type\":\"stderr\",\"out\":\"",
            },
        );
        self.frame.stream = Some(stream);
        for_each_utf8_segment(text, &mut self.frame, push_json_escaped);
        self.frame.lit(b"\"}\n\n");
        self.frame.seal();
    }

    fn raw_output(&mut self, stream: Stream, text: &[u8]) {
        let after_cr = &mut self.after_cr[stream.index()];
        let mut skip = 0;
        if *after_cr && text.first() == Some(&b'\n') {
            skip = 1;
        }
        *after_cr = text.last() == Some(&b'\r');
        if skip == text.len() {
            self.frame.clear();
            return;
        }
        self.start(
            stream.into(),
            match stream {
                Stream::Stdout => b"\nevent: stdout\ndata: ",
                Stream::Stderr => b"\nevent: stderr\ndata: ",
            },
        );
        self.frame.stream = Some(stream);
        let mut state = RawLines {
            base: skip,
            pending_cr: false,
            line_open: true,
        };
        for_each_utf8_segment(&text[skip..], &mut self.frame, |frame, seg, off| {
            state.push(frame, seg, off)
        });
        self.frame.lit(b"\n\n");
        self.frame.seal();
    }

    /// The `err` event: the command could not start. The stream ends after it.
    pub fn error(&mut self, message: &str) -> &Frame {
        self.start(EventName::Err, b"\nevent: err\ndata: {\"type\":\"error\",\"out\":\"");
        let mut escaped = String::with_capacity(message.len() + 8);
        escape_json_into(&mut escaped, message);
        self.frame.scratch_str(&escaped);
        self.frame.lit(b"\"}\n\n");
        self.frame.seal();
        &self.frame
    }

    /// The `exit` event, the last of a stream.
    pub fn exit(&mut self, exit: &Exit) -> &Frame {
        self.start(EventName::Exit, b"\nevent: exit\ndata: ");
        self.frame.scratch_str(&exit.json());
        self.frame.lit(b"\n\n");
        self.frame.seal();
        &self.frame
    }
}

impl Exit {
    /// The `exit` event's data: `{"type":"exit","code":0}`, with `signal`
    /// and `timed_out` when they apply.
    pub fn json(&self) -> String {
        let mut json = String::with_capacity(64);
        json.push_str("{\"type\":\"exit\",\"code\":");
        match self.code {
            Some(code) => {
                let _ = write!(json, "{code}");
            }
            None => json.push_str("null"),
        }
        if let Some(signal) = self.signal {
            let _ = write!(json, ",\"signal\":{signal}");
        }
        if self.timed_out {
            json.push_str(",\"timed_out\":true");
        }
        json.push('}');
        json
    }
}

/// Runs `$body` with `$hits`, an iterator over the places of the needles in
/// `$hay`, from a searcher built once for the whole text: `memchr2_iter`
/// and `memchr3_iter` pick the CPU's routine again on every `next`, which on
/// 100-byte lines was a third of the encoder's instructions.
macro_rules! line_ends {
    ($kind:ident, $fallback:path, ($($needle:expr),+), $hay:expr, |$hits:ident| $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let found = match memchr::arch::x86_64::avx2::memchr::$kind::new($($needle),+) {
            Some(searcher) => {
                let $hits = searcher.iter($hay);
                $body
            }
            None => {
                let $hits = $fallback($($needle,)+ $hay);
                $body
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let found = {
            let $hits = $fallback($($needle,)+ $hay);
            $body
        };
        found
    }};
}

/// Splits raw text into `data:` lines: each CR, LF or CRLF ends a line; the
/// final line end of the event is implied by the blank line that ends it.
struct RawLines {
    /// Offset of the segment text within the frame's text.
    base: usize,
    /// The previous byte was CR: a following LF belongs to it.
    pending_cr: bool,
    /// A `data:` line is open (nothing to write before more text).
    line_open: bool,
}

impl RawLines {
    fn push(&mut self, frame: &mut Frame, seg: Segment<'_>, off: usize) {
        match seg {
            Segment::Replacement => {
                self.open(frame);
                frame.lit(REPLACEMENT);
                self.pending_cr = false;
            }
            Segment::Valid(bytes) => {
                let base = self.base + off;
                let mut at = usize::from(self.pending_cr && bytes.first() == Some(&b'\n'));
                self.pending_cr = false;
                // Most text has no CR: then one needle, a cheaper search.
                at = if memchr::memchr(b'\r', &bytes[at..]).is_none() {
                    line_ends!(One, memchr::memchr_iter, (b'\n'), bytes, |ends| {
                        self.lines(frame, bytes, base, at, ends)
                    })
                } else {
                    line_ends!(Two, memchr::memchr2_iter, (b'\r', b'\n'), bytes, |ends| {
                        self.lines(frame, bytes, base, at, ends)
                    })
                };
                if at < bytes.len() {
                    self.open(frame);
                    frame.text(&bytes[at..], base + at);
                }
            }
        }
    }

    /// Adds each line of `bytes` from `at` that `ends` (the places of its CRs
    /// and LFs) ends; returns where the unended rest begins.
    fn lines<I>(&mut self, frame: &mut Frame, bytes: &[u8], base: usize, mut at: usize, ends: I) -> usize
    where
        I: Iterator<Item = usize>,
    {
        // Short lines go straight onto the scratch; its pieces are brought up
        // to date once, not per line, and before any pointed-at line.
        let mut mark = frame.scratch.len();
        for end in ends {
            if end < at {
                continue; // the LF of a CRLF already taken
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
                push_short(&mut frame.scratch, line);
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
        }
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
fn json_bound(text: &[u8]) -> Option<usize> {
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

/// U+FFFD REPLACEMENT CHARACTER, what invalid bytes become.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// A run of valid UTF-8, or the place of one invalid sequence.
#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Valid(&'a [u8]),
    Replacement,
}

/// Walks `text` as `String::from_utf8_lossy` would: valid runs, and one
/// replacement per maximal invalid subpart. `f` gets the segment and the
/// offset of a valid run within `text`.
fn for_each_utf8_segment<F>(text: &[u8], frame: &mut Frame, mut f: F)
where
    F: FnMut(&mut Frame, Segment<'_>, usize),
{
    if text.is_ascii() {
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

fn push_json_escaped(frame: &mut Frame, seg: Segment<'_>, off: usize) {
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
    for ch in text.chars() {
        if ch.is_ascii() && needs_json_escape(ch as u8) {
            // The escapes are ASCII, so they are valid UTF-8.
            out.push_str(std::str::from_utf8(json_escape(ch as u8)).unwrap_or("?"));
        } else {
            out.push(ch);
        }
    }
}

/// End of the last complete line in `bytes` (just past its CR or LF), or 0.
pub fn last_line_end(bytes: &[u8]) -> usize {
    memchr::memrchr2(b'\n', b'\r', bytes).map_or(0, |i| i + 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(format: Format, text: &[u8]) -> String {
        let mut enc = Encoder::new(format);
        let frame = enc.output(Stream::Stdout, text);
        String::from_utf8(frame.to_vec(text, false)).expect("frames are UTF-8")
    }

    #[test]
    fn push_short_appends_every_length_whole() {
        // Every length through three blocks and each tail size, onto a
        // vector that already holds bytes.
        let text: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..=text.len() {
            let mut got = b"head".to_vec();
            push_short(&mut got, &text[..len]);
            let mut want = b"head".to_vec();
            want.extend_from_slice(&text[..len]);
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn json_seed_case() {
        assert_eq!(
            encode(Format::Json, b"hello\n"),
            "id: 1\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"hello\\n\"}\n\n"
        );
    }

    #[test]
    fn json_escapes_controls_quotes_and_invalid_bytes() {
        let text = b"a\"b\\c\td\re\x01f\x1f\x7f\xffg\xe2\x82\xac\n";
        let got = encode(Format::Json, text);
        let data = got.lines().nth(2).expect("data line");
        let want = "data: {\"type\":\"stdout\",\"out\":\"a\\\"b\\\\c\\td\\re\\u0001f\\u001f\u{7f}\u{FFFD}g€\\n\"}";
        assert_eq!(data, want);
    }

    #[test]
    fn json_long_runs_cross_words() {
        let text = b"0123456789abcdefghij\"klmnopqrstuvwxyz0123456789\n";
        let got = encode(Format::Json, text);
        assert!(got.contains("0123456789abcdefghij\\\"klmnopqrstuvwxyz0123456789\\n"));
    }

    #[test]
    fn raw_lines_and_line_ends() {
        assert_eq!(
            encode(Format::Raw, b"a\nb\r\nc\rd\n"),
            "id: 1\nevent: stdout\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            encode(Format::Raw, b"a\n\nb\n"),
            "id: 1\nevent: stdout\ndata: a\ndata: \ndata: b\n\n"
        );
        assert_eq!(encode(Format::Raw, b"\n"), "id: 1\nevent: stdout\ndata: \n\n");
        assert_eq!(
            encode(Format::Raw, b"x\xffy\n"),
            "id: 1\nevent: stdout\ndata: x\u{FFFD}y\n\n"
        );
    }

    #[test]
    fn raw_crlf_split_across_events() {
        let mut enc = Encoder::new(Format::Raw);
        let first = enc.output(Stream::Stdout, b"a\r").to_vec(b"a\r", false);
        assert_eq!(first, b"id: 1\nevent: stdout\ndata: a\n\n");
        assert!(enc.output(Stream::Stdout, b"\n").is_empty());
        let third = enc.output(Stream::Stdout, b"\nb\n").to_vec(b"\nb\n", false);
        assert_eq!(third, b"id: 2\nevent: stdout\ndata: \ndata: b\n\n");
    }

    #[test]
    fn exit_and_error_events() {
        let mut enc = Encoder::new(Format::Json);
        let exit = Exit {
            code: None,
            signal: Some(9),
            timed_out: true,
        };
        assert_eq!(
            enc.exit(&exit).to_vec(b"", false),
            b"id: 1\nevent: exit\ndata: {\"type\":\"exit\",\"code\":null,\"signal\":9,\"timed_out\":true}\n\n"
        );
        let err = enc.error("cannot run \"x\"").to_vec(b"", false);
        assert_eq!(
            err,
            b"id: 2\nevent: err\ndata: {\"type\":\"error\",\"out\":\"cannot run \\\"x\\\"\"}\n\n"
        );
    }

    #[test]
    fn chunk_framing_wraps_the_frame() {
        let mut enc = Encoder::new(Format::Json);
        let exit = Exit {
            code: Some(0),
            signal: None,
            timed_out: false,
        };
        let frame = enc.exit(&exit);
        let body = frame.to_vec(b"", false);
        let chunked = frame.to_vec(b"", true);
        let mut want = format!("{:x}\r\n", body.len()).into_bytes();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"\r\n");
        assert_eq!(chunked, want);
    }

    #[test]
    fn empty_frame_is_no_bytes_even_chunked() {
        // Found by fuzz/chunked: the chunk's CRLF tail was still written.
        let mut enc = Encoder::new(Format::Raw);
        let _ = enc.output(Stream::Stdout, b"a\r");
        let frame = enc.output(Stream::Stdout, b"\n");
        assert!(frame.is_empty());
        assert_eq!(frame.to_vec(b"\n", true), b"");
        assert_eq!(frame.parts(b"\n", true).count(), 0);
    }

    #[test]
    fn char_boundary_keeps_unfinished_characters() {
        assert_eq!(char_boundary(b"ab"), 2);
        assert_eq!(char_boundary(b"a\xe2\x82"), 1);
        assert_eq!(char_boundary(b"a\xe2\x82\xac"), 4);
        assert_eq!(char_boundary(b"a\xf0\x9f\x98"), 1);
        assert_eq!(char_boundary(b"a\xff"), 2);
        assert_eq!(char_boundary(b"\x80\x80\x80"), 3);
    }

    #[test]
    fn pipe_text_holds_partial_lines() {
        let mut enc = Encoder::new(Format::Json);
        let mut pipe = PipeText::new(Stream::Stdout);
        let mut events = Vec::new();
        let mut emit = |f: &Frame, t: &[u8]| {
            events.push(String::from_utf8(f.to_vec(t, false)).unwrap_or_default());
            true
        };
        pipe.feed(&mut enc, b"one\ntw", &mut emit);
        pipe.feed(&mut enc, b"o\xe2\x82", &mut emit);
        pipe.flush(&mut enc, &mut emit);
        pipe.feed(&mut enc, b"\xac\n", &mut emit);
        pipe.finish(&mut enc, &mut emit);
        let outs: Vec<&str> = events.iter().map(|e| e.lines().nth(2).unwrap_or("")).collect();
        assert_eq!(
            outs,
            [
                "data: {\"type\":\"stdout\",\"out\":\"one\\n\"}",
                "data: {\"type\":\"stdout\",\"out\":\"two\"}",
                "data: {\"type\":\"stdout\",\"out\":\"€\\n\"}",
            ]
        );
    }

    /// Escape-heavy text goes out in events within MAX_FRAME; when the sink
    /// stops taking them, the rest waits in the backlog and nothing is lost.
    #[test]
    fn escape_heavy_text_is_sliced_and_backlogged() {
        let mut enc = Encoder::new(Format::Json);
        let mut pipe = PipeText::new(Stream::Stdout);
        let mut text = vec![0u8; 100_000];
        text.push(b'\n');
        let mut frames: Vec<(usize, String)> = Vec::new();
        let mut take = 2;
        let mut emit = |f: &Frame, t: &[u8]| {
            frames.push((f.len(), String::from_utf8(f.to_vec(t, false)).unwrap_or_default()));
            take -= 1;
            take > 0
        };
        pipe.feed(&mut enc, &text, &mut emit);
        assert_eq!(frames.len(), 2, "the sink stopped after two events");
        assert!(pipe.has_backlog());
        let mut emit_all = |f: &Frame, t: &[u8]| {
            frames.push((f.len(), String::from_utf8(f.to_vec(t, false)).unwrap_or_default()));
            true
        };
        assert!(pipe.drain(&mut enc, &mut emit_all));
        assert!(frames.iter().all(|(len, _)| *len <= MAX_FRAME));
        let escapes: usize = frames.iter().map(|(_, f)| f.matches("\\u0000").count()).sum();
        assert_eq!(escapes, 100_000, "every NUL byte arrives once");
        assert!(frames.last().is_some_and(|(_, f)| f.contains("\\n\"}")));
        let ids: Vec<&str> = frames.iter().filter_map(|(_, f)| f.lines().next()).collect();
        let expected: Vec<String> = (1..=frames.len()).map(|i| format!("id: {i}")).collect();
        assert_eq!(ids, expected, "ids stay consecutive across the undone encoding");
    }

    /// Plain text, a 64 KiB read of it, stays one event.
    #[test]
    fn plain_text_is_one_event() {
        let mut enc = Encoder::new(Format::Json);
        let mut pipe = PipeText::new(Stream::Stdout);
        let line = [b"x".repeat(99), b"\n".to_vec()].concat();
        let text = line.repeat(655);
        let mut count = 0;
        pipe.feed(&mut enc, &text, &mut |_, _| {
            count += 1;
            true
        });
        assert_eq!(count, 1);
    }

    /// Events (id, stream, text) a pipe cuts from `reads`, and each JSON
    /// frame's length (exact, or the measuring encoder's bound).
    fn cut(reads: &[Vec<u8>], measuring: bool) -> Vec<(u64, Option<Stream>, Vec<u8>, usize)> {
        let mut enc = Encoder::new(Format::Json);
        enc.set_measuring(measuring);
        let mut pipe = PipeText::new(Stream::Stdout);
        let mut events = Vec::new();
        let mut emit = |f: &Frame, t: &[u8]| {
            events.push((f.id(), f.stream(), t.to_vec(), f.len()));
            true
        };
        for read in reads {
            pipe.feed(&mut enc, read, &mut emit);
        }
        pipe.finish(&mut enc, &mut emit);
        events
    }

    /// A measuring encoder cuts the same events with the same ids as a full
    /// one, plain or escape-heavy, ASCII or not, and its lengths are bounds.
    #[test]
    fn measuring_cuts_like_encoding() {
        let mut rng = crate::test_rng::Rng(0x5eed_cafe);
        let alphabets: [&[u8]; 4] = [
            b"abcdefghij klmnop\n",
            b"\x00\x01\"\\\n\tab",
            b"a\xe2\x82\xac\xff\x80\n",
            b"xyz\x1b\r\n",
        ];
        for case in 0..40 {
            let alphabet = alphabets[case % alphabets.len()];
            let reads: Vec<Vec<u8>> = (0..1 + rng.below(4))
                .map(|_| {
                    let len = [10, 5000, 20_000, 70_000][rng.below(4)];
                    (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect()
                })
                .collect();
            let full = cut(&reads, false);
            let measured = cut(&reads, true);
            assert_eq!(full.len(), measured.len(), "case {case}");
            for (f, m) in full.iter().zip(&measured) {
                assert_eq!((f.0, f.1, &f.2), (m.0, m.1, &m.2), "case {case}");
                assert!(m.3 >= f.3, "case {case}: bound {} < length {}", m.3, f.3);
            }
        }
        // A measured frame has no bytes to write.
        let mut enc = Encoder::new(Format::Json);
        enc.set_measuring(true);
        let frame = enc.output(Stream::Stdout, b"hi\n");
        assert_eq!(frame.to_vec(b"hi\n", true), b"");
        assert_eq!((frame.id(), frame.stream()), (1, Some(Stream::Stdout)));
    }
}
