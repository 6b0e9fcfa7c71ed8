//! Starting a command: the allow-list, then a child in its own process group
//! with stdin from `/dev/null` and stdout and stderr on two non-blocking pipes.
//!
//! The child is a vfork-like clone that shares and then drops our
//! descriptor table ([`sys::spawn_plan`]): the cost of a spawn does not grow
//! with the number of streams open. Knows nothing of HTTP or SSE.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{info, warn};

use mio::unix::pipe::Receiver;

use crate::contain::Scope;
use crate::sse::Exit;
use crate::sys;

/// Environment variable that must never reach a child: it holds the token.
pub const TOKEN_ENV: &str = "SSECOMMANDER_TOKEN";

/// Capacity asked for a child's stdout pipe (the unprivileged maximum is
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default). Kernel memory, used only
/// as far as the child is ahead of the client.
pub const PIPE_SIZE: usize = 256 * 1024;

/// How commands are started.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Working directory; the server's own when `None`.
    pub cwd: Option<PathBuf>,
    /// `--allow` entries; empty allows any program.
    pub allow: Vec<String>,
}

/// Why a command did not start. Its `Display` is the `err` event's message.
#[derive(Debug)]
pub enum SpawnError {
    /// `--allow` does not list the program.
    NotAllowed(String),
    /// The program could not be started (not found, not executable…).
    Start(String, io::Error),
    /// A pipe could not be set up.
    Setup(io::Error),
    /// The command's cgroup could not be made or entered (contract §3.6).
    Contain(io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotAllowed(program) => write!(f, "program not allowed: {program} (see --allow)"),
            SpawnError::Start(program, err) => write!(f, "cannot run {program}: {err}"),
            SpawnError::Setup(err) => write!(f, "cannot set up the command's pipes: {err}"),
            SpawnError::Contain(err) => write!(f, "cannot contain the command: {err}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// A started child and the read ends of its pipes, all non-blocking.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid, also its process group id.
    pub pid: libc::pid_t,
    /// Read end of its stdout.
    pub stdout: Receiver,
    /// Read end of its stderr.
    pub stderr: Receiver,
    /// Everything the command starts, even what leaves its process group.
    pub scope: Scope,
}

/// Checks `argv[0]` against the allow-list (a bare entry matches the name
/// as given, an absolute entry the executable the name resolves to) and
/// says what it lets `program` run: `Some(None)`, any executable the
/// usual search finds (no list, or its bare name is listed); `Some(path)`,
/// exactly the executable a listed absolute path approved — that one is
/// run, so the search cannot go on to a namesake nobody approved when the
/// approved file turns out not executable; `None`, not allowed.
fn approve(program: &str, options: &SpawnOptions) -> Option<Option<PathBuf>> {
    if options.allow.is_empty() {
        return Some(None);
    }
    if options
        .allow
        .iter()
        .any(|entry| !entry.starts_with('/') && entry == program)
    {
        return Some(None);
    }
    let resolved = resolve(program, options.cwd.as_deref())?;
    options
        .allow
        .iter()
        .filter(|entry| entry.starts_with('/'))
        .filter_map(|entry| std::fs::canonicalize(entry).ok())
        .any(|entry| entry == resolved)
        .then_some(Some(resolved))
}

/// The canonical path of the executable `program` names, as exec would find it.
fn resolve(program: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    if program.contains('/') {
        let path = match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return std::fs::canonicalize(path).ok();
    }
    path_candidates(program)
        .into_iter()
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// Where a bare program name is looked for, in order: each `PATH` entry
/// joined with it (execvp's default `PATH` when unset).
fn path_candidates(program: &str) -> Vec<PathBuf> {
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&search).map(|dir| dir.join(program)).collect()
}

/// Starts `argv` as described in the module doc, inside `scope` (from
/// [`crate::contain::Containment::spawn_scope`]). Its exit is found by the
/// server's SIGCHLD path, not by a descriptor of its own: a stream costs
/// three descriptors (socket and two pipes).
pub fn spawn(argv: &[String], options: &SpawnOptions, mut scope: Scope) -> Result<Spawned, SpawnError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SpawnError::NotAllowed(String::new()));
    };
    let Some(exact) = approve(program, options) else {
        return Err(SpawnError::NotAllowed(program.clone()));
    };
    let exact = exact.as_deref();
    let (pid, stdout, stderr) = if CLONE_UNSUPPORTED.load(Ordering::Relaxed) {
        start_std(program, exact, args, options, &scope)?
    } else {
        match start_fast(program, exact, args, options, &scope) {
            Err(SpawnError::Start(_, err)) if err.kind() == io::ErrorKind::Unsupported => {
                warn!("spawning without copying the descriptor table is not possible here ({err}): using posix_spawn");
                CLONE_UNSUPPORTED.store(true, Ordering::Relaxed);
                start_std(program, exact, args, options, &scope)?
            }
            other => other?,
        }
    };
    scope.set_leader(pid);
    match set_up_pipes(&stdout, &stderr) {
        Ok(()) => Ok(Spawned {
            pid,
            stdout,
            stderr,
            scope,
        }),
        Err(err) => {
            // Setup failed after the child started: end it now so nothing
            // leaks (dropping the scope ends what it started).
            scope.signal(libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
            Err(SpawnError::Setup(err))
        }
    }
}

