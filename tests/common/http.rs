//! A raw HTTP/1.x client: requests as bytes, responses read strictly.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use super::*;

/// Builds a request head from parts (no body).
pub fn build_request(method: &str, target: &str, version: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("{} {} {}\r\n", method, target, version);
    for (k, v) in headers {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    None,
    Chunked,
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The head exactly as received (status line to blank line).
    pub raw_head: String,
    /// The body bytes as received on the wire (with chunk framing).
    pub raw_body: Vec<u8>,
    pub framing: Framing,
    /// When the end of the head arrived.
    pub head_at: Instant,
    /// When the body was complete.
    pub end_at: Instant,
}

impl Response {
    /// A response whose head (`raw`, parsed as `head`) ended at `head_at`;
    /// its body not read yet. Stricter than the client about framing: our
    /// server never sends a coding but chunked, nor both lengths.
    fn from_head(head: client::Head, raw: Vec<u8>, head_at: Instant) -> Response {
        let raw_head = String::from_utf8(raw).unwrap_or_else(|e| panic!("response head is not UTF-8: {:?}", e));
        let headers = head
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8(value.clone())
                    .unwrap_or_else(|_| panic!("header {name} is not UTF-8 in head:\n{raw_head}"));
                (name.clone(), value)
            })
            .collect();
        let mut resp = Response {
            version: format!("HTTP/1.{}", head.version),
            status: head.status,
            reason: head.reason.clone(),
            headers,
            body: Vec::new(),
            raw_head,
            raw_body: Vec::new(),
            framing: Framing::None,
            head_at,
            end_at: head_at,
        };
        if (100..200).contains(&resp.status) || resp.status == 204 || resp.status == 304 {
            return resp;
        }
        if let Some(te) = resp.header("transfer-encoding") {
            assert!(
                te.eq_ignore_ascii_case("chunked"),
                "unexpected Transfer-Encoding {:?}",
                te
            );
            assert!(
                resp.header("content-length").is_none(),
                "both Transfer-Encoding and Content-Length:\n{}",
                resp.raw_head
            );
        }
        resp.framing = match head.framing(false) {
            Ok(client::Framing::Chunked) => Framing::Chunked,
            Ok(client::Framing::Length(n)) => Framing::Length(n),
            Ok(client::Framing::Close) => Framing::Close,
            Err(err) => panic!("{err} in head:\n{}", resp.raw_head),
        };
        resp
    }

    /// First header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name`.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Does `Connection` list `close`?
    pub fn says_close(&self) -> bool {
        self.headers_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// Asserts the status, printing the whole response otherwise.
    pub fn assert_status(&self, status: u16, what: &str) {
        assert_eq!(
            self.status,
            status,
            "{}: expected status {}, got response:\n{}",
            what,
            status,
            self.dump()
        );
    }

    /// The response for failure messages.
    pub fn dump(&self) -> String {
        format!("{}{}", self.raw_head, String::from_utf8_lossy(&self.body))
    }
}

/// Incremental state of one response body being read.
#[derive(Debug)]
pub struct Body {
    pub framing: Framing,
    chunked: client::BodyDecoder,
    remaining: u64,
    pub done: bool,
}

