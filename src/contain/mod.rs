//! Containment (contract §3.6): whatever a command starts stays the
//! command's, even a process that leaves its process group (`setsid`,
//! `setpgid`, a daemon's double fork), and is stopped with it.
//!
//! One of two modes is chosen at start:
//! - **cgroup v2** ([`cgroup`]), where the server can write a cgroup v2
//!   hierarchy: each command runs in a cgroup of its own
//!   (`<subtree>/cmd-<n>`). Stopping signals the process group and every
//!   process the cgroup lists; `cgroup.kill` ends what is left after the
//!   grace, and the cgroup is removed once empty. The child is put there
//!   without a race: it is born there (`clone3` with `CLONE_INTO_CGROUP`,
//!   probed once at start), or, where that is not possible (a kernel
//!   before 5.7, another architecture than x86_64, the `posix_spawn`
//!   fallback, or `cgroup-migrate` asked for), the server (one thread)
//!   moves itself into the command's cgroup, spawns, and moves back.
//! - **subreaper** ([`subreaper`]) elsewhere: the server is the child
//!   subreaper, so orphans are re-parented to it; it reaps them, and stops
//!   them with the command they were found under (by reading `/proc`: the
//!   children lists of the server and of the command's family).
//!   Best effort: see docs/SECURITY.md (Containment).
//!
//! Jobs see a [`Scope`]: `signal`, `is_empty`, and its drop, which kills what
//! is left and hands the cgroup to a clean-up retried on later ticks. This
//! file is the façade: each mode has its own shared state and its own scope
//! type, and each method here matches the mode once. Knows nothing of HTTP,
//! jobs or the loop.

mod cgroup;
mod subreaper;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use cgroup::{CgroupScope, Cgroups};
use subreaper::{Tree, TreeScope};

use crate::sys;

/// Test and debug knob: `subreaper` forces the fallback mode; `cgroup`
/// requires cgroup mode and makes start-up fail without it;
/// `cgroup-migrate` as `cgroup`, with every command started by moving the
/// server into its cgroup and back (the way where `clone3` cannot).
pub const MODE_ENV: &str = "SSECOMMANDER_CONTAINMENT";

/// How long the exit clean-up waits for killed commands to go: `cgroup.kill`
/// is asynchronous, and reaping takes a moment.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// The mode the operator asked for through [`MODE_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Auto,
    Cgroup,
    /// cgroup mode, moving the server rather than starting into the cgroup.
    CgroupMigrate,
    Subreaper,
}

/// Every process a command starts, in whichever mode is in force. Shared by
/// the server (clean-up, orphan reaping) and the scopes its jobs hold.
pub struct Containment {
    mode: Mode,
    own_pid: libc::pid_t,
    /// What the start-up log line says.
    description: String,
    /// cgroup mode was possible in principle but failed: an operator should know.
    fell_back: bool,
    /// Scopes not yet seen empty (see [`Containment::running`]).
    running: Rc<Cell<usize>>,
}

/// The mode in force, with the state its scopes share.
enum Mode {
    Cgroup(Rc<RefCell<Cgroups>>),
    Subreaper(Rc<RefCell<Tree>>),
}

