//! The built-in page (contract §2 `GET /`) in Debian's real headless Chromium,
//! driven over WebDriver by a small client below (std `TcpStream` +
//! `serde_json`): cookie login (§4), streaming output (§3.2, §3.3), Stop
//! killing the child (§3.6), and the page telling the user why a stream
//! could not start.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`apt-get install chromium
//! chromium-driver`). Without them each test prints `SKIPPED` and passes,
//! unless `SSECOMMANDER_REQUIRE_BROWSER=1` (CI), where it fails.
//! Screenshots go to `target/browser-*.png`.

mod common;

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
/// The server's default `--kill-grace` (contract §1), which these tests keep.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Bound for one WebDriver command; starting a session is the slowest.
const WEBDRIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the page to show what a short command printed.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// WebDriver's key code for Enter.
const ENTER: &str = "\u{E007}";
/// The W3C key under which an element reference is returned.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: four Chromiums at once make a 2-core box flaky.
static BROWSER_LOCK: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------- the tests

/// Cookie login through the printed URL, then stdout and stderr as they come.
#[test]
fn browser_runs_command_and_streams_output() {
    let Some(_lock) = browser_lock() else { return };
    let server = common::Server::start(&["--shell"]);
    let browser = Browser::start("run");
    open_page_with_token(&browser, &server);

    assert_eq!(
        browser.exec("return document.activeElement && document.activeElement.id", json!([])),
        json!("command"),
        "the command input has focus on load"
    );
    let command = r"printf 'a\nb\n'; echo err >&2";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    let state = browser.wait_for("stdout a, b; stderr err; exit code 0", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "a")
            && lines_of(&s["stdout"]).iter().any(|l| l == "b")
            && lines_of(&s["stderr"]).iter().any(|l| l == "err")
            && status(s).contains("exit code 0")
    });
    assert!(
        !lines_of(&state["stdout"]).iter().any(|l| l.contains("err")),
        "stderr text must not be in a stdout element: {state:#}"
    );
    let colours = browser.exec(
        "var o=document.querySelector('#output .stdout'),e=document.querySelector('#output .stderr');\
         return [getComputedStyle(o).color, getComputedStyle(e).color];",
        json!([]),
    );
    assert_ne!(colours[0], colours[1], "stderr must look different from stdout");
    browser.screenshot("browser-run.png");
}

/// A lone CR rewrites the line, as in a terminal: `\r1\r2\r3` ends as `3`.
#[test]
fn browser_carriage_return_rewrites_line() {
    let Some(_lock) = browser_lock() else { return };
    let server = common::Server::start(&["--shell"]);
    let browser = Browser::start("progress");
    open_page_with_token(&browser, &server);

    let command = r#"for i in 1 2 3; do printf "\r$i"; sleep 0.3; done; echo"#;
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    let state = browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| status(s).contains("exit code 0"));
    let lines = lines_of(&state["output"]);
    browser.screenshot("browser-progress.png");
    assert!(lines.iter().any(|l| l == "3"), "a line `3` expected: {state:#}");
    assert!(
        !lines.iter().any(|l| l.contains("12") || l.contains("23")),
        "CR must rewrite the line, not append: {state:#}"
    );
}

/// Stop closes the stream; the server kills the child within the kill grace.
#[test]
fn browser_stop_kills_command() {
    let Some(_lock) = browser_lock() else { return };
    let server = common::Server::start(&["--shell"]);
    let browser = Browser::start("stop");
    open_page_with_token(&browser, &server);

    let marker = common::sleep_marker();
    browser.send_keys("#command", &format!("sleep {marker}{ENTER}"));
    let pids = poll_for("the sleep to appear in /proc", PAGE_TIMEOUT, || {
        let pids = common::pids_with_marker(&marker);
        (!pids.is_empty()).then_some(pids)
    });
    browser.wait_for("status running", PAGE_TIMEOUT, |s| status(s).contains("running"));

    browser.click("#stop");
    let stopped_at = Instant::now();
    let limit = KILL_GRACE + Duration::from_secs(2);
    let state = browser.wait_for("status stopped", PAGE_TIMEOUT, |s| status(s).contains("stopped"));
    let left = limit.saturating_sub(stopped_at.elapsed());
    poll_for(
        &format!("pids {pids:?} (sleep {marker}) to end within {limit:?} of Stop"),
        left,
        || pids.iter().all(|&p| gone(p, server.pid())).then_some(()),
    );
    eprintln!(
        "child gone {:?} after Stop; page: {}",
        stopped_at.elapsed(),
        status(&state)
    );
    browser.screenshot("browser-stop.png");
    assert!(
        common::pids_with_marker(&marker).is_empty(),
        "no process with {marker} may remain"
    );
}

