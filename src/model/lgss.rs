//! LGSS in libtorch: per modality a boundary net over a window of shots, a
//! BiLSTM over a sequence of windows and two linear layers; the model's
//! logits are the ratio-weighted sum of the modality heads.
//!
//! The boundary net is computed in a form that never holds `[C, D]` per
//! window ([`Formulation::Fast`]); the paper's op-for-op form
//! ([`Formulation::Reference`]: conv2d, max_pool3d, cosine_similarity) is
//! kept to check it against PyTorch. Variable names are PyTorch's
//! state_dict names (`bnet_place.bnet.conv1.weight`, …).

use std::sync::atomic::{AtomicU8, Ordering};

use tch::{nn, Device, Kind, Tensor};

use super::audnet::AudNet;
use super::config::{FeatureNorm, ModelConfig};
use crate::data::movie::Modality;
use crate::rng::Rng;

/// The variables of one modality's branch.
#[derive(Debug)]
struct Branch {
    modality: Modality,
    dim: i64,
    bnet: Bnet,
    /// PyTorch's flat LSTM weights: w_ih, w_hh, b_ih, b_hh (then the reverse direction).
    lstm: Vec<Tensor>,
    fc1_w: Tensor,
    fc1_b: Tensor,
    fc2_w: Tensor,
    fc2_b: Tensor,
    /// On CUDA with cuDNN: the one buffer the LSTM weights above are views
    /// of (cuDNN wants them contiguous, or it copies them at every call and
    /// warns). In-place updates (Adam, checkpoint loads) keep the views.
    _lstm_flat: Option<Tensor>,
}

/// A branch's boundary net: what turns a window of shots into the LSTM's
/// input.
#[derive(Debug)]
enum Bnet {
    /// The paper's: the window conv's max over channels (context, `[n, D]`)
    /// beside the half-window conv's cosine similarity (`[n, C]`).
    Window {
        conv_w: Tensor,
        conv_b: Tensor,
        cos_w: Tensor,
        cos_b: Tensor,
        /// Window-conv channels that can be the maximum (see
        /// [`super::envelope`]), set by [`Lgss::prune_for_inference`].
        active: Option<Tensor>,
    },
    /// SceneSeg's audio (`BNet_aud`): each shot's STFT image through the
    /// audio CNN, then the half-window conv's cosine similarity alone.
    Stft {
        audnet: AudNet,
        cos_w: Tensor,
        cos_b: Tensor,
    },
}

impl Bnet {
    /// Width of the LSTM input it produces for features of width `d`.
    fn output_width(&self, d: i64, c: i64) -> i64 {
        match self {
            Bnet::Window { .. } => d + c,
            Bnet::Stft { .. } => c,
        }
    }
}

/// The windows named by `rows` (their `crate::data::windows::batch_rows`,
/// flattened) gathered from one modality's per-shot features `shots`
/// (`[n_shots, D]`) on the device they live on: `[rows / (seq_len·shot_num),
/// seq_len, shot_num, D]`, exactly `crate::data::windows::gather_windows`'s
/// windows.
pub fn gather_windows_on(shots: &Tensor, rows: &Tensor, seq_len: usize, shot_num: usize) -> Tensor {
    let d = shots.size()[1];
    shots
        .index_select(0, rows)
        .view([-1, seq_len as i64, shot_num as i64, d])
}

/// One modality's input to [`Lgss::forward_inputs`].
#[derive(Debug, Clone, Copy)]
pub enum BranchInput<'a> {
    /// `[batch, seq_len, shot_num, D]`.
    Windows(&'a Tensor),
    /// The run's shots `[n, D]` and, for each window position in the
    /// windows' order, the row of its shot (`[batch · seq_len · shot_num]`,
    /// int64, on the same device). In evaluation an STFT branch embeds
    /// each shot once (`crate::runtime::input`); in training it embeds the
    /// windows' shots, so BatchNorm normalises over every window's shots
    /// as SceneSeg's does.
    Shots { shots: &'a Tensor, rows: &'a Tensor },
}

