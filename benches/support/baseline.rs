//! What the read benchmarks share: the median of timings, and a Python
//! baseline run in the project's venv that prints `<library version>
//! <median seconds>`.

use std::path::Path;
use std::process::Command;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `code` with the venv's Python and `args`; returns the library
/// version and the median seconds it printed.
pub fn python_median(code: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<(String, f64)> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = Command::new(&python).args(["-c", code]).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (version, secs) = stdout
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow::anyhow!("python printed {stdout}"))?;
    Ok((version.to_string(), secs.parse()?))
}
