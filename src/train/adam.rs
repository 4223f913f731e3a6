//! Adam with L2 weight decay, step for step what `torch.optim.Adam` does on
//! one tensor at a time (the CPU default), so a step matches PyTorch's and
//! the state can be checkpointed and resumed exactly.

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
        tch::no_grad(|| {
            for s in &mut self.slots {
                let grad = s.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if self.weight_decay != 0.0 {
                    // torch's grad.add(param, alpha=wd) is one fused multiply-add
                    // (one rounding); products of f32s are exact in f64, so
                    // computing in f64 and rounding once gives the same value.
                    // The difference shows where grad and wd*param nearly cancel.
                    let wd = self.weight_decay as f32 as f64;
                    (grad.to_kind(Kind::Double) + s.param.to_kind(Kind::Double) * wd).to_kind(Kind::Float)
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
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: i64) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for s in &mut self.slots {
                for (prefix, dst) in [(EXP_AVG, &mut s.exp_avg), (EXP_AVG_SQ, &mut s.exp_avg_sq)] {
                    let key = format!("{prefix}{}", s.name);
                    let src = tensors
                        .get(&key)
                        .ok_or_else(|| anyhow!("optimizer state {key} missing"))?;
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
