//! The training data: every movie's shot features stacked, one
//! `[total_shots, D]` table per modality; batches are gathered from it by
//! row index. In memory (a tensor per modality on the training device,
//! loaded once), or read from a feature store on disk batch by batch
//! ([`crate::data::store`]), a reader thread some batches ahead of the
//! step: the same rows gathered the same way, so training gives the same
//! bits either way.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use tch::{Device, Tensor};

use crate::data::movie::{Movie, Schema};
use crate::data::store::FeatureStore;
use crate::data::windows::{batch_rows, distinct_rows, sequences, Sequence};
use crate::model::config::ModelConfig;
use crate::model::lgss::{loss, BranchInput};
use crate::model::Lgss;

/// What is kept of a movie besides its features.
#[derive(Debug, Clone)]
pub struct MovieInfo {
    pub file: PathBuf,
    pub imdb_id: String,
    pub n_shots: usize,
    pub ground_truth: Vec<bool>,
    pub shot_end_frame: Vec<i64>,
    pub provided_prediction: Option<Vec<f64>>,
    /// Which boundaries are trained and scored on (`None`: all).
    pub scored: Option<Vec<bool>>,
}

impl MovieInfo {
    /// Whether boundary `b` is trained and scored on.
    pub fn is_scored(&self, b: usize) -> bool {
        self.scored.as_ref().is_none_or(|s| s[b])
    }
}

pub struct Bank {
    features: Features,
    device: Device,
    /// First row of each movie.
    pub offsets: Vec<usize>,
    pub movies: Vec<MovieInfo>,
    pub seq_len: usize,
    pub shot_num: usize,
}

/// Where a bank's feature rows are.
enum Features {
    /// One `[total_shots, D]` tensor per configured modality, on the
    /// training device.
    Resident(Vec<Tensor>),
    /// In a store on disk, read a batch at a time, at most `read_ahead`
    /// batches ahead of the one in use.
    Streamed {
        store: Arc<FeatureStore>,
        read_ahead: usize,
    },
}

/// Sequences in a batch of [`Bank::predict`] (validation and test).
pub const PREDICT_BATCH: usize = 64;

/// Batches' window rows and targets on the training device ([`Bank::plan`]).
pub struct EpochPlan {
    /// Every batch's [`batch_rows`], concatenated.
    rows: Tensor,
    /// Every batch's targets (-100 on padding), concatenated.
    target: Tensor,
    spans: Vec<BatchSpan>,
    /// A streamed bank's reader of the plan's batches, in order.
    reader: Option<Mutex<Reader>>,
}

/// The thread reading a plan's batches from the store, and what it sent.
struct Reader {
    /// Declared before `thread`: dropped first, so a reader blocked on a
    /// full channel stops.
    batches: Option<Receiver<anyhow::Result<ReadBatch>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The batch the next message holds.
    next: usize,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.batches = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One batch's distinct rows as read from the store, and its window rows
/// renumbered into them.
struct ReadBatch {
    /// Per modality, `[distinct, D]`.
    shots: Vec<Vec<f32>>,
    distinct: usize,
    rows: Vec<i64>,
}

/// How many batches a streamed bank reads ahead of the step while holding
/// at most `max_memory` bytes of read rows: as many as fit, up to 4. A
/// batch of the larger of `batch_size` and [`PREDICT_BATCH`] sequences
/// reads at most `sequences · (seq_len + shot_num − 1)` shots; two must
/// fit (the one in use and the one being read), else an error naming
/// `--max-memory`.
pub fn read_ahead(config: &ModelConfig, batch_size: usize, max_memory: u64) -> anyhow::Result<usize> {
    let width: usize = config
        .modalities
        .iter()
        .map(|&m| config.feature_dims.get(m))
        .sum();
    let sequences = batch_size.max(PREDICT_BATCH);
    let per_batch = (sequences * (config.seq_len + config.shot_num - 1) * width * 4) as u64;
    let fits = max_memory / per_batch.max(1);
    if fits < 2 {
        bail!(
            "--max-memory {}: a batch of {sequences} sequences reads up to {} of features, and two must fit",
            bytesize::ByteSize(max_memory).display().iec(),
            bytesize::ByteSize(per_batch).display().iec()
        );
    }
    Ok((fits as usize - 2).min(4))
}

impl EpochPlan {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Sequences in the `i`-th batch.
    pub fn sequences(&self, i: usize) -> usize {
        self.spans[i].sequences as usize
    }

    /// Real (unpadded) boundaries in the `i`-th batch.
    pub fn windows(&self, i: usize) -> usize {
        self.spans[i].windows
    }

