//! LGSS in tch against PyTorch: `tests/fixtures/lgss-tiny` holds
//! PyTorch's weights, inputs, outputs, loss, gradients and the weights after
//! one Adam step, for the config in its model.json.

use lgss::data::movie::Modality;
use lgss::model::checkpoint::{load_weights, Checkpoint};
use lgss::model::config::{FeatureNorm, ModelConfig, PerModality};
use lgss::model::lgss::{loss, Formulation, Lgss, Tiles};
use lgss::train::adam::Adam;
use tch::{Device, Tensor};

use crate::common::fixtures;

pub fn fixture_config() -> (ModelConfig, serde_json::Value) {
    let dir = fixtures().join("lgss-tiny");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    let dims = |m: &str| j["feature_dims"][m].as_u64().unwrap() as usize;
    let ratio = |m: &str| j["ratio"][m].as_f64().unwrap();
    let config = ModelConfig {
        audio_input: Default::default(),
        stft_channels: lgss::model::config::SCENESEG_STFT_CHANNELS,
        shot_num: j["shot_num"].as_u64().unwrap() as usize,
        seq_len: j["seq_len"].as_u64().unwrap() as usize,
        sim_channel: j["sim_channel"].as_u64().unwrap() as usize,
        lstm_hidden_size: j["lstm_hidden_size"].as_u64().unwrap() as usize,
        fc_hidden: j["fc_hidden"].as_u64().unwrap() as usize,
        bidirectional: j["bidirectional"].as_bool().unwrap(),
        modalities: Modality::ALL.to_vec(),
        feature_dims: PerModality {
            place: dims("place"),
            cast: dims("cast"),
            action: dims("action"),
            audio: dims("audio"),
        },
        ratio: PerModality {
            place: ratio("place"),
            cast: ratio("cast"),
            action: ratio("action"),
            audio: ratio("audio"),
        },
        feature_norm: FeatureNorm::None,
    };
    (config, j)
}

pub fn fixture_io() -> Checkpoint {
    Checkpoint::from_bytes(&std::fs::read(fixtures().join("lgss-tiny/io.safetensors")).unwrap()).unwrap()
}

pub fn fixture_model_as(formulation: Formulation) -> Lgss {
    fixture_model_tiled(formulation, Tiles::CPU)
}

/// The fixture model with [`Formulation::Fast`]'s window max cut into
/// `tiles` (a GPU's dense tiles can be checked here on the CPU).
pub fn fixture_model_tiled(formulation: Formulation, tiles: Tiles) -> Lgss {
    let (config, _) = fixture_config();
    let mut model = Lgss::new(&config, Device::Cpu);
    model.formulation = formulation;
    model.window_max_tiles = tiles;
    let w = Checkpoint::from_bytes(&std::fs::read(fixtures().join("lgss-tiny/weights.safetensors")).unwrap())
        .unwrap();
    load_weights(&mut model, &w.tensors).unwrap();
    model
}

pub fn fixture_inputs(io: &Checkpoint) -> Vec<Tensor> {
    Modality::ALL
        .iter()
        .map(|m| io.tch(&format!("input.{}", m.key())).unwrap())
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    let d = max_abs_diff(got, want);
    assert!(d <= tol, "{what}: max |diff| {d:e} > {tol:e}");
}

/// The paper's op-for-op form, and the fast form with the CPU's tiles and
/// with a GPU's (one dense product per tile): all three are PyTorch's model.
const FORMS: [(Formulation, Tiles); 3] = [
    (Formulation::Reference, Tiles::CPU),
    (Formulation::Fast, Tiles::CPU),
    (Formulation::Fast, Tiles::DEVICE),
];

#[test]
fn forward_matches_pytorch() {
    for (formulation, tiles) in FORMS {
        let model = fixture_model_tiled(formulation, tiles);
        let io = fixture_io();
        let out = tch::no_grad(|| model.forward(&fixture_inputs(&io)));
        let what = |s: &str| format!("{formulation:?} {tiles:?} {s}");
        assert_close(&what("logits"), &out.logits, &io.tch("logits").unwrap(), 1e-5);
        for (m, l) in Modality::ALL.iter().zip(&out.branch_logits) {
            assert_close(
                &what(&format!("logits.{m}")),
                l,
                &io.tch(&format!("logits.{}", m.key())).unwrap(),
                1e-5,
            );
        }
        assert_close(&what("prob"), &out.prob(), &io.tch("prob").unwrap(), 1e-5);
    }
}

