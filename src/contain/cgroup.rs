//! cgroup v2 mode: each command in a cgroup of its own under the server's
//! subtree; stopping signals every process the cgroup lists, `cgroup.kill`
//! ends what is left, and the cgroup is removed (or kept spare) once empty.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::{Running, EXIT_WAIT};
use crate::sys;

/// Empty command cgroups kept for reuse: a spawn then costs two moves and no
/// `mkdir`/`rmdir`. A few cover a burst of short commands; more would only
/// litter the hierarchy.
const SPARE_CGROUPS: usize = 16;

/// cgroup v2 mode: where command cgroups go and how to get back home.
pub(super) struct Cgroups {
    /// Parent of the command cgroups.
    subtree: PathBuf,
    /// `subtree`, open: each command's cgroup and its `cgroup.events` are
    /// opened from here, not looked up from the root every time.
    subtree_dir: OwnedFd,
    /// We made `subtree` (our cgroup was the hierarchy's root): remove it at exit.
    owns_subtree: bool,
    /// `cgroup.procs` of the server's own cgroup, kept open to move back to.
    home: File,
    /// Next command cgroup number.
    next: u64,
    /// Command cgroups still populated after their command ended: removed
    /// (or kept spare) once empty.
    pending: Vec<(PathBuf, Option<Running>)>,
    /// Empty command cgroups ready for reuse.
    spare: Vec<PathBuf>,
    /// Command cgroups that were `cgroup.kill`ed: removed once empty, never
    /// reused. Linux (6.18 seen) SIGKILLs every child later started by
    /// `clone3` into a cgroup that was once killed, before its first
    /// instruction: a reused one would end every command spawned into it.
    killed: Vec<PathBuf>,
    /// A move back home failed and the server is still in this cgroup: it is
    /// never `cgroup.kill`ed.
    stuck_in: Option<PathBuf>,
    /// Commands start in their cgroup by `clone3` (`CLONE_INTO_CGROUP`):
    /// probed at start, unless `cgroup-migrate` was asked for.
    clone_into: bool,
}

/// One command's cgroup.
pub(super) struct CgroupScope {
    cgroups: Rc<RefCell<Cgroups>>,
    path: PathBuf,
    /// The scope's count in `Containment::running`, handed over at drop.
    running: Option<Running>,
    /// The server's pid: it passes through the cgroup at each spawn, and is
    /// never signalled.
    own_pid: libc::pid_t,
    /// Seen without a live process after the spawn: it stays so (nothing
    /// is left in it to fork, and the server moves only into spare ones),
    /// so the command's exit reads `cgroup.events` once, not three times.
    seen_empty: Cell<bool>,
}

impl CgroupScope {
    /// A spare or new command cgroup of `cgroups`.
    pub(super) fn new(cgroups: &Rc<RefCell<Cgroups>>, own_pid: libc::pid_t) -> io::Result<CgroupScope> {
        let path = cgroups.borrow_mut().take_cgroup()?;
        Ok(CgroupScope {
            cgroups: Rc::clone(cgroups),
            path,
            running: None,
            own_pid,
            seen_empty: Cell::new(false),
        })
    }

    /// The cgroup's path, for a debug line.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `spawn` with a descriptor of the cgroup to start the child in,
    /// where the kernel can (see `Cgroups::clone_into`); else as
    /// [`CgroupScope::run_inside`], with `None`.
    pub(super) fn spawn_into<T>(&self, spawn: impl FnOnce(Option<RawFd>) -> T) -> io::Result<T> {
        if !self.cgroups.borrow().clone_into {
            return self.run_inside(|| spawn(None));
        }
        // Opened per spawn, not kept: a running command costs no descriptor.
        let dir = self.cgroups.borrow().open_command(&self.path, c"")?;
        Ok(spawn(Some(dir.as_raw_fd())))
    }

    /// Runs `spawn` with the server inside the cgroup, so what it starts
    /// lands there; fails, without running `spawn`, if the server cannot
    /// enter it.
    pub(super) fn run_inside<T>(&self, spawn: impl FnOnce() -> T) -> io::Result<T> {
        write_file(&self.path.join("cgroup.procs"), b"0")?;
        let spawned = spawn();
        self.cgroups.borrow_mut().go_home(&self.path);
        Ok(spawned)
    }

