//! Subreaper mode: the server is the child subreaper, so orphans are
//! re-parented to it; each command's descendants are found and stopped
//! with it. Best effort: see docs/SECURITY.md (Containment).
//!
//! Finding them reads only the command's family, not all of `/proc`: a
//! living descendant of a command is a descendant of its leader, of a
//! member seen before, or — its parent gone — of an orphan re-parented to
//! us, so the server's own children (`/proc/PID/task/TID/children`) and,
//! down from there, each process's children are all it takes. A `true`
//! costs reading the server's children list and the leader's `stat`,
//! however many processes the machine runs. Where the kernel has no
//! `children` files (`CONFIG_PROC_CHILDREN`), every `/proc/PID/stat` is
//! read instead, a walk reused for [`SNAPSHOT_AGE`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::EXIT_WAIT;
use crate::sys;

/// How long what was read of `/proc` is reused (subreaper mode). One
/// command's exit asks several times in a row (signal, is it empty, drop),
/// and several commands end in one turn under load; a whole walk costs
/// about a millisecond. Reuse is safe enough: what a stale read misses was
/// forked by a process it saw, which then still counts as alive.
const SNAPSHOT_AGE: Duration = Duration::from_millis(2);

/// How many times one look reads the server's children list for orphans
/// (see `Tree::refresh_with`): a second round finds what the first one's
/// orphans left while their families were read; more is for the next look.
const ORPHAN_ROUNDS: usize = 3;

/// Subreaper mode: the descendants seen under each live command.
#[derive(Default)]
pub(super) struct Tree {
    next: u64,
    scopes: HashMap<u64, Tracked>,
    /// The last walk of `/proc` and when it was taken (see [`SNAPSHOT_AGE`]),
    /// where the kernel has no `children` files.
    snapshot: Option<(Instant, Vec<Stat>)>,
    /// `None` until first asked: whether `/proc/PID/task/TID/children`
    /// exists here.
    children_files: Option<bool>,
    /// What was read of the processes asked about lately, and when.
    live: Option<(Instant, Live)>,
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

/// One command's descendants, tracked in the shared [`Tree`].
pub(super) struct TreeScope {
    tree: Rc<RefCell<Tree>>,
    id: u64,
    /// The server's pid: its children are where orphans land.
    own_pid: libc::pid_t,
}

impl TreeScope {
    /// A new, empty entry in `tree`.
    pub(super) fn new(tree: &Rc<RefCell<Tree>>, own_pid: libc::pid_t) -> TreeScope {
        let mut shared = tree.borrow_mut();
        let id = shared.next;
        shared.next += 1;
        shared.scopes.insert(
            id,
            Tracked {
                leader: 0,
                members: Vec::new(),
            },
        );
        TreeScope {
            tree: Rc::clone(tree),
            id,
            own_pid,
        }
    }

    /// The scope's number, for a debug line.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Records the command's leader (its pid is its process group).
    pub(super) fn set_leader(&self, pid: libc::pid_t) {
        if let Some(tracked) = self.tree.borrow_mut().scopes.get_mut(&self.id) {
            tracked.leader = pid;
        }
    }

    /// Sends `signal` to every descendant found under the command.
    pub(super) fn signal(&self, signal: libc::c_int) {
        for member in self.tree.borrow_mut().refresh(self.id, self.own_pid) {
            let _ = sys::kill_pid(member.pid, signal);
        }
    }

    /// True when no descendant of the command is left (its group aside).
    pub(super) fn is_empty(&self) -> bool {
        self.tree.borrow_mut().refresh(self.id, self.own_pid).is_empty()
    }
}

impl Drop for TreeScope {
    /// The command is over: its descendants still running are strays and
    /// are killed.
    fn drop(&mut self) {
        let Ok(mut tree) = self.tree.try_borrow_mut() else {
            return;
        };
        for member in tree.refresh(self.id, self.own_pid) {
            let _ = sys::kill_pid(member.pid, libc::SIGKILL);
        }
        tree.scopes.remove(&self.id);
    }
}

impl Tree {
    /// Brings scope `id`'s members up to date and returns them: the living
    /// descendants of its leader and of members seen before (they may have
    /// been re-parented to us), plus orphans of ours no scope knows, when
    /// they share the leader's group or the leader has exited (orphans
    /// re-parented at its exit are its own).
    fn refresh(&mut self, id: u64, own_pid: libc::pid_t) -> Vec<Proc> {
        let children_files = *self
            .children_files
            .get_or_insert_with(|| fs::metadata(format!("/proc/{own_pid}/task/{own_pid}/children")).is_ok());
        if children_files {
            let mut live = match self.live.take() {
                Some((at, live)) if at.elapsed() < SNAPSHOT_AGE => (at, live),
                _ => (Instant::now(), Live::new(own_pid)),
            };
            let members = self.refresh_with(id, own_pid, &mut live.1);
            self.live = Some(live);
            return members;
        }
        let snapshot = match self.snapshot.take() {
            Some((at, snapshot)) if at.elapsed() < SNAPSHOT_AGE => (at, snapshot),
            _ => (Instant::now(), processes()),
        };
        let members = self.refresh_with(id, own_pid, &mut Snapshot::new(&snapshot.1));
        self.snapshot = Some(snapshot);
        members
    }

