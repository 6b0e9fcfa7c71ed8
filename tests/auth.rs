//! Safe by default (CONTRACT §1, §4): the token, Host, Origin and
//! `Sec-Fetch-Site` checks, no cookie, CORS, `--no-auth`, `--allow`.
mod common;

use common::*;
use std::time::Duration;

fn touch_target(m: &TempPath) -> String {
    format!("/run?command={}", pct(&format!("touch {}", m.str())))
}

/// Same length as `t`, last character changed.
fn near_miss(t: &str) -> String {
    let mut s = t[..t.len() - 1].to_owned();
    s.push(if t.ends_with('A') { 'B' } else { 'A' });
    s
}

/// §4: without the token, or with a wrong one (header, query), or with the
/// right one in a cookie (v3: never accepted): 401, and the command did not run.
#[test]
fn token_required_and_command_not_run() {
    let s = Server::start(&[]);
    let tok = s.token.clone().expect("a token by default (§1)");
    assert!(tok.len() >= 22, "§1: 128 bits or more; token {:?}", tok);
    assert!(
        tok.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "WIRE.md: base64url token {:?}",
        tok
    );
    let m = marker_path("auth401");
    let target = touch_target(&m);
    let wrong = near_miss(&tok);
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("no token".into(), s.req_noauth("GET", &target, &[])),
        (
            "wrong Bearer".into(),
            s.req_noauth("GET", &target, &[("Authorization", &format!("Bearer {}", wrong))]),
        ),
        (
            "empty Bearer".into(),
            s.req_noauth("GET", &target, &[("Authorization", "Bearer ")]),
        ),
        (
            "Basic scheme".into(),
            s.req_noauth("GET", &target, &[("Authorization", &format!("Basic {}", tok))]),
        ),
        (
            "wrong query token".into(),
            s.req_noauth("GET", &format!("{}&token={}", target, wrong), &[]),
        ),
        (
            "token prefix".into(),
            s.req_noauth("GET", &format!("{}&token={}", target, &tok[..tok.len() - 1]), &[]),
        ),
        (
            "the right token as the old cookie".into(),
            s.req_noauth("GET", &target, &[("Cookie", &format!("ssecommander_token={}", tok))]),
        ),
        (
            "the right token in any cookie".into(),
            s.req_noauth("GET", &target, &[("Cookie", &format!("token={}", tok))]),
        ),
        (
            "no token, Last-Event-ID".into(),
            s.req_noauth("GET", &target, &[("Last-Event-ID", "1")]),
        ),
    ];
    for (what, req) in &cases {
        let r = s.request(req);
        r.assert_status(401, what);
        // RFC 9110 §15.5.2: a 401 carries a challenge.
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "{what}: 401 without WWW-Authenticate: Bearer:\n{}",
            r.raw_head
        );
    }
    // Leave time for a wrongly started command to run.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!m.exists(), "a command ran without a valid token");
    // Control: with the token it runs.
    s.run_target(&target).assert_end(End::code(0));
    assert!(m.exists(), "control: the authorised run did not create the marker");
}

/// §4: the Bearer header and the `token=` query parameter are each accepted.
#[test]
fn token_accepted_as_bearer_and_query() {
    let s = Server::start(&[]);
    let tok = s.token.clone().unwrap();
    let bearer = s.run("echo via-bearer");
    assert_eq!(bearer.stdout(), "via-bearer\n");
    let q = s.run_request(&s.req_noauth("GET", &format!("/run?command=echo%20via-query&token={}", tok), &[]));
    assert_eq!(q.stdout(), "via-query\n");
    let q2 = s.run_request(&s.req_noauth("GET", &format!("/run?token={}&command=echo%20query-first", tok), &[]));
    assert_eq!(q2.stdout(), "query-first\n");
}

