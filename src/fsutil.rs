//! Atomic file output: a crash or a bad input never leaves a half-written file.
//!
//! Each write goes to a hidden temporary sibling, named
//! `.NAME.HOST.PID.N.tmp`, that is renamed over the target when complete
//! and removed on error. A killed process cannot remove its own, so the
//! first write of a process into a folder removes stale ones there: those of
//! a dead process on this host, and any untouched for over an hour (a live
//! process, here or on another machine sharing the folder, touches its file
//! while writing it, and no write takes an hour).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Temp files untouched for this long are stale whoever wrote them.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames
/// it over `path`, so readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    clean_stale_once(path.parent().unwrap_or(Path::new(".")));
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

/// A hidden sibling of `path`, unique to this host, process and call.
pub fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{}.{n}.tmp", host(), std::process::id()))
}

/// This machine's name, reduced to characters safe in a file name (as temp
/// file names carry it).
pub fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let clean: String = raw
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if clean.is_empty() {
            "host".into()
        } else {
            clean
        }
    })
}

/// Removes stale temp files in `dir`, once per folder and process.
fn clean_stale_once(dir: &Path) {
    static DONE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if !done.get_or_insert_with(HashSet::new).insert(key) {
            return;
        }
    }
    let _ = clean_stale(dir);
}

/// Removes the stale temp files of `dir` (see the module's doc) and returns
/// how many. Errors (a file that vanished meanwhile) are skipped.
pub fn clean_stale(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((temp_host, pid)) = parse_temp_name(name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > STALE_AFTER);
        let dead_here = temp_host == Some(host()) && !process_alive(pid);
        if (old || dead_here) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// `(host, pid)` of a temp file name `.NAME.HOST.PID.N.tmp`; the host is
/// `None` for the older `.NAME.PID.N.tmp`.
fn parse_temp_name(name: &str) -> Option<(Option<&str>, u32)> {
    let body = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = body.rsplit('.');
    parts.next()?.parse::<u64>().ok()?;
    let pid = parts.next()?.parse::<u32>().ok()?;
    let host = parts.next()?;
    // Old names have no host: what precedes the pid is the target's extension.
    let has_host = parts.next().is_some() && !matches!(host, "pkl" | "json" | "csv" | "onnx" | "safetensors");
    Some((has_host.then_some(host), pid))
}

/// Whether a process with this pid runs on this machine.
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_parse() {
        assert_eq!(
            parse_temp_name(".tt1.pkl.box-1.42.7.tmp"),
            Some((Some("box-1"), 42))
        );
        assert_eq!(parse_temp_name(".tt1.pkl.42.7.tmp"), Some((None, 42)));
        assert_eq!(parse_temp_name("tt1.pkl"), None);
        assert_eq!(parse_temp_name(".tt1.pkl.x.7.tmp"), None);
        let mine = temp_path(Path::new("/d/tt0000001.pkl"));
        let name = mine.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_temp_name(name), Some((Some(host()), std::process::id())));
    }
}
