//! Request heads: bytes so far in, a [`Head`], "not yet" or an [`HttpError`] out.
//!
//! [`parse`] is called again each time more bytes arrive; the size limits
//! bound how much it can ever be asked to re-read. It copies what the server
//! acts on into an owned [`Head`], so the caller's buffer is free again.

use std::fmt;

/// Longest request target accepted (contract §5: over 8 KiB is `414`).
pub const MAX_TARGET: usize = 8 * 1024;
/// Longest header section accepted (contract §5: over 8 KiB is `431`).
pub const MAX_HEADERS: usize = 8 * 1024;
/// Most header lines parsed; more is `431` (httparse needs a fixed array).
pub const MAX_HEADER_COUNT: usize = 64;
/// The most bytes a head can take: a request line with the longest target
/// plus the longest header section. A connection buffers no more than this.
pub const MAX_HEAD: usize = MAX_TARGET + MAX_HEADERS + 64;

/// A request the server cannot serve, with the status that says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// `400`: the head is not HTTP/1.x syntax, or is ambiguous (smuggling).
    BadRequest(&'static str),
    /// `408`: no complete head in time.
    Timeout,
    /// `413`: a body where none is accepted.
    BodyNotAllowed,
    /// `414`: the request target is over [`MAX_TARGET`].
    UriTooLong,
    /// `431`: the header section is over [`MAX_HEADERS`] or has too many lines.
    HeadersTooLarge,
    /// `501`: a `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
    /// `417`: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// `505`: HTTP/2 or any version but 1.0 and 1.1.
    VersionNotSupported,
}

impl HttpError {
    /// The status code and reason phrase of the reply.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HttpError::BadRequest(_) => (400, "Bad Request"),
            HttpError::Timeout => (408, "Request Timeout"),
            HttpError::BodyNotAllowed => (413, "Content Too Large"),
            HttpError::UriTooLong => (414, "URI Too Long"),
            HttpError::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            HttpError::UnsupportedEncoding => (501, "Not Implemented"),
            HttpError::ExpectationFailed => (417, "Expectation Failed"),
            HttpError::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::Timeout => f.write_str("no complete request head within 10 s"),
            HttpError::BodyNotAllowed => f.write_str("this request takes no body"),
            HttpError::UriTooLong => write!(f, "request target longer than {MAX_TARGET} bytes"),
            HttpError::HeadersTooLarge => write!(f, "header section larger than {MAX_HEADERS} bytes"),
            HttpError::UnsupportedEncoding => f.write_str("only Transfer-Encoding: chunked is understood"),
            HttpError::ExpectationFailed => f.write_str("only Expect: 100-continue is understood"),
            HttpError::VersionNotSupported => f.write_str("only HTTP/1.0 and HTTP/1.1 are supported"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The request methods the server tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: a `GET` without the body.
    Head,
    /// `OPTIONS`: CORS preflight.
    Options,
    /// Anything else, as sent.
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        }
    }
}

/// Who made a request, as a browser states it in `Sec-Fetch-Site` (Fetch
/// Metadata). Page scripts cannot set or forge this header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchSite {
    /// `same-origin`: a page of this very origin (scheme, host and port).
    SameOrigin,
    /// `same-site`: another origin of the same site, such as another port
    /// of `127.0.0.1`.
    SameSite,
    /// `cross-site`: any other site.
    CrossSite,
    /// `none`: the user's own action (typed address, bookmark).
    UserInitiated,
}

impl FetchSite {
    /// The value a browser sends; `None` for a value Fetch Metadata does not
    /// define, which is then treated as if the header were absent.
    fn from_value(value: &str) -> Option<FetchSite> {
        match value.to_ascii_lowercase().as_str() {
            "same-origin" => Some(FetchSite::SameOrigin),
            "same-site" => Some(FetchSite::SameSite),
            "cross-site" => Some(FetchSite::CrossSite),
            "none" => Some(FetchSite::UserInitiated),
            _ => None,
        }
    }

    /// True when another origin made the request (`same-site` or `cross-site`).
    pub fn is_foreign(self) -> bool {
        matches!(self, FetchSite::SameSite | FetchSite::CrossSite)
    }
}