/// §4 (v3): `GET /` and `GET /?token=T` (right, wrong or none) serve the same
/// page with `200`, no redirect; no response ever carries `Set-Cookie`.
#[test]
fn page_needs_no_token_and_no_cookie_is_ever_set() {
    let s = Server::start(&[]);
    let tok = s.token.clone().unwrap();
    let page = s.get_noauth("/");
    page.assert_status(200, "GET / without a token");
    assert!(
        page.header("content-type").unwrap_or("").starts_with("text/html"),
        "{}",
        page.raw_head
    );
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"),
        "the page's script is allowed by its hash alone: {csp:?}"
    );
    let mut responses = vec![("GET /".to_owned(), page.clone())];
    for target in [format!("/?token={tok}"), format!("/?token={}", near_miss(&tok))] {
        let r = s.get_noauth(&target);
        r.assert_status(200, &format!("GET {target}"));
        assert_eq!(r.header("location"), None, "no redirect:\n{}", r.raw_head);
        assert_eq!(r.body, page.body, "GET {target} serves the same page as GET /");
        responses.push((format!("GET {target}"), r));
    }
    responses.push(("run".into(), s.run("echo x").resp));
    responses.push(("401".into(), s.get_noauth("/run?command=true")));
    responses.push(("404".into(), s.get("/nope")));
    responses.push(("healthz".into(), s.get_noauth("/healthz")));
    for (what, r) in &responses {
        assert!(
            r.header("set-cookie").is_none(),
            "§4 (v3): {what} set a cookie:\n{}",
            r.raw_head
        );
    }
}

/// §4: the token never appears in the log, even at RUST_LOG=debug, after
/// requests carrying it in each of the two ways, and in a cookie.
#[test]
fn token_absent_from_log_at_debug() {
    let s = Server::start_env(&[], &[("RUST_LOG", "debug")]);
    let tok = s.token.clone().unwrap();
    s.run("echo bearer").assert_end(End::code(0));
    s.run_request(&s.req_noauth("GET", &format!("/run?command=echo%20q&token={}", tok), &[]))
        .assert_end(End::code(0));
    let ck = format!("ssecommander_token={}", tok);
    s.request(&s.req_noauth("GET", "/run?command=echo%20c", &[("Cookie", &ck)]))
        .assert_status(401, "a cookie is no token");
    s.get_noauth(&format!("/?token={}", tok))
        .assert_status(200, "the printed URL");
    s.get_noauth(&format!("/nope-marker?token={}", tok))
        .assert_status(404, "404 with token");
    s.get_noauth(&format!("/run?token={}&command=echo%20%27", tok))
        .assert_status(400, "400 with token");
    s.request(&s.req_noauth("GET", "/healthz-x", &[("Cookie", &ck)]))
        .assert_status(404, "404 with cookie");
    wait_until(Duration::from_secs(3), "access log lines for the requests", || {
        let log = s.log();
        log.contains("/nope-marker") && log.contains("/healthz-x")
    });
    let log = s.log();
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&tok)).collect();
    assert!(
        leaks.is_empty(),
        "§4: the token appears in the log:\n{}",
        leaks.join("\n")
    );
    assert!(
        !s.stdout_rest().contains(&tok),
        "the token was printed again on stdout: {:?}",
        s.stdout_rest()
    );
}

/// §4: the token is not in the environment of children, whether given by
/// `--token` or by `SSECOMMANDER_TOKEN`.
#[test]
fn token_absent_from_child_environment() {
    let t1 = format!("tokflag{}x{}", std::process::id(), next_id());
    let s = Server::start(&["--token", &t1]);
    assert_eq!(
        s.token.as_deref(),
        Some(t1.as_str()),
        "--token is the token in the URL line"
    );
    let r = s.run("env");
    r.assert_end(End::code(0));
    let env = r.stdout();
    assert!(
        !env.contains(&t1),
        "§4: the --token value is in the child's environment:\n{}",
        env
    );
    assert!(
        !env.contains("SSECOMMANDER_TOKEN"),
        "SSECOMMANDER_TOKEN in the child's environment:\n{}",
        env
    );
    drop(s);

    let t2 = format!("tokenv{}x{}", std::process::id(), next_id());
    let s = Server::start_env(&[], &[("SSECOMMANDER_TOKEN", &t2)]);
    assert_eq!(
        s.token.as_deref(),
        Some(t2.as_str()),
        "§1: the token is read from SSECOMMANDER_TOKEN"
    );
    let r = s.run("env");
    r.assert_end(End::code(0));
    let env = r.stdout();
    assert!(
        !env.contains(&t2),
        "§4: the env token is in the child's environment:\n{}",
        env
    );
    assert!(
        !env.contains("SSECOMMANDER_TOKEN"),
        "SSECOMMANDER_TOKEN in the child's environment:\n{}",
        env
    );
}

