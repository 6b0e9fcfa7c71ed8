//! ssecommander behind Debian's real nginx, configured as docs/GUIDE.md
//! shows (its configuration blocks are checked to be in the guide verbatim):
//!
//! - several instances (contract §7.5): two servers started with
//!   `--instance a` and `--instance b`, and the guide's map, which sends
//!   `/jobs/a-…` to `a`, `/jobs/b-…` to `b`, and everything else round-robin.
//!   Through the proxy a job starts on either instance, is looked at and
//!   watched on the right one, the watching connection is cut, and a resume
//!   with `Last-Event-ID` gives the rest, byte-exact;
//! - one multiplexed stream (contract §11) per instance, through the guide's
//!   `/a/` and `/b/` prefixes: each carries exactly its instance's jobs, is
//!   cut, and resumes with the last global number it had, byte-exact;
//! - the page in headless Chromium through nginx on a port that is not 80
//!   and through nginx terminating TLS (a self-signed certificate made with
//!   openssl): Run, Stop and the job list work, which needs the client's
//!   `Host`, port included, passed on (issue 18.5).
//!
//! Needs `nginx` (`apt-get install nginx`), and for the page `openssl`,
//! `chromium` and `chromedriver`; without one the test prints `SKIPPED` and
//! passes, unless `CI=true` (`.ci/run` installs them).

mod common;
mod webdriver;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ssecommander::harness::{outside, procfs};

/// Where Debian installs nginx.
const NGINX: &str = "/usr/sbin/nginx";
/// Lines the watched job prints (`seq`): about 1.3 MB of output.
const LINES: u32 = 200_000;

/// An nginx configuration around `servers` (the guide's `http` parts, with
/// the test's ports), with a private prefix for pid file, logs and temp files.
fn nginx_conf(dir: &str, servers: &str) -> String {
    format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

{servers}}}
"#
    )
}

/// The guide's several-instances configuration, listening on `listen`.
fn instances_conf(listen: u16, a: SocketAddr, b: SocketAddr) -> String {
    let routing = README_ROUTING
        .replace("127.0.0.1:3001", &a.to_string())
        .replace("127.0.0.1:3002", &b.to_string());
    format!(
        "{routing}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://$ssecommander;
{README_PROXYING}        }}
{README_PREFIXES}    }}
"
    )
}

/// The guide's one-instance configuration: plain HTTP on `plain` and TLS on
/// `tls` (the guide's `listen 443 ssl` and certificate lines), both in front
/// of `upstream`.
fn tls_conf(plain: u16, tls: u16, upstream: SocketAddr, cert: &str, key: &str) -> String {
    let tls_lines = README_TLS
        .replace("443", &format!("127.0.0.1:{tls}"))
        .replace("/etc/ssl/ssecommander.crt", cert)
        .replace("/etc/ssl/ssecommander.key", key);
    let location = format!(
        "        location / {{
            proxy_pass http://{upstream};
{README_PROXYING}        }}
"
    );
    format!(
        "    server {{
        listen 127.0.0.1:{plain};
{location}    }}
    server {{
{tls_lines}{location}    }}
"
    )
}

/// The `http` part of the README's configuration, verbatim.
const README_ROUTING: &str = r#"    upstream ssecommander_any { server 127.0.0.1:3001; server 127.0.0.1:3002; }
    upstream ssecommander_a   { server 127.0.0.1:3001; }
    upstream ssecommander_b   { server 127.0.0.1:3002; }
    # /jobs/NAME-… goes to the instance started with --instance NAME.
    map $uri $ssecommander {
        ~^/jobs/a-  ssecommander_a;
        ~^/jobs/b-  ssecommander_b;
        default     ssecommander_any;
    }
"#;

/// The `location` part of the guide's configuration, verbatim: the
/// client's `Host` as it sent it, port included (`$http_host`), so the
/// page's `Origin` (`http://HOST:PORT` or `https://HOST:PORT`) is the
/// server's own; `$host` would drop the port.
const README_PROXYING: &str = r#"            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 1h;
"#;

