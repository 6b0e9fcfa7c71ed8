//! The server under test: one guard that starts the real binary, reads its
//! URL line, and stops it by pid, for the integration tests and the e2e
//! bench alike.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::procfs;

/// How long a server may take to print its URL line, and to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(5);

/// A running server, stopped by pid (SIGTERM, then SIGKILL after 5 s) when
/// dropped, even on panic.
pub struct Server {
    /// The URL line's URL, e.g. `http://127.0.0.1:PORT/?token=T`.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The token of the URL line, if it printed one.
    pub token: Option<String>,
    child: Child,
    log_path: PathBuf,
    stdout_rest: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
    started: Instant,
}

/// How [`Server::stop`] went.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// The exit status (of the SIGKILL, if it came to that).
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// Still running 5 s after SIGTERM, so killed.
    pub killed: bool,
}

impl Server {
    /// Spawns `cmd` (stdin from /dev/null, stdout read here, stderr into a
    /// new file at `log_path`) and waits up to 5 s for its URL line
    /// (`ssecommander listening on URL`, contract §1). On failure the child
    /// is killed and reaped, and the error says what was seen.
    pub fn spawn(mut cmd: Command, log_path: PathBuf) -> Result<Server, String> {
        let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let line = match child.stdout.take() {
            Some(stdout) => read_url_line(stdout, Arc::clone(&stdout_rest)),
            None => Err("its stdout is not piped".to_owned()),
        };
        let parsed = line.and_then(|line| parse_url_line(&line));
        let (url, base, addr, token) = match parsed {
            Ok(parts) => parts,
            Err(err) => {
                let _ = child.kill();
                let status = child.wait();
                return Err(format!("{err} (status {status:?}); server log: {}", log_path.display()));
            }
        };
        Ok(Server {
            url,
            base,
            addr,
            token,
            child,
            log_path,
            stdout_rest,
            exited: None,
            started,
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Where its stderr goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Anything the server printed on stdout after the URL line.
    pub fn stdout_rest(&self) -> String {
        self.stdout_rest.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends a signal to the server, unless it has been seen to exit.
    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            procfs::send_signal(self.pid(), signal);
        }
    }

    /// Waits up to `within` for the server to exit; its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        let start = Instant::now();
        let max_polls = within.as_millis() / 5 + 2;
        for _ in 0..max_polls {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if start.elapsed() >= within {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Has the server exited (without waiting)?
    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.wait_exit(Duration::ZERO)
    }

    /// Running and not a zombie.
    pub fn alive(&self) -> bool {
        self.exited.is_none() && procfs::is_alive(self.pid())
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL; how it went.
    pub fn stop(&mut self) -> Stopped {
        let start = Instant::now();
        if let Some(status) = self.exited {
            return Stopped {
                status,
                took: Duration::ZERO,
                killed: false,
            };
        }
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_exit(GRACE) {
            return Stopped {
                status,
                took: start.elapsed(),
                killed: false,
            };
        }
        let _ = self.child.kill();
        // A child we spawned and have not reaped: wait() only fails if it was
        // reaped already, which exited would say.
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for the killed server: {e}"));
        self.exited = Some(status);
        Stopped {
            status,
            took: start.elapsed(),
            killed: true,
        }
    }

    /// Open descriptors of the server (0 once it is gone).
    pub fn fd_count(&self) -> usize {
        procfs::fd_count(self.pid()).unwrap_or(0)
    }

    /// The server's direct children.
    pub fn children(&self) -> Vec<u32> {
        procfs::children_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the first line of `stdout` on a thread, waiting here at most 5 s
/// (a silent server must not hang the caller); the thread then keeps
/// draining stdout into `rest` so the server never blocks on it.
fn read_url_line(stdout: impl Read + Send + 'static, rest: Arc<Mutex<String>>) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = tx.send(reader.read_line(&mut line).map(|_| line));
        let mut buf = [0u8; 4096];
        // Ends at EOF: when the server exits.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if let Ok(mut more) = rest.lock() {
                more.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    match rx.recv_timeout(GRACE) {
        Ok(Ok(line)) if !line.is_empty() => Ok(line),
        Ok(Ok(_)) => Err("the server closed its stdout without a URL line".to_owned()),
        Ok(Err(e)) => Err(format!("reading the server's stdout: {e}")),
        Err(_) => Err("the server printed no URL line within 5 s".to_owned()),
    }
}

/// The URL line's URL, its `http://HOST:PORT` part, that address, and the
/// token of its query.
fn parse_url_line(line: &str) -> Result<(String, String, SocketAddr, Option<String>), String> {
    let url = line
        .trim_end_matches('\n')
        .strip_prefix("ssecommander listening on ")
        .ok_or_else(|| format!("URL line not as the contract prints it (§1): {line:?}"))?;
    let (base, query) = match url.find("/?") {
        Some(i) => (&url[..i], Some(&url[i + 2..])),
        None => (url.trim_end_matches('/'), None),
    };
    let token = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(str::to_owned)));
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL does not start with http://: {url:?}"))?;
    let addr = hostport
        .parse()
        .map_err(|e| format!("URL host:port {hostport:?} is not an IP address and port: {e}"))?;
    Ok((url.to_owned(), base.to_owned(), addr, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lines() {
        let (url, base, addr, token) =
            parse_url_line("ssecommander listening on http://127.0.0.1:8080/?token=abc\n").expect("a URL line");
        assert_eq!(url, "http://127.0.0.1:8080/?token=abc");
        assert_eq!(base, "http://127.0.0.1:8080");
        assert_eq!(addr, "127.0.0.1:8080".parse().expect("an address"));
        assert_eq!(token.as_deref(), Some("abc"));
        let (_, base, addr, token) = parse_url_line("ssecommander listening on http://[::1]:9/\n").expect("a URL line");
        assert_eq!((base.as_str(), addr.port(), token), ("http://[::1]:9", 9, None));
        assert!(parse_url_line("listening on http://127.0.0.1:1/\n").is_err());
        assert!(parse_url_line("ssecommander listening on http://localhost:1/\n").is_err());
    }
}