/// Without the token: `GET /` is refused, and a page that has lost its cookie
/// tells the user to open the printed URL, and runs nothing.
#[test]
fn browser_without_token_says_not_authorised() {
    let Some(_lock) = browser_lock() else { return };
    let server = common::Server::start(&["--shell"]);
    let browser = Browser::start("unauthorised");
    let base = server.base.trim_end_matches('/').to_owned();

    // §4: every route but /healthz needs the token, the page included.
    browser.goto(&format!("{base}/"));
    let state = browser.page_state();
    browser.screenshot("browser-unauthorised-get.png");
    assert_eq!(
        state["hasCommand"],
        json!(false),
        "GET / without a token served the page: {state:#}"
    );
    assert!(!browser.has_cookie(), "no cookie may be set without the token");

    // The page, then its cookie gone (expired, cleared, other browser profile).
    open_page_with_token(&browser, &server);
    browser.cmd("DELETE", &browser.path("/cookie"), None);
    assert!(!browser.has_cookie(), "WebDriver deleted the cookie");
    let marker_file = common::marker_path("browser-noauth");
    browser.send_keys("#command", &format!("touch {}{ENTER}", marker_file.str()));
    let state = browser.wait_for("the not-authorised message", PAGE_TIMEOUT, |s| {
        status(s).contains("not authorised") && status(s).contains("?token=")
    });
    browser.screenshot("browser-unauthorised.png");
    std::thread::sleep(Duration::from_millis(500)); // give a wrongly started `touch` time to show
    assert!(!marker_file.exists(), "the command ran without a token: {state:#}");
}

/// `err` (cannot start) shows its message; a vanished server is "unreachable".
#[test]
fn browser_shows_start_error_and_unreachable_server() {
    let Some(_lock) = browser_lock() else { return };
    let server = common::Server::start(&[]);
    let browser = Browser::start("errors");
    open_page_with_token(&browser, &server);

    let missing = format!("no-such-program-{}", unique());
    browser.send_keys("#command", &format!("{missing}{ENTER}"));
    browser.wait_for("an error status naming the program", PAGE_TIMEOUT, |s| {
        status(s).contains("error") && status(s).contains(&missing)
    });
    browser.screenshot("browser-error.png");

    drop(server);
    browser.clear("#command");
    browser.send_keys("#command", &format!("echo hi{ENTER}"));
    browser.wait_for("server unreachable", PAGE_TIMEOUT, |s| {
        status(s).contains("server unreachable")
    });
    browser.screenshot("browser-unreachable.png");
}

// ---------------------------------------------------------------- helpers

/// `None` (after a loud SKIPPED line) when the browser is not installed and not
/// required; the lock serialises the browser tests.
fn browser_lock() -> Option<std::sync::MutexGuard<'static, ()>> {
    let missing: Vec<&str> = [
        (!Path::new(CHROMIUM).exists()).then_some(CHROMIUM),
        driver_path().is_none().then_some("chromedriver"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        let msg = format!(
            "{} not found: apt-get install chromium chromium-driver",
            missing.join(" and ")
        );
        if std::env::var("SSECOMMANDER_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("SSECOMMANDER_REQUIRE_BROWSER=1 but {msg}");
        }
        eprintln!("\n*** SKIPPED browser test: {msg} ***\n");
        return None;
    }
    Some(BROWSER_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn driver_path() -> Option<PathBuf> {
    DRIVER_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists())
}

/// A string no other test run uses: pid and nanoseconds.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}{:09}", std::process::id(), nanos)
}

