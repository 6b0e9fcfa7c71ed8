//! Published jobs (contract §7): the job routes, the job that writes into
//! its record's log, and the viewers that pull from it.
//!
//! The flow stays one way: the command's output is cut into events and
//! appended to the log ([`Publish`]); afterwards the server drives each
//! viewer, which encodes the events it has not sent in its own format and
//! writes them. The command is read again only when every viewer has caught
//! up, so the slowest viewer paces it and none misses an event.

use std::time::Instant;

use log::debug;

use super::{Server, State as ServerState};
use crate::eventlog::EventLog;
use crate::eventlog::Logged;
use crate::http::conn::Conn;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::job::{Job, Reader};
use crate::jobs::{self, Record, State, Stdin, Viewer};
use crate::metrics::StopReason;
use crate::route::{JobAction, JobRequest, RunRequest, JOB_SIGNALS};
use crate::sse::{Format, Frame, Stream};
use crate::table::Table;
use crate::timer::TimerKey;

/// True while every viewer of `record` has taken every event of its log:
/// only then is the command read (the slowest viewer paces it).
pub(super) fn all_caught_up(record: &Record, index: usize, conns: &Table<Conn>) -> bool {
    let next = record.log.next_id();
    record.viewers.iter().all(|&viewer| {
        conns
            .get(viewer.conn)
            .is_none_or(|conn| conn.pending_len() == 0 && conn.cursor_at(index, viewer.slot).is_none_or(|n| n >= next))
    })
}

/// True when no viewer of `record` is connected: the job's log then takes
/// what the command writes at once, with nobody to wait for.
fn no_viewer_connected(record: &Record, conns: &Table<Conn>) -> bool {
    !record.viewers.iter().any(|&viewer| conns.get(viewer.conn).is_some())
}

/// Appends one event of the job to its log; true while the log takes more
/// at once (no live viewer to wait for).
fn log_frame(log: &mut EventLog, frame: &Frame, text: &[u8], unwatched: bool) -> bool {
    let stream = frame.stream().unwrap_or(Stream::Stdout);
    log.push_output(frame.id(), stream, text);
    unwatched
}

/// The next event id a viewer needs from the job at `record`, for
/// trimming the log.
fn next_of(conns: &Table<Conn>, viewer: Viewer, record: usize) -> Option<u64> {
    conns
        .get(viewer.conn)
        .and_then(|conn| conn.cursor_at(record, viewer.slot))
}

impl Server {
    /// Carries out a job request.
    pub(super) fn on_job_request(&mut self, index: usize, head: &Head, request: JobRequest, now: Instant) {
        let JobRequest { action, headers } = request;
        let reply = match action {
            JobAction::Start(run) => self.start_published(&run, now),
            JobAction::List => json_reply(200, "OK", jobs::list_json(self.records.iter())),
            JobAction::Show(id) => match self.find_record(&id) {
                Some(record) => json_reply(
                    200,
                    "OK",
                    self.records.get(record).map(Record::json).unwrap_or_default(),
                ),
                None => no_job(),
            },
            JobAction::Stop(id) => self.stop_published(&id, now),
            JobAction::Input { id, eof } => return self.begin_input(index, head, id, eof, headers, now),
            JobAction::Signal { id, signal } => self.signal_published(&id, signal),
            JobAction::Resize { id, size } => self.resize_published(&id, size),
            JobAction::Watch { id, format, after } => {
                match self.begin_watch(index, head, &id, format, after, &headers, now) {
                    Ok(()) => return,
                    Err(reply) => reply,
                }
            }
            JobAction::WatchMany { ids, after } => {
                match self.begin_watch_many(index, head, ids, after, &headers, now) {
                    Ok(()) => return,
                    Err(reply) => reply,
                }
            }
        };
        let mut reply = reply;
        reply.headers.extend(headers);
        self.answer(index, head, reply, "", now);
    }

    /// The record with this id, unless forgotten.
    pub(super) fn find_record(&self, id: &str) -> Option<usize> {
        self.records
            .indices()
            .into_iter()
            .find(|&i| self.records.get(i).is_some_and(|r| r.id == id && !r.forgotten))
    }

