//! What `GET /metrics` reports (contract §8): plain integer counters,
//! bumped where the thing happens, rendered as Prometheus text exposition
//! format 0.0.4 on a scrape.
//!
//! The loop is one thread, so a counter is a `u64` and counting is one add:
//! no atomics, no locks, no allocation, and counters kept in arrays indexed
//! by small enums rather than maps. What a connection writes (bytes, events,
//! pauses) is counted in that connection's own [`Sent`], where the write
//! happens; the server folds it into [`Metrics`] when the connection closes,
//! and a scrape adds the open connections' counts. So no `&mut Metrics` is
//! passed down the write path and nothing reaches back up. Gauges are read
//! at scrape time. Rendering allocates, once per scrape.

use std::fmt::Write as _;

use crate::route::JOB_SIGNALS;
use crate::sse::EventName;

/// The content type of a scrape (contract §8).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Every status the server answers with, reported from the start (at 0) so
/// a rate over them is defined before the first one happens. Another status
/// is still counted, and reported once it has happened.
pub const KNOWN_STATUSES: [u16; 19] = [
    200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 409, 413, 414, 417, 431, 500, 501, 503, 505,
];

/// The statuses a counter can hold: a status is its own index.
const STATUS_SLOTS: usize = 600;

/// What one connection wrote to its socket, counted where it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes the kernel took: heads, bodies, events, heartbeats, chunk
    /// framing, all of it.
    pub bytes: u64,
    /// Events written or queued for the client, by [`EventName::index`].
    pub events: [u64; EventName::ALL.len()],
    /// Times a stream's socket took less than it was offered, so the rest
    /// waited in the connection's buffer (and the stream was paused) until
    /// the socket had room again.
    pub pauses: u64,
}

impl Sent {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Sent) {
        self.bytes += other.bytes;
        for (mine, theirs) in self.events.iter_mut().zip(other.events) {
            *mine += theirs;
        }
        self.pauses += other.pauses;
    }
}

/// Why the server stopped a command that was still running (contract §3.6,
/// §7.4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The client of a `/run` stream left.
    ClientGone,
    /// `--timeout` expired.
    Timeout,
    /// `DELETE /jobs/ID`.
    Deleted,
    /// SIGINT or SIGTERM to the server.
    Shutdown,
}

impl StopReason {
    /// Every reason, in the order of their counters.
    pub const ALL: [StopReason; 4] = [
        StopReason::ClientGone,
        StopReason::Timeout,
        StopReason::Deleted,
        StopReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ClientGone => "client_gone",
            StopReason::Timeout => "timeout",
            StopReason::Deleted => "deleted",
            StopReason::Shutdown => "shutdown",
        }
    }
}

/// The server's counters. Every one only grows.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// What connections that have closed wrote.
    closed: Sent,
    commands_started: u64,
    commands_failed_to_start: u64,
    stopped: [u64; StopReason::ALL.len()],
    /// Responses by status; the status is the index.
    responses: Box<[u64; STATUS_SLOTS]>,
    /// Bytes of input accepted for commands (`POST /jobs/ID/input`, `204`).
    input_bytes: u64,
    /// Signals sent by `POST /jobs/ID/signal`, by [`JOB_SIGNALS`] index.
    signals: [u64; JOB_SIGNALS.len()],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            closed: Sent::default(),
            commands_started: 0,
            commands_failed_to_start: 0,
            stopped: [0; StopReason::ALL.len()],
            responses: Box::new([0; STATUS_SLOTS]),
            input_bytes: 0,
            signals: [0; JOB_SIGNALS.len()],
        }
    }
}

/// What is read at scrape time rather than counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Client sockets open.
    pub connections_open: u64,
    /// Connections streaming events (`/run` or a job viewer).
    pub streams_open: u64,
    /// Commands running (`/run` and jobs), children not yet reaped.
    pub commands_running: u64,
    /// Jobs whose command runs.
    pub jobs_running: u64,
    /// Finished jobs still readable.
    pub jobs_kept: u64,
    /// Streams of many jobs (`/jobs/events`, contract §11).
    pub multiplexed_streams_open: u64,
    /// What the connections still open wrote so far.
    pub open_sent: Sent,
}

