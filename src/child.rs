//! Starting a command: the allow-list, then a child in its own process group
//! with stdin from `/dev/null` (or a pipe we write, `stdin=1`) and stdout
//! and stderr on two non-blocking pipes; or, on a terminal (contract §10),
//! stdin and stdout on a pseudo-terminal that is the controlling terminal
//! of the child's new session, and stderr on a second one of the same size.
//!
//! The child is a vfork-like clone that shares and then drops our
//! descriptor table ([`sys::spawn_plan`]): the cost of a spawn does not grow
//! with the number of streams open. Knows nothing of HTTP or SSE.

use std::borrow::Cow;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use log::{info, warn};

use mio::unix::pipe::{Receiver, Sender};

use crate::contain::Scope;
use crate::sse::Exit;
use crate::sys;
use crate::sys::pty;

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

/// Where one command's standard streams go (contract §3.6, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    /// On a terminal of this size (`pty=1`), else on pipes.
    pub terminal: Option<pty::Size>,
    /// Keep its standard input open for us to write (`stdin=1`, and every
    /// job on a terminal); else it reads `/dev/null` (or, on a terminal
    /// nobody writes to, waits).
    pub stdin: bool,
}

/// A started child and the server's ends of its streams, all non-blocking.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid, also its process group id.
    pub pid: libc::pid_t,
    /// Read end of its stdout (a pipe, or the terminal's master side).
    pub stdout: Receiver,
    /// Read end of its stderr (a pipe, or the second terminal's master).
    pub stderr: Receiver,
    /// Write end of its stdin (a pipe, or the terminal's master side again),
    /// when [`Streams::stdin`] asked for it.
    pub stdin: Option<Sender>,
    /// The terminal's size, when it runs on one.
    pub terminal: Option<pty::Size>,
    /// Everything the command starts, even what leaves its process group.
    pub scope: Scope,
    /// `argv[0]`, for the `err` message should its `execve` fail after the
    /// spawn returned ([`sys::take_launch_failure`]).
    pub program: Box<str>,
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
/// joined with it (execvp's default `PATH` when unset), an entry listed
/// twice only at its first place (a second look there finds what the
/// first found: one `statx` and one `execve` per command saved where a
/// profile adds a directory again).
/// `PATH` is split once, as [`base_env`] is read once.
fn path_candidates(program: &str) -> Vec<PathBuf> {
    path_dirs().iter().map(|dir| dir.join(program)).collect()
}

/// `PATH`'s directories, split once, each at its first place only (see
/// [`path_candidates`]). The same list for the life of the process: the
/// launch check's cache of misses watches these ([`sys::ExecPlan::search`]).
fn path_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in std::env::split_paths(&search) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    })
}

