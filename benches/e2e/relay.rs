//! The floor: a pipe → socket relay.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Clone, Copy)]
pub(crate) enum RelayMode {
    /// One event per read, a `data:` line per complete line (`relay.c --sse`).
    Sse,
    /// One `{"type":"stdout","out":"…"}` event per read (`relay.c --json`).
    Json,
}

pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: JoinHandle<()>,
}

impl Relay {
    pub(crate) fn start(argv: Vec<String>, mode: RelayMode) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(sock) = conn {
                    let _ = relay_one(sock, &argv, mode);
                }
            }
        });
        Ok(Relay { addr, stop, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        let _ = self.thread.join();
    }
}

pub(crate) fn relay_one(mut sock: TcpStream, argv: &[String], mode: RelayMode) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = [0u8; 8192];
    let mut got = 0;
    while got < head.len() {
        let n = sock.read(&mut head[got..])?;
        if n == 0 {
            return Ok(());
        }
        got += n;
        if memchr::memmem::find(&head[..got], b"\r\n\r\n").is_some() {
            break;
        }
    }
    sock.set_nodelay(true)?;
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let mut buf = vec![0u8; 64 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024 * 8);
    let mut have = 0;
    let copied = (|| -> io::Result<()> {
        loop {
            let n = match pipe.read(&mut buf[have..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let eof = n == 0;
            have += n;
            out.clear();
            let mut used = relay_frame(mode, &buf[..have], eof, &mut out);
            if used == 0 && have == buf.len() {
                // One line over 64 KiB: flush it as it is.
                used = relay_frame(mode, &buf[..have], true, &mut out);
            }
            if !out.is_empty() {
                sock.write_all(&out)?;
            }
            buf.copy_within(used..have, 0);
            have -= used;
            if eof {
                return Ok(());
            }
        }
    })();
    drop(pipe);
    // Our own child, by PID; it has normally exited already.
    let _ = child.kill();
    let _ = child.wait();
    copied
}

/// Frames `buf` as one event into `out`; returns the bytes consumed
/// (complete lines, or everything at EOF).
pub(crate) fn relay_frame(mode: RelayMode, buf: &[u8], at_eof: bool, out: &mut Vec<u8>) -> usize {
    let used = if at_eof {
        buf.len()
    } else {
        memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
    };
    if used == 0 {
        return 0;
    }
    match mode {
        RelayMode::Sse => {
            let mut rest = &buf[..used];
            while !rest.is_empty() {
                let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&rest[..end]);
                out.push(b'\n');
                rest = &rest[(end + 1).min(rest.len())..];
            }
            out.push(b'\n');
        }
        RelayMode::Json => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"data: {\"type\":\"stdout\",\"out\":\"");
            let text = &buf[..used];
            let mut run = 0;
            for (i, &b) in text.iter().enumerate() {
                if b >= 0x20 && b != b'"' && b != b'\\' {
                    continue;
                }
                out.extend_from_slice(&text[run..i]);
                run = i + 1;
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 15) as usize],
                    ]),
                }
            }
            out.extend_from_slice(&text[run..]);
            out.extend_from_slice(b"\"}\n\n");
        }
    }
    used
}
