//! A request head in, what to do out: a fixed [`Reply`], or a command to run.
//!
//! The checks run in one order, so every request meets the same gate: Host
//! (`403`), path (`404`), method (`405`, preflight), Origin (`403`),
//! `Sec-Fetch-Site` (`403`), token (`401`), then the route's own input
//! (`400`, `413`, `204`). `GET /` and `/healthz` need no token and pass the
//! `Sec-Fetch-Site` gate: they hold no secret and run nothing. Pure: no
//! sockets, no clock, no spawning.
//!
//! This file holds the gate and `/run`; `jobs.rs` the job routes' own input
//! (`/jobs…`), `page.rs` the page and its Content-Security-Policy.

mod jobs;
mod page;

use crate::argv;
use crate::auth::{self, HostPolicy, OriginCheck};
use crate::child::Streams;
use crate::cli::Config;
use crate::http::query::Query;
use crate::http::request::{Head, HttpError, Method};
use crate::http::response::Reply;
use crate::sse::Format;
use crate::sys::pty;

use jobs::{jobs, Control};
pub use jobs::{JobAction, JobRequest, JOB_SIGNALS};
use page::page;

/// A command the client asked to run, checked as far as it can be without
/// looking at the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The program and its arguments (`/bin/sh -c LINE` under `--shell`).
    pub argv: Vec<String>,
    /// How output is encoded.
    pub format: Format,
    /// Pipes or a terminal, and whether stdin stays open (contract §10).
    pub streams: Streams,
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
    /// Act on jobs (contract §7); the server holds them.
    Job(JobRequest),
    /// `GET /metrics` (contract §8): the server renders its counters; these
    /// are extra response headers (CORS).
    Metrics(Vec<(&'static str, String)>),
}

/// The routes the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Page,
    Run,
    Healthz,
    Jobs,
    Job(&'a str),
    JobEvents(&'a str),
    /// `/jobs/events`: many jobs on one stream (no job id is `events`:
    /// ids are 16 random characters, after `NAME-` with `--instance`).
    AllEvents,
    JobControl(&'a str, Control),
    Metrics,
}

impl Route<'_> {
    fn from_path(path: &str) -> Option<Route<'_>> {
        match path {
            "/" | "/index.html" => return Some(Route::Page),
            "/run" => return Some(Route::Run),
            "/healthz" => return Some(Route::Healthz),
            "/jobs" => return Some(Route::Jobs),
            "/metrics" => return Some(Route::Metrics),
            "/jobs/events" => return Some(Route::AllEvents),
            _ => {}
        }
        let rest = path.strip_prefix("/jobs/")?;
        let suffixes = [
            ("/events", None),
            ("/input", Some(Control::Input)),
            ("/signal", Some(Control::Signal)),
            ("/resize", Some(Control::Resize)),
        ];
        let (id, control) = suffixes
            .iter()
            .find_map(|&(suffix, control)| Some((rest.strip_suffix(suffix)?, Some(control))))
            .unwrap_or((rest, None));
        if !is_job_id(id) {
            return None;
        }
        Some(match control {
            None => Route::Job(id),
            Some(None) => Route::JobEvents(id),
            Some(Some(control)) => Route::JobControl(id, control),
        })
    }
}

/// True for text that can be a job id: `[NAME-]` and base64url, at most 64
/// bytes. Anything else is no job (`404`) before any lookup.
fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
    if !hosts.allows(head.host.as_deref()) {
        return text(
            403,
            "Forbidden",
            "forbidden: this Host name is not served (see --allow-host)",
        );
    }
    let Some(route) = route else {
        return text(
            404,
            "Not Found",
            "not found: the routes are /, /run, /jobs, /jobs/ID, /jobs/ID/events, /jobs/ID/input, /jobs/ID/signal, /jobs/ID/resize, /jobs/events, /metrics and /healthz",
        );
    };
    let origin = auth::check_origin(
        head.origin.as_deref(),
        head.host.as_deref(),
        &hosts,
        config.cors_origin.as_deref(),
    );
    let cors = match &origin {
        OriginCheck::Cors(allow) => vec![
            ("Access-Control-Allow-Origin", allow.clone()),
            ("Vary", "Origin".to_owned()),
        ],
        OriginCheck::Own | OriginCheck::Refused => Vec::new(),
    };
    if let Some(refusal) = method_check(head, route, &origin, config) {
        return with_cors(refusal, cors);
    }
    if origin == OriginCheck::Refused {
        return text(403, "Forbidden", "forbidden: cross-origin request refused");
    }
    if route == Route::Healthz {
        // Host and Origin are checked as for every request (contract §4);
        // the token and Fetch Metadata are not asked of `/healthz`.
        return with_cors(healthz(head), cors);
    }
    if route != Route::Page && auth::is_foreign_without_origin(head) {
        return text(
            403,
            "Forbidden",
            "forbidden: a request from another site or port without an allowed Origin",
        );
    }
    let query = match Query::parse(head.query()) {
        Ok(query) => query,
        Err(err) => return with_cors(text(400, "Bad Request", &format!("bad request: {err}")), cors),
    };
    let refusal_cors = cors.clone();
    let decision = match route {
        Route::Page => page(cors),
        Route::Run => run(head, &query, config, cors),
        Route::Healthz => healthz(head),
        Route::Jobs | Route::Job(_) | Route::JobEvents(_) | Route::AllEvents | Route::JobControl(..) => {
            jobs(head, route, &query, config, cors)
        }
        Route::Metrics => match gate(head, &query, config) {
            Some(refusal) => refusal,
            None => Decision::Metrics(cors),
        },
    };
    with_cors(decision, refusal_cors)
}

