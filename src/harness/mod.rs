//! The test and bench harness, behind the `harness` cargo feature: never in
//! the shipped binary (`cargo build --release` leaves it out); tests,
//! benches and `fuzz/` turn it on.
//!
//! - [`server`]: the guard that starts the real binary, reads its URL line
//!   and stops it by pid.
//! - [`procfs`]: what `/proc` says about a process (fds, RSS, CPU, state,
//!   children, argv).
//! - [`oracle`]: the fuzz oracles, shared by `fuzz/` and `tests/corpus.rs`.

pub mod oracle;
pub mod procfs;
pub mod server;
