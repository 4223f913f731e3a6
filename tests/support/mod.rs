//! Helpers both test crates share (`tests/lgss` and `tests/inference_only.rs`):
//! nothing here needs libtorch or ONNX Runtime.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `lgss` binary of this build.
pub fn lgss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lgss"))
}

/// A test's own directory under the system temp dir. Removed when the test
/// passes, so repeated runs do not fill the disk; kept when it fails (the
/// path is printed), so what the commands wrote can be read.
pub struct TempDir(PathBuf);

/// A fresh, empty [`TempDir`] named for the test and this process.
pub fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("lgss-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TempDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `lgss export --onnx ONNX --checkpoint CK`, which must succeed.
pub fn export_onnx(ck: &Path, onnx: &Path) {
    let out = lgss()
        .args(["export", "--onnx"])
        .arg(onnx)
        .arg("--checkpoint")
        .arg(ck)
        .output()
        .expect("run lgss export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