    /// `POST /jobs`: spawn, record, `201` (a command that cannot start is a
    /// job too, `failed`, whose one event is `err`).
    fn start_published(&mut self, run: &RunRequest, now: Instant) -> Reply {
        if self.refuses_commands() {
            return super::too_many_commands();
        }
        let id = match jobs::new_id(self.config.instance.as_deref()) {
            Ok(id) => id,
            Err(err) => return Reply::text(500, "Internal Server Error", &format!("cannot draw a job id: {err}")),
        };
        let record_index = self.records.next_index();
        let mut record = Record::new(id, run.argv.clone(), State::Failed, self.config.job_log);
        record.terminal = run.streams.terminal;
        record.stdin = if run.streams.stdin { Stdin::Open } else { Stdin::None };
        match self.spawn_job(run, Format::Json, Reader::Log(record_index), now) {
            Ok(job) => {
                let pid = self.jobs.get(job).map_or(0, |j| j.pid());
                record.state = State::Running { job, pid };
            }
            Err(message) => {
                record.log.push(1, Logged::Error(message));
                self.finished_seq += 1;
                record.fail(self.finished_seq);
            }
        }
        let location = format!("/jobs/{}", record.id);
        let body = record.json();
        let finished = record.is_finished();
        let inserted = self.records.insert(record);
        if finished {
            self.keep_finished(inserted, now);
        }
        self.mux_job_started(inserted);
        json_reply(201, "Created", body).header("Location", location)
    }

    /// `DELETE /jobs/ID`: stop a running job (`202`), forget a finished one
    /// (`204`).
    fn stop_published(&mut self, id: &str, now: Instant) -> Reply {
        let Some(index) = self.find_record(id) else {
            return no_job();
        };
        let Some(record) = self.records.get(index) else {
            return no_job();
        };
        match record.job() {
            Some(job) => {
                let body = record.json();
                if self
                    .jobs
                    .get_mut(job)
                    .is_some_and(|j| j.terminate(now, &mut self.timers))
                {
                    self.metrics.command_stopped(StopReason::Deleted);
                }
                json_reply(202, "Accepted", body)
            }
            None => {
                self.forget(index);
                Reply::empty(204, "No Content")
            }
        }
    }

    /// The running job of record `id`: its record and job table indices;
    /// `404` for no such record, `409` when it has finished.
    pub(super) fn running_job(&self, id: &str) -> Result<(usize, usize), Reply> {
        let index = self.find_record(id).ok_or_else(no_job)?;
        let record = self.records.get(index).ok_or_else(no_job)?;
        match record.job() {
            Some(job) if self.jobs.get(job).is_some_and(|j| !j.has_exited()) => Ok((index, job)),
            _ => Err(conflict("conflict: this job has finished")),
        }
    }

    /// `POST /jobs/ID/signal`: the signal to the command's group (`204`).
    fn signal_published(&mut self, id: &str, signal: usize) -> Reply {
        let (_, job) = match self.running_job(id) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let Some(&(name, number)) = JOB_SIGNALS.get(signal) else {
            return Reply::text(400, "Bad Request", "bad request: unknown signal");
        };
        match self.jobs.get(job).map(|j| j.signal_group(number)) {
            Some(Ok(())) => {
                self.metrics.signal_sent(signal);
                Reply::empty(204, "No Content")
            }
            Some(Err(err)) => Reply::text(
                500,
                "Internal Server Error",
                &format!("cannot send SIG{name} to the job: {err}"),
            ),
            None => conflict("conflict: this job has finished"),
        }
    }

    /// `POST /jobs/ID/resize`: both terminals take the size, the group gets
    /// `SIGWINCH` (`204`); `409` for a job on pipes.
    fn resize_published(&mut self, id: &str, size: crate::sys::pty::Size) -> Reply {
        let (index, job) = match self.running_job(id) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        match self.jobs.get_mut(job).map(|j| j.resize(size)) {
            Some(Ok(true)) => {
                if let Some(record) = self.records.get_mut(index) {
                    record.terminal = Some(size);
                }
                Reply::empty(204, "No Content")
            }
            Some(Ok(false)) => conflict("conflict: this job is not on a terminal (start it with pty=1)"),
            Some(Err(err)) => Reply::text(
                500,
                "Internal Server Error",
                &format!("cannot resize the job's terminal: {err}"),
            ),
            None => conflict("conflict: this job has finished"),
        }
    }

