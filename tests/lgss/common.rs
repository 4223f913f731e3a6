use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../support/mod.rs"]
mod support;
pub use support::{export_onnx, lgss, tempdir};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// The venv's Python, which has the pinned torch and numpy.
pub fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs a Python snippet with the venv's interpreter; panics with its stderr on failure.
pub fn run_python(code: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run the venv's python (did scripts/setup run?)");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.17}, want {want:.17} (tol {tol})"
    );
}

/// `lgss train` of the small config on the CPU, run from the repository root.
pub fn train_small(data: &Path, out: &Path, epochs: usize) -> Command {
    let mut c = lgss();
    c.args([
        "train",
        "--config",
        "models/lgss-small.toml",
        "--device",
        "cpu",
        "--epochs",
    ])
    .arg(epochs.to_string())
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `movies` small synthetic movies of `seed` in `dir/data`, as `lgss synth
/// --size small [--shots MIN..MAX]` writes them.
pub fn synth_small(dir: &Path, movies: usize, seed: u64, shots: Option<(usize, usize)>) -> PathBuf {
    let data = dir.join("data");
    let mut size = lgss::data::synth::SynthSpec::small();
    if let Some((min, max)) = shots {
        (size.min_shots, size.max_shots) = (min, max);
    }
    lgss::data::synth::write_dataset(&data, seed, movies, &size, &|| {}).expect("write synthetic movies");
    data
}

/// [`synth_small`] movies, the small LGSS trained on them for `epochs`
/// (`dir/run`) and exported (`dir/model.onnx`): (data, checkpoint, onnx).
pub fn trained_small(
    dir: &Path,
    movies: usize,
    seed: u64,
    shots: (usize, usize),
    epochs: usize,
) -> (PathBuf, PathBuf, PathBuf) {
    let data = synth_small(dir, movies, seed, Some(shots));
    let out = train_small(&data, &dir.join("run"), epochs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ck = dir.join("run/best.safetensors");
    let onnx = dir.join("model.onnx");
    export_onnx(&ck, &onnx);
    (data, ck, onnx)
}

/// `tests/<script>` with `args` on the venv's Python: the one JSON value it
/// printed (its output in the panic message when it fails).
pub fn python_script(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script))
        .args(args)
        .output()
        .expect("run the venv's python (did scripts/setup run?)");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} prints one JSON value: {e}"))
}

/// `tests/read_back_scenes.py` over `specs` (`FPS,RULE,DIR` each): every
/// scene format read back by its users' tools; the counts it printed.
pub fn read_back_scenes(specs: &[String]) -> serde_json::Value {
    let args: Vec<&std::ffi::OsStr> = specs.iter().map(std::ffi::OsStr::new).collect();
    python_script("read_back_scenes.py", &args)
}

/// Makes a named pipe (FIFO) at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string naming a new path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}