    /// Sends `signal` to every process the cgroup lists but the server;
    /// SIGKILL also `cgroup.kill`s it.
    pub(super) fn signal(&self, signal: libc::c_int) {
        if self.is_empty() {
            return;
        }
        for pid in cgroup_pids(&self.path) {
            if pid != self.own_pid {
                let _ = sys::kill_pid(pid, signal);
            }
        }
        if signal == libc::SIGKILL {
            self.cgroups.borrow_mut().kill(&self.path);
        }
    }

    /// True when the cgroup holds no live process (asked only once the
    /// command was spawned into it).
    pub(super) fn is_empty(&self) -> bool {
        if !self.seen_empty.get() && !self.cgroups.borrow().is_populated(&self.path) {
            self.seen_empty.set(true);
        }
        self.seen_empty.get()
    }

    /// Keeps `running` until the cgroup is found empty after the drop.
    pub(super) fn hold_until_empty(&mut self, running: Option<Running>) {
        self.running = running;
    }
}

impl Drop for CgroupScope {
    /// The command is over: the cgroup, killed if anything is left in it,
    /// goes to clean-up.
    fn drop(&mut self) {
        if let Ok(mut cgroups) = self.cgroups.try_borrow_mut() {
            let populated = !self.seen_empty.get() && is_populated(&self.path);
            cgroups.release(std::mem::take(&mut self.path), self.running.take(), populated);
        }
    }
}

impl Cgroups {
    /// Finds the cgroup v2 hierarchy and our place in it, makes the subtree
    /// the commands go in, and proves a move in and out works; with
    /// `clone_into`, also tries starting a child straight into a command
    /// cgroup, and uses that way when it works.
    pub(super) fn set_up(own_pid: libc::pid_t, clone_into: bool) -> io::Result<Cgroups> {
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
        let subtree_dir = match open_dir(&subtree) {
            Ok(dir) => dir,
            Err(err) => {
                if owns_subtree {
                    let _ = fs::remove_dir(&subtree);
                }
                return Err(err);
            }
        };
        let mut cgroups = Cgroups {
            subtree,
            subtree_dir,
            owns_subtree,
            home: home_procs,
            next: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            killed: Vec::new(),
            stuck_in: None,
            clone_into: false,
        };
        if let Err(err) = cgroups.probe() {
            cgroups.shut_down();
            return Err(err);
        }
        if clone_into {
            cgroups.probe_clone_into();
        }
        Ok(cgroups)
    }

    /// Parent of the command cgroups.
    pub(super) fn subtree(&self) -> &Path {
        &self.subtree
    }

