//! Jobs (CONTRACT §7): requests, the job JSON, and a strict parser of a
//! job's event stream (a `retry:` line first, `gap` events, ids starting
//! anywhere).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

/// `POST /jobs?command=CMD` (no body, no Content-Length) on a new connection.
pub fn job_post(s: &Server, command: &str) -> Response {
    job_post_with(s, command, "")
}

/// [`job_post`] with `query` appended to the target (e.g. `&pty=1`).
fn job_post_with(s: &Server, command: &str, query: &str) -> Response {
    s.request(&s.req("POST", &format!("/jobs?command={}{}", pct(command), query), &[]))
}

/// Starts a job that must be accepted (201); its JSON (checked by [`check_job_json`]).
pub fn job_start(s: &Server, command: &str) -> serde_json::Value {
    job_start_with(s, command, "")
}

/// Starts a job of `command` with `query` appended (e.g. `&stdin=1`), which
/// must be accepted (201); its id.
pub fn job_start_id(s: &Server, command: &str, query: &str) -> String {
    let v = job_start_with(s, command, query);
    v["id"].as_str().expect("checked: id is a string").to_owned()
}

/// [`job_start`] with `query` appended to the target.
fn job_start_with(s: &Server, command: &str, query: &str) -> serde_json::Value {
    let r = job_post_with(s, command, query);
    r.assert_status(201, &format!("POST /jobs {:?}", command));
    let v = job_json_of(&r);
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/jobs/{}", id).as_str()),
        "Location of the 201:\n{}",
        r.dump()
    );
    v
}

/// The body of a JSON answer, checking `Content-Type: application/json`.
pub fn json_body(r: &Response) -> serde_json::Value {
    let ct = r.header("content-type").unwrap_or("");
    assert_eq!(
        ct.split(';').next().unwrap_or("").trim(),
        "application/json",
        "Content-Type of a jobs answer (§7.1):\n{}",
        r.dump()
    );
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({}):\n{}", e, r.dump()))
}

/// The job JSON of a 200/201/202 answer, checked.
pub fn job_json_of(r: &Response) -> serde_json::Value {
    let v = json_body(r);
    check_job_json(&v);
    v
}

/// Is `s` a job id: 16 base64url characters, after `PREFIX-` if given.
pub fn is_job_id(s: &str, instance: Option<&str>) -> bool {
    let rest = match instance {
        Some(p) => match s.strip_prefix(p).and_then(|r| r.strip_prefix('-')) {
            Some(r) => r,
            None => return false,
        },
        None => s,
    };
    rest.len() == 16
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// §7.2: exactly the fields of one job, each of the right type and
/// consistent with its state.
pub fn check_job_json(v: &serde_json::Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("job is not an object: {}", v));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "argv",
            "bytes",
            "ended_ms",
            "events",
            "exit",
            "id",
            "pid",
            "pty",
            "size",
            "started_ms",
            "state",
            "stdin",
            "viewers"
        ],
        "job fields (§7.2, §10): {}",
        v
    );
    assert!(v["id"].is_string(), "id: {}", v);
    // §10.1: `size` is [cols, rows] on a terminal, null on pipes.
    match v["pty"].as_bool() {
        Some(true) => assert!(
            v["size"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|n| n.as_u64().is_some_and(|n| (1..=1000).contains(&n)))),
            "size of a job on a terminal: {}",
            v
        ),
        Some(false) => assert!(v["size"].is_null(), "size of a job on pipes: {}", v),
        None => panic!("pty is not a boolean: {}", v),
    }
    assert!(
        ["open", "closed", "none"].contains(&v["stdin"].as_str().unwrap_or("")),
        "stdin (§10.2): {}",
        v
    );
    assert!(
        v["argv"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x.is_string())),
        "argv: {}",
        v
    );
    let state = v["state"].as_str().unwrap_or_else(|| panic!("state: {}", v));
    assert!(["running", "exited", "failed"].contains(&state), "state: {}", v);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let started = v["started_ms"].as_u64().unwrap_or_else(|| panic!("started_ms: {}", v));
    assert!(
        started + 600_000 > now_ms && started <= now_ms + 1000,
        "started_ms {} is not a recent unix time in ms (now {})",
        started,
        now_ms
    );
    for k in ["viewers", "events", "bytes"] {
        assert!(v[k].is_u64(), "{} not a count: {}", k, v);
    }
    match state {
        "running" => {
            assert!(v["pid"].is_u64(), "a running job has a pid: {}", v);
            assert!(v["ended_ms"].is_null() && v["exit"].is_null(), "running: {}", v);
        }
        "exited" => {
            let ended = v["ended_ms"]
                .as_u64()
                .unwrap_or_else(|| panic!("ended_ms of an exited job: {}", v));
            assert!(ended >= started && ended <= now_ms + 1000, "ended_ms: {}", v);
            assert_eq!(v["exit"]["type"], "exit", "exit of an exited job: {}", v);
        }
        _ => {
            assert!(v["pid"].is_null(), "a failed job has no pid: {}", v);
            assert!(v["exit"].is_null(), "a failed job has no exit event: {}", v);
            assert!(v["ended_ms"].is_null() || v["ended_ms"].is_u64(), "ended_ms: {}", v);
        }
    }
}

