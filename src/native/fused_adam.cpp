// libtorch's multi-tensor Adam/AdamW kernels (`torch.optim.Adam(fused=True)`),
// which tch does not bind: one launch for every parameter instead of about
// ten per parameter. Tensors cross as tch hands them out: a tch `C_tensor*`
// is an `at::Tensor*` (torch-sys's torch_api.h). Exceptions never cross
// (guarded.h).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <vector>

#include "guarded.h"

namespace {

std::vector<at::Tensor> list(at::Tensor** ts, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

}  // namespace

extern "C" {

// One Adam (L2 weight decay, `decoupled` == 0) or AdamW step over `n`
// parameters: `steps` are per-parameter float step counters on the
// parameters' device, incremented here first (as torch.optim does), so
// bias corrections are computed on the device and no scalar of this step
// comes from the host but the hyper-parameters.
int lgss_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                    at::Tensor** exp_avg_sqs, at::Tensor** steps, int64_t n, double lr,
                    double beta1, double beta2, double weight_decay, double eps,
                    int decoupled, char* err, size_t err_len) {
  return lgss_native::guarded(err, err_len, [&] {
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    auto s = list(steps, n);
    c10::NoGradGuard no_grad;
    at::_foreach_add_(s, 1);
    if (decoupled != 0) {
      at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                        /*amsgrad=*/false, /*maximize=*/false);
    } else {
      at::_fused_adam_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                       /*amsgrad=*/false, /*maximize=*/false);
    }
  });
}

}  // extern "C"