    /// Opens `file` (empty: the directory itself) of the command cgroup
    /// at `path`, from the open subtree.
    fn open_command(&self, path: &Path, file: &CStr) -> io::Result<OwnedFd> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("a command cgroup without a name"))?;
        let mut relative = name.as_bytes().to_vec();
        if file.is_empty() {
            let relative = CString::new(relative).map_err(io::Error::other)?;
            return sys::open_at(&self.subtree_dir, &relative, libc::O_RDONLY | libc::O_DIRECTORY);
        }
        relative.push(b'/');
        relative.extend_from_slice(file.to_bytes());
        let relative = CString::new(relative).map_err(io::Error::other)?;
        sys::open_at(&self.subtree_dir, &relative, libc::O_RDONLY)
    }

    /// [`is_populated`] of a command cgroup, opened from the subtree.
    fn is_populated(&self, path: &Path) -> bool {
        self.open_command(path, c"cgroup.events")
            .is_ok_and(|events| populated_in(File::from(events)))
    }

    /// True while some ended command's cgroup is not yet empty.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
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

    /// Sets `clone_into` if a child can be started straight into a command
    /// cgroup here (said in the log either way).
    fn probe_clone_into(&mut self) {
        let Some(path) = self.spare.last() else { return };
        let tried = open_dir(path).and_then(|dir| sys::clone_into_cgroup_works(&dir));
        match tried {
            Ok(()) => {
                info!("spawn: commands start in their cgroup (clone3 with CLONE_INTO_CGROUP)");
                self.clone_into = true;
            }
            Err(err) => {
                info!("spawn: the server moves into each command's cgroup to start it (clone3 into a cgroup: {err})")
            }
        }
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

    fn kill(&mut self, path: &Path) {
        if self.stuck_in.as_deref() == Some(path) {
            return;
        }
        if !self.killed.iter().any(|killed| killed == path) {
            self.killed.push(path.to_path_buf());
        }
        if let Err(err) = write_file(&path.join("cgroup.kill"), b"1") {
            debug!("cgroup.kill of {} failed: {err}", path.display());
        }
    }

    /// A command ended: its cgroup, killed if anything is left in it, is
    /// kept spare or removed once empty.
    /// `running` (its command's count) is given back once it is empty.
    fn release(&mut self, path: PathBuf, running: Option<Running>, populated: bool) {
        if populated {
            self.kill(&path);
            self.pending.push((path, running));
        } else {
            self.recycle(path);
        }
    }

    fn recycle(&mut self, path: PathBuf) {
        let killed = self.killed.iter().position(|killed| *killed == path);
        if killed.is_none() && self.spare.len() < SPARE_CGROUPS && self.stuck_in.as_deref() != Some(path.as_path()) {
            self.spare.push(path);
            return;
        }
        if let Err(err) = fs::remove_dir(&path) {
            if err.raw_os_error() == Some(libc::EBUSY) {
                self.pending.push((path, None));
                return;
            }
            debug!("cannot remove {}: {err}", path.display());
        }
        if let Some(index) = killed {
            self.killed.swap_remove(index);
        }
    }

    pub(super) fn tidy(&mut self) {
        for (path, running) in std::mem::take(&mut self.pending) {
            // A pending cgroup is a command's, under the open subtree.
            if self.is_populated(&path) {
                self.pending.push((path, running));
            } else {
                self.recycle(path);
            }
        }
    }

    /// Kills every command cgroup (spares, pending and any other) and removes
    /// them, then the subtree if we made it.
    pub(super) fn shut_down(&mut self) {
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
        self.killed.clear();
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

/// Clears what servers that are gone left under `mount` (one killed with
/// SIGKILL, or by the OOM killer, could not stop its commands): for each
/// `ssecommander-PID` whose PID is not running, `cgroup.kill`s each command
/// cgroup that still holds processes, removes it once empty, and logs one
/// line per cgroup; then removes the subtree. Waits at most `EXIT_WAIT` for
/// killed cgroups to empty; one still populated then is left, and said so.
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
        let mut left: Vec<(PathBuf, usize)> = Vec::new();
        for path in command_cgroups(&entry.path()) {
            let procs = cgroup_pids(&path).len();
            if is_populated(&path) {
                if let Err(err) = write_file(&path.join("cgroup.kill"), b"1") {
                    warn!("cannot kill {} (left by server {pid}): {err}", path.display());
                }
            }
            left.push((path, procs));
        }
        let until = Instant::now() + EXIT_WAIT;
        loop {
            left.retain(|(path, procs)| {
                if is_populated(path) {
                    return true;
                }
                match fs::remove_dir(path) {
                    Ok(()) if *procs > 0 => warn!(
                        "killed {procs} process(es) left in {} by server {pid}, which is gone; removed it",
                        path.display()
                    ),
                    Ok(()) => info!("removed {}, left empty by server {pid}, which is gone", path.display()),
                    Err(err) => warn!("cannot remove {} (left by server {pid}): {err}", path.display()),
                }
                false
            });
            if left.is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for (path, _) in &left {
            warn!(
                "{} (left by server {pid}) still populated after cgroup.kill: not removed",
                path.display()
            );
        }
        if left.is_empty() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// A descriptor of the directory `path` (a cgroup, for `CLONE_INTO_CGROUP`).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)?;
    Ok(OwnedFd::from(dir))
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
/// Asked at every command's exit: one `read` into a buffer on the stack
/// (kernfs returns the whole small file at once), not `read_to_string`'s
/// `statx` and second read.
fn is_populated(path: &Path) -> bool {
    File::open(path.join("cgroup.events")).is_ok_and(populated_in)
}

/// `cgroup.events`, open, says `populated 1`.
fn populated_in(mut file: File) -> bool {
    let mut events = [0u8; 256];
    let Ok(n) = file.read(&mut events) else { return false };
    events[..n].split(|&b| b == b'\n').any(|line| line == b"populated 1")
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
}
