//! `lgss doctor`: which native libraries this binary uses, and whether they load.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    version: &'static str,
    features: Vec<&'static str>,
    /// None: not in this build.
    libtorch: Option<Libtorch>,
    onnxruntime: Option<OnnxRuntime>,
    tract: bool,
}

#[derive(Debug, Serialize)]
struct Libtorch {
    lib: &'static str,
    cuda_available: bool,
    cuda_devices: i64,
    cudnn_available: bool,
}

#[derive(Debug, Serialize)]
struct OnnxRuntime {
    lib: PathBuf,
    build_info: String,
    cuda_provider: bool,
}

pub fn run(args: Args, ort_lib_path: Option<&Path>) -> anyhow::Result<()> {
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        features: [
            ("tch", cfg!(feature = "tch")),
            ("ort", cfg!(feature = "ort")),
            ("tract", cfg!(feature = "tract")),
            ("cuda", cfg!(feature = "cuda")),
        ]
        .iter()
        .filter(|f| f.1)
        .map(|f| f.0)
        .collect(),
        libtorch: libtorch(),
        onnxruntime: onnxruntime(ort_lib_path)?,
        tract: cfg!(feature = "tract"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("lgss        {}", report.version);
    println!("features    {}", report.features.join(", "));
    match &report.libtorch {
        Some(t) => {
            println!("libtorch    {} (rpath)", t.lib);
            println!(
                "CUDA        {} ({} device(s); cuda feature {})",
                if t.cuda_available {
                    "available"
                } else {
                    "not available"
                },
                t.cuda_devices,
                if cfg!(feature = "cuda") { "on" } else { "off" }
            );
            if t.cuda_available {
                println!(
                    "            cuDNN {}; TF32 off by default (--tf32 turns it on)",
                    if t.cudnn_available {
                        "available"
                    } else {
                        "not available"
                    }
                );
            }
        }
        None => println!("libtorch    not in this build (feature `tch`: train, import-torch, tch runtimes)"),
    }
    match &report.onnxruntime {
        Some(o) => {
            println!("onnxruntime {}", o.lib.display());
            println!("            {}", o.build_info);
            println!(
                "            CUDA execution provider {}",
                if o.cuda_provider {
                    "built in (ort-cuda can run; install onnxruntime-gpu's CUDA libraries if it cannot load them)"
                } else {
                    "not in this build (ort-cuda needs onnxruntime-gpu: LGSS_FEATURES=cuda scripts/setup)"
                }
            );
        }
        None => println!("onnxruntime not in this build (feature `ort`: ort-cpu, ort-cuda runtimes)"),
    }
    if report.tract {
        println!("tract       built in (pure Rust)");
    }
    Ok(())
}

#[cfg(feature = "tch")]
fn libtorch() -> Option<Libtorch> {
    let cuda_available = tch::Cuda::is_available();
    Some(Libtorch {
        lib: option_env!("LGSS_LIBTORCH_LIB").unwrap_or("?"),
        cuda_available,
        cuda_devices: tch::Cuda::device_count(),
        cudnn_available: cuda_available && tch::Cuda::cudnn_is_available(),
    })
}

#[cfg(not(feature = "tch"))]
fn libtorch() -> Option<Libtorch> {
    None
}

#[cfg(feature = "ort")]
fn onnxruntime(ort_lib_path: Option<&Path>) -> anyhow::Result<Option<OnnxRuntime>> {
    use crate::runtime::ort_lib;
    use ort::ep::ExecutionProvider;

    let lib = ort_lib::loaded_path(ort_lib_path)?;
    Ok(Some(OnnxRuntime {
        lib: lib.to_path_buf(),
        build_info: ort_lib::build_info(),
        cuda_provider: ort::ep::CUDA::is_available().unwrap_or(false),
    }))
}

#[cfg(not(feature = "ort"))]
fn onnxruntime(_: Option<&Path>) -> anyhow::Result<Option<OnnxRuntime>> {
    Ok(None)
}
