//! The model being trained with its optimizer, weight average and
//! position in the run: training steps, an epoch of them, and the
//! predictions of the weights the run keeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use tch::Device;

use super::adam::Adam;
use super::bank::{Bank, Prediction};
use super::ema::Ema;
use super::state::{self, Position};
use crate::data::windows::Sequence;
use crate::model::checkpoint::{load_weights, Checkpoint};
use crate::model::lgss::loss;
use crate::model::{Config, Lgss};
use crate::progress::Progress;
use crate::rng::Rng;

/// Stream ids for [`Rng::derive`].
const EPOCH_STREAM: u64 = 0x0065_706f_6368;
const DROPOUT_STREAM: u64 = 0x6472_6f70;

pub(super) struct Learner {
    pub model: Lgss,
    adam: Adam,
    ema: Option<Ema>,
    pub pos: Position,
    config: Config,
    seed: u64,
}

/// What training the rest of an epoch did.
pub(super) struct EpochRun {
    pub windows: usize,
    pub seconds: f64,
    /// False when a stop request ended it after a batch.
    pub finished: bool,
}

impl Learner {
    /// A fresh model initialised from `seed`, or the state `resume` saved.
    pub fn new(
        config: &Config,
        device: Device,
        seed: u64,
        resume: Option<&Checkpoint>,
    ) -> anyhow::Result<Learner> {
        let mut model = {
            // Initialisation draws from libtorch's one process-wide generator:
            // seed and draw with no other run in this process in between.
            static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
            tch::manual_seed(seed as i64);
            Lgss::new(&config.model, device)
        };
        let t = &config.train;
        let mut adam = Adam::new(model.named_variables(), t.lr, t.weight_decay);
        adam.decoupled = t.decoupled_weight_decay;
        model.lstm_input_dropout = t.lstm_input_dropout;
        let mut ema = t.ema_decay.map(|d| Ema::new(model.named_variables(), d));
        let mut pos = Position::start();
        if let Some(c) = resume {
            load_weights(&mut model, &c.tensors)?;
            if let Some(ema) = &mut ema {
                ema.load(&c.tensors)?;
            }
            adam.load_state(
                &c.tensors,
                c.meta("adam_step")?.context("checkpoint has no optimizer step")?,
            )?;
            pos = Position::of_checkpoint(c)?;
        }
        Ok(Learner {
            model,
            adam,
            ema,
            pos,
            config: config.clone(),
            seed,
        })
    }

    /// The learning rate of the current epoch.
    pub fn lr(&self) -> f64 {
        lr_at(&self.config, self.pos.epoch)
    }

    /// Trains the rest of the current epoch, in the epoch's seeded order;
    /// stops after a batch when `stop` is set.
    pub fn train_epoch(
        &mut self,
        bank: &Bank,
        train_seqs: &[Sequence],
        stop: &AtomicBool,
        progress: &dyn Progress,
    ) -> anyhow::Result<EpochRun> {
        let t0 = Instant::now();
        self.adam.lr = self.lr();
        let mut order = train_seqs.to_vec();
        Rng::derive(self.seed ^ EPOCH_STREAM, self.pos.epoch as u64).shuffle(&mut order);
        let batches: Vec<&[Sequence]> = order.chunks(self.config.train.batch_size).collect();
        progress.start(
            &format!("epoch {}", self.pos.epoch + 1),
            batches.len(),
            self.pos.batch,
        );
        let mut windows = 0usize;
        let mut finished = true;
        while self.pos.batch < batches.len() {
            windows += self.step(bank, batches[self.pos.batch]);
            progress.status(&format!(
                "epoch {} loss {:.4} {:.0} win/s",
                self.pos.epoch + 1,
                self.pos.loss_sum / self.pos.loss_batches as f64,
                windows as f64 / t0.elapsed().as_secs_f64()
            ));
            progress.advance(1);
            if stop.load(Ordering::SeqCst) && self.pos.batch < batches.len() {
                finished = false;
                break;
            }
        }
        progress.finish();
        Ok(EpochRun {
            windows,
            seconds: t0.elapsed().as_secs_f64(),
            finished,
        })
    }

    /// One optimizer step on `batch`; returns its windows.
    fn step(&mut self, bank: &Bank, batch: &[Sequence]) -> usize {
        let b = bank.batch(batch);
        // Each step's masks from its own seed: a resumed run draws the same.
        self.model.dropout_seed = Rng::derive(self.seed ^ DROPOUT_STREAM, self.adam.step as u64).next_u64();
        let out = self.model.forward(&b.inputs);
        let l = loss(&out.logits, &b.target, self.config.train.class_weights);
        self.adam.zero_grad();
        l.backward();
        self.adam.step();
        if let Some(ema) = &mut self.ema {
            ema.update(self.adam.step);
        }
        self.pos.loss_sum += l.double_value(&[]);
        self.pos.loss_batches += 1;
        self.pos.batch += 1;
        b.windows
    }

    /// Predictions on `seqs` of the weights the run keeps: the moving
    /// average with `ema_decay`, else the trained ones.
    pub fn predict_kept(&mut self, bank: &Bank, seqs: &[Sequence]) -> anyhow::Result<Prediction> {
        if let Some(ema) = &mut self.ema {
            ema.swap();
        }
        let pred = bank.predict(&self.model, seqs, 64, self.config.train.class_weights);
        if let Some(ema) = &mut self.ema {
            ema.swap();
        }
        pred
    }

    /// The mean training loss of the current epoch so far.
    pub fn train_loss(&self) -> f64 {
        self.pos.loss_sum / self.pos.loss_batches.max(1) as f64
    }

    /// Closes the epoch validated at `val_ap`: the position moves to the
    /// next, the best and the early stop are updated. Returns whether it
    /// improved on the best.
    pub fn end_epoch(&mut self, val_ap: f64) -> bool {
        let pos = &mut self.pos;
        pos.epoch += 1;
        pos.batch = 0;
        pos.loss_sum = 0.0;
        pos.loss_batches = 0;
        let improved = val_ap > pos.best_val_ap;
        if improved {
            pos.best_val_ap = val_ap;
            pos.best_epoch = pos.epoch;
        }
        pos.stopped_early = pos.epoch < self.config.train.epochs
            && self
                .config
                .train
                .early_stop_patience
                .is_some_and(|p| pos.epoch - pos.best_epoch >= p);
        improved
    }

    /// Everything `--resume` needs to continue from here.
    pub fn checkpoint(&self, data: &str, scene_lengths: &str) -> anyhow::Result<Checkpoint> {
        state::checkpoint(
            &self.model,
            &self.adam,
            self.ema.as_ref(),
            &self.config,
            self.seed,
            &self.pos,
            data,
            scene_lengths,
        )
    }
}

fn lr_at(config: &Config, epoch: usize) -> f64 {
    let t = &config.train;
    let drops = t.milestones.iter().filter(|&&m| m <= epoch).count();
    t.lr * t.gamma.powi(drops as i32)
}
