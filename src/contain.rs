//! Containment (contract §3.6): whatever a command starts stays the
//! command's, even a process that leaves its process group (`setsid`,
//! `setpgid`, a daemon's double fork), and is stopped with it.
//!
//! One of two modes is chosen at start:
//! - **cgroup v2**, where the server can write a cgroup v2 hierarchy: each
//!   command runs in a cgroup of its own (`<subtree>/cmd-<n>`). Stopping
//!   signals the process group and every process the cgroup lists;
//!   `cgroup.kill` ends what is left after the grace, and the cgroup is
//!   removed once empty. The child is put there without a race: the server
//!   (one thread) moves itself into the command's cgroup, spawns, and moves
//!   back, so std keeps its `posix_spawn` path.
//! - **subreaper** elsewhere: the server is the child subreaper, so orphans
//!   are re-parented to it; it reaps them, and stops them with the command
//!   they were found under (by walking `/proc`). Best effort: see README.
//!
//! Jobs see a [`Scope`]: `signal`, `is_empty`, and its drop, which kills what
//! is left and hands the cgroup to a clean-up retried on later ticks. Knows
//! nothing of HTTP, jobs or the loop.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, warn};

use crate::sys;

/// Test and debug knob: `subreaper` forces the fallback mode; `cgroup`
/// requires cgroup mode and makes start-up fail without it.
pub const MODE_ENV: &str = "SSECOMMANDER_CONTAINMENT";

/// Empty command cgroups kept for reuse: a spawn then costs two moves and no
/// `mkdir`/`rmdir`. A few cover a burst of short commands; more would only
/// litter the hierarchy.
const SPARE_CGROUPS: usize = 16;

/// How long a walk of `/proc` is reused (subreaper mode). One command's
/// exit asks several times in a row (signal, is it empty, drop); a walk costs
/// about a millisecond. Reuse is safe enough: what a stale walk misses was
/// forked by a process it saw, which then still counts as alive.
const SNAPSHOT_AGE: Duration = Duration::from_millis(2);

/// How long the exit clean-up waits for killed commands' cgroups to empty
/// before removing them: `cgroup.kill` is asynchronous.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// The mode the operator asked for through [`MODE_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Auto,
    Cgroup,
    Subreaper,
}

/// Every process a command starts, in whichever mode is in force. Shared by
/// the server (clean-up, orphan reaping) and the scopes its jobs hold.
pub struct Containment {
    inner: Rc<RefCell<Inner>>,
    /// What the start-up log line says.
    description: String,
    /// cgroup mode was possible in principle but failed: an operator should know.
    fell_back: bool,
}

struct Inner {
    mode: Mode,
    own_pid: libc::pid_t,
}

enum Mode {
    Cgroup(Cgroups),
    Subreaper(Tree),
}

/// cgroup v2 mode: where command cgroups go and how to get back home.
struct Cgroups {
    /// Parent of the command cgroups.
    subtree: PathBuf,
    /// We made `subtree` (our cgroup was the hierarchy's root): remove it at exit.
    owns_subtree: bool,
    /// `cgroup.procs` of the server's own cgroup, kept open to move back to.
    home: File,
    /// Next command cgroup number.
    next: u64,
    /// Command cgroups still populated after their command ended: removed
    /// (or kept spare) once empty.
    pending: Vec<PathBuf>,
    /// Empty command cgroups ready for reuse.
    spare: Vec<PathBuf>,
    /// A move back home failed and the server is still in this cgroup: it is
    /// never `cgroup.kill`ed.
    stuck_in: Option<PathBuf>,
}

/// Subreaper mode: the descendants seen under each live command.
#[derive(Default)]
struct Tree {
    next: u64,
    scopes: HashMap<u64, Tracked>,
    /// The last walk of `/proc` and when it was taken (see [`SNAPSHOT_AGE`]).
    snapshot: Option<(Instant, Vec<Stat>)>,
}

