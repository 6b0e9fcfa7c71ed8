//! A request head in, what to do out: a fixed [`Reply`], or a command to run.
//!
//! The checks run in one order, so every request meets the same gate: Host
//! (`403`), path (`404`), method (`405`, preflight), Origin (`403`),
//! `Sec-Fetch-Site` (`403`), token (`401`), then the route's own input
//! (`400`, `413`, `204`). `GET /` and `/healthz` need no token and pass the
//! `Sec-Fetch-Site` gate: they hold no secret and run nothing. Pure: no
//! sockets, no clock, no spawning.

use crate::argv;
use crate::auth::{self, HostPolicy, OriginCheck};
use crate::cli::Config;
use crate::http::query::Query;
use crate::http::request::{Head, HttpError, Method};
use crate::http::response::Reply;
use crate::sse::Format;

/// The built-in web page.
pub const PAGE: &str = include_str!("page.html");

/// A command the client asked to run, checked as far as it can be without
/// looking at the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The program and its arguments (`/bin/sh -c LINE` under `--shell`).
    pub argv: Vec<String>,
    /// How output is encoded.
    pub format: Format,
    /// Extra response headers (CORS).
    pub headers: Vec<(&'static str, String)>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with a fixed reply.
    Reply(Reply),
    /// Run a command and stream it.
    Run(RunRequest),
}

/// The routes the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Run,
    Healthz,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        match path {
            "/" | "/index.html" => Some(Route::Page),
            "/run" => Some(Route::Run),
            "/healthz" => Some(Route::Healthz),
            _ => None,
        }
    }
}

fn text(status: u16, reason: &'static str, message: &str) -> Decision {
    Decision::Reply(Reply::text(status, reason, message))
}

/// Decides what `head` gets, under `config`.
pub fn decide(head: &Head, config: &Config) -> Decision {
    let hosts = HostPolicy {
        listen: config.listen,
        allow_hosts: config.allow_hosts.clone(),
    };
    let route = Route::from_path(head.path());
    if route == Some(Route::Healthz) {
        return healthz(head);
    }
    if !hosts.allows(head.host.as_deref()) {
        return text(
            403,
            "Forbidden",
            "forbidden: this Host name is not served (see --allow-host)",
        );
    }
    let Some(route) = route else {
        return text(404, "Not Found", "not found: the routes are /, /run and /healthz");
    };
    let origin = auth::check_origin(
        head.origin.as_deref(),
        head.host.as_deref(),
        &hosts,
        config.cors_origin.as_deref(),
    );
    if let Some(refusal) = method_check(head, route, &origin, config) {
        return refusal;
    }
    let cors = match origin {
        OriginCheck::Refused => return text(403, "Forbidden", "forbidden: cross-origin request refused"),
        OriginCheck::Own => Vec::new(),
        OriginCheck::Cors(allow) => vec![("Access-Control-Allow-Origin", allow), ("Vary", "Origin".to_owned())],
    };
    if route != Route::Page && auth::is_foreign_without_origin(head) {
        return text(
            403,
            "Forbidden",
            "forbidden: a request from another site or port without an allowed Origin",
        );
    }
    let query = match Query::parse(head.query()) {
        Ok(query) => query,
        Err(err) => return text(400, "Bad Request", &format!("bad request: {err}")),
    };
    match route {
        Route::Page => page(cors),
        Route::Run => run(head, &query, config, cors),
        Route::Healthz => healthz(head),
    }
}

fn healthz(head: &Head) -> Decision {
    match head.method {
        Method::Get | Method::Head => {
            let mut reply = Reply::text(200, "OK", "ok");
            reply.body.pop(); // the contract's body is exactly `ok`
            reply.content_type = Some("text/plain");
            Decision::Reply(reply.header("Cache-Control", "no-store"))
        }
        _ => method_not_allowed("GET, HEAD"),
    }
}

fn method_not_allowed(allow: &'static str) -> Decision {
    Decision::Reply(
        Reply::text(405, "Method Not Allowed", &format!("method not allowed: use {allow}")).header("Allow", allow),
    )
}

