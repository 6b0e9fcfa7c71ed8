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
use crate::child::Streams;
use crate::cli::Config;
use crate::http::body::BodyError;
use crate::http::query::Query;
use crate::http::request::{Head, HttpError, Method};
use crate::http::response::Reply;
use crate::input;
use crate::sse::Format;
use crate::sys::pty;

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

/// A request about jobs, checked as far as it can be without the jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// What to do.
    pub action: JobAction,
    /// Extra response headers (CORS).
    pub headers: Vec<(&'static str, String)>,
}

/// The job routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// `POST /jobs?command=…`: start a job (the request's `format` is unused).
    Start(RunRequest),
    /// `GET /jobs`.
    List,
    /// `GET /jobs/ID`.
    Show(String),
    /// `GET /jobs/ID/events`: watch, from event `after + 1` on a resume.
    Watch {
        /// The job id.
        id: String,
        /// How this viewer wants events encoded.
        format: Format,
        /// `Last-Event-ID` (header, else `last-event-id=`): the last event
        /// the client has.
        after: Option<u64>,
    },
    /// `DELETE /jobs/ID`.
    Stop(String),
    /// `GET /jobs/events[?ids=…]` (contract §11): one stream for many jobs.
    WatchMany {
        /// The jobs named (1 to [`crate::mux::MAX_IDS`]); `None`: every job,
        /// those started later included.
        ids: Option<Vec<String>>,
        /// `Last-Event-ID` (header, else `last-event-id=`): the last global
        /// number the client has.
        after: Option<u64>,
    },
    /// `POST /jobs/ID/signal?name=NAME` (contract §10.3).
    Signal {
        /// The job id.
        id: String,
        /// Which of [`JOB_SIGNALS`] (its index).
        signal: usize,
    },
    /// `POST /jobs/ID/input[?eof=1]` (contract §10.2): the body is read
    /// next, then written to the command's input.
    Input {
        /// The job id.
        id: String,
        /// End the input after the body.
        eof: bool,
    },
    /// `POST /jobs/ID/resize?cols=C&rows=R` (contract §10.4).
    Resize {
        /// The job id.
        id: String,
        /// The new size.
        size: pty::Size,
    },
}

/// The signals `POST /jobs/ID/signal` sends, by the names it takes
/// (contract §10.3): those a user at a terminal sends (Ctrl-C, Ctrl-\,
/// Ctrl-Z and `fg`, a hang-up, a resize) and those programs define for
/// themselves. The order is that of the metrics' labels.
pub const JOB_SIGNALS: [(&str, libc::c_int); 10] = [
    ("INT", libc::SIGINT),
    ("TERM", libc::SIGTERM),
    ("HUP", libc::SIGHUP),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("WINCH", libc::SIGWINCH),
];

/// What `POST /jobs/ID/…` acts on besides the job itself (contract §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Input,
    Signal,
    Resize,
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
        Route::Jobs | Route::Job(_) | Route::JobEvents(_) | Route::AllEvents | Route::JobControl(..) => {
            jobs(head, route, &query, config, cors)
        }
        Route::Metrics => match gate(head, &query, config) {
            Some(refusal) => refusal,
            None => Decision::Metrics(cors),
        },
    }
}

/// The job routes: token, body, then the route's own input.
fn jobs(head: &Head, route: Route<'_>, query: &Query, config: &Config, cors: Vec<(&'static str, String)>) -> Decision {
    if let Route::JobControl(id, Control::Input) = route {
        return input(head, id, query, config, cors);
    }
    if let Some(refusal) = gate(head, query, config) {
        return refusal;
    }
    let action = match (route, head.method.as_str()) {
        (Route::Jobs, "POST") => match (command(query, config, "/jobs"), streams_of(query, config, true)) {
            (Ok(argv), Ok(streams)) => JobAction::Start(RunRequest {
                argv,
                format: Format::Json,
                streams,
                headers: Vec::new(),
            }),
            (Err(refusal), _) | (_, Err(refusal)) => return refusal,
        },
        (Route::Jobs, _) => JobAction::List,
        (Route::Job(id), "DELETE") => JobAction::Stop(id.to_owned()),
        (Route::JobControl(id, control), _) => match control_of(id, control, query) {
            Ok(action) => action,
            Err(refusal) => return refusal,
        },
        (Route::Job(id), _) => JobAction::Show(id.to_owned()),
        (Route::JobEvents(id), _) => {
            let format = match format_of(query) {
                Ok(format) => format,
                Err(refusal) => return refusal,
            };
            let after = match last_event_id(head, query, "the number of an event of this job") {
                Ok(after) => after,
                Err(refusal) => return refusal,
            };
            JobAction::Watch {
                id: id.to_owned(),
                format,
                after,
            }
        }
        (Route::AllEvents, _) => match watch_many(head, query) {
            Ok(action) => action,
            Err(refusal) => return refusal,
        },
        _ => return text(404, "Not Found", "not found"),
    };
    Decision::Job(JobRequest { action, headers: cors })
}