/// One command in subreaper mode.
struct Tracked {
    /// Its leader (pid and process group); 0 until spawned.
    leader: libc::pid_t,
    /// Descendants seen so far, leader excluded.
    members: Vec<Proc>,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Proc {
    pid: libc::pid_t,
    start: u64,
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    proc: Proc,
    ppid: libc::pid_t,
    pgrp: libc::pid_t,
    zombie: bool,
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
            Ok("subreaper") => Wanted::Subreaper,
            Ok(other) => return Err(format!("{MODE_ENV}={other:?}: expected cgroup or subreaper")),
        };
        let own_pid = std::process::id() as libc::pid_t;
        let fell_back = wanted == Wanted::Auto;
        let why_not = if wanted == Wanted::Subreaper {
            format!("{MODE_ENV}=subreaper")
        } else {
            match Cgroups::set_up(own_pid) {
                Ok(cgroups) => {
                    let description = format!("cgroup v2 at {}", cgroups.subtree.display());
                    return Ok(Containment::with(Mode::Cgroup(cgroups), own_pid, description, false));
                }
                Err(err) if wanted == Wanted::Cgroup => {
                    return Err(format!("{MODE_ENV}=cgroup but no writable cgroup v2: {err}"));
                }
                Err(err) => format!("no writable cgroup v2: {err}"),
            }
        };
        sys::set_child_subreaper().map_err(|err| format!("cannot become the child subreaper: {err}"))?;
        let description = format!("subreaper ({why_not})");
        Ok(Containment::with(
            Mode::Subreaper(Tree::default()),
            own_pid,
            description,
            fell_back,
        ))
    }

    fn with(mode: Mode, own_pid: libc::pid_t, description: String, fell_back: bool) -> Containment {
        Containment {
            inner: Rc::new(RefCell::new(Inner { mode, own_pid })),
            description,
            fell_back,
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
        let place = match &mut self.inner.borrow_mut().mode {
            Mode::Cgroup(cgroups) => Place::Cgroup(cgroups.take_cgroup()?),
            Mode::Subreaper(tree) => {
                let id = tree.next;
                tree.next += 1;
                tree.scopes.insert(
                    id,
                    Tracked {
                        leader: 0,
                        members: Vec::new(),
                    },
                );
                Place::Tree(id)
            }
        };
        Ok(Scope {
            inner: Rc::clone(&self.inner),
            pgid: 0,
            place,
        })
    }

    /// Retries removing the cgroups of ended commands that were still
    /// populated (cgroup mode; subreaper mode has nothing to retry: the
    /// server's SIGCHLD path reaps orphans). Never blocks.
    pub fn tidy(&self) {
        if let Mode::Cgroup(cgroups) = &mut self.inner.borrow_mut().mode {
            cgroups.tidy();
        }
    }

    /// True while [`Containment::tidy`] has work: cgroups of ended commands
    /// not yet empty.
    pub fn has_pending(&self) -> bool {
        match &self.inner.borrow().mode {
            Mode::Cgroup(cgroups) => !cgroups.pending.is_empty(),
            Mode::Subreaper(_) => false,
        }
    }

    /// At server exit: kills whatever any command left behind and removes
    /// the cgroups. Waits at most `EXIT_WAIT` for killed cgroups to empty.
    pub fn shut_down(&self) {
        let mut inner = self.inner.borrow_mut();
        let own_pid = inner.own_pid;
        match &mut inner.mode {
            Mode::Cgroup(cgroups) => cgroups.shut_down(),
            Mode::Subreaper(_) => kill_all_descendants(own_pid),
        }
    }
}

impl fmt::Debug for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Where one command's processes are.
#[derive(Debug)]
enum Place {
    Cgroup(PathBuf),
    Tree(u64),
}

/// One command's processes: its process group and whatever left it.
pub struct Scope {
    inner: Rc<RefCell<Inner>>,
    /// The leader's pid, also its process group; 0 before the spawn.
    pgid: libc::pid_t,
    place: Place,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({}, {:?})", self.pgid, self.place)
    }
}

