//! One encoded event as pieces: runs of the child's bytes where they lie,
//! and a scratch buffer for everything else.

use std::io::IoSlice;

use super::{EventName, JobTag, Stream};

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
    pub(super) scratch: Vec<u8>,
    pub(super) len: usize,
    /// The event's id.
    pub(super) id: u64,
    /// The stream an output event carries; `None` for `err`, `exit`, `gap`.
    pub(super) stream: Option<Stream>,
    /// The event's name.
    pub(super) name: EventName,
    chunk_line: [u8; 20],
    chunk_line_len: usize,
}

/// A frame's scratch above this is given back after use, so a job that once
/// sent a burst of short lines does not keep the memory while it idles.
pub(super) const KEEP_SCRATCH: usize = 16 * 1024;

/// The chunk line of an HTTP/1.1 chunk of `len` bytes (hex digits, CRLF)
/// and its length: a frame's own ([`Frame::parts`]) and a connection's
/// batch of frames.
pub fn chunk_line(len: usize) -> ([u8; 20], usize) {
    let mut line = [0u8; 20];
    // At most as many digits as a usize has nibbles: on 32-bit targets
    // (armv7) a shift by 32 or more would wrap, not give 0.
    const MAX_DIGITS: usize = (usize::BITS / 4) as usize;
    let mut digits = 1;
    while digits < MAX_DIGITS && len >> (4 * digits) != 0 {
        digits += 1;
    }
    for (i, byte) in line[..digits].iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    (line, digits + 2)
}

/// Appends `src[start..end]`, a short run of text (under [`POINT_AT`]), to
/// `out`; `src` is the text the run lies in, of which [`push_window`] may
/// read past the run.
///
/// On musl (the static box builds) by [`push_window`]: `extend_from_slice`
/// of a run of unknown length calls `memcpy`, and musl's moves an unaligned
/// head and tail a byte at a time (on 100-byte lines it was 15 % of the
/// static server's CPU). glibc's `memcpy` is the cheaper there (callgrind,
/// 100-byte lines, W1 /run: 134.2 M instructions raw and 141.7 M json with
/// it, 137.9 M and 144.8 M with [`push_window`]), so other builds call it.
#[inline(always)]
pub(super) fn push_run(out: &mut Vec<u8>, src: &[u8], start: usize, end: usize) {
    #[cfg(target_env = "musl")]
    push_window(out, src, start, end);
    #[cfg(not(target_env = "musl"))]
    out.extend_from_slice(&src[start..end]);
}

/// [`push_run`]'s copy on musl (see there why; the test compares it with
/// `extend_from_slice` on every build): one copy of 64 or 128 bytes from
/// `src[start..]`, which may reach past `end`, then `out` is cut back to the
/// run's end, so the bytes read past it are only spare capacity, written
/// over by what comes next.
///
/// A copy of a length known at compile time is a few vector stores, with
/// no call and no tail of odd sizes. Callgrind, W1 100-byte lines, the static
/// build: 195.8 M instructions raw and 205.8 M json with [`push_blocks`]
/// (94 a line in it), 136.0 M and 147.0 M with this copy. Runs over 128
/// bytes, and those within 128 bytes of the end of `src`, go through
/// [`push_blocks`]: there its start-up cost is small beside the run, or
/// rare (once per read).
#[inline(always)]
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
pub(super) fn push_window(out: &mut Vec<u8>, src: &[u8], start: usize, end: usize) {
    let len = end - start;
    let keep = out.len() + len;
    let rest = src.get(start..).unwrap_or_default();
    if len <= 64 {
        if let Some(block) = rest.first_chunk::<64>() {
            out.extend_from_slice(block);
            out.truncate(keep);
            return;
        }
    } else if len <= 128 {
        if let Some(block) = rest.first_chunk::<128>() {
            out.extend_from_slice(block);
            out.truncate(keep);
            return;
        }
    }
    push_other(out, &src[start..end]);
}

/// [`push_window`]'s way for the runs its one copy does not take, kept out
/// of line: inlined, the block copy's many branches made `push_window` a
/// call of its own, 60 instructions a 100-byte line where inlined it is
/// about 20.
#[inline(never)]
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
fn push_other(out: &mut Vec<u8>, bytes: &[u8]) {
    push_blocks(out, bytes);
}