impl Metrics {
    /// A connection closed: its counts join the totals.
    pub fn conn_closed(&mut self, sent: &Sent) {
        self.closed.add(sent);
    }

    /// A command started (its child was spawned and is watched).
    pub fn command_started(&mut self) {
        self.commands_started += 1;
    }

    /// A command could not start (its stream or job got an `err` event).
    pub fn command_failed_to_start(&mut self) {
        self.commands_failed_to_start += 1;
    }

    /// The server began stopping a running command, for `reason`.
    pub fn command_stopped(&mut self, reason: StopReason) {
        self.stopped[reason as usize] += 1;
    }

    /// `bytes` of input were accepted for a command.
    pub fn input_accepted(&mut self, bytes: usize) {
        self.input_bytes += bytes as u64;
    }

    /// A job's group was sent the signal of [`JOB_SIGNALS`] index `signal`.
    pub fn signal_sent(&mut self, signal: usize) {
        if let Some(count) = self.signals.get_mut(signal) {
            *count += 1;
        }
    }

    /// A response with `status` began: a fixed reply or a stream head.
    pub fn response(&mut self, status: u16) {
        if let Some(count) = self.responses.get_mut(usize::from(status)) {
            *count += 1;
        }
    }

    /// The scrape: every metric with `# HELP` and `# TYPE`, in exposition
    /// format 0.0.4. The process gauges are left out if `/proc` cannot be
    /// read (a scrape never fails for them).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut sent = self.closed.clone();
        sent.add(&gauges.open_sent);
        let mut out = String::with_capacity(4096);
        let gauge_rows = [
            ("connections_open", "Client connections open.", gauges.connections_open),
            (
                "streams_open",
                "Connections streaming events (/run streams and job viewers).",
                gauges.streams_open,
            ),
            (
                "commands_running",
                "Commands running (/run and jobs) until all their processes are gone.",
                gauges.commands_running,
            ),
            ("jobs_running", "Jobs whose command is running.", gauges.jobs_running),
            ("jobs_kept", "Finished jobs still readable.", gauges.jobs_kept),
            (
                "multiplexed_streams_open",
                "Streams of many jobs open (/jobs/events).",
                gauges.multiplexed_streams_open,
            ),
        ];
        for (name, help, value) in gauge_rows {
            family(&mut out, name, "gauge", help);
            sample(&mut out, name, "", value);
        }
        let counter_rows = [
            (
                "commands_started_total",
                "Commands started (/run and jobs).",
                self.commands_started,
            ),
            (
                "commands_failed_to_start_total",
                "Commands that could not start (an err event).",
                self.commands_failed_to_start,
            ),
            (
                "bytes_sent_total",
                "Bytes written to client sockets: every response, heads, bodies, events, heartbeats and chunk framing.",
                sent.bytes,
            ),
            (
                "slow_reader_pauses_total",
                "Times a stream's socket took less than offered, so the stream waited for it to drain.",
                sent.pauses,
            ),
            (
                "input_bytes_total",
                "Bytes of input accepted for commands (POST /jobs/ID/input answered 204).",
                self.input_bytes,
            ),
        ];
        for (name, help, value) in counter_rows {
            family(&mut out, name, "counter", help);
            sample(&mut out, name, "", value);
        }
        let name = "commands_stopped_total";
        family(
            &mut out,
            name,
            "counter",
            "Running commands the server stopped, by reason.",
        );
        for reason in StopReason::ALL {
            labelled(&mut out, name, "reason", reason.as_str(), self.stopped[reason as usize]);
        }
        let name = "events_sent_total";
        family(
            &mut out,
            name,
            "counter",
            "SSE events written to clients, by event name (one per viewer).",
        );
        for event in EventName::ALL {
            labelled(&mut out, name, "event", event.as_str(), sent.events[event.index()]);
        }
        let name = "signals_sent_total";
        family(
            &mut out,
            name,
            "counter",
            "Signals sent to jobs' process groups by POST /jobs/ID/signal, by signal name.",
        );
        for (index, (signal, _)) in JOB_SIGNALS.iter().enumerate() {
            labelled(&mut out, name, "signal", signal, self.signals[index]);
        }
        self.render_requests(&mut out);
        render_process(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "requests_total";
        family(out, name, "counter", "Responses sent, by HTTP status.");
        for (status, &count) in self.responses.iter().enumerate() {
            let known = u16::try_from(status).is_ok_and(|s| KNOWN_STATUSES.contains(&s));
            if known || count > 0 {
                let _ = writeln!(out, "ssecommander_{name}{{status=\"{status}\"}} {count}");
            }
        }
    }
}

