//! `POST /jobs/ID/input` (contract §10.2): the connection reads the request
//! body (at most [`input::MAX_BODY`] bytes), then it is offered to the
//! job's input as a whole; and the job's stdin, written as it becomes
//! writable.
//!
//! The answer waits for the whole body, so `204` means every byte of it is
//! queued, and a refusal (`409`, `503`) leaves the connection usable.

use std::time::Instant;

use super::Server;
use crate::http::body::BodyError;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::input::{self, Offer};
use crate::job::Reader;
use crate::jobs::Stdin;

/// What the server holds for a connection whose input body is arriving.
#[derive(Debug)]
pub(super) struct PendingInput {
    /// The job it is for.
    id: String,
    /// `eof=1`.
    eof: bool,
    /// The request's head, to answer it (its body will have been read).
    head: Head,
    /// Extra response headers (CORS).
    headers: Vec<(&'static str, String)>,
}

impl Server {
    /// Begins reading the body of an input request; its answer follows
    /// once the body is whole ([`Server::finish_input`]).
    pub(super) fn begin_input(
        &mut self,
        index: usize,
        head: &Head,
        id: String,
        eof: bool,
        headers: Vec<(&'static str, String)>,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(index) else { return };
        let mut pending = PendingInput {
            id,
            eof,
            head: head.clone(),
            headers,
        };
        if let Err(err) = conn.begin_body(head, input::MAX_BODY, now, &mut self.timers) {
            return self.answer_refusal(index, pending, err, now);
        }
        // Once read to its end, the body leaves the framing known: the
        // connection may be kept alive after the answer.
        pending.head.has_body = false;
        self.bodies.insert(index, pending);
    }

    /// The whole body is here: offer it and answer.
    pub(super) fn finish_input(&mut self, index: usize, body: Vec<u8>, now: Instant) {
        let Some(pending) = self.bodies.remove(&index) else {
            return;
        };
        let mut reply = self.offer_input(&pending.id, &body, pending.eof);
        reply.headers.extend(pending.headers);
        self.answer(index, &pending.head, reply, "", now);
    }

    /// The body cannot be read: answer why, and close.
    pub(super) fn refuse_body(&mut self, index: usize, err: BodyError, now: Instant) {
        if let Some(pending) = self.bodies.remove(&index) {
            self.answer_refusal(index, pending, err, now);
        }
    }

    fn answer_refusal(&mut self, index: usize, pending: PendingInput, err: BodyError, now: Instant) {
        let (status, reason) = err.status();
        let mut reply = Reply::text(status, reason, &err.to_string()).closing();
        reply.headers.extend(pending.headers);
        self.answer(index, &pending.head, reply, "", now);
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
        if let Reader::Log(record) = running.reader() {
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
