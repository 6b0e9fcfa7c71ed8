//! Which `PATH` directories are known not to hold a program, so the launch
//! check ([`super::launch`]) does not `statx` each of them again for every
//! command (with this machine's `PATH`, `true` cost 7 failing `statx` and
//! one that finds it).
//!
//! What is remembered: per program name, the index of the first `PATH`
//! entry where `statx` found something. The entries before it are skipped
//! next time, but only those whose directory is watched by an inotify
//! instance (`IN_CREATE`, `IN_MOVED_TO`, `IN_DELETE`, `IN_MOVED_FROM`,
//! `IN_ATTRIB`, `IN_DELETE_SELF`, `IN_MOVE_SELF`); an entry that could not
//! be watched (missing, not a directory, out of watches) is still looked at
//! every time, and the entry found is always looked at (its launch check,
//! `Checked` in `launch.rs`, depends on what `statx` says of it).
//!
//! Why it stays right: the watches are added before the `statx` calls whose
//! misses are remembered, and every lookup first reads the inotify
//! descriptor once (non-blocking). The kernel queues an event within the
//! `creat`, `rename`, `unlink` or `chmod` that causes it, so a program put
//! into an earlier directory before a request arrived is in the queue when
//! that request is looked up: any event at all forgets every name, and one
//! saying a watch no longer stands for its path (the directory deleted,
//! moved or unmounted; the queue overflowed; a read error other than
//! `EAGAIN`) also makes the instance again, with fresh watches, at once.
//! What is remembered is used only after a read found the queue empty.
//!
//! Not seen (documented in DESIGN.md and PERFORMANCE.md): a `PATH`
//! directory that comes to mean another directory without itself changing
//! — a symlink in its path re-pointed, a parent directory renamed, a mount
//! on top of it (a bind mount). There a namesake that appeared in such an
//! earlier directory is not found until something else clears the cache,
//! and the program found later on `PATH` runs. Nothing worse: the found
//! program is still checked, and an `execve` that fails late is still
//! reported as it is without the cache.
//!
//! Where inotify cannot be set up (`max_user_instances`, `EMFILE`), or no
//! `PATH` directory can be watched, nothing is remembered (every entry is
//! looked at, as before), and setting up is tried again after
//! [`RETRY_AFTER`] lookups.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::sys::check;
use crate::sys::fd::read_retrying;

/// Program names remembered (first in, first out). A name costs a few
/// dozen bytes, and looking through 64 short names costs far less than
/// the one `statx` it saves; a server runs a handful of programs.
const NAMES: usize = 64;

/// `PATH` entries that may be skipped: the first 64 (a bit each in a
/// `u64`); any later one is looked at every time.
const MAX_DIRS: usize = 64;

/// Lookups after inotify could not be set up before it is tried again: a
/// failed `inotify_init1` per command would cost what it saves, and a
/// shortage of descriptors or instances may pass.
const RETRY_AFTER: u32 = 256;

/// What each `PATH` directory is watched for: a name appearing, going or
/// changing its mode (`IN_ATTRIB`) there, and the directory itself going.
/// `IN_ONLYDIR`: a `PATH` entry that is a file is not watched (its
/// candidates fail with `ENOTDIR` and are looked at every time).
const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Events after which a watch may no longer stand for its `PATH` entry
/// (or events were lost): the instance is made again.
const LOST: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED | libc::IN_UNMOUNT | libc::IN_Q_OVERFLOW;

/// Bytes read from the inotify descriptor per lookup: room for 15 events
/// with the longest names (16 + 256 bytes each). More queued is read at
/// the next lookup, which forgets everything again.
const READ_BYTES: usize = 4096;

/// The `PATH` entries known not to hold each recently found program.
#[derive(Default)]
pub(super) struct PathCache {
    state: State,
}

#[derive(Default)]
enum State {
    /// Not set up ([`PathCache::set_up`] is called when the launch path is
    /// enabled), or to be set up again: done at the next lookup.
    #[default]
    Unmade,
    /// inotify could not be set up: nothing is skipped; tried again when
    /// `lookups_left` reaches 0.
    Off { lookups_left: u32 },
    /// Watching.
    On(Watches),
}

/// An inotify instance watching `PATH`'s directories, and what it vouches for.
struct Watches {
    inotify: OwnedFd,
    /// The directory list watched ([`super::ExecPlan::search`]); a plan
    /// with another list gets nothing skipped.
    dirs: &'static [PathBuf],
    /// Bit `i`: `dirs[i]` is watched.
    watched: u64,
    /// (program name, index of the first entry where `statx` found it),
    /// oldest first.
    found: Vec<(Box<[u8]>, usize)>,
}

/// What one lookup may skip: the watched entries before the one found last time.
#[derive(Clone, Copy, Default)]
pub(super) struct Known {
    /// The index found last time (0: nothing known).
    below: usize,
    /// [`Watches::watched`] at the lookup.
    watched: u64,
}

impl Known {
    /// True when `dirs[index]` is known not to hold the program: no
    /// `statx` needed.
    pub(super) fn missing(&self, index: usize) -> bool {
        index < self.below && index < MAX_DIRS && self.watched & (1 << index) != 0
    }
}