impl Scope {
    /// Runs `spawn` so that the process it starts lands in this scope: in
    /// cgroup mode the server is inside the command's cgroup meanwhile.
    /// Fails, without running `spawn`, if the server cannot enter it.
    pub fn run_inside<T>(&self, spawn: impl FnOnce() -> T) -> io::Result<T> {
        let Place::Cgroup(path) = &self.place else {
            return Ok(spawn());
        };
        write_file(&path.join("cgroup.procs"), b"0")?;
        let spawned = spawn();
        let mut inner = self.inner.borrow_mut();
        if let Mode::Cgroup(cgroups) = &mut inner.mode {
            cgroups.go_home(path);
        }
        Ok(spawned)
    }

    /// Records the command's leader (its pid is its process group).
    pub fn set_leader(&mut self, pid: libc::pid_t) {
        self.pgid = pid;
        if let Place::Tree(id) = self.place {
            if let Mode::Subreaper(tree) = &mut self.inner.borrow_mut().mode {
                if let Some(tracked) = tree.scopes.get_mut(&id) {
                    tracked.leader = pid;
                }
            }
        }
    }

    /// Sends `signal` to the process group and to every other process of
    /// the scope; SIGKILL also `cgroup.kill`s the cgroup.
    pub fn signal(&self, signal: libc::c_int) {
        if self.pgid > 1 {
            let _ = sys::kill_group(self.pgid, signal);
        }
        let mut inner = self.inner.borrow_mut();
        let own_pid = inner.own_pid;
        match (&self.place, &mut inner.mode) {
            (Place::Cgroup(path), Mode::Cgroup(cgroups)) => {
                for pid in cgroup_pids(path) {
                    if pid != own_pid {
                        let _ = sys::kill_pid(pid, signal);
                    }
                }
                if signal == libc::SIGKILL {
                    cgroups.kill(path);
                }
            }
            (Place::Tree(id), Mode::Subreaper(tree)) => {
                for member in tree.refresh(*id, own_pid) {
                    let _ = sys::kill_pid(member.pid, signal);
                }
            }
            _ => {}
        }
    }

    /// True when no process of the scope is left (a zombie of the group
    /// still counts: its pid is not free yet).
    pub fn is_empty(&self) -> bool {
        if self.pgid > 1 && sys::group_alive(self.pgid) {
            return false;
        }
        let mut inner = self.inner.borrow_mut();
        let own_pid = inner.own_pid;
        match (&self.place, &mut inner.mode) {
            (Place::Cgroup(path), _) => !is_populated(path),
            (Place::Tree(id), Mode::Subreaper(tree)) => tree.refresh(*id, own_pid).is_empty(),
            _ => true,
        }
    }
}

impl Drop for Scope {
    /// The command is over: anything of it still running is a stray and is
    /// killed; the cgroup goes to clean-up.
    fn drop(&mut self) {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return;
        };
        let own_pid = inner.own_pid;
        match (&self.place, &mut inner.mode) {
            (Place::Cgroup(path), Mode::Cgroup(cgroups)) => cgroups.release(path.clone()),
            (Place::Tree(id), Mode::Subreaper(tree)) => {
                for member in tree.refresh(*id, own_pid) {
                    let _ = sys::kill_pid(member.pid, libc::SIGKILL);
                }
                tree.scopes.remove(id);
            }
            _ => {}
        }
    }
}

// ----- cgroup v2 -----------------------------------------------------------