/// `Last-Event-ID` (the header, else `last-event-id=`), a number; `what`
/// says which in the refusal.
fn last_event_id(head: &Head, query: &Query, what: &str) -> Result<Option<u64>, Decision> {
    let given = head.last_event_id.as_deref().or(query.get("last-event-id"));
    match given.map(event_number) {
        None => Ok(None),
        Some(Some(n)) => Ok(Some(n)),
        Some(None) => Err(text(
            400,
            "Bad Request",
            &format!("bad request: Last-Event-ID must be {what}"),
        )),
    }
}

/// `GET /jobs/events[?ids=ID,…]` (contract §11.1): JSON only; `ids` names
/// 1 to 64 jobs, each id once.
fn watch_many(head: &Head, query: &Query) -> Result<JobAction, Decision> {
    if format_of(query)? != Format::Json {
        return Err(text(
            400,
            "Bad Request",
            "bad request: a stream of many jobs is JSON only (no format=raw)",
        ));
    }
    let after = last_event_id(head, query, "a global event number from this stream")?;
    let ids = match query.get("ids") {
        None => None,
        Some(list) => {
            let mut ids: Vec<String> = Vec::new();
            for id in list.split(',').map(str::trim) {
                if !is_job_id(id) {
                    return Err(text(
                        400,
                        "Bad Request",
                        "bad request: ids must be job ids, separated by commas",
                    ));
                }
                if !ids.iter().any(|seen| seen == id) {
                    ids.push(id.to_owned());
                }
            }
            if ids.len() > crate::mux::MAX_IDS {
                return Err(text(
                    400,
                    "Bad Request",
                    &format!("bad request: ids names at most {} jobs", crate::mux::MAX_IDS),
                ));
            }
            Some(ids)
        }
    };
    Ok(JobAction::WatchMany { ids, after })
}

/// `POST /jobs/ID/input`: the token, a body of at most
/// [`input::MAX_BODY`] (`413` at once for a longer `Content-Length`; a
/// chunked one is counted as it comes), `eof`.
fn input(head: &Head, id: &str, query: &Query, config: &Config, cors: Vec<(&'static str, String)>) -> Decision {
    if !authorized(head, query, config) {
        return unauthorized();
    }
    if head.body.content_length.is_some_and(|n| n > input::MAX_BODY as u64) {
        let err = BodyError::TooLarge(input::MAX_BODY);
        return Decision::Reply(with_headers(
            Reply::text(413, err.status().1, &err.to_string()).closing(),
            cors,
        ));
    }
    match flag(query, "eof") {
        Ok(eof) => Decision::Job(JobRequest {
            action: JobAction::Input {
                id: id.to_owned(),
                eof: eof.unwrap_or(false),
            },
            headers: cors,
        }),
        Err(refusal) => refusal,
    }
}

/// `/jobs/ID/signal` and `/jobs/ID/resize`: the name or the size.
fn control_of(id: &str, control: Control, query: &Query) -> Result<JobAction, Decision> {
    let id = id.to_owned();
    match control {
        Control::Input => Ok(JobAction::Input { id, eof: false }),
        Control::Signal => {
            let name = query.get("name").unwrap_or("");
            match JOB_SIGNALS.iter().position(|(known, _)| *known == name) {
                Some(signal) => Ok(JobAction::Signal { id, signal }),
                None => Err(text(
                    400,
                    "Bad Request",
                    "bad request: name must be one of INT, TERM, HUP, QUIT, KILL, USR1, USR2, CONT, STOP, WINCH",
                )),
            }
        }
        Control::Resize => match (query.get("cols"), query.get("rows")) {
            (Some(cols), Some(rows)) => match pty::Size::from_query(Some(cols), Some(rows)) {
                Some(size) => Ok(JobAction::Resize { id, size }),
                None => Err(bad_size()),
            },
            _ => Err(text(400, "Bad Request", "bad request: resize needs cols and rows")),
        },
    }
}

fn bad_size() -> Decision {
    text(
        400,
        "Bad Request",
        &format!(
            "bad request: cols and rows must be whole numbers from 1 to {}",
            pty::MAX_SIDE
        ),
    )
}

/// An event number: decimal digits only (`u64::from_str` would also take a
/// leading `+`), blanks around it ignored.
fn event_number(value: &str) -> Option<u64> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
        (Route::Page | Route::Metrics, Method::Get | Method::Head) | (Route::Run, Method::Get) => None,
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
        .header("Content-Security-Policy", page_csp());
    Decision::Reply(with_headers(reply, cors))
}

