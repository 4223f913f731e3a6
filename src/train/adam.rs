//! Adam with L2 weight decay, step for step what `torch.optim.Adam` does on
//! one tensor at a time (the CPU default), so a step matches PyTorch's and
//! the state can be checkpointed and resumed exactly; with decoupled weight
//! decay, what `torch.optim.AdamW` does. On CUDA the same update runs as
//! libtorch's multi-tensor kernel (`fused=True` in PyTorch): one launch for
//! all parameters instead of about ten per parameter.

use std::collections::BTreeMap;

use anyhow::anyhow;
use tch::{Kind, Tensor};

use crate::model::checkpoint::{EXP_AVG, EXP_AVG_SQ};

extern "C" {
    /// `src/native/fused_adam.cpp`.
    #[allow(clippy::too_many_arguments)]
    fn lgss_fused_adam(
        params: *const *mut torch_sys::C_tensor,
        grads: *const *mut torch_sys::C_tensor,
        exp_avgs: *const *mut torch_sys::C_tensor,
        exp_avg_sqs: *const *mut torch_sys::C_tensor,
        steps: *const *mut torch_sys::C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: std::os::raw::c_int,
        err: *mut std::os::raw::c_char,
        err_len: usize,
    ) -> std::os::raw::c_int;
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Which kernels carry out a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdamKernel {
    /// One tensor at a time, as `torch.optim.Adam(foreach=False)`: on the
    /// CPU one fused pass of ours, bit-identical to PyTorch's.
    PerTensor,
    /// libtorch's `_fused_adam_`/`_fused_adamw_` over all parameters at
    /// once, step counters on the device (`torch.optim.Adam(fused=True)`).
    /// Rounds differently from `PerTensor` (bias corrections on the device):
    /// equal within a few f32 ulps of each update.
    Fused,
}

impl AdamKernel {
    /// Fused on CUDA, where per-tensor kernels are launch-bound; per tensor
    /// on the CPU, where ours is exact and already one pass.
    pub fn for_device(device: tch::Device) -> AdamKernel {
        if device.is_cuda() {
            AdamKernel::Fused
        } else {
            AdamKernel::PerTensor
        }
    }
}

pub struct Adam {
    pub lr: f64,
    pub weight_decay: f64,
    /// Decay the weights directly (AdamW) instead of adding `wd·w` to the
    /// gradient (Adam's L2).
    pub decoupled: bool,
    /// Steps taken so far.
    pub step: i64,
    pub kernel: AdamKernel,
    slots: Vec<Slot>,
    /// [`AdamKernel::Fused`]'s per-parameter step counters (f32 on the
    /// parameters' device, as PyTorch keeps them), made at its first step.
    fused_steps: Vec<Tensor>,
}

impl Adam {
    /// State for each named parameter (sorted by name for a stable order).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Adam {
        let device = params.first().map_or(tch::Device::Cpu, |(_, t)| t.device());
        let slots = params
            .into_iter()
            .map(|(name, param)| Slot {
                exp_avg: param.zeros_like(),
                exp_avg_sq: param.zeros_like(),
                name,
                param,
            })
            .collect();
        Adam {
            lr,
            weight_decay,
            decoupled: false,
            step: 0,
            kernel: AdamKernel::for_device(device),
            slots,
            fused_steps: Vec::new(),
        }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// One update from the parameters' current gradients.
    pub fn step(&mut self) -> anyhow::Result<()> {
        if self.kernel == AdamKernel::Fused {
            return self.fused_step();
        }
        self.step += 1;
        let bias_correction1 = 1.0 - BETA1.powi(self.step as i32);
        let bias_correction2 = 1.0 - BETA2.powi(self.step as i32);
        let step_size = self.lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.sqrt();
        let l2 = if self.decoupled { 0.0 } else { self.weight_decay };
        let consts = StepConstants {
            weight_decay: l2 as f32,
            one_minus_beta1: (1.0 - BETA1) as f32,
            beta2: BETA2 as f32,
            one_minus_beta2: (1.0 - BETA2) as f32,
            bias_correction2_sqrt: bias_correction2_sqrt as f32,
            eps: EPS as f32,
            neg_step_size: -step_size as f32,
        };
        tch::no_grad(|| {
            for s in &mut self.slots {
                let grad = s.param.grad();
                if !grad.defined() {
                    continue;
                }
                if self.decoupled && self.weight_decay != 0.0 {
                    // torch.optim.AdamW: param.mul_(1 - lr * weight_decay).
                    let _ = s.param.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                if fused_cpu_step(&s.param, &grad, &s.exp_avg, &s.exp_avg_sq, &consts) {
                    continue;
                }
                let grad = if l2 != 0.0 {
                    weight_decayed(&grad, &s.param, l2)
                } else {
                    grad
                };
                let _ = s.exp_avg.lerp_(&grad, 1.0 - BETA1);
                // addcmul_(g, g, value=v) computes (v * g) * g: same rounding here.
                let _ = s.exp_avg_sq.g_mul_scalar_(BETA2);
                let _ = s.exp_avg_sq.addcmul_(&(&grad * (1.0 - BETA2)), &grad);
                let denom = s.exp_avg_sq.sqrt() / bias_correction2_sqrt + EPS;
                let _ = s.param.addcdiv_(&(&s.exp_avg * -step_size), &denom);
            }
        });
        Ok(())
    }

    /// Counts a step whose update ran inside a replayed CUDA graph (the
    /// device's counters advanced there).
    pub fn count_replayed_step(&mut self) {
        self.step += 1;
    }

    /// [`AdamKernel::Fused`]: one call into libtorch for every parameter
    /// that has a gradient; nothing is read back to the host.
    fn fused_step(&mut self) -> anyhow::Result<()> {
        if self.fused_steps.len() != self.slots.len() {
            // Counters continue from the host's (a resumed run's) step.
            self.fused_steps = self
                .slots
                .iter()
                .map(|s| Tensor::from(self.step as f32).to_device(s.param.device()))
                .collect();
        }
        self.step += 1;
        let mut grads: Vec<Tensor> = Vec::with_capacity(self.slots.len());
        let mut ptrs: [Vec<*mut torch_sys::C_tensor>; 5] = Default::default();
        for (s, counter) in self.slots.iter_mut().zip(self.fused_steps.iter_mut()) {
            let grad = s.param.grad();
            if !grad.defined() {
                continue;
            }
            grads.push(grad);
            ptrs[0].push(s.param.as_mut_ptr());
            ptrs[2].push(s.exp_avg.as_mut_ptr());
            ptrs[3].push(s.exp_avg_sq.as_mut_ptr());
            ptrs[4].push(counter.as_mut_ptr());
        }
        ptrs[1] = grads.iter_mut().map(|g| g.as_mut_ptr()).collect();
        let mut err = [0u8; 512];
        // SAFETY: five lists of the same length of live tensors (the slots',
        // the counters' and `grads`, all kept alive across the call); the
        // shim catches every C++ exception and NUL-terminates `err`.
        let rc = unsafe {
            lgss_fused_adam(
                ptrs[0].as_ptr(),
                ptrs[1].as_ptr(),
                ptrs[2].as_ptr(),
                ptrs[3].as_ptr(),
                ptrs[4].as_ptr(),
                ptrs[0].len() as i64,
                self.lr,
                BETA1,
                BETA2,
                self.weight_decay,
                EPS,
                i32::from(self.decoupled),
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if rc != 0 {
            let msg = std::ffi::CStr::from_bytes_until_nul(&err).map_or("?".into(), |m| m.to_string_lossy());
            anyhow::bail!("libtorch's fused Adam failed: {msg}");
        }
        Ok(())
    }

    /// The moment estimates, named for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.slots.len() * 2);
        for s in &self.slots {
            out.push((format!("{EXP_AVG}{}", s.name), s.exp_avg.shallow_clone()));
            out.push((format!("{EXP_AVG_SQ}{}", s.name), s.exp_avg_sq.shallow_clone()));
        }
        out
    }

    /// Restores moment estimates saved by [`Adam::state_tensors`].
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, crate::data::tensor::Tensor>,
        step: i64,
    ) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for s in &mut self.slots {
                for (prefix, dst) in [(EXP_AVG, &mut s.exp_avg), (EXP_AVG_SQ, &mut s.exp_avg_sq)] {
                    let key = format!("{prefix}{}", s.name);
                    let src = tensors
                        .get(&key)
                        .ok_or_else(|| anyhow!("optimizer state {key} missing"))?;
                    let src = crate::model::checkpoint::to_tch(src);
                    if src.size() != dst.size() {
                        anyhow::bail!(
                            "optimizer state {key} has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        );
                    }
                    dst.copy_(&src);
                }
            }
            Ok(())
        })?;
        self.step = step;
        self.fused_steps.clear();
        Ok(())
    }
}

