//! The record of a published job (contract §7): its id, what it ran, how it
//! is doing, its log of events and who is watching it. A record outlives
//! the command it describes, until it is forgotten (`--keep`,
//! `--keep-jobs`, `DELETE`).
//!
//! The running command itself is a [`crate::job::Job`] in the server's job
//! table; the record points at it while it runs. Viewers are connections
//! that pull from the log; the record only lists them so the server knows
//! whom to drive after the log grows.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::eventlog::EventLog;
use crate::sse::{self, Exit};
use crate::timer::Deadline;

/// Records made so far: the list's order, since ids are random and several
/// jobs can start in the same millisecond.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// Random bytes in a job id: 96 bits (contract §7.1), 16 base64url chars.
const ID_BYTES: usize = 12;

/// A new job id: 96 random bits in base64url, after `NAME-` with
/// `--instance NAME`.
pub fn new_id(instance: Option<&str>) -> io::Result<String> {
    let mut bytes = [0u8; ID_BYTES];
    crate::sys::getrandom(&mut bytes)?;
    let random = crate::auth::base64url(&bytes);
    Ok(match instance {
        Some(name) => format!("{name}-{random}"),
        None => random,
    })
}

/// Milliseconds since the Unix epoch, for `started_ms` and `ended_ms`.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How far a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its command runs as this entry of the server's job table.
    Running {
        /// The job table index.
        job: usize,
        /// The command's pid.
        pid: i32,
    },
    /// The command ended; its `exit` event is the last in the log.
    Exited {
        /// The pid it had.
        pid: i32,
    },
    /// The command could not start; `err` is the only event.
    Failed,
}

/// A job's standard input as `GET /jobs/ID` shows it (contract §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Bytes posted to `/jobs/ID/input` reach the command.
    Open,
    /// It was open, and ended: `eof=1`, the command closed it, or it ended.
    Closed,
    /// It never was: the command reads `/dev/null`.
    None,
}

impl Stdin {
    fn as_str(self) -> &'static str {
        match self {
            Stdin::Open => "open",
            Stdin::Closed => "closed",
            Stdin::None => "none",
        }
    }
}

/// A connection watching a job: its table index, and the slot of the
/// job's cursor in its multiplexed stream (0 on a stream of this job
/// alone). Kept here so the server's three looks at a viewer's cursor per
/// event (pacing, trim, note) go straight to it, not through a search by
/// record (callgrind, 64 jobs: about 100 instructions per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// The connection's table index.
    pub conn: usize,
    /// The job's cursor slot in the connection's [`crate::mux::Mux`].
    pub slot: usize,
}

/// One published job.
#[derive(Debug)]
pub struct Record {
    /// Its id (contract §7.1).
    pub id: String,
    /// What its events carry on a multiplexed stream (made once).
    pub tag: crate::sse::JobTag,
    argv: Vec<String>,
    /// Where it is.
    pub state: State,
    started_ms: u64,
    ended_ms: Option<u64>,
    exit: Option<Exit>,
    /// Its events.
    pub log: EventLog,
    /// Connections watching it, with where each keeps its place in it.
    pub viewers: Vec<Viewer>,
    /// Bytes of output the command wrote.
    pub bytes: u64,
    /// Forgotten (`DELETE`, `--keep`, `--keep-jobs`): no longer found by id,
    /// dropped once its last viewer leaves.
    pub forgotten: bool,
    /// When a finished job is forgotten (`--keep`).
    pub forget: Deadline,
    /// Order of finishing, to forget the oldest first (`--keep-jobs`).
    pub finished_seq: u64,
    /// Order of creation, for "newest first" (contract §7.2).
    created_seq: u64,
    /// The size of its terminal, when it runs on one (contract §10.1).
    pub terminal: Option<crate::sys::pty::Size>,
    /// Its standard input (contract §10.2).
    pub stdin: Stdin,
}

/// A multiplexed stream reads a job's events from its record's log.
impl crate::mux::JobLog for Record {
    #[inline]
    fn log(&self) -> &EventLog {
        &self.log
    }
}

impl Record {
    /// A record for `argv`, started now.
    pub fn new(id: String, argv: Vec<String>, state: State, log_limit: usize) -> Record {
        Record {
            tag: crate::sse::JobTag::new(&id),
            id,
            argv,
            state,
            started_ms: unix_ms(),
            ended_ms: None,
            exit: None,
            log: EventLog::new(log_limit),
            viewers: Vec::new(),
            bytes: 0,
            forgotten: false,
            forget: Deadline::default(),
            finished_seq: 0,
            created_seq: CREATED.fetch_add(1, Ordering::Relaxed),
            terminal: None,
            stdin: Stdin::None,
        }
    }

    /// True once the command has ended or never started.
    pub fn is_finished(&self) -> bool {
        !matches!(self.state, State::Running { .. })
    }

    /// The running command's job table index.
    pub fn job(&self) -> Option<usize> {
        match self.state {
            State::Running { job, .. } => Some(job),
            _ => None,
        }
    }

    /// The command ended with `exit` (already in the log).
    pub fn finish(&mut self, exit: Exit, seq: u64) {
        if let State::Running { pid, .. } = self.state {
            self.state = State::Exited { pid };
        }
        if self.stdin == Stdin::Open {
            self.stdin = Stdin::Closed;
        }
        self.exit = Some(exit);
        self.ended_ms = Some(unix_ms());
        self.finished_seq = seq;
    }

