// TF32 switches of libtorch's global context, which tch does not expose.
// Only enum-typed calls cross this boundary (no std::string), so the shim
// does not depend on the C++ ABI libtorch was built with.
#include <ATen/Context.h>

extern "C" {

// Sets fp32 precision for CUDA matmuls (cuBLAS), convolutions and RNNs
// (cuDNN): TF32 when `enabled`, full IEEE fp32 otherwise. 0 on success.
int lgss_set_cuda_tf32(int enabled) {
  try {
    auto p = enabled ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
    auto& ctx = at::globalContext();
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, p);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, p);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::RNN, p);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether TF32 is allowed now: bit 0 cuBLAS matmul, bit 1 cuDNN conv,
// bit 2 cuDNN RNN; -1 if libtorch raised.
int lgss_cuda_tf32_state() {
  try {
    auto& ctx = at::globalContext();
    int bits = 0;
    if (ctx.allowTF32CuBLAS()) bits |= 1;
    if (ctx.allowTF32CuDNN(at::Float32Op::CONV)) bits |= 2;
    if (ctx.allowTF32CuDNN(at::Float32Op::RNN)) bits |= 4;
    return bits;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
