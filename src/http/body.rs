//! A request body, bounded: `Content-Length` or chunked (RFC 9112 §6, §7.1),
//! decoded incrementally from whatever bytes have arrived. Only
//! `POST /jobs/ID/input` takes a body (contract §10.2); every other route
//! refuses one before it is read.
//!
//! Pure: bytes in, how many were used and the body out; no I/O.

use std::fmt;

use super::request::BodyFraming;

/// Longest chunk-size or trailer line accepted, line end included: a size in
/// hex and short extensions fit many times over.
pub const MAX_LINE: usize = 1024;

/// Why a body was refused. Its `Display` is the reply's one-line message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// `413`: more than the route takes.
    TooLarge(usize),
    /// `400`: chunked framing that cannot be read.
    Bad(&'static str),
}

impl BodyError {
    /// The status and reason phrase answering it.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            BodyError::TooLarge(_) => (413, "Content Too Large"),
            BodyError::Bad(_) => (400, "Bad Request"),
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "content too large: a body holds at most {limit} bytes"),
            BodyError::Bad(why) => write!(f, "bad request: {why}"),
        }
    }
}

/// Where in the body the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `Content-Length`: this many bytes still to come.
    Length(usize),
    /// Chunked: a chunk-size line is next.
    ChunkSize,
    /// Chunked: this many data bytes of the current chunk still to come.
    ChunkData(usize),
    /// Chunked: the CRLF after a chunk's data.
    ChunkEnd,
    /// Chunked: trailer lines until an empty one.
    Trailers,
    /// The whole body is here.
    Done,
}

/// A body being received, at most `limit` bytes of content.
#[derive(Debug)]
pub struct BodyReader {
    step: Step,
    body: Vec<u8>,
    limit: usize,
}

impl BodyReader {
    /// A reader for the body `framing` announces; `TooLarge` at once when
    /// its `Content-Length` is over `limit`.
    pub fn new(framing: BodyFraming, limit: usize) -> Result<BodyReader, BodyError> {
        let step = if framing.chunked {
            Step::ChunkSize
        } else {
            match framing.content_length {
                None | Some(0) => Step::Done,
                Some(n) if n > limit as u64 => return Err(BodyError::TooLarge(limit)),
                Some(n) => Step::Length(n as usize),
            }
        };
        Ok(BodyReader {
            step,
            body: Vec::new(),
            limit,
        })
    }

    /// True once the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// The body's content, once [`BodyReader::is_done`].
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Takes what it can of `input`; returns how many bytes it used (the
    /// rest is a later request's, or waits for more bytes: a chunk-size line
    /// is used only once whole). Stops at the end of the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, BodyError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let taken = match self.step {
                Step::Done => return Ok(used),
                Step::Length(left) => {
                    let n = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..n]);
                    self.step = if n == left { Step::Done } else { Step::Length(left - n) };
                    n
                }
                Step::ChunkData(left) => {
                    let n = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..n]);
                    self.step = if n == left {
                        Step::ChunkEnd
                    } else {
                        Step::ChunkData(left - n)
                    };
                    n
                }
                Step::ChunkSize => match line(rest)? {
                    None => 0,
                    Some((text, n)) => {
                        let size = chunk_size(text)?;
                        if self.body.len() + size > self.limit {
                            return Err(BodyError::TooLarge(self.limit));
                        }
                        self.step = if size == 0 {
                            Step::Trailers
                        } else {
                            Step::ChunkData(size)
                        };
                        n
                    }
                },
                Step::ChunkEnd => match line(rest)? {
                    None => 0,
                    Some((b"", n)) => {
                        self.step = Step::ChunkSize;
                        n
                    }
                    Some(_) => return Err(BodyError::Bad("chunk data longer than its size")),
                },
                Step::Trailers => match line(rest)? {
                    None => 0,
                    Some((text, n)) => {
                        if text.is_empty() {
                            self.step = Step::Done;
                        }
                        n
                    }
                },
            };
            if taken == 0 {
                return Ok(used);
            }
            used += taken;
        }
    }
}