/// The process gauges, read from `/proc/self` now.
fn render_process(out: &mut String) {
    if let Some(rss) = resident_bytes() {
        let name = "process_resident_memory_bytes";
        family(out, name, "gauge", "Resident memory of the server process, in bytes.");
        sample(out, name, "", rss);
    }
    if let Some(fds) = open_fds() {
        let name = "process_open_fds";
        family(
            out,
            name,
            "gauge",
            "File descriptors the server process has open (including the one that lists them).",
        );
        sample(out, name, "", fds);
    }
}

/// `VmRSS` of `/proc/self/status`, which the kernel gives in KiB of whole
/// pages, so the bytes are exact.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Entries of `/proc/self/fd`.
fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.count() as u64)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP ssecommander_{name} {help}");
    let _ = writeln!(out, "# TYPE ssecommander_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "ssecommander_{name}{labels} {value}");
}

fn labelled(out: &mut String, name: &str, label: &str, value: &str, count: u64) {
    let _ = writeln!(out, "ssecommander_{name}{{{label}=\"{value}\"}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_family_has_help_and_type_and_starts_at_zero() {
        let text = Metrics::default().render(&Gauges::default());
        for family in [
            "connections_open",
            "streams_open",
            "jobs_running",
            "jobs_kept",
            "commands_started_total",
            "commands_failed_to_start_total",
            "commands_stopped_total",
            "events_sent_total",
            "bytes_sent_total",
            "requests_total",
            "slow_reader_pauses_total",
            "input_bytes_total",
            "signals_sent_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            let name = format!("ssecommander_{family}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}:\n{text}");
        }
        for reason in ["client_gone", "timeout", "deleted", "shutdown"] {
            let series = format!("ssecommander_commands_stopped_total{{reason=\"{reason}\"}}");
            assert_eq!(value(&text, &series), Some(0), "{series}");
        }
        for event in ["stdout", "stderr", "err", "exit", "gap"] {
            let series = format!("ssecommander_events_sent_total{{event=\"{event}\"}}");
            assert_eq!(value(&text, &series), Some(0), "{series}");
        }
        for signal in [
            "INT", "TERM", "HUP", "QUIT", "KILL", "USR1", "USR2", "CONT", "STOP", "WINCH",
        ] {
            let series = format!("ssecommander_signals_sent_total{{signal=\"{signal}\"}}");
            assert_eq!(value(&text, &series), Some(0), "{series}");
        }
        assert_eq!(value(&text, "ssecommander_requests_total{status=\"404\"}"), Some(0));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn counts_add_up_across_closed_and_open_connections() {
        let mut metrics = Metrics::default();
        let mut one = Sent {
            bytes: 10,
            ..Sent::default()
        };
        one.events[EventName::Exit.index()] = 1;
        metrics.conn_closed(&one);
        metrics.response(200);
        metrics.response(200);
        metrics.response(299);
        metrics.command_stopped(StopReason::Deleted);
        let open = Sent {
            bytes: 5,
            pauses: 2,
            ..Sent::default()
        };
        let text = metrics.render(&Gauges {
            open_sent: open,
            ..Gauges::default()
        });
        assert_eq!(value(&text, "ssecommander_bytes_sent_total"), Some(15));
        assert_eq!(value(&text, "ssecommander_slow_reader_pauses_total"), Some(2));
        assert_eq!(value(&text, "ssecommander_events_sent_total{event=\"exit\"}"), Some(1));
        assert_eq!(value(&text, "ssecommander_requests_total{status=\"200\"}"), Some(2));
        // A status outside the known list shows once it happened.
        assert_eq!(value(&text, "ssecommander_requests_total{status=\"299\"}"), Some(1));
        assert_eq!(value(&text, "ssecommander_requests_total{status=\"298\"}"), None);
        assert_eq!(
            value(&text, "ssecommander_commands_stopped_total{reason=\"deleted\"}"),
            Some(1)
        );
    }
}
