//! Test harness for driving the real `ssecommander` binary (STYLE.md, "Tests
//! that drive the real binary").
//!
//! - [`Server`]: starts the binary on `127.0.0.1:0` through the shared guard
//!   `ssecommander::harness::server::Server` (which reads the URL line within
//!   5 s and stops it by PID on drop: SIGTERM, then SIGKILL), with its stderr
//!   in a file under the target directory (shown when a test fails).
//! - [`Conn`]: a raw HTTP/1.x client over `std::net::TcpStream` with read
//!   timeouts: send any bytes, read one response (chunked, Content-Length or
//!   close-delimited), keep the connection for keep-alive or pipelining, or
//!   read a body piece by piece with arrival times.
//! - [`SseParser`]: a strict WHATWG event-stream parser that fails the test on
//!   anything our wire never sends (malformed lines, unknown fields, events
//!   without id / event / data, ids that are not 1, 2, 3…).
//! - `/proc` helpers (fd count, RSS, children, state, wchan, io counters,
//!   pids by argv marker), re-exported from `ssecommander::harness::procfs`,
//!   and [`wait_until`], the only way tests wait.
//!
//! Every wait is bounded in time and count and panics saying what it waited
//! for; every process is ended by its PID.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The /proc helpers (fd count, RSS, children, state, wchan, io counters,
/// pids by argv marker) and `send_signal`.
pub use ssecommander::harness::procfs::*;
/// Percent-encodes a query value: everything but `A-Z a-z 0-9 - . _ ~`.
pub use ssecommander::http::query::encode as pct;
use ssecommander::{client, harness};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ssecommander");

/// Default socket read timeout: no single read of a healthy server takes this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Unique names
// ---------------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process.
pub fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A unique `sleep` argument such as `1000.00123450007`: fixed width, so no
/// marker is a substring of another, and `sleep` still accepts it.
pub fn sleep_marker() -> String {
    format!("1000.{:07}{:04}", std::process::id() % 10_000_000, next_id() % 10_000)
}

/// A unique path under /tmp that does not exist yet (removed on drop of the guard).
pub fn marker_path(tag: &str) -> TempPath {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let p = PathBuf::from(format!(
        "/tmp/ssec-test-{}-{}-{}-{}",
        tag,
        std::process::id(),
        next_id(),
        nanos
    ));
    let _ = fs::remove_file(&p);
    TempPath(p)
}

