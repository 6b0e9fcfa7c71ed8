//! HTTP/1.1 on the client side: writing a request, reading the response head
//! (`httparse`), and decoding the body incrementally — chunked,
//! `Content-Length` or close-delimited — strictly: framing the server got
//! wrong is an error, never guessed around. No I/O: bytes in, bytes out.

use std::fmt;

/// Largest response head accepted; a server that sends more is broken (ours
/// sends a few hundred bytes).
pub const MAX_HEAD: usize = 16 * 1024;

/// Headers a head may carry; more is [`HttpError::BadHead`].
const MAX_HEADERS: usize = 64;

/// Longest chunk-extension or trailer line accepted.
const MAX_FRAMING_LINE: usize = 4096;

/// Longest trailer section accepted.
const MAX_TRAILER: usize = 16 * 1024;

/// Why a response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The head did not end within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// `httparse` refused the head (or it had too many headers).
    BadHead(String),
    /// `Content-Length` is not a number, or two of them disagree.
    BadContentLength,
    /// A chunk-size line that is not hex digits, an optional extension and
    /// CRLF; or a size over 2^60.
    BadChunkSize,
    /// Chunk data not followed by CRLF.
    BadChunkEnd,
    /// A trailer line without CRLF, or a trailer section that is too long.
    BadTrailer,
    /// The connection closed before the head was complete.
    ClosedBeforeHead,
    /// The connection closed before the body's announced end.
    ClosedMidBody,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            HttpError::BadHead(why) => write!(f, "bad response head: {why}"),
            HttpError::BadContentLength => f.write_str("bad Content-Length"),
            HttpError::BadChunkSize => f.write_str("bad chunk-size line"),
            HttpError::BadChunkEnd => f.write_str("chunk data not followed by CRLF"),
            HttpError::BadTrailer => f.write_str("bad chunked trailer"),
            HttpError::ClosedBeforeHead => f.write_str("connection closed before the response head"),
            HttpError::ClosedMidBody => f.write_str("connection closed in the middle of the body"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Appends a request to `out`: `METHOD TARGET HTTP/1.1`, `Host: HOST`, then
/// `headers` in order, then the blank line. No body.
pub fn write_request(out: &mut Vec<u8>, method: &str, target: &str, host: &str, headers: &[(&str, &str)]) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Every header in order, names as sent, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: N`; also 0 for HEAD, 1xx, 204 and 304.
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of header `name` as text (lossy).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True when the comma-separated tokens of header `name` include `token`
    /// (case-insensitive), across repeated headers.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// How the body of this response ends; `head_request` for an answer to
    /// `HEAD`. Fails on an unusable `Content-Length`.
    pub fn framing(&self, head_request: bool) -> Result<Framing, HttpError> {
        if head_request || self.status < 200 || self.status == 204 || self.status == 304 {
            return Ok(Framing::Length(0));
        }
        let codings: Vec<&[u8]> = self.headers_named("transfer-encoding").collect();
        if !codings.is_empty() {
            // The last coding decides: chunked is self-delimiting, anything
            // else runs to the close (RFC 9112 §6.3, rule 4).
            let last = codings
                .last()
                .and_then(|v| v.rsplit(|&b| b == b',').next())
                .map(|t| t.trim_ascii());
            return Ok(match last {
                Some(t) if t.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                _ => Framing::Close,
            });
        }
        let mut length = None;
        for value in self.headers_named("content-length") {
            for part in value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                    return Err(HttpError::BadContentLength);
                }
                let n: u64 = std::str::from_utf8(part)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(HttpError::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            }
        }
        Ok(length.map_or(Framing::Close, Framing::Length))
    }

    /// True when the connection may carry another request after this
    /// response: HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`; never for a close-delimited body.
    pub fn keep_alive(&self, framing: Framing) -> bool {
        if framing == Framing::Close || self.has_token("connection", "close") {
            return false;
        }
        self.version >= 1 || self.has_token("connection", "keep-alive")
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` while it is
/// incomplete (and under [`MAX_HEAD`]), else the head and the offset where
/// the body starts.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) if buf.len() > MAX_HEAD && head_end(buf) > MAX_HEAD => {
            Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(n)) => {
            let head = Head {
                version: parsed.version.unwrap_or(1),
                status: parsed.code.unwrap_or(0),
                reason: parsed.reason.unwrap_or("").to_owned(),
                headers: parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            };
            Ok(Some((head, n)))
        }
        Err(err) => Err(HttpError::BadHead(err.to_string())),
    }
}

fn head_end(buf: &[u8]) -> usize {
    memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 4)
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex digits of a size (`digits` so far).
    Size { size: u64, digits: u8 },
    /// In a chunk extension, after the size (`len` bytes of it so far).
    Ext { size: u64, len: usize },
    /// After the CR of the size line.
    SizeLf { size: u64 },
    /// Inside chunk data, this much left.
    Data(u64),
    /// After chunk data: expecting CR.
    DataCr,
    /// After chunk data and CR: expecting LF.
    DataLf,
    /// At the start of a trailer line.
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// After a trailer line's CR (`last`: the line was empty, so the body ends).
    TrailerLf { last: bool },
}

/// Where the body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Chunked(Chunk),
    Length(u64),
    Close,
    Done,
}

/// An incremental body decoder for one response.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    body: Body,
    /// Trailer bytes so far (bounded by [`MAX_TRAILER`]).
    trailer: usize,
}

impl BodyDecoder {
    /// A decoder for a body with this framing.
    pub fn new(framing: Framing) -> BodyDecoder {
        let body = match framing {
            Framing::Chunked => Body::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Close => Body::Close,
        };
        BodyDecoder { body, trailer: 0 }
    }

    /// True once the body has ended (the last chunk and trailer, or the
    /// announced length); a close-delimited body ends only at [`finish`].
    ///
    /// [`finish`]: BodyDecoder::finish
    pub fn is_done(&self) -> bool {
        self.body == Body::Done
    }

    /// Decodes what it can of `input`, handing body bytes to `sink` (in
    /// order, possibly in several pieces, never empty), and returns how many
    /// input bytes it used: all of them, or fewer when the body ended —
    /// what follows belongs to the next response.
    pub fn decode<F: FnMut(&[u8])>(&mut self, input: &[u8], sink: &mut F) -> Result<usize, HttpError> {
        match self.body {
            Body::Done => Ok(0),
            Body::Close => {
                if !input.is_empty() {
                    sink(input);
                }
                Ok(input.len())
            }
            Body::Length(left) => {
                let take = left.min(input.len() as u64) as usize;
                if take > 0 {
                    sink(&input[..take]);
                }
                self.body = if left == take as u64 {
                    Body::Done
                } else {
                    Body::Length(left - take as u64)
                };
                Ok(take)
            }
            Body::Chunked(state) => self.decode_chunked(state, input, sink),
        }
    }

    /// The connection closed: fine for a close-delimited or finished body,
    /// [`HttpError::ClosedMidBody`] otherwise.
    pub fn finish(&mut self) -> Result<(), HttpError> {
        match self.body {
            Body::Done => Ok(()),
            Body::Close => {
                self.body = Body::Done;
                Ok(())
            }
            _ => Err(HttpError::ClosedMidBody),
        }
    }

    fn decode_chunked<F: FnMut(&[u8])>(
        &mut self,
        mut state: Chunk,
        input: &[u8],
        sink: &mut F,
    ) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            if let Chunk::Data(left) = state {
                let take = left.min((input.len() - i) as u64) as usize;
                sink(&input[i..i + take]);
                i += take;
                state = if left == take as u64 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - take as u64)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            match self.chunk_byte(state, b)? {
                Some(next) => state = next,
                None => {
                    self.body = Body::Done;
                    return Ok(i);
                }
            }
        }
        self.body = Body::Chunked(state);
        Ok(i)
    }

    /// One framing byte; `None` when it ends the body.
    fn chunk_byte(&mut self, state: Chunk, b: u8) -> Result<Option<Chunk>, HttpError> {
        let next = match state {
            Chunk::Size { size, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 15 => Chunk::Size {
                    size: size << 4 | u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(HttpError::BadChunkSize),
                None if digits == 0 => return Err(HttpError::BadChunkSize),
                None if b == b'\r' => Chunk::SizeLf { size },
                None if b == b';' || b == b' ' || b == b'\t' => Chunk::Ext { size, len: 1 },
                None => return Err(HttpError::BadChunkSize),
            },
            Chunk::Ext { size, len } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => return Err(HttpError::BadChunkSize),
                _ if len >= MAX_FRAMING_LINE => return Err(HttpError::BadChunkSize),
                _ => Chunk::Ext { size, len: len + 1 },
            },
            Chunk::SizeLf { size } => match (b, size) {
                (b'\n', 0) => Chunk::TrailerStart,
                (b'\n', n) => Chunk::Data(n),
                _ => return Err(HttpError::BadChunkSize),
            },
            Chunk::Data(_) => unreachable!("data bytes are taken in bulk"),
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
            Chunk::DataCr | Chunk::DataLf => return Err(HttpError::BadChunkEnd),
            Chunk::TrailerStart if b == b'\r' => Chunk::TrailerLf { last: true },
            Chunk::TrailerStart | Chunk::TrailerLine => {
                self.trailer += 1;
                match b {
                    _ if self.trailer > MAX_TRAILER => return Err(HttpError::BadTrailer),
                    b'\n' => return Err(HttpError::BadTrailer),
                    b'\r' => Chunk::TrailerLf { last: false },
                    _ => Chunk::TrailerLine,
                }
            }
            Chunk::TrailerLf { last: true } if b == b'\n' => return Ok(None),
            Chunk::TrailerLf { last: false } if b == b'\n' => Chunk::TrailerStart,
            Chunk::TrailerLf { .. } => return Err(HttpError::BadTrailer),
        };
        Ok(Some(next))
    }
}

/// One response read incrementally: the head, then the body through a
/// [`BodyDecoder`].
#[derive(Debug, Clone)]
pub struct ResponseReader {
    head_request: bool,
    buf: Vec<u8>,
    head: Option<Head>,
    body: Option<BodyDecoder>,
    framing: Option<Framing>,
}

impl ResponseReader {
    /// A reader for the answer to a request; `head_request` when it was
    /// `HEAD` (no body follows whatever the headers say).
    pub fn new(head_request: bool) -> ResponseReader {
        ResponseReader {
            head_request,
            buf: Vec::new(),
            head: None,
            body: None,
            framing: None,
        }
    }

    /// The head, once complete.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// The body framing, once the head is complete.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// True once the whole response has been read.
    pub fn is_done(&self) -> bool {
        self.body.as_ref().is_some_and(BodyDecoder::is_done)
    }

    /// Feeds bytes read from the connection; body bytes go to `sink`.
    /// Returns how many bytes it used: fewer than given only when the
    /// response ended (the rest is the next response's).
    pub fn feed<F: FnMut(&[u8])>(&mut self, input: &[u8], sink: &mut F) -> Result<usize, HttpError> {
        if let Some(body) = self.body.as_mut() {
            return body.decode(input, sink);
        }
        let old = self.buf.len();
        let room = (MAX_HEAD + 1).saturating_sub(old);
        self.buf.extend_from_slice(&input[..input.len().min(room)]);
        let Some((head, at)) = parse_head(&self.buf)? else {
            return Ok(input.len());
        };
        let framing = head.framing(self.head_request)?;
        self.head = Some(head);
        self.framing = Some(framing);
        self.buf = Vec::new();
        let mut body = BodyDecoder::new(framing);
        let used = at - old;
        let rest = body.decode(&input[used..], sink)?;
        self.body = Some(body);
        Ok(used + rest)
    }

    /// The connection closed (read returned 0).
    pub fn finish(&mut self) -> Result<(), HttpError> {
        match self.body.as_mut() {
            Some(body) => body.finish(),
            None => Err(HttpError::ClosedBeforeHead),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in two pieces split at `cut`.
    fn decode_split(framing: Framing, wire: &[u8], cut: usize) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut dec = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut used = dec.decode(&wire[..cut], &mut |b: &[u8]| out.extend_from_slice(b))?;
        if used == cut {
            used += dec.decode(&wire[cut..], &mut |b: &[u8]| out.extend_from_slice(b))?;
        }
        Ok((out, used, dec.is_done()))
    }

    #[test]
    fn chunked_at_every_split() {
        let wire = b"5\r\nhello\r\n1;ext=\"x\"\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cut in 0..=wire.len() {
            let (out, used, done) = decode_split(Framing::Chunked, wire, cut).unwrap();
            assert_eq!(out, b"hello 0123456789", "cut {cut}");
            assert_eq!(used, wire.len() - 4, "cut {cut}");
            assert!(done);
        }
    }

    #[test]
    fn chunked_byte_at_a_time() {
        let wire = b"3\r\nabc\r\n0\r\n\r\n";
        let mut dec = BodyDecoder::new(Framing::Chunked);
        let mut out = Vec::new();
        for b in wire.iter() {
            assert!(!dec.is_done());
            assert_eq!(dec.decode(&[*b], &mut |s: &[u8]| out.extend_from_slice(s)).unwrap(), 1);
        }
        assert!(dec.is_done());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn chunked_rejects_malformed_framing() {
        for wire in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b"5\nhello",
            b"3\r\nabcX\r\n",
            b"3\r\nabc\rX",
            b"1234567890abcdef0\r\n",
            b"0\r\nbad trailer\n",
            b"0\r\n\rX",
            b"3 \r\n",
        ] {
            let wire: &[u8] = wire;
            let mut dec = BodyDecoder::new(Framing::Chunked);
            let res = dec.decode(wire, &mut |_: &[u8]| {});
            if wire == b"3 \r\n" {
                // Whitespace before an extension is tolerated (BWS).
                assert!(res.is_ok());
            } else {
                assert!(res.is_err(), "{:?}", String::from_utf8_lossy(wire));
            }
        }
        let mut dec = BodyDecoder::new(Framing::Chunked);
        dec.decode(b"3\r\nab", &mut |_: &[u8]| {}).unwrap();
        assert_eq!(dec.finish(), Err(HttpError::ClosedMidBody));
    }

    #[test]
    fn length_and_close() {
        for cut in 0..=7 {
            let (out, used, done) = decode_split(Framing::Length(5), b"helloXY", cut).unwrap();
            assert_eq!((out.as_slice(), used, done), (&b"hello"[..], 5, true));
        }
        let mut dec = BodyDecoder::new(Framing::Close);
        let mut out = Vec::new();
        dec.decode(b"abc", &mut |s: &[u8]| out.extend_from_slice(s)).unwrap();
        assert!(!dec.is_done());
        assert_eq!(dec.finish(), Ok(()));
        assert_eq!(out, b"abc");
        let mut dec = BodyDecoder::new(Framing::Length(3));
        assert_eq!(dec.finish(), Err(HttpError::ClosedMidBody));
    }

    #[test]
    fn head_and_framing() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        for cut in 0..=wire.len() {
            let mut reader = ResponseReader::new(false);
            let mut out = Vec::new();
            let a = reader
                .feed(&wire[..cut], &mut |s: &[u8]| out.extend_from_slice(s))
                .unwrap();
            assert_eq!(a, cut);
            let b = reader
                .feed(&wire[cut..], &mut |s: &[u8]| out.extend_from_slice(s))
                .unwrap();
            assert_eq!(a + b, wire.len());
            assert!(reader.is_done());
            assert_eq!(out, b"hi");
            let head = reader.head().unwrap();
            assert_eq!((head.status, head.version), (200, 1));
            assert_eq!(head.header("content-type"), Some(&b"text/event-stream"[..]));
            assert!(head.keep_alive(Framing::Chunked));
        }
    }

    #[test]
    fn framing_rules() {
        let head = |status: u16, headers: &[(&str, &str)]| Head {
            version: 1,
            status,
            reason: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        };
        assert_eq!(head(200, &[]).framing(false), Ok(Framing::Close));
        assert_eq!(head(204, &[]).framing(false), Ok(Framing::Length(0)));
        assert_eq!(
            head(200, &[("Content-Length", "9")]).framing(true),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            head(200, &[("Content-Length", "9, 9")]).framing(false),
            Ok(Framing::Length(9))
        );
        assert_eq!(
            head(200, &[("Content-Length", "9"), ("content-length", "8")]).framing(false),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            head(200, &[("Content-Length", "-1")]).framing(false),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            head(200, &[("Transfer-Encoding", "gzip, chunked"), ("Content-Length", "3")]).framing(false),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            head(200, &[("Transfer-Encoding", "gzip")]).framing(false),
            Ok(Framing::Close)
        );
        assert!(!head(200, &[("Connection", "keep-alive, close")]).keep_alive(Framing::Chunked));
        let mut old = head(200, &[]);
        old.version = 0;
        assert!(!old.keep_alive(Framing::Length(1)));
    }

    #[test]
    fn head_limits() {
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_head(&big), Err(HttpError::HeadTooLarge));
        assert!(matches!(
            parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Err(HttpError::BadHead(_))
        ));
        let mut reader = ResponseReader::new(false);
        reader.feed(b"HTTP/1.1 200", &mut |_: &[u8]| {}).unwrap();
        assert_eq!(reader.finish(), Err(HttpError::ClosedBeforeHead));
    }
}