    /// Copies the `i`-th batch's rows and targets into `into` (a batch of
    /// the same size) on the device, for a step captured in a CUDA graph.
    pub fn copy_batch(&self, i: usize, into: &mut StaticBatch) {
        let span = &self.spans[i];
        into.rows.copy_(&self.rows.narrow(0, span.rows.0, span.rows.1));
        into.target
            .copy_(&self.target.narrow(0, span.target.0, span.target.1));
    }

    /// Device buffers the size of the `i`-th batch, holding it.
    pub fn batch_buffers(&self, i: usize) -> StaticBatch {
        let span = &self.spans[i];
        StaticBatch {
            rows: self.rows.narrow(0, span.rows.0, span.rows.1).copy(),
            target: self.target.narrow(0, span.target.0, span.target.1).copy(),
        }
    }
}

/// A batch's rows and targets in device buffers of their own, which a step
/// captured in a CUDA graph reads: each replay's batch is copied in first
/// ([`EpochPlan::copy_batch`]).
pub struct StaticBatch {
    rows: Tensor,
    target: Tensor,
}

/// Where one batch lies in an [`EpochPlan`]: (offset, length) of its rows
/// and targets.
struct BatchSpan {
    rows: (i64, i64),
    target: (i64, i64),
    sequences: i64,
    windows: usize,
}

/// A batch: its shots and the row of each window position.
pub struct Batch {
    /// Per modality, the batch's distinct shots `[n, D]` (a captured
    /// step's: the whole bank's).
    pub shots: Vec<Tensor>,
    /// Each window position's row of `shots`, `[batch · seq_len ·
    /// shot_num]`, the same for every modality.
    pub rows: Tensor,
    /// `[batch * seq_len]`, -100 on padding.
    pub target: Tensor,
    /// Real (unpadded) boundaries in the batch.
    pub windows: usize,
}

impl Batch {
    /// The model's inputs: the model gathers the windows (and, in
    /// evaluation, embeds an STFT branch's shots once; see
    /// [`crate::model::lgss::BranchInput`]).
    pub fn inputs(&self) -> Vec<BranchInput<'_>> {
        self.shots
            .iter()
            .map(|shots| BranchInput::Shots {
                shots,
                rows: &self.rows,
            })
            .collect()
    }
}

impl Bank {
    /// Loads movies (validated against the config's modalities and widths).
    pub fn load(
        files: &[PathBuf],
        config: &ModelConfig,
        device: Device,
        progress: &dyn Fn(),
    ) -> anyhow::Result<Bank> {
        let schema = Schema {
            require_ground_truth: true,
            ..crate::segment::schema_for(config)
        };
        let mut movies = Vec::with_capacity(files.len());
        let mut per_modality: Vec<Vec<f32>> = vec![Vec::new(); config.modalities.len()];
        let mut offsets = Vec::with_capacity(files.len());
        let mut total = 0usize;
        for f in files {
            let m = Movie::load(f, &schema)?;
            offsets.push(total);
            total += m.n_shots();
            for (i, &md) in config.modalities.iter().enumerate() {
                let feats = m.features(md).context("validated modality missing")?;
                per_modality[i].extend(feats.iter());
            }
            movies.push(MovieInfo {
                file: f.clone(),
                imdb_id: m.imdb_id.clone(),
                n_shots: m.n_shots(),
                ground_truth: m.ground_truth.clone().context("validated ground truth missing")?,
                shot_end_frame: m.shot_end_frame.clone(),
                provided_prediction: m.prediction.clone(),
                scored: m.scored.clone(),
            });
            progress();
        }
        let mut ids = std::collections::HashSet::new();
        for m in &movies {
            if !ids.insert(m.imdb_id.as_str()) {
                bail!("{}: imdb_id {} appears in two files", m.file.display(), m.imdb_id);
            }
        }
        let features = config
            .modalities
            .iter()
            .zip(per_modality)
            .map(|(&md, data)| {
                let d = config.feature_dims.get(md) as i64;
                Tensor::from_slice(&data)
                    .view([total as i64, d])
                    .to_device(device)
            })
            .collect();
        Ok(Bank {
            features: Features::Resident(features),
            device,
            offsets,
            movies,
            seq_len: config.seq_len,
            shot_num: config.shot_num,
        })
    }