/// The model's output for a batch.
#[derive(Debug)]
pub struct Output {
    /// `[batch * seq_len, 2]`, the weighted sum.
    pub logits: Tensor,
    /// Each modality's head, in config order.
    pub branch_logits: Vec<Tensor>,
}

impl Output {
    /// Probability of a boundary (softmax class 1), `[batch * seq_len]`.
    pub fn prob(&self) -> Tensor {
        self.logits.softmax(1, Kind::Float).select(1, 1)
    }
}

/// LGSS with its variables in a `VarStore`.
pub struct Lgss {
    pub vs: nn::VarStore,
    pub config: ModelConfig,
    branches: Vec<Branch>,
    /// How the boundary net is computed (same function either way).
    pub formulation: Formulation,
    /// [`window_max`]'s tiles, chosen for the model's device.
    pub window_max_tiles: Tiles,
    /// What [`Lgss::last_lstm_train_mode`] reports.
    lstm_mode: AtomicU8,
    /// Dropout on the LSTM inputs in a forward that records gradients
    /// (training); 0 by default and never applied at inference.
    pub lstm_input_dropout: f64,
    /// Seed of the next training forward's dropout masks. The masks come
    /// from [`Rng`], not libtorch's process-wide generator, so a step's
    /// masks depend on this seed alone (resumable, and unaffected by other
    /// models training in the same process).
    pub dropout_seed: u64,
}

const LSTM_NOT_RUN: u8 = 0;
const LSTM_TRAIN: u8 = 1;
const LSTM_INFERENCE: u8 = 2;

/// Two computations of the same boundary net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formulation {
    /// Tiled window max and Gram-matrix cosine: never materialises `[C, D]`
    /// per window. What training and inference use.
    #[default]
    Fast,
    /// The paper's code, op for op (Conv2d, MaxPool3d, cosine_similarity):
    /// bit-identical to PyTorch, for checking the fast form against it.
    Reference,
}

impl Lgss {
    /// A new model with PyTorch's default initialisation (uniform in
    /// ±1/sqrt(fan_in) for convs and linears, ±1/sqrt(hidden) for the LSTM),
    /// drawn from libtorch's generator (seed it with `tch::manual_seed`).
    pub fn new(config: &ModelConfig, device: Device) -> Lgss {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let c = config.sim_channel as i64;
        let k = config.shot_num as i64;
        let h = config.lstm_hidden_size as i64;
        let f = config.fc_hidden as i64;
        let uniform = |fan_in: i64| {
            let b = 1.0 / (fan_in as f64).sqrt();
            nn::Init::Uniform { lo: -b, up: b }
        };
        let branches = config
            .modalities
            .iter()
            .map(|&m| {
                let d = config.feature_dims.get(m) as i64;
                let p = root.sub(format!("bnet_{}", m.key()));
                let bp = p.sub("bnet");
                let bnet = if config.is_stft(m) {
                    // SceneSeg's names: `bnet.audnet.*`, the cosine's conv `bnet.conv2`.
                    let cos = bp.sub("conv2");
                    Bnet::Stft {
                        audnet: AudNet::new(&bp.sub("audnet"), &config.stft_channels),
                        cos_w: cos.var("weight", &[c, 1, k / 2, 1], uniform(k / 2)),
                        cos_b: cos.var("bias", &[c], uniform(k / 2)),
                    }
                } else {
                    let conv = bp.sub("conv1");
                    let cos = bp.sub("cos").sub("conv1");
                    Bnet::Window {
                        conv_w: conv.var("weight", &[c, 1, k, 1], uniform(k)),
                        conv_b: conv.var("bias", &[c], uniform(k)),
                        cos_w: cos.var("weight", &[c, 1, k / 2, 1], uniform(k / 2)),
                        cos_b: cos.var("bias", &[c], uniform(k / 2)),
                        active: None,
                    }
                };
                let lp = p.sub("lstm");
                let input = bnet.output_width(d, c);
                let dirs: &[&str] = if config.bidirectional {
                    &["", "_reverse"]
                } else {
                    &[""]
                };
                let mut lstm = Vec::new();
                for sfx in dirs {
                    lstm.push(lp.var(&format!("weight_ih_l0{sfx}"), &[4 * h, input], uniform(h)));
                    lstm.push(lp.var(&format!("weight_hh_l0{sfx}"), &[4 * h, h], uniform(h)));
                    lstm.push(lp.var(&format!("bias_ih_l0{sfx}"), &[4 * h], uniform(h)));
                    lstm.push(lp.var(&format!("bias_hh_l0{sfx}"), &[4 * h], uniform(h)));
                }
                let out = if config.bidirectional { 2 * h } else { h };
                let fc1 = p.sub("fc1");
                let fc1_w = fc1.var("weight", &[f, out], uniform(out));
                let fc1_b = fc1.var("bias", &[f], uniform(out));
                let fc2 = p.sub("fc2");
                let fc2_w = fc2.var("weight", &[2, f], uniform(f));
                let fc2_b = fc2.var("bias", &[2], uniform(f));
                Branch {
                    modality: m,
                    dim: d,
                    bnet,
                    fc1_w,
                    fc1_b,
                    fc2_w,
                    _lstm_flat: flatten_lstm_weights(&lstm, input, h, config.bidirectional),
                    fc2_b,
                    lstm,
                }
            })
            .collect();
        Lgss {
            vs,
            config: config.clone(),
            branches,
            formulation: Formulation::Fast,
            window_max_tiles: Tiles::for_device(device),
            lstm_mode: AtomicU8::new(LSTM_NOT_RUN),
            lstm_input_dropout: 0.0,
            dropout_seed: 0,
        }
    }

