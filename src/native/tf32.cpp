// TF32 switches of libtorch's global context, which tch does not expose.
// Only bool/enum-typed calls cross this boundary (no std::string), so the
// shim does not depend on the C++ ABI libtorch was built with.
//
// It uses the setters behind torch.backends.cuda.matmul.allow_tf32 and
// torch.backends.cudnn.allow_tf32. libtorch 2.11 also has per-operator
// setFloat32Precision, but after it the operator-less allowTF32CuDNN()
// getter throws ("a mix of the legacy and new APIs"), and ATen code that
// still asks that getter would fail on a GPU; the legacy setters keep every
// getter consistent (tested: tests/lgss/model_exact.rs).
#include <ATen/Context.h>

extern "C" {

// TF32 for CUDA matmuls (cuBLAS) and cuDNN (convolutions and RNNs) when
// `enabled`, full IEEE fp32 otherwise. 0 on success, -1 if libtorch raised.
int lgss_set_cuda_tf32(int enabled) {
  try {
    auto& ctx = at::globalContext();
    ctx.setAllowTF32CuBLAS(enabled != 0);
    ctx.setAllowTF32CuDNN(enabled != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether TF32 is allowed now: bit 0 cuBLAS matmul, bit 1 cuDNN conv,
// bit 2 cuDNN RNN, bit 3 cuDNN as asked without an operator; -1 if
// libtorch raised (e.g. the getters disagree).
int lgss_cuda_tf32_state() {
  try {
    auto& ctx = at::globalContext();
    int bits = 0;
    if (ctx.allowTF32CuBLAS()) bits |= 1;
    if (ctx.allowTF32CuDNN(at::Float32Op::CONV)) bits |= 2;
    if (ctx.allowTF32CuDNN(at::Float32Op::RNN)) bits |= 4;
    if (ctx.allowTF32CuDNN()) bits |= 8;
    return bits;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