    /// A bank that reads `store` (built for `config`'s modalities) batch by
    /// batch, `read_ahead` batches ahead of the step ([`read_ahead`]).
    pub fn streamed(
        store: FeatureStore,
        config: &ModelConfig,
        device: Device,
        read_ahead: usize,
    ) -> anyhow::Result<Bank> {
        let mut movies = Vec::with_capacity(store.movies.len());
        for m in &store.movies {
            movies.push(MovieInfo {
                file: m.file.clone(),
                imdb_id: m.imdb_id.clone(),
                n_shots: m.n_shots,
                ground_truth: m
                    .ground_truth
                    .clone()
                    .with_context(|| format!("{}: no ground truth", m.file.display()))?,
                shot_end_frame: m.shot_end_frame.clone(),
                provided_prediction: m.prediction(),
                scored: m.scored.clone(),
            });
        }
        Ok(Bank {
            offsets: store.offsets.clone(),
            features: Features::Streamed {
                store: Arc::new(store),
                read_ahead,
            },
            device,
            movies,
            seq_len: config.seq_len,
            shot_num: config.shot_num,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether batches are read from a store on disk.
    pub fn is_streamed(&self) -> bool {
        matches!(self.features, Features::Streamed { .. })
    }

    /// All sequences of the given movies, in order.
    pub fn sequences_of(&self, movies: &[usize]) -> Vec<Sequence> {
        movies
            .iter()
            .flat_map(|&m| sequences(m, self.movies[m].n_shots, self.seq_len))
            .collect()
    }

    /// The sequences of `movies` with a boundary to learn from: one whose
    /// boundaries are all left out would make a batch of it alone 0/0.
    pub fn trainable_sequences_of(&self, movies: &[usize]) -> Vec<Sequence> {
        let mut seqs = self.sequences_of(movies);
        seqs.retain(|q| self.has_scored(q));
        seqs
    }

    /// Whether `q` holds a boundary that is trained and scored on.
    pub fn has_scored(&self, q: &Sequence) -> bool {
        let info = &self.movies[q.movie];
        (q.start..q.start + q.valid).any(|b| info.is_scored(b))
    }

    pub fn total_shots(&self) -> usize {
        self.movies.iter().map(|m| m.n_shots).sum()
    }

    /// Gathers model inputs and targets for `batch`.
    pub fn batch(&self, batch: &[Sequence]) -> anyhow::Result<Batch> {
        self.planned_batch(&self.plan(&[batch]), 0)
    }

    /// The window rows and targets of `batches`, built on the host and
    /// uploaded to the training device in one copy each, so that a step
    /// only slices them ([`Bank::planned_batch`]): no host→device copy, and
    /// nothing to wait for, per step.
    pub fn plan(&self, batches: &[&[Sequence]]) -> EpochPlan {
        let n_shots: Vec<usize> = self.movies.iter().map(|m| m.n_shots).collect();
        let sequences: usize = batches.iter().map(|b| b.len()).sum();
        let mut rows = Vec::with_capacity(sequences * self.seq_len * self.shot_num);
        let mut target = Vec::with_capacity(sequences * self.seq_len);
        let mut spans = Vec::with_capacity(batches.len());
        for batch in batches {
            let (row0, target0) = (rows.len() as i64, target.len() as i64);
            rows.extend(batch_rows(
                batch,
                &self.offsets,
                &n_shots,
                self.seq_len,
                self.shot_num,
            ));
            let mut windows = 0;
            for q in *batch {
                let gt = &self.movies[q.movie].ground_truth;
                for t in 0..self.seq_len {
                    if t < q.valid {
                        // A boundary left out is computed but not learned from.
                        let scored = self.movies[q.movie].is_scored(q.start + t);
                        target.push(if scored { gt[q.start + t] as i64 } else { -100 });
                        windows += 1;
                    } else {
                        target.push(-100);
                    }
                }
            }
            spans.push(BatchSpan {
                rows: (row0, rows.len() as i64 - row0),
                target: (target0, target.len() as i64 - target0),
                sequences: batch.len() as i64,
                windows,
            });
        }
        let reader = match &self.features {
            Features::Resident(_) => None,
            Features::Streamed { store, read_ahead } => {
                let per_batch: Vec<Vec<i64>> = spans
                    .iter()
                    .map(|s| rows[s.rows.0 as usize..(s.rows.0 + s.rows.1) as usize].to_vec())
                    .collect();
                Some(Mutex::new(read_batches(store.clone(), per_batch, *read_ahead)))
            }
        };
        EpochPlan {
            rows: Tensor::from_slice(&rows).to_device(self.device()),
            target: Tensor::from_slice(&target).to_device(self.device()),
            spans,
            reader,
        }
    }

    /// The `i`-th batch of `plan` on the device: its distinct shots and
    /// the rows into them. A streamed bank's batches come in order, from
    /// the plan's reader.
    pub fn planned_batch(&self, plan: &EpochPlan, i: usize) -> anyhow::Result<Batch> {
        let span = &plan.spans[i];
        let target = plan.target.narrow(0, span.target.0, span.target.1);
        let Some(reader) = &plan.reader else {
            let Features::Resident(features) = &self.features else {
                bail!("bug: a streamed bank's plan without its reader");
            };
            // The batch's distinct rows, increasing, and the rows into them.
            let (distinct, rows, _) = plan
                .rows
                .narrow(0, span.rows.0, span.rows.1)
                .internal_unique2(true, true, false);
            return Ok(Batch {
                shots: features.iter().map(|f| f.index_select(0, &distinct)).collect(),
                rows,
                target,
                windows: span.windows,
            });
        };
        let mut reader = reader
            .lock()
            .map_err(|_| anyhow::anyhow!("the feature reader panicked"))?;
        anyhow::ensure!(
            reader.next == i,
            "bug: batch {i} asked of a store reader at batch {}",
            reader.next
        );
        let read = reader
            .batches
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .ok_or_else(|| anyhow::anyhow!("the feature reader stopped"))??;
        reader.next += 1;
        let shots = read
            .shots
            .iter()
            .map(|data| {
                let d = (data.len() / read.distinct.max(1)) as i64;
                Tensor::from_slice(data)
                    .view([read.distinct as i64, d])
                    .to_device(self.device)
            })
            .collect();
        Ok(Batch {
            shots,
            rows: Tensor::from_slice(&read.rows).to_device(self.device),
            target,
            windows: span.windows,
        })
    }

    /// The batch held in `batch`'s buffers (whatever was last copied in),
    /// its shots the whole bank's: a captured training step gathers them.
    pub fn static_batch(&self, batch: &StaticBatch, windows: usize) -> Batch {
        let Features::Resident(features) = &self.features else {
            unreachable!("a streamed bank never captures a step");
        };
        Batch {
            shots: features.iter().map(Tensor::shallow_clone).collect(),
            rows: batch.rows.shallow_clone(),
            target: batch.target.shallow_clone(),
            windows,
        }
    }

    /// Boundary probabilities for `seqs`, scattered back per movie
    /// (`out[movie][boundary]`; boundaries not covered stay NaN), and the
    /// mean loss over the sequences, from one forward pass.
    pub fn predict(
        &self,
        model: &Lgss,
        seqs: &[Sequence],
        batch_size: usize,
        class_weights: [f64; 2],
    ) -> anyhow::Result<Prediction> {
        let mut probs: Vec<Vec<f64>> = self
            .movies
            .iter()
            .map(|m| vec![f64::NAN; m.n_shots - 1])
            .collect();
        let (mut loss_sum, mut in_loss) = (0.0, 0usize);
        let chunks: Vec<&[Sequence]> = seqs.chunks(batch_size.max(1)).collect();
        let plan = self.plan(&chunks);
        tch::no_grad(|| -> anyhow::Result<()> {
            for (i, chunk) in chunks.iter().enumerate() {
                let b = self.planned_batch(&plan, i)?;
                let out = model.forward_inputs(&b.inputs());
                // A batch whose boundaries are all left out has no loss.
                if chunk.iter().any(|q| self.has_scored(q)) {
                    loss_sum +=
                        loss(&out.logits, &b.target, class_weights).double_value(&[]) * chunk.len() as f64;
                    in_loss += chunk.len();
                }
                let prob = crate::model::f32_values(&out.prob())?;
                for (i, q) in chunk.iter().enumerate() {
                    for t in 0..q.valid {
                        probs[q.movie][q.start + t] = prob[i * self.seq_len + t] as f64;
                    }
                }
            }
            Ok(())
        })?;
        Ok(Prediction {
            probs,
            loss: loss_sum / in_loss.max(1) as f64,
        })
    }
}

/// What [`Bank::predict`] returns.
pub struct Prediction {
    /// `probs[movie][boundary]`.
    pub probs: Vec<Vec<f64>>,
    /// Mean loss over the sequences.
    pub loss: f64,
}

/// Starts a thread reading `batches` (each a batch's window rows into the
/// store's stacked shots) in order, each as its distinct rows, at most
/// `read_ahead` batches ahead of the one taken.
fn read_batches(store: Arc<FeatureStore>, batches: Vec<Vec<i64>>, read_ahead: usize) -> Reader {
    let (tx, rx) = sync_channel(read_ahead);
    let thread = std::thread::spawn(move || {
        for rows in batches {
            let (distinct, local) = distinct_rows(&rows);
            let read = (0..store.dims().len())
                .map(|m| {
                    let mut out = Vec::with_capacity(distinct.len() * store.dims()[m]);
                    store.read_rows(m, &distinct, &mut out).map(|()| out)
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .map(|shots| ReadBatch {
                    shots,
                    distinct: distinct.len(),
                    rows: local,
                });
            let failed = read.is_err();
            if tx.send(read).is_err() || failed {
                return;
            }
        }
    });
    Reader {
        batches: Some(rx),
        thread: Some(thread),
        next: 0,
    }
}
