//! A training step captured once as a CUDA graph and replayed: forward,
//! loss, backward and the fused Adam update become one launch instead of
//! several hundred small kernels, each of which costs more to launch than
//! to run at batch 8.
//!
//! A graph replays fixed kernels on fixed memory, so only steps that
//! launch the same kernels on the same shapes with no value from the host
//! can take it: full batches (a short last batch runs eagerly) of a recipe
//! without LSTM-input dropout (its masks are drawn on the host, per step),
//! at one learning rate (it is a kernel argument: a milestone recaptures).
//! The batch enters through static device buffers that each step's rows
//! and targets are copied into, on the device. The weight average is
//! updated eagerly after each step: its decay changes every step.

use anyhow::bail;

/// Eager steps on the capture's stream before the first capture: libtorch
/// makes cuBLAS handles and workspaces, cuDNN plans and RNN state lazily,
/// and a capture must find them made.
pub const WARMUP_STEPS: usize = 3;

/// How one training step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPath {
    /// Kernels launched one by one; no graph involved.
    Eager,
    /// Eager, counted towards the warm-up before a capture.
    Warmup,
    /// This step's kernels are captured into a new graph, which is then
    /// replayed for it (capturing runs nothing).
    Capture,
    /// The captured graph is replayed on this step's batch.
    Replay,
}

/// Which path each step takes; pure bookkeeping, so the choice is the same
/// (and testable) without a GPU.
#[derive(Debug, Clone)]
pub struct StepPlanner {
    /// CUDA graphs are on: a CUDA device, the `cuda` feature, and not
    /// `train --no-cuda-graph`.
    enabled: bool,
    /// Sequences in a full batch (`train.batch_size`).
    full_batch: usize,
    /// `train.lstm_input_dropout`.
    dropout: f64,
    warmed: usize,
    /// The learning rate (bits) the current graph was captured with.
    captured_lr: Option<u64>,
}

impl StepPlanner {
    pub fn new(enabled: bool, full_batch: usize, dropout: f64) -> StepPlanner {
        StepPlanner {
            enabled,
            full_batch,
            dropout,
            warmed: 0,
            captured_lr: None,
        }
    }

    /// Whether steps will use graphs at all (`false`: every step is eager).
    pub fn enabled(&self) -> bool {
        self.enabled && self.dropout == 0.0
    }

    /// The path of a step on a batch of `sequences` at learning rate `lr`.
    pub fn path(&self, sequences: usize, lr: f64) -> StepPath {
        if !self.enabled() || sequences != self.full_batch {
            StepPath::Eager
        } else if self.captured_lr == Some(lr.to_bits()) {
            StepPath::Replay
        } else if self.warmed < WARMUP_STEPS {
            StepPath::Warmup
        } else {
            StepPath::Capture
        }
    }

    /// Records that a step ran on `path` at `lr`.
    pub fn ran(&mut self, path: StepPath, lr: f64) {
        match path {
            StepPath::Warmup => self.warmed += 1,
            StepPath::Capture => self.captured_lr = Some(lr.to_bits()),
            StepPath::Eager | StepPath::Replay => {}
        }
    }
}

#[cfg(feature = "cuda")]
mod ffi {
    use std::os::raw::{c_char, c_int, c_void};

