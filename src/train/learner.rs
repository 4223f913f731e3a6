//! The model being trained with its optimizer, weight average and
//! position in the run: training steps, an epoch of them, and the
//! predictions of the weights the run keeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use super::adam::{Adam, AdamKernel};
use super::bank::{Bank, Batch, EpochPlan, Prediction, StaticBatch};
use super::ema::Ema;
use super::state::{self, Position};
use super::step_graph::{self, CudaGraph, StepPath, StepPlanner};
use crate::data::windows::Sequence;
use crate::model::checkpoint::{load_weights, Checkpoint};
use crate::model::lgss::{class_weight_tensor, weighted_loss};
use crate::model::{Config, Lgss};
use crate::phases::Phases;
use crate::progress::Progress;
use crate::rng::Rng;

/// Stream ids for [`Rng::derive`].
const EPOCH_STREAM: u64 = 0x0065_706f_6368;
const DROPOUT_STREAM: u64 = 0x6472_6f70;

/// How often the progress line reads the running loss back from the
/// device (the only host synchronisation inside an epoch).
const STATUS_EVERY: Duration = Duration::from_millis(500);

pub(super) struct Learner {
    pub model: Lgss,
    adam: Adam,
    ema: Option<Ema>,
    pub pos: Position,
    /// The epoch's running loss sum (`pos.loss_sum`'s live value), an f64
    /// scalar on the training device: each step adds to it there, in the
    /// same order and precision the host would, so reading it back only at
    /// the progress line's pace and at the epoch's end gives the same bits
    /// without a host synchronisation per step.
    loss_total: Tensor,
    /// `train.class_weights` on the training device, made once.
    class_weights: Tensor,
    /// Which steps replay a CUDA graph, and the graph with the static batch
    /// it reads once captured.
    planner: StepPlanner,
    graph: Option<(CudaGraph, StaticBatch)>,
    config: Config,
    seed: u64,
    /// With `train --profile`: time per phase of a step (and of the run
    /// around it), the device synchronised at each phase's end.
    pub profile: Option<Phases>,
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
    /// With `cuda_graph` on a CUDA device, full batches replay a captured
    /// step ([`step_graph`]); this thread's CUDA work then moves to a
    /// stream of its own.
    pub fn new(
        config: &Config,
        device: Device,
        seed: u64,
        resume: Option<&Checkpoint>,
        cuda_graph: bool,
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
        let mut adam = Adam::new(model.parameters(), t.lr, t.weight_decay);
        adam.decoupled = t.decoupled_weight_decay;
        model.lstm_input_dropout = t.lstm_input_dropout;
        let mut ema = t.ema_decay.map(|d| Ema::new(model.parameters(), d));
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
        let loss_total = Tensor::from(pos.loss_sum).to_device(device);
        // The captured update must take its bias corrections from the
        // device: only the fused kernel does.
        let graphs = cuda_graph && device.is_cuda() && adam.kernel == AdamKernel::Fused;
        let planner = StepPlanner::new(graphs, t.batch_size, t.lstm_input_dropout);
        if let (true, Device::Cuda(i)) = (planner.enabled(), device) {
            step_graph::use_side_stream(i)?;
        }
        Ok(Learner {
            model,
            adam,
            ema,
            pos,
            loss_total,
            class_weights: class_weight_tensor(t.class_weights, device),
            planner,
            graph: None,
            config: config.clone(),
            seed,
            profile: None,
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
        let first = self.pos.batch;
        let mut clock = StepClock::start(self.profile.is_some(), self.model.device());
        let plan = bank.plan(&batches[first.min(batches.len())..]);
        clock.lap(&mut self.profile, "epoch plan (one upload)");
        let mut windows = 0usize;
        let mut finished = true;
        let mut last_status = Instant::now();
        while self.pos.batch < batches.len() {
            windows += self.step(bank, &plan, self.pos.batch - first)?;
            let last = self.pos.batch == batches.len();
            if last || last_status.elapsed() >= STATUS_EVERY {
                let mut clock = StepClock::start(self.profile.is_some(), self.model.device());
                self.read_loss();
                clock.lap(&mut self.profile, "loss read (host sync)");
                progress.status(&format!(
                    "epoch {} loss {:.4} {:.0} win/s",
                    self.pos.epoch + 1,
                    self.pos.loss_sum / self.pos.loss_batches as f64,
                    windows as f64 / t0.elapsed().as_secs_f64()
                ));
                last_status = Instant::now();
            }
            progress.advance(1);
            if stop.load(Ordering::SeqCst) && !last {
                finished = false;
                break;
            }
        }
        // `pos` is whole again: a checkpoint (stopped mid-epoch) or the log may follow.
        self.read_loss();
        progress.finish();
        Ok(EpochRun {
            windows,
            seconds: t0.elapsed().as_secs_f64(),
            finished,
        })
    }

    /// One optimizer step on the `i`-th batch of `plan`, eagerly or through
    /// a CUDA graph ([`StepPlanner`]); returns its windows. Nothing in it
    /// waits for the device.
    fn step(&mut self, bank: &Bank, plan: &EpochPlan, i: usize) -> anyhow::Result<usize> {
        let lr = self.adam.lr;
        let path = self.planner.path(plan.sequences(i), lr);
        let mut clock = StepClock::start(self.profile.is_some(), self.model.device());
        let last_phase = match path {
            StepPath::Eager | StepPath::Warmup => {
                let b = bank.planned_batch(plan, i)?;
                clock.lap(&mut self.profile, "batch assembly");
                self.update(&b, Some(&mut clock))?;
                "optimizer"
            }
            StepPath::Capture => {
                // The previous graph (another learning rate) goes first, and
                // its memory with it.
                self.graph = None;
                let buffers = plan.batch_buffers(i);
                // Profiling waits for the device, which a capture forbids.
                let profile = self.profile.take();
                let captured =
                    CudaGraph::capture(|| self.update(&bank.static_batch(&buffers, plan.windows(i)), None));
                self.profile = profile;
                let (graph, ()) = captured?;
                // The capture's zero_grad and backward work on the grads the
                // warm-up made: with grad mode off, autograd adds a dense
                // gradient into an existing one in place, so their addresses
                // stay those the graph replays into. Capturing ran nothing:
                // this step's batch is in `buffers`.
                graph.replay()?;
                self.graph = Some((graph, buffers));
                "graph capture and replay"
            }
            StepPath::Replay => {
                let (graph, buffers) = self
                    .graph
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("bug: a replay before any capture"))?;
                plan.copy_batch(i, buffers);
                graph.replay()?;
                self.adam.count_replayed_step();
                "graph replay"
            }
        };
        self.planner.ran(path, lr);
        if let Some(ema) = &mut self.ema {
            ema.update(self.adam.step);
        }
        clock.lap(&mut self.profile, last_phase);
        self.pos.loss_batches += 1;
        self.pos.batch += 1;
        Ok(plan.windows(i))
    }

    /// Forward, loss, backward and the optimizer's update on `b`, and the
    /// loss added to the running total: the work a CUDA graph captures
    /// (so no host value may enter it but the hyper-parameters).
    fn update(&mut self, b: &Batch, mut clock: Option<&mut StepClock>) -> anyhow::Result<()> {
        let mut lap = |profile: &mut Option<Phases>, phase| {
            if let Some(c) = clock.as_deref_mut() {
                c.lap(profile, phase);
            }
        };
        // Each step's masks from its own seed: a resumed run draws the same.
        self.model.dropout_seed = Rng::derive(self.seed ^ DROPOUT_STREAM, self.adam.step as u64).next_u64();
        let out = self.model.forward_inputs(&b.inputs());
        let l = weighted_loss(&out.logits, &b.target, &self.class_weights);
        lap(&mut self.profile, "forward");
        self.adam.zero_grad();
        l.backward();
        lap(&mut self.profile, "backward");
        self.adam.step()?;
        let _ = self.loss_total.g_add_(&l.detach().to_kind(Kind::Double));
        Ok(())
    }

    /// Brings `pos.loss_sum` up to date from the device.
    fn read_loss(&mut self) {
        self.pos.loss_sum = self.loss_total.double_value(&[]);
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
        let _ = self.loss_total.zero_();
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

/// Charges the time since the last lap to a phase of `profile`, when
/// profiling. On CUDA it first waits for the device, so that work queued
/// asynchronously counts in the phase that queued it (profiling only: a
/// run without `--profile` never waits).
struct StepClock {
    on: bool,
    cuda: Option<usize>,
    t: Instant,
}

impl StepClock {
    fn start(on: bool, device: Device) -> StepClock {
        let cuda = match device {
            Device::Cuda(i) if on => Some(i),
            _ => None,
        };
        let clock = StepClock {
            on,
            cuda,
            t: Instant::now(),
        };
        clock.barrier();
        StepClock {
            t: Instant::now(),
            ..clock
        }
    }

    fn barrier(&self) {
        if let Some(i) = self.cuda {
            tch::Cuda::synchronize(i as i64);
        }
    }

    fn lap(&mut self, profile: &mut Option<Phases>, phase: &'static str) {
        if !self.on {
            return;
        }
        self.barrier();
        let now = Instant::now();
        if let Some(p) = profile {
            p.add(phase, now - self.t);
        }
        self.t = now;
    }
}

fn lr_at(config: &Config, epoch: usize) -> f64 {
    let t = &config.train;
    let drops = t.milestones.iter().filter(|&&m| m <= epoch).count();
    t.lr * t.gamma.powi(drops as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{write_dataset, SynthSpec};
    use crate::model::lgss::{gather_windows_on, loss};
    use crate::progress::Silent;

    /// The epoch as it ran before the loop stopped waiting for the device:
    /// each batch's rows and targets uploaded at its step, the loss read
    /// back after every step. The sync-free loop must give the same bits.
    fn epoch_synced_every_step(l: &mut Learner, bank: &Bank, train: &[Sequence]) {
        l.adam.lr = l.lr();
        let mut order = train.to_vec();
        Rng::derive(l.seed ^ EPOCH_STREAM, l.pos.epoch as u64).shuffle(&mut order);
        for batch in order.chunks(l.config.train.batch_size) {
            let b = bank.batch(batch).unwrap();
            l.model.dropout_seed = Rng::derive(l.seed ^ DROPOUT_STREAM, l.adam.step as u64).next_u64();
            let out = l.model.forward_inputs(&b.inputs());
            let loss = loss(&out.logits, &b.target, l.config.train.class_weights);
            l.adam.zero_grad();
            loss.backward();
            l.adam.step().unwrap();
            if let Some(ema) = &mut l.ema {
                ema.update(l.adam.step);
            }
            l.pos.loss_sum += loss.double_value(&[]);
            l.pos.loss_batches += 1;
            l.pos.batch += 1;
        }
    }

    /// A small synthetic bank (its folder, removed by the caller) and the
    /// small config with batches of 3.
    fn small_bank(tag: &str) -> (std::path::PathBuf, Config, Bank) {
        let dir = std::env::temp_dir().join(format!("lgss-unit-{tag}-{}", std::process::id()));
        let spec = SynthSpec {
            min_shots: 40,
            max_shots: 90,
            ..SynthSpec::small()
        };
        write_dataset(&dir, 9, 4, &spec, &|| {}).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut config = Config::load(&root.join("models/lgss-small.toml")).unwrap();
        config.train.batch_size = 3;
        let files = crate::data::dataset::movie_files(&dir).unwrap();
        let bank = Bank::load(&files, &config.model, Device::Cpu, &|| {}).unwrap();
        (dir, config, bank)
    }

    #[test]
    fn the_sync_free_epoch_is_bit_identical_to_a_step_synced_one() {
        let (dir, mut config, bank) = small_bank("syncfree");
        // Every part of a step that could read back or depend on order.
        config.train.ema_decay = Some(0.9);
        config.train.lstm_input_dropout = 0.2;
        let train = bank.sequences_of(&(0..bank.movies.len()).collect::<Vec<_>>());
        let mut synced = Learner::new(&config, Device::Cpu, 5, None, true).unwrap();
        let mut free = Learner::new(&config, Device::Cpu, 5, None, true).unwrap();
        for _ in 0..2 {
            epoch_synced_every_step(&mut synced, &bank, &train);
            let run = free
                .train_epoch(&bank, &train, &AtomicBool::new(false), &Silent)
                .unwrap();
            assert!(run.finished);
            assert_eq!(free.pos.loss_sum.to_bits(), synced.pos.loss_sum.to_bits());
            assert_eq!(free.pos.loss_batches, synced.pos.loss_batches);
            for ((name, a), (_, b)) in free
                .model
                .named_variables()
                .iter()
                .zip(synced.model.named_variables())
            {
                assert!(a.equal(&b), "{name} differs");
            }
            free.end_epoch(0.5);
            synced.end_epoch(0.5);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A replayed graph reads its batch from static buffers that each step
    /// copies into: every full batch of an epoch must arrive there exactly
    /// as the eager step gathers it.
    #[test]
    fn batches_copied_into_the_static_buffers_equal_the_planned_ones() {
        let (dir, config, bank) = small_bank("static");
        let seqs = bank.sequences_of(&(0..bank.movies.len()).collect::<Vec<_>>());
        let batches: Vec<&[Sequence]> = seqs.chunks(config.train.batch_size).collect();
        let full = batches.len() - usize::from(seqs.len() % config.train.batch_size != 0);
        assert!(full >= 3, "need several full batches, have {full}");
        let plan = bank.plan(&batches[..full]);
        let mut buffers = plan.batch_buffers(full - 1);
        for i in 0..full {
            plan.copy_batch(i, &mut buffers);
            let copied = bank.static_batch(&buffers, plan.windows(i));
            let planned = bank.planned_batch(&plan, i).unwrap();
            assert!(copied.target.equal(&planned.target), "batch {i}: targets");
            let (s, k) = (config.model.seq_len, config.model.shot_num);
            for (a, b) in copied.shots.iter().zip(&planned.shots) {
                let a = gather_windows_on(a, &copied.rows, s, k);
                assert!(
                    a.equal(&gather_windows_on(b, &planned.rows, s, k)),
                    "batch {i}: inputs"
                );
            }
            assert_eq!(copied.windows, planned.windows);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