impl Containment {
    /// Chooses the mode: cgroup v2 if a writable one can be set up (unless
    /// [`MODE_ENV`] says `subreaper`), else the subreaper. Fails only when
    /// [`MODE_ENV`] asks for something impossible (`cgroup` without a
    /// writable cgroup v2, an unknown value, or no subreaper either).
    pub fn new() -> Result<Containment, String> {
        let wanted = match std::env::var(MODE_ENV).as_deref() {
            Err(_) | Ok("") | Ok("auto") => Wanted::Auto,
            Ok("cgroup") => Wanted::Cgroup,
            Ok("cgroup-migrate") => Wanted::CgroupMigrate,
            Ok("subreaper") => Wanted::Subreaper,
            Ok(other) => {
                return Err(format!(
                    "{MODE_ENV}={other:?}: expected cgroup, cgroup-migrate or subreaper"
                ))
            }
        };
        let own_pid = std::process::id() as libc::pid_t;
        let fell_back = wanted == Wanted::Auto;
        let why_not = if wanted == Wanted::Subreaper {
            format!("{MODE_ENV}=subreaper")
        } else {
            match Cgroups::set_up(own_pid, wanted != Wanted::CgroupMigrate) {
                Ok(cgroups) => {
                    let description = format!("cgroup v2 at {}", cgroups.subtree().display());
                    let mode = Mode::Cgroup(Rc::new(RefCell::new(cgroups)));
                    return Ok(Containment::with(mode, own_pid, description, false));
                }
                Err(err) if matches!(wanted, Wanted::Cgroup | Wanted::CgroupMigrate) => {
                    return Err(format!("{MODE_ENV}=cgroup but no writable cgroup v2: {err}"));
                }
                Err(err) => format!("no writable cgroup v2: {err}"),
            }
        };
        sys::set_child_subreaper().map_err(|err| format!("cannot become the child subreaper: {err}"))?;
        let description = format!("subreaper ({why_not})");
        let mode = Mode::Subreaper(Rc::new(RefCell::new(Tree::default())));
        Ok(Containment::with(mode, own_pid, description, fell_back))
    }

    fn with(mode: Mode, own_pid: libc::pid_t, description: String, fell_back: bool) -> Containment {
        Containment {
            mode,
            own_pid,
            description,
            fell_back,
            running: Rc::new(Cell::new(0)),
        }
    }

    /// True when no writable cgroup v2 could be set up and the weaker
    /// subreaper mode is in force without being asked for.
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The mode in force, as the start-up log line says it.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A new, empty scope for the next command. Fails if its cgroup cannot be
    /// made; the command must then not start.
    pub fn spawn_scope(&self) -> io::Result<Scope> {
        let place = match &self.mode {
            Mode::Cgroup(cgroups) => Place::Cgroup(CgroupScope::new(cgroups, self.own_pid)?),
            Mode::Subreaper(tree) => Place::Tree(TreeScope::new(tree, self.own_pid)),
        };
        Ok(Scope {
            pgid: 0,
            place,
            running: Cell::new(Some(Running::new(&self.running))),
        })
    }

    /// Commands whose scope is not yet empty: from [`Containment::spawn_scope`]
    /// until a [`Scope::is_empty`] says so, or its drop finds it empty, or (a
    /// killed cgroup dropped while still populated) the clean-up finds it
    /// empty. A command in its kill grace counts, whether or not its leader
    /// has been reaped: what `--max-procs` and `commands_running` count.
    pub fn running(&self) -> usize {
        self.running.get()
    }

    /// Retries removing the cgroups of ended commands that were still
    /// populated. Never blocks.
    pub fn tidy(&self) {
        match &self.mode {
            Mode::Cgroup(cgroups) => cgroups.borrow_mut().tidy(),
            // Nothing to retry: the server's SIGCHLD path reaps orphans.
            Mode::Subreaper(_) => {}
        }
    }

    /// True while [`Containment::tidy`] has work: cgroups of ended commands
    /// not yet empty.
    pub fn has_pending(&self) -> bool {
        match &self.mode {
            Mode::Cgroup(cgroups) => cgroups.borrow().has_pending(),
            Mode::Subreaper(_) => false,
        }
    }

    /// At server exit: kills whatever any command left behind and removes
    /// the cgroups. Waits at most `EXIT_WAIT` for killed commands to go.
    pub fn shut_down(&self) {
        match &self.mode {
            Mode::Cgroup(cgroups) => cgroups.borrow_mut().shut_down(),
            Mode::Subreaper(_) => subreaper::kill_all_descendants(self.own_pid),
        }
    }
}