/// `GET /jobs/ID`: the response (any status).
pub fn job_get(s: &Server, id: &str) -> Response {
    s.get(&format!("/jobs/{}", id))
}

/// `GET /jobs/ID` that must be 200; the checked job JSON.
pub fn job_info(s: &Server, id: &str) -> serde_json::Value {
    let r = job_get(s, id);
    r.assert_status(200, &format!("GET /jobs/{}", id));
    job_json_of(&r)
}

/// `GET /jobs`: the list, each job checked.
pub fn job_list(s: &Server) -> Vec<serde_json::Value> {
    let r = s.get("/jobs");
    r.assert_status(200, "GET /jobs");
    let v = json_body(&r);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("GET /jobs is not an object: {}", v));
    assert_eq!(obj.len(), 1, "GET /jobs has only `jobs`: {}", v);
    let jobs = v["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("jobs is not a list: {}", v))
        .clone();
    for j in &jobs {
        check_job_json(j);
    }
    jobs
}

/// Waits until the job's state is not `running`; its JSON then.
pub fn job_wait_ended(s: &Server, id: &str, within: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = poll_until(within, || {
        last = job_info(s, id);
        last["state"] != "running"
    });
    assert!(ok, "job {} still running after {:?}: {}", id, within, last);
    last
}

/// DELETE /jobs/ID on a new connection.
pub fn job_delete(s: &Server, id: &str) -> Response {
    s.request(&s.req("DELETE", &format!("/jobs/{}", id), &[]))
}

/// One item of a job's stream.
#[derive(Debug, Clone)]
pub enum JobItem {
    /// The `retry:` value.
    Retry(u64),
    Event(Event),
    /// Comment text after `:`.
    Comment(String),
}

/// A strict incremental parser of a job's event stream (§7.3): like
/// [`SseParser`], plus a `retry:` block, the `gap` event, and ids that start
/// at `first` (1, or N+1 on a resume) and then go up by one, a `gap` event
/// carrying the last id it covers.
pub struct JobSse {
    lines: SseLines,
    fields: SseFields,
    retry: Option<u64>,
    in_block: bool,
    /// The id the next event must have (or a gap must start at).
    pub next: u64,
}

impl JobSse {
    pub fn new(first: u64) -> JobSse {
        JobSse {
            lines: SseLines::default(),
            fields: SseFields::default(),
            retry: None,
            in_block: false,
            next: first,
        }
    }

    fn context(&self) -> String {
        self.lines.context()
    }

    /// Feeds decoded body bytes; the items they complete.
    pub fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<JobItem> {
        let lines = self.lines.split(bytes);
        lines.iter().filter_map(|line| self.on_line(line, at)).collect()
    }

    fn on_line(&mut self, line: &SseLine, at: Instant) -> Option<JobItem> {
        let (field, value) = match line {
            SseLine::Blank => return self.dispatch(at),
            SseLine::Comment(c) => {
                assert!(!self.in_block, "comment inside an event: {:?}\n{}", c, self.context());
                return Some(JobItem::Comment(c.clone()));
            }
            SseLine::Field(field, value) => (field, value),
        };
        self.in_block = true;
        if field == "retry" {
            assert!(self.retry.is_none(), "two retry lines\n{}", self.context());
            self.retry = Some(value.parse().unwrap_or_else(|_| panic!("retry {:?}", value)));
        } else if !self
            .fields
            .take(field, value, &["stdout", "stderr", "err", "exit", "gap"], &self.lines)
        {
            panic!("unknown SSE field {:?} (value {:?})\n{}", field, value, self.context());
        }
        None
    }

    fn dispatch(&mut self, at: Instant) -> Option<JobItem> {
        if !self.in_block {
            return None;
        }
        self.in_block = false;
        if let Some(r) = self.retry.take() {
            assert!(
                self.fields.is_empty(),
                "retry line mixed into an event\n{}",
                self.context()
            );
            return Some(JobItem::Retry(r));
        }
        let (id, event, data) = self.fields.finish(&self.lines);
        let ev = Event {
            id,
            event,
            data: data.join("\n"),
            data_lines: data,
            at,
        };
        if ev.event == "gap" {
            let (from, to) = gap_of(&ev);
            assert_eq!(
                from,
                self.next,
                "gap must start at the id expected next\n{}",
                self.context()
            );
            assert!(to >= from && id == to, "gap id must be its `to`: {:?}", ev);
        } else {
            assert_eq!(
                id,
                self.next,
                "ids must go up by one (§7.3): expected {}, got {}\n{}",
                self.next,
                id,
                self.context()
            );
        }
        self.next = id + 1;
        Some(JobItem::Event(ev))
    }