/// Loss, every gradient and one Adam step. Gradients agree to 1e-5 (about
/// 1e-8 in practice) but not to the last bit — the fast formulation sums in
/// another order, and libtorch's kernels round differently on another CPU
/// than the fixture's — and Adam's first step, lr·g/(|g| + eps) with g = grad + wd·param,
/// has slope lr·eps/(|g| + eps)² — up to lr/eps = 1e6 where g nearly cancels.
/// So each element may differ by 1e-6 plus what its own gradient difference
/// moves the step by, and no more.
#[test]
fn loss_gradients_and_adam_step_match_pytorch() {
    let (_, j) = fixture_config();
    assert!(
        j["optimizer"].as_str().unwrap().contains("lr 1e-2"),
        "the fixture's recipe is what this test assumes"
    );
    let (lr, eps) = (1e-2, 1e-8);
    for (formulation, tiles) in FORMS {
        let model = fixture_model_tiled(formulation, tiles);
        let io = fixture_io();
        let what = |s: &str| format!("{formulation:?} {tiles:?} {s}");
        let target = io.tch("target").unwrap().to_kind(tch::Kind::Int64);
        let out = model.forward(&fixture_inputs(&io));
        let l = loss(&out.logits, &target, [0.5, 5.0]);
        assert_close(&what("loss"), &l.view([1]), &io.tch("loss").unwrap(), 1e-5);
        let params = model.named_variables();
        let mut adam = Adam::new(
            params
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            lr,
            5e-4,
        );
        adam.zero_grad();
        l.backward();
        let mut tolerances = Vec::new();
        for (name, p) in &params {
            let g = p.grad().to_kind(tch::Kind::Double);
            let want = io
                .tch(&format!("grad.{name}"))
                .unwrap()
                .to_kind(tch::Kind::Double);
            assert_close(&what(&format!("grad {name}")), &g, &want, 1e-5);
            let g_total = (&g + p.detach().to_kind(tch::Kind::Double) * 5e-4).abs();
            let slope = (g_total + eps).pow_tensor_scalar(-2.0) * (lr * eps);
            // The same derived bound for both formulations: libtorch's CPU
            // kernels round differently per CPU (AVX2/AVX-512, Intel/AMD), so
            // even the op-for-op path is not bit-identical to the fixture's
            // machine; what its gradient difference can move the step by is.
            let tol = slope * (&g - &want).abs() * 2.0 + 1e-6;
            tolerances.push(tol);
        }
        adam.step().unwrap();
        for ((name, p), tol) in params.iter().zip(&tolerances) {
            let want = io
                .tch(&format!("after_step.{name}"))
                .unwrap()
                .to_kind(tch::Kind::Double);
            let excess = ((p.to_kind(tch::Kind::Double) - want).abs() - tol)
                .max()
                .double_value(&[]);
            assert!(
                excess <= 0.0,
                "{}: exceeds its tolerance by {excess:e}",
                what(&format!("after step {name}"))
            );
        }
        let after = tch::no_grad(|| model.forward(&fixture_inputs(&io)));
        assert_close(
            &what("logits after step"),
            &after.logits,
            &io.tch("logits_after_step").unwrap(),
            1e-5,
        );
    }
}

/// cuDNN's RNN backward refuses a forward run in inference mode, and a
/// CUDA-only bug is one a CPU test must pin: the LSTM runs in training mode
/// exactly when the forward records gradients. (On the CPU, with one layer
/// and no dropout, the flag changes no number, so this is structural;
/// `scripts/gpu-check` trains on a GPU for real.)
#[test]
fn lstm_runs_in_training_mode_exactly_when_gradients_are_recorded() {
    let io = fixture_io();
    let inputs = fixture_inputs(&io);
    let model = fixture_model_as(Formulation::Fast);
    assert_eq!(model.last_lstm_train_mode(), None);

    let out = model.forward(&inputs);
    assert_eq!(model.last_lstm_train_mode(), Some(true), "training forward");
    assert!(out.logits.requires_grad());
    let target = io.tch("target").unwrap().to_kind(tch::Kind::Int64);
    loss(&out.logits, &target, [0.5, 5.0]).backward();

    let _ = tch::no_grad(|| model.forward(&inputs));
    assert_eq!(model.last_lstm_train_mode(), Some(false), "under no_grad");

    let mut frozen = fixture_model_as(Formulation::Fast);
    frozen.vs.freeze();
    let _ = frozen.forward(&inputs);
    assert_eq!(
        frozen.last_lstm_train_mode(),
        Some(false),
        "weights without gradients"
    );

    let mut pruned = fixture_model_as(Formulation::Fast);
    pruned.prune_for_inference().unwrap();
    let _ = tch::no_grad(|| pruned.forward(&inputs));
    assert_eq!(
        pruned.last_lstm_train_mode(),
        Some(false),
        "the inference runtime's model"
    );
}