/// Set once [`sys::spawn_plan`] turned out impossible on this system (or
/// [`SPAWN_ENV`] asked for it): every later spawn goes through std's
/// `posix_spawn` path.
static CLONE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// `SSECOMMANDER_SPAWN=posix_spawn` makes every spawn take the fallback path
/// that qemu-user and kernels before 5.9 get, so it can be tested anywhere
/// (a knob for tests and for working around a kernel, like
/// [`crate::contain::MODE_ENV`]).
pub const SPAWN_ENV: &str = "SSECOMMANDER_SPAWN";

/// Reads [`SPAWN_ENV`] once at start-up: `posix_spawn` forces the fallback,
/// unset or `clone` leaves the choice to the system. Another value is an
/// error (exit 2).
pub fn choose_spawn_path() -> Result<(), String> {
    match std::env::var(SPAWN_ENV).as_deref() {
        Err(_) | Ok("clone") => Ok(()),
        Ok("posix_spawn") => {
            info!("spawn: posix_spawn ({SPAWN_ENV}=posix_spawn)");
            CLONE_UNSUPPORTED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Ok(other) => Err(format!("{SPAWN_ENV}={other:?}: expected clone or posix_spawn")),
    }
}

type Started = (libc::pid_t, Receiver, Receiver);

/// Starts the child with [`sys::spawn_plan`], inside `scope`; `exact`: the
/// executable `--allow` approved, run as `program`.
fn start_fast(
    program: &str,
    exact: Option<&Path>,
    args: &[String],
    options: &SpawnOptions,
    scope: &Scope,
) -> Result<Started, SpawnError> {
    let plan = plan_of(program, exact, args, options).map_err(|err| SpawnError::Start(program.to_owned(), err))?;
    let (stdout, stdout_w) = sys::pipe().map_err(SpawnError::Setup)?;
    let (stderr, stderr_w) = sys::pipe().map_err(SpawnError::Setup)?;
    let null = File::open("/dev/null").map_err(SpawnError::Setup)?;
    let stdio = [null.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()];
    let pid = scope
        .run_inside(|| sys::spawn_plan(&plan, stdio))
        .map_err(SpawnError::Contain)?
        .map_err(|err| SpawnError::Start(program.to_owned(), err))?;
    // Our copies of the child's ends close as this returns: its exit then
    // ends the pipes.
    Ok((pid, Receiver::from(stdout), Receiver::from(stderr)))
}

/// Starts the child with std's `Command` (`posix_spawn`), inside `scope`:
/// the fallback where [`sys::spawn_plan`] cannot work.
fn start_std(
    program: &str,
    exact: Option<&Path>,
    args: &[String],
    options: &SpawnOptions,
    scope: &Scope,
) -> Result<Started, SpawnError> {
    let mut command = Command::new(exact.map_or(Path::new(program), |path| path));
    command
        .arg0(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove(TOKEN_ENV)
        .process_group(0);
    if let Some(dir) = &options.cwd {
        command.current_dir(dir);
    }
    let mut child = scope
        .run_inside(|| command.spawn())
        .map_err(SpawnError::Contain)?
        .map_err(|err| SpawnError::Start(program.to_owned(), err))?;
    let pid = child.id() as libc::pid_t;
    match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), Some(stderr)) => Ok((pid, Receiver::from(stdout), Receiver::from(stderr))),
        _ => {
            scope.signal(libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
            Err(SpawnError::Setup(io::Error::other("child pipe missing")))
        }
    }
}

/// The paths `execve` tries (as `execvp` searches `PATH` for a bare name),
/// the arguments, and our environment without the token, as C strings.
fn plan_of(program: &str, exact: Option<&Path>, args: &[String], options: &SpawnOptions) -> io::Result<sys::ExecPlan> {
    let c = |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let paths = if let Some(path) = exact {
        vec![c(path.as_os_str().as_bytes())?]
    } else if program.contains('/') {
        vec![c(program.as_bytes())?]
    } else {
        path_candidates(program)
            .iter()
            .map(|candidate| c(candidate.as_os_str().as_bytes()))
            .collect::<io::Result<_>>()?
    };
    let argv = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(|arg| c(arg.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env = std::env::vars_os()
        .filter(|(name, _)| name != OsStr::new(TOKEN_ENV))
        .filter_map(|(name, value)| {
            let mut pair = name.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    let cwd = match &options.cwd {
        Some(dir) => Some(c(dir.as_os_str().as_bytes())?),
        None => None,
    };
    Ok(sys::ExecPlan { paths, argv, env, cwd })
}

fn set_up_pipes(stdout: &Receiver, stderr: &Receiver) -> io::Result<()> {
    // Read ends only: the child's ends stay blocking, as programs expect.
    sys::set_nonblocking(stdout)?;
    sys::set_nonblocking(stderr)?;
    // A deeper stdout pipe lets a fast child write ahead while the loop is
    // busy, so it blocks (and switches out) less often. Failure is harmless:
    // the pipe keeps its default size.
    let _ = sys::set_pipe_size(stdout, PIPE_SIZE);
    Ok(())
}

/// How a reaped child ended, as the `exit` event says it.
pub fn exit_of(status: ExitStatus, timed_out: bool) -> Exit {
    Exit {
        code: status.code(),
        signal: status.signal(),
        timed_out,
    }
}