/// The first line of `input` without its line end (CRLF, or a bare LF as
/// RFC 9112 §2.2 lets a recipient accept), and its length with the line end;
/// `None` until it is whole.
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, BodyError> {
    match memchr::memchr(b'\n', input) {
        Some(end) if end < MAX_LINE => {
            let text = &input[..end];
            Ok(Some((text.strip_suffix(b"\r").unwrap_or(text), end + 1)))
        }
        Some(_) => Err(BodyError::Bad("chunk-size or trailer line too long")),
        None if input.len() >= MAX_LINE => Err(BodyError::Bad("chunk-size or trailer line too long")),
        None => Ok(None),
    }
}

/// The size of a chunk-size line: hex digits, then optional extensions
/// (`;name=value`, ignored).
fn chunk_size(text: &[u8]) -> Result<usize, BodyError> {
    let digits = text.split(|&b| b == b';').next().unwrap_or(b"");
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(BodyError::Bad("bad chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| BodyError::Bad("bad chunk size"))?;
    usize::from_str_radix(text, 16).map_err(|_| BodyError::Bad("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(length: Option<u64>, chunked: bool) -> BodyFraming {
        let mut framing = BodyFraming::default();
        framing.content_length = length;
        framing.chunked = chunked;
        framing
    }

    /// Feeds `input` split at every point into two pieces; the body and the
    /// bytes used must not depend on the split.
    fn decode(framing: BodyFraming, input: &[u8], limit: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut whole = None;
        for cut in 0..=input.len() {
            let mut reader = BodyReader::new(framing, limit)?;
            let mut used = reader.feed(&input[..cut])?;
            let mut pending = input[used..cut].to_vec();
            pending.extend_from_slice(&input[cut..]);
            used += reader.feed(&pending)?;
            if !reader.is_done() {
                return Err(BodyError::Bad("incomplete"));
            }
            let got = (reader.into_body(), used);
            if let Some(first) = &whole {
                assert_eq!(first, &got, "split at {cut}");
            }
            whole = Some(got);
        }
        Ok(whole.expect("at least one split"))
    }

    #[test]
    fn content_length_bodies() {
        assert_eq!(
            decode(framing(Some(5), false), b"helloGET /", 64),
            Ok((b"hello".to_vec(), 5))
        );
        assert_eq!(decode(framing(None, false), b"GET", 64), Ok((Vec::new(), 0)));
        assert_eq!(
            BodyReader::new(framing(Some(65), false), 64).map(|_| ()),
            Err(BodyError::TooLarge(64))
        );
        assert!(BodyReader::new(framing(Some(64), false), 64).is_ok());
    }

    #[test]
    fn chunked_bodies() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        assert_eq!(
            decode(framing(None, true), input, 64),
            Ok((b"hello world".to_vec(), input.len() - 4))
        );
        assert_eq!(decode(framing(None, true), b"0\r\n\r\n", 64), Ok((Vec::new(), 5)));
        assert_eq!(
            decode(framing(None, true), b"A\nabcdefghij\n0\n\n", 64),
            Ok((b"abcdefghij".to_vec(), 16))
        );
    }

    #[test]
    fn chunked_refusals() {
        let big = b"41\r\n";
        assert_eq!(decode(framing(None, true), big, 64), Err(BodyError::TooLarge(64)));
        let over = b"20\r\n01234567890123456789012345678901\r\n21\r\n";
        assert_eq!(decode(framing(None, true), over, 64), Err(BodyError::TooLarge(64)));
        for bad in [&b"x\r\n"[..], b"\r\n", b"-1\r\n", b"123456789\r\n", b"3\r\nabcd\r\n"] {
            assert!(
                matches!(decode(framing(None, true), bad, 64), Err(BodyError::Bad(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_LINE + 1];
        assert!(matches!(
            BodyReader::new(framing(None, true), 64).unwrap().feed(&long),
            Err(BodyError::Bad(_))
        ));
    }
}