    /// The mode the last forward ran the LSTMs in: `Some(true)` for
    /// training (what cuDNN's backward requires), `Some(false)` for
    /// inference, `None` before any forward.
    pub fn last_lstm_train_mode(&self) -> Option<bool> {
        match self.lstm_mode.load(Ordering::Relaxed) {
            LSTM_NOT_RUN => None,
            m => Some(m == LSTM_TRAIN),
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Runs the model. `inputs[i]` is `[batch, seq_len, shot_num, D]` for the
    /// i-th configured modality.
    pub fn forward(&self, inputs: &[Tensor]) -> Output {
        let inputs: Vec<BranchInput> = inputs.iter().map(BranchInput::Windows).collect();
        self.forward_inputs(&inputs)
    }

    /// Runs the model on each modality's windows or shots (see
    /// [`BranchInput`]).
    pub fn forward_inputs(&self, inputs: &[BranchInput<'_>]) -> Output {
        assert_eq!(inputs.len(), self.branches.len(), "one input per modality");
        let mut branch_logits = Vec::with_capacity(self.branches.len());
        let mut sum: Option<Tensor> = None;
        for (i, (b, x)) in self.branches.iter().zip(inputs).enumerate() {
            let l = self.branch_forward(b, x, i as u64);
            let weighted = &l * self.config.ratio.get(b.modality);
            sum = Some(match sum {
                None => weighted,
                Some(s) => s + weighted,
            });
            branch_logits.push(l);
        }
        Output {
            logits: sum.expect("at least one modality"),
            branch_logits,
        }
    }

    fn branch_forward(&self, b: &Branch, input: &BranchInput<'_>, index: u64) -> Tensor {
        let cfg = &self.config;
        let (k, s) = (cfg.shot_num as i64, cfg.seq_len as i64);
        let c = cfg.sim_channel as i64;
        let d = b.dim;
        let (n, device) = match input {
            BranchInput::Windows(x) => (x.size()[0] * x.size()[1], x.device()),
            BranchInput::Shots { shots, rows } => (rows.size()[0] / k, shots.device()),
        };
        // Training mode exactly when this call records gradients: cuDNN's
        // RNN backward refuses a forward run in inference mode, inference
        // mode skips the workspace training needs, and BatchNorm then
        // normalises by the batch. (One LSTM layer, no dropout: on the CPU
        // the flag changes none of the LSTM's numbers.)
        let train = records_gradients(&b.lstm[0]);
        let feat = match &b.bnet {
            Bnet::Window {
                conv_w,
                conv_b,
                cos_w,
                cos_b,
                active,
            } => {
                let x = match input {
                    BranchInput::Windows(x) => x.view([n, k, d]),
                    BranchInput::Shots { shots, rows } => {
                        gather_windows_on(shots, rows, cfg.seq_len, cfg.shot_num).view([n, k, d])
                    }
                };
                let x = match cfg.feature_norm {
                    FeatureNorm::None => x,
                    FeatureNorm::Rms => rms_normalised(&x),
                };
                let (ctx, sim) = match self.formulation {
                    Formulation::Fast => (
                        match active {
                            Some(idx) => tch::no_grad(|| {
                                window_max(
                                    &x,
                                    &conv_w.view([c, k]).index_select(0, idx),
                                    &conv_b.index_select(0, idx),
                                    self.window_max_tiles,
                                )
                            }),
                            None => window_max(&x, &conv_w.view([c, k]), conv_b, self.window_max_tiles),
                        },
                        half_window_cosine(&x, &cos_w.view([c, k / 2]), cos_b),
                    ),
                    Formulation::Reference => (
                        reference_window_max(&x, conv_w, conv_b, c),
                        reference_cosine(&x, cos_w, cos_b, c),
                    ),
                };
                Tensor::cat(&[ctx, sim], 1)
            }
            Bnet::Stft { audnet, cos_w, cos_b } => {
                let shots = match input {
                    BranchInput::Windows(x) => audnet.forward(&x.view([n * k, d]), train),
                    // Training normalises BatchNorm over every window's
                    // shots, as SceneSeg does: the windows first.
                    BranchInput::Shots { shots, rows } if train => {
                        let windows = gather_windows_on(shots, rows, cfg.seq_len, cfg.shot_num);
                        audnet.forward(&windows.view([n * k, d]), train)
                    }
                    // In evaluation each sample is normalised alone: each
                    // shot embedded once, the windows gathered after.
                    BranchInput::Shots { shots, rows } => audnet.forward(shots, train).index_select(0, rows),
                };
                let shots = shots.view([n, k, -1]);
                match self.formulation {
                    Formulation::Fast => half_window_cosine(&shots, &cos_w.view([c, k / 2]), cos_b),
                    Formulation::Reference => reference_cosine(&shots, cos_w, cos_b, c),
                }
            }
        };
        let feat = feat.view([-1, s, b.bnet.output_width(d, c)]);
        let feat = if train && self.lstm_input_dropout > 0.0 {
            let mask = dropout_mask(
                &feat.size(),
                self.lstm_input_dropout,
                &mut Rng::derive(self.dropout_seed, index),
            );
            feat * mask.to_device(device)
        } else {
            feat
        };
        let h = cfg.lstm_hidden_size as i64;
        let dirs = if cfg.bidirectional { 2 } else { 1 };
        let h0 = Tensor::zeros([dirs, feat.size()[0], h], (Kind::Float, feat.device()));
        self.lstm_mode
            .store(if train { LSTM_TRAIN } else { LSTM_INFERENCE }, Ordering::Relaxed);
        let (out, _, _) = feat.lstm(
            &[&h0, &h0],
            &b.lstm.iter().collect::<Vec<_>>(),
            true,
            1,
            0.0,
            train,
            cfg.bidirectional,
            true,
        );
        let out = out.linear(&b.fc1_w, Some(&b.fc1_b)).relu();
        out.linear(&b.fc2_w, Some(&b.fc2_b)).view([-1, 2])
    }

    /// Restricts the window max to the channels that can win (exactly the
    /// same function). For inference only: the pruned path records no
    /// gradients, and weights must not change afterwards.
    pub fn prune_for_inference(&mut self) -> anyhow::Result<()> {
        let k = self.config.shot_num;
        for b in &mut self.branches {
            let Bnet::Window {
                conv_w,
                conv_b,
                active,
                ..
            } = &mut b.bnet
            else {
                continue;
            };
            let (w, bias) = (super::f32_values(conv_w)?, super::f32_values(conv_b)?);
            let rows: Vec<i64> = super::envelope::active_channels(&w, &bias, k)
                .into_iter()
                .map(|c| c as i64)
                .collect();
            *active = Some(Tensor::from_slice(&rows).to_device(conv_w.device()));
        }
        Ok(())
    }

    /// Names and tensors of every variable, sorted by name.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Names and tensors of the trainable variables (what the optimizer
    /// updates; BatchNorm's running statistics are not among them), sorted
    /// by name.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = self.named_variables();
        v.retain(|(_, t)| t.requires_grad());
        v
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}

/// Each row of the last axis as `x·√D / max(‖x‖₂, ε)` ([`FeatureNorm::Rms`]),
/// in the order of the exported graph's ops (ReduceL2, Max, Div, Mul).
pub fn rms_normalised(x: &Tensor) -> Tensor {
    let d = *x.size().last().expect("features have a last axis");
    let norm = x
        .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
        .clamp_min(FeatureNorm::EPS);
    // Filled on the device (not copied from the host): a CUDA graph can
    // capture it.
    let sqrt_d = Tensor::full(
        Vec::<i64>::new(),
        f64::from((d as f32).sqrt()),
        (Kind::Float, x.device()),
    );
    x * (sqrt_d / norm)
}

/// Inverted dropout's multiplier: each element 0 with chance `p`, else
/// `1/(1 − p)`, drawn from `rng`.
fn dropout_mask(shape: &[i64], p: f64, rng: &mut Rng) -> Tensor {
    let n: i64 = shape.iter().product();
    let keep = (1.0 / (1.0 - p)) as f32;
    let values: Vec<f32> = (0..n)
        .map(|_| if rng.uniform() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_slice(&values).view(shape)
}

/// Whether an operation on `t` now would be recorded for autograd: `t`
/// requires gradients and grad mode is on (not inside `tch::no_grad`).
fn records_gradients(t: &Tensor) -> bool {
    t.requires_grad() && grad_mode_enabled()
}

/// libtorch's thread-local grad mode. tch keeps its getter private; setting
/// returns the previous value, so set-and-restore reads it.
fn grad_mode_enabled() -> bool {
    // SAFETY: at_grad_set_enabled only flips a thread-local flag and returns
    // the previous one (it catches C++ exceptions itself); we restore it.
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(1) == 1;
        torch_sys::at_grad_set_enabled(i32::from(prev));
        prev
    }
}

/// On CUDA with cuDNN, moves an LSTM's weights (w_ih, w_hh, b_ih, b_hh per
/// direction, PyTorch's order) into one contiguous buffer, as
/// `nn.LSTM.flatten_parameters` does, and returns it; the weight tensors
/// become views into it. Elsewhere does nothing.
fn flatten_lstm_weights(weights: &[Tensor], input: i64, hidden: i64, bidirectional: bool) -> Option<Tensor> {
    let device = weights.first()?.device();
    if !device.is_cuda() || !tch::Cuda::cudnn_is_available() {
        return None;
    }
    tch::no_grad(|| {
        Some(Tensor::internal_cudnn_rnn_flatten_weight(
            weights,
            4, // tensors per layer and direction: w_ih, w_hh, b_ih, b_hh
            input,
            2, // cuDNN's mode for LSTM (aten/src/ATen/native/cudnn/RNN.cpp)
            hidden,
            0, // no projections
            1, // layers
            true,
            bidirectional,
        ))
    })
}

/// The window conv then MaxPool3d over the channels, exactly as the
/// paper's code computes the context. `x`: `[n, k, d]`; returns `[n, d]`.
fn reference_window_max(x: &Tensor, conv_w: &Tensor, conv_b: &Tensor, c: i64) -> Tensor {
    let (n, k, d) = (x.size()[0], x.size()[1], x.size()[2]);
    let ctx = x
        .view([n, 1, k, d])
        .conv2d(conv_w, Some(conv_b), [1, 1], [0, 0], [1, 1], 1);
    ctx.max_pool3d([c, 1, 1], [c, 1, 1], [0, 0, 0], [1, 1, 1], false)
        .view([n, d])
}

/// The half-window Conv2d on each half then `cosine_similarity`, exactly
/// as the paper's code. `x`: `[n, k, d]`; returns `[n, C]`.
fn reference_cosine(x: &Tensor, cos_w: &Tensor, cos_b: &Tensor, c: i64) -> Tensor {
    let (n, k, d) = (x.size()[0], x.size()[1], x.size()[2]);
    let halves = x.view([n, 1, k, d]).split(k / 2, 2);
    let a = halves[0]
        .conv2d(cos_w, Some(cos_b), [1, 1], [0, 0], [1, 1], 1)
        .view([n, c, d]);
    let z = halves[1]
        .conv2d(cos_w, Some(cos_b), [1, 1], [0, 0], [1, 1], 1)
        .view([n, c, d]);
    Tensor::cosine_similarity(&a, &z, 2, 1e-8)
}

/// How [`window_max`] cuts its `[windows, features, C]` product into tiles:
/// the same values either way (each element is one (k+1)-term dot product),
/// only the kernel sizes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    /// Elements of one tile's product.
    pub elements: i64,
    /// Feature columns one tile covers; `None`: all of them.
    pub features: Option<i64>,
}

impl Tiles {
    /// 4 MiB of f32 over 64 feature columns: large enough for efficient
    /// kernels, small enough to stay in a CPU's cache.
    pub const CPU: Tiles = Tiles {
        elements: 1 << 20,
        features: Some(64),
    };
    /// One dense product over all features and as many windows as 256 MiB
    /// of f32 holds: a GPU runs a few large kernels a batch instead of the
    /// hundreds of small ones cache-sized tiles would launch.
    pub const DEVICE: Tiles = Tiles {
        elements: 1 << 26,
        features: None,
    };

    pub fn for_device(device: Device) -> Tiles {
        if device.is_cuda() {
            Tiles::DEVICE
        } else {
            Tiles::CPU
        }
    }
}

/// The context part of the boundary net: for each window and feature
/// column, the maximum over channels of the window conv,
/// `max_c (Σ_k w[c,k]·x[k,d] + b[c])` (Conv2d then MaxPool3d over C in the
/// paper). Computed in tiles so `[C, D]` per window is never materialised.
/// With gradients on, the tiles only find each maximum's channel; the value
/// is then rebuilt from that channel's weights, which gives the same value
/// and gradient as the max (ties go to the first channel, as in torch)
/// without keeping `[N, C, D]` for the backward pass.
///
/// `x`: `[n, k, d]`, `w`: `[C, k]`, `b`: `[C]`; returns `[n, d]`.
pub fn window_max(x: &Tensor, w: &Tensor, b: &Tensor, tiles: Tiles) -> Tensor {
    let (n, k, d) = (x.size()[0], x.size()[1], x.size()[2]);
    let c = w.size()[0];
    // No autograd graph is recorded under no_grad: then the max itself suffices.
    let grad = (&b.narrow(0, 0, 1) * 1.0).requires_grad();
    let cols = tiles.features.map_or(d, |f| d.min(f)).max(1);
    let rows = (tiles.elements / (c * cols)).max(1);
    let found = tch::no_grad(|| {
        // [n, d, k+1] × [k+1, C], a row of ones carrying the bias, so each
        // tile's maximum runs over its last, contiguous axis.
        let ones = x.narrow(1, 0, 1).ones_like();
        let xt = Tensor::cat(&[x, &ones], 1).transpose(1, 2);
        let wbt = Tensor::cat(&[w, &b.unsqueeze(1)], 1).transpose(0, 1);
        let mut parts = Vec::new();
        for d0 in (0..d).step_by(cols as usize) {
            let xd = xt.narrow(1, d0, cols.min(d - d0));
            let mut col = Vec::new();
            for n0 in (0..n).step_by(rows as usize) {
                let t = xd.narrow(0, n0, rows.min(n - n0)).matmul(&wbt);
                col.push(if grad {
                    t.argmax(2, false)
                } else {
                    t.amax(2, false)
                });
            }
            parts.push(Tensor::cat(&col, 0));
        }
        Tensor::cat(&parts, 1)
    });
    if !grad {
        return found;
    }
    let idx = found.flatten(0, -1);
    let w_sel = w.index_select(0, &idx).view([n, d, k]);
    (w_sel * x.transpose(1, 2)).sum_dim_intlist([2i64].as_slice(), false, Kind::Float)
        + b.index_select(0, &idx).view([n, d])
}

/// The similarity part of the boundary net: the cosine similarity along the
/// features of the same conv (`w`: `[C, k/2]`, `b`: `[C]`) applied to each
/// half of the window, with torch's clamp `x / max(‖x‖, 1e-8)`.
///
/// With a = Σ_j w_j x_j + b and a' = Σ_j w_j x_{k/2+j} + b, the products
/// a·a', ‖a‖², ‖a'‖² are quadratic forms of the window's Gram matrix
/// (`x xᵀ`, row sums, D): O(k²·D + C·k²) per window instead of O(C·D).
/// They are formed in f64, which keeps the cancellation in ‖a‖² harmless.
///
/// `x`: `[n, k, d]`; returns `[n, C]` (f32).
pub fn half_window_cosine(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let d = x.size()[2] as f64;
    let xd = x.to_kind(Kind::Double);
    let gram = xd.matmul(&xd.transpose(1, 2)); // [n, k, k]
    let sums = xd.sum_dim_intlist([2i64].as_slice(), false, Kind::Double); // [n, k]
    let w = w.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let zeros = w.zeros_like();
    let first = Tensor::cat(&[&w, &zeros], 1); // [C, k]: the conv on the first half
    let second = Tensor::cat(&[&zeros, &w], 1); // on the second half
                                                // uᵀ G v for every window and channel: [n, k, C] then sum over k.
    let form = |u: &Tensor, v: &Tensor| {
        (gram.matmul(&v.transpose(0, 1)) * u.transpose(0, 1).unsqueeze(0)).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Double,
        )
    };
    let lin1 = sums.matmul(&first.transpose(0, 1)); // Σ_d a - b·D, per channel
    let lin2 = sums.matmul(&second.transpose(0, 1));
    let bbd = &b * &b * d;
    let dot = form(&first, &second) + &b * (&lin1 + &lin2) + &bbd;
    let n1 = form(&first, &first) + &b * &lin1 * 2.0 + &bbd;
    let n2 = form(&second, &second) + &b * &lin2 * 2.0 + &bbd;
    // max(‖a‖, eps) = sqrt(max(‖a‖², eps²)); the clamp also absorbs rounding below 0.
    let eps2 = 1e-16;
    (dot / (n1.clamp_min(eps2).sqrt() * n2.clamp_min(eps2).sqrt())).to_kind(Kind::Float)
}

/// The weighted cross-entropy of LGSS training: mean over the class weights
/// of the targets, positions with target -100 (padding) ignored.
pub fn loss(logits: &Tensor, target: &Tensor, class_weights: [f64; 2]) -> Tensor {
    weighted_loss(
        logits,
        target,
        &class_weight_tensor(class_weights, logits.device()),
    )
}

/// [`loss`] with the class weights already on the logits' device (made once
/// by [`class_weight_tensor`]): no host→device copy, as a step captured in a
/// CUDA graph requires.
pub fn weighted_loss(logits: &Tensor, target: &Tensor, class_weights: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<&Tensor>(target, Some(class_weights), tch::Reduction::Mean, -100, 0.0)
}

/// `class_weights` as the f32 tensor [`weighted_loss`] takes.
pub fn class_weight_tensor(class_weights: [f64; 2], device: Device) -> Tensor {
    Tensor::from_slice(&[class_weights[0] as f32, class_weights[1] as f32]).to_device(device)
}
