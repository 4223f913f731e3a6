//! LGSS in tch against PyTorch: `tests/fixtures/lgss-tiny` holds
//! PyTorch's weights, inputs, outputs, loss, gradients and the weights after
//! one Adam step, for the config in its model.json.

use lgss::data::movie::Modality;
use lgss::model::checkpoint::{load_weights, Checkpoint};
use lgss::model::config::{FeatureNorm, ModelConfig, PerModality};
use lgss::model::lgss::{loss, Formulation, Lgss};
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
    let (config, _) = fixture_config();
    let mut model = Lgss::new(&config, Device::Cpu);
    model.formulation = formulation;
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

#[test]
fn forward_matches_pytorch() {
    for formulation in [Formulation::Reference, Formulation::Fast] {
        let model = fixture_model_as(formulation);
        let io = fixture_io();
        let out = tch::no_grad(|| model.forward(&fixture_inputs(&io)));
        let what = |s: &str| format!("{formulation:?} {s}");
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
    for formulation in [Formulation::Reference, Formulation::Fast] {
        let model = fixture_model_as(formulation);
        let io = fixture_io();
        let what = |s: &str| format!("{formulation:?} {s}");
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
        adam.step();
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