/// What one read of the inotify descriptor found.
enum Drained {
    /// Nothing queued (`EAGAIN`): what is remembered holds.
    Quiet,
    /// Something changed in a watched directory: forget every name.
    Changed,
    /// A watch may no longer stand for its path: make the instance again.
    Lost,
}

impl PathCache {
    /// What may be skipped looking for `name` in `dirs` (each joined with
    /// `name`, in order), after reading the inotify queue once. Sets the
    /// watches up again when one was lost (or when setting up failed
    /// earlier and its retry is due), before the caller's `statx` calls:
    /// those misses may then be remembered with [`PathCache::found`].
    pub(super) fn lookup(&mut self, dirs: &'static [PathBuf], name: &[u8]) -> Known {
        match &mut self.state {
            State::On(watches) if std::ptr::eq(watches.dirs, dirs) => match watches.drain() {
                Drained::Quiet => return watches.known(name),
                Drained::Changed => {
                    watches.found.clear();
                    return Known::default();
                }
                Drained::Lost => {}
            },
            State::On(_) => return Known::default(),
            State::Off { lookups_left } if *lookups_left > 0 => {
                *lookups_left -= 1;
                return Known::default();
            }
            State::Off { .. } | State::Unmade => {}
        }
        self.set_up(dirs);
        Known::default()
    }

    /// Makes the instance watching `dirs` (again), or notes that it cannot
    /// be made. Done at start too ([`super::launch::enable`]): its
    /// descriptor is then part of the server from the start, so a count of
    /// the server's descriptors before and after some commands does not
    /// see one more appear.
    pub(super) fn set_up(&mut self, dirs: &'static [PathBuf]) {
        // Dropping the old instance (if any) closes it and its watches.
        self.state = State::Unmade;
        self.state = match Watches::make(dirs) {
            Ok(watches) => State::On(watches),
            Err(err) => {
                log::debug!("spawn: PATH lookups not cached ({err})");
                State::Off {
                    lookups_left: RETRY_AFTER,
                }
            }
        };
    }

    /// `statx` found `name` at `dirs[index]`, after the caller looked at
    /// every entry before it that [`PathCache::lookup`] did not skip.
    pub(super) fn found(&mut self, dirs: &'static [PathBuf], name: &[u8], index: usize) {
        match &mut self.state {
            // Nothing to skip at index 0.
            State::On(watches) if index > 0 && std::ptr::eq(watches.dirs, dirs) => watches.remember(name, index),
            _ => {}
        }
    }
}

impl Watches {
    /// A new instance watching each of `dirs` that can be watched (the
    /// first [`MAX_DIRS`]); an error when none can be.
    fn make(dirs: &'static [PathBuf]) -> io::Result<Watches> {
        // SAFETY: inotify_init1 takes flags and touches no memory of ours.
        let fd = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
        // SAFETY: the descriptor is new and owned by nothing else.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut watched = 0u64;
        for (index, dir) in dirs.iter().enumerate().take(MAX_DIRS) {
            let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) else {
                continue;
            };
            // Not watched (missing, not a directory, no watches left): its
            // candidate is looked at every time.
            // SAFETY: inotify_add_watch reads the NUL-terminated `c_dir`,
            // alive for the call.
            if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c_dir.as_ptr(), WATCH_MASK) } >= 0 {
                watched |= 1 << index;
            }
        }
        if watched == 0 {
            return Err(io::Error::other("no PATH directory can be watched"));
        }
        Ok(Watches {
            inotify,
            dirs,
            watched,
            found: Vec::new(),
        })
    }

    /// One non-blocking read of the queue (events are only counted, not
    /// matched to a directory: any change forgets everything).
    fn drain(&self) -> Drained {
        let mut events = [0u8; READ_BYTES];
        let n = match read_retrying(&self.inotify, &mut events) {
            Ok(None) => return Drained::Quiet,
            Ok(Some(n)) if n > 0 => n,
            Ok(Some(_)) | Err(_) => return Drained::Lost,
        };
        // Each event: wd (4 bytes), mask (4), cookie (4), len (4), then
        // `len` bytes of name. At most READ_BYTES / 16 steps.
        let mut at = 0;
        while at + 16 <= n {
            let word = |offset: usize| {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&events[at + offset..at + offset + 4]);
                u32::from_ne_bytes(bytes)
            };
            if word(4) & LOST != 0 {
                return Drained::Lost;
            }
            at += 16 + word(12) as usize;
        }
        Drained::Changed
    }

    fn known(&self, name: &[u8]) -> Known {
        let below = self
            .found
            .iter()
            .find(|(known, _)| **known == *name)
            .map_or(0, |&(_, index)| index);
        Known {
            below,
            watched: self.watched,
        }
    }

    fn remember(&mut self, name: &[u8], index: usize) {
        if let Some(entry) = self.found.iter_mut().find(|(known, _)| **known == *name) {
            entry.1 = index;
            return;
        }
        if self.found.len() >= NAMES {
            self.found.remove(0);
        }
        self.found.push((name.into(), index));
    }
}