/// What the server keeps of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path and query of the request target. An absolute-form target
    /// (`http://host:port/path?query`) is kept as its path and query, and
    /// its authority becomes [`Head::host`].
    pub target: String,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub minor_version: u8,
    /// `Host`, if sent; the authority of an absolute-form target replaces
    /// it (RFC 9112 §3.2.2).
    pub host: Option<String>,
    /// `Origin`, if sent.
    pub origin: Option<String>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
    /// `Sec-Fetch-Site`, if sent with a value Fetch Metadata defines.
    pub fetch_site: Option<FetchSite>,
    /// The `Last-Event-ID` header (an EventSource reconnecting), if sent.
    pub last_event_id: Option<String>,
    /// The client allows the connection to stay open after the response.
    pub keep_alive: bool,
    /// The request carries a body (non-zero `Content-Length` or chunked).
    pub has_body: bool,
    /// How the body is framed, for the one route that reads one
    /// (`POST /jobs/ID/input`, contract §10.2).
    pub body: BodyFraming,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before
    /// it sends the body.
    pub expect_continue: bool,
}

impl Head {
    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target[..], |(path, _)| path)
    }

    /// The query part of the target (after `?`), empty if none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Valid so far; more bytes are needed.
    Partial,
    /// A whole head, and how many bytes of the buffer it took.
    Complete(Head, usize),
}

/// Parses a request head from the start of `buf`.
///
/// Fails with the [`HttpError`] whose status answers it; `Partial` means the
/// bytes are valid so far and fewer than the limits allow. The outcome does
/// not depend on how the bytes were split into reads: once a prefix of `buf`
/// is not `Partial`, `buf` parses the same.
pub fn parse(buf: &[u8]) -> Result<Parsed, HttpError> {
    if buf.starts_with(b"PRI * HTTP/2") {
        return Err(HttpError::VersionNotSupported);
    }
    // Parse no further than the limits: bytes past them must not decide the
    // outcome, or a head read in pieces (stopped by the limit) and the same
    // bytes read at once could be answered differently.
    let (view, over_limit) = within_limits(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(view) {
        Ok(httparse::Status::Partial) => match over_limit {
            Some(err) => Err(err),
            None => Ok(Parsed::Partial),
        },
        Ok(httparse::Status::Complete(len)) => {
            let head = build_head(&req, view, len)?;
            Ok(Parsed::Complete(head, len))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => Err(version_error(view)),
        Err(_) => Err(HttpError::BadRequest("malformed request head")),
    }
}

/// Longest request line accepted, line end included: the longest target
/// plus room for a method, two spaces and the version.
const MAX_LINE: usize = MAX_TARGET + 32;

/// Length of the request line including its line end, if it is complete.
fn request_line_len(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf).map(|i| i + 1)
}

/// The start of `buf` that fits the size limits, and the error to answer if
/// the head does not end within it.
fn within_limits(buf: &[u8]) -> (&[u8], Option<HttpError>) {
    match request_line_len(buf) {
        Some(line) if line <= MAX_LINE => {
            if buf.len() - line > MAX_HEADERS {
                (&buf[..line + MAX_HEADERS], Some(HttpError::HeadersTooLarge))
            } else {
                (buf, None)
            }
        }
        _ if buf.len() > MAX_LINE => (&buf[..MAX_LINE], Some(HttpError::UriTooLong)),
        _ => (buf, None),
    }
}

/// A version httparse refused: `505` if it names an HTTP version, else `400`.
///
/// Looks only at the start of the version field (after the method, the
/// target and their spaces), which httparse has read before refusing it, so
/// the answer is the same however much of the line has arrived.
fn version_error(buf: &[u8]) -> HttpError {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let mut fields = buf[start..].splitn(3, |&b| b == b' ');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(_), Some(_), Some(version)) if version.starts_with(b"HTTP/") => HttpError::VersionNotSupported,
        _ => HttpError::BadRequest("malformed request line"),
    }
}

fn build_head(req: &httparse::Request<'_, '_>, buf: &[u8], len: usize) -> Result<Head, HttpError> {
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if target.len() > MAX_TARGET {
        return Err(HttpError::UriTooLong);
    }
    let line = request_line_len(buf).unwrap_or(len);
    if len - line > MAX_HEADERS {
        return Err(HttpError::HeadersTooLarge);
    }
    let target = RequestTarget::parse(target)?;
    let mut head = Head {
        method: Method::from_token(method),
        target: target.path_and_query,
        minor_version: minor,
        host: None,
        origin: None,
        authorization: None,
        fetch_site: None,
        last_event_id: None,
        keep_alive: minor == 1,
        has_body: false,
        body: BodyFraming::default(),
        expect_continue: false,
    };
    let mut framing = BodyFraming::default();
    for header in req.headers.iter() {
        apply_header(&mut head, &mut framing, header.name, header.value)?;
    }
    head.has_body = framing.check()?;
    head.body = framing;
    if minor == 1 && head.host.is_none() {
        return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
    }
    if let Some(authority) = target.authority {
        // RFC 9112 §3.2.2: the target's authority wins over the Host header,
        // so the Host check of contract §4 judges what the client addressed.
        head.host = Some(authority);
    }
    if minor == 0 {
        // HTTP/1.0 keep-alive is a legacy extension: close after each response.
        head.keep_alive = false;
    }
    Ok(head)
}