    // src/native/cuda_graph.cpp
    extern "C" {
        pub fn lgss_cuda_use_side_stream(device: c_int, err: *mut c_char, err_len: usize) -> c_int;
        pub fn lgss_cuda_graph_new(err: *mut c_char, err_len: usize) -> *mut c_void;
        pub fn lgss_cuda_graph_capture_begin(g: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
        pub fn lgss_cuda_graph_capture_end(g: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
        pub fn lgss_cuda_graph_replay(g: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
        pub fn lgss_cuda_graph_free(g: *mut c_void);
    }
}

/// Calls a shim function that reports failure as -1 and a message.
#[cfg(feature = "cuda")]
fn checked(what: &str, call: impl FnOnce(*mut std::os::raw::c_char, usize) -> i32) -> anyhow::Result<()> {
    let mut err = [0u8; 512];
    if call(err.as_mut_ptr().cast(), err.len()) != 0 {
        let msg = std::ffi::CStr::from_bytes_until_nul(&err).map_or("?".into(), |m| m.to_string_lossy());
        bail!("{what}: {msg}");
    }
    Ok(())
}

/// Moves this thread's libtorch work on CUDA device `index` to a stream of
/// its own (a capture cannot run on the default stream; warm-up, capture
/// and replay share it). Everything after it runs in order on that stream.
pub fn use_side_stream(index: usize) -> anyhow::Result<()> {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: the shim catches every C++ exception and NUL-terminates `err`.
        checked("cannot make a CUDA stream for graph capture", |e, n| unsafe {
            ffi::lgss_cuda_use_side_stream(index as i32, e, n)
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        bail!("CUDA graphs on device {index}: this binary was built without the `cuda` feature")
    }
}

/// One captured CUDA graph (libtorch's `at::cuda::CUDAGraph`), with the
/// memory its kernels use reserved until it is dropped.
pub struct CudaGraph {
    #[cfg(feature = "cuda")]
    raw: std::ptr::NonNull<std::os::raw::c_void>,
}

impl CudaGraph {
    /// Runs `work` under capture: its kernels are recorded, not run. `work`
    /// must not wait for the device or copy from the host.
    pub fn capture<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(CudaGraph, T)> {
        #[cfg(feature = "cuda")]
        {
            // SAFETY: as in `checked`; null is handled.
            let mut err = [0u8; 512];
            let raw = unsafe { ffi::lgss_cuda_graph_new(err.as_mut_ptr().cast(), err.len()) };
            let Some(raw) = std::ptr::NonNull::new(raw) else {
                let msg =
                    std::ffi::CStr::from_bytes_until_nul(&err).map_or("?".into(), |m| m.to_string_lossy());
                bail!("cannot make a CUDA graph: {msg}");
            };
            let graph = CudaGraph { raw };
            // SAFETY: `raw` is a live graph owned by `graph`.
            checked("CUDA graph capture could not begin", |e, n| unsafe {
                ffi::lgss_cuda_graph_capture_begin(graph.raw.as_ptr(), e, n)
            })?;
            let out = work();
            // SAFETY: as above; ending also after a failed `work` leaves the
            // stream out of capture mode.
            let ended = checked("CUDA graph capture failed", |e, n| unsafe {
                ffi::lgss_cuda_graph_capture_end(graph.raw.as_ptr(), e, n)
            });
            let out = out?;
            ended?;
            Ok((graph, out))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = work;
            bail!("CUDA graphs: this binary was built without the `cuda` feature")
        }
    }

    /// Launches the captured kernels on the current stream.
    pub fn replay(&self) -> anyhow::Result<()> {
        #[cfg(feature = "cuda")]
        {
            // SAFETY: `raw` is a live, captured graph.
            checked("CUDA graph replay failed", |e, n| unsafe {
                ffi::lgss_cuda_graph_replay(self.raw.as_ptr(), e, n)
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            bail!("CUDA graphs: this binary was built without the `cuda` feature")
        }
    }
}

#[cfg(feature = "cuda")]
impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from lgss_cuda_graph_new and is freed once.
        unsafe { ffi::lgss_cuda_graph_free(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps of epochs of 5 batches of 4 sequences and a last one of 2.
    fn epoch_paths(p: &mut StepPlanner, lr: f64) -> Vec<StepPath> {
        [4, 4, 4, 4, 4, 2]
            .into_iter()
            .map(|sequences| {
                let path = p.path(sequences, lr);
                p.ran(path, lr);
                path
            })
            .collect()
    }

    #[test]
    fn full_batches_replay_a_graph_after_warm_up_and_short_ones_run_eagerly() {
        use StepPath::*;
        let mut p = StepPlanner::new(true, 4, 0.0);
        assert!(p.enabled());
        assert_eq!(
            epoch_paths(&mut p, 1e-3),
            [Warmup, Warmup, Warmup, Capture, Replay, Eager]
        );
        assert_eq!(
            epoch_paths(&mut p, 1e-3),
            [Replay, Replay, Replay, Replay, Replay, Eager]
        );
        // A milestone changes the rate: one new capture, no new warm-up.
        assert_eq!(
            epoch_paths(&mut p, 1e-4),
            [Capture, Replay, Replay, Replay, Replay, Eager]
        );
        // A short batch before the warm-up is done neither counts nor captures.
        let mut p = StepPlanner::new(true, 4, 0.0);
        let paths: Vec<StepPath> = [2, 4, 3, 4, 4, 4, 4]
            .into_iter()
            .map(|s| {
                let path = p.path(s, 0.1);
                p.ran(path, 0.1);
                path
            })
            .collect();
        assert_eq!(paths, [Eager, Warmup, Eager, Warmup, Warmup, Capture, Replay]);
    }

    #[test]
    fn every_step_is_eager_without_graphs_or_with_host_drawn_dropout() {
        for mut p in [StepPlanner::new(false, 4, 0.0), StepPlanner::new(true, 4, 0.1)] {
            assert!(!p.enabled());
            for lr in [1e-3, 1e-3, 1e-4] {
                assert!(epoch_paths(&mut p, lr)
                    .iter()
                    .all(|&path| path == StepPath::Eager));
            }
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_graphs_are_refused_with_a_reason() {
        let err = CudaGraph::capture(|| Ok(()))
            .err()
            .expect("no CUDA graphs in this build");
        assert!(err.to_string().contains("`cuda` feature"), "{err}");
        assert!(use_side_stream(0).is_err());
    }
}