/// §1: `--no-auth` warns on stderr, prints the URL without a token, and
/// serves without one.
#[test]
fn no_auth_warns_and_works_without_token() {
    let s = Server::start(&["--no-auth"]);
    assert!(
        s.token.is_none() && !s.url.contains("token="),
        "URL line under --no-auth: {}",
        s.url
    );
    wait_until(Duration::from_secs(3), "a warning about --no-auth on stderr", || {
        s.log().lines().any(|l| l.to_ascii_lowercase().contains("warn"))
    });
    let r = s.run("echo open");
    assert_eq!(r.stdout(), "open\n");
    s.get_noauth("/").assert_status(200, "GET / under --no-auth");
}

/// §4: a foreign Host is refused with 403 even with a valid token, and the
/// command does not run.
#[test]
fn foreign_host_refused_even_with_token() {
    let s = Server::start(&[]);
    let m = marker_path("host403");
    let target = touch_target(&m);
    let tok = s.token.clone().unwrap();
    let port = s.addr.port();
    for host in [
        format!("evil.test:{}", port),
        "evil.test".to_string(),
        format!("127.0.0.1.evil.test:{}", port),
        format!("localhost.evil.test:{}", port),
    ] {
        let req = build_request(
            "GET",
            &target,
            "HTTP/1.1",
            &[
                ("Host".into(), host.clone()),
                ("Authorization".into(), format!("Bearer {}", tok)),
            ],
        );
        s.request(&req).assert_status(403, &format!("Host: {}", host));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!m.exists(), "a command ran with a foreign Host");
}

/// §4: the Host and Origin rules hold for every request, `/healthz` too
/// (only the token and Fetch Metadata are not asked of it): a foreign Host
/// or Origin is `403`; a loopback Host, the own Origin or none, without a
/// token, is `200 ok`.
#[test]
fn healthz_is_host_and_origin_checked_but_needs_no_token() {
    let s = Server::start(&[]);
    let port = s.addr.port();
    let get = |headers: &[(String, String)]| {
        let mut all = vec![("Host".to_string(), format!("127.0.0.1:{port}"))];
        all.retain(|(name, _)| !headers.iter().any(|(n, _)| n == name));
        all.extend(headers.iter().cloned());
        s.request(&build_request("GET", "/healthz", "HTTP/1.1", &all))
    };
    let r = get(&[]);
    r.assert_status(200, "healthz without a token");
    assert_eq!(r.body_str(), "ok");
    get(&[("Host".into(), format!("localhost:{port}"))]).assert_status(200, "Host: localhost");
    get(&[("Origin".into(), s.base.clone())]).assert_status(200, "the own Origin");
    for host in [format!("evil.test:{port}"), "evil.test".to_string()] {
        get(&[("Host".into(), host.clone())]).assert_status(403, &format!("/healthz with Host: {host}"));
    }
    for origin in ["http://evil.test", "null"] {
        get(&[("Origin".into(), origin.to_string())]).assert_status(403, &format!("/healthz with Origin: {origin}"));
    }
}

fn run_with_host(s: &Server, host: &str, word: &str) -> Run {
    let tok = s.token.clone().unwrap();
    let req = build_request(
        "GET",
        &format!("/run?command=echo%20{}", word),
        "HTTP/1.1",
        &[
            ("Host".into(), host.to_string()),
            ("Authorization".into(), format!("Bearer {}", tok)),
        ],
    );
    s.run_request(&req)
}

/// §4: `localhost`, the listen address and loopback addresses are accepted
/// as Host (port ignored).
#[test]
fn loopback_hosts_accepted() {
    let s = Server::start(&[]);
    let port = s.addr.port();
    for host in [
        format!("127.0.0.1:{}", port),
        format!("localhost:{}", port),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        format!("localhost:{}", port + 1),
        format!("127.0.0.2:{}", port),
        format!("[::1]:{}", port),
    ] {
        let r = run_with_host(&s, &host, "hostok");
        assert_eq!(r.stdout(), "hostok\n", "Host: {}", host);
    }
}

/// §1, §4: `--allow-host example.test` lets that name in; others stay out.
#[test]
fn allow_host_flag() {
    let s = Server::start(&["--allow-host", "example.test"]);
    let r = run_with_host(&s, "example.test", "named");
    assert_eq!(r.stdout(), "named\n");
    let r = run_with_host(&s, "example.test:8080", "named-port");
    assert_eq!(r.stdout(), "named-port\n");
    let tok = s.token.clone().unwrap();
    let req = build_request(
        "GET",
        "/run?command=echo%20x",
        "HTTP/1.1",
        &[
            ("Host".into(), "other.test".into()),
            ("Authorization".into(), format!("Bearer {}", tok)),
        ],
    );
    s.request(&req)
        .assert_status(403, "Host: other.test with --allow-host example.test");
}

