//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: the library is opened at run time. We
//! look for it, in order, at `--ort-lib`, `$LGSS_ORT_LIB`, then in the
//! project's venv (`.venv/lib/python3*/site-packages/onnxruntime/capi/`)
//! found from the executable's location upwards or from the source tree the
//! binary was built in. Loading goes through `ort::init_from`, which reports
//! failure as an error; `ORT_DYLIB_PATH` would make ort panic instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail};

/// The environment variable that overrides the library location.
pub const ENV_VAR: &str = "LGSS_ORT_LIB";

/// The library file name PyPI `onnxruntime` ships.
const LIB_PREFIX: &str = "libonnxruntime.so";

/// The library to load: the explicit path, `$LGSS_ORT_LIB`, or the venv's.
pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in &roots {
        if let Some(lib) = find_in_venv(&root.join(".venv")) {
            return Ok(lib);
        }
    }
    bail!(
        "ONNX Runtime library not found: run the README's set-up (it installs onnxruntime into .venv), \
         or pass --ort-lib PATH or set {ENV_VAR} to a libonnxruntime.so"
    )
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    for py in pythons {
        let capi = py.join("site-packages/onnxruntime/capi");
        let Ok(entries) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(LIB_PREFIX))
            })
            .collect();
        libs.sort();
        if let Some(l) = libs.pop() {
            return Some(l);
        }
    }
    None
}

static LOADED: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();
static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Loads ONNX Runtime once per process and returns its environment; later
/// calls return the first one.
pub fn init(explicit: Option<&Path>) -> anyhow::Result<&'static ort::environment::Environment> {
    Ok(&init_with_path(explicit)?.1)
}

/// The library loaded, loading it if needed.
pub fn loaded_path(explicit: Option<&Path>) -> anyhow::Result<&'static Path> {
    Ok(&init_with_path(explicit)?.0)
}

fn init_with_path(
    explicit: Option<&Path>,
) -> anyhow::Result<&'static (PathBuf, ort::environment::Environment)> {
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = LOADED.get() {
        return Ok(l);
    }
    let path = resolve(explicit)?;
    if !path.exists() {
        bail!("{}: ONNX Runtime library does not exist", path.display());
    }
    let env = ort::init_from(&path)
        .map_err(|e| anyhow!("{}: cannot load ONNX Runtime: {e}", path.display()))?
        .with_name("lgss")
        .build()
        .map_err(|e| anyhow!("{}: cannot start ONNX Runtime: {e}", path.display()))?;
    Ok(LOADED.get_or_init(|| (path, env)))
}

/// The loaded library's build description (version, commit).
pub fn build_info() -> String {
    ort::info().to_string()
}