/// `None` when the method fits the route; a `405` or the preflight answer
/// otherwise.
fn method_check(head: &Head, route: Route, origin: &OriginCheck, config: &Config) -> Option<Decision> {
    match (route, &head.method) {
        (Route::Page, Method::Get | Method::Head) | (Route::Run, Method::Get) => None,
        (Route::Run, Method::Options) if config.cors_origin.is_some() => Some(preflight(origin)),
        (Route::Run, _) if config.cors_origin.is_some() => Some(method_not_allowed("GET, OPTIONS")),
        (Route::Run, _) => Some(method_not_allowed("GET")),
        (Route::Page | Route::Healthz, _) => Some(method_not_allowed("GET, HEAD")),
    }
}

fn preflight(origin: &OriginCheck) -> Decision {
    match origin {
        OriginCheck::Cors(allow) => Decision::Reply(
            Reply::empty(204, "No Content")
                .header("Access-Control-Allow-Origin", allow.clone())
                .header("Vary", "Origin")
                .header("Access-Control-Allow-Methods", "GET")
                .header("Access-Control-Allow-Headers", "Authorization, Last-Event-ID")
                .header("Access-Control-Max-Age", "600"),
        ),
        _ => text(
            403,
            "Forbidden",
            "forbidden: preflight from an origin that is not allowed",
        ),
    }
}

fn unauthorized() -> Decision {
    text(
        401,
        "Unauthorized",
        "unauthorized: open the URL with ?token=... that ssecommander printed at start, or send Authorization: Bearer TOKEN",
    )
}

/// True when the request carries the right token (or auth is off).
fn authorized(head: &Head, query: &Query, config: &Config) -> bool {
    match &config.token {
        None => true,
        Some(expected) => auth::request_token(head, query).is_some_and(|given| auth::token_matches(expected, given)),
    }
}

