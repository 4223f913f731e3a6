//! Link-time settings the dependencies cannot set for us.
//!
//! torch-sys links libtorch but puts no rpath into the final binary, so the
//! binary would need `LD_LIBRARY_PATH` at run time; we add the rpath here.
//! With the `cuda` feature, `libtorch_cuda` is linked even though no symbol of
//! it is referenced: the linker's `--as-needed` would otherwise drop it and
//! `tch::Cuda::is_available()` would report false on a machine with a GPU.
//! `src/native/` reaches what tch does not bind (libtorch's TF32 switches,
//! its fused Adam kernels and, with `cuda`, its CUDA graphs); it is compiled
//! against the same libtorch's headers.

fn main() {
    long_version();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=LGSS_LIBTORCH_LIB={dir}");
        build_native_shims(std::path::Path::new(&dir));
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-link-lib=c10_cuda");
    }
}

fn build_native_shims(libtorch_lib: &std::path::Path) {
    let shims = ["src/native/tf32.cpp", "src/native/fused_adam.cpp"];
    for shim in shims {
        println!("cargo:rerun-if-changed={shim}");
    }
    println!("cargo:rerun-if-changed=src/native/guarded.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = libtorch_lib.join("../include");
    libtorch_cxx(&include).files(shims).compile("lgss_native");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda_shim(&include);
    }
}

/// A C++17 build against libtorch's headers under `torch_include`, with
/// the C++ ABI libtorch was built with.
fn libtorch_cxx(torch_include: &std::path::Path) -> cc::Build {
    // PyPI's torch is built with the C++11 ABI since 2.7; torch-sys reads the
    // same variable to override it.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(torch_include)
        .include(torch_include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
    build
}

/// `src/native/cuda_graph.cpp` includes libtorch's CUDA headers, which
/// include CUDA's runtime API: the headers of the wheels torch depends on
/// (`site-packages/nvidia/cu*/include`, completed by nvidia-cuda-crt, which
/// `LGSS_FEATURES=cuda scripts/setup` installs), or a toolkit's in
/// `CUDA_HOME`.
fn build_cuda_shim(torch_include: &std::path::Path) {
    let shim = "src/native/cuda_graph.cpp";
    println!("cargo:rerun-if-changed={shim}");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let site_packages = torch_include.join("../..");
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir(site_packages.join("nvidia"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .collect();
    candidates.sort();
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(std::path::PathBuf::from(home).join("include"));
    }
    let cuda_include = candidates
        .into_iter()
        .find(|dir| dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists())
        .unwrap_or_else(|| {
            panic!(
                "the cuda feature needs CUDA's runtime headers (cuda_runtime_api.h and crt/): \
                 none under {}/nvidia/*/include or $CUDA_HOME/include. \
                 `LGSS_FEATURES=cuda scripts/setup` installs them (nvidia-cuda-crt).",
                site_packages.display()
            )
        });
    libtorch_cxx(torch_include)
        .include(cuda_include)
        .file(shim)
        .compile("lgss_cuda_graph");
}

/// `lgss --version`: the version, the build's features and the pinned
/// native-library crates (from Cargo.lock, so it cannot drift).
fn long_version() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let version_of = |name: &str| {
        let key = format!("name = \"{name}\"\nversion = \"");
        lock.find(&key)
            .and_then(|i| lock[i + key.len()..].split('"').next())
            .unwrap_or("?")
            .to_string()
    };
    let mut parts = Vec::new();
    for (feature, lib) in [("TCH", "tch"), ("ORT", "ort"), ("TRACT", "tract-onnx")] {
        if std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some() {
            parts.push(format!("{lib} {}", version_of(lib)));
        }
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        parts.push("cuda".into());
    }
    println!(
        "cargo:rustc-env=LGSS_LONG_VERSION={} ({})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        parts.join(", ")
    );
}
