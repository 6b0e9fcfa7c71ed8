//! Hashing and data files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;

/// FNV-1a 64, streaming.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Facts about the generated big file.
#[derive(Debug, Clone)]
pub struct BigFile {
    pub path: PathBuf,
    pub len: u64,
    /// FNV of all bytes.
    pub hash: u64,
    /// FNV of the bytes without any `\n`.
    pub hash_no_lf: u64,
    pub lines: u64,
}

/// Size of the generated file.
pub const BIG_FILE_LEN: u64 = 100 * 1024 * 1024;

/// A 100 MiB UTF-8 text file (lines of varying length, ASCII, tabs,
/// multi-byte characters, `\n` endings only), generated once under the target
/// directory and reused.
pub fn big_file() -> &'static BigFile {
    static BIG: OnceLock<BigFile> = OnceLock::new();
    BIG.get_or_init(|| {
        let dir = target_dir().join("test-data");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big-100mib-v1.txt");
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(BIG_FILE_LEN) {
            let tmp = dir.join(format!("big-100mib-v1.txt.tmp{}-{}", std::process::id(), next_id()));
            generate_text(&tmp, BIG_FILE_LEN);
            fs::rename(&tmp, &path).unwrap();
        }
        let mut f = File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let (mut h, mut h2, mut len, mut lines) = (Fnv::default(), Fnv::default(), 0u64, 0u64);
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            for piece in buf[..n].split(|&b| b == b'\n') {
                h2.update(piece);
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            len += n as u64;
        }
        assert_eq!(len, BIG_FILE_LEN);
        BigFile {
            path,
            len,
            hash: h.0,
            hash_no_lf: h2.0,
            lines,
        }
    })
}

/// Writes `len` bytes of deterministic UTF-8 text ending in `\n`.
fn generate_text(path: &Path, len: u64) {
    let mut w = io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet: Vec<&str> = vec![
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " ", " ", " ", "\t", "\"", "\\", "/",
        "é", "€", "😀", "ß", "{", "}", ":",
    ];
    let mut written: u64 = 0;
    let mut line_no: u64 = 0;
    let mut line = String::new();
    while written < len {
        line.clear();
        line.push_str(&format!("{:08} ", line_no));
        line_no += 1;
        let n = (next() % 180) as usize;
        for _ in 0..n {
            line.push_str(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        line.push('\n');
        let left = len - written;
        if (line.len() as u64) > left {
            // Fill the tail with ASCII so the file has exactly `len` bytes.
            let mut tail = "x".repeat(left as usize - 1);
            tail.push('\n');
            w.write_all(tail.as_bytes()).unwrap();
            written += left;
        } else {
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    w.flush().unwrap();
}

/// Streams a `/run` body through the SSE parser, calling `f` for each item.
/// Checks the head, the id order, and that the stream ends with exit/err.
pub fn stream_items(conn: &mut Conn, resp: &Response, mut f: impl FnMut(&Item)) -> End {
    let mut p = SseParser::new();
    let mut last_event: Option<Event> = None;
    let mut ended = false;
    conn.read_body_with(resp, |piece, at| {
        for item in p.feed(piece, at) {
            if let Item::Event(e) = &item {
                assert!(!ended, "event after the end event: {:?}", e);
                if e.event == "exit" || e.event == "err" {
                    ended = true;
                }
                last_event = Some(e.clone());
            }
            f(&item);
        }
        true
    });
    p.finish();
    let last = last_event.expect("stream has no events");
    end_of(&last)
}