/// `grad + wd * param` as torch's `grad.add(param, alpha=wd)` computes it:
/// one fused multiply-add, one rounding. The product of two f32s is exact
/// in f64, so summing there and rounding once gives the same value. (Two
/// f32 roundings differ where grad and wd·param nearly cancel, which is
/// where Adam's step lr·g/(|g| + eps) is steepest.)
fn weight_decayed(grad: &Tensor, param: &Tensor, weight_decay: f64) -> Tensor {
    let wd = weight_decay as f32 as f64;
    (grad.to_kind(Kind::Double) + param.to_kind(Kind::Double) * wd).to_kind(Kind::Float)
}

/// One step's scalars, rounded to f32 as torch rounds its scalar arguments.
struct StepConstants {
    weight_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

/// The whole update in one pass over CPU f32 memory (torch's sequence of
/// kernels makes about ten), rounding exactly as those kernels do:
/// `grad.add(param, alpha=wd)` and `lerp_` are fused multiply-adds, the
/// rest separate operations. Returns false (nothing done) where it does not
/// apply: another device or type, non-contiguous memory, or no FMA unit.
fn fused_cpu_step(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    c: &StepConstants,
) -> bool {
    let plain = |t: &Tensor| t.device() == tch::Device::Cpu && t.kind() == Kind::Float && t.is_contiguous();
    if ![param, grad, exp_avg, exp_avg_sq].iter().all(|t| plain(t)) || !fma_available() {
        return false;
    }
    let n = param.numel();
    if grad.numel() != n || exp_avg.numel() != n || exp_avg_sq.numel() != n {
        return false;
    }
    // SAFETY: four distinct, contiguous f32 CPU tensors of n elements each,
    // owned by this optimizer (and the autograd graph, which is idle during
    // the step); nothing else touches them while these slices live.
    let (p, g, m, v) = unsafe {
        (
            std::slice::from_raw_parts_mut(param.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(grad.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(exp_avg.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(exp_avg_sq.data_ptr() as *mut f32, n),
        )
    };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    let chunk = n.div_ceil(threads).max(1 << 16);
    std::thread::scope(|scope| {
        for (((p, g), m), v) in p
            .chunks_mut(chunk)
            .zip(g.chunks(chunk))
            .zip(m.chunks_mut(chunk))
            .zip(v.chunks_mut(chunk))
        {
            // SAFETY: fma_available() checked the CPU has FMA.
            scope.spawn(move || unsafe { adam_kernel(p, g, m, v, c) });
        }
    });
    true
}

fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "fma"))]
unsafe fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &StepConstants) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if c.weight_decay != 0.0 {
            p.mul_add(c.weight_decay, g)
        } else {
            g
        };
        *m = (g - *m).mul_add(c.one_minus_beta1, *m);
        *v = *v * c.beta2 + (c.one_minus_beta2 * g) * g;
        let denom = v.sqrt() / c.bias_correction2_sqrt + c.eps;
        *p += (c.neg_step_size * *m) / denom;
    }
}