    /// The command never started (its `err` is already in the log).
    pub fn fail(&mut self, seq: u64) {
        self.state = State::Failed;
        if self.stdin == Stdin::Open {
            self.stdin = Stdin::Closed;
        }
        self.ended_ms = Some(self.started_ms);
        self.finished_seq = seq;
    }

    /// The first event some viewer still needs; the log keeps it and all
    /// after it. `next` gives a viewer's next event id.
    pub fn first_needed(&self, next: impl Fn(Viewer) -> Option<u64>) -> u64 {
        self.viewers
            .iter()
            .filter_map(|&viewer| next(viewer))
            .min()
            .unwrap_or_else(|| self.log.next_id())
    }

    /// The record as JSON (contract §7.2).
    pub fn json(&self) -> String {
        // Room for the usual object at once (a job's `job` event on a
        // multiplexed stream makes one too): growing it cost more than
        // filling it.
        let argv_len: usize = self.argv.iter().map(|word| word.len() + 3).sum();
        let mut out = String::with_capacity(320 + self.id.len() + argv_len);
        out.push_str("{\"id\":\"");
        sse::escape_json_into(&mut out, &self.id);
        out.push_str("\",\"argv\":[");
        for (i, word) in self.argv.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            sse::escape_json_into(&mut out, word);
            out.push('"');
        }
        let (state, pid) = match self.state {
            State::Running { pid, .. } => ("running", Some(pid)),
            State::Exited { pid } => ("exited", Some(pid)),
            State::Failed => ("failed", None),
        };
        out.push_str("],\"state\":\"");
        out.push_str(state);
        out.push_str("\",\"pid\":");
        push_opt(&mut out, pid.map(i64::from));
        out.push_str(",\"started_ms\":");
        push_u64(&mut out, self.started_ms);
        out.push_str(",\"ended_ms\":");
        push_opt(&mut out, self.ended_ms.and_then(|ms| i64::try_from(ms).ok()));
        out.push_str(",\"exit\":");
        match &self.exit {
            Some(exit) => out.push_str(&exit.json()),
            None => out.push_str("null"),
        }
        out.push_str(",\"viewers\":");
        push_u64(&mut out, self.viewers.len() as u64);
        out.push_str(",\"events\":");
        push_u64(&mut out, self.log.count());
        out.push_str(",\"bytes\":");
        push_u64(&mut out, self.bytes);
        match self.terminal {
            Some(size) => {
                out.push_str(",\"pty\":true,\"size\":[");
                push_u64(&mut out, u64::from(size.cols));
                out.push(',');
                push_u64(&mut out, u64::from(size.rows));
                out.push(']');
            }
            None => out.push_str(",\"pty\":false,\"size\":null"),
        }
        out.push_str(",\"stdin\":\"");
        out.push_str(self.stdin.as_str());
        out.push_str("\"}");
        out
    }
}

fn push_opt(out: &mut String, value: Option<i64>) {
    match value {
        Some(n) => {
            if n < 0 {
                out.push('-');
            }
            push_u64(out, n.unsigned_abs());
        }
        None => out.push_str("null"),
    }
}

/// Appends `n` in decimal, without the formatting machinery (`json` is
/// made for every job event of a multiplexed stream).
fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// `{"jobs":[…]}` of `records`, newest first (contract §7.2).
pub fn list_json<'a>(records: impl Iterator<Item = &'a Record>) -> String {
    let mut shown: Vec<&Record> = records.filter(|r| !r.forgotten).collect();
    shown.sort_by_key(|r| std::cmp::Reverse(r.created_seq));
    let mut out = String::from("{\"jobs\":[");
    for (i, record) in shown.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&record.json());
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_prefixed() {
        let a = new_id(None).expect("random");
        let b = new_id(Some("east")).expect("random");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(b.starts_with("east-") && b.len() == 21);
        assert_ne!(a, new_id(None).expect("random"));
    }

    #[test]
    fn json_of_a_record() {
        let mut r = Record::new(
            "abc".into(),
            vec!["echo".into(), "a\"b".into()],
            State::Running { job: 0, pid: 42 },
            1024,
        );
        let running = r.json();
        assert!(running.starts_with("{\"id\":\"abc\",\"argv\":[\"echo\",\"a\\\"b\"],\"state\":\"running\",\"pid\":42,"));
        assert!(running.ends_with(
            ",\"ended_ms\":null,\"exit\":null,\"viewers\":0,\"events\":0,\"bytes\":0,\"pty\":false,\"size\":null,\"stdin\":\"none\"}"
        ));
        r.terminal = Some(crate::sys::pty::Size { cols: 100, rows: 30 });
        r.stdin = Stdin::Open;
        assert!(r
            .json()
            .ends_with(",\"pty\":true,\"size\":[100,30],\"stdin\":\"open\"}"));
        r.finish(
            Exit {
                code: Some(3),
                signal: None,
                timed_out: false,
            },
            1,
        );
        assert!(r.json().contains("\"state\":\"exited\",\"pid\":42,"));
        assert!(r.json().contains("\"exit\":{\"type\":\"exit\",\"code\":3}"));
        assert!(r.json().ends_with(",\"stdin\":\"closed\"}"), "input ends with the job");
    }
}