    fn refresh_with(&mut self, id: u64, own_pid: libc::pid_t, view: &mut impl View) -> Vec<Proc> {
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
        let mut roots: Vec<libc::pid_t> = vec![leader];
        for member in &tracked.members {
            if view.stat(member.pid).is_some_and(|s| s.proc == *member && !s.zombie) {
                roots.push(member.pid);
            }
        }
        let mut seen: HashSet<libc::pid_t> = HashSet::new();
        let mut members = Vec::new();
        descend(&roots, view, &mut seen, &mut members);
        // Orphans of ours no scope knows (our children that lead no
        // command). Our list is read after the family's: a process
        // re-parented to us while they were read (its parent died) is then
        // in one list or the other. The leader's state is read after our
        // list, so what its exit left us counts as its own. A round that
        // took orphans read their families: once more, for what those left.
        for _ in 0..ORPHAN_ROUNDS {
            let ours = view.children(own_pid);
            let leader_exited = view.exited(leader);
            let mut orphans = Vec::new();
            for pid in ours {
                if leaders.contains(&pid) || seen.contains(&pid) {
                    continue;
                }
                let Some(s) = view.stat(pid) else { continue };
                if !s.zombie && !known.contains(&s.proc) && (leader_exited || s.pgrp == leader) {
                    orphans.push(pid);
                }
            }
            if orphans.is_empty() {
                break;
            }
            descend(&orphans, view, &mut seen, &mut members);
        }
        members.retain(|p| p.pid != leader && !known.contains(p));
        tracked.members = members.clone();
        members
    }
}

/// `roots` (those alive) and all their living descendants in `view`.
fn descendants(roots: &[libc::pid_t], view: &mut impl View) -> Vec<Proc> {
    let mut out = Vec::new();
    descend(roots, view, &mut HashSet::new(), &mut out);
    out
}

/// Adds to `out` `roots` and their living descendants not in `seen`.
fn descend(roots: &[libc::pid_t], view: &mut impl View, seen: &mut HashSet<libc::pid_t>, out: &mut Vec<Proc>) {
    let mut queue: Vec<libc::pid_t> = roots.to_vec();
    // Bounded: each pid is visited once, and pids are finite (at most
    // `pid_max`; in practice the command's family).
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(stat) = view.stat(pid) else { continue };
        if !stat.zombie {
            out.push(stat.proc);
        }
        queue.extend(view.children(pid));
    }
}

/// What the walk needs to know of processes: each one's `stat`, and its
/// children.
trait View {
    fn stat(&mut self, pid: libc::pid_t) -> Option<Stat>;
    fn children(&mut self, pid: libc::pid_t) -> Vec<libc::pid_t>;

    /// `pid` has exited (a zombie, or gone), as of now.
    fn exited(&mut self, pid: libc::pid_t) -> bool {
        self.stat(pid).is_none_or(|s| s.zombie)
    }
}

/// A whole `/proc` walk (kernels without `children` files, and exit).
struct Snapshot {
    by_pid: HashMap<libc::pid_t, Stat>,
    children: HashMap<libc::pid_t, Vec<libc::pid_t>>,
}

impl Snapshot {
    fn new(all: &[Stat]) -> Snapshot {
        let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
        for stat in all {
            children.entry(stat.ppid).or_default().push(stat.proc.pid);
        }
        Snapshot {
            by_pid: all.iter().map(|s| (s.proc.pid, *s)).collect(),
            children,
        }
    }
}

impl View for Snapshot {
    fn stat(&mut self, pid: libc::pid_t) -> Option<Stat> {
        self.by_pid.get(&pid).copied()
    }

    fn children(&mut self, pid: libc::pid_t) -> Vec<libc::pid_t> {
        self.children.get(&pid).cloned().unwrap_or_default()
    }
}

/// Reads only the processes asked about, each once.
struct Live {
    own_pid: libc::pid_t,
    stats: HashMap<libc::pid_t, Option<Stat>>,
    children: HashMap<libc::pid_t, Vec<libc::pid_t>>,
}

impl Live {
    fn new(own_pid: libc::pid_t) -> Live {
        Live {
            own_pid,
            stats: HashMap::new(),
            children: HashMap::new(),
        }
    }

    /// The children of every thread of `pid` (a child's parent is the
    /// thread that forked it; an orphan goes to the first live thread of
    /// its new parent). Ours are the main thread's alone: it runs the loop
    /// that starts every command, and as the first thread it takes the
    /// orphans.
    fn read_children(&self, pid: libc::pid_t) -> Vec<libc::pid_t> {
        let parse =
            |text: &str| -> Vec<libc::pid_t> { text.split_whitespace().filter_map(|n| n.parse().ok()).collect() };
        if pid == self.own_pid {
            return fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .map(|text| parse(&text))
                .unwrap_or_default();
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                out.extend(parse(&text));
            }
        }
        out
    }
}

