//! The runtime thread: one model, fed by a bounded queue of movies. Each run
//! takes up to `batch` sequences from the queued movies, oldest first, so
//! that concurrent requests share runs (where a GPU's throughput comes from)
//! and one long movie does not hold a short one behind all of its windows.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::data::movie::Movie;
use crate::data::windows::{batch_rows, sequences, Sequence};
use crate::runtime::{Backend, RunInput};
use crate::segment::{model_features, place_probabilities};

/// A movie's boundary probabilities, or why the runtime could not give them.
pub type Reply = Result<Vec<f64>, String>;

/// One movie to run; its probabilities go back through `reply`. A request
/// that stops waiting (timed out, client gone) drops the receiver, and its
/// remaining windows are not run.
pub struct Job {
    pub movie: Arc<Movie>,
    pub reply: oneshot::Sender<Reply>,
}

/// The queue's sending side (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// The queue held `capacity` movies already.
#[derive(Debug)]
pub struct QueueFull;

impl Queue {
    /// Queues a movie, or refuses at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        // Counted before the send, so the runtime thread never sees the
        // depth go below zero.
        self.metrics.queue_depth.inc();
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                Err(QueueFull)
            }
        }
    }
}

/// How the runtime thread batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Sequences per run at most.
    pub batch: usize,
    /// How long a run that is not full waits for more movies.
    pub max_wait: Duration,
    /// Movies queued (not yet taken by the runtime thread) at most.
    pub capacity: usize,
    /// Whether a run may hold several movies' sequences (off: each run
    /// holds one movie's, the way `segment` runs; for comparison).
    pub across_requests: bool,
}

/// Starts the runtime thread; it ends when every [`Queue`] is dropped and
/// the movies it holds are done.
pub fn start(
    backend: Box<dyn Backend>,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(policy.capacity.max(1));
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("lgss-runtime".into())
        .spawn(move || run(backend, policy, &rx, &m))?;
    Ok((Queue { tx, metrics }, handle))
}

/// A movie the runtime thread has taken: its sequences, how many are done,
/// the probabilities so far, or why it failed.
struct Active {
    job: Job,
    seqs: Vec<Sequence>,
    next: usize,
    out: Vec<f64>,
    failed: Option<String>,
}

impl Active {
    fn new(job: Job, seq_len: usize) -> Active {
        let n = job.movie.n_shots();
        Active {
            seqs: sequences(0, n, seq_len),
            next: 0,
            out: vec![f64::NAN; n.saturating_sub(1)],
            failed: None,
            job,
        }
    }

    fn pending(&self) -> usize {
        self.seqs.len() - self.next
    }
}

fn run(mut backend: Box<dyn Backend>, policy: BatchPolicy, rx: &Receiver<Job>, metrics: &Metrics) {
    let config = backend.config().clone();
    let batch = policy.batch.max(1);
    let mut active: VecDeque<Active> = VecDeque::new();
    let take = |active: &mut VecDeque<Active>, job: Job| {
        metrics.queue_depth.dec();
        active.push_back(Active::new(job, config.seq_len));
    };
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(job) => take(&mut active, job),
                Err(_) => return,
            }
        }
        // Movies are taken only while a run would not be full, so the ones
        // waiting stay in the bounded queue (and a full queue answers 503);
        // a run that is not full waits briefly for other requests' movies.
        let deadline = Instant::now() + policy.max_wait;
        while active.iter().map(Active::pending).sum::<usize>() < batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => take(&mut active, job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Nobody waits for these any more: their windows are not run.
        active.retain(|a| !a.job.reply.is_closed());
        if active.is_empty() {
            continue;
        }
        run_once(
            backend.as_mut(),
            &config,
            batch,
            policy.across_requests,
            &mut active,
            metrics,
        );
        // Finished and failed movies answer; the rest stay in order. A
        // receiver may be gone by now; nothing to do then.
        let mut still = VecDeque::with_capacity(active.len());
        for a in active.drain(..) {
            if let Some(msg) = a.failed {
                let _ = a.job.reply.send(Err(msg));
            } else if a.pending() == 0 {
                let _ = a.job.reply.send(Ok(a.out));
            } else {
                still.push_back(a);
            }
        }
        active = still;
    }
}

/// One run over up to `batch` sequences from the front of `active`. A
/// failed run marks the movies it held as failed.
fn run_once(
    backend: &mut dyn Backend,
    config: &crate::model::config::ModelConfig,
    batch: usize,
    across_requests: bool,
    active: &mut VecDeque<Active>,
    metrics: &Metrics,
) {
    // (index in active, sequences taken)
    let mut parts: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut room = batch;
    for (i, a) in active.iter().enumerate() {
        if room == 0 {
            break;
        }
        let k = a.pending().min(room);
        if k > 0 {
            parts.push((i, a.next..a.next + k));
            room -= k;
            if !across_requests {
                break;
            }
        }
    }
    let result = (|| -> anyhow::Result<Vec<f32>> {
        let mut feats = Vec::with_capacity(parts.len());
        let mut rows = Vec::with_capacity(parts.len());
        for (i, r) in &parts {
            let a = &active[*i];
            feats.push(model_features(config, &a.job.movie)?);
            let n = a.job.movie.n_shots();
            rows.push(batch_rows(
                &a.seqs[r.clone()],
                &[0],
                &[n],
                config.seq_len,
                config.shot_num,
            ));
        }
        // The parts' windows (and a per-shot modality's shots) one after another.
        let views: Vec<Vec<ndarray::ArrayView2<f32>>> = feats
            .iter()
            .map(|f| f.iter().map(|x| x.view()).collect())
            .collect();
        let parts: Vec<(&[ndarray::ArrayView2<f32>], &[i64])> = views
            .iter()
            .zip(&rows)
            .map(|(f, r)| (f.as_slice(), r.as_slice()))
            .collect();
        backend.run_input(&RunInput::gather(config, &parts))
    })();
    let sequences_run = batch - room;
    metrics.batch_sequences.observe(sequences_run as f64);
    match result {
        Ok(prob) => {
            metrics.windows.inc_by((sequences_run * config.seq_len) as u64);
            let mut offset = 0;
            for (i, r) in parts {
                let a = &mut active[i];
                let n = r.len() * config.seq_len;
                let placed = prob
                    .get(offset..offset + n)
                    .ok_or_else(|| {
                        anyhow::anyhow!("{}: runtime returned {} values", backend.name(), prob.len())
                    })
                    .and_then(|p| {
                        place_probabilities(&a.seqs[r.clone()], p, config.seq_len, backend.name(), &mut a.out)
                    });
                offset += n;
                match placed {
                    Ok(()) => a.next = r.end,
                    Err(e) => a.failed = Some(format!("{e:#}")),
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            for (i, _) in parts {
                active[i].failed = Some(msg.clone());
            }
        }
    }
}