/// §4: a foreign Origin (or `null`) → 403; the server's own origin is fine.
#[test]
fn foreign_origin_refused_own_origin_ok() {
    let s = Server::start(&[]);
    let m = marker_path("origin403");
    let target = touch_target(&m);
    for origin in [
        "http://evil.test",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1.evil.test",
    ] {
        s.request(&s.req("GET", &target, &[("Origin", origin)]))
            .assert_status(403, &format!("Origin: {}", origin));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!m.exists(), "a command ran with a foreign Origin");
    let own = s.base.clone();
    let r = s.run_request(&s.req("GET", "/run?command=echo%20own", &[("Origin", &own)]));
    assert_eq!(r.stdout(), "own\n", "own origin {}", own);
}

/// §4: with `--cors-origin`, an allowed foreign origin gets ACAO and
/// `Vary: Origin`, and its preflight is answered 204 without a token.
#[test]
fn cors_origin_headers_and_preflight() {
    let s = Server::start(&["--cors-origin", "http://a.test"]);
    let r = s.run_request(&s.req("GET", "/run?command=echo%20cors", &[("Origin", "http://a.test")]));
    assert_eq!(r.stdout(), "cors\n");
    assert_eq!(
        r.resp.header("access-control-allow-origin"),
        Some("http://a.test"),
        "{}",
        r.resp.raw_head
    );
    let vary = r.resp.headers_all("vary").join(",");
    assert!(
        vary.split(',').any(|v| v.trim().eq_ignore_ascii_case("origin")),
        "Vary: Origin missing:\n{}",
        r.resp.raw_head
    );

    let pre = s.request(&s.req_noauth(
        "OPTIONS",
        "/run?command=echo%20x",
        &[
            ("Origin", "http://a.test"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization, last-event-id"),
        ],
    ));
    pre.assert_status(204, "preflight OPTIONS /run without token");
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://a.test"),
        "{}",
        pre.raw_head
    );
    let methods = pre.header("access-control-allow-methods").unwrap_or("");
    assert!(
        methods.split(',').any(|m| m.trim() == "GET"),
        "Allow-Methods {:?}",
        methods
    );
    let allowed: Vec<String> = pre
        .header("access-control-allow-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in ["authorization", "last-event-id"] {
        assert!(
            allowed.iter().any(|a| a == h),
            "Allow-Headers lacks {}: {:?}\n{}",
            h,
            allowed,
            pre.raw_head
        );
    }
    assert_eq!(pre.header("access-control-max-age"), Some("600"), "{}", pre.raw_head);

    s.request(&s.req("GET", "/run?command=echo%20x", &[("Origin", "http://b.test")]))
        .assert_status(403, "Origin http://b.test with --cors-origin http://a.test");
    let pre_b = s.request(&s.req_noauth(
        "OPTIONS",
        "/run",
        &[("Origin", "http://b.test"), ("Access-Control-Request-Method", "GET")],
    ));
    assert!(
        pre_b.status == 403 && pre_b.header("access-control-allow-origin").is_none(),
        "preflight from a foreign origin must be refused (403, no ACAO):\n{}",
        pre_b.dump()
    );
    // WIRE.md: with --cors-origin, /run allows GET and OPTIONS.
    let r = s.request(&s.req("POST", "/run?command=echo%20x", &[("Content-Length", "0")]));
    r.assert_status(405, "POST /run with --cors-origin");
    let allow: Vec<&str> = r.header("allow").unwrap_or("").split(',').map(str::trim).collect();
    assert!(
        allow.contains(&"GET") && allow.contains(&"OPTIONS"),
        "Allow {:?}:\n{}",
        allow,
        r.raw_head
    );
}

