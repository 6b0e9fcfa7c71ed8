//! ssecommander: runs a command sent over HTTP and streams its output to the
//! client, as it is written, as Server-Sent Events.
//!
//! # Layout
//!
//! Data flows one way: accept → read head → route → authorize → spawn → read
//! pipe → cut into events → (a `/run` stream: write) or (a job: append to its
//! log → each viewer pulls and writes) → reap/kill. Nothing calls back up:
//! a job produces frames and the server hands them on; a connection answers
//! an [`http::conn::Action`] and the server carries it out; no pump drives a
//! connection (those it wakes are driven from the top of the loop).
//!
//! **Jobs produce, connections pull.** A running command is a [`job::Job`]:
//! child, pipes, encoder, containment scope, and its life (one enum). With
//! `pty=1` its stdout and stderr are the master sides of two terminals,
//! read exactly like pipes (a master's EIO, once no slave is open, is the
//! end of its output); with `stdin=1` or `pty=1` it holds one more
//! descriptor, its stdin, written as it becomes writable from what
//! `POST /jobs/ID/input` queued ([`input`]). Its
//! pump reads the pipes and hands each frame — pointing into the loop's read
//! buffer — to a function the server passes, for the job's
//! [`job::Reader`]:
//! - `/run` (`server/run.rs`): the one connection writes it straight from
//!   the read buffer (`writev`); what its socket refuses is all that is
//!   kept, and the job is read only while that socket has room. When it has
//!   room again the connection asks (`Action::Pull`) and the server pumps
//!   the job into it. The command stops when that connection goes.
//! - `POST /jobs` (`server/publish.rs`): the events go into the bounded
//!   [`eventlog::EventLog`] of a [`jobs::Record`] (id, argv, state, viewers),
//!   which outlives the command until it is forgotten. A viewer connection
//!   holds a cursor (the next event id) and its own encoder, and pulls from
//!   the log when its socket has room; the command is read again only when
//!   every viewer has caught up (the slowest paces it).
//!
//! `docs/DESIGN.md` follows one byte from pipe to socket in more detail.
//!
//! The modules:
//! - [`cli`] turns the command line into a validated [`cli::Config`].
//! - [`server`] owns the one `mio::Poll`: the listener, every client socket,
//!   every child's pipes, the signalfd (SIGCHLD for exits), and the [`timer`]
//!   queue that sets the poll timeout; it owns the tables of connections,
//!   jobs and records ([`table`]: a slot is reused only after the poll batch
//!   that freed it). Only it decides what closes. Its `run` part holds the
//!   `/run` glue, its `publish` part the job routes and the viewers' pulling,
//!   its `mux` part the streams of many jobs, `input` the input bodies and
//!   `scrape` `/metrics`.
//! - [`http::conn`] is one client socket as a state machine: private
//!   fields, a phase enum whose variants carry their own data (a head with
//!   its deadline, a stream with its framing and feed, a viewer's cursor,
//!   draining, lingering), and the rules: keep-alive, reply-and-close, the
//!   head/idle/linger/stall timeouts, the FIN probe, heartbeats, the access
//!   line.
//! - [`http`] parses request heads ([`http::request`]), percent-decodes
//!   queries ([`http::query`]) and formats responses ([`http::response`]).
//! - [`route`] maps a head to what to do (the job routes and the page in
//!   files of their own); [`auth`] checks token, Host, Origin,
//!   Fetch-Metadata.
//! - [`argv`] splits a command line like a POSIX shell, without expansion.
//! - [`input`] holds what clients posted for a job's stdin until the
//!   command takes it (contract §10.2).
//! - [`job`] is one running command; [`jobs`] the record of a published one;
//!   [`eventlog`] its events; [`mux`] the cursors of a stream of many jobs
//!   (contract §11).
//! - [`child`] spawns into a process group and reaps; [`contain`] keeps
//!   whatever a command starts (a cgroup v2, else the child subreaper) so it
//!   is stopped with it; [`sys`] holds every system call std lacks, and
//!   every `unsafe` block but the line scanner's (see [`sse`]); its
//!   [`sys::pty`] opens the pseudo-terminals of `pty=1` (contract §10) and
//!   makes one the controlling terminal of a command's new session.
//! - [`logsafe`] escapes and redacts what clients and children control
//!   before it reaches a log line.
//! - [`metrics`] counts what `/metrics` reports: integers bumped where it
//!   happens (a connection counts what it writes), rendered on a scrape.
//! - [`sse`] cuts child output into events and encodes them as SSE frames,
//!   `IoSlice` pieces that point at the bytes they encode; it does no I/O.
//!   Its `scan` part finds line ends and the bytes JSON escapes 64 bytes
//!   at a time (AVX2 or SSE2 chosen at run time, a portable fallback): the
//!   one `unsafe` outside [`sys`] (vector loads and calls into code built
//!   for a CPU feature just detected), each block with its `SAFETY:` line,
//!   fuzzed against the portable scanner (`fuzz/fuzz_targets/line_scan.rs`).
//! - [`client`] is the other side of the wire (URL, HTTP response, SSE
//!   parser, payload decoding) for `ssecommander bench` and the tests;
//!   [`bench`] is that load client (contract §9), one mio thread. Both are
//!   the cargo feature `bench` (default on).
//! - `harness` (cargo feature `harness`: tests, benches and `fuzz/` only,
//!   never the shipped binary) is the test side: the server guard, `/proc`
//!   helpers and the fuzz oracles.
//!
//! `http`, `route`, `auth`, `argv`, `sse` and `eventlog` are pure: values in,
//! values out, no sockets and no clock, so they are fuzzed (`fuzz/`) and
//! benched (`benches/`).
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod argv;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod child;
pub mod cli;
#[cfg(feature = "bench")]
pub mod client;
pub(crate) mod contain;
pub(crate) mod eventlog;
#[cfg(feature = "harness")]
pub mod harness;
pub mod http;
pub(crate) mod input;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod logsafe;
pub(crate) mod metrics;
pub(crate) mod mux;
pub(crate) mod route;
pub mod server;
pub mod sse;
pub mod sys;
pub(crate) mod table;
#[cfg(test)]
mod test_rng;
pub(crate) mod timer;
