//! `lgss doctor`: which native libraries this binary uses, and whether they load.

use std::path::Path;

use ort::ep::ExecutionProvider;

use crate::runtime::ort_lib;

pub fn run(ort_lib_path: Option<&Path>) -> anyhow::Result<()> {
    println!("lgss        {}", env!("CARGO_PKG_VERSION"));
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
