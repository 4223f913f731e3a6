//! Link-time settings the dependencies cannot set for us.
//!
//! torch-sys links libtorch but puts no rpath into the final binary, so the
//! binary would need `LD_LIBRARY_PATH` at run time; we add the rpath here.
//! With the `cuda` feature, `libtorch_cuda` is linked even though no symbol of
//! it is referenced: the linker's `--as-needed` would otherwise drop it and
//! `tch::Cuda::is_available()` would report false on a machine with a GPU.
//! `src/native/tf32.cpp` reaches libtorch's TF32 switches, which tch does
//! not bind; it is compiled against the same libtorch's headers.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=LGSS_LIBTORCH_LIB={dir}");
        build_tf32_shim(std::path::Path::new(&dir));
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn build_tf32_shim(libtorch_lib: &std::path::Path) {
    let shim = "src/native/tf32.cpp";
    println!("cargo:rerun-if-changed={shim}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = libtorch_lib.join("../include");
    // PyPI's torch is built with the C++11 ABI since 2.7; torch-sys reads the
    // same variable to override it.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file(shim)
        .compile("lgss_tf32");
}
