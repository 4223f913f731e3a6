//! An exponential moving average of the weights (`train.ema_decay`).
//!
//! The average is what is validated, checkpointed as the model and exported;
//! the weights the optimizer moves are kept beside it in checkpoints (under
//! [`TRAINED`]) so that `--resume` continues exactly.

use std::collections::BTreeMap;

use anyhow::anyhow;
use tch::Tensor;

use crate::model::checkpoint::{to_tch, Checkpoint, TRAINED};

struct Slot {
    name: String,
    param: Tensor,
    average: Tensor,
}

pub struct Ema {
    decay: f64,
    slots: Vec<Slot>,
}

impl Ema {
    /// Starts the average at the parameters' current values.
    pub fn new(params: Vec<(String, Tensor)>, decay: f64) -> Ema {
        let slots = params
            .into_iter()
            .map(|(name, param)| Slot {
                average: tch::no_grad(|| param.detach().copy()),
                name,
                param,
            })
            .collect();
        Ema { decay, slots }
    }

    /// Folds the parameters into the average after optimizer step `step`
    /// (1-based). Early steps weigh more (`(1 + t)/(10 + t)`), so the
    /// average is not dominated by the initial weights.
    pub fn update(&mut self, step: i64) {
        let t = step as f64;
        let decay = self.decay.min((1.0 + t) / (10.0 + t));
        tch::no_grad(|| {
            for s in &mut self.slots {
                let _ = s.average.lerp_(&s.param, 1.0 - decay);
            }
        });
    }

    /// Exchanges the trained weights and the average in place: call it
    /// before validating, and again after, to put the trained ones back.
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for s in &mut self.slots {
                let trained = s.param.copy();
                s.param.copy_(&s.average);
                s.average.copy_(&trained);
            }
        });
    }

    /// Makes `ckpt` (made of the trained weights) hold the average as the
    /// model and the trained weights under [`TRAINED`].
    pub fn store(&self, ckpt: &mut Checkpoint) -> anyhow::Result<()> {
        for s in &self.slots {
            let trained = ckpt
                .tensors
                .remove(&s.name)
                .ok_or_else(|| anyhow!("checkpoint has no weight {}", s.name))?;
            ckpt.tensors.insert(format!("{TRAINED}{}", s.name), trained);
            ckpt.insert_tch(s.name.clone(), &s.average)?;
        }
        Ok(())
    }

    /// Restores what [`Ema::store`] saved: the average from the model's
    /// weights and the trained weights into the parameters.
    pub fn load(&mut self, tensors: &BTreeMap<String, crate::data::tensor::Tensor>) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for s in &mut self.slots {
                let key = format!("{TRAINED}{}", s.name);
                let trained = tensors.get(&key).ok_or_else(|| {
                    anyhow!("checkpoint has no {key}: it was not trained with train.ema_decay")
                })?;
                let average = tensors
                    .get(&s.name)
                    .ok_or_else(|| anyhow!("checkpoint has no weight {}", s.name))?;
                s.param.copy_(&to_tch(trained));
                s.average.copy_(&to_tch(average));
            }
            Ok(())
        })
    }
}
