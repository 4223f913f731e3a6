//! The CUDA device for libtorch, and its fp32 precision.
//!
//! libtorch lets cuDNN use TF32 (a 10-bit mantissa) for convolutions and
//! RNNs by default, so a CUDA LSTM differs from the CPU's by ~1e-4 and
//! runtimes stop agreeing. Every CUDA path sets full fp32 unless the user
//! opts into TF32 for speed. tch binds no TF32 switch: `src/native/tf32.cpp`
//! calls `at::globalContext()` directly.

use anyhow::bail;

extern "C" {
    fn lgss_set_cuda_tf32(enabled: std::os::raw::c_int) -> std::os::raw::c_int;
    fn lgss_cuda_tf32_state() -> std::os::raw::c_int;
}

/// Where libtorch allows TF32 now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tf32State {
    pub cublas_matmul: bool,
    pub cudnn_conv: bool,
    pub cudnn_rnn: bool,
    /// What ATen code that names no operator is told.
    pub cudnn_any: bool,
}

impl Tf32State {
    pub fn any(self) -> bool {
        self.cublas_matmul || self.cudnn_conv || self.cudnn_rnn || self.cudnn_any
    }

    pub fn all(self) -> bool {
        self.cublas_matmul && self.cudnn_conv && self.cudnn_rnn && self.cudnn_any
    }
}

/// Sets libtorch's CUDA matmul, conv and RNN precision: TF32 if `enabled`,
/// else IEEE fp32. Process-wide; harmless without a GPU.
pub fn set_tf32(enabled: bool) -> anyhow::Result<()> {
    // SAFETY: the shim only calls at::globalContext() setters and catches
    // every C++ exception.
    if unsafe { lgss_set_cuda_tf32(i32::from(enabled)) } != 0 {
        bail!("libtorch refused to set its CUDA fp32 precision");
    }
    Ok(())
}

/// libtorch's current TF32 settings.
pub fn tf32_state() -> anyhow::Result<Tf32State> {
    // SAFETY: as in set_tf32, a getter that catches exceptions.
    let bits = unsafe { lgss_cuda_tf32_state() };
    if bits < 0 {
        bail!("libtorch could not report its CUDA fp32 precision");
    }
    Ok(Tf32State {
        cublas_matmul: bits & 1 != 0,
        cudnn_conv: bits & 2 != 0,
        cudnn_rnn: bits & 4 != 0,
        cudnn_any: bits & 8 != 0,
    })
}

/// The first CUDA device with its precision set (`tf32` opts into TF32),
/// or an error that says why there is none.
pub fn cuda_device(context: &str, tf32: bool) -> anyhow::Result<tch::Device> {
    if !tch::Cuda::is_available() {
        let why = if cfg!(feature = "cuda") {
            ""
        } else {
            " (this binary was built without the `cuda` feature)"
        };
        bail!("{context}: libtorch sees no CUDA device{why}");
    }
    set_tf32(tf32)?;
    Ok(tch::Device::Cuda(0))
}