/// Opens the printed `?token=` URL: the server sets the cookie and redirects
/// to `/`; the token is then neither in the address, the page, nor JavaScript.
fn open_page_with_token(browser: &Browser, server: &common::Server) {
    let token = server.token.as_deref().expect("the server prints a ?token= URL");
    browser.goto(&server.url);
    let want = format!("{}/", server.base.trim_end_matches('/'));
    let state = browser.wait_for("the page at / after the token redirect", PAGE_TIMEOUT, |s| {
        s["url"] == json!(want) && s["hasCommand"] == json!(true)
    });
    assert!(browser.has_cookie(), "the ssecommander_token cookie was set");
    let html = browser.exec(
        "return document.documentElement.outerHTML + document.cookie;",
        json!([]),
    );
    assert!(
        !html.as_str().unwrap_or("").contains(token),
        "the token leaked into the page: {state:#}"
    );
}

fn status(state: &Value) -> String {
    state["status"].as_str().unwrap_or("").to_owned()
}

/// The trimmed lines of a list of texts, or of one text.
fn lines_of(texts: &Value) -> Vec<String> {
    let joined = match texts {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    joined.lines().map(|l| l.trim().to_owned()).collect()
}

/// Whether `pid` has ended as far as the server is concerned: gone from
/// /proc, or a zombie that is not the server's to reap (a grandchild orphaned
/// by the group kill waits for init, which may take a second or two).
fn gone(pid: u32, server: u32) -> bool {
    match common::state(pid) {
        None => true,
        Some('Z') => common::ppid(pid) != Some(server),
        Some(_) => false,
    }
}

/// Polls `probe` every 50 ms until it gives a value; panics after `limit`.
fn poll_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

// ---------------------------------------------------------------- WebDriver

/// A chromedriver we spawned, with one Chromium session in a fresh profile.
/// Dropping it ends the session, then kills what we started by PID.
struct Browser {
    driver: Child,
    port: u16,
    profile: PathBuf,
    session: String,
    name: String,
}

impl Browser {
    fn start(name: &str) -> Browser {
        let driver_bin = driver_path().expect("checked by browser_lock");
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
        };
        poll_for("chromedriver to answer /status", Duration::from_secs(20), || {
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("chromedriver exited at start-up: {exit}");
            }
            let (code, body) = browser.request("GET", "/status", None).ok()?;
            (code == 200 && body["value"]["ready"] == json!(true)).then_some(())
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
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

    fn goto(&self, url: &str) {
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

    fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/value")),
            Some(&json!({ "text": text })),
        );
    }

    fn clear(&self, css: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/clear")),
            Some(&json!({})),
        );
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &self.path(&format!("/element/{element}/click")),
            Some(&json!({})),
        );
    }

    fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({"script": script, "args": args})),
        )
    }

    fn has_cookie(&self) -> bool {
        let cookies = self.cmd("GET", &self.path("/cookie"), None);
        cookies
            .as_array()
            .is_some_and(|all| all.iter().any(|c| c["name"] == json!("ssecommander_token")))
    }

    /// What the tests look at: status, texts of stdout/stderr elements, the
    /// output as rendered, the address, and whether this is our page.
    fn page_state(&self) -> Value {
        self.exec(
            "var q=function(s){return Array.prototype.map.call(document.querySelectorAll(s),\
               function(e){return e.textContent;});};\
             var st=document.getElementById('status'),o=document.getElementById('output');\
             return {url: location.href, hasCommand: !!document.getElementById('command'),\
               status: st ? st.textContent : '', output: o ? o.innerText : '',\
               stdout: q('#output .stdout'), stderr: q('#output .stderr'),\
               body: document.body ? document.body.innerText.slice(0, 500) : ''};",
            json!([]),
        )
    }

    /// Polls the page until `ok`; on timeout saves a screenshot and shows the page.
    fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.page_state();
            if ok(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("browser-{}-timeout.png", self.name));
                panic!("timed out after {limit:?} waiting for {what}; page: {state:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, file: &str) {
        let png = self.cmd("GET", &self.path("/screenshot"), None);
        let bytes = base64_decode(png.as_str().expect("screenshot is base64"));
        let dir = screenshot_dir();
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
        for pid in common::pids_with_marker(&profile) {
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
