//! Pseudo-terminals (contract §10): opening a pair set up the way a command
//! on a terminal expects (output processing off, echo on, a size), making
//! one the controlling terminal of a new session, resizing, and the end-of-
//! file character. Every `unsafe` block here wraps one system call.
//!
//! Knows nothing of jobs or HTTP: [`crate::child`] decides which descriptor
//! goes where; the job reads the master sides like pipes and writes its
//! input to one (re-exported as `sys::pty`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use super::check;

/// Size a terminal gets unless the request says otherwise (contract §10.1).
pub const DEFAULT_SIZE: Size = Size { cols: 80, rows: 24 };

/// Largest number of columns or rows a request may ask for (contract §10.1):
/// bigger is no screen anyone has, and programs allocate per cell.
pub const MAX_SIDE: u16 = 1000;

/// `TERM` of a command on a terminal: what xterm.js-like renderers and the
/// page understand (256 colours, cursor moves).
pub const TERM: &str = "xterm-256color";

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Columns, 1 to [`MAX_SIDE`].
    pub cols: u16,
    /// Rows, 1 to [`MAX_SIDE`].
    pub rows: u16,
}

impl Size {
    /// A size from the `cols` and `rows` query values (either may be
    /// missing: the default's); `None` when one is not a number from 1 to
    /// [`MAX_SIDE`].
    pub fn from_query(cols: Option<&str>, rows: Option<&str>) -> Option<Size> {
        let side = |given: Option<&str>, default: u16| match given {
            None => Some(default),
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=MAX_SIDE).contains(n) && text.bytes().all(|b| b.is_ascii_digit())),
        };
        Some(Size {
            cols: side(cols, DEFAULT_SIZE.cols)?,
            rows: side(rows, DEFAULT_SIZE.rows)?,
        })
    }

    fn winsize(self) -> libc::winsize {
        libc::winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// A new pseudo-terminal: the master, which the server keeps (non-blocking),
/// and the slave, which becomes the command's descriptors. Both
/// close-on-exec.
#[derive(Debug)]
pub struct Pair {
    /// The server's side.
    pub master: OwnedFd,
    /// The command's side.
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal of `size` whose output processing is off (a line
/// ends in LF, as on a pipe: no `ONLCR`) and whose echo is on (the default).
/// The master is non-blocking; the slave is not anyone's controlling
/// terminal until [`make_controlling`] makes it so in the child.
pub fn open(size: Size) -> io::Result<Pair> {
    // SAFETY: posix_openpt takes flags and returns a new descriptor or -1.
    let master = check(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: the descriptor is new and owned by nothing else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: grantpt and unlockpt take a descriptor we own; no memory.
    check(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: ptsname_r writes at most name.len() bytes, NUL included, into `name`.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    // SAFETY: on success ptsname_r left a NUL-terminated string in `name`.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    // SAFETY: open reads the NUL-terminated path; the result is a new descriptor or -1.
    let slave = check(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: the descriptor is new and owned by nothing else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    output_processing_off(&slave)?;
    set_size(&master, size)?;
    crate::sys::set_nonblocking(&master)?;
    Ok(Pair { master, slave })
}

/// Clears `OPOST`: what the command writes reaches the master unchanged (no
/// CRLF for LF), so a line ends as it does on a pipe (contract §10.1).
fn output_processing_off(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: termios is plain data; zeroed is a valid value to be overwritten.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios struct, which lives for the call.
    check(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut termios) })?;
    termios.c_oflag &= !libc::OPOST;
    // SAFETY: tcsetattr reads one termios struct, which lives for the call.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &termios) })?;
    Ok(())
}

/// Gives the terminal of `fd` (either side) a new size (`TIOCSWINSZ`). On a
/// controlling terminal the kernel then sends `SIGWINCH` to its foreground
/// process group, if the size changed.
pub fn set_size(fd: &impl AsRawFd, size: Size) -> io::Result<()> {
    let winsize = size.winsize();
    // SAFETY: TIOCSWINSZ reads one winsize struct, which lives for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &winsize) })?;
    Ok(())
}

/// The foreground process group of the terminal of `fd` (the master side
/// answers for its slave), if it has one.
pub fn foreground_group(fd: &impl AsRawFd) -> Option<libc::pid_t> {
    // SAFETY: tcgetpgrp takes a descriptor and returns an integer; no memory.
    let pgid = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    (pgid > 0).then_some(pgid)
}

/// The terminal's end-of-file character (`VEOF`, Ctrl-D unless the command
/// changed it), read from the terminal of `fd` (the master answers for its
/// slave on Linux).
pub fn eof_char(fd: &impl AsRawFd) -> u8 {
    // SAFETY: termios is plain data; zeroed is a valid value to be overwritten.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios struct, which lives for the call.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut termios) } == 0 && termios.c_cc[libc::VEOF] != 0 {
        termios.c_cc[libc::VEOF]
    } else {
        0x04
    }
}

/// A second descriptor for the same open terminal, close-on-exec: the
/// master is read through one and written through the other, each
/// registered in the poll by itself.
pub fn dup(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own; no memory.
    let copy = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: the new descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// In a child between fork and exec: a new session (so a new process group
/// whose id is the child's pid, as `setpgid(0, 0)` gives on a pipe), with
/// the terminal on descriptor `fd` as its controlling terminal. Only
/// async-signal-safe calls; returns the errno of the step that failed.
pub fn make_controlling(fd: RawFd) -> Result<(), libc::c_int> {
    // SAFETY: setsid takes nothing and touches no memory.
    if unsafe { libc::setsid() } < 0 {
        return Err(last_errno());
    }
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it).
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn last_errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Makes std's spawn (the `posix_spawn` fallback) start `command` as
/// [`make_controlling`] says, with descriptor 0 as the terminal. std then
/// forks instead of calling `posix_spawn`: this path is the rare fallback.
pub fn spawn_controlled(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (setsid, ioctl); it allocates nothing.
    unsafe {
        command.pre_exec(|| make_controlling(0).map_err(io::Error::from_raw_os_error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_the_query() {
        assert_eq!(Size::from_query(None, None), Some(DEFAULT_SIZE));
        assert_eq!(
            Size::from_query(Some("120"), Some("40")),
            Some(Size { cols: 120, rows: 40 })
        );
        assert_eq!(
            Size::from_query(Some("1"), Some("1000")),
            Some(Size { cols: 1, rows: 1000 })
        );
        for bad in ["0", "1001", "-1", "+5", "", "x", "80.0", "65617"] {
            assert_eq!(Size::from_query(Some(bad), None), None, "cols={bad:?}");
            assert_eq!(Size::from_query(None, Some(bad)), None, "rows={bad:?}");
        }
    }

    #[test]
    fn a_pair_has_its_size_no_output_processing_and_echo() {
        let pair = open(Size { cols: 132, rows: 7 }).expect("open a pty");
        let mut ws = Size { cols: 0, rows: 0 }.winsize();
        // SAFETY: TIOCGWINSZ writes one winsize struct, which lives for the call.
        check(unsafe { libc::ioctl(pair.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }).expect("TIOCGWINSZ");
        assert_eq!((ws.ws_col, ws.ws_row), (132, 7));
        // SAFETY: zeroed termios, then filled by tcgetattr.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios struct, which lives for the call.
        check(unsafe { libc::tcgetattr(pair.slave.as_raw_fd(), &mut termios) }).expect("tcgetattr");
        assert_eq!(termios.c_oflag & libc::OPOST, 0, "output processing is off");
        assert_ne!(termios.c_lflag & libc::ECHO, 0, "echo is on");
        assert_eq!(eof_char(&pair.master), 0x04);
    }
}