impl Cgroups {
    /// Finds the cgroup v2 hierarchy and our place in it, makes the subtree
    /// the commands go in, and proves a move in and out works.
    fn set_up(own_pid: libc::pid_t) -> io::Result<Cgroups> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let (mount, root) = cgroup2_mount(&mountinfo).ok_or_else(|| io::Error::other("no cgroup2 mount"))?;
        let ours = own_cgroup(&fs::read_to_string("/proc/self/cgroup")?)
            .ok_or_else(|| io::Error::other("no cgroup v2 line in /proc/self/cgroup"))?;
        let relative = ours
            .strip_prefix(root.as_str())
            .ok_or_else(|| io::Error::other(format!("our cgroup {ours} is outside the mount ({root})")))?;
        let relative = relative.trim_start_matches('/');
        let (subtree, home, owns_subtree) = if relative.is_empty() {
            // The hierarchy's root may hold processes and children: our
            // subtree goes beside us, and we stay where we are.
            remove_stale_subtrees(&mount);
            let subtree = mount.join(format!("ssecommander-{own_pid}"));
            make_dir(&subtree)?;
            (subtree, mount, true)
        } else {
            // A delegated cgroup (systemd Delegate=yes): no process may stay
            // in an inner node, so the server moves into a leaf of its own.
            let subtree = mount.join(relative);
            let home = subtree.join("server");
            make_dir(&home)?;
            write_file(&home.join("cgroup.procs"), b"0")?;
            (subtree, home, false)
        };
        let opened = OpenOptions::new().write(true).open(home.join("cgroup.procs"));
        let home_procs = match opened {
            Ok(file) => file,
            Err(err) => {
                if owns_subtree {
                    let _ = fs::remove_dir(&subtree);
                }
                return Err(err);
            }
        };
        let mut cgroups = Cgroups {
            subtree,
            owns_subtree,
            home: home_procs,
            next: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            stuck_in: None,
        };
        if let Err(err) = cgroups.probe() {
            cgroups.shut_down();
            return Err(err);
        }
        Ok(cgroups)
    }

    /// One round trip into a command cgroup and back, and `cgroup.kill`
    /// present (Linux 5.14+): what every command will need.
    fn probe(&mut self) -> io::Result<()> {
        let path = self.take_cgroup()?;
        let result = (|| {
            if !path.join("cgroup.kill").exists() {
                return Err(io::Error::other("no cgroup.kill (Linux 5.14 or later needed)"));
            }
            write_file(&path.join("cgroup.procs"), b"0")?;
            self.home.write_all(b"0")
        })();
        if result.is_ok() {
            self.spare.push(path);
        } else {
            let _ = fs::remove_dir(&path);
        }
        result
    }

    /// A spare empty command cgroup, or a new one.
    fn take_cgroup(&mut self) -> io::Result<PathBuf> {
        if let Some(path) = self.spare.pop() {
            return Ok(path);
        }
        // A name left over by an earlier server in a delegated subtree is
        // skipped, not reused: it may hold that server's strays.
        for _ in 0..64 {
            let path = self.subtree.join(format!("cmd-{}", self.next));
            self.next += 1;
            match fs::create_dir(&path) {
                Ok(()) => return Ok(path),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::other("no free command cgroup name"))
    }

    /// Moves the server back home after a spawn inside `path`.
    fn go_home(&mut self, path: &Path) {
        // Retry once: a failed move would leave the server in a command's
        // cgroup, whose processes are signalled and killed.
        if self.home.write_all(b"0").is_ok() || self.home.write_all(b"0").is_ok() {
            return;
        }
        error!(
            "cannot move back out of {}: that cgroup will not be cgroup.killed",
            path.display()
        );
        self.stuck_in = Some(path.to_path_buf());
    }

    fn kill(&self, path: &Path) {
        if self.stuck_in.as_deref() == Some(path) {
            return;
        }
        if let Err(err) = write_file(&path.join("cgroup.kill"), b"1") {
            debug!("cgroup.kill of {} failed: {err}", path.display());
        }
    }

    /// A command ended: its cgroup, killed if anything is left in it, is
    /// kept spare or removed once empty.
    fn release(&mut self, path: PathBuf) {
        if is_populated(&path) {
            self.kill(&path);
            self.pending.push(path);
        } else {
            self.recycle(path);
        }
    }

    fn recycle(&mut self, path: PathBuf) {
        if self.spare.len() < SPARE_CGROUPS && self.stuck_in.as_deref() != Some(path.as_path()) {
            self.spare.push(path);
            return;
        }
        if let Err(err) = fs::remove_dir(&path) {
            if err.raw_os_error() == Some(libc::EBUSY) {
                self.pending.push(path);
            } else {
                debug!("cannot remove {}: {err}", path.display());
            }
        }
    }

    fn tidy(&mut self) {
        for path in std::mem::take(&mut self.pending) {
            if is_populated(&path) {
                self.pending.push(path);
            } else {
                self.recycle(path);
            }
        }
    }

    /// Kills every command cgroup (spares, pending and any other) and removes
    /// them, then the subtree if we made it.
    fn shut_down(&mut self) {
        let mut paths: Vec<PathBuf> = command_cgroups(&self.subtree);
        paths.retain(|path| self.stuck_in.as_deref() != Some(path.as_path()));
        for path in &paths {
            if is_populated(path) {
                self.kill(path);
            }
        }
        let until = Instant::now() + EXIT_WAIT;
        let mut left = paths;
        while !left.is_empty() && Instant::now() < until {
            left.retain(|path| {
                is_populated(path) || fs::remove_dir(path).is_err_and(|err| err.raw_os_error() == Some(libc::EBUSY))
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for path in &left {
            warn!("{} still populated at exit: not removed", path.display());
        }
        self.spare.clear();
        self.pending.clear();
        if self.owns_subtree && left.is_empty() {
            if let Err(err) = fs::remove_dir(&self.subtree) {
                warn!("cannot remove {}: {err}", self.subtree.display());
            }
        }
    }
}

/// The `cmd-*` cgroups directly under `subtree`.
fn command_cgroups(subtree: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(subtree) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("cmd-"))
        .map(|entry| entry.path())
        .collect()
}

/// Removes the empty subtrees of servers that are gone (one killed with
/// SIGKILL cannot clean up). A populated one is left alone.
fn remove_stale_subtrees(mount: &Path) {
    let Ok(entries) = fs::read_dir(mount) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("ssecommander-")) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        for path in command_cgroups(&entry.path()) {
            let _ = fs::remove_dir(path);
        }
        let _ = fs::remove_dir(entry.path());
    }
}

