//! A headless Chromium driven over WebDriver (chromedriver), for tests that
//! look at the page through something else than the server alone (nginx in
//! tests/nginx.rs). The same approach as tests/browser.rs: a chromedriver we
//! spawn in its own process group, a fresh profile, the page read through
//! one script; everything we started is killed by PID on drop.
//!
//! [`Browser::available`] is `None` after a `SKIPPED` line when Chromium or
//! chromedriver is missing outside CI (`ssecommander::harness::outside`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER_CANDIDATES: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
/// Bound for one WebDriver command; starting a session is the slowest.
const WEBDRIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// WebDriver's key code for Enter.
pub const ENTER: &str = "\u{E007}";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time in a test binary: a 2-core box is shared.
static LOCK: Mutex<()> = Mutex::new(());

pub struct Browser {
    driver: Child,
    port: u16,
    profile: PathBuf,
    session: String,
    name: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

fn driver_path() -> Option<PathBuf> {
    DRIVER_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// A browser, or `None` (SKIPPED) when Chromium or chromedriver is
    /// missing outside CI. `insecure_certs`: accept a self-signed
    /// certificate (a test's own TLS front end).
    pub fn available(name: &str, insecure_certs: bool) -> Option<Browser> {
        let found = Path::new(CHROMIUM).exists() && driver_path().is_some();
        let what = "chromium and chromedriver";
        let install = "apt-get install chromium chromium-driver";
        if !ssecommander::harness::outside::available(found, what, install) {
            return None;
        }
        let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Browser::start(name, insecure_certs, lock))
    }

    fn start(name: &str, insecure_certs: bool, lock: std::sync::MutexGuard<'static, ()>) -> Browser {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("local addr").port()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let profile = std::env::temp_dir().join(format!("ssecommander-wd-{}{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the profile dir");
        let driver = Command::new(driver_path().expect("checked"))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let mut browser = Browser {
            driver,
            port,
            profile,
            session: String::new(),
            name: name.to_owned(),
            _lock: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("chromedriver exited at start-up: {exit}");
            }
            let ready = browser
                .request("GET", "/status", None)
                .is_ok_and(|(code, body)| code == 200 && body["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer /status in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": insecure_certs,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1000,700",
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            },
        }}});
        let reply = browser.cmd("POST", "/session", Some(&caps));
        browser.session = reply["sessionId"].as_str().expect("sessionId").to_owned();
        browser
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", &self.path("/url"), Some(&json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let found = self.cmd(
            "POST",
            &self.path("/element"),
            Some(&json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    pub fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css);
        let path = self.path(&format!("/element/{element}/value"));
        self.cmd("POST", &path, Some(&json!({ "text": text })));
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        let path = self.path(&format!("/element/{element}/click"));
        self.cmd("POST", &path, Some(&json!({})));
    }

    pub fn exec(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.cmd("POST", &self.path("/execute/sync"), Some(&body))
    }

    /// What the tests look at: the address, the status line, the stdout
    /// lines, the job shown, the job list (id, text), the page's notices.
    pub fn page_state(&self) -> Value {
        self.exec(
            "var q=function(s){return Array.prototype.map.call(document.querySelectorAll(s),\
               function(e){return e.textContent;});};\
             var st=document.getElementById('status'),m=document.getElementById('msg');\
             return {url: location.href, origin: location.origin,\
               status: st ? st.textContent : '', msg: m ? m.textContent : '',\
               stdout: q('#output .stdout').join('').split('\\n').map(function(l){return l.trim();}),\
               job: sessionStorage.getItem('ssecommander_job'),\
               jobs: Array.prototype.map.call(document.querySelectorAll('#joblist li[data-id]'),\
                 function(l){return {id: l.dataset.id, text: l.textContent};})};",
        )
    }

    /// Polls the page until `ok`; on timeout saves a screenshot and panics
    /// showing the page.
    pub fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.page_state();
            if ok(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("webdriver-{}-timeout.png", self.name));
                panic!("timed out after {limit:?} waiting for {what}; page: {state:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn screenshot(&self, file: &str) {
        let png = self.cmd("GET", &self.path("/screenshot"), None);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(file);
        let _ = std::fs::create_dir_all(path.parent().expect("target/"));
        std::fs::write(&path, base64_decode(png.as_str().unwrap_or(""))).expect("write a screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    /// A WebDriver command; panics on an error answer, returns `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        match self.request(method, path, body) {
            Ok((200, mut reply)) => reply["value"].take(),
            Ok((code, reply)) => panic!("WebDriver {method} {path} -> {code}: {reply}"),
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// One HTTP/1.1 exchange with chromedriver on a fresh connection.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(WEBDRIVER_TIMEOUT))?;
        stream.set_write_timeout(Some(WEBDRIVER_TIMEOUT))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; \
             charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            self.port,
            payload.len()
        )?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let code = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    break;
                }
                let start = bytes.len();
                bytes.resize(start + size, 0);
                reader.read_exact(&mut bytes[start..])?;
                line.clear();
                reader.read_line(&mut line)?;
            }
        } else if let Some(length) = length {
            bytes.resize(length, 0);
            reader.read_exact(&mut bytes)?;
        } else {
            reader.read_to_end(&mut bytes)?;
        }
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.path(""), None);
        }
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: kill() takes a process-group id we created and a signal number; no memory.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.driver.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; the group is the chromedriver we spawned and its children.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
        // Chromium processes that left the group still name our fresh profile dir.
        let profile = self.profile.display().to_string();
        for pid in ssecommander::harness::procfs::pids_with_marker(&profile) {
            // SAFETY: kill() on a pid whose argv holds our unique profile path.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue, // padding and line breaks
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