/// The C++ shim reaches libtorch's own TF32 switches (tch binds none):
/// what it sets, libtorch reports back through every getter ATen uses —
/// per operator and without one (which libtorch refuses to answer after
/// its newer per-operator setter). Global settings, CPU-independent, so
/// this runs without a GPU; it ends with the default, full fp32.
#[test]
fn tf32_switches_reach_libtorch() {
    use lgss::model::cuda::{set_tf32, tf32_state};
    set_tf32(true).unwrap();
    let on = tf32_state().unwrap();
    set_tf32(false).unwrap();
    let off = tf32_state().unwrap();
    assert!(on.all(), "{on:?}");
    assert!(!off.any(), "{off:?}");
}

/// The window max cut into a GPU's tiles (one dense product over all
/// features), the CPU's, and deliberately small ones, against the paper's
/// op-for-op form (Conv2d, then the max over channels) with autograd, on a
/// batch large enough that the tilings differ: values with and without
/// gradients, and every gradient. Each value is one (k+1)-term dot product,
/// summed in an order the kernel picks: |Δ| ≤ 2(k+1)·u·(Σ|w·x| + |b|).
/// A gradient of x is one product of the chosen channel's weight (the same
/// channel: random data has no near-ties at this size); of w and b, sums of
/// up to n·d products: |Δ| ≤ 2·n·d·u·Σ|g·x|.
#[test]
fn window_max_tilings_equal_conv_then_max() {
    use lgss::model::lgss::window_max;
    use tch::Kind;
    let (n, k, d, c) = (100i64, 8i64, 160i64, 32i64);
    tch::manual_seed(5);
    let opts = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([n, k, d], opts);
    let w = Tensor::randn([c, k], opts) * 0.3;
    let b = Tensor::randn([c], opts) * 0.1;
    let upstream = Tensor::randn([n, d], opts);
    let leaf = |t: &Tensor| t.copy().set_requires_grad(true);
    let (xr, wr, br) = (leaf(&x), leaf(&w), leaf(&b));
    let conv = xr
        .view([n, 1, k, d])
        .conv2d(&wr.view([c, 1, k, 1]), Some(&br), [1, 1], [0, 0], [1, 1], 1)
        .view([n, c, d]);
    let (want, _) = conv.max_dim(1, false);
    (&want * &upstream).sum(Kind::Float).backward();
    let u = f32::EPSILON as f64 / 2.0;
    // Σ_j |w_cj·x_jd| + |b_c|, the largest over channels, per element.
    let magnitude = (x.abs().transpose(1, 2).matmul(&w.abs().transpose(0, 1)) + b.abs())
        .amax([2i64].as_slice(), false)
        .to_kind(Kind::Double);
    let value_bound = magnitude * (2.0 * (k + 1) as f64 * u);
    let sum_bound = |g_times: Tensor| g_times * (2.0 * (n * d) as f64 * u);
    let within = |what: &str, got: &Tensor, want: &Tensor, bound: &Tensor| {
        let excess = ((got.to_kind(Kind::Double) - want.to_kind(Kind::Double)).abs() - bound)
            .max()
            .double_value(&[]);
        assert!(excess <= 0.0, "{what}: exceeds its bound by {excess:e}");
    };
    let small = lgss::model::lgss::Tiles {
        elements: 4096,
        features: Some(24),
    };
    for tiles in [Tiles::CPU, Tiles::DEVICE, small] {
        let plain = tch::no_grad(|| window_max(&x, &w, &b, tiles));
        within(&format!("{tiles:?} value"), &plain, &want.detach(), &value_bound);
        let (xt, wt, bt) = (leaf(&x), leaf(&w), leaf(&b));
        let got = window_max(&xt, &wt, &bt, tiles);
        within(
            &format!("{tiles:?} value with gradients"),
            &got.detach(),
            &want.detach(),
            &value_bound,
        );
        (&got * &upstream).sum(Kind::Float).backward();
        // |∂/∂x| = |g·w_c*|: one rounding.
        let dx_bound = (upstream.abs().unsqueeze(1) * w.abs().amax([0i64].as_slice(), false).view([1, k, 1]))
            .to_kind(Kind::Double)
            * (2.0 * u);
        within(&format!("{tiles:?} grad x"), &xt.grad(), &xr.grad(), &dx_bound);
        let gx = (upstream.abs().unsqueeze(1) * x.abs()).sum(Kind::Double); // Σ|g·x| over all
        let gb = upstream.abs().sum(Kind::Double);
        within(
            &format!("{tiles:?} grad w"),
            &wt.grad(),
            &wr.grad(),
            &sum_bound(gx),
        );
        within(
            &format!("{tiles:?} grad b"),
            &bt.grad(),
            &br.grad(),
            &sum_bound(gb),
        );
    }
}
