//! `lgss doctor`: which native libraries this binary uses, and whether they load.

use std::path::Path;

pub fn run(ort_lib_path: Option<&Path>) -> anyhow::Result<()> {
    println!("lgss        {}", env!("CARGO_PKG_VERSION"));
    let features: Vec<&str> = [
        ("tch", cfg!(feature = "tch")),
        ("ort", cfg!(feature = "ort")),
        ("tract", cfg!(feature = "tract")),
        ("cuda", cfg!(feature = "cuda")),
    ]
    .iter()
    .filter(|f| f.1)
    .map(|f| f.0)
    .collect();
    println!("features    {}", features.join(", "));
    libtorch();
    onnxruntime(ort_lib_path)?;
    if cfg!(feature = "tract") {
        println!("tract       built in (pure Rust)");
    }
    Ok(())
}

#[cfg(feature = "tch")]
fn libtorch() {
    println!(
        "libtorch    {} (rpath)",
        option_env!("LGSS_LIBTORCH_LIB").unwrap_or("?")
    );
    let cuda = tch::Cuda::is_available();
    println!(
        "CUDA        {} ({} device(s); cuda feature {})",
        if cuda { "available" } else { "not available" },
        tch::Cuda::device_count(),
        if cfg!(feature = "cuda") { "on" } else { "off" }
    );
    if cuda {
        println!(
            "            cuDNN {}; TF32 off by default (--tf32 turns it on)",
            if tch::Cuda::cudnn_is_available() {
                "available"
            } else {
                "not available"
            }
        );
    }
}

#[cfg(not(feature = "tch"))]
fn libtorch() {
    println!("libtorch    not in this build (feature `tch`: train, import-torch, tch runtimes)");
}

#[cfg(feature = "ort")]
fn onnxruntime(ort_lib_path: Option<&Path>) -> anyhow::Result<()> {
    use crate::runtime::ort_lib;
    use ort::ep::ExecutionProvider;

    let path = ort_lib::loaded_path(ort_lib_path)?;
    println!("onnxruntime {}", path.display());
    println!("            {}", ort_lib::build_info());
    let cuda_ep = ort::ep::CUDA::is_available().unwrap_or(false);
    println!(
        "            CUDA execution provider {}",
        if cuda_ep {
            "built in (ort-cuda can run; install onnxruntime-gpu's CUDA libraries if it cannot load them)"
        } else {
            "not in this build (ort-cuda needs onnxruntime-gpu: LGSS_FEATURES=cuda scripts/setup)"
        }
    );
    Ok(())
}

#[cfg(not(feature = "ort"))]
fn onnxruntime(_: Option<&Path>) -> anyhow::Result<()> {
    println!("onnxruntime not in this build (feature `ort`: ort-cpu, ort-cuda runtimes)");
    Ok(())
}