/// A request target split into what the server routes and, for the
/// absolute form, the authority it names.
struct RequestTarget {
    /// Starts with `/`.
    path_and_query: String,
    authority: Option<String>,
}

impl RequestTarget {
    /// Origin form (`/path?query`) as is; absolute form (`http://host/path`,
    /// RFC 9112 §3.2.2) split into authority and path. The asterisk form,
    /// the authority form and other schemes are `400`: no route takes them.
    fn parse(target: &str) -> Result<RequestTarget, HttpError> {
        if target.starts_with('/') {
            return Ok(RequestTarget {
                path_and_query: target.to_owned(),
                authority: None,
            });
        }
        if target == "*" {
            return Err(HttpError::BadRequest("the asterisk-form request target is not served"));
        }
        let scheme_len = "http://".len();
        let is_http = target.len() > scheme_len
            && target.is_char_boundary(scheme_len)
            && target[..scheme_len].eq_ignore_ascii_case("http://");
        if !is_http {
            return Err(HttpError::BadRequest("request target must be a path or an http:// URL"));
        }
        let rest = &target[scheme_len..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::BadRequest("bad authority in the request target"));
        }
        let path_and_query = if path.starts_with('/') {
            path.to_owned()
        } else {
            // `http://host?query` and `http://host` name the root.
            format!("/{path}")
        };
        Ok(RequestTarget {
            path_and_query,
            authority: Some(authority.to_owned()),
        })
    }
}

/// What the head says about a body, checked once all headers are seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyFraming {
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    transfer_encoding: bool,
}

impl BodyFraming {
    /// True if a body follows; errors for ambiguous framing (smuggling).
    fn check(&self) -> Result<bool, HttpError> {
        if self.transfer_encoding && self.content_length.is_some() {
            return Err(HttpError::BadRequest("both Content-Length and Transfer-Encoding"));
        }
        Ok(self.chunked || self.content_length.is_some_and(|n| n > 0))
    }
}

fn header_str<'a>(value: &'a [u8], what: &'static str) -> Result<&'a str, HttpError> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| HttpError::BadRequest(what))
}

