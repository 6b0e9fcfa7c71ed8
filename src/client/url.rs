//! `http://host:port/path?query` URLs: the one kind the client speaks (plain
//! HTTP, no TLS), and the `/run?command=` request target built from one.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::http::query::encode;

/// A URL the client cannot use, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

/// A parsed `http://` URL. The fragment, if any, is dropped (it never goes on
/// the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

/// Longest URL accepted: the request target must stay under a server's
/// 8 KiB limit (contract §5) once a command is added.
const MAX_URL: usize = 4096;

impl Url {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY][#FRAGMENT]`. HOST is a name,
    /// an IPv4 address or a bracketed IPv6 address; PORT defaults to 80 and
    /// PATH to `/`. Fails on another scheme (`https` included), user info,
    /// an empty host, a bad port, or spaces and control characters.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let bad = |why: &str| Err(UrlError(format!("bad URL '{}': {why}", redact(text))));
        if text.len() > MAX_URL {
            return bad("longer than 4096 bytes");
        }
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return bad("contains a space or a control character");
        }
        let Some(rest) = strip_prefix_ignore_case(text, "http://") else {
            if strip_prefix_ignore_case(text, "https://").is_some() {
                return bad("https is not supported (plain http:// only)");
            }
            return bad("expected http://HOST:PORT/...");
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.contains('@') {
            return bad("user info (user@host) is not supported");
        }
        let (host, port) = match split_host_port(authority) {
            Ok(pair) => pair,
            Err(why) => return bad(why),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (rest, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            query: query.filter(|q| !q.is_empty()),
        })
    }

    /// The host, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 when the URL gave none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path, at least `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query, without the `?`; `None` when absent or empty.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// `host:port` as the `Host` header carries it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The addresses the host resolves to (a literal needs no lookup; a name
    /// is looked up once, blocking).
    pub fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }

    /// The target of a tutorial-style run request: the URL's path with `run`
    /// appended (kept when it already ends in `/run`), then
    /// `?command=CMD`, then `extra` pairs, then the URL's own query (so a
    /// `token=` in it rides on the request). Values are percent-encoded by
    /// [`crate::http::query::encode`], the inverse of the server's decoder.
    pub fn run_target(&self, command: &str, extra: &[(&str, &str)]) -> String {
        let mut target = self.path.clone();
        if !target.ends_with("/run") {
            if !target.ends_with('/') {
                target.push('/');
            }
            target.push_str("run");
        }
        target.push_str("?command=");
        target.push_str(&encode(command));
        for (name, value) in extra {
            target.push('&');
            target.push_str(&encode(name));
            target.push('=');
            target.push_str(&encode(value));
        }
        if let Some(query) = &self.query {
            target.push('&');
            target.push_str(query);
        }
        target
    }

    /// The URL with any `token=` value replaced by `…`, for messages and
    /// reports (a token must never be printed).
    pub fn redacted(&self) -> String {
        let mut text = format!("http://{}{}", self.authority(), self.path);
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(&redact_query(query));
        }
        text
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn split_host_port(authority: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("unclosed [ in the host");
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address in [ ]");
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("expected :PORT after ]"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => 80,
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err("the port must be a number from 1 to 65535"),
        },
    };
    Ok((host, port))
}

/// A query with each `token=` value replaced by `…`.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("token", _)) => "token=…".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` with any `token=` value hidden; for error messages about a URL
/// that did not parse.
fn redact(text: &str) -> String {
    match text.split_once('?') {
        Some((before, query)) => format!("{before}?{}", redact_query(query)),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_server_url_line() {
        let url = Url::parse("http://127.0.0.1:3000/?token=abc").unwrap();
        assert_eq!((url.host(), url.port(), url.path()), ("127.0.0.1", 3000, "/"));
        assert_eq!(url.query(), Some("token=abc"));
        assert_eq!(url.authority(), "127.0.0.1:3000");
        assert_eq!(url.run_target("ls -l", &[]), "/run?command=ls%20-l&token=abc");
        assert_eq!(url.redacted(), "http://127.0.0.1:3000/?token=…");
    }

    #[test]
    fn ipv6_default_port_prefix_and_run_path() {
        let url = Url::parse("HTTP://[::1]").unwrap();
        assert_eq!((url.host(), url.port(), url.path()), ("::1", 80, "/"));
        assert_eq!(url.authority(), "[::1]:80");
        let url = Url::parse("http://localhost:8/api#frag").unwrap();
        assert_eq!(
            url.run_target("a+b&c=%", &[("format", "raw")]),
            "/api/run?command=a%2Bb%26c%3D%25&format=raw"
        );
        let url = Url::parse("http://h:1/x/run?k=v").unwrap();
        assert_eq!(url.run_target("é", &[]), "/x/run?command=%C3%A9&k=v");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "https://h:1/",
            "ftp://h/",
            "h:1",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:+1/",
            "http://u@h/",
            "http://[::1/",
            "http://[zz]:1/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        let err = Url::parse("ftp://h/?token=secret").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
