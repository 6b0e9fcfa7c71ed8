//! ssecommander: runs a command sent over HTTP and streams its output to the
//! client, as it is written, as Server-Sent Events.
//!
//! # Layout
//!
//! Data flows one way: accept → read head → route → authorize → spawn → read
//! pipe → encode → write → reap/kill.
//!
//! - [`cli`] turns the command line into a validated [`cli::Config`].
//! - [`server`] owns the one `mio::Poll`: the listener, every client socket,
//!   every child's pipes and pidfd, the signal self-pipe, and the [`timer`] queue that
//!   sets the poll timeout. Only it decides what closes.
//! - [`conn`] is one client socket: a phase enum, the head bytes so far, the
//!   bytes the socket has not yet taken.
//! - [`http`] parses request heads ([`http::request`]), percent-decodes
//!   queries ([`http::query`]) and formats responses ([`http::response`]).
//! - [`route`] maps a head to what to do; [`auth`] checks token, Host, Origin.
//! - [`argv`] splits a command line like a POSIX shell, without expansion.
//! - [`job`] is one running command (child, pipes, encoder, event ids); a
//!   connection watches a job by id and may leave before it ends.
//! - [`child`] spawns into a process group and reaps; [`contain`] keeps
//!   whatever a command starts (a cgroup v2, else the child subreaper) so it
//!   is stopped with it; [`sys`] holds every system call std lacks, and
//!   every `unsafe` block.
//! - [`logsafe`] escapes and redacts what clients and children control
//!   before it reaches a log line.
//! - [`sse`] encodes child output into SSE frames as `IoSlice` pieces that
//!   point at the read buffer; it does no I/O.
//!
//! `http`, `route`, `auth`, `argv` and `sse` are pure: values in, values out,
//! no sockets and no clock, so they are fuzzed (`fuzz/`) and benched
//! (`benches/`).
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod argv;
pub mod auth;
pub mod child;
pub mod cli;
pub mod conn;
pub mod contain;
pub mod eventlog;
pub mod http;
pub mod job;
pub mod jobs;
pub mod logsafe;
#[doc(hidden)]
pub mod oracle;
pub mod route;
pub mod server;
pub mod sse;
pub mod sys;
pub mod table;
#[cfg(test)]
mod test_rng;
pub mod timer;
