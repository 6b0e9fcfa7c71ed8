//! `POST /jobs/ID/input` (contract §10.2): the request body is read, at most
//! [`input::MAX_BODY`] bytes, then offered to the job's input as a whole;
//! and the job's stdin, written as it becomes writable.
//!
//! The answer waits for the whole body, so `204` means every byte of it is
//! queued, and a refusal (`409`, `503`) leaves the connection usable.

use std::time::Instant;

use log::info;

use super::Server;
use crate::conn::Phase;
use crate::http::body::BodyReader;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::input::{self, Offer};
use crate::job::Output;
use crate::jobs::Stdin;
use crate::logsafe;
use crate::timer::TimerKey;

/// What the server holds for a connection whose input body is arriving.
#[derive(Debug)]
pub(super) struct PendingInput {
    reader: BodyReader,
    /// The job it is for.
    id: String,
    /// `eof=1`.
    eof: bool,
    /// The request's head, to answer it (its body will have been read).
    head: Head,
    /// Extra response headers (CORS).
    headers: Vec<(&'static str, String)>,
    /// The access line's start (peer, method, path), ended by the status.
    access: String,
}

/// The interim answer a client that sent `Expect: 100-continue` waits for
/// before it sends the body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Server {
    /// Begins reading the body of an input request; the status when it is
    /// answered at once, `None` when the answer waits for the body.
    pub(super) fn begin_input(
        &mut self,
        index: usize,
        head: &Head,
        id: String,
        eof: bool,
        headers: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Option<u16> {
        let reader = match BodyReader::new(head.body, input::MAX_BODY) {
            Ok(reader) => reader,
            Err(err) => {
                let (status, reason) = err.status();
                let mut reply = Reply::text(status, reason, &err.to_string()).closing();
                reply.headers.extend(headers);
                self.answer(index, head, reply, now);
                return Some(status);
            }
        };
        let conn = self.conns.get_mut(index)?;
        let token = self.config.token.as_deref();
        let access = format!(
            "{} {} {}",
            conn.peer,
            logsafe::safe(head.method.as_str(), token),
            logsafe::target(&head.target, token)
        );
        if head.expect_continue && head.minor_version == 1 && !reader.is_done() {
            conn.queue(CONTINUE, now);
        }
        conn.phase = Phase::ReadingBody;
        // A body must arrive as promptly as a head (contract §5).
        conn.deadline.clear();
        conn.deadline
            .set(now + super::HEAD_TIMEOUT, TimerKey::Conn(index), &mut self.timers);
        let mut head = head.clone();
        // Once read to its end, the body leaves the framing known: the
        // connection may be kept alive after the answer.
        head.has_body = false;
        self.bodies.insert(
            index,
            PendingInput {
                reader,
                id,
                eof,
                head,
                headers,
                access,
            },
        );
        None
    }

    /// Feeds the bytes received to the body; answers once it is whole.
    /// True when it made progress (the connection is driven again).
    pub(super) fn body_step(&mut self, index: usize, now: Instant) -> bool {
        let (Some(conn), Some(pending)) = (self.conns.get_mut(index), self.bodies.get_mut(&index)) else {
            return false;
        };
        let used = match pending.reader.feed(conn.input()) {
            Ok(used) => used,
            Err(err) => {
                let pending = self.bodies.remove(&index);
                let (status, reason) = err.status();
                if let Some(pending) = pending {
                    info!("{} {status} ({err})", pending.access);
                    let mut reply = Reply::text(status, reason, &err.to_string()).closing();
                    reply.headers.extend(pending.headers);
                    self.answer(index, &pending.head, reply, now);
                }
                return true;
            }
        };
        conn.consume_input(used);
        if pending.reader.is_done() {
            conn.deadline.clear();
            if let Some(pending) = self.bodies.remove(&index) {
                self.finish_input(index, pending, now);
            }
            return true;
        }
        if conn.read_closed {
            // The client stopped sending halfway: nobody to answer.
            self.close_conn(index, now);
            return false;
        }
        used > 0
    }

    /// The whole body is here: offer it, answer, log.
    fn finish_input(&mut self, index: usize, pending: PendingInput, now: Instant) {
        let PendingInput {
            reader,
            id,
            eof,
            head,
            headers,
            access,
        } = pending;
        let body = reader.into_body();
        let mut reply = self.offer_input(&id, &body, eof);
        reply.headers.extend(headers);
        info!("{access} {}", reply.status);
        self.answer(index, &head, reply, now);
    }

    /// Offers `body` to job `id`'s input (contract §10.2).
    fn offer_input(&mut self, id: &str, body: &[u8], eof: bool) -> Reply {
        let (record, job) = match self.running_job(id) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let Some(offer) = self
            .jobs
            .get_mut(job)
            .map(|j| j.offer_input(body, eof, self.poll.registry()))
        else {
            return super::publish::conflict("conflict: this job has finished");
        };
        self.sync_stdin(job, record);
        match offer {
            Offer::Queued => {
                self.metrics.input_accepted(body.len());
                Reply::empty(204, "No Content")
            }
            Offer::Closed => super::publish::conflict(
                "conflict: this job's input is not open (start it with stdin=1 or pty=1; eof=1 ends it)",
            ),
            Offer::Busy => Reply::text(
                503,
                "Service Unavailable",
                "busy: more than 64 KiB of earlier input is still unread by the command; nothing of this body was queued, try again",
            )
            .header("Retry-After", "1"),
        }
    }

    /// A job's stdin became writable.
    pub(super) fn on_stdin(&mut self, job: usize) {
        let Some(running) = self.jobs.get_mut(job) else { return };
        running.on_stdin_writable(self.poll.registry());
        if let Output::Published(record) = running.out {
            self.sync_stdin(job, record);
        }
    }

    /// Shows the job's input state in its record (`GET /jobs/ID`).
    fn sync_stdin(&mut self, job: usize, record: usize) {
        let Some(open) = self.jobs.get(job).map(|j| j.input_open()) else {
            return;
        };
        if let Some(record) = self.records.get_mut(record) {
            record.stdin = match open {
                None => Stdin::None,
                Some(true) => Stdin::Open,
                Some(false) => Stdin::Closed,
            };
        }
    }
}
