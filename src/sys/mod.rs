//! The system calls std lacks, and every `unsafe` block of the crate but
//! the line scanner's vector code (`sse/scan.rs`).
//!
//! Each function is a thin, checked wrapper: errors come back as
//! `io::Error`, descriptors as `OwnedFd`. Policy (when to kill, what to do on
//! failure) lives with the callers.

mod activation;
mod fd;
mod hygiene;
mod process;
pub mod pty;
mod runtime;
mod signal;
mod spawn;

use std::io;

pub use activation::{listen_fds, take_activated_listener, LISTEN_FDS_START};
pub use fd::{dev_null, open_at, pipe, pipe_unread, set_listen_backlog, set_nonblocking, set_pipe_size};
pub use hygiene::{cloexec_inherited, raise_nofile_limit, set_non_dumpable};
pub use process::{
    group_alive, kill_group, kill_pid, peek_exited_child, reap_pid, reap_status, set_child_subreaper, wait_blocking,
};
pub use runtime::{getrandom, monotonic_ns, release_free_memory};
pub use signal::{child_mask, unblock_at_exec, Signals};
pub use spawn::{
    clone_into_cgroup_works, collect_launches, enable_launch, launch, launch_notifier, on_launch_notice,
    open_closed_stdio, probe_spawn_plan, spawn_plan, take_launch_failure, ExecPlan, Launched,
};

/// Converts a `-1` return into the current `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
