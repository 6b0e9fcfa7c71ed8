//! The test and bench harness, behind the `harness` cargo feature: never in
//! the shipped binary (`cargo build --release` leaves it out); tests,
//! benches and `fuzz/` turn it on.
//!
//! - [`server`]: the guard that starts the real binary, reads its URL line
//!   and stops it by pid.
//! - [`procfs`]: what `/proc` says about a process (fds, RSS, CPU, state,
//!   children, argv).
//! - [`oracle`]: the fuzz oracles, shared by `fuzz/` and `tests/corpus.rs`.
//! - [`outside`]: tools from outside the crate (promtool, nginx, python3…):
//!   found, or `SKIPPED` outside CI and a failure under `CI=true`.

pub mod oracle;
pub mod outside;
pub mod procfs;
pub mod server;