/// A client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// When the last read that brought bytes returned.
    last_read_at: Instant,
    eof: bool,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {}: {}", addr, e));
        Conn::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            last_read_at: Instant::now(),
            eof: false,
        }
    }

    /// Connects with a small receive buffer set before `connect` (so the
    /// advertised window stays small): a slow reader whose kernel does not
    /// buffer megabytes for it.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> Conn {
        let SocketAddr::V4(v4) = addr else {
            panic!("connect_small_rcvbuf supports IPv4 only")
        };
        // SAFETY: plain socket calls on a descriptor we create and then hand
        // to TcpStream, which owns it from then on; the sockaddr is a local
        // value of the right size.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let v: libc::c_int = rcvbuf;
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "setsockopt SO_RCVBUF: {}", io::Error::last_os_error());
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            let r = libc::connect(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "connect: {}", io::Error::last_os_error());
            Conn::from_stream(TcpStream::from_raw_fd(fd))
        }
    }

    /// The socket's SO_RCVBUF as the kernel reports it.
    pub fn rcvbuf(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one c_int into `v`, whose size we pass.
        unsafe {
            libc::getsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &mut v as *mut _ as *mut libc::c_void,
                &mut len,
            );
        }
        v as usize
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {}", bytes.len(), e));
    }

    /// Writes, returning the error instead of panicking (for peers that may close).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Shuts only our sending side (a half-close, as `nc` or a script does).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes both directions (the client "disconnects").
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// One read() of at most `max` bytes into the internal buffer; the number
    /// read (0 on EOF or reset). Errors on timeout.
    fn try_fill(&mut self, max: usize) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = vec![0u8; max];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.last_read_at = Instant::now();
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Conn::try_fill`], panicking on a timeout or error.
    fn fill(&mut self, max: usize) -> usize {
        match self.try_fill(max) {
            Ok(n) => n,
            Err(e) => panic!(
                "read from server failed ({}); bytes buffered so far: {:?}",
                e,
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one full response; `Err` (instead of a panic) when the
    /// connection closes or times out before a complete head.
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let mut polls = 0;
        loop {
            match client::http::parse_head(&self.buf) {
                Ok(Some(_)) => return Ok(self.read_response()),
                Ok(None) => {}
                Err(err) => return Err(err.to_string()),
            }
            polls += 1;
            if polls > 100_000 {
                return Err("no complete head".into());
            }
            match self.try_fill(64 * 1024) {
                Ok(0) => {
                    return Err(format!(
                        "closed before a complete head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {}", e)),
            }
        }
    }

    /// Reads one response head (parsed by `client::parse_head`). Panics on
    /// a bad head, or EOF or timeout before a full one.
    pub fn read_head(&mut self) -> Response {
        let mut polls = 0;
        let (head, end) = loop {
            if let Some(done) = self.head_in_buf() {
                break done;
            }
            polls += 1;
            assert!(polls < 100_000, "too many reads for one head");
            if self.fill(64 * 1024) == 0 {
                panic!(
                    "connection closed before a complete response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head_at = self.last_read_at;
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        Response::from_head(head, raw, head_at)
    }

    /// The head at the start of the buffer and where it ends, once complete;
    /// panics on a head the client refuses.
    fn head_in_buf(&self) -> Option<(client::Head, usize)> {
        client::http::parse_head(&self.buf)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&self.buf)))
    }

    /// Starts reading the body of `resp`.
    pub fn body(&self, resp: &Response) -> Body {
        let remaining = if let Framing::Length(n) = resp.framing { n } else { 0 };
        Body {
            framing: resp.framing,
            chunked: client::BodyDecoder::new(client::Framing::Chunked),
            remaining,
            done: matches!(resp.framing, Framing::None | Framing::Length(0)),
        }
    }

    /// Reads more of `body`: `None` once the body is complete; else the bytes
    /// decoded by at most one read() of up to `max` bytes (maybe empty when
    /// the read brought only chunk framing) and when they arrived.
    pub fn read_body_some(&mut self, body: &mut Body, max: usize) -> Option<(Vec<u8>, Instant)> {
        self.read_body_some_raw(body, max, None)
    }

    fn read_body_some_raw(
        &mut self,
        body: &mut Body,
        max: usize,
        mut raw: Option<&mut Vec<u8>>,
    ) -> Option<(Vec<u8>, Instant)> {
        if body.done {
            return None;
        }
        if self.buf.is_empty() {
            let n = self.fill(max);
            if n == 0 {
                match body.framing {
                    Framing::Close => {
                        body.done = true;
                        return None;
                    }
                    _ => panic!(
                        "connection closed in the middle of a {:?} body (decoder state {:?}, {} bytes left)",
                        body.framing, body.chunked, body.remaining
                    ),
                }
            }
        }
        let at = self.last_read_at;
        let mut out = Vec::new();
        match body.framing {
            Framing::None => unreachable!(),
            Framing::Close => {
                if let Some(r) = raw.as_deref_mut() {
                    r.extend_from_slice(&self.buf);
                }
                out.append(&mut self.buf);
            }
            Framing::Length(_) => {
                let take = (body.remaining as usize).min(self.buf.len());
                out.extend(self.buf.drain(..take));
                if let Some(r) = raw.as_deref_mut() {
                    r.extend_from_slice(&out);
                }
                body.remaining -= take as u64;
                if body.remaining == 0 {
                    body.done = true;
                }
            }
            Framing::Chunked => {
                let used = body
                    .chunked
                    .decode(&self.buf, &mut |bytes| out.extend_from_slice(bytes))
                    .unwrap_or_else(|err| panic!("bad chunked body: {err}"));
                if let Some(r) = raw {
                    r.extend_from_slice(&self.buf[..used]);
                }
                self.buf.drain(..used);
                if body.chunked.is_done() {
                    body.done = true;
                }
            }
        }
        Some((out, at))
    }

    /// Reads one complete response (head and body).
    pub fn read_response(&mut self) -> Response {
        let mut resp = self.read_head();
        let mut body = self.body(&resp);
        let mut raw = Vec::new();
        let mut out = Vec::new();
        let mut n = 0u64;
        while let Some((piece, _)) = self.read_body_some_raw(&mut body, 256 * 1024, Some(&mut raw)) {
            out.extend_from_slice(&piece);
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        resp.body = out;
        resp.raw_body = raw;
        resp.end_at = Instant::now();
        resp
    }

    /// Reads the body of `resp` piece by piece, calling `f` with each piece
    /// and its arrival time; `f` returns false to stop early.
    pub fn read_body_with(&mut self, resp: &Response, mut f: impl FnMut(&[u8], Instant) -> bool) -> Body {
        let mut body = self.body(resp);
        let mut n = 0u64;
        while let Some((piece, at)) = self.read_body_some(&mut body, 256 * 1024) {
            if !piece.is_empty() && !f(&piece, at) {
                break;
            }
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        body
    }

    /// Reads one `/run` response to its end, feeding the SSE parser as bytes
    /// arrive (so items carry real arrival times). `t0`: when the request was sent.
    pub fn read_run(&mut self, t0: Instant) -> Run {
        let mut resp = self.read_head();
        if resp.status != 200 {
            let rest = self.read_body_rest(&resp);
            resp.body = rest;
            panic!("/run: expected 200, got:\n{}", resp.dump());
        }
        check_stream_head(&resp);
        let mut p = SseParser::new();
        let mut items = Vec::new();
        let mut body = self.body(&resp);
        let mut raw = Vec::new();
        let mut decoded = Vec::new();
        let mut n = 0u64;
        while let Some((piece, at)) = self.read_body_some_raw(&mut body, 256 * 1024, Some(&mut raw)) {
            decoded.extend_from_slice(&piece);
            items.extend(p.feed(&piece, at));
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        resp.body = decoded;
        resp.raw_body = raw;
        resp.end_at = Instant::now();
        p.finish();
        Run::from_parts(resp, items, t0)
    }

    fn read_body_rest(&mut self, resp: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_body_into(resp, &mut out);
        out
    }

    /// Reads the body of `resp` to its end, appending it to `out`.
    pub fn read_body_into(&mut self, resp: &Response, out: &mut Vec<u8>) {
        self.read_body_with(resp, |piece, _| {
            out.extend_from_slice(piece);
            true
        });
    }

    /// Bytes received but not yet consumed by a response (e.g. pipelined).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// True if the server closes the connection (EOF or reset) within
    /// `within`, with no further bytes; panics if it sends bytes.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        assert!(
            self.buf.is_empty(),
            "unexpected extra bytes from server: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        if self.eof {
            return true;
        }
        self.stream
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut tmp = [0u8; 4096];
        let r = self.stream.read(&mut tmp);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match r {
            Ok(0) => {
                self.eof = true;
                true
            }
            Ok(n) => panic!(
                "expected the connection to close, but the server sent more: {:?}",
                String::from_utf8_lossy(&tmp[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => false,
            Err(e) => panic!("read failed while checking for close: {}", e),
        }
    }

    /// Asserts the server closes the connection within 2 s.
    pub fn assert_closed(&mut self, what: &str) {
        assert!(
            self.closed_within(Duration::from_secs(2)),
            "{}: the server did not close the connection within 2 s",
            what
        );
    }
}

/// A response read to the close, split where its head ends: the head as
/// `client::parse_head` reads it, its text, and every byte after it.
pub fn split_head(raw: &[u8]) -> (client::Head, String, &[u8]) {
    let (head, end) = client::http::parse_head(raw)
        .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(raw)))
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(raw)));
    let text = String::from_utf8_lossy(&raw[..end]).into_owned();
    (head, text, &raw[end..])
}