fn set_once(slot: &mut Option<String>, value: &str, what: &'static str) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(HttpError::BadRequest(what));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

fn apply_header(head: &mut Head, framing: &mut BodyFraming, name: &str, value: &[u8]) -> Result<(), HttpError> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "host" => set_once(
            &mut head.host,
            header_str(value, "Host is not text")?,
            "more than one Host",
        )?,
        "origin" => set_once(
            &mut head.origin,
            header_str(value, "Origin is not text")?,
            "more than one Origin",
        )?,
        "authorization" => set_once(
            &mut head.authorization,
            header_str(value, "Authorization is not text")?,
            "more than one Authorization",
        )?,
        "sec-fetch-site" => {
            if head.fetch_site.is_some() {
                return Err(HttpError::BadRequest("more than one Sec-Fetch-Site"));
            }
            head.fetch_site = FetchSite::from_value(header_str(value, "Sec-Fetch-Site is not text")?);
        }
        "last-event-id" => head.last_event_id = Some(String::from_utf8_lossy(value).trim().to_owned()),
        "connection" => {
            let value = header_str(value, "Connection is not text")?;
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    // We never upgrade; the request is answered as plain HTTP/1.1.
                }
            }
        }
        "content-length" => {
            if framing.content_length.is_some() {
                return Err(HttpError::BadRequest("more than one Content-Length"));
            }
            let text = header_str(value, "bad Content-Length")?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::BadRequest("bad Content-Length"));
            }
            let length = text.parse().map_err(|_| HttpError::BadRequest("bad Content-Length"))?;
            framing.content_length = Some(length);
        }
        "transfer-encoding" => {
            let text = header_str(value, "bad Transfer-Encoding")?;
            framing.transfer_encoding = true;
            if text.eq_ignore_ascii_case("chunked") && !framing.chunked {
                framing.chunked = true;
            } else {
                return Err(HttpError::UnsupportedEncoding);
            }
        }
        "expect" => {
            let text = header_str(value, "bad Expect")?;
            if !text.eq_ignore_ascii_case("100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            head.expect_continue = true;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Head {
        match parse(bytes) {
            Ok(Parsed::Complete(head, len)) => {
                assert_eq!(len, bytes.len());
                head
            }
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn typical_request() {
        let h = head(b"GET /run?command=ls HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nSec-Fetch-Site: same-origin\r\n\r\n");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/run");
        assert_eq!(h.query(), "command=ls");
        assert_eq!(h.fetch_site, Some(FetchSite::SameOrigin));
        assert!(h.keep_alive);
        assert!(!h.has_body);
    }

    #[test]
    fn split_anywhere_is_partial_then_complete() {
        let whole = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Parsed::Partial), "cut at {cut}");
        }
        assert!(!head(whole).keep_alive);
    }

    #[test]
    fn errors_have_their_statuses() {
        let status = |b: &[u8]| parse(b).map(|_| 0).unwrap_or_else(|e| e.status().0);
        assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / FOO\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: later\r\n\r\n"), 417);
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_TARGET + 200));
        assert_eq!(status(long_target.as_bytes()), 414);
        assert_eq!(status(&long_target.as_bytes()[..MAX_TARGET + 100]), 414);
        let long_header = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEADERS + 200)
        );
        assert_eq!(status(long_header.as_bytes()), 431);
        assert_eq!(status(&long_header.as_bytes()[..MAX_HEADERS + 100]), 431);
    }

    /// Every way of cutting `bytes` into two reads gives the answer of
    /// parsing them at once.
    fn same_when_cut(bytes: &[u8]) {
        let whole = parse(bytes);
        for cut in 1..bytes.len() {
            let outcome = match parse(&bytes[..cut]) {
                Ok(Parsed::Partial) => parse(bytes),
                decided => decided,
            };
            assert_eq!(outcome, whole, "cut at {cut}");
        }
    }

    #[test]
    fn version_error_does_not_depend_on_later_bytes() {
        // Found by fuzz/http_head: "HTTP/2" alone was 505, the whole line 400.
        same_when_cut(b"RI * HTTP/2\0GET /\r\n\r\n");
        same_when_cut(b"GET / HTTP/1.2 x\r\nHost: x\r\n\r\n");
        assert_eq!(parse(b"GET / HTTP/1.2 x\r\n\r\n"), Err(HttpError::VersionNotSupported));
        assert_eq!(
            parse(b"GET / HTTX/1.1\r\n\r\n"),
            Err(HttpError::BadRequest("malformed request line"))
        );
        assert_eq!(parse(b"\r\nGET / HTTP/3\r\n\r\n"), Err(HttpError::VersionNotSupported));
    }

    #[test]
    fn long_request_line_is_414_however_it_arrives() {
        let long_method = format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(MAX_LINE));
        assert_eq!(parse(long_method.as_bytes()), Err(HttpError::UriTooLong));
        same_when_cut(long_method.as_bytes());
    }

    #[test]
    fn http10_closes_and_body_is_seen() {
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"GET /run HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
        assert!(h.has_body);
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let h = head(b"GET http://127.0.0.1:3000/run?command=ls HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        assert_eq!(h.target, "/run?command=ls");
        assert_eq!(h.host.as_deref(), Some("127.0.0.1:3000"));
        let h = head(b"GET HTTP://Box.LAN:8080?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((h.target.as_str(), h.host.as_deref()), ("/?x=1", Some("Box.LAN:8080")));
        let h = head(b"GET http://[::1]:3000 HTTP/1.0\r\n\r\n");
        assert_eq!((h.path(), h.host.as_deref()), ("/", Some("[::1]:3000")));
    }

    #[test]
    fn other_target_forms_are_400() {
        for bad in [
            &b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET https://x/run HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:///run HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://user@x/run HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET run HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let got = parse(bad).map(|_| 0).unwrap_or_else(|e| e.status().0);
            assert_eq!(got, 400, "{:?}", String::from_utf8_lossy(bad));
        }
        // Absolute form still needs Host in HTTP/1.1 (RFC 9112 §3.2).
        assert!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn fetch_site_values() {
        let site =
            |v: &str| head(format!("GET / HTTP/1.1\r\nHost: x\r\nSec-Fetch-Site: {v}\r\n\r\n").as_bytes()).fetch_site;
        assert_eq!(site("cross-site"), Some(FetchSite::CrossSite));
        assert_eq!(site("Same-Site"), Some(FetchSite::SameSite));
        assert_eq!(site("none"), Some(FetchSite::UserInitiated));
        assert_eq!(site("other"), None);
        assert!(FetchSite::SameSite.is_foreign() && FetchSite::CrossSite.is_foreign());
        assert!(!FetchSite::SameOrigin.is_foreign() && !FetchSite::UserInitiated.is_foreign());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nSec-Fetch-Site: none\r\nSec-Fetch-Site: none\r\n\r\n").is_err());
    }
}