/// A short run copied in blocks of known length, 64 bytes, then 32, 16, 8,
/// 4, 2, 1 (each a register store, no `memcpy` call): [`push_window`]'s
/// way where it cannot read past the run. The test compares it with
/// `extend_from_slice` on every build.
#[inline]
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
pub(super) fn push_blocks(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len());
    // 64-byte blocks: a 100-byte line is one block and a 32-byte tail
    // (16-byte blocks took six steps; perf on the static build, W1 100-B:
    // this copy fell from about 5 % of the server's CPU to 1.4 %).
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        if let Ok(block) = <&[u8; 64]>::try_from(block) {
            out.extend_from_slice(block);
        }
    }
    let mut rest = blocks.remainder();
    macro_rules! block_of {
        ($n:literal) => {
            if let Some((block, tail)) = rest.split_first_chunk::<$n>() {
                out.extend_from_slice(block);
                rest = tail;
            }
        };
    }
    block_of!(32);
    block_of!(16);
    block_of!(8);
    block_of!(4);
    block_of!(2);
    if let Some(&byte) = rest.first() {
        out.push(byte);
    }
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n` in decimal at the end of `out` (20 bytes: any u64), two
/// digits a step; returns where it starts. Ids and global numbers of a
/// multiplexed stream run to six digits and more: one division per digit
/// was about 110 instructions per number.
fn decimal(n: u64, out: &mut [u8]) -> usize {
    let mut at = out.len();
    let mut n = n;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        out[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        out[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        out[at] = b'0' + n as u8;
    }
    at
}

/// `lead`, `n` in decimal and `tail` appended to `out` (see
/// [`Frame::tagged_head`]): put together in a block on the stack and
/// copied as one window of a length known when compiled (the lead, 20
/// digits, the tail), `out` then cut back to what it holds. Finding the
/// number's length first (`ilog10`), or copying the digits alone, cost
/// about 20 instructions a number more.
#[inline(always)]
fn push_number<const L: usize, const T: usize>(out: &mut Vec<u8>, lead: &[u8; L], n: u64, tail: &[u8; T]) {
    const DIGITS: usize = 24;
    let mut block = [0u8; 128];
    // The digits end at 44, the tail follows; the lead goes right before
    // the first digit (L at most 24, T at most 64).
    let at = DIGITS + decimal(n, &mut block[DIGITS..DIGITS + 20]);
    let end = DIGITS + 20;
    block[end..end + T].copy_from_slice(tail);
    let start = at - L;
    block[start..at].copy_from_slice(lead);
    let keep = out.len() + (end + T - start);
    out.extend_from_slice(&block[start..start + L + 20 + T]);
    out.truncate(keep);
}

/// The length of a JSON output event's head after its `id:` line, for
/// either stream (see [`Frame::tagged_head`]).
pub(super) const JSON_HEAD: usize = b"\nevent: stdout\ndata: {\"type\":\"stdout\",".len();

impl Frame {
    pub(super) fn clear(&mut self) {
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
    pub(super) fn text(&mut self, run: &[u8], start: usize) {
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
    pub(super) fn copy(&mut self, bytes: &[u8]) {
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
    pub(super) fn grew(&mut self, start: usize) {
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

    pub(super) fn lit(&mut self, lit: &'static [u8]) {
        self.copy(lit);
    }

    pub(super) fn scratch_str(&mut self, s: &str) {
        self.copy(s.as_bytes());
    }

    /// Adds a job's tag (`"job":"ID","seq":`), `seq` and a comma, as one
    /// piece. Out of line (see `Encoder::start_at`): inlined into
    /// `put_tag`, it took that out of a job's own stream's `output`.
    #[inline(never)]
    pub(super) fn tag(&mut self, job: &[u8], seq: u64) {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(job);
        let mut digits = [b','; 21];
        let at = decimal(seq, &mut digits[..20]);
        self.scratch.extend_from_slice(&digits[at..]);
        self.grew(start);
    }

    /// The head of a JSON output event on a stream of many jobs (contract
    /// §11.2), as one piece: `id: GLOBAL`, `head` (its `event:` line and its
    /// object up to the first member), the job's tag, `seq` and a comma. Every copy is of a length known
    /// when compiled (numbers and the tag as whole blocks, cut back after):
    /// no `memcpy` call, and one piece, not five (callgrind, 64 jobs under
    /// `contrib/mux-cost.py steady`: a tagged event of a short line costs
    /// about 120 instructions less than by `start_at` and `tag`).
    pub(super) fn tagged_head(&mut self, global: u64, head: &[u8; JSON_HEAD], job: &JobTag, seq: u64) {
        let out = &mut self.scratch;
        let start = out.len();
        push_number(out, b"id: ", global, head);
        job.push_to(out);
        push_number(out, b"", seq, b",");
        self.grew(start);
    }

    pub(super) fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let at = decimal(n, &mut digits);
        self.copy(&digits[at..]);
    }

    pub(super) fn seal(&mut self) {
        (self.chunk_line, self.chunk_line_len) = chunk_line(self.len);
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

    /// [`Frame::parts`] put in `out` as `IoSlice`s for a `writev`: how
    /// many, or `None` when there are more than `out` holds. Walking the
    /// chained iterator of `parts` cost a connection about 70
    /// instructions per small frame (callgrind, W4).
    pub fn gather<'a>(&'a self, text: &'a [u8], chunked: bool, out: &mut [IoSlice<'a>]) -> Option<usize> {
        let framed = chunked && !self.pieces.is_empty();
        if self.pieces.len() + 2 * usize::from(framed) > out.len() {
            return None;
        }
        let mut count = 0;
        if framed {
            out[0] = IoSlice::new(&self.chunk_line[..self.chunk_line_len]);
            count = 1;
        }
        for piece in &self.pieces {
            let part = match *piece {
                Piece::Text(s, e) => text.get(s as usize..e as usize)?,
                Piece::Scratch(s, e) => self.scratch.get(s as usize..e as usize)?,
            };
            if !part.is_empty() {
                out[count] = IoSlice::new(part);
                count += 1;
            }
        }
        if framed {
            out[count] = IoSlice::new(b"\r\n");
            count += 1;
        }
        Some(count)
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

#[cfg(test)]
mod decimal_tests {
    use super::{decimal, push_number};

    #[test]
    fn decimal_matches_display() {
        let mut n = 1u64;
        let mut cases = vec![0, 9, 10, 99, 100, 101, 999, 1000, u64::MAX];
        while n < u64::MAX / 7 {
            cases.extend([n, n + 1, n * 7 - 1]);
            n *= 7;
        }
        for n in cases {
            let mut out = [0u8; 20];
            let at = decimal(n, &mut out);
            assert_eq!(&out[at..], n.to_string().as_bytes(), "{n}");
            let mut pushed = b"x".to_vec();
            push_number(&mut pushed, b"id: ", n, b"\n");
            push_number(&mut pushed, b"", n, &[b'-'; 64]);
            assert_eq!(pushed, format!("xid: {n}\n{n}{}", "-".repeat(64)).as_bytes(), "{n}");
        }
    }
}
