//! Link-time settings the dependencies cannot set for us.
//!
//! torch-sys links libtorch but puts no rpath into the final binary, so the
//! binary would need `LD_LIBRARY_PATH` at run time; we add the rpath here.
//! With the `cuda` feature, `libtorch_cuda` is linked even though no symbol of
//! it is referenced: the linker's `--as-needed` would otherwise drop it and
//! `tch::Cuda::is_available()` would report false on a machine with a GPU.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=LGSS_LIBTORCH_LIB={dir}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
