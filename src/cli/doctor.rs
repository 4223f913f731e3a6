//! `lgss doctor`: which native libraries this binary uses, and whether they load.

use std::path::Path;

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
    let path = ort_lib::loaded_path(ort_lib_path)?;
    println!("onnxruntime {}", path.display());
    println!("            {}", ort_lib::build_info());
    Ok(())
}