/// `decision` with the CORS headers added when it is a fixed reply that
/// lacks them: a refusal (`400`, `401`, `405`, `413`…) to an allowed foreign
/// origin carries `Access-Control-Allow-Origin` like any other answer
/// (contract §4), or its page sees a network error instead of the status.
fn with_cors(decision: Decision, cors: Vec<(&'static str, String)>) -> Decision {
    match decision {
        Decision::Reply(reply)
            if !cors.is_empty()
                && !reply
                    .headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("Access-Control-Allow-Origin")) =>
        {
            Decision::Reply(with_headers(reply, cors))
        }
        other => other,
    }
}

fn format_of(query: &Query) -> Result<Format, Decision> {
    match query.get("format").map(Format::from_query) {
        None => Ok(Format::Json),
        Some(Some(format)) => Ok(format),
        Some(None) => Err(text(400, "Bad Request", "bad request: format must be json or raw")),
    }
}

/// The argv of the `command` parameter, split (or `sh -c` under `--shell`);
/// `path` names the route in the message for a missing parameter.
fn command(query: &Query, config: &Config, path: &str) -> Result<Vec<String>, Decision> {
    let Some(line) = query.get("command") else {
        return Err(text(
            400,
            "Bad Request",
            &format!("bad request: missing the command parameter ({path}?command=...)"),
        ));
    };
    let split = if config.shell {
        shell_argv(line)
    } else {
        argv::command(line)
    };
    split.map_err(|err| text(400, "Bad Request", &format!("bad request: {err}")))
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
fn method_check(head: &Head, route: Route<'_>, origin: &OriginCheck, config: &Config) -> Option<Decision> {
    match (route, &head.method) {
        (Route::Page | Route::Healthz | Route::Metrics, Method::Get | Method::Head) | (Route::Run, Method::Get) => None,
        (Route::Run, Method::Options) if config.cors_origin.is_some() => Some(preflight(origin)),
        (Route::Run, _) if config.cors_origin.is_some() => Some(method_not_allowed("GET, OPTIONS")),
        (Route::Run, _) => Some(method_not_allowed("GET")),
        (Route::Page | Route::Healthz | Route::Metrics, _) => Some(method_not_allowed("GET, HEAD")),
        (Route::Jobs | Route::Job(_), Method::Get | Method::Head)
        | (Route::JobEvents(_) | Route::AllEvents, Method::Get) => None,
        (Route::Jobs, Method::Other(m)) if m == "POST" => None,
        (Route::Job(_), Method::Other(m)) if m == "DELETE" => None,
        (Route::JobControl(..), Method::Other(m)) if m == "POST" => None,
        (
            Route::Jobs | Route::Job(_) | Route::JobEvents(_) | Route::AllEvents | Route::JobControl(..),
            Method::Options,
        ) if config.cors_origin.is_some() => Some(preflight(origin)),
        (Route::Jobs, _) => Some(method_not_allowed("GET, HEAD, POST")),
        (Route::Job(_), _) => Some(method_not_allowed("GET, HEAD, DELETE")),
        (Route::JobControl(..), _) => Some(method_not_allowed("POST")),
        (Route::JobEvents(_) | Route::AllEvents, _) => Some(method_not_allowed("GET")),
    }
}

fn preflight(origin: &OriginCheck) -> Decision {
    match origin {
        OriginCheck::Cors(allow) => Decision::Reply(
            Reply::empty(204, "No Content")
                .header("Access-Control-Allow-Origin", allow.clone())
                .header("Vary", "Origin")
                .header("Access-Control-Allow-Methods", "GET, POST, DELETE")
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

/// `401`, naming the scheme the token goes in: RFC 9110 §15.5.2 asks every
/// `401` for a `WWW-Authenticate` challenge, and HTTP clients look for it.
/// `Bearer` makes no browser show a password dialog.
fn unauthorized() -> Decision {
    Decision::Reply(
        Reply::text(
            401,
            "Unauthorized",
            "unauthorized: open the URL with ?token=... that ssecommander printed at start, or send Authorization: Bearer TOKEN",
        )
        .header("WWW-Authenticate", "Bearer"),
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

fn run(head: &Head, query: &Query, config: &Config, cors: Vec<(&'static str, String)>) -> Decision {
    if let Some(refusal) = gate(head, query, config) {
        return refusal;
    }
    if head.last_event_id.is_some() || query.get("last-event-id").is_some() {
        // An EventSource reconnecting: never run the command again; 204 tells
        // it to stop reconnecting (contract §3.8). The query form too (as
        // on the job routes): polyfills that cannot set the header send it.
        return Decision::Reply(with_headers(Reply::empty(204, "No Content"), cors));
    }
    let format = match format_of(query) {
        Ok(format) => format,
        Err(refusal) => return refusal,
    };
    let streams = match streams_of(query, config, false) {
        Ok(streams) => streams,
        Err(refusal) => return refusal,
    };
    match command(query, config, "/run") {
        Ok(argv) => Decision::Run(RunRequest {
            argv,
            format,
            streams,
            headers: cors,
        }),
        Err(refusal) => refusal,
    }
}

/// A `0`/`1` query flag: `None` when absent.
fn flag(query: &Query, name: &str) -> Result<Option<bool>, Decision> {
    match query.get(name) {
        None => Ok(None),
        Some("1") => Ok(Some(true)),
        Some("0") => Ok(Some(false)),
        Some(_) => Err(text(400, "Bad Request", &format!("bad request: {name} must be 0 or 1"))),
    }
}

/// Pipes or a terminal (`pty`, `--pty` as the default; `cols`, `rows`),
/// and an open stdin (`stdin=1`, only for a job; a job on a terminal always
/// has one) — contract §10.
fn streams_of(query: &Query, config: &Config, job: bool) -> Result<Streams, Decision> {
    let on_terminal = flag(query, "pty")?.unwrap_or(config.pty);
    let Some(size) = pty::Size::from_query(query.get("cols"), query.get("rows")) else {
        return Err(text(
            400,
            "Bad Request",
            &format!(
                "bad request: cols and rows must be whole numbers from 1 to {}",
                pty::MAX_SIDE
            ),
        ));
    };
    let stdin = flag(query, "stdin")?.unwrap_or(false);
    if stdin && !job {
        return Err(text(
            400,
            "Bad Request",
            "bad request: stdin=1 is for jobs (POST /jobs), whose input is POST /jobs/ID/input",
        ));
    }
    Ok(Streams {
        terminal: on_terminal.then_some(size),
        stdin: stdin || (job && on_terminal),
    })
}

/// What every command route checks before its own input: the token, then
/// that no body came (a body would leave the framing unknown).
fn gate(head: &Head, query: &Query, config: &Config) -> Option<Decision> {
    if !authorized(head, query, config) {
        return Some(unauthorized());
    }
    if head.has_body {
        let err = HttpError::BodyNotAllowed;
        return Some(Decision::Reply(
            Reply::text(413, err.status().1, &err.to_string()).closing(),
        ));
    }
    None
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
            Decision::Run(_) | Decision::Job(_) | Decision::Metrics(_) => 200,
        }
    }

    #[test]
    fn metrics_has_the_gate_of_the_token_routes() {
        let c = config();
        let get = |rest: &str| status(&format!("GET /metrics{rest}"), &c);
        assert_eq!(get(" HTTP/1.1\r\nHost: localhost\r\n\r\n"), 401);
        assert_eq!(get("?token=nope HTTP/1.1\r\nHost: localhost\r\n\r\n"), 401);
        assert_eq!(get("?token=T0k HTTP/1.1\r\nHost: localhost\r\n\r\n"), 200);
        assert_eq!(get(" HTTP/1.1\r\nHost: evil\r\nAuthorization: Bearer T0k\r\n\r\n"), 403);
        assert_eq!(
            get(" HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer T0k\r\nSec-Fetch-Site: cross-site\r\n\r\n"),
            403
        );
        let auth = "Host: localhost\r\nAuthorization: Bearer T0k\r\n\r\n";
        assert!(matches!(
            decide(&head(&format!("HEAD /metrics HTTP/1.1\r\n{auth}")), &c),
            Decision::Metrics(_)
        ));
        assert_eq!(status(&format!("POST /metrics HTTP/1.1\r\n{auth}"), &c), 405);
    }

    fn job_action(req: &str) -> Option<JobAction> {
        match decide(&head(req), &config()) {
            Decision::Job(request) => Some(request.action),
            _ => None,
        }
    }

    #[test]
    fn job_routes() {
        let auth = "Host: localhost\r\nAuthorization: Bearer T0k\r\n\r\n";
        assert!(matches!(
            job_action(&format!("POST /jobs?command=ls%20-l HTTP/1.1\r\n{auth}")),
            Some(JobAction::Start(run)) if run.argv == ["ls", "-l"]
        ));
        assert_eq!(
            job_action(&format!("GET /jobs HTTP/1.1\r\n{auth}")),
            Some(JobAction::List)
        );
        assert_eq!(
            job_action(&format!("GET /jobs/a-B_9 HTTP/1.1\r\n{auth}")),
            Some(JobAction::Show("a-B_9".into()))
        );
        assert_eq!(
            job_action(&format!("DELETE /jobs/x HTTP/1.1\r\n{auth}")),
            Some(JobAction::Stop("x".into()))
        );
        assert_eq!(
            job_action(&format!(
                "GET /jobs/x/events?format=raw&last-event-id=7 HTTP/1.1\r\n{auth}"
            )),
            Some(JobAction::Watch {
                id: "x".into(),
                format: Format::Raw,
                after: Some(7)
            })
        );
        assert_eq!(
            job_action(&format!(
                "GET /jobs/x/events?last-event-id=7 HTTP/1.1\r\nLast-Event-ID: 9\r\n{auth}"
            )),
            Some(JobAction::Watch {
                id: "x".into(),
                format: Format::Json,
                after: Some(9)
            })
        );
        let c = config();
        assert_eq!(
            status(
                &format!("GET /jobs/x/events HTTP/1.1\r\nLast-Event-ID: abc\r\n{auth}"),
                &c
            ),
            400
        );
        assert_eq!(status(&format!("POST /jobs?command=%27 HTTP/1.1\r\n{auth}"), &c), 400);
        assert_eq!(status(&format!("PUT /jobs HTTP/1.1\r\n{auth}"), &c), 405);
        assert_eq!(status(&format!("POST /jobs/x HTTP/1.1\r\n{auth}"), &c), 405);
        assert_eq!(status("GET /jobs HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 401);
        assert_eq!(status(&format!("GET /jobs/a.b HTTP/1.1\r\n{auth}"), &c), 404);
        assert_eq!(status(&format!("GET /jobs/x/y HTTP/1.1\r\n{auth}"), &c), 404);
    }

    #[test]
    fn gates_in_order() {
        let c = config();
        assert_eq!(status("GET /healthz HTTP/1.1\r\nHost: evil\r\n\r\n", &c), 403);
        assert_eq!(status("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", &c), 200);
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
                streams: Streams::default(),
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