fn make_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(bytes)
}

/// True while `cgroup.events` says `populated 1`; an unreadable file (the
/// cgroup is gone) reads as empty.
fn is_populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|events| events.lines().any(|line| line == "populated 1"))
        .unwrap_or(false)
}

fn cgroup_pids(path: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(path.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The mount point and root of the cgroup2 hierarchy, from mountinfo.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        Some((PathBuf::from(unescape(fields.get(4)?)), unescape(fields.get(3)?)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\` and three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Our cgroup v2 path, from the `0::` line of `/proc/self/cgroup`.
fn own_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

// ----- subreaper -----------------------------------------------------------

impl Tree {
    /// Brings scope `id`'s members up to date and returns them: the living
    /// descendants of its leader and of members seen before (they may have
    /// been re-parented to us), plus orphans of ours no scope knows, when
    /// they share the leader's group or the leader has exited (orphans
    /// re-parented at its exit are its own).
    fn refresh(&mut self, id: u64, own_pid: libc::pid_t) -> Vec<Proc> {
        let snapshot = match self.snapshot.take() {
            Some((at, snapshot)) if at.elapsed() < SNAPSHOT_AGE => (at, snapshot),
            _ => (Instant::now(), processes()),
        };
        let members = self.refresh_with(id, own_pid, &snapshot.1);
        self.snapshot = Some(snapshot);
        members
    }

    fn refresh_with(&mut self, id: u64, own_pid: libc::pid_t, snapshot: &[Stat]) -> Vec<Proc> {
        let by_pid: HashMap<libc::pid_t, Stat> = snapshot.iter().map(|s| (s.proc.pid, *s)).collect();
        let alive = |p: &Proc| by_pid.get(&p.pid).is_some_and(|s| s.proc == *p && !s.zombie);
        let known: HashSet<Proc> = self
            .scopes
            .iter()
            .filter(|(other, _)| **other != id)
            .flat_map(|(_, t)| t.members.iter().copied())
            .collect();
        let leaders: HashSet<libc::pid_t> = self.scopes.values().map(|t| t.leader).collect();
        let Some(tracked) = self.scopes.get_mut(&id) else {
            return Vec::new();
        };
        let leader = tracked.leader;
        if leader <= 1 {
            return Vec::new();
        }
        let leader_exited = by_pid.get(&leader).is_none_or(|s| s.zombie);
        let mut roots: Vec<libc::pid_t> = vec![leader];
        roots.extend(tracked.members.iter().filter(|p| alive(p)).map(|p| p.pid));
        roots.extend(
            snapshot
                .iter()
                .filter(|s| s.ppid == own_pid && !s.zombie)
                .filter(|s| !leaders.contains(&s.proc.pid) && !known.contains(&s.proc))
                .filter(|s| leader_exited || s.pgrp == leader)
                .map(|s| s.proc.pid),
        );
        let mut members = descendants(&roots, snapshot);
        members.retain(|p| p.pid != leader && !known.contains(p));
        tracked.members = members.clone();
        members
    }
}

/// `roots` (those alive) and all their living descendants in `snapshot`.
fn descendants(roots: &[libc::pid_t], snapshot: &[Stat]) -> Vec<Proc> {
    let mut children: HashMap<libc::pid_t, Vec<&Stat>> = HashMap::new();
    for stat in snapshot {
        children.entry(stat.ppid).or_default().push(stat);
    }
    let mut seen: HashSet<libc::pid_t> = HashSet::new();
    let mut out = Vec::new();
    let mut queue: Vec<libc::pid_t> = roots.to_vec();
    // Bounded by the snapshot: each pid is visited once.
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(stat) = snapshot.iter().find(|s| s.proc.pid == pid) {
            if !stat.zombie {
                out.push(stat.proc);
            }
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().map(|s| s.proc.pid));
        }
    }
    out
}

/// At exit in subreaper mode: SIGKILL to every descendant of ours (the
/// commands left and all they started), then reap what is ours, briefly.
fn kill_all_descendants(own_pid: libc::pid_t) {
    let snapshot = processes();
    let mut all = descendants(&[own_pid], &snapshot);
    all.retain(|p| p.pid != own_pid);
    for proc in &all {
        let _ = sys::kill_pid(proc.pid, libc::SIGKILL);
    }
    let until = Instant::now() + EXIT_WAIT;
    let mut ours: Vec<libc::pid_t> = snapshot
        .iter()
        .filter(|s| s.ppid == own_pid)
        .map(|s| s.proc.pid)
        .collect();
    while !ours.is_empty() && Instant::now() < until {
        ours.retain(|&pid| !sys::reap_pid(pid));
        if !ours.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Every process `/proc` shows (thread-group leaders), as far as readable.
fn processes() -> Vec<Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &text)
        })
        .collect()
}

/// Parses `/proc/<pid>/stat`: the name in parentheses may hold anything, so
/// fields are counted from its last `)`.
fn parse_stat(pid: libc::pid_t, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3), ppid (4), pgrp (5) … starttime (22).
    Some(Stat {
        proc: Proc {
            pid,
            start: fields.get(19)?.parse().ok()?,
        },
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        zombie: matches!(*fields.first()?, "Z" | "X"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_a_hybrid_layout() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_owned()))
        );
        assert_eq!(cgroup2_mount("31 23 0:28 / /x rw - tmpfs tmpfs rw\n"), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/plain\09"), r"/plain\09");
    }

    #[test]
    fn own_cgroup_is_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/x/y\n0::/system.slice/ssecommander.service\n";
        assert_eq!(own_cgroup(text).as_deref(), Some("/system.slice/ssecommander.service"));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let text = "42 (a) b (c) S 7 42 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let stat = parse_stat(42, text).expect("a valid stat line");
        assert_eq!(
            (stat.ppid, stat.pgrp, stat.proc.start, stat.zombie),
            (7, 42, 12345, false)
        );
        let zombie = parse_stat(9, "9 (x) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0").expect("valid");
        assert!(zombie.zombie);
        assert!(parse_stat(1, "1 (x").is_none());
    }

    #[test]
    fn descendants_follow_parent_links_and_skip_zombies() {
        let stat = |pid, ppid, zombie| Stat {
            proc: Proc { pid, start: 1 },
            ppid,
            pgrp: pid,
            zombie,
        };
        let snapshot = [
            stat(10, 1, false),
            stat(11, 10, false),
            stat(12, 11, true),
            stat(13, 12, false),
            stat(20, 1, false),
        ];
        let mut found: Vec<_> = descendants(&[10], &snapshot).iter().map(|p| p.pid).collect();
        found.sort_unstable();
        assert_eq!(found, vec![10, 11, 13]);
    }
}