    /// `GET /jobs/ID/events`: the stream head, `retry:`, a `gap` if events
    /// the viewer needs are gone, then the viewer pulls.
    #[allow(clippy::too_many_arguments)]
    fn begin_watch(
        &mut self,
        index: usize,
        head: &Head,
        id: &str,
        format: Format,
        after: Option<u64>,
        headers: &[(&'static str, String)],
        now: Instant,
    ) -> Result<(), Reply> {
        let record_index = self.find_record(id).ok_or_else(no_job)?;
        let record = self.records.get_mut(record_index).ok_or_else(no_job)?;
        let last = record.log.count();
        if let Some(n) = after {
            if n > last {
                return Err(Reply::text(
                    400,
                    "Bad Request",
                    &format!("bad request: Last-Event-ID {n} is past this job's last event ({last})"),
                ));
            }
            if n == last && record.log.ended() {
                return Err(Reply::empty(204, "No Content"));
            }
        }
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        self.metrics.response(200);
        let reuse = self.state == ServerState::Serving;
        let every = self.config.heartbeat;
        conn.begin_watch(
            head,
            reuse,
            headers,
            record_index,
            &record.log,
            format,
            after,
            every,
            now,
            &mut self.timers,
        );
        record.viewers.push(Viewer { conn: index, slot: 0 });
        // The connection pulls as soon as its socket has room.
        Ok(())
    }

    /// Sends a viewer the events it has not had, while its socket takes
    /// them. True if it may take more at once (or must be closed).
    pub(super) fn pull(&mut self, index: usize, record_index: usize, now: Instant) -> bool {
        let Some(record) = self.records.get(record_index) else {
            return false;
        };
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        let pulled = conn.pull(&record.log, now, &mut self.timers);
        if conn.is_broken() {
            return true;
        }
        if pulled.ended {
            self.leave_record(index, record_index, now);
            return true;
        }
        if pulled.caught_up {
            // The command may be waiting for this viewer: read it again,
            // once. Every viewer of a pump catches up in it: queueing the
            // job per viewer, or when it waits on its pipes and not on a
            // viewer, made the revisits multiply each turn (memory without
            // bound with 2 viewers, a busy loop with 1).
            // Only when no other viewer holds it back: a job waiting on a
            // stalled viewer costs nothing until that viewer's socket is
            // writable again (it used to spin the loop).
            if let Some(job) = record.job() {
                let held_back = self.jobs.get(job).is_some_and(Job::has_unread);
                if held_back && all_caught_up(record, record_index, &self.conns) && !self.revisit_jobs.contains(&job) {
                    self.revisit_jobs.push(job);
                }
            }
        }
        pulled.sent > 0
    }

    /// A watching connection closes: the job goes on (unlike `/run`).
    pub(super) fn unwatch(&mut self, index: usize, record: usize, now: Instant) {
        self.leave_record(index, record, now);
    }

    pub(super) fn leave_record(&mut self, index: usize, record_index: usize, _now: Instant) {
        let Some(record) = self.records.get_mut(record_index) else {
            return;
        };
        record.viewers.retain(|viewer| viewer.conn != index);
        if record.forgotten && record.viewers.is_empty() && record.is_finished() {
            self.drop_record(record_index);
            return;
        }
        if let Some(job) = record.job() {
            self.revisit_jobs.push(job);
        }
    }

    /// Reads a published job into its log; its viewers are woken to pull
    /// when the log grew.
    pub(super) fn pump_published(&mut self, job_index: usize, record_index: usize, now: Instant) {
        let Some(job) = self.jobs.get_mut(job_index) else {
            return;
        };
        let Some(record) = self.records.get_mut(record_index) else {
            // No record (it cannot happen: records outlive their jobs): drop
            // the output rather than block the command.
            job.orphan();
            return self.pump_job(job_index, now);
        };
        let before = record.log.next_id();
        let room = all_caught_up(record, record_index, &self.conns);
        let unwatched = no_viewer_connected(record, &self.conns);
        let log = &mut record.log;
        let pumped = job.pump(
            &mut self.buf,
            room,
            &mut |frame, text| log_frame(log, frame, text, unwatched),
            &mut self.timers,
            self.poll.registry(),
        );
        self.freed += pumped.released;
        if pumped.capped {
            self.revisit_jobs.push(job_index);
        }
        record.bytes = job.bytes_read();
        let exit = job.exit_if_done();
        if let Some(exit) = exit {
            let id = record.log.next_id();
            self.finished_seq += 1;
            if let Some(message) = job.late_failure() {
                // It never started after all: a failed job, as at once.
                record.log.push(id, Logged::Error(message.to_owned()));
                record.fail(self.finished_seq);
                self.metrics.command_failed_to_start();
            } else {
                record.log.push(id, Logged::Exit(exit));
                record.finish(exit, self.finished_seq);
            }
            debug!("job {} finished", record.id);
        }
        self.log_grew(record_index, before);
        if exit.is_some() {
            self.keep_finished(record_index, now);
        }
        if self.jobs.get(job_index).is_some_and(Job::is_finished) {
            self.jobs.remove(job_index);
        }
    }

    /// After events were appended to a record's log: trims what no viewer
    /// needs, and wakes the viewers if there is anything new.
    fn log_grew(&mut self, record_index: usize, before: u64) {
        let Some(record) = self.records.get_mut(record_index) else {
            return;
        };
        let conns = &self.conns;
        let keep_from = record.first_needed(|viewer| next_of(conns, viewer, record_index));
        record.log.trim(keep_from);
        if record.log.next_id() != before {
            self.woken.extend(record.viewers.iter().map(|viewer| viewer.conn));
            self.note_growth(record_index, before);
        }
    }

    /// A job finished: keep it `--keep`, and at most `--keep-jobs` finished
    /// jobs, forgetting the oldest first.
    fn keep_finished(&mut self, record_index: usize, now: Instant) {
        if let Some(record) = self.records.get_mut(record_index) {
            record
                .forget
                .set(now + self.config.keep, TimerKey::Forget(record_index), &mut self.timers);
        }
        let mut finished: Vec<(u64, usize)> = self
            .records
            .indices()
            .into_iter()
            .filter_map(|i| {
                let r = self.records.get(i)?;
                (r.is_finished() && !r.forgotten).then_some((r.finished_seq, i))
            })
            .collect();
        if finished.len() > self.config.keep_jobs {
            finished.sort_unstable();
            let excess = finished.len() - self.config.keep_jobs;
            for &(_, index) in &finished[..excess] {
                self.forget(index);
            }
        }
    }

    /// Forgets a finished record: not found by id any more, dropped as soon
    /// as no viewer reads it.
    fn forget(&mut self, index: usize) {
        let Some(record) = self.records.get_mut(index) else {
            return;
        };
        record.forgotten = true;
        record.forget.clear();
        if record.viewers.is_empty() && record.is_finished() {
            self.drop_record(index);
        }
    }

    /// Frees a forgotten record that nobody reads any more; its log's memory
    /// is counted towards giving heap back to the system.
    fn drop_record(&mut self, index: usize) {
        if let Some(record) = self.records.remove(index) {
            self.freed += record.log.held_bytes();
        }
    }

    /// `--keep` ran out for a finished record.
    pub(super) fn on_forget(&mut self, index: usize, now: Instant) {
        let Some(record) = self.records.get_mut(index) else {
            return;
        };
        if record.forget.fire(now, TimerKey::Forget(index), &mut self.timers) {
            self.forget(index);
        }
    }

    /// The quiet time passed for a published job: its held partial lines
    /// go into the log (see `Job::on_quiet`). True to revisit the job.
    pub(super) fn quiet_published(&mut self, job_index: usize, record_index: usize, now: Instant) -> bool {
        let Some(job) = self.jobs.get_mut(job_index) else {
            return false;
        };
        let Some(record) = self.records.get_mut(record_index) else {
            return false;
        };
        let before = record.log.next_id();
        let room = all_caught_up(record, record_index, &self.conns);
        let unwatched = no_viewer_connected(record, &self.conns);
        let log = &mut record.log;
        let capped = job.on_quiet(
            &mut self.buf,
            room,
            &mut |frame, text| log_frame(log, frame, text, unwatched),
            now,
            &mut self.timers,
            self.poll.registry(),
        );
        self.log_grew(record_index, before);
        capped
    }
}

fn json_reply(status: u16, reason: &'static str, body: String) -> Reply {
    let mut reply = Reply::text(status, reason, "");
    reply.body = body.into_bytes();
    reply.body.push(b'\n');
    reply.content_type = Some("application/json");
    reply.header("Cache-Control", "no-store")
}

/// `409`: the job exists but cannot do what was asked.
pub(super) fn conflict(message: &str) -> Reply {
    Reply::text(409, "Conflict", message)
}

pub(super) fn no_job() -> Reply {
    Reply::text(404, "Not Found", "not found: no such job (unknown, or forgotten)")
}
