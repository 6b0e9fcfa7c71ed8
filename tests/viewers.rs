//! Hostile viewers of jobs (issue 18): a job held back by a stalled viewer
//! costs nothing while it waits, and viewers that never read pin neither a
//! finished nor a forgotten job's memory. Real binary, real sockets; the
//! server's CPU and memory are read from /proc.
mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// CPU time (user + system) the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server's /proc stat");
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12th and 13th here.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100)
}

fn id_of(job: &serde_json::Value) -> String {
    job["id"].as_str().expect("checked: id is a string").to_owned()
}

/// A viewer on its own thread that reads everything as it comes until
/// told to stop; counts the bytes.
struct FastViewer {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FastViewer {
    fn attach(s: &Server, id: &str) -> FastViewer {
        let mut sock = TcpStream::connect(s.addr).expect("connect");
        sock.write_all(&job_events_req(s, id, "", &[])).expect("send");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let (stop2, bytes2) = (stop.clone(), bytes.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop2.load(Ordering::Relaxed) {
                match sock.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        bytes2.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        });
        FastViewer {
            stop,
            bytes,
            thread: Some(thread),
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FastViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads raw bytes from `c` until `want` came (bounded in time).
fn read_raw(c: &mut Conn, want: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let started = Instant::now();
    while got < want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {got} of {want} bytes came"
        );
        match c.stream.read(&mut buf) {
            Ok(0) => panic!("the stream ended after {got} bytes"),
            Ok(n) => got += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed after {got} bytes: {e}"),
        }
    }
}

/// Waits until the job's `bytes` stop growing for `quiet` (the command is
/// held back); its value then.
fn wait_paced(s: &Server, id: &str, quiet: Duration) -> u64 {
    let mut last = job_info(s, id)["bytes"].as_u64().expect("bytes");
    let mut since = Instant::now();
    let paced = poll_until(Duration::from_secs(20), || {
        thread::sleep(Duration::from_millis(100));
        let now = job_info(s, id)["bytes"].as_u64().expect("bytes");
        if now != last {
            last = now;
            since = Instant::now();
        }
        since.elapsed() >= quiet
    });
    assert!(paced, "the job never waited on its stalled viewer: {}", job_info(s, id));
    last
}

/// Issue 18.1: a running job with one caught-up viewer and one stalled
/// viewer waits on the stalled one, and the server sleeps meanwhile: at
/// most 1 % of a core over 5 s (it spun a core at 93–100 %). When the
/// stalled viewer reads again, the job goes on.
#[test]
fn a_job_held_back_by_a_stalled_viewer_costs_no_cpu() {
    let s = Server::start(&[]);
    let job = job_start(&s, "yes 0123456789012345678901234567890123456789");
    let id = id_of(&job);
    let fast = FastViewer::attach(&s, &id);
    let mut slow = Conn::connect_small_rcvbuf(s.addr, 16 * 1024);
    slow.send(&job_events_req(&s, &id, "", &[]));
    read_raw(&mut slow, 1 << 20);
    let held_at = wait_paced(&s, &id, Duration::from_secs(1));
    let fast_at = fast.bytes();

    let hz = ticks_per_second();
    let window = Duration::from_secs(5);
    let before = cpu_ticks(s.pid());
    thread::sleep(window);
    let used = cpu_ticks(s.pid()) - before;
    let info = job_info(&s, &id);
    eprintln!(
        "held back: server used {used} ticks ({hz}/s) in {window:?}; job bytes {held_at} -> {}; fast viewer {fast_at} -> {}",
        info["bytes"],
        fast.bytes()
    );
    assert_eq!(info["viewers"], 2, "both viewers stay attached: {info}");
    assert!(
        info["bytes"].as_u64().expect("bytes") <= held_at + 256 * 1024,
        "the job was not held back by its stalled viewer: {info}"
    );
    assert!(
        used * 100 <= hz * window.as_secs(),
        "the server used {used} ticks ({hz}/s) in {window:?} while its job waited on a stalled viewer"
    );

    // The stalled viewer reads again: the job (and the fast viewer) go on.
    read_raw(&mut slow, 4 << 20);
    let moved = poll_until(Duration::from_secs(10), || {
        job_info(&s, &id)["bytes"].as_u64().expect("bytes") > held_at + (1 << 20)
    });
    assert!(
        moved,
        "the job did not go on once its viewer read: {}",
        job_info(&s, &id)
    );
    assert!(fast.bytes() > fast_at, "the caught-up viewer got nothing more");
}

/// Reads (and drops) what `c` has until the server closes it; false if it
/// is still open at `deadline`.
fn closed_by(c: &mut Conn, deadline: Instant) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        c.stream.set_read_timeout(Some(left)).expect("timeout");
        match c.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Issue 18.2: with `--keep-jobs 1 --job-log 4M`, ten viewers that never
/// read, each of a finished job (nine of them forgotten at once), are
/// dropped after 30 s of taking nothing, like a viewer of a running job;
/// the forgotten jobs' logs are freed as their viewers go, and the memory
/// goes back to the system (the server's RSS falls back near where it
/// began). They used to stay connected, holding every log.
#[test]
fn never_reading_viewers_of_finished_jobs_are_dropped_and_their_memory_freed() {
    const JOBS: usize = 10;
    let s = Server::start(&["--keep-jobs", "1", "--job-log", "4M"]);
    let base = s.rss_kib();
    let mut viewers = Vec::new();
    for _ in 0..JOBS {
        let job = job_start(
            &s,
            "sh -c 'yes 0123456789012345678901234567890123456789 | head -c 4000000'",
        );
        let id = id_of(&job);
        let done = job_wait_ended(&s, &id, Duration::from_secs(30));
        assert_eq!(done["bytes"], 4_000_000, "{done}");
        let mut c = Conn::connect_small_rcvbuf(s.addr, 4096);
        c.send(&job_events_req(&s, &id, "", &[]));
        viewers.push(c);
    }
    let attached = Instant::now();
    let listed = job_list(&s).len();
    assert_eq!(listed, 1, "--keep-jobs 1 lists one job");
    thread::sleep(Duration::from_secs(1));
    let pinned = s.rss_kib();
    eprintln!("server RSS: {base} KiB at start, {pinned} KiB with {JOBS} never-reading viewers");
    assert!(
        pinned >= base + 16 * 1024,
        "the viewers pin less than the test needs to show: {base} -> {pinned} KiB"
    );

    // Dropped after 30 s of taking nothing: by then the server has closed
    // each of them (what they read now is what was in flight, then EOF).
    // Still attached, a viewer would get its job's whole log now and then
    // wait, kept alive, for its next request.
    thread::sleep((attached + Duration::from_secs(32)).saturating_duration_since(Instant::now()));
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, c) in viewers.iter_mut().enumerate() {
        assert!(
            closed_by(c, deadline),
            "viewer {i} of a finished job, taking nothing, was still connected after {:?}",
            attached.elapsed()
        );
    }
    let dropped_after = attached.elapsed();

    // Their logs are freed, and the memory given back.
    let mut rss = s.rss_kib();
    let back = poll_until(Duration::from_secs(5), || {
        rss = s.rss_kib();
        rss <= base + 8 * 1024
    });
    eprintln!("server RSS {rss} KiB after the viewers were dropped ({dropped_after:?})");
    assert!(back, "server RSS stayed at {rss} KiB (began at {base} KiB)");
    assert_eq!(job_list(&s).len(), 1);
}
