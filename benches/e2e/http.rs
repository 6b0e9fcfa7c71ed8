//! The bench's client: a connection, one request, the response read through
//! `ssecommander::client`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ssecommander::client::payload::{self, Kind};
use ssecommander::client::{Item, ResponseReader, SseParser};

use crate::sample::now_ns;

pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(sock)
}

/// Called per SSE event with the CLOCK_MONOTONIC ns of the read that
/// completed it, the event name and its data.
pub(crate) type OnEvent<'a> = &'a mut dyn FnMut(i64, &[u8], &[u8]);

/// One GET on a new connection, read to the end of the response.
pub(crate) fn get(
    addr: SocketAddr,
    target: &str,
    limit: Duration,
    on_event: OnEvent<'_>,
) -> Result<(Response, Duration), String> {
    let start = Instant::now();
    let mut sock = connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    let mut buf = vec![0u8; 256 * 1024];
    let resp = exchange(&mut sock, request.as_bytes(), start + limit, &mut buf, on_event)?;
    Ok((resp, start.elapsed()))
}

/// Sends `request` and reads its response to the end (chunked end, length,
/// or EOF for a close-delimited body).
pub(crate) fn exchange(
    sock: &mut TcpStream,
    request: &[u8],
    deadline: Instant,
    buf: &mut [u8],
    on_event: OnEvent<'_>,
) -> Result<Response, String> {
    sock.write_all(request).map_err(|e| format!("write request: {e}"))?;
    let mut resp = Response::new();
    while !resp.done {
        if Instant::now() > deadline {
            return Err("response not over by the deadline".into());
        }
        match sock.read(buf) {
            Ok(0) => {
                let stamp = now_ns();
                resp.eof(&mut |name, data| on_event(stamp, name, data))?;
                break;
            }
            Ok(n) => {
                let stamp = now_ns();
                resp.feed(&buf[..n], &mut |name, data| on_event(stamp, name, data))?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(resp)
}

/// One HTTP/1.1 response read incrementally through `ssecommander::client`:
/// head and body framing ([`ResponseReader`]), then SSE ([`SseParser`]).
pub(crate) struct Response {
    reader: ResponseReader,
    sse: SseParser,
    pub(crate) status: u16,
    /// The server will close the connection after this response.
    pub(crate) close: bool,
    pub(crate) done: bool,
    pub(crate) wire_bytes: u64,
}

impl Response {
    pub(crate) fn new() -> Response {
        Response {
            reader: ResponseReader::new(false),
            sse: SseParser::new(),
            status: 0,
            close: false,
            done: false,
            wire_bytes: 0,
        }
    }

    pub(crate) fn head_done(&self) -> bool {
        self.reader.head().is_some()
    }

    pub(crate) fn feed(&mut self, bytes: &[u8], on_event: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        self.wire_bytes += bytes.len() as u64;
        let sse = &mut self.sse;
        let mut sse_error = None;
        self.reader
            .feed(bytes, &mut |body| {
                let fed = sse.feed(body, &mut |item| {
                    if let Item::Event(event) = item {
                        on_event(event.name, event.data);
                    }
                });
                if let Err(e) = fed {
                    sse_error.get_or_insert(e);
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(e) = sse_error {
            return Err(e.to_string());
        }
        if self.status == 0 {
            if let (Some(head), Some(framing)) = (self.reader.head(), self.reader.framing()) {
                self.status = head.status;
                self.close = !head.keep_alive(framing);
            }
        }
        if self.reader.is_done() {
            self.end();
        }
        Ok(())
    }

    /// The connection was closed by the server.
    pub(crate) fn eof(&mut self, _on_event: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        self.reader.finish().map_err(|e| e.to_string())?;
        self.end();
        Ok(())
    }

    /// The body ended: an unfinished event is dropped, as the spec says.
    fn end(&mut self) {
        if !self.done {
            self.done = true;
            self.sse.finish();
        }
    }
}

pub(crate) enum Ev {
    /// Child output, appended to `out`.
    Output,
    /// `exit`, with its code (`None` for a signal).
    Exit(Option<i64>),
    /// `err`: the command could not start.
    Error,
    Other,
}

/// What one event means; output text (JSON `out` decoded, or raw data lines
/// with their line end) is appended to `out`.
pub(crate) fn decode_event(name: &[u8], data: &[u8], out: &mut Vec<u8>) -> Result<Ev, String> {
    match Kind::of(name) {
        Kind::Exit => {
            let (code, _, _) = payload::exit_status(data).ok_or("exit event without code")?;
            Ok(Ev::Exit(code))
        }
        Kind::Err => Ok(Ev::Error),
        Kind::Stdout | Kind::Stderr => {
            payload::output(data, out);
            Ok(Ev::Output)
        }
        Kind::Gap | Kind::Other => Ok(Ev::Other),
    }
}
