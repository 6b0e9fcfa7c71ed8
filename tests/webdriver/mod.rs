//! The one WebDriver client of the tests: a headless Chromium driven through
//! a chromedriver we spawn in its own process group, with a fresh profile,
//! over a small HTTP/1.1 client (std `TcpStream` + `serde_json`). Used by
//! tests/browser.rs (the page against the server) and tests/nginx.rs (the
//! page through nginx). Everything it started is killed by PID on drop.
//!
//! [`Browser::available`] is `None` after a `SKIPPED` line when Chromium or
//! chromedriver is missing outside CI; under `CI=true` or
//! `SSECOMMANDER_REQUIRE_BROWSER=1` it fails the test instead
//! (`ssecommander::harness::outside`). One browser at a time per test
//! binary: the browser holds a lock until it is dropped. Screenshots go to
//! `target/`.
// Not every test binary uses every part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ssecommander::harness::procfs;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER_CANDIDATES: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
/// Bound for one WebDriver command; starting a session is the slowest.
const WEBDRIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for chromedriver to answer `/status` after it is spawned.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// WebDriver's key code for Enter.
pub const ENTER: &str = "\u{E007}";
/// WebDriver's key code for Control (held until the end of the keys sent).
pub const CONTROL: &str = "\u{E009}";
/// The W3C key under which an element reference is returned.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: four Chromiums at once make a 2-core box flaky.
static LOCK: Mutex<()> = Mutex::new(());

