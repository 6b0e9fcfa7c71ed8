//! Who may ask: the token (constant time), and the `Host`, `Origin` and
//! `Sec-Fetch-Site` checks against DNS rebinding and cross-site requests
//! (contract §4). No cookie is set or read: a browser sends a cookie to every
//! port of a host, so it would let any other local server act as the user.
//!
//! Pure functions of the request and the configuration, except
//! [`random_token`], which asks the kernel for randomness.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::http::query::Query;
use crate::http::request::Head;

/// Random bytes in a generated token: 192 bits, above the contract's 128.
const TOKEN_BYTES: usize = 24;

/// A new random token: 192 bits from the kernel, base64url without padding.
pub fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    crate::sys::getrandom(&mut bytes)?;
    Ok(base64url(&bytes))
}

pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        let chars = group.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// True when `given` equals `expected`. The time taken depends only on the
/// lengths, never on where the first difference is.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() != b.len()) as u8);
    for (i, &expected_byte) in a.iter().enumerate() {
        // Past the end of a shorter guess, compare with a byte that surely
        // differs: the loop length never depends on the guess.
        let other = b.get(i).copied().unwrap_or(!expected_byte);
        diff |= expected_byte ^ other;
    }
    std::hint::black_box(diff) == 0
}

/// The token a request carries: `Authorization: Bearer`, else the `token`
/// query parameter. A `Cookie` header is never read.
pub fn request_token<'a>(head: &'a Head, query: &'a Query) -> Option<&'a str> {
    if let Some(value) = head.authorization.as_deref() {
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim());
            }
        }
    }
    query.get("token")
}

/// True when a browser says another origin made this request
/// (`Sec-Fetch-Site: cross-site` or `same-site`) and it carries no `Origin`
/// header: an image, an iframe, a `no-cors` fetch or a link from another
/// site or another local port (contract §4, v3). Such a request is refused
/// even under `--no-auth`. A request with an `Origin` is left to
/// [`check_origin`]; one without `Sec-Fetch-Site` (curl, scripts, old
/// browsers) to the other checks.
pub fn is_foreign_without_origin(head: &Head) -> bool {
    head.fetch_site.is_some_and(|site| site.is_foreign()) && head.origin.is_none()
}

/// Splits `host[:port]` (or `[v6]:port`) into the host, lowercase, and port.
fn split_authority(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            return (format!("[{}]", ip.to_ascii_lowercase()), after.strip_prefix(':'));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_ascii_lowercase(), Some(port)),
        _ => (authority.to_ascii_lowercase(), None),
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

/// Which `Host` names may reach the server (contract §4).
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// Names given with `--allow-host`, lowercase; `*` accepts any.
    pub allow_hosts: Vec<String>,
}

impl HostPolicy {
    /// True if a request with this `Host` header may be served. A request
    /// without `Host` (HTTP/1.0) is allowed: browsers always send one.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let (name, _) = split_authority(host);
        self.allows_name(&name)
    }

    fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        if name == "localhost" || self.allow_hosts.iter().any(|h| h == "*" || h == name) {
            return true;
        }
        match parse_ip(name) {
            Some(ip) => ip.is_loopback() || ip == self.listen.ip() || !self.listen.ip().is_loopback(),
            None => false,
        }
    }

    /// True if `origin` is the server's own: the `Host` the request was sent
    /// to, or plain `http` with a loopback name or the listen address (not
    /// merely an `--allow-host` wildcard) and the same port. `https://` +
    /// `Host` is a TLS proxy in front passing the client's `Host` on: a page
    /// with that origin was served from the very address the request went
    /// to (and the `Host` check still judges that name).
    fn is_own_origin(&self, origin: &str, host: Option<&str>) -> bool {
        if let Some(authority) = origin.strip_prefix("https://") {
            return host.is_some_and(|h| h.eq_ignore_ascii_case(authority));
        }
        let Some(authority) = origin.strip_prefix("http://") else {
            return false;
        };
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        let (name, port) = split_authority(authority);
        let port_ok = port.and_then(|p| p.parse::<u16>().ok()) == Some(self.listen.port());
        let name_ok = name == "localhost"
            || parse_ip(&name).is_some_and(|ip| ip.is_loopback() || ip == self.listen.ip())
            || self.allow_hosts.iter().any(|h| h != "*" && *h == name);
        port_ok && name_ok
    }
}

/// The verdict on a request's `Origin` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`, or the server's own: nothing to add.
    Own,
    /// An origin `--cors-origin` allows: answer with this
    /// `Access-Control-Allow-Origin` value and `Vary: Origin`.
    Cors(String),
    /// A foreign origin (or `null`): `403`.
    Refused,
}

/// Checks `origin` against the server's own origin and `--cors-origin`.
pub fn check_origin(origin: Option<&str>, host: Option<&str>, hosts: &HostPolicy, cors: Option<&str>) -> OriginCheck {
    let Some(origin) = origin else { return OriginCheck::Own };
    if hosts.is_own_origin(origin, host) {
        return OriginCheck::Own;
    }
    match cors {
        Some("*") => OriginCheck::Cors("*".to_owned()),
        Some(allowed) if allowed.eq_ignore_ascii_case(origin.trim_end_matches('/')) => {
            OriginCheck::Cors(allowed.to_owned())
        }
        _ => OriginCheck::Refused,
    }
}