/// The guide's per-instance prefixes, verbatim: `/a/…` is instance a's
/// `/…` (`proxy_pass` with a URI replaces the matched prefix), so each
/// instance's multiplexed stream has an address of its own.
const README_PREFIXES: &str = r#"        # /a/… and /b/… reach one instance, the prefix removed: its own
        # multiplexed stream is /a/jobs/events (and /b/jobs/events).
        location /a/ {
            proxy_pass http://ssecommander_a/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
        location /b/ {
            proxy_pass http://ssecommander_b/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
"#;

/// The TLS lines of the guide's one-instance `server` block, verbatim.
const README_TLS: &str = r#"        listen 443 ssl;
        ssl_certificate     /etc/ssl/ssecommander.crt;
        ssl_certificate_key /etc/ssl/ssecommander.key;
"#;

/// The configuration tested is the one the guide shows.
#[test]
fn the_guide_shows_the_tested_configuration() {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/GUIDE.md"))
        .expect("read docs/GUIDE.md");
    assert_eq!(
        README_PREFIXES.matches(README_PROXYING).count(),
        2,
        "each prefix passes the same proxying lines"
    );
    for part in [
        README_ROUTING,
        README_PROXYING,
        README_PREFIXES,
        README_TLS,
        "proxy_pass http://$ssecommander;",
        "proxy_pass http://127.0.0.1:3000;",
    ] {
        assert!(guide.contains(part), "docs/GUIDE.md lacks, verbatim:\n{part}");
    }
}

/// Two servers, `--instance a` and `--instance b`, sharing a token (named
/// after `tag`) and a 64 MiB job log, behind nginx with the guide's
/// instances configuration; and the `Authorization` value for them. Bound
/// in this order, nginx is dropped first, then b, then a.
fn two_instances_behind_nginx(tag: &str) -> (common::Server, common::Server, Nginx, String) {
    let token = format!("{tag}-{}", common::next_id() + std::process::id());
    let common_args = ["--token", token.as_str(), "--job-log", "64M"];
    let a = common::Server::start(&[&common_args[..], &["--instance", "a"]].concat());
    let b = common::Server::start(&[&common_args[..], &["--instance", "b"]].concat());
    let proxy = Nginx::start(|port| instances_conf(port, a.addr, b.addr));
    (a, b, proxy, format!("Bearer {token}"))
}

#[test]
fn nginx_routes_jobs_and_resumes_byte_exact() {
    if !nginx_present() {
        return;
    }
    let (a, b, proxy, auth) = two_instances_behind_nginx("nginx-test");
    let headers = [("Authorization", auth.as_str())];

    // POST anywhere: round-robin puts consecutive jobs on both instances.
    let command = common::pct(&format!("seq 1 {LINES}"));
    let mut ids: Vec<String> = (0..2)
        .map(|_| {
            let reply = proxy.request(
                "POST",
                &format!("/jobs?command={command}"),
                &[headers[0], ("Content-Length", "0")],
            );
            reply.assert_status(201, "POST /jobs through nginx");
            let job: Value = serde_json::from_slice(&reply.body).expect("the job JSON");
            job["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    ids.sort();
    assert!(
        ids[0].starts_with("a-") && ids[1].starts_with("b-"),
        "one job on each instance: {ids:?}"
    );

    for (id, own, other) in [(&ids[0], &a, &b), (&ids[1], &b, &a)] {
        // Routed by id: through the proxy the job is found every time...
        for _ in 0..3 {
            let reply = proxy.request("GET", &format!("/jobs/{id}"), &headers);
            reply.assert_status(200, "GET /jobs/ID through nginx");
            let job: Value = serde_json::from_slice(&reply.body).expect("the job JSON");
            assert_eq!(job["id"], Value::from(id.as_str()));
        }
        // ...though only its own instance knows it.
        own.get(&format!("/jobs/{id}"))
            .assert_status(200, "on its own instance");
        other
            .get(&format!("/jobs/{id}"))
            .assert_status(404, "on the other instance");
    }

    // Watch b's job through the proxy, cut after about 300 KB, resume.
    let id = &ids[1];
    let target = format!("/jobs/{id}/events");
    let mut first = proxy.events(&target, &[headers[0]], 1);
    let (mut out, last) = first.read_until(|text, _| text.len() >= 300_000);
    assert_eq!(first.first_id, Some(1), "a new viewer starts at event 1");
    drop(first); // the cut: nginx closes its side to the instance as well
    assert!(out.len() < expected(LINES).len(), "the cut came after the end");
    let last_text = last.to_string();
    let mut resumed = proxy.events(&target, &[headers[0], ("Last-Event-ID", last_text.as_str())], last + 1);
    let (rest, end) = resumed.read_until(|_, _| false);
    assert_eq!(
        resumed.first_id,
        Some(last + 1),
        "the resumed stream starts at Last-Event-ID + 1"
    );
    assert!(
        resumed.exit.is_some(),
        "the resumed stream ends with exit (last id {end})"
    );
    out.extend_from_slice(&rest);
    let want = expected(LINES);
    assert!(
        out == want,
        "byte-exact output through nginx: got {} bytes (fnv {:016x}), want {} (fnv {:016x})",
        out.len(),
        fnv(&out),
        want.len(),
        fnv(&want)
    );
    assert_eq!(
        resumed.exit.as_ref().map(|e| e["code"].clone()),
        Some(Value::from(0)),
        "exit code 0"
    );
    // Resuming after the end: 204, through the proxy too.
    let reply = proxy.request("GET", &target, &[headers[0], ("Last-Event-ID", &end.to_string())]);
    reply.assert_status(204, "resume after the last event");
}

/// Lines of each job watched on a multiplexed stream through nginx, one
/// event each (a line every 3 ms).
const MUX_LINES: [u32; 2] = [600, 400];

/// Contract §11 behind nginx with two instances: each instance's
/// multiplexed stream (`/a/jobs/events`, `/b/jobs/events`, the guide's
/// prefixes) carries exactly that instance's two jobs, live; it is cut
/// after 40 KB and resumed through nginx with `Last-Event-ID`, the last global
/// number it had; each job's output, rebuilt from both connections, is
/// byte-exact, with its events once each and global ids increasing.
#[test]
fn nginx_carries_one_multiplexed_stream_per_instance_cut_and_resumed() {
    if !nginx_present() {
        return;
    }
    let (_a, _b, proxy, auth) = two_instances_behind_nginx("nginx-mux");
    let headers = [("Authorization", auth.as_str())];
    for name in ["a", "b"] {
        // Two jobs on this instance, started through its prefix.
        let ids: Vec<String> = MUX_LINES
            .iter()
            .map(|lines| {
                let command = common::pct(&format!(
                    "sh -c 'for i in $(seq 1 {lines}); do echo $i; sleep 0.003; done'"
                ));
                let reply = proxy.request(
                    "POST",
                    &format!("/{name}/jobs?command={command}"),
                    &[headers[0], ("Content-Length", "0")],
                );
                reply.assert_status(201, "POST /NAME/jobs through nginx");
                let job: Value = serde_json::from_slice(&reply.body).expect("the job JSON");
                job["id"].as_str().expect("an id").to_owned()
            })
            .collect();
        assert!(
            ids.iter().all(|id| id.starts_with(&format!("{name}-"))),
            "both on instance {name}: {ids:?}"
        );
        let target = format!("/{name}/jobs/events");
        let mut mux = MuxRead::default();
        let mut first = proxy.stream(&target, &headers);
        mux.read(&mut first, |m| m.bytes >= 40_000);
        drop(first); // the cut
        let last = *mux.globals.last().expect("events before the cut");
        assert!(
            ids.iter().any(|id| !mux.ended(id)),
            "the cut came before both jobs ended"
        );
        let before = mux.globals.len();
        let g = last.to_string();
        let mut resumed = proxy.stream(&target, &[headers[0], ("Last-Event-ID", g.as_str())]);
        mux.read(&mut resumed, |m| ids.iter().all(|id| m.ended(id)));
        eprintln!(
            "instance {name}: {before} events before the cut, {} after",
            mux.globals.len() - before
        );
        assert!(
            mux.globals.windows(2).all(|w| w[0] < w[1]),
            "instance {name}: global ids increase over the cut"
        );
        assert_eq!(
            mux.jobs.keys().cloned().collect::<Vec<_>>(),
            {
                let mut sorted = ids.clone();
                sorted.sort();
                sorted
            },
            "instance {name}'s stream carries exactly its own jobs"
        );
        for (id, lines) in ids.iter().zip(MUX_LINES) {
            let job = &mux.jobs[id];
            let want: Vec<u64> = (1..=job.seqs.len() as u64).collect();
            assert_eq!(job.seqs, want, "job {id}: its events once each, in order");
            assert_eq!(job.exit.as_ref().map(|e| e["code"].clone()), Some(Value::from(0)));
            let expected = expected(lines);
            assert!(
                job.stdout == expected,
                "job {id} byte-exact through nginx and a cut: got {} bytes (fnv {:016x}), want {} (fnv {:016x})",
                job.stdout.len(),
                fnv(&job.stdout),
                expected.len(),
                fnv(&expected)
            );
        }
    }
}

/// One job as a multiplexed stream gave it.
#[derive(Default)]
struct MuxJob {
    stdout: Vec<u8>,
    seqs: Vec<u64>,
    exit: Option<Value>,
}

/// What multiplexed streams gave, over one or more connections.
#[derive(Default)]
struct MuxRead {
    jobs: std::collections::BTreeMap<String, MuxJob>,
    globals: Vec<u64>,
    /// Event bytes (decoded body) read so far.
    bytes: usize,
}

impl MuxRead {
    fn ended(&self, id: &str) -> bool {
        self.jobs.get(id).is_some_and(|job| job.exit.is_some())
    }

    /// Reads `stream` with the crate's SSE parser until `done` holds after
    /// an event (or the stream ends), within 120 s.
    fn read(&mut self, stream: &mut (common::Conn, common::Body), done: impl Fn(&MuxRead) -> bool) {
        let (conn, body) = stream;
        let mut parser = ssecommander::client::SseParser::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(self) {
            assert!(Instant::now() < deadline, "the stream took over 120 s");
            let Some((piece, _)) = conn.read_body_some(body, 64 * 1024) else {
                panic!("the stream ended before it was done");
            };
            self.bytes += piece.len();
            let mut events = Vec::new();
            parser
                .feed(&piece, &mut |item| {
                    if let ssecommander::client::Item::Event(e) = item {
                        let id = e.has_id.then(|| String::from_utf8_lossy(e.last_event_id).into_owned());
                        events.push((String::from_utf8_lossy(e.name).into_owned(), id, e.data.to_vec()));
                    }
                })
                .expect("a well-formed stream");
            for (name, id, data) in events {
                self.on_event(&name, id, &data);
            }
        }
    }

    fn on_event(&mut self, name: &str, id: Option<String>, data: &[u8]) {
        let value: Value = serde_json::from_slice(data).expect("JSON data");
        if name == "job" {
            assert_eq!(id, None, "a job event has no id");
            return;
        }
        let global: u64 = id.and_then(|id| id.parse().ok()).expect("a numbered event");
        self.globals.push(global);
        let job = self
            .jobs
            .entry(value["job"].as_str().expect("job").to_owned())
            .or_default();
        job.seqs.push(value["seq"].as_u64().expect("seq"));
        match name {
            "stdout" => job
                .stdout
                .extend_from_slice(value["out"].as_str().expect("out").as_bytes()),
            "exit" => job.exit = Some(value),
            other => panic!("unexpected event {other}: {value}"),
        }
    }
}

/// The page through nginx in front of one instance, as the guide shows it:
/// on a port that is not 80, then through TLS. In each, Run shows a
/// command's output and its exit, Stop stops a running one (its process is
/// gone), and the job list shows both jobs. With `Host $host` (the port
/// dropped) every POST and DELETE of the page was refused with 403.
#[test]
fn the_page_runs_stops_and_lists_jobs_through_nginx_on_a_port_and_behind_tls() {
    if !nginx_present() {
        return;
    }
    let openssl = outside::runs("openssl", &["version"]);
    if !outside::available(openssl, "openssl", "apt-get install openssl") {
        return;
    }
    let Some(browser) = webdriver::Browser::available("nginx-page", true) else {
        return;
    };
    let server = common::Server::start(&[]);
    let token = server.token.clone().expect("the server prints a token");
    let dir = common::scratch_dir("nginx-tls");
    let (cert, key) = self_signed_certificate(dir.path());
    let tls = free_port();
    let proxy = Nginx::start_in(dir, |plain| tls_conf(plain, tls, server.addr, &cert, &key));
    for base in [
        format!("http://127.0.0.1:{}", proxy.addr.port()),
        format!("https://127.0.0.1:{tls}"),
    ] {
        page_runs_stops_and_lists(&browser, &server, &base, &token);
    }
}

/// Bound for the page to show what a short command did.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

fn page_runs_stops_and_lists(browser: &webdriver::Browser, server: &common::Server, base: &str, token: &str) {
    browser.goto(&format!("{base}/?token={token}"));
    let home = format!("{base}/");
    browser.wait_for(&format!("the page at {home}"), PAGE_TIMEOUT, |s| {
        s["url"] == home.as_str()
    });

    // Run: POST /jobs, then the job's event stream.
    let text = format!("through-nginx-{}", common::next_id());
    browser.send_keys("#command", &format!("echo {text}{}", webdriver::ENTER));
    let state = browser.wait_for(&format!("{text} and exit code 0 at {base}"), PAGE_TIMEOUT, |s| {
        stdout_has(s, &text) && status(s).contains("exit code 0")
    });
    let echo_job = state["job"].as_str().expect("the page keeps its job").to_owned();

    // Stop: DELETE /jobs/ID stops a running command.
    let marker = common::sleep_marker();
    let _guard = common::MarkerGuard(vec![marker.clone()]);
    browser.exec("document.getElementById('command').value = '';", serde_json::json!([]));
    browser.send_keys("#command", &format!("sleep {marker}{}", webdriver::ENTER));
    let state = browser.wait_for(&format!("status running at {base}"), PAGE_TIMEOUT, |s| {
        status(s).contains("running") && s["job"].as_str().is_some_and(|j| j != echo_job)
    });
    let sleep_job = state["job"].as_str().expect("the page keeps its job").to_owned();
    common::wait_until(PAGE_TIMEOUT, "the sleep to run", || {
        !common::pids_with_marker(&marker).is_empty()
    });
    browser.click("#stop");
    browser.wait_for(&format!("status stopped at {base}"), PAGE_TIMEOUT, |s| {
        status(s).contains("stopped")
    });
    common::wait_until(Duration::from_secs(5), "the stopped sleep to be gone", || {
        common::pids_with_marker(&marker).is_empty()
    });
    server.wait_no_children(Duration::from_secs(5));

    // The job list (GET /jobs) shows both, the stopped one first.
    browser.click("#refresh");
    let state = browser.wait_for(&format!("both jobs in the list at {base}"), PAGE_TIMEOUT, |s| {
        let listed: Vec<&str> = s["jobs"]
            .as_array()
            .map(|js| js.iter().filter_map(|j| j["id"].as_str()).collect())
            .unwrap_or_default();
        listed.contains(&echo_job.as_str()) && listed.first() == Some(&sleep_job.as_str())
    });
    assert!(
        state["jobs"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.contains("running")),
        "the stopped job is not listed as running: {state:#}"
    );
}

fn status(state: &Value) -> String {
    state["status"].as_str().unwrap_or("").to_owned()
}

/// Whether one of the page's stdout lines, trimmed, is `line` (the page
/// state gives the texts of its stdout elements, which may hold several
/// lines or part of one).
fn stdout_has(state: &Value, line: &str) -> bool {
    let texts = state["stdout"].as_array().map_or_else(Vec::new, |texts| {
        texts.iter().filter_map(Value::as_str).collect::<Vec<_>>()
    });
    texts.concat().lines().any(|l| l.trim() == line)
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl
/// in `dir`: their paths.
fn self_signed_certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", &key, "-out", &cert])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req -x509 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// True when nginx is installed; else SKIPPED (outside CI) or a failure (CI).
fn nginx_present() -> bool {
    outside::available(Path::new(NGINX).exists(), NGINX, "apt-get install nginx")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("local addr").port()
}

/// What `seq 1 N` prints.
fn expected(n: u32) -> Vec<u8> {
    (1..=n).map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

/// FNV-1a, to name a byte string in a failure message.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A request head for nginx at `addr`.
fn request_head(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![("Host".to_owned(), addr.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    common::build_request(method, target, "HTTP/1.1", &headers)
}

/// How often [`Nginx::start`] tries a new port.
const START_TRIES: usize = 3;

/// nginx in the foreground (`daemon off`) in its own process group, with a
/// private prefix; killed by its group id when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    /// Its prefix (configuration, logs), removed once nginx is stopped.
    _dir: common::TempPath,
}

impl Nginx {
    /// nginx with the `servers` that `conf(port)` gives, `port` a free one.
    fn start(conf: impl Fn(u16) -> String) -> Nginx {
        Nginx::start_in(common::scratch_dir("nginx"), conf)
    }

    /// [`Nginx::start`] with its prefix in `dir`. A port that was free when
    /// picked can be taken before nginx binds it (tests run in parallel):
    /// then nginx fails to bind, or another process answers there, so the
    /// start is tried again on another port, at most [`START_TRIES`] times.
    fn start_in(dir: common::TempPath, conf: impl Fn(u16) -> String) -> Nginx {
        let mut why = String::new();
        for _ in 0..START_TRIES {
            match Nginx::try_start(&dir, free_port(), &conf) {
                Ok((child, addr)) => return Nginx { child, addr, _dir: dir },
                Err(err) => why = err,
            }
        }
        panic!("nginx did not start in {START_TRIES} tries; the last: {why}");
    }

    /// One start on `port`: nginx's child once it answers on `port` from a
    /// socket of its own, or why not (it is stopped then).
    fn try_start(
        dir: &common::TempPath,
        port: u16,
        conf: &impl Fn(u16) -> String,
    ) -> Result<(Child, SocketAddr), String> {
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, nginx_conf(dir.str(), &conf(port))).expect("write nginx.conf");
        let error_log = dir.path().join("error.log");
        let _ = std::fs::remove_file(&error_log);
        let mut child = Command::new(NGINX)
            .args(["-p", dir.str(), "-c"])
            .arg(&conf_path)
            .args(["-e", &format!("{}/error.log", dir.str()), "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nginx exited at start-up ({status}):\n{}", log()));
            }
            if log().contains("Address already in use") {
                procfs::stop_group(&mut child, Duration::from_secs(5));
                return Err(format!("port {port} was taken:\n{}", log()));
            }
            // Its master binds before it forks the workers that answer.
            if procfs::listens_on(child.id(), port) {
                let mut conn = common::Conn::connect(addr);
                conn.send(&request_head(addr, "GET", "/healthz", &[]));
                if conn.read_response().status == 200 {
                    return Ok((child, addr));
                }
            }
            if Instant::now() >= deadline {
                procfs::stop_group(&mut child, Duration::from_secs(5));
                return Err(format!("nginx did not answer:\n{}", log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn head(&self, method: &str, target: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        request_head(self.addr, method, target, extra)
    }

    /// One request on a new connection to nginx; the whole response.
    fn request(&self, method: &str, target: &str, extra: &[(&str, &str)]) -> common::Response {
        let mut conn = common::Conn::connect(self.addr);
        conn.send(&self.head(method, target, extra));
        conn.read_response()
    }

    /// Opens a stream through nginx (200 expected): the connection and its
    /// body to read.
    fn stream(&self, target: &str, extra: &[(&str, &str)]) -> (common::Conn, common::Body) {
        let mut conn = common::Conn::connect(self.addr);
        conn.send(&self.head("GET", target, extra));
        let head = conn.read_head();
        assert_eq!(head.status, 200, "a stream through nginx: {}", head.dump());
        let body = conn.body(&head);
        (conn, body)
    }

    /// Opens an event stream through nginx (200 expected) whose first
    /// event is `first`.
    fn events(&self, target: &str, extra: &[(&str, &str)], first: u64) -> Events {
        let mut conn = common::Conn::connect(self.addr);
        conn.send(&self.head("GET", target, extra));
        let head = conn.read_head();
        assert_eq!(head.status, 200, "events through nginx: {}", head.dump());
        let body = conn.body(&head);
        Events {
            conn,
            body,
            sse: common::JobSse::new(first),
            first_id: None,
            exit: None,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Its workers are in the master's group.
        procfs::stop_group(&mut self.child, Duration::from_secs(5));
    }
}

/// An event stream read through nginx by the strict job-stream parser
/// (`common::JobSse`: a `retry` block, ids from `first` up by one); only
/// `stdout` and `exit` events may come.
struct Events {
    conn: common::Conn,
    body: common::Body,
    sse: common::JobSse,
    first_id: Option<u64>,
    exit: Option<Value>,
}

impl Events {
    /// Reads until `stop(text so far, last id)` holds (checked after each
    /// complete event) or the stream ends; the stdout text and the last id.
    fn read_until(&mut self, mut stop: impl FnMut(&[u8], u64) -> bool) -> (Vec<u8>, u64) {
        let (mut text, mut last) = (Vec::new(), 0u64);
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some((piece, at)) = self.conn.read_body_some(&mut self.body, 64 * 1024) {
            assert!(Instant::now() < deadline, "the stream took over 120 s");
            for item in self.sse.feed(&piece, at) {
                let common::JobItem::Event(event) = item else {
                    continue;
                };
                last = self.on_event(&event, &mut text);
                if stop(&text, last) {
                    return (text, last);
                }
            }
        }
        self.sse.finish();
        (text, last)
    }

    /// One event: its text appended to `text` or its exit kept; its id.
    fn on_event(&mut self, event: &common::Event, text: &mut Vec<u8>) -> u64 {
        match event.event.as_str() {
            "stdout" => text.extend_from_slice(common::out_text(event).as_bytes()),
            "exit" => self.exit = Some(common::json(event)),
            other => panic!("unexpected event {other}: {}", event.data),
        }
        self.first_id.get_or_insert(event.id);
        event.id
    }
}
