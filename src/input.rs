//! A job's standard input (contract §10.2): the bytes clients posted and the
//! command has not taken yet, written to its stdin (a pipe, or the master
//! side of its terminal) as that becomes writable, in the order the posts
//! were answered; and how the input ends (closing the pipe, or the
//! terminal's end-of-file character).
//!
//! Knows nothing of HTTP: the server offers bodies and answers from the
//! [`Offer`] it gets back.

use std::collections::VecDeque;
use std::io::{self, Write};

use log::debug;
use mio::unix::pipe::Sender;
use mio::Registry;

use crate::sys::{self, pty};

/// Most bytes a single `POST /jobs/ID/input` may carry (contract §10.2).
pub const MAX_BODY: usize = 64 * 1024;

/// Posts are refused (`503`) while more than this many bytes posted earlier
/// are still unread by the command (contract §10.2): queued here, or (a
/// pipe) in the pipe. The memory one job's input holds stays below this
/// plus one body.
pub const MAX_UNREAD: usize = 64 * 1024;

/// What became of a body offered as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued, to be written in order (`204`).
    Queued,
    /// The input is closed or ended (`409`).
    Closed,
    /// Too much earlier input is unread; nothing was queued (`503`).
    Busy,
}

/// What the command's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A pipe: the end of input is closing it.
    Pipe,
    /// The master side of a terminal: the end of input is its end-of-file
    /// character at the start of a line.
    Terminal,
}

/// The input of one job.
#[derive(Debug)]
pub struct Input {
    /// Our end of the command's stdin; `None` once closed.
    tx: Option<Sender>,
    /// A terminal's master descriptor after the end of input, kept open
    /// until the job is dropped: closing it while the command ran turned
    /// out to hang the terminal up now and then (the command then died of
    /// SIGHUP instead of reading the end of file).
    kept: Option<Sender>,
    kind: Kind,
    /// Accepted bytes not yet written.
    queue: VecDeque<u8>,
    /// The last write did not stop on `WouldBlock` (events are edges).
    writable: bool,
    /// `eof=1` was accepted: no more bytes are taken, and the end follows
    /// the queue.
    ending: bool,
    /// The bytes accepted so far end a line (or there are none): where a
    /// terminal's end-of-file character means "end of input".
    at_line_start: bool,
}

impl Input {
    /// Input written through `tx`, the write end of a pipe or (`terminal`)
    /// a descriptor of a terminal's master side. `tx` is non-blocking and
    /// registered for writable events by the caller.
    pub fn new(tx: Sender, terminal: bool) -> Input {
        Input {
            tx: Some(tx),
            kept: None,
            kind: if terminal { Kind::Terminal } else { Kind::Pipe },
            queue: VecDeque::new(),
            writable: true,
            ending: false,
            at_line_start: true,
        }
    }

    /// True while posted bytes are taken.
    pub fn is_open(&self) -> bool {
        self.tx.is_some() && !self.ending
    }

    /// Offers `body`, and with `eof` the end of input after it. Queues all
    /// of it or none; the caller then calls [`Input::write`].
    pub fn offer(&mut self, body: &[u8], eof: bool) -> Offer {
        if !self.is_open() {
            return Offer::Closed;
        }
        if self.unread() > MAX_UNREAD {
            return Offer::Busy;
        }
        self.queue.extend(body);
        if let Some(&last) = body.last() {
            self.at_line_start = last == b'\n' || last == b'\r';
        }
        if eof {
            self.ending = true;
            if let (Kind::Terminal, Some(tx)) = (self.kind, &self.tx) {
                // The end-of-file character ends input only at the start of
                // a line; after a partial line it sends the line, so a
                // second one is needed (as Ctrl-D twice in a terminal).
                let eof_char = pty::eof_char(tx);
                if !self.at_line_start {
                    self.queue.push_back(eof_char);
                }
                self.queue.push_back(eof_char);
                self.at_line_start = true;
            }
        }
        Offer::Queued
    }

    /// Bytes posted earlier that the command has not read: the queue, and
    /// for a pipe what lies in it. A terminal's own input queue (at most
    /// a few KiB, held by its line discipline) is not counted: the kernel
    /// does not say it through the master side.
    fn unread(&self) -> usize {
        let in_pipe = match (self.kind, &self.tx) {
            (Kind::Pipe, Some(tx)) => sys::pipe_unread(tx).unwrap_or(0),
            _ => 0,
        };
        self.queue.len() + in_pipe
    }

    /// A writable event came for the command's stdin.
    pub fn set_writable(&mut self) {
        self.writable = true;
    }

    /// Writes queued bytes while the command's stdin takes them, then ends
    /// the input if `eof=1` asked and all is written. A command that closed
    /// its stdin (`EPIPE`) closes the input: what is queued is dropped, as
    /// it could never be read.
    pub fn write(&mut self, registry: &Registry) {
        while self.writable && !self.queue.is_empty() {
            let Some(tx) = &mut self.tx else { return };
            let (front, _) = self.queue.as_slices();
            match tx.write(front) {
                Ok(0) => return self.close(registry),
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!("input: the command's stdin refused a write ({err}): closing it");
                    return self.close(registry);
                }
            }
        }
        if self.ending && self.queue.is_empty() {
            match self.kind {
                Kind::Pipe => self.close(registry),
                // Ended by its end-of-file character: the descriptor stays
                // open while the job lives (see `Input::kept`).
                Kind::Terminal => {
                    if let Some(mut tx) = self.tx.take() {
                        let _ = registry.deregister(&mut tx);
                        self.kept = Some(tx);
                    }
                }
            }
        }
    }

    /// Closes our end (a pipe then reads end-of-file; a terminal keeps its
    /// master open for output) and drops what is queued.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut tx) = self.tx.take() {
            // Deregister before closing: a terminal's master stays open
            // through its other descriptor, and epoll would keep this one.
            let _ = registry.deregister(&mut tx);
        }
        self.queue = VecDeque::new();
    }
}