impl View for Live {
    fn stat(&mut self, pid: libc::pid_t) -> Option<Stat> {
        *self.stats.entry(pid).or_insert_with(|| {
            let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &text)
        })
    }

    /// Kept for reuse, except that our own list is never older than any
    /// other kept one: a process re-parented to us after its old parent's
    /// list was read must be in ours (see `Tree::refresh_with`).
    fn children(&mut self, pid: libc::pid_t) -> Vec<libc::pid_t> {
        if let Some(children) = self.children.get(&pid) {
            return children.clone();
        }
        if pid != self.own_pid {
            self.children.remove(&self.own_pid);
        }
        let children = self.read_children(pid);
        self.children.insert(pid, children.clone());
        children
    }

    /// An exit seen is final; a process seen alive is read again, as its
    /// exit may have left us orphans since (asked after our list).
    fn exited(&mut self, pid: libc::pid_t) -> bool {
        if self.stats.get(&pid).is_some_and(|s| s.is_some_and(|s| !s.zombie)) {
            self.stats.remove(&pid);
        }
        self.stat(pid).is_none_or(|s| s.zombie)
    }
}

/// At exit in subreaper mode: SIGKILL to every descendant of ours (the
/// commands left and all they started), then reap what is ours, briefly.
pub(super) fn kill_all_descendants(own_pid: libc::pid_t) {
    let snapshot = processes();
    let mut all = descendants(&[own_pid], &mut Snapshot::new(&snapshot));
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
        let mut found: Vec<_> = descendants(&[10], &mut Snapshot::new(&snapshot))
            .iter()
            .map(|p| p.pid)
            .collect();
        found.sort_unstable();
        assert_eq!(found, vec![10, 11, 13]);
    }

    /// Processes that change while they are read: reading the children of
    /// `trigger` first lets `dying` exit, its children going to `reaper`.
    struct Changing {
        stats: HashMap<libc::pid_t, Stat>,
        children: HashMap<libc::pid_t, Vec<libc::pid_t>>,
        trigger: libc::pid_t,
        dying: libc::pid_t,
        reaper: libc::pid_t,
    }

    impl View for Changing {
        fn stat(&mut self, pid: libc::pid_t) -> Option<Stat> {
            self.stats.get(&pid).copied()
        }

        fn children(&mut self, pid: libc::pid_t) -> Vec<libc::pid_t> {
            if pid == self.trigger {
                let left = self.children.remove(&self.dying).unwrap_or_default();
                self.children.entry(self.reaper).or_default().extend(left);
                if let Some(stat) = self.stats.get_mut(&self.dying) {
                    stat.zombie = true;
                }
            }
            self.children.get(&pid).cloned().unwrap_or_default()
        }
    }

    /// Our pid 1 serves one command, leader 10; `family` is (pid, ppid,
    /// pgrp) of the other processes; `dying` exits when `trigger`'s
    /// children are read. The members found, sorted.
    fn found_while(
        family: &[(libc::pid_t, libc::pid_t, libc::pid_t)],
        trigger: libc::pid_t,
        dying: libc::pid_t,
    ) -> Vec<libc::pid_t> {
        let stat = |pid, ppid, pgrp| Stat {
            proc: Proc { pid, start: 1 },
            ppid,
            pgrp,
            zombie: false,
        };
        let mut view = Changing {
            stats: HashMap::new(),
            children: HashMap::new(),
            trigger,
            dying,
            reaper: 1,
        };
        for &(pid, ppid, pgrp) in [(10, 1, 10)].iter().chain(family) {
            view.stats.insert(pid, stat(pid, ppid, pgrp));
            view.children.entry(ppid).or_default().push(pid);
        }
        let mut tree = Tree::default();
        tree.scopes.insert(
            0,
            Tracked {
                leader: 10,
                members: Vec::new(),
            },
        );
        let mut found: Vec<_> = tree.refresh_with(0, 1, &mut view).iter().map(|p| p.pid).collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn a_grandchild_reparented_while_its_family_is_read_is_found() {
        // 10 -> 11 -> 12; 11 exits as its own children are read: 12 is ours
        // by then, and in our list, read after.
        assert_eq!(found_while(&[(11, 10, 10), (12, 11, 10)], 11, 11), vec![11, 12]);
    }

    #[test]
    fn our_list_is_read_again_after_any_other_list_is() {
        let mut live = Live::new(1);
        live.children.insert(1, vec![42]);
        live.children.insert(7, Vec::new());
        live.children(7);
        assert_eq!(live.children(1), vec![42], "nothing read since: ours kept");
        // No such process: read (nothing found), and ours is not kept.
        assert!(live.children(libc::pid_t::MAX).is_empty());
        assert!(!live.children.contains_key(&1));
    }

    #[test]
    fn orphans_the_leaders_exit_leaves_are_its_own() {
        // 12 left the group (setsid); the leader exits as its children are
        // read: 12 is an orphan of ours from another group, the leader's
        // all the same, as it has exited by the time our list is read.
        assert_eq!(found_while(&[(12, 10, 12)], 10, 10), vec![12]);
        // An unrelated orphan from another group, the leader alive: not its.
        assert_eq!(found_while(&[(12, 1, 12)], 99, 99), Vec::<libc::pid_t>::new());
    }
}