fn with_headers(mut reply: Reply, headers: Vec<(&'static str, String)>) -> Reply {
    reply.headers.extend(headers);
    reply
}

/// The page, with or without `?token=` and whatever its value: it holds no
/// secret. Its script takes the token from its own address, keeps it in the
/// tab's `sessionStorage` and sends it itself (contract §4, v3).
fn page(cors: Vec<(&'static str, String)>) -> Decision {
    let mut reply = Reply::text(200, "OK", "");
    reply.body = PAGE.as_bytes().to_vec();
    reply.content_type = Some("text/html; charset=utf-8");
    let reply = reply
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
        .header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        );
    Decision::Reply(with_headers(reply, cors))
}

fn run(head: &Head, query: &Query, config: &Config, cors: Vec<(&'static str, String)>) -> Decision {
    if !authorized(head, query, config) {
        return unauthorized();
    }
    if head.has_body {
        let err = HttpError::BodyNotAllowed;
        return Decision::Reply(Reply::text(413, err.status().1, &err.to_string()).closing());
    }
    if head.last_event_id {
        // An EventSource reconnecting: never run the command again; 204 tells
        // it to stop reconnecting (contract §3.8).
        return Decision::Reply(with_headers(Reply::empty(204, "No Content"), cors));
    }
    let format = match query.get("format").map(Format::from_query) {
        None => Format::Json,
        Some(Some(format)) => format,
        Some(None) => return text(400, "Bad Request", "bad request: format must be json or raw"),
    };
    let Some(line) = query.get("command") else {
        return text(
            400,
            "Bad Request",
            "bad request: missing the command parameter (/run?command=...)",
        );
    };
    let argv = if config.shell {
        match shell_argv(line) {
            Ok(argv) => argv,
            Err(err) => return text(400, "Bad Request", &format!("bad request: {err}")),
        }
    } else {
        match argv::command(line) {
            Ok(argv) => argv,
            Err(err) => return text(400, "Bad Request", &format!("bad request: {err}")),
        }
    };
    Decision::Run(RunRequest {
        argv,
        format,
        headers: cors,
    })
}

/// `/bin/sh -c LINE`, refusing what the splitter would refuse anyway.
fn shell_argv(line: &str) -> Result<Vec<String>, argv::ArgvError> {
    if line.contains('\0') {
        return Err(argv::ArgvError::Nul);
    }
    if line.trim().is_empty() {
        return Err(argv::ArgvError::Empty);
    }
    Ok(vec!["/bin/sh".to_owned(), "-c".to_owned(), line.to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, Parsed};

    fn head(text: &str) -> Head {
        match parse(text.as_bytes()) {
            Ok(Parsed::Complete(head, _)) => head,
            other => panic!("bad test head {text:?}: {other:?}"),
        }
    }

    fn config() -> Config {
        Config {
            listen: "127.0.0.1:3000".parse().expect("address"),
            token: Some("T0k".into()),
            ..Config::default()
        }
    }

    fn status(req: &str, config: &Config) -> u16 {
        match decide(&head(req), config) {
            Decision::Reply(reply) => reply.status,
            Decision::Run(_) => 200,
        }
    }

    #[test]
    fn gates_in_order() {
        let c = config();
        assert_eq!(status("GET /healthz HTTP/1.1\r\nHost: evil\r\n\r\n", &c), 200);
        assert_eq!(status("GET /run?command=ls HTTP/1.1\r\nHost: evil\r\n\r\n", &c), 403);
        assert_eq!(status("GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 404);
        assert_eq!(status("POST /run HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 405);
        assert_eq!(
            status(
                "GET /run?command=ls HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil\r\n\r\n",
                &c
            ),
            403
        );
        assert_eq!(
            status("GET /run?command=ls HTTP/1.1\r\nHost: localhost\r\n\r\n", &c),
            401
        );
        assert_eq!(
            status("GET /run?command=ls&token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n", &c),
            200
        );
        assert_eq!(
            status(
                "GET /run?command=ls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer T0k\r\n\r\n",
                &c
            ),
            200
        );
        assert_eq!(
            status(
                "GET /run?command=ls HTTP/1.1\r\nHost: localhost\r\nCookie: ssecommander_token=T0k\r\n\r\n",
                &c
            ),
            401
        );
        assert_eq!(
            status(
                "GET /run?command=ls&token=T0k HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: same-site\r\n\r\n",
                &c
            ),
            403
        );
        assert_eq!(
            status(
                "GET /run?command=%27%27&token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n",
                &c
            ),
            400
        );
        assert_eq!(
            status(
                "GET /run?command=ls&token=T0k HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: 3\r\n\r\n",
                &c
            ),
            204
        );
        assert_eq!(
            status(
                "GET /run?command=%27ls&token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n",
                &c
            ),
            400
        );
        assert_eq!(
            status("GET /run?command=%zz&token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n", &c),
            400
        );
        assert_eq!(
            status("GET /run?token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n", &c),
            400
        );
        assert_eq!(
            status(
                "GET /run?command=ls&token=T0k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n",
                &c
            ),
            413
        );
        assert_eq!(status("GET /?token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 200);
        assert_eq!(status("GET /?token=bad HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 200);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 200);
        assert_eq!(
            status(
                "GET / HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: cross-site\r\n\r\n",
                &c
            ),
            200
        );
    }

    #[test]
    fn run_request_is_split() {
        let c = config();
        let got = decide(
            &head("GET /run?command=echo+%27a+b%27&format=raw&token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            &c,
        );
        assert_eq!(
            got,
            Decision::Run(RunRequest {
                argv: vec!["echo".into(), "a b".into()],
                format: Format::Raw,
                headers: vec![]
            })
        );
    }

    #[test]
    fn preflight_with_cors() {
        let mut c = config();
        c.cors_origin = Some("http://a.test".into());
        let d = decide(
            &head("OPTIONS /run HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a.test\r\n\r\n"),
            &c,
        );
        let Decision::Reply(reply) = d else {
            panic!("expected a reply")
        };
        assert_eq!(reply.status, 204);
        assert!(reply.headers.contains(&("Access-Control-Max-Age", "600".into())));
    }
}