fn driver_path() -> Option<PathBuf> {
    DRIVER_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Chromium and chromedriver are there; else `false` after a `SKIPPED`
/// line, or a panic under `CI=true` or `SSECOMMANDER_REQUIRE_BROWSER=1`.
fn present() -> bool {
    let missing: Vec<&str> = [
        (!Path::new(CHROMIUM).exists()).then_some(CHROMIUM),
        driver_path().is_none().then_some("chromedriver"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{} not found: apt-get install chromium chromium-driver",
        missing.join(" and ")
    );
    if std::env::var("SSECOMMANDER_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("SSECOMMANDER_REQUIRE_BROWSER=1 but {msg}");
    }
    ssecommander::harness::outside::skip(&format!("browser test: {msg}"));
    false
}

/// A string no other test run uses: pid and nanoseconds.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}{:09}", std::process::id(), nanos)
}

/// A chromedriver we spawned, with one Chromium session in a fresh profile.
/// Dropping it ends the session, then kills what we started by PID.
pub struct Browser {
    driver: Child,
    port: u16,
    profile: PathBuf,
    session: String,
    name: String,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Browser {
    /// A browser, or `None` (SKIPPED) when Chromium or chromedriver is
    /// missing outside CI; waits for any other browser of this test binary
    /// to be dropped. `name` names its screenshots; `insecure_certs`
    /// accepts a self-signed certificate (a test's own TLS front end).
    pub fn available(name: &str, insecure_certs: bool) -> Option<Browser> {
        if !present() {
            return None;
        }
        let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Browser::start(name, insecure_certs, lock))
    }

    fn start(name: &str, insecure_certs: bool, lock: MutexGuard<'static, ()>) -> Browser {
        let driver_bin = driver_path().expect("checked by present()");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("local addr").port()
        };
        let profile = std::env::temp_dir().join(format!("ssecommander-chromium-{}", unique()));
        std::fs::create_dir_all(&profile).expect("create the profile dir");
        let driver = Command::new(driver_bin)
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
            _one_at_a_time: lock,
        };
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
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
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer /status in {DRIVER_START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
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
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/value")),
            Some(&json!({ "text": text })),
        );
    }

    /// The browser's reload (WebDriver `refresh`).
    pub fn reload(&self) {
        self.cmd("POST", &self.path("/refresh"), Some(&json!({})));
    }

    /// Sets the window's outer size in CSS pixels.
    pub fn resize_window(&self, width: u32, height: u32) {
        let rect = json!({"width": width, "height": height});
        self.cmd("POST", &self.path("/window/rect"), Some(&rect));
    }

    pub fn clear(&self, css: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/clear")),
            Some(&json!({})),
        );
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/click")),
            Some(&json!({})),
        );
    }

    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// A DevTools protocol command through chromedriver's `goog/cdp/execute`.
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            &self.path("/goog/cdp/execute"),
            Some(&json!({"cmd": command, "params": params})),
        )
    }

    /// The handle of the current window.
    pub fn window(&self) -> String {
        let handle = self.cmd("GET", &self.path("/window"), None);
        handle.as_str().expect("a window handle").to_owned()
    }

    /// Opens a new tab; its handle.
    pub fn new_window(&self) -> String {
        let reply = self.cmd("POST", &self.path("/window/new"), Some(&json!({"type": "tab"})));
        reply["handle"].as_str().expect("a window handle").to_owned()
    }

    /// Closes the current tab.
    pub fn close_window(&self) {
        self.cmd("DELETE", &self.path("/window"), None);
    }

    pub fn switch_to(&self, handle: &str) {
        self.cmd("POST", &self.path("/window"), Some(&json!({ "handle": handle })));
    }

    /// The names of every cookie the browser holds for the current page.
    pub fn cookies(&self) -> Vec<String> {
        let cookies = self.cmd("GET", &self.path("/cookie"), None);
        cookies
            .as_array()
            .map(|all| all.iter().map(|c| c["name"].to_string()).collect())
            .unwrap_or_default()
    }

    /// What the tests look at: status, texts of stdout/stderr elements, the
    /// output as rendered, the address, and whether this is our page.
    pub fn page_state(&self) -> Value {
        self.exec(
            "var q=function(s){return Array.prototype.map.call(document.querySelectorAll(s),\
               function(e){return e.textContent;});};\
             var st=document.getElementById('status'),o=document.getElementById('output');\
             var n=document.getElementById('no-token');\
             return {url: location.href, hasCommand: !!document.getElementById('command'),\
               status: st ? st.textContent : '', output: o ? o.innerText : '',\
               notice: n ? n.textContent : null,\
               stdout: q('#output .stdout'), stderr: q('#output .stderr'),\
               job: sessionStorage.getItem('ssecommander_job'),\
               repeats: Number(o ? o.dataset.repeats || 0 : 0),\
               jobs: Array.prototype.map.call(document.querySelectorAll('#joblist li[data-id]'),\
                 function(l){return {id: l.dataset.id, text: l.textContent,\
                   current: l.classList.contains('current')};}),\
               body: document.body ? document.body.innerText.slice(0, 500) : ''};",
            json!([]),
        )
    }

    /// Polls the page until `ok`; on timeout saves a screenshot and shows the page.
    pub fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.page_state();
            if ok(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                self.timeout_screenshot();
                panic!("timed out after {limit:?} waiting for {what}; page: {state:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `target/browser-NAME-timeout.png`: what the page showed when a wait
    /// gave up.
    pub fn timeout_screenshot(&self) {
        self.screenshot(&format!("browser-{}-timeout.png", self.name));
    }

    pub fn screenshot(&self, file: &str) {
        let png = self.cmd("GET", &self.path("/screenshot"), None);
        let bytes = base64_decode(png.as_str().expect("screenshot is base64"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(file);
        std::fs::write(&path, bytes).expect("write screenshot");
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
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((code, value))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.path(""), None);
        }
        // The group is the chromedriver we spawned and its children.
        procfs::stop_group(&mut self.driver, Duration::from_secs(3));
        // Chromium processes that left the group still name our fresh profile dir.
        let profile = self.profile.display().to_string();
        for pid in procfs::pids_with_marker(&profile) {
            // A pid whose argv holds our unique profile path.
            procfs::send_signal(pid, libc::SIGKILL);
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
