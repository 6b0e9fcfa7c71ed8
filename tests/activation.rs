//! systemd socket activation (contract §1): with `LISTEN_FDS=1` and
//! `LISTEN_PID` = the server's pid, the real binary serves the listening
//! socket it inherits as fd 3 instead of binding, keeps it from its commands,
//! and hides the `LISTEN_*` variables from them.
//!
//! The socket is passed the way systemd does: `dup2` onto fd 3 in the child,
//! and `LISTEN_PID` set by `sh -c 'LISTEN_PID=$$ … exec BIN'` (exec keeps
//! the pid, so the variable names the server itself).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{build_request, target_dir, Conn, BIN};

const TOKEN: &str = "activation-test-token-0123456789abcdef";

/// The server started by the `sh` wrapper; killed by PID on drop.
struct Activated {
    child: Child,
    /// The URL line, or `None` if the server printed none before exiting.
    line: Option<String>,
    log: std::path::PathBuf,
}

impl Activated {
    /// Starts the binary with `fd` as its fd 3 and `vars` (shell words such as
    /// `LISTEN_PID=$$`) set by the wrapper, plus `args`.
    fn start(fd: RawFd, vars: &str, args: &[&str]) -> Activated {
        let log = target_dir().join("test-logs");
        std::fs::create_dir_all(&log).expect("create test-logs dir");
        let log = log.join(format!("activation-{}-{}.log", std::process::id(), common::next_id()));
        let script = format!("{vars} exec \"$0\" \"$@\"");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, BIN, "--token", TOKEN])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SSECOMMANDER_TOKEN")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create log file"));
        // SAFETY: between fork and exec the hook calls only dup2 and fcntl,
        // both async-signal-safe, on descriptors the test owns.
        unsafe {
            cmd.pre_exec(move || {
                if fd == 3 {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it by hand.
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn sh wrapper");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // The line is read on a thread so a silent server fails in 10 s.
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut reader, &mut sink);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(line)) if !line.is_empty() => Some(line.trim_end().to_owned()),
            Ok(_) => None,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no URL line and no exit within 10 s; log:\n{}", read(&log));
            }
        };
        Activated { child, line, log }
    }

    /// The address the URL line names.
    fn addr(&self) -> SocketAddr {
        let line = self
            .line
            .as_deref()
            .unwrap_or_else(|| panic!("no URL line; log:\n{}", self.log()));
        let rest = line
            .strip_prefix("ssecommander listening on http://")
            .unwrap_or_else(|| panic!("URL line not as contract §1 prints it: {line:?}"));
        let hostport = rest.split('/').next().unwrap_or_default();
        hostport
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    fn log(&self) -> String {
        read(&self.log)
    }

    /// The exit status, waiting at most 10 s.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after 10 s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            common::send_signal(self.child.id(), libc::SIGTERM);
            if !common::poll_until(Duration::from_secs(5), || {
                self.child.try_wait().ok().flatten().is_some()
            }) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The raw SSE body of `/run?command=COMMAND` over HTTP/1.0 (no chunking).
fn run_body(addr: SocketAddr, command: &str) -> String {
    let target = format!("/run?command={}", common::pct(command));
    let headers = [
        ("Host".to_owned(), addr.to_string()),
        ("Authorization".to_owned(), format!("Bearer {TOKEN}")),
    ];
    let mut conn = Conn::connect(addr);
    conn.send(&build_request("GET", &target, "HTTP/1.0", &headers));
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "/run {command}:\n{}", resp.dump());
    String::from_utf8(resp.body).expect("UTF-8 body")
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

#[test]
fn the_inherited_socket_is_served_and_kept_from_commands() {
    let sock = listener();
    let want = sock.local_addr().expect("local_addr");
    // No `--listen`: the default 127.0.0.1:3000 must not be bound instead.
    let mut server = Activated::start(sock.as_raw_fd(), "LISTEN_PID=$$ LISTEN_FDS=1", &[]);
    // Only the server holds the socket now: what answers is the server.
    drop(sock);
    assert_eq!(
        server.addr(),
        want,
        "URL line names the inherited socket; log:\n{}",
        server.log()
    );

    let echo = run_body(want, "echo hello");
    assert_eq!(
        echo,
        "id: 1\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"hello\\n\"}\n\n\
         id: 2\nevent: exit\ndata: {\"type\":\"exit\",\"code\":0}\n\n",
        "echo hello through the activated socket"
    );

    // readlink opens nothing itself: fd 3 of the command is what it inherited.
    let fd3 = run_body(want, "readlink /proc/self/fd/3");
    assert!(
        !fd3.contains("socket:"),
        "a command inherited the listening socket:\n{fd3}"
    );
    assert!(fd3.contains("\"code\":1"), "readlink of a closed fd 3 fails:\n{fd3}");

    let env = run_body(want, "env");
    assert!(
        env.contains("RUST_LOG=info"),
        "env ran and printed the environment:\n{env}"
    );
    assert!(!env.contains("LISTEN_"), "LISTEN_* reached a command:\n{env}");

    common::send_signal(server.child.id(), libc::SIGTERM);
    assert!(server.wait_exit().success(), "SIGTERM exits 0; log:\n{}", server.log());
}

#[test]
fn sockets_meant_for_another_process_are_not_used() {
    let sock = listener();
    let other = sock.local_addr().expect("local_addr");
    // A parent that was activated itself leaks its variables: pid 1's, not ours.
    let server = Activated::start(
        sock.as_raw_fd(),
        "LISTEN_PID=1 LISTEN_FDS=1",
        &["--listen", "127.0.0.1:0"],
    );
    let addr = server.addr();
    assert_ne!(addr, other, "served a socket meant for another process");
    let fd3 = run_body(addr, "readlink /proc/self/fd/3");
    assert!(
        !fd3.contains("socket:"),
        "a command inherited the leaked socket:\n{fd3}"
    );
}

#[test]
fn a_bad_activation_is_a_start_up_error() {
    let sock = listener();
    let mut two = Activated::start(sock.as_raw_fd(), "LISTEN_PID=$$ LISTEN_FDS=2", &[]);
    assert_eq!(two.line, None, "no URL line for two sockets");
    assert_eq!(two.wait_exit().code(), Some(2), "log:\n{}", two.log());
    assert!(two.log().contains("serves exactly one"), "log:\n{}", two.log());

    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let mut not_socket = Activated::start(file.as_raw_fd(), "LISTEN_PID=$$ LISTEN_FDS=1", &[]);
    assert_eq!(not_socket.line, None, "no URL line for a non-socket");
    assert_eq!(not_socket.wait_exit().code(), Some(2), "log:\n{}", not_socket.log());
    assert!(not_socket.log().contains("not a socket"), "log:\n{}", not_socket.log());

    let connected = std::net::TcpStream::connect(sock.local_addr().expect("local_addr")).expect("connect");
    let mut not_listening = Activated::start(connected.as_raw_fd(), "LISTEN_PID=$$ LISTEN_FDS=1", &[]);
    assert_eq!(
        not_listening.wait_exit().code(),
        Some(2),
        "log:\n{}",
        not_listening.log()
    );
    assert!(
        not_listening.log().contains("not listening"),
        "log:\n{}",
        not_listening.log()
    );
}