impl fmt::Debug for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Where one command's processes are, beyond its process group.
enum Place {
    Cgroup(CgroupScope),
    Tree(TreeScope),
}

/// One command's processes: its process group and whatever left it. Its
/// drop kills what is left (the mode's scope type does that).
pub struct Scope {
    /// The leader's pid, also its process group; 0 before the spawn.
    pgid: libc::pid_t,
    place: Place,
    /// Held while the scope may still hold a process; given up when it is
    /// seen empty.
    running: Cell<Option<Running>>,
}

/// One count in [`Containment::running`], given back on drop.
pub(crate) struct Running(Rc<Cell<usize>>);

impl Running {
    fn new(count: &Rc<Cell<usize>>) -> Running {
        count.set(count.get() + 1);
        Running(Rc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Cgroup(scope) => write!(f, "Scope({}, Cgroup({:?}))", self.pgid, scope.path()),
            Place::Tree(scope) => write!(f, "Scope({}, Tree({}))", self.pgid, scope.id()),
        }
    }
}

impl Scope {
    /// Runs `spawn` so that the process it starts lands in this scope: in
    /// cgroup mode, `spawn` gets a descriptor of the command's cgroup to
    /// start it in (`clone3` with `CLONE_INTO_CGROUP`) where that works, or
    /// else `None` and the server is inside that cgroup meanwhile
    /// ([`Scope::run_inside`]). Fails, without running `spawn`, if the
    /// cgroup cannot be opened or entered.
    pub fn spawn_into<T>(&self, spawn: impl FnOnce(Option<RawFd>) -> T) -> io::Result<T> {
        match &self.place {
            Place::Cgroup(scope) => scope.spawn_into(spawn),
            Place::Tree(_) => Ok(spawn(None)),
        }
    }

    /// Runs `spawn` so that the process it starts lands in this scope: in
    /// cgroup mode the server is inside the command's cgroup meanwhile.
    /// Fails, without running `spawn`, if the server cannot enter it.
    pub fn run_inside<T>(&self, spawn: impl FnOnce() -> T) -> io::Result<T> {
        match &self.place {
            Place::Cgroup(scope) => scope.run_inside(spawn),
            // Orphans are found in /proc afterwards: nowhere to enter.
            Place::Tree(_) => Ok(spawn()),
        }
    }

    /// Records the command's leader (its pid is its process group).
    pub fn set_leader(&mut self, pid: libc::pid_t) {
        self.pgid = pid;
        match &self.place {
            // The cgroup lists its processes itself.
            Place::Cgroup(_) => {}
            Place::Tree(scope) => scope.set_leader(pid),
        }
    }

    /// Sends `signal` to the process group and to every other process of
    /// the scope; SIGKILL also `cgroup.kill`s the cgroup.
    pub fn signal(&self, signal: libc::c_int) {
        if self.pgid > 1 {
            let _ = sys::kill_group(self.pgid, signal);
        }
        match &self.place {
            Place::Cgroup(scope) => scope.signal(signal),
            Place::Tree(scope) => scope.signal(signal),
        }
    }

    /// True when no process of the scope is left (a zombie of the group
    /// still counts: its pid is not free yet).
    pub fn is_empty(&self) -> bool {
        if self.pgid > 1 && sys::group_alive(self.pgid) {
            return false;
        }
        let empty = match &self.place {
            Place::Cgroup(scope) => scope.is_empty(),
            Place::Tree(scope) => scope.is_empty(),
        };
        if empty {
            self.running.take();
        }
        empty
    }
}

impl Drop for Scope {
    /// A cgroup still populated keeps its count until the clean-up finds it
    /// empty; otherwise the count goes with the scope (a subreaper scope's
    /// drop has just SIGKILLed what was left).
    fn drop(&mut self) {
        if let Place::Cgroup(scope) = &mut self.place {
            scope.hold_until_empty(self.running.take());
        }
    }
}