/// §4: "responses to an allowed foreign origin carry
/// `Access-Control-Allow-Origin` (and `Vary: Origin`)" — refusals too, or
/// the page of that origin sees a network error instead of the `401` or
/// `400`. They were sent without it.
#[test]
fn cors_origin_on_refusals() {
    let s = Server::start(&["--cors-origin", "http://a.test"]);
    let origin = [("Origin", "http://a.test")];
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            s.req_noauth("GET", "/run?command=echo%20x", &origin),
            401,
            "/run without the token",
        ),
        (
            s.req_noauth("GET", "/metrics", &origin),
            401,
            "/metrics without the token",
        ),
        (s.req_noauth("GET", "/jobs", &origin), 401, "/jobs without the token"),
        (
            s.req("GET", "/run?command=echo%20x&format=no", &origin),
            400,
            "a bad format",
        ),
        (s.req("GET", "/run?command=%27", &origin), 400, "an unbalanced quote"),
        (s.req("GET", "/run?command=echo&pty=1&cols=0", &origin), 400, "cols=0"),
        (
            s.req("GET", "/jobs/events?format=raw", &origin),
            400,
            "format=raw on /jobs/events",
        ),
        (s.req("GET", "/run?command=%ZZ", &origin), 400, "a bad percent-escape"),
        (s.req("DELETE", "/run?command=echo", &origin), 405, "DELETE /run"),
        (
            s.req("POST", "/jobs?command=true", &[origin[0], ("Content-Length", "1")]),
            413,
            "a body on POST /jobs",
        ),
    ];
    for (request, status, what) in cases {
        let mut bytes = request;
        if status == 413 {
            bytes.push(b'x');
        }
        let r = s.request(&bytes);
        r.assert_status(status, what);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://a.test"),
            "{what}: no Access-Control-Allow-Origin:\n{}",
            r.raw_head
        );
        let vary = r.headers_all("vary").join(",");
        assert!(
            vary.split(',').any(|v| v.trim().eq_ignore_ascii_case("origin")),
            "{what}: Vary: Origin missing:\n{}",
            r.raw_head
        );
    }
    // A refused origin still gets neither.
    let r = s.request(&s.req_noauth("GET", "/run?command=echo", &[("Origin", "http://b.test")]));
    r.assert_status(403, "a foreign origin");
    assert!(r.header("access-control-allow-origin").is_none(), "{}", r.raw_head);
}

/// §3.8: `Last-Event-ID` gets 204 only after the Host and Origin checks.
#[test]
fn last_event_id_after_host_and_origin_checks() {
    let s = Server::start(&[]);
    let tok = s.token.clone().unwrap();
    let foreign_host = build_request(
        "GET",
        "/run?command=echo%20x",
        "HTTP/1.1",
        &[
            ("Host".into(), "evil.test".into()),
            ("Authorization".into(), format!("Bearer {}", tok)),
            ("Last-Event-ID".into(), "3".into()),
        ],
    );
    s.request(&foreign_host)
        .assert_status(403, "Last-Event-ID with a foreign Host");
    s.request(&s.req(
        "GET",
        "/run?command=echo%20x",
        &[("Origin", "http://evil.test"), ("Last-Event-ID", "3")],
    ))
    .assert_status(403, "Last-Event-ID with a foreign Origin");
    s.request(&s.req("GET", "/run?command=echo%20x", &[("Last-Event-ID", "3")]))
        .assert_status(204, "Last-Event-ID, all checks passed");
}

/// §1: `--allow echo`: echo runs, other programs get `err` (after auth), and
/// a bare name matches argv[0] as given, not `/bin/echo`.
#[test]
fn allow_bare_name() {
    let s = Server::start(&["--allow", "echo"]);
    let r = s.run("echo allowed");
    assert_eq!(r.stdout(), "allowed\n");
    r.assert_end(End::code(0));
    for cmd in ["ls /", "/bin/echo sneaky"] {
        let r = s.run(cmd);
        assert_eq!(
            r.events.len(),
            1,
            "{}: expected only an err event:\n{}",
            cmd,
            r.resp.body_str()
        );
        assert!(matches!(r.end, End::Err(_)), "{}: expected err, got {:?}", cmd, r.end);
    }
    s.get_noauth("/run?command=ls")
        .assert_status(401, "unauthorised refused program: 401 before --allow");
}