/// A path removed (file or directory tree) when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
    pub fn exists(&self) -> bool {
        self.0.exists()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// The directory holding the binary under test (`<target>/release`).
pub fn target_dir() -> PathBuf {
    Path::new(BIN).parent().expect("binary has a parent dir").to_path_buf()
}

/// A fresh scratch directory under the target directory.
pub fn scratch_dir(tag: &str) -> TempPath {
    let d = target_dir()
        .join("test-scratch")
        .join(format!("{}-{}-{}", tag, std::process::id(), next_id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("create scratch dir");
    TempPath(d)
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `cond` every 10 ms until it holds; panics after `within` (and a
/// matching bound on the number of polls) with a message naming `what`.
/// Returns the time it took.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let step = Duration::from_millis(10);
    let max_polls = within.as_millis() as u64 / 10 + 2;
    for _ in 0..max_polls {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= within {
            break;
        }
        thread::sleep(step);
    }
    if cond() {
        return start.elapsed();
    }
    panic!("timed out after {:?} waiting for: {}", start.elapsed(), what);
}

/// Like [`wait_until`] but returns `false` instead of panicking.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let max_polls = within.as_millis() as u64 / 10 + 2;
    for _ in 0..max_polls {
        if cond() {
            return true;
        }
        if start.elapsed() >= within {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// SIGKILLs every process whose argv contains `marker` (a unique marker of
/// this test). Used on cleanup so a failing test leaves nothing behind.
pub fn kill_marked(marker: &str) {
    for pid in pids_with_marker(marker) {
        send_signal(pid, libc::SIGKILL);
    }
}

/// Kills the processes carrying a marker when dropped (cleanup on panic).
pub struct MarkerGuard(pub Vec<String>);

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        for m in &self.0 {
            kill_marked(m);
        }
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// A running server (`ssecommander::harness::server::Server`, which it
/// derefs to: `url`, `addr`, `token`, `pid()`, `log()`, `wait_exit()`, …),
/// with the requests of the tests on top; its log is shown if the test fails.
pub struct Server(harness::server::Server);

impl Deref for Server {
    type Target = harness::server::Server;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn log_path(tag: &str) -> PathBuf {
    let dir = target_dir().join("test-logs");
    fs::create_dir_all(&dir).expect("create test-logs dir");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    dir.join(format!("{}-{}-{}-{}.log", tag, std::process::id(), next_id(), nanos))
}

impl Server {
    /// Starts the server with `--listen 127.0.0.1:0` (unless `args` has a
    /// `--listen`/`-l`) and `RUST_LOG=info` unless set.
    pub fn start(args: &[&str]) -> Server {
        Server::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(args, env, |_| {})
    }

    /// Like [`Server::start_env`], with `setup` applied to the command just
    /// before it is spawned (a `pre_exec` hook: another uid, a leaked fd).
    pub fn start_with(args: &[&str], env: &[(&str, &str)], setup: impl FnOnce(&mut Command)) -> Server {
        let log_path = log_path("server");
        let mut cmd = Command::new(BIN);
        if !args
            .iter()
            .any(|a| *a == "--listen" || *a == "-l" || a.starts_with("--listen="))
        {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args);
        cmd.env_remove("SSECOMMANDER_TOKEN");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        setup(&mut cmd);
        match harness::server::Server::spawn(cmd, log_path.clone()) {
            Ok(server) => Server(server),
            Err(err) => panic!(
                "{err}; args {:?}; stderr:\n{}",
                args,
                fs::read_to_string(&log_path).unwrap_or_default()
            ),
        }
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL; the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.0.stop().status
    }

    /// The `Host` header value for this server (`127.0.0.1:PORT`, `[::1]:PORT`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// A new connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// A request head: `METHOD TARGET HTTP/1.1`, `Host`, the token as a Bearer
    /// header (if any), then `extra` headers, then the blank line.
    pub fn req(&self, method: &str, target: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut h: Vec<(String, String)> = vec![("Host".into(), self.host())];
        if let Some(t) = &self.token {
            h.push(("Authorization".into(), format!("Bearer {}", t)));
        }
        for (k, v) in extra {
            h.push((k.to_string(), v.to_string()));
        }
        build_request(method, target, "HTTP/1.1", &h)
    }

    /// Like [`Server::req`] but without any token.
    pub fn req_noauth(&self, method: &str, target: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut h: Vec<(String, String)> = vec![("Host".into(), self.host())];
        for (k, v) in extra {
            h.push((k.to_string(), v.to_string()));
        }
        build_request(method, target, "HTTP/1.1", &h)
    }

    /// One request on a new connection; the full response.
    pub fn request(&self, bytes: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(bytes);
        c.read_response()
    }

    /// `GET target` with the token (Bearer) on a new connection.
    pub fn get(&self, target: &str) -> Response {
        self.request(&self.req("GET", target, &[]))
    }

    /// `GET target` without any token on a new connection.
    pub fn get_noauth(&self, target: &str) -> Response {
        self.request(&self.req_noauth("GET", target, &[]))
    }

    /// Runs `command` (format json) and collects the whole stream.
    pub fn run(&self, command: &str) -> Run {
        self.run_target(&format!("/run?command={}", pct(command)))
    }

    /// Runs `command` with `format=raw`.
    pub fn run_raw(&self, command: &str) -> Run {
        self.run_target(&format!("/run?command={}&format=raw", pct(command)))
    }

    /// `GET target` (a `/run` URL) with the token; expects a 200 event stream.
    pub fn run_target(&self, target: &str) -> Run {
        self.run_request(&self.req("GET", target, &[]))
    }

    /// Sends `bytes` (a `/run` request) on a new connection; expects a 200
    /// event stream and reads it to its end, with arrival times.
    pub fn run_request(&self, bytes: &[u8]) -> Run {
        let mut c = self.connect();
        let t0 = Instant::now();
        c.send(bytes);
        c.read_run(t0)
    }

    /// Resident memory of the server, KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("server is alive")
    }

    /// The server's children that are zombies.
    pub fn zombies(&self) -> Vec<u32> {
        self.children().into_iter().filter(|p| state(*p) == Some('Z')).collect()
    }

    /// The fd count once it has stayed the same for 100 ms (bounded to 3 s):
    /// a baseline to compare with after the requests of a test. Take it after
    /// a warm-up request: the server may open descriptors (epoll, a wake-up
    /// pipe, /dev/null) after it prints its URL line.
    pub fn settled_fd_count(&self) -> usize {
        let mut last = self.fd_count();
        let mut same = 0;
        for _ in 0..150 {
            thread::sleep(Duration::from_millis(20));
            let now = self.fd_count();
            if now == last {
                same += 1;
                if same >= 5 {
                    break;
                }
            } else {
                same = 0;
                last = now;
            }
        }
        last
    }

    /// Waits until the fd count is at most `baseline`.
    pub fn wait_fds_back_to(&self, baseline: usize, within: Duration) {
        let mut last = 0;
        let ok = poll_until(within, || {
            last = self.fd_count();
            last <= baseline
        });
        assert!(
            ok,
            "server fd count did not come back to {} within {:?} (now {}); fds: {:?}",
            baseline,
            within,
            last,
            fd_list(self.pid())
        );
    }

    /// Waits until the server has no zombie and no child at all.
    pub fn wait_no_children(&self, within: Duration) {
        let mut last = vec![];
        let ok = poll_until(within, || {
            last = self.children();
            last.is_empty()
        });
        assert!(
            ok,
            "server still has children after {:?}: {:?}",
            within,
            describe_pids(&last)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let status = self.0.stop().status;
        if thread::panicking() {
            eprintln!(
                "---- server log {} (exit {:?}) ----\n{}\n---- end of server log ----",
                self.log_path().display(),
                status,
                self.log()
            );
        } else {
            // Keep the logs of failed tests only.
            let _ = fs::remove_file(self.log_path());
        }
    }
}

/// Runs the binary with `args` (no `--listen` added) and `env`, with stdin
/// from /dev/null; kills it after `within`. Returns (status, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(&str, &str)], within: Duration) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SSECOMMANDER_TOKEN").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssecommander");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let te = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let mut status = None;
    for _ in 0..(within.as_millis() / 10 + 2) {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        if start.elapsed() >= within {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let s = child.wait().unwrap();
            let o = String::from_utf8_lossy(&to.join().unwrap()).into_owned();
            let e = String::from_utf8_lossy(&te.join().unwrap()).into_owned();
            panic!(
                "ssecommander {:?} did not exit within {:?} ({:?}); stdout:\n{}\nstderr:\n{}",
                args, within, s, o, e
            );
        }
    };
    let o = String::from_utf8_lossy(&to.join().unwrap()).into_owned();
    let e = String::from_utf8_lossy(&te.join().unwrap()).into_owned();
    (status, o, e)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Builds a request head from parts (no body).
pub fn build_request(method: &str, target: &str, version: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("{} {} {}\r\n", method, target, version);
    for (k, v) in headers {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.x client
// ---------------------------------------------------------------------------

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    None,
    Chunked,
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The head exactly as received (status line to blank line).
    pub raw_head: String,
    /// The body bytes as received on the wire (with chunk framing).
    pub raw_body: Vec<u8>,
    pub framing: Framing,
    /// When the end of the head arrived.
    pub head_at: Instant,
    /// When the body was complete.
    pub end_at: Instant,
}

impl Response {
    /// First header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name`.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Does `Connection` list `close`?
    pub fn says_close(&self) -> bool {
        self.headers_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// Asserts the status, printing the whole response otherwise.
    pub fn assert_status(&self, status: u16, what: &str) {
        assert_eq!(
            self.status,
            status,
            "{}: expected status {}, got response:\n{}",
            what,
            status,
            self.dump()
        );
    }

    /// The response for failure messages.
    pub fn dump(&self) -> String {
        format!("{}{}", self.raw_head, String::from_utf8_lossy(&self.body))
    }
}

/// Incremental state of one response body being read.
#[derive(Debug)]
pub struct Body {
    pub framing: Framing,
    chunked: client::BodyDecoder,
    remaining: u64,
    pub done: bool,
}

/// A client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// When the last read that brought bytes returned.
    last_read_at: Instant,
    eof: bool,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {}: {}", addr, e));
        Conn::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            last_read_at: Instant::now(),
            eof: false,
        }
    }

    /// Connects with a small receive buffer set before `connect` (so the
    /// advertised window stays small): a slow reader whose kernel does not
    /// buffer megabytes for it.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> Conn {
        let SocketAddr::V4(v4) = addr else {
            panic!("connect_small_rcvbuf supports IPv4 only")
        };
        // SAFETY: plain socket calls on a descriptor we create and then hand
        // to TcpStream, which owns it from then on; the sockaddr is a local
        // value of the right size.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let v: libc::c_int = rcvbuf;
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "setsockopt SO_RCVBUF: {}", io::Error::last_os_error());
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            let r = libc::connect(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "connect: {}", io::Error::last_os_error());
            Conn::from_stream(TcpStream::from_raw_fd(fd))
        }
    }

    /// The socket's SO_RCVBUF as the kernel reports it.
    pub fn rcvbuf(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one c_int into `v`, whose size we pass.
        unsafe {
            libc::getsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &mut v as *mut _ as *mut libc::c_void,
                &mut len,
            );
        }
        v as usize
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {}", bytes.len(), e));
    }

    /// Writes, returning the error instead of panicking (for peers that may close).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Shuts only our sending side (a half-close, as `nc` or a script does).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes both directions (the client "disconnects").
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// One read() of at most `max` bytes into the internal buffer; the number
    /// read (0 on EOF or reset). Errors on timeout.
    fn try_fill(&mut self, max: usize) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = vec![0u8; max];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.last_read_at = Instant::now();
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Conn::try_fill`], panicking on a timeout or error.
    fn fill(&mut self, max: usize) -> usize {
        match self.try_fill(max) {
            Ok(n) => n,
            Err(e) => panic!(
                "read from server failed ({}); bytes buffered so far: {:?}",
                e,
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one full response; `Err` (instead of a panic) when the
    /// connection closes or times out before a complete head.
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let mut polls = 0;
        loop {
            if find(&self.buf, b"\r\n\r\n").is_some() {
                return Ok(self.read_response());
            }
            polls += 1;
            if polls > 100_000 || self.buf.len() > 64 * 1024 {
                return Err("no complete head".into());
            }
            match self.try_fill(64 * 1024) {
                Ok(0) => {
                    return Err(format!(
                        "closed before a complete head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {}", e)),
            }
        }
    }

    /// Reads one response head. Panics on EOF or timeout before a full head.
    pub fn read_head(&mut self) -> Response {
        let mut polls = 0;
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.buf.len() < 64 * 1024,
                "response head over 64 KiB: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            polls += 1;
            assert!(polls < 100_000, "too many reads for one head");
            if self.fill(64 * 1024) == 0 {
                panic!(
                    "connection closed before a complete response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head_at = self.last_read_at;
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        let raw_head = String::from_utf8(raw).unwrap_or_else(|e| panic!("response head is not UTF-8: {:?}", e));
        let mut lines = raw_head[..raw_head.len() - 4].split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_owned();
        assert!(
            version == "HTTP/1.1" || version == "HTTP/1.0",
            "bad status line {:?} in head:\n{}",
            status_line,
            raw_head
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {:?}", status_line));
        let reason = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        for l in lines {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {:?} in head:\n{}", l, raw_head));
            assert!(!k.is_empty() && !k.contains(' '), "bad header name in {:?}", l);
            headers.push((k.to_owned(), v.trim().to_owned()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            raw_head,
            raw_body: Vec::new(),
            framing: Framing::None,
            head_at,
            end_at: head_at,
        };
        resp.framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if resp.header("transfer-encoding").is_some() {
            let te = resp.header("transfer-encoding").unwrap();
            assert!(
                te.eq_ignore_ascii_case("chunked"),
                "unexpected Transfer-Encoding {:?}",
                te
            );
            assert!(
                resp.header("content-length").is_none(),
                "both Transfer-Encoding and Content-Length:\n{}",
                resp.raw_head
            );
            Framing::Chunked
        } else if let Some(cl) = resp.header("content-length") {
            Framing::Length(cl.parse().unwrap_or_else(|_| panic!("bad Content-Length {:?}", cl)))
        } else {
            Framing::Close
        };
        resp
    }

    /// Starts reading the body of `resp`.
    pub fn body(&self, resp: &Response) -> Body {
        let remaining = if let Framing::Length(n) = resp.framing { n } else { 0 };
        Body {
            framing: resp.framing,
            chunked: client::BodyDecoder::new(client::Framing::Chunked),
            remaining,
            done: matches!(resp.framing, Framing::None | Framing::Length(0)),
        }
    }

    /// Reads more of `body`: `None` once the body is complete; else the bytes
    /// decoded by at most one read() of up to `max` bytes (maybe empty when
    /// the read brought only chunk framing) and when they arrived.
    pub fn read_body_some(&mut self, body: &mut Body, max: usize) -> Option<(Vec<u8>, Instant)> {
        self.read_body_some_raw(body, max, None)
    }

    fn read_body_some_raw(
        &mut self,
        body: &mut Body,
        max: usize,
        mut raw: Option<&mut Vec<u8>>,
    ) -> Option<(Vec<u8>, Instant)> {
        if body.done {
            return None;
        }
        if self.buf.is_empty() {
            let n = self.fill(max);
            if n == 0 {
                match body.framing {
                    Framing::Close => {
                        body.done = true;
                        return None;
                    }
                    _ => panic!(
                        "connection closed in the middle of a {:?} body (decoder state {:?}, {} bytes left)",
                        body.framing, body.chunked, body.remaining
                    ),
                }
            }
        }
        let at = self.last_read_at;
        let mut out = Vec::new();
        match body.framing {
            Framing::None => unreachable!(),
            Framing::Close => {
                if let Some(r) = raw.as_deref_mut() {
                    r.extend_from_slice(&self.buf);
                }
                out.append(&mut self.buf);
            }
            Framing::Length(_) => {
                let take = (body.remaining as usize).min(self.buf.len());
                out.extend(self.buf.drain(..take));
                if let Some(r) = raw.as_deref_mut() {
                    r.extend_from_slice(&out);
                }
                body.remaining -= take as u64;
                if body.remaining == 0 {
                    body.done = true;
                }
            }
            Framing::Chunked => {
                let used = body
                    .chunked
                    .decode(&self.buf, &mut |bytes| out.extend_from_slice(bytes))
                    .unwrap_or_else(|err| panic!("bad chunked body: {err}"));
                if let Some(r) = raw {
                    r.extend_from_slice(&self.buf[..used]);
                }
                self.buf.drain(..used);
                if body.chunked.is_done() {
                    body.done = true;
                }
            }
        }
        Some((out, at))
    }

    /// Reads one complete response (head and body).
    pub fn read_response(&mut self) -> Response {
        let mut resp = self.read_head();
        let mut body = self.body(&resp);
        let mut raw = Vec::new();
        let mut out = Vec::new();
        let mut n = 0u64;
        while let Some((piece, _)) = self.read_body_some_raw(&mut body, 256 * 1024, Some(&mut raw)) {
            out.extend_from_slice(&piece);
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        resp.body = out;
        resp.raw_body = raw;
        resp.end_at = Instant::now();
        resp
    }

    /// Reads the body of `resp` piece by piece, calling `f` with each piece
    /// and its arrival time; `f` returns false to stop early.
    pub fn read_body_with(&mut self, resp: &Response, mut f: impl FnMut(&[u8], Instant) -> bool) -> Body {
        let mut body = self.body(resp);
        let mut n = 0u64;
        while let Some((piece, at)) = self.read_body_some(&mut body, 256 * 1024) {
            if !piece.is_empty() && !f(&piece, at) {
                break;
            }
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        body
    }

    /// Reads one `/run` response to its end, feeding the SSE parser as bytes
    /// arrive (so items carry real arrival times). `t0`: when the request was sent.
    pub fn read_run(&mut self, t0: Instant) -> Run {
        let mut resp = self.read_head();
        if resp.status != 200 {
            let rest = self.read_body_rest(&resp);
            resp.body = rest;
            panic!("/run: expected 200, got:\n{}", resp.dump());
        }
        check_stream_head(&resp);
        let mut p = SseParser::new();
        let mut items = Vec::new();
        let mut body = self.body(&resp);
        let mut raw = Vec::new();
        let mut decoded = Vec::new();
        let mut n = 0u64;
        while let Some((piece, at)) = self.read_body_some_raw(&mut body, 256 * 1024, Some(&mut raw)) {
            decoded.extend_from_slice(&piece);
            items.extend(p.feed(&piece, at));
            n += 1;
            assert!(n < 10_000_000, "too many reads for one body");
        }
        resp.body = decoded;
        resp.raw_body = raw;
        resp.end_at = Instant::now();
        p.finish();
        Run::from_parts(resp, items, t0)
    }

    fn read_body_rest(&mut self, resp: &Response) -> Vec<u8> {
        let mut body = self.body(resp);
        let mut out = Vec::new();
        while let Some((piece, _)) = self.read_body_some(&mut body, 256 * 1024) {
            out.extend_from_slice(&piece);
        }
        out
    }

    /// Bytes received but not yet consumed by a response (e.g. pipelined).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// True if the server closes the connection (EOF or reset) within
    /// `within`, with no further bytes; panics if it sends bytes.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        assert!(
            self.buf.is_empty(),
            "unexpected extra bytes from server: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        if self.eof {
            return true;
        }
        self.stream
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut tmp = [0u8; 4096];
        let r = self.stream.read(&mut tmp);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match r {
            Ok(0) => {
                self.eof = true;
                true
            }
            Ok(n) => panic!(
                "expected the connection to close, but the server sent more: {:?}",
                String::from_utf8_lossy(&tmp[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => false,
            Err(e) => panic!("read failed while checking for close: {}", e),
        }
    }

    /// Asserts the server closes the connection within 2 s.
    pub fn assert_closed(&mut self, what: &str) {
        assert!(
            self.closed_within(Duration::from_secs(2)),
            "{}: the server did not close the connection within 2 s",
            what
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Strict SSE parser
// ---------------------------------------------------------------------------

/// One dispatched SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: u64,
    pub event: String,
    /// The data lines joined with `\n` (WHATWG).
    pub data: String,
    pub data_lines: Vec<String>,
    /// When the bytes completing this event arrived.
    pub at: Instant,
}

/// One item of a stream: an event or a comment line.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Event),
    /// The text after the `:` (so `: ping` gives `" ping"`), and when it arrived.
    Comment(String, Instant),
}

/// One line of an event stream, as `ssecommander::client::SseParser` split
/// it (one space after the colon dropped), UTF-8 checked.
pub enum SseLine {
    /// An empty line: the end of an event (or of a `retry` block).
    Blank,
    /// A comment: the text after the `:`.
    Comment(String),
    /// A field line: name and value.
    Field(String, String),
}

/// SSE's line splitting, shared by the stream parsers: the client's parser
/// (CR, LF and CRLF end a line, also when split across reads), each line
/// reported as it completes; keeps the last bytes seen for failure messages.
#[derive(Default)]
pub struct SseLines {
    parser: client::SseParser,
    tail: Vec<u8>,
}

impl SseLines {
    /// The lines `bytes` completes.
    pub fn split(&mut self, bytes: &[u8]) -> Vec<SseLine> {
        self.tail.extend_from_slice(&bytes[bytes.len().saturating_sub(2048)..]);
        if self.tail.len() > 4096 {
            let cut = self.tail.len() - 2048;
            self.tail.drain(..cut);
        }
        let mut lines = Vec::new();
        let mut not_utf8 = None;
        let mut no_colon = false;
        let mut text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(err) => {
                not_utf8.get_or_insert((err, bytes.to_vec()));
                String::new()
            }
        };
        let fed = self.parser.feed(bytes, &mut |item| {
            lines.push(match item {
                client::Item::Event(_) | client::Item::Blank => SseLine::Blank,
                client::Item::Comment(comment) => SseLine::Comment(text(comment)),
                client::Item::Field { name, value, colon } => {
                    no_colon = no_colon || !colon;
                    SseLine::Field(text(name), text(value))
                }
            })
        });
        if let Err(err) = fed {
            panic!("{err}\ncontext:\n{}", self.context());
        }
        assert!(!no_colon, "SSE line without a colon\ncontext:\n{}", self.context());
        if let Some((err, bytes)) = not_utf8 {
            panic!(
                "SSE line is not UTF-8 ({}): {:?}\ncontext:\n{}",
                err,
                String::from_utf8_lossy(&bytes),
                self.context()
            );
        }
        lines
    }

    /// No unfinished line is pending.
    pub fn is_empty(&self) -> bool {
        self.parser.pending_line().is_empty()
    }

    /// The unfinished line, for failure messages.
    pub fn unfinished(&self) -> String {
        String::from_utf8_lossy(self.parser.pending_line()).into_owned()
    }

    /// The last bytes seen, for failure messages.
    pub fn context(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

/// The fields of the event being read, shared by the stream parsers: one
/// decimal `id`, one known `event` name, and `data` lines.
#[derive(Default)]
pub struct SseFields {
    id: Option<u64>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseFields {
    /// Takes an `id`, `event` (one of `names`) or `data` field; false for
    /// any other field name. `lines` gives failure messages their context.
    fn take(&mut self, field: &str, value: &str, names: &[&str], lines: &SseLines) -> bool {
        match field {
            "id" => {
                assert!(
                    self.id.is_none(),
                    "two id lines in one event\ncontext:\n{}",
                    lines.context()
                );
                assert!(
                    !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()),
                    "id is not a decimal number: {:?}\ncontext:\n{}",
                    value,
                    lines.context()
                );
                self.id = Some(value.parse().expect("id fits u64"));
            }
            "event" => {
                assert!(
                    self.event.is_none(),
                    "two event lines in one event\ncontext:\n{}",
                    lines.context()
                );
                assert!(
                    names.contains(&value),
                    "unknown event name {:?} (§3.2)\ncontext:\n{}",
                    value,
                    lines.context()
                );
                self.event = Some(value.to_owned());
            }
            "data" => self.data.push(value.to_owned()),
            _ => return false,
        }
        true
    }

    /// True while no field of an event has come.
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.event.is_none() && self.data.is_empty()
    }

    /// The completed event's id, name and data lines; panics when one of
    /// them is missing.
    fn finish(&mut self, lines: &SseLines) -> (u64, String, Vec<String>) {
        let Some(id) = self.id.take() else {
            panic!("SSE event without an id line (§3.2)\ncontext:\n{}", lines.context())
        };
        let Some(event) = self.event.take() else {
            panic!("SSE event without an event line\ncontext:\n{}", lines.context())
        };
        let data = std::mem::take(&mut self.data);
        assert!(
            !data.is_empty(),
            "SSE event {} ({}) without data\ncontext:\n{}",
            id,
            event,
            lines.context()
        );
        (id, event, data)
    }
}

/// A strict incremental parser of `text/event-stream` (WHATWG rules), which
/// panics on anything our wire (CONTRACT §3, WIRE.md) never sends.
pub struct SseParser {
    lines: SseLines,
    fields: SseFields,
    in_event: bool,
    last_id: u64,
    pub bytes: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser {
            lines: SseLines::default(),
            fields: SseFields::default(),
            in_event: false,
            last_id: 0,
            bytes: 0,
        }
    }

    fn context(&self) -> String {
        self.lines.context()
    }

    /// Feeds decoded body bytes that arrived at `at`; returns the items completed.
    pub fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<Item> {
        self.bytes += bytes.len() as u64;
        let lines = self.lines.split(bytes);
        lines.iter().filter_map(|line| self.on_line(line, at)).collect()
    }

    fn on_line(&mut self, line: &SseLine, at: Instant) -> Option<Item> {
        let (field, value) = match line {
            SseLine::Blank => return self.dispatch(at),
            SseLine::Comment(c) => {
                assert!(
                    !self.in_event,
                    "comment in the middle of an event: {:?}\ncontext:\n{}",
                    c,
                    self.context()
                );
                return Some(Item::Comment(c.clone(), at));
            }
            SseLine::Field(field, value) => (field, value),
        };
        self.in_event = true;
        if !self
            .fields
            .take(field, value, &["stdout", "stderr", "err", "exit"], &self.lines)
        {
            panic!(
                "unknown SSE field {:?} (value {:?})\ncontext:\n{}",
                field,
                value,
                self.context()
            );
        }
        None
    }

    fn dispatch(&mut self, at: Instant) -> Option<Item> {
        if !self.in_event {
            return None;
        }
        self.in_event = false;
        let (id, event, data) = self.fields.finish(&self.lines);
        assert_eq!(
            id,
            self.last_id + 1,
            "SSE ids must be 1, 2, 3… in order (§3.2): after {} came {}\ncontext:\n{}",
            self.last_id,
            id,
            self.context()
        );
        self.last_id = id;
        Some(Item::Event(Event {
            id,
            event,
            data: data.join("\n"),
            data_lines: data,
            at,
        }))
    }

    /// Asserts the stream ended between events.
    pub fn finish(&self) {
        assert!(
            self.lines.is_empty() && !self.in_event,
            "SSE stream ended in the middle of an event or line: pending line {:?}\ncontext:\n{}",
            self.lines.unfinished(),
            self.context()
        );
    }
}

/// Parses a complete stream body (all arriving at `at`).
pub fn parse_sse(body: &[u8], at: Instant) -> Vec<Item> {
    let mut p = SseParser::new();
    let items = p.feed(body, at);
    p.finish();
    items
}

/// The events of a list of items.
pub fn events_of(items: &[Item]) -> Vec<Event> {
    items
        .iter()
        .filter_map(|i| if let Item::Event(e) = i { Some(e.clone()) } else { None })
        .collect()
}

// ---------------------------------------------------------------------------
// Payloads and runs
// ---------------------------------------------------------------------------

/// Parses an event's data as JSON.
pub fn json(ev: &Event) -> serde_json::Value {
    serde_json::from_str(&ev.data)
        .unwrap_or_else(|e| panic!("event {} ({}) data is not JSON ({}): {:?}", ev.id, ev.event, e, ev.data))
}

/// The `out` text of a json `stdout`/`stderr`/`err` event, checking that the
/// object is exactly `{"type":T,"out":S}` with T matching the event name.
pub fn out_text(ev: &Event) -> String {
    let v = json(ev);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("event data is not an object: {:?}", ev.data));
    let want_type = if ev.event == "err" { "error" } else { ev.event.as_str() };
    assert_eq!(
        obj.get("type").and_then(|t| t.as_str()),
        Some(want_type),
        "wrong type in {:?}",
        ev.data
    );
    assert_eq!(obj.len(), 2, "unexpected keys in {:?}", ev.data);
    obj.get("out")
        .and_then(|o| o.as_str())
        .unwrap_or_else(|| panic!("no string out in {:?}", ev.data))
        .to_owned()
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Exit {
        code: Option<i64>,
        signal: Option<i64>,
        timed_out: bool,
    },
    /// An `err` event with its message.
    Err(String),
}

impl End {
    pub fn code(code: i64) -> End {
        End::Exit {
            code: Some(code),
            signal: None,
            timed_out: false,
        }
    }
    pub fn signal(sig: i64) -> End {
        End::Exit {
            code: None,
            signal: Some(sig),
            timed_out: false,
        }
    }
}

/// Decodes an `exit` or `err` event strictly (§3.2, WIRE.md).
pub fn end_of(ev: &Event) -> End {
    match ev.event.as_str() {
        "err" => End::Err(out_text(ev)),
        "exit" => {
            let v = json(ev);
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("exit data is not an object: {:?}", ev.data));
            assert_eq!(
                obj.get("type").and_then(|t| t.as_str()),
                Some("exit"),
                "wrong type in {:?}",
                ev.data
            );
            for k in obj.keys() {
                assert!(
                    ["type", "code", "signal", "timed_out"].contains(&k.as_str()),
                    "unexpected key {:?} in {:?}",
                    k,
                    ev.data
                );
            }
            let code = match obj.get("code") {
                Some(serde_json::Value::Null) => None,
                Some(c) => Some(
                    c.as_i64()
                        .unwrap_or_else(|| panic!("code not an integer in {:?}", ev.data)),
                ),
                None => panic!("exit without code in {:?}", ev.data),
            };
            let signal = obj.get("signal").map(|s| {
                s.as_i64()
                    .unwrap_or_else(|| panic!("signal not a number in {:?}", ev.data))
            });
            assert!(
                code.is_some() != signal.is_some(),
                "exit must have a code or (code null and) a signal: {:?}",
                ev.data
            );
            let timed_out = match obj.get("timed_out") {
                None => false,
                Some(serde_json::Value::Bool(true)) => true,
                Some(other) => panic!("timed_out present but not true: {:?} in {:?}", other, ev.data),
            };
            End::Exit {
                code,
                signal,
                timed_out,
            }
        }
        other => panic!("not an end event: {}", other),
    }
}

/// One complete `/run` stream.
#[derive(Debug)]
pub struct Run {
    pub resp: Response,
    pub items: Vec<Item>,
    pub events: Vec<Event>,
    pub end: End,
    /// When the request was sent.
    pub t0: Instant,
}

impl Run {
    /// Checks the head of §3.1 and the event order of §3.2, then decodes.
    pub fn from_response(resp: Response, t0: Instant) -> Run {
        assert_eq!(resp.status, 200, "/run: expected 200, got:\n{}", resp.dump());
        check_stream_head(&resp);
        let items = parse_sse(&resp.body, resp.end_at);
        Run::from_parts(resp, items, t0)
    }

    /// From a response whose body was already parsed into `items`.
    pub fn from_parts(resp: Response, items: Vec<Item>, t0: Instant) -> Run {
        let events = events_of(&items);
        let end = check_events(&events, &resp);
        Run {
            resp,
            items,
            events,
            end,
            t0,
        }
    }

    /// The first event called `kind`.
    pub fn first(&self, kind: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.event == kind)
    }

    /// The end event (`exit` or `err`).
    pub fn last(&self) -> &Event {
        self.events.last().expect("checked: a stream has an end event")
    }

    /// Concatenated `out` of the json `stdout` events.
    pub fn stdout(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stdout")
            .map(out_text)
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stderr")
            .map(out_text)
            .collect()
    }

    /// For format=raw: the data lines of all `kind` events, in order.
    pub fn raw_lines(&self, kind: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.event == kind)
            .flat_map(|e| e.data_lines.clone())
            .collect()
    }

    /// For format=raw: the payload (data lines joined by `\n`, plus the implied final `\n` per event).
    pub fn raw_text(&self, kind: &str) -> String {
        self.events
            .iter()
            .filter(|e| e.event == kind)
            .map(|e| format!("{}\n", e.data))
            .collect()
    }

    /// The comment lines (text after `:`).
    pub fn comments(&self) -> Vec<(String, Instant)> {
        self.items
            .iter()
            .filter_map(|i| {
                if let Item::Comment(c, t) = i {
                    Some((c.clone(), *t))
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn assert_end(&self, want: End) {
        assert_eq!(
            self.end,
            want,
            "unexpected end of stream; body:\n{}",
            self.resp.body_str()
        );
    }
}

/// §3.1: the head of a `/run` stream.
pub fn check_stream_head(resp: &Response) {
    let h = |n: &str| resp.header(n).map(str::to_owned);
    assert_eq!(
        h("content-type").as_deref(),
        Some("text/event-stream"),
        "Content-Type (§3.1) in:\n{}",
        resp.raw_head
    );
    assert_eq!(
        h("cache-control").as_deref(),
        Some("no-cache"),
        "Cache-Control (§3.1) in:\n{}",
        resp.raw_head
    );
    assert_eq!(
        h("x-accel-buffering").as_deref(),
        Some("no"),
        "X-Accel-Buffering (§3.1) in:\n{}",
        resp.raw_head
    );
}

/// §3.2: exactly one end event (`exit` or `err`), last; only output events
/// before it; `err` only as the sole event. Returns how it ended.
pub fn check_events(events: &[Event], resp: &Response) -> End {
    let last = events
        .last()
        .unwrap_or_else(|| panic!("stream has no events; body:\n{}", resp.body_str()));
    assert!(
        last.event == "exit" || last.event == "err",
        "last event is {:?}, not exit/err; body:\n{}",
        last.event,
        resp.body_str()
    );
    for e in &events[..events.len() - 1] {
        assert!(
            e.event == "stdout" || e.event == "stderr",
            "event {:?} before the end event; body:\n{}",
            e.event,
            resp.body_str()
        );
    }
    end_of(last)
}

/// Runs `command` on `server`: (events, how it ended).
pub fn run(server: &Server, command: &str) -> (Vec<Event>, End) {
    let r = server.run(command);
    (r.events, r.end)
}

// ---------------------------------------------------------------------------
// Hashing and data files
// ---------------------------------------------------------------------------

/// FNV-1a 64, streaming.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Facts about the generated big file.
#[derive(Debug, Clone)]
pub struct BigFile {
    pub path: PathBuf,
    pub len: u64,
    /// FNV of all bytes.
    pub hash: u64,
    /// FNV of the bytes without any `\n`.
    pub hash_no_lf: u64,
    pub lines: u64,
}

/// Size of the generated file.
pub const BIG_FILE_LEN: u64 = 100 * 1024 * 1024;

/// A 100 MiB UTF-8 text file (lines of varying length, ASCII, tabs,
/// multi-byte characters, `\n` endings only), generated once under the target
/// directory and reused.
pub fn big_file() -> &'static BigFile {
    static BIG: OnceLock<BigFile> = OnceLock::new();
    BIG.get_or_init(|| {
        let dir = target_dir().join("test-data");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big-100mib-v1.txt");
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(BIG_FILE_LEN) {
            let tmp = dir.join(format!("big-100mib-v1.txt.tmp{}-{}", std::process::id(), next_id()));
            generate_text(&tmp, BIG_FILE_LEN);
            fs::rename(&tmp, &path).unwrap();
        }
        let mut f = File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let (mut h, mut h2, mut len, mut lines) = (Fnv::default(), Fnv::default(), 0u64, 0u64);
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            for piece in buf[..n].split(|&b| b == b'\n') {
                h2.update(piece);
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            len += n as u64;
        }
        assert_eq!(len, BIG_FILE_LEN);
        BigFile {
            path,
            len,
            hash: h.0,
            hash_no_lf: h2.0,
            lines,
        }
    })
}

/// Writes `len` bytes of deterministic UTF-8 text ending in `\n`.
fn generate_text(path: &Path, len: u64) {
    let mut w = io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet: Vec<&str> = vec![
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " ", " ", " ", "\t", "\"", "\\", "/",
        "é", "€", "😀", "ß", "{", "}", ":",
    ];
    let mut written: u64 = 0;
    let mut line_no: u64 = 0;
    let mut line = String::new();
    while written < len {
        line.clear();
        line.push_str(&format!("{:08} ", line_no));
        line_no += 1;
        let n = (next() % 180) as usize;
        for _ in 0..n {
            line.push_str(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        line.push('\n');
        let left = len - written;
        if (line.len() as u64) > left {
            // Fill the tail with ASCII so the file has exactly `len` bytes.
            let mut tail = "x".repeat(left as usize - 1);
            tail.push('\n');
            w.write_all(tail.as_bytes()).unwrap();
            written += left;
        } else {
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    w.flush().unwrap();
}

/// Streams a `/run` body through the SSE parser, calling `f` for each item.
/// Checks the head, the id order, and that the stream ends with exit/err.
pub fn stream_items(conn: &mut Conn, resp: &Response, mut f: impl FnMut(&Item)) -> End {
    let mut p = SseParser::new();
    let mut last_event: Option<Event> = None;
    let mut ended = false;
    conn.read_body_with(resp, |piece, at| {
        for item in p.feed(piece, at) {
            if let Item::Event(e) = &item {
                assert!(!ended, "event after the end event: {:?}", e);
                if e.event == "exit" || e.event == "err" {
                    ended = true;
                }
                last_event = Some(e.clone());
            }
            f(&item);
        }
        true
    });
    p.finish();
    let last = last_event.expect("stream has no events");
    end_of(&last)
}

// ---------------------------------------------------------------------------
// Jobs (CONTRACT §7): requests, the job JSON, and a strict parser of a job's
// event stream (a `retry:` line first, `gap` events, ids starting anywhere)
// ---------------------------------------------------------------------------

/// `POST /jobs?command=CMD` (no body, no Content-Length) on a new connection.
pub fn job_post(s: &Server, command: &str) -> Response {
    s.request(&s.req("POST", &format!("/jobs?command={}", pct(command)), &[]))
}

/// Starts a job that must be accepted (201); its JSON (checked by [`check_job_json`]).
pub fn job_start(s: &Server, command: &str) -> serde_json::Value {
    let r = job_post(s, command);
    r.assert_status(201, &format!("POST /jobs {:?}", command));
    let v = job_json_of(&r);
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/jobs/{}", id).as_str()),
        "Location of the 201:\n{}",
        r.dump()
    );
    v
}

/// The body of a JSON answer, checking `Content-Type: application/json`.
pub fn json_body(r: &Response) -> serde_json::Value {
    let ct = r.header("content-type").unwrap_or("");
    assert_eq!(
        ct.split(';').next().unwrap_or("").trim(),
        "application/json",
        "Content-Type of a jobs answer (§7.1):\n{}",
        r.dump()
    );
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({}):\n{}", e, r.dump()))
}

/// The job JSON of a 200/201/202 answer, checked.
pub fn job_json_of(r: &Response) -> serde_json::Value {
    let v = json_body(r);
    check_job_json(&v);
    v
}

/// Is `s` a job id: 16 base64url characters, after `PREFIX-` if given.
pub fn is_job_id(s: &str, instance: Option<&str>) -> bool {
    let rest = match instance {
        Some(p) => match s.strip_prefix(p).and_then(|r| r.strip_prefix('-')) {
            Some(r) => r,
            None => return false,
        },
        None => s,
    };
    rest.len() == 16
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// §7.2: exactly the fields of one job, each of the right type and
/// consistent with its state.
pub fn check_job_json(v: &serde_json::Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("job is not an object: {}", v));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "argv",
            "bytes",
            "ended_ms",
            "events",
            "exit",
            "id",
            "pid",
            "pty",
            "size",
            "started_ms",
            "state",
            "stdin",
            "viewers"
        ],
        "job fields (§7.2, §10): {}",
        v
    );
    assert!(v["id"].is_string(), "id: {}", v);
    // §10.1: `size` is [cols, rows] on a terminal, null on pipes.
    match v["pty"].as_bool() {
        Some(true) => assert!(
            v["size"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|n| n.as_u64().is_some_and(|n| (1..=1000).contains(&n)))),
            "size of a job on a terminal: {}",
            v
        ),
        Some(false) => assert!(v["size"].is_null(), "size of a job on pipes: {}", v),
        None => panic!("pty is not a boolean: {}", v),
    }
    assert!(
        ["open", "closed", "none"].contains(&v["stdin"].as_str().unwrap_or("")),
        "stdin (§10.2): {}",
        v
    );
    assert!(
        v["argv"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x.is_string())),
        "argv: {}",
        v
    );
    let state = v["state"].as_str().unwrap_or_else(|| panic!("state: {}", v));
    assert!(["running", "exited", "failed"].contains(&state), "state: {}", v);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let started = v["started_ms"].as_u64().unwrap_or_else(|| panic!("started_ms: {}", v));
    assert!(
        started + 600_000 > now_ms && started <= now_ms + 1000,
        "started_ms {} is not a recent unix time in ms (now {})",
        started,
        now_ms
    );
    for k in ["viewers", "events", "bytes"] {
        assert!(v[k].is_u64(), "{} not a count: {}", k, v);
    }
    match state {
        "running" => {
            assert!(v["pid"].is_u64(), "a running job has a pid: {}", v);
            assert!(v["ended_ms"].is_null() && v["exit"].is_null(), "running: {}", v);
        }
        "exited" => {
            let ended = v["ended_ms"]
                .as_u64()
                .unwrap_or_else(|| panic!("ended_ms of an exited job: {}", v));
            assert!(ended >= started && ended <= now_ms + 1000, "ended_ms: {}", v);
            assert_eq!(v["exit"]["type"], "exit", "exit of an exited job: {}", v);
        }
        _ => {
            assert!(v["pid"].is_null(), "a failed job has no pid: {}", v);
            assert!(v["exit"].is_null(), "a failed job has no exit event: {}", v);
            assert!(v["ended_ms"].is_null() || v["ended_ms"].is_u64(), "ended_ms: {}", v);
        }
    }
}

/// `GET /jobs/ID`: the response (any status).
pub fn job_get(s: &Server, id: &str) -> Response {
    s.get(&format!("/jobs/{}", id))
}

/// `GET /jobs/ID` that must be 200; the checked job JSON.
pub fn job_info(s: &Server, id: &str) -> serde_json::Value {
    let r = job_get(s, id);
    r.assert_status(200, &format!("GET /jobs/{}", id));
    job_json_of(&r)
}

/// `GET /jobs`: the list, each job checked.
pub fn job_list(s: &Server) -> Vec<serde_json::Value> {
    let r = s.get("/jobs");
    r.assert_status(200, "GET /jobs");
    let v = json_body(&r);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("GET /jobs is not an object: {}", v));
    assert_eq!(obj.len(), 1, "GET /jobs has only `jobs`: {}", v);
    let jobs = v["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("jobs is not a list: {}", v))
        .clone();
    for j in &jobs {
        check_job_json(j);
    }
    jobs
}

/// Waits until the job's state is not `running`; its JSON then.
pub fn job_wait_ended(s: &Server, id: &str, within: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = poll_until(within, || {
        last = job_info(s, id);
        last["state"] != "running"
    });
    assert!(ok, "job {} still running after {:?}: {}", id, within, last);
    last
}

/// DELETE /jobs/ID on a new connection.
pub fn job_delete(s: &Server, id: &str) -> Response {
    s.request(&s.req("DELETE", &format!("/jobs/{}", id), &[]))
}

/// One item of a job's stream.
#[derive(Debug, Clone)]
pub enum JobItem {
    /// The `retry:` value.
    Retry(u64),
    Event(Event),
    /// Comment text after `:`.
    Comment(String),
}

/// A strict incremental parser of a job's event stream (§7.3): like
/// [`SseParser`], plus a `retry:` block, the `gap` event, and ids that start
/// at `first` (1, or N+1 on a resume) and then go up by one, a `gap` event
/// carrying the last id it covers.
pub struct JobSse {
    lines: SseLines,
    fields: SseFields,
    retry: Option<u64>,
    in_block: bool,
    /// The id the next event must have (or a gap must start at).
    pub next: u64,
}

impl JobSse {
    pub fn new(first: u64) -> JobSse {
        JobSse {
            lines: SseLines::default(),
            fields: SseFields::default(),
            retry: None,
            in_block: false,
            next: first,
        }
    }

    fn context(&self) -> String {
        self.lines.context()
    }

    /// Feeds decoded body bytes; the items they complete.
    pub fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<JobItem> {
        let lines = self.lines.split(bytes);
        lines.iter().filter_map(|line| self.on_line(line, at)).collect()
    }

    fn on_line(&mut self, line: &SseLine, at: Instant) -> Option<JobItem> {
        let (field, value) = match line {
            SseLine::Blank => return self.dispatch(at),
            SseLine::Comment(c) => {
                assert!(!self.in_block, "comment inside an event: {:?}\n{}", c, self.context());
                return Some(JobItem::Comment(c.clone()));
            }
            SseLine::Field(field, value) => (field, value),
        };
        self.in_block = true;
        if field == "retry" {
            assert!(self.retry.is_none(), "two retry lines\n{}", self.context());
            self.retry = Some(value.parse().unwrap_or_else(|_| panic!("retry {:?}", value)));
        } else if !self
            .fields
            .take(field, value, &["stdout", "stderr", "err", "exit", "gap"], &self.lines)
        {
            panic!("unknown SSE field {:?} (value {:?})\n{}", field, value, self.context());
        }
        None
    }

    fn dispatch(&mut self, at: Instant) -> Option<JobItem> {
        if !self.in_block {
            return None;
        }
        self.in_block = false;
        if let Some(r) = self.retry.take() {
            assert!(
                self.fields.is_empty(),
                "retry line mixed into an event\n{}",
                self.context()
            );
            return Some(JobItem::Retry(r));
        }
        let (id, event, data) = self.fields.finish(&self.lines);
        let ev = Event {
            id,
            event,
            data: data.join("\n"),
            data_lines: data,
            at,
        };
        if ev.event == "gap" {
            let (from, to) = gap_of(&ev);
            assert_eq!(
                from,
                self.next,
                "gap must start at the id expected next\n{}",
                self.context()
            );
            assert!(to >= from && id == to, "gap id must be its `to`: {:?}", ev);
        } else {
            assert_eq!(
                id,
                self.next,
                "ids must go up by one (§7.3): expected {}, got {}\n{}",
                self.next,
                id,
                self.context()
            );
        }
        self.next = id + 1;
        Some(JobItem::Event(ev))
    }

    /// Asserts the stream stopped between events.
    pub fn finish(&self) {
        assert!(
            self.lines.is_empty() && !self.in_block,
            "stream ended inside an event: {:?}\n{}",
            self.lines.unfinished(),
            self.context()
        );
    }
}

/// `(from, to)` of a `gap` event, checking its data is exactly
/// `{"type":"gap","from":F,"to":T}`.
pub fn gap_of(ev: &Event) -> (u64, u64) {
    let v = json(ev);
    let obj = v.as_object().unwrap_or_else(|| panic!("gap data: {}", ev.data));
    assert_eq!(obj.len(), 3, "gap data has type, from, to only: {}", ev.data);
    assert_eq!(v["type"], "gap", "gap data: {}", ev.data);
    let from = v["from"].as_u64().unwrap_or_else(|| panic!("gap from: {}", ev.data));
    let to = v["to"].as_u64().unwrap_or_else(|| panic!("gap to: {}", ev.data));
    (from, to)
}

/// A whole job stream, read to its end.
#[derive(Debug)]
pub struct JobRun {
    pub resp: Response,
    pub items: Vec<JobItem>,
    pub events: Vec<Event>,
}

impl JobRun {
    /// Concatenated `out` of the json `stdout` events.
    pub fn stdout(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stdout")
            .map(out_text)
            .collect()
    }

    /// The end event (`exit`/`err`), checked to be last and decoded.
    pub fn end(&self) -> End {
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no events:\n{}", self.resp.body_str()));
        end_of(last)
    }

    /// The `gap` events.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.events.iter().filter(|e| e.event == "gap").map(gap_of).collect()
    }
}

/// The request head for `GET /jobs/ID/events` + `query` (e.g. `?format=raw`)
/// with `extra` headers.
pub fn job_events_req(s: &Server, id: &str, query: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    s.req("GET", &format!("/jobs/{}/events{}", id, query), extra)
}

/// Reads a job stream's head on `c` and checks it is a 200 event stream (§3.1).
pub fn job_stream_head(c: &mut Conn) -> Response {
    let head = c.read_head();
    if head.status != 200 {
        let mut b = c.body(&head);
        let mut rest = Vec::new();
        while let Some((p, _)) = c.read_body_some(&mut b, 65536) {
            rest.extend_from_slice(&p);
        }
        panic!(
            "job events: expected 200, got:\n{}{}",
            head.raw_head,
            String::from_utf8_lossy(&rest)
        );
    }
    check_stream_head(&head);
    head
}

/// Reads a job stream (after its head) to its end: a `retry: 1000` block
/// first, then events with ids from `first` (§7.3), the last one `exit` or `err`.
pub fn job_read_stream(c: &mut Conn, mut resp: Response, first: u64) -> JobRun {
    let mut p = JobSse::new(first);
    let mut items = Vec::new();
    let mut decoded = Vec::new();
    c.read_body_with(&resp, |piece, at| {
        decoded.extend_from_slice(piece);
        items.extend(p.feed(piece, at));
        true
    });
    p.finish();
    resp.body = decoded;
    assert!(
        matches!(items.first(), Some(JobItem::Retry(1000))),
        "a job stream begins with `retry: 1000` (§7.3); body:\n{}",
        resp.body_str()
    );
    let events: Vec<Event> = items
        .iter()
        .filter_map(|i| {
            if let JobItem::Event(e) = i {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    let n = events.len();
    assert!(n > 0, "a job stream with no events:\n{}", resp.body_str());
    for (i, e) in events.iter().enumerate() {
        let is_end = e.event == "exit" || e.event == "err";
        assert_eq!(
            is_end,
            i + 1 == n,
            "exit/err exactly once, last; body:\n{}",
            resp.body_str()
        );
        assert!(
            e.event != "gap" || i == 0,
            "a gap only comes first; body:\n{}",
            resp.body_str()
        );
    }
    JobRun { resp, items, events }
}

/// Watches job `id` from `first` (sending `extra` headers and `query`) on a
/// new connection to its end.
pub fn job_watch(s: &Server, id: &str, query: &str, extra: &[(&str, &str)], first: u64) -> JobRun {
    let mut c = s.connect();
    c.send(&job_events_req(s, id, query, extra));
    let head = job_stream_head(&mut c);
    job_read_stream(&mut c, head, first)
}
