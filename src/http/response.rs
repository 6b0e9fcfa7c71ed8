//! Response heads and fixed replies, written into a caller's buffer.

use std::io::Write as _;

/// The last chunk of a chunked body: after it the connection may be reused.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The heartbeat comment wrapped in one chunk.
pub const HEARTBEAT_CHUNK: &[u8] = b"8\r\n: ping\n\n\r\n";

/// The `retry:` block that opens a job stream, wrapped in one chunk.
pub const RETRY_CHUNK: &[u8] = b"d\r\nretry: 1000\n\n\r\n";

/// A complete reply that is not a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra header lines, name and value.
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type` of the body, if there is one.
    pub content_type: Option<&'static str>,
    /// The body (sent unless the request was `HEAD`).
    pub body: Vec<u8>,
    /// The connection must close after this reply.
    pub close: bool,
}

impl Reply {
    /// A short `text/plain` reply whose body is `message` and a newline.
    pub fn text(status: u16, reason: &'static str, message: &str) -> Reply {
        let mut body = Vec::with_capacity(message.len() + 1);
        body.extend_from_slice(message.as_bytes());
        body.push(b'\n');
        Reply {
            status,
            reason,
            headers: Vec::new(),
            content_type: Some("text/plain; charset=utf-8"),
            body,
            close: false,
        }
    }

    /// A reply without a body (`204`, `303`).
    pub fn empty(status: u16, reason: &'static str) -> Reply {
        Reply {
            status,
            reason,
            headers: Vec::new(),
            content_type: None,
            body: Vec::new(),
            close: false,
        }
    }

    /// Adds a header line.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks the connection to be closed after this reply.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Appends the reply to `out`; without the body when `head_only`.
    pub fn write_to(&self, out: &mut Vec<u8>, minor_version: u8, head_only: bool) {
        let _ = write!(out, "HTTP/1.{minor_version} {} {}\r\n", self.status, self.reason);
        if let Some(content_type) = self.content_type {
            let _ = write!(out, "Content-Type: {content_type}\r\n");
        }
        if self.status != 204 {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if minor_version == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Appends the head of an event stream: chunked for HTTP/1.1, else
/// close-delimited. `headers` are extra lines (CORS).
pub fn write_stream_head(out: &mut Vec<u8>, chunked: bool, close: bool, headers: &[(&'static str, String)]) {
    out.extend_from_slice(if chunked {
        b"HTTP/1.1 200 OK\r\n"
    } else {
        b"HTTP/1.0 200 OK\r\n"
    });
    out.extend_from_slice(b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reply_bytes() {
        let mut out = Vec::new();
        Reply::text(404, "Not Found", "no such route")
            .closing()
            .write_to(&mut out, 1, false);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nno such route\n"
        );
    }

    #[test]
    fn heartbeat_and_retry_chunks_are_one_chunk_each() {
        for (chunk, body) in [
            (HEARTBEAT_CHUNK, crate::sse::HEARTBEAT),
            (RETRY_CHUNK, crate::sse::RETRY),
        ] {
            assert_eq!(
                chunk,
                [format!("{:x}\r\n", body.len()).as_bytes(), body, b"\r\n"].concat()
            );
        }
    }
}
