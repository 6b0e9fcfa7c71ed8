//! The server under test, and running the binary to its exit.

use std::fs::{self};
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

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

    /// The value of one series of a `/metrics` scrape, named in full
    /// (`ssecommander_…`, labels included).
    pub fn metric(&self, series: &str) -> u64 {
        let r = self.get("/metrics");
        r.assert_status(200, "GET /metrics");
        r.body_str()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{}", r.body_str()))
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