/// The page's Content-Security-Policy: its one inline script and its one
/// inline style block are allowed by their SHA-256 hashes, nothing else. The
/// page keeps the token in `sessionStorage`, which any script it ran could
/// read; so no injected markup may run script, not even inline.
fn page_csp() -> String {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(inline_block(PAGE, "script")),
            csp_hash(inline_block(PAGE, "style")),
        )
    })
    .clone()
}

/// The text between `<tag>` and `</tag>`, as the browser hashes it.
fn inline_block<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).map_or(0, |i| i + open.len());
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map_or(page.len(), |i| start + i);
    &page[start..end]
}

/// A CSP hash source: `sha256-` and the digest in standard base64.
fn csp_hash(text: &str) -> String {
    format!("sha256-{}", digest::base64(&digest::sha256(text.as_bytes())))
}

fn run(head: &Head, query: &Query, config: &Config, cors: Vec<(&'static str, String)>) -> Decision {
    if let Some(refusal) = gate(head, query, config) {
        return refusal;
    }
    if head.last_event_id.is_some() {
        // An EventSource reconnecting: never run the command again; 204 tells
        // it to stop reconnecting (contract §3.8).
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

/// SHA-256 (FIPS 180-4) and standard base64, only for the page's CSP hashes:
/// the runtime dependencies do not include a hash crate.
mod digest {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> [u8; 32] {
        let mut h: [u32; 8] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        ];
        let mut message = bytes.to_vec();
        message.push(0x80);
        while message.len() % 64 != 56 {
            message.push(0);
        }
        message.extend_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
        for block in message.chunks_exact(64) {
            compress(&mut h, block);
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(h: &mut [u32; 8], block: &[u8]) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (slot, value) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(value);
        }
    }

    /// Standard base64 with padding, as CSP hash sources are written.
    pub fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for group in bytes.chunks(3) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= group.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, Parsed};

    #[test]
    fn sha256_and_base64_known_values() {
        assert_eq!(
            digest::base64(&digest::sha256(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            digest::base64(&digest::sha256(b"abc")),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        let long = [b'a'; 1000];
        assert_eq!(
            digest::base64(&digest::sha256(&long)),
            "Qe3s5C1j6Nm/UVqbppMuHCDLyfWl0TRkWttdsblzfqM="
        );
        assert_eq!(digest::base64(b"fo"), "Zm8=");
        assert_eq!(digest::base64(b"f"), "Zg==");
    }

    #[test]
    fn page_csp_allows_only_its_own_inline_blocks() {
        let csp = page_csp();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let script = inline_block(PAGE, "script");
        assert!(
            script.contains("sessionStorage") && !script.contains("</script"),
            "{script:.80}"
        );
        assert!(csp.contains(&format!("script-src '{}'", csp_hash(script))), "{csp}");
    }

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