    /// Asserts the stream stopped between events.
    pub fn finish(&self) {
        assert!(
            self.lines.is_empty() && !self.in_block,
            "stream ended inside an event: {:?}\n{}",
            self.lines.unfinished(),
            self.context()
        );
    }
}

/// `(from, to)` of a `gap` event, checking its data is exactly
/// `{"type":"gap","from":F,"to":T}`.
pub fn gap_of(ev: &Event) -> (u64, u64) {
    let v = json(ev);
    let obj = v.as_object().unwrap_or_else(|| panic!("gap data: {}", ev.data));
    assert_eq!(obj.len(), 3, "gap data has type, from, to only: {}", ev.data);
    assert_eq!(v["type"], "gap", "gap data: {}", ev.data);
    let from = v["from"].as_u64().unwrap_or_else(|| panic!("gap from: {}", ev.data));
    let to = v["to"].as_u64().unwrap_or_else(|| panic!("gap to: {}", ev.data));
    (from, to)
}

/// A whole job stream, read to its end.
#[derive(Debug)]
pub struct JobRun {
    pub resp: Response,
    pub items: Vec<JobItem>,
    pub events: Vec<Event>,
}

impl JobRun {
    /// Concatenated `out` of the json `stdout` events.
    pub fn stdout(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stdout")
            .map(out_text)
            .collect()
    }

    /// The end event (`exit`/`err`), checked to be last and decoded.
    pub fn end(&self) -> End {
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no events:\n{}", self.resp.body_str()));
        end_of(last)
    }

    /// The `gap` events.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.events.iter().filter(|e| e.event == "gap").map(gap_of).collect()
    }
}

/// The request head for `GET /jobs/ID/events` + `query` (e.g. `?format=raw`)
/// with `extra` headers.
pub fn job_events_req(s: &Server, id: &str, query: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    s.req("GET", &format!("/jobs/{}/events{}", id, query), extra)
}

/// Reads a job stream's head on `c` and checks it is a 200 event stream (§3.1).
pub fn job_stream_head(c: &mut Conn) -> Response {
    let head = c.read_head();
    if head.status != 200 {
        let mut rest = Vec::new();
        c.read_body_into(&head, &mut rest);
        panic!(
            "job events: expected 200, got:\n{}{}",
            head.raw_head,
            String::from_utf8_lossy(&rest)
        );
    }
    check_stream_head(&head);
    head
}

/// Reads a job stream (after its head) to its end: a `retry: 1000` block
/// first, then events with ids from `first` (§7.3), the last one `exit` or `err`.
pub fn job_read_stream(c: &mut Conn, mut resp: Response, first: u64) -> JobRun {
    let mut p = JobSse::new(first);
    let mut items = Vec::new();
    let mut decoded = Vec::new();
    c.read_body_with(&resp, |piece, at| {
        decoded.extend_from_slice(piece);
        items.extend(p.feed(piece, at));
        true
    });
    p.finish();
    resp.body = decoded;
    assert!(
        matches!(items.first(), Some(JobItem::Retry(1000))),
        "a job stream begins with `retry: 1000` (§7.3); body:\n{}",
        resp.body_str()
    );
    let events: Vec<Event> = items
        .iter()
        .filter_map(|i| {
            if let JobItem::Event(e) = i {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    let n = events.len();
    assert!(n > 0, "a job stream with no events:\n{}", resp.body_str());
    for (i, e) in events.iter().enumerate() {
        let is_end = e.event == "exit" || e.event == "err";
        assert_eq!(
            is_end,
            i + 1 == n,
            "exit/err exactly once, last; body:\n{}",
            resp.body_str()
        );
        assert!(
            e.event != "gap" || i == 0,
            "a gap only comes first; body:\n{}",
            resp.body_str()
        );
    }
    JobRun { resp, items, events }
}

/// Watches job `id` from `first` (sending `extra` headers and `query`) on a
/// new connection to its end.
pub fn job_watch(s: &Server, id: &str, query: &str, extra: &[(&str, &str)], first: u64) -> JobRun {
    let mut c = s.connect();
    c.send(&job_events_req(s, id, query, extra));
    let head = job_stream_head(&mut c);
    job_read_stream(&mut c, head, first)
}

/// The text of a job's `stdout` and `stderr` events, read from event 1 on a
/// new connection, and how it ended.
pub fn job_output(s: &Server, id: &str) -> (String, String, End) {
    let run = job_watch(s, id, "", &[], 1);
    let text = |kind: &str| run.events.iter().filter(|e| e.event == kind).map(out_text).collect();
    let end = end_of(run.events.last().expect("an end event"));
    (text("stdout"), text("stderr"), end)
}
