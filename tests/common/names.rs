//! Unique names, temporary paths, and markers that find and end the
//! processes a test started.

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process.
pub fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A unique `sleep` argument such as `1000.00123450007`: fixed width, so no
/// marker is a substring of another, and `sleep` still accepts it.
pub fn sleep_marker() -> String {
    format!("1000.{:07}{:04}", std::process::id() % 10_000_000, next_id() % 10_000)
}

/// A unique path under /tmp that does not exist yet (removed on drop of the guard).
pub fn marker_path(tag: &str) -> TempPath {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let p = PathBuf::from(format!(
        "/tmp/ssec-test-{}-{}-{}-{}",
        tag,
        std::process::id(),
        next_id(),
        nanos
    ));
    let _ = fs::remove_file(&p);
    TempPath(p)
}

/// A path removed (file or directory tree) when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
    pub fn exists(&self) -> bool {
        self.0.exists()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// The directory holding the binary under test (`<target>/release`).
pub fn target_dir() -> PathBuf {
    Path::new(BIN).parent().expect("binary has a parent dir").to_path_buf()
}

/// A fresh scratch directory under the target directory.
pub fn scratch_dir(tag: &str) -> TempPath {
    let d = target_dir()
        .join("test-scratch")
        .join(format!("{}-{}-{}", tag, std::process::id(), next_id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("create scratch dir");
    TempPath(d)
}

/// SIGKILLs every process whose argv contains `marker` (a unique marker of
/// this test). Used on cleanup so a failing test leaves nothing behind.
pub fn kill_marked(marker: &str) {
    for pid in pids_with_marker(marker) {
        send_signal(pid, libc::SIGKILL);
    }
}

/// Kills the processes carrying a marker when dropped (cleanup on panic).
pub struct MarkerGuard(pub Vec<String>);

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        for m in &self.0 {
            kill_marked(m);
        }
    }
}