/// §1: `--allow /bin/echo` matches the resolved executable: `/bin/echo`,
/// and `echo` found on PATH when it is the same file; `ls` refused.
#[test]
fn allow_absolute_path_matches_resolved_executable() {
    let s = Server::start(&["--allow", "/bin/echo"]);
    let r = s.run("/bin/echo abs");
    assert_eq!(r.stdout(), "abs\n", "body:\n{}", r.resp.body_str());
    let on_path = ["/usr/local/bin/echo", "/usr/bin/echo", "/bin/echo"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| std::fs::canonicalize(p).unwrap());
    if on_path == Some(std::fs::canonicalize("/bin/echo").unwrap()) {
        let r = s.run("echo bare");
        assert_eq!(
            r.stdout(),
            "bare\n",
            "`echo` resolves to the same file as /bin/echo; body:\n{}",
            r.resp.body_str()
        );
    }
    let r = s.run("ls /");
    assert!(matches!(r.end, End::Err(_)), "ls under --allow /bin/echo: {:?}", r.end);
}

/// The `Sec-Fetch-Site` values a browser sends for another origin.
const FOREIGN_SITES: [&str; 2] = ["cross-site", "same-site"];

/// §4 (v3): `Sec-Fetch-Site: cross-site` or `same-site` without an `Origin`
/// (an image, an iframe, a `no-cors` fetch, a link from another site or
/// port) is refused with 403 and runs nothing, even with the token and
/// under `--no-auth`; with an allowed Origin, or with `same-origin`, `none`
/// or no `Sec-Fetch-Site`, the request is judged by the other rules.
#[test]
fn fetch_metadata_refuses_foreign_requests_without_origin() {
    for args in [&[][..], &["--no-auth"][..]] {
        let s = Server::start(args);
        let m = marker_path("fetchsite");
        let target = touch_target(&m);
        for site in FOREIGN_SITES {
            let r = s.request(&s.req("GET", &target, &[("Sec-Fetch-Site", site)]));
            r.assert_status(403, &format!("Sec-Fetch-Site: {site} without Origin, args {args:?}"));
            let r = s.request(&s.req("GET", &target, &[("Sec-Fetch-Site", site), ("Last-Event-ID", "1")]));
            r.assert_status(403, &format!("Sec-Fetch-Site: {site}, Last-Event-ID, args {args:?}"));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(!m.exists(), "a foreign request ran its command (args {args:?})");
        // GET / and /healthz hold no secret and run nothing: served.
        for path in ["/", "/healthz"] {
            s.request(&s.req_noauth("GET", path, &[("Sec-Fetch-Site", "cross-site")]))
                .assert_status(200, &format!("GET {path} cross-site, args {args:?}"));
        }
        // The server's own origin (a page fetch that sends Origin) passes.
        let own = s.base.clone();
        for site in FOREIGN_SITES {
            let r = s.run_request(&s.req(
                "GET",
                "/run?command=echo%20own",
                &[("Sec-Fetch-Site", site), ("Origin", &own)],
            ));
            assert_eq!(r.stdout(), "own\n", "{site} with Origin {own}, args {args:?}");
        }
        let mut ran = 0;
        for site in [Some("same-origin"), Some("none"), None] {
            let extra: Vec<(&str, &str)> = site.map(|v| ("Sec-Fetch-Site", v)).into_iter().collect();
            let r = s.run_request(&s.req("GET", &target, &extra));
            r.assert_end(End::code(0));
            assert!(m.exists(), "Sec-Fetch-Site {site:?} did not run (args {args:?})");
            std::fs::remove_file(m.path()).expect("remove the marker");
            ran += 1;
        }
        assert_eq!(ran, 3);
    }
}

/// §4 (v3): with `--cors-origin`, a foreign request carrying that Origin
/// passes the `Sec-Fetch-Site` rule; another Origin is still refused.
#[test]
fn fetch_metadata_with_cors_origin() {
    for args in [
        &["--cors-origin", "http://a.test"][..],
        &["--cors-origin", "http://a.test", "--no-auth"][..],
    ] {
        let s = Server::start(args);
        let r = s.run_request(&s.req(
            "GET",
            "/run?command=echo%20cors",
            &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://a.test")],
        ));
        assert_eq!(r.stdout(), "cors\n", "args {args:?}");
        s.request(&s.req(
            "GET",
            "/run?command=echo%20x",
            &[("Sec-Fetch-Site", "cross-site"), ("Origin", "http://b.test")],
        ))
        .assert_status(403, &format!("another Origin, args {args:?}"));
        s.request(&s.req("GET", "/run?command=echo%20x", &[("Sec-Fetch-Site", "cross-site")]))
            .assert_status(403, &format!("no Origin, args {args:?}"));
    }
}