/// The request target with any `token` query parameter removed, for logs
/// (also `amp;token`, from a URL copied out of HTML, and any name with a
/// percent-escape, which might spell `token`). The token's value wherever
/// else it appears is left to [`crate::logsafe`], which knows it.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            let last = name.rsplit(';').next().unwrap_or(name);
            !last.eq_ignore_ascii_case("token") && !name.contains('%')
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, allow: &[&str]) -> HostPolicy {
        HostPolicy {
            listen: listen.parse().expect("test address"),
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = random_token().expect("getrandom");
        let b = random_token().expect("getrandom");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(crate::cli::token_is_valid(&a));
    }

    #[test]
    fn base64url_known_values() {
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret", "secreT"));
        assert!(!token_matches("secret", "secre"));
        assert!(!token_matches("secret", "secrets"));
        assert!(!token_matches("secret", ""));
    }

    #[test]
    fn hosts() {
        let p = policy("127.0.0.1:3000", &[]);
        assert!(p.allows(Some("127.0.0.1:3000")));
        assert!(p.allows(Some("localhost:3000")));
        assert!(p.allows(Some("LOCALHOST")));
        assert!(p.allows(Some("[::1]:3000")));
        assert!(p.allows(Some("127.0.0.2")));
        assert!(!p.allows(Some("evil.test:3000")));
        assert!(!p.allows(Some("192.168.1.5:3000")));
        assert!(policy("127.0.0.1:3000", &["box.lan"]).allows(Some("box.lan:3000")));
        assert!(policy("127.0.0.1:3000", &["*"]).allows(Some("any.name")));
        let lan = policy("0.0.0.0:3000", &[]);
        assert!(lan.allows(Some("192.168.1.5:3000")));
        assert!(!lan.allows(Some("evil.test")));
    }

    #[test]
    fn origins() {
        let p = policy("127.0.0.1:3000", &[]);
        let host = Some("127.0.0.1:3000");
        assert_eq!(check_origin(None, host, &p, None), OriginCheck::Own);
        assert_eq!(
            check_origin(Some("http://127.0.0.1:3000"), host, &p, None),
            OriginCheck::Own
        );
        assert_eq!(
            check_origin(Some("http://localhost:3000"), host, &p, None),
            OriginCheck::Own
        );
        assert_eq!(
            check_origin(Some("http://localhost:3001"), host, &p, None),
            OriginCheck::Refused
        );
        assert_eq!(check_origin(Some("null"), host, &p, None), OriginCheck::Refused);
        // Behind a proxy that passes the client's Host on, port included:
        // the page's origin is that Host, over http or https.
        let proxied = Some("127.0.0.1:18080");
        for own in ["http://127.0.0.1:18080", "https://127.0.0.1:18080"] {
            assert_eq!(check_origin(Some(own), proxied, &p, None), OriginCheck::Own, "{own}");
        }
        for foreign in [
            "https://127.0.0.1:18081",
            "https://localhost:18080",
            "https://127.0.0.1",
        ] {
            assert_eq!(
                check_origin(Some(foreign), proxied, &p, None),
                OriginCheck::Refused,
                "{foreign}"
            );
        }
        assert_eq!(
            check_origin(Some("http://a.test"), host, &p, None),
            OriginCheck::Refused
        );
        assert_eq!(
            check_origin(Some("http://a.test"), host, &p, Some("http://a.test")),
            OriginCheck::Cors("http://a.test".into())
        );
        assert_eq!(
            check_origin(Some("http://b.test"), host, &p, Some("http://a.test")),
            OriginCheck::Refused
        );
        assert_eq!(
            check_origin(Some("http://b.test"), host, &p, Some("*")),
            OriginCheck::Cors("*".into())
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_target("/run?command=ls&token=abc"), "/run?command=ls");
        assert_eq!(redact_target("/?token=abc"), "/");
        assert_eq!(redact_target("/run?tok%65n=abc&command=x"), "/run?command=x");
        assert_eq!(redact_target("/healthz"), "/healthz");
        assert_eq!(redact_target("/run?command=ls&amp;token=abc"), "/run?command=ls");
        assert_eq!(redact_target("/run?command=ls&a;TOKEN=abc&x=1"), "/run?command=ls&x=1");
    }

    fn parsed(text: &str) -> Head {
        match crate::http::request::parse(text.as_bytes()) {
            Ok(crate::http::request::Parsed::Complete(head, _)) => head,
            other => panic!("bad test head {text:?}: {other:?}"),
        }
    }

    #[test]
    fn cookie_is_never_a_token() {
        let head = parsed("GET /run HTTP/1.1\r\nHost: x\r\nCookie: ssecommander_token=T\r\n\r\n");
        let query = Query::parse("").expect("empty query");
        assert_eq!(request_token(&head, &query), None);
    }

    #[test]
    fn fetch_metadata() {
        let foreign =
            |extra: &str| is_foreign_without_origin(&parsed(&format!("GET /run HTTP/1.1\r\nHost: x\r\n{extra}\r\n")));
        assert!(foreign("Sec-Fetch-Site: cross-site\r\n"));
        assert!(foreign("Sec-Fetch-Site: same-site\r\n"));
        assert!(!foreign("Sec-Fetch-Site: same-site\r\nOrigin: http://x\r\n"));
        assert!(!foreign("Sec-Fetch-Site: same-origin\r\n"));
        assert!(!foreign("Sec-Fetch-Site: none\r\n"));
        assert!(!foreign(""));
    }
}