/// Starts `argv` as described in the module doc, inside `scope` (from
/// [`crate::contain::Containment::spawn_scope`]). Its exit is found by the
/// server's SIGCHLD path, not by a descriptor of its own: a stream costs
/// three descriptors (socket and two pipes).
pub fn spawn(
    argv: &[String],
    options: &SpawnOptions,
    streams: Streams,
    mut scope: Scope,
) -> Result<Spawned, SpawnError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SpawnError::NotAllowed(String::new()));
    };
    let Some(exact) = approve(program, options) else {
        return Err(SpawnError::NotAllowed(program.clone()));
    };
    let exact = exact.as_deref();
    let command = Program {
        program,
        exact,
        args,
        options,
        terminal: streams.terminal,
    };
    let ends = Ends::new(streams).map_err(SpawnError::Setup)?;
    let pid = if CLONE_UNSUPPORTED.load(Ordering::Relaxed) {
        start_std(&command, &ends, &scope)?
    } else {
        match start_fast(&command, &ends, &scope) {
            Err(SpawnError::Start(_, err)) if err.kind() == io::ErrorKind::Unsupported => {
                warn!("spawning without copying the descriptor table is not possible here ({err}): using posix_spawn");
                CLONE_UNSUPPORTED.store(true, Ordering::Relaxed);
                start_std(&command, &ends, &scope)?
            }
            other => other?,
        }
    };
    scope.set_leader(pid);
    // Our copies of the child's ends close here: its exit then ends the
    // pipes (and the terminals: EIO on the master once no slave is open).
    let Ends {
        stdout, stderr, stdin, ..
    } = ends;
    match set_up_pipes(&stdout, &stderr, stdin.as_ref()) {
        Ok(()) => Ok(Spawned {
            pid,
            stdout,
            stderr,
            stdin,
            terminal: streams.terminal,
            scope,
            program: program.as_str().into(),
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

/// True when every command is started by our own spawn paths (they set
/// the signal mask a command starts with), not by std's fallback: the loop
/// may then keep its signals blocked (`sys::Signals`). Known once
/// [`choose_spawn_path`] ran.
pub fn own_spawn() -> bool {
    !CLONE_UNSUPPORTED.load(Ordering::Relaxed)
}

/// Set at start-up when [`sys::launch`] works here (and was not turned off):
/// commands not on a terminal start without the loop waiting for their
/// `execve`.
static LAUNCH: AtomicBool = AtomicBool::new(false);

/// `SSECOMMANDER_SPAWN` picks the spawn path, for tests and for working
/// around a kernel (like [`crate::contain::MODE_ENV`]): `launch` (the
/// default) uses [`sys::launch`] where it works (x86_64, Linux 5.9+) and
/// the vfork clone elsewhere; `clone` always the vfork clone
/// ([`sys::spawn_plan`]); `posix_spawn` the fallback that qemu-user and
/// kernels before 5.9 get, so it can be tested anywhere.
pub const SPAWN_ENV: &str = "SSECOMMANDER_SPAWN";

/// Reads [`SPAWN_ENV`] once at start-up and sets the chosen path up.
/// Another value is an error (exit 2).
pub fn choose_spawn_path() -> Result<(), String> {
    // The server's own `/dev/null` is opened now, not at the first command:
    // its descriptor is part of the server from the start, so a count of
    // the server's descriptors before and after some commands (tests,
    // `--max-conns` planning) does not see one more appear. A failure
    // here shows again, with its reason, at the first command.
    let _ = sys::dev_null();
    let wanted = std::env::var(SPAWN_ENV);
    if matches!(wanted.as_deref(), Err(_) | Ok("launch") | Ok("clone")) {
        // Known now, not at the first command: the loop's signals are read
        // one way or the other depending on it (`sys::Signals`).
        if let Err(err) = sys::probe_spawn_plan() {
            info!("spawn: posix_spawn (spawning without copying the descriptor table is not possible here: {err})");
            CLONE_UNSUPPORTED.store(true, Ordering::Relaxed);
            return Ok(());
        }
    }
    match wanted.as_deref() {
        Err(_) | Ok("launch") => {
            match sys::enable_launch(path_dirs()) {
                Ok(()) => {
                    info!("spawn: launch (the loop does not wait for a command's execve)");
                    LAUNCH.store(true, Ordering::Relaxed);
                }
                Err(err) => info!("spawn: clone (launching without waiting is not possible here: {err})"),
            }
            Ok(())
        }
        Ok("clone") => {
            info!("spawn: clone ({SPAWN_ENV}=clone)");
            Ok(())
        }
        Ok("posix_spawn") => {
            info!("spawn: posix_spawn ({SPAWN_ENV}=posix_spawn)");
            CLONE_UNSUPPORTED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Ok(other) => Err(format!("{SPAWN_ENV}={other:?}: expected launch, clone or posix_spawn")),
    }
}

/// What to run: `program` (as `argv[0]`; `exact`, the executable `--allow`
/// approved, runs in its place), its arguments, and where.
struct Program<'a> {
    program: &'a str,
    exact: Option<&'a Path>,
    args: &'a [String],
    options: &'a SpawnOptions,
    /// On a terminal: a new session, `TERM`, `COLUMNS`, `LINES`.
    terminal: Option<pty::Size>,
}

impl Program<'_> {
    fn start_error(&self, err: io::Error) -> SpawnError {
        SpawnError::Start(self.program.to_owned(), err)
    }

    /// The variables a command on a terminal gets (contract §10.1).
    fn terminal_env(&self) -> Vec<(&'static str, String)> {
        match self.terminal {
            None => Vec::new(),
            Some(size) => vec![
                ("TERM", pty::TERM.to_owned()),
                ("COLUMNS", size.cols.to_string()),
                ("LINES", size.rows.to_string()),
            ],
        }
    }
}

/// Both sides of a command's three streams, made before it starts: the
/// child's (to become its 0, 1, 2) and ours (non-blocking once set up).
struct Ends {
    /// `None`: the server's `/dev/null` ([`sys::dev_null`]).
    child: [Option<OwnedFd>; 3],
    stdout: Receiver,
    stderr: Receiver,
    stdin: Option<Sender>,
}

impl Ends {
    fn new(streams: Streams) -> io::Result<Ends> {
        match streams.terminal {
            Some(size) => {
                let out = pty::open(size)?;
                let err = pty::open(size)?;
                let stdin = if streams.stdin {
                    Some(Sender::from(pty::dup(&out.master)?))
                } else {
                    None
                };
                Ok(Ends {
                    child: [Some(pty::dup(&out.slave)?), Some(out.slave), Some(err.slave)],
                    stdout: Receiver::from(out.master),
                    stderr: Receiver::from(err.master),
                    stdin,
                })
            }
            None => {
                let (stdout, stdout_w) = sys::pipe()?;
                let (stderr, stderr_w) = sys::pipe()?;
                // Reading nothing: the server's own `/dev/null`, as it is
                // (opened at start-up, no copy per command).
                let (stdin_r, stdin) = if streams.stdin {
                    let (read, write) = sys::pipe()?;
                    (Some(read), Some(Sender::from(write)))
                } else {
                    sys::dev_null()?;
                    (None, None)
                };
                Ok(Ends {
                    child: [stdin_r, Some(stdout_w), Some(stderr_w)],
                    stdout: Receiver::from(stdout),
                    stderr: Receiver::from(stderr),
                    stdin,
                })
            }
        }
    }

    /// The child's descriptor `which`: its own, or the server's `/dev/null`.
    fn child_fd(&self, which: usize) -> io::Result<BorrowedFd<'_>> {
        match &self.child[which] {
            Some(fd) => Ok(fd.as_fd()),
            None => sys::dev_null(),
        }
    }

    fn child_raw(&self) -> io::Result<[std::os::fd::RawFd; 3]> {
        Ok([
            self.child_fd(0)?.as_raw_fd(),
            self.child_fd(1)?.as_raw_fd(),
            self.child_fd(2)?.as_raw_fd(),
        ])
    }
}

/// Starts the child with [`sys::launch`] where it can, else with
/// [`sys::spawn_plan`], inside `scope` (straight into its cgroup where the
/// kernel can).
fn start_fast(command: &Program<'_>, ends: &Ends, scope: &Scope) -> Result<libc::pid_t, SpawnError> {
    let plan = plan_of(command).map_err(|err| command.start_error(err))?;
    let stdio = ends.child_raw().map_err(SpawnError::Setup)?;
    let plan = if LAUNCH.load(Ordering::Relaxed) {
        let launched = scope
            .spawn_into(|cgroup| sys::launch(plan, stdio, cgroup))
            .map_err(SpawnError::Contain)?;
        match launched {
            sys::Launched::Started(pid) => return Ok(pid),
            sys::Launched::Failed(err) => return Err(command.start_error(err)),
            sys::Launched::NotHere(plan) => plan,
        }
    } else {
        plan
    };
    scope
        .spawn_into(|cgroup| sys::spawn_plan(&plan, stdio, cgroup))
        .map_err(SpawnError::Contain)?
        .map_err(|err| command.start_error(err))
}

/// Starts the child with std's `Command` (`posix_spawn`, or fork on a
/// terminal), inside `scope`: the fallback where [`sys::spawn_plan`]
/// cannot work.
fn start_std(command: &Program<'_>, ends: &Ends, scope: &Scope) -> Result<libc::pid_t, SpawnError> {
    let stdio = |which: usize| -> Result<Stdio, SpawnError> {
        let copy = ends
            .child_fd(which)
            .and_then(|fd| fd.try_clone_to_owned())
            .map_err(SpawnError::Setup)?;
        Ok(Stdio::from(copy))
    };
    let mut std_command = Command::new(command.exact.map_or(Path::new(command.program), |path| path));
    std_command
        .arg0(command.program)
        .args(command.args)
        .stdin(stdio(0)?)
        .stdout(stdio(1)?)
        .stderr(stdio(2)?)
        .env_remove(TOKEN_ENV)
        .envs(command.terminal_env());
    if command.terminal.is_some() {
        // setsid makes the new process group; setpgid first would make
        // the child a group leader, which setsid refuses.
        pty::spawn_controlled(&mut std_command);
    } else {
        std_command.process_group(0);
    }
    if let Some(dir) = &command.options.cwd {
        std_command.current_dir(dir);
    }
    // Not the loop's blocked signals: std would pass them on.
    sys::unblock_at_exec(&mut std_command);
    let child = scope
        .run_inside(|| std_command.spawn())
        .map_err(SpawnError::Contain)?
        .map_err(|err| command.start_error(err))?;
    Ok(child.id() as libc::pid_t)
}

/// The paths `execve` tries (as `execvp` searches `PATH` for a bare name),
/// the arguments, and our environment without the token, as C strings.
fn plan_of(command: &Program<'_>) -> io::Result<sys::ExecPlan> {
    let Program {
        program,
        exact,
        args,
        options,
        ..
    } = *command;
    let c = |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (paths, search) = if let Some(path) = exact {
        (vec![c(path.as_os_str().as_bytes())?], None)
    } else if program.contains('/') {
        (vec![c(program.as_bytes())?], None)
    } else {
        let paths = path_candidates(program)
            .iter()
            .map(|candidate| c(candidate.as_os_str().as_bytes()))
            .collect::<io::Result<_>>()?;
        (paths, Some(path_dirs()))
    };
    let argv = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(|arg| c(arg.as_bytes()))
        .collect::<io::Result<_>>()?;
    let overrides = command.terminal_env();
    let env = if overrides.is_empty() {
        Cow::Borrowed(base_env())
    } else {
        let overridden = |pair: &CString| {
            let name = pair.as_bytes().split(|&b| b == b'=').next().unwrap_or_default();
            overrides.iter().any(|(set, _)| set.as_bytes() == name)
        };
        let set = overrides
            .iter()
            .filter_map(|(name, value)| CString::new(format!("{name}={value}")).ok());
        Cow::Owned(
            base_env()
                .iter()
                .filter(|pair| !overridden(pair))
                .cloned()
                .chain(set)
                .collect(),
        )
    };
    let cwd = match &options.cwd {
        Some(dir) => Some(c(dir.as_os_str().as_bytes())?),
        None => None,
    };
    Ok(sys::ExecPlan {
        paths,
        argv,
        env,
        cwd,
        search,
        session: command.terminal.is_some(),
    })
}

/// Our environment without the token, as `NAME=value` C strings, made at
/// the first command: the server never changes its environment, so it is
/// not copied out again (a lock and a hundred allocations) per command.
fn base_env() -> &'static [CString] {
    static BASE: OnceLock<Vec<CString>> = OnceLock::new();
    BASE.get_or_init(|| {
        std::env::vars_os()
            .filter(|(name, _)| name != OsStr::new(TOKEN_ENV))
            .filter_map(|(name, value)| {
                let mut pair = name.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(value.as_bytes());
                CString::new(pair).ok()
            })
            .collect()
    })
}

fn set_up_pipes(stdout: &Receiver, stderr: &Receiver, stdin: Option<&Sender>) -> io::Result<()> {
    // Our ends only: the child's ends stay blocking, as programs expect.
    sys::set_nonblocking(stdout)?;
    sys::set_nonblocking(stderr)?;
    if let Some(stdin) = stdin {
        sys::set_nonblocking(stdin)?;
    }
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
