//! Adam with L2 weight decay, step for step what `torch.optim.Adam` does on
//! one tensor at a time (the CPU default), so a step matches PyTorch's and
//! the state can be checkpointed and resumed exactly; with decoupled weight
//! decay, what `torch.optim.AdamW` does.

use std::collections::BTreeMap;

use anyhow::anyhow;
use tch::{Kind, Tensor};

use crate::model::checkpoint::{EXP_AVG, EXP_AVG_SQ};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct Adam {
    pub lr: f64,
    pub weight_decay: f64,
    /// Decay the weights directly (AdamW) instead of adding `wd·w` to the
    /// gradient (Adam's L2).
    pub decoupled: bool,
    /// Steps taken so far.
    pub step: i64,
    slots: Vec<Slot>,
}

impl Adam {
    /// State for each named parameter (sorted by name for a stable order).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Adam {
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
            slots,
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
    pub fn step(&mut self) {
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
