//! The job routes (contract §7, §10, §11): `/jobs`, `/jobs/ID`, its events,
//! input, signal and resize, and `/jobs/events` — checked as far as they can
//! be without the jobs, which the server holds.

use super::{
    authorized, command, flag, format_of, gate, is_job_id, streams_of, text, unauthorized, with_headers, Decision,
    Route, RunRequest,
};
use crate::cli::Config;
use crate::http::body::BodyError;
use crate::http::query::Query;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::input;
use crate::sse::Format;
use crate::sys::pty;

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
pub(super) enum Control {
    Input,
    Signal,
    Resize,
}

/// The job routes: token, body, then the route's own input.
pub(super) fn jobs(
    head: &Head,
    route: Route<'_>,
    query: &Query,
    config: &Config,
    cors: Vec<(&'static str, String)>,
) -> Decision {
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
