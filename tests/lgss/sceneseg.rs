//! SceneSeg's model in lgss: its checkpoints imported from both `torch.save`
//! formats, its STFT audio network in training and evaluation mode, and
//! every runtime, against PyTorch (`tests/sceneseg_reference.py`, run here
//! with the venv's torch on a synthetic scene318 tree).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lgss::agreement::max_dp_bound;
use lgss::data::windows::{batch_rows, gather_windows, sequences};
use lgss::data::{Movie, Schema};
use lgss::model::checkpoint::{model_from_checkpoint, Checkpoint};
use tch::{Device, Tensor};

use crate::common::{lgss, python, tempdir};

const CONFIG: &str = "models/sceneseg-small.toml";

/// The tree, PyTorch's files and its reference.json, made once per run
/// (shared by this file's tests, so under cargo's directory for them).
fn reference() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sceneseg-reference");
        let _ = std::fs::remove_dir_all(&dir);
        let out = lgss()
            .args([
                "synth", "--layout", "scene318", "--audio", "stft", "--size", "small",
            ])
            .args(["--shots", "24..36", "--movies", "3", "--seed", "7", "--out"])
            .arg(dir.join("tree"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sceneseg_reference.py");
        let out = std::process::Command::new(python())
            .arg(script)
            .arg("--tree")
            .arg(dir.join("tree"))
            .arg("--out")
            .arg(dir.join("torch"))
            .output()
            .expect("run the venv's python (did scripts/setup run?)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn reference_json() -> serde_json::Value {
    let text = std::fs::read_to_string(reference().join("torch/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn import(file: &str, out: &Path) -> std::process::Output {
    lgss()
        .arg("import-torch")
        .arg(reference().join("torch").join(file))
        .args(["--config", CONFIG, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

/// Each movie's probabilities from `lgss segment` on the tree.
fn segment(dir: &Path, runtime: &str, model: (&str, &Path)) -> serde_json::Map<String, serde_json::Value> {
    let out_dir = dir.join(format!("seg-{runtime}"));
    let out = lgss()
        .arg("segment")
        .arg(reference().join("tree"))
        .args(["--runtime", runtime, "--local", model.0])
        .arg(model.1)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut probs = serde_json::Map::new();
    for (id, _) in reference_json()["probabilities"].as_object().unwrap() {
        let text = std::fs::read_to_string(out_dir.join(format!("{id}.json"))).unwrap();
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        probs.insert(id.clone(), j["boundary_probabilities"].clone());
    }
    probs
}

fn max_abs_diff(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
        .fold(0.0, f64::max)
}

/// Both formats import to the same weights (BatchNorm's running statistics
/// and batch counts included), and every runtime then gives PyTorch's
/// probabilities within verify's fp32 bound.
#[test]
fn sceneseg_checkpoints_import_from_both_formats_and_match_pytorch() {
    let dir = tempdir("sceneseg-import");
    let (zip, legacy) = (dir.join("zip.safetensors"), dir.join("legacy.safetensors"));
    for (file, out) in [
        ("model_best.pth.tar", &zip),
        ("model_best_legacy.pth.tar", &legacy),
    ] {
        let o = import(file, out);
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (a, b) = (
        Checkpoint::load(&zip).unwrap(),
        Checkpoint::load(&legacy).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors);
    let batches = &a.tensors["bnet_audio.bnet.audnet.bn3.num_batches_tracked"];
    assert_eq!(batches.to_f64().into_iter().collect::<Vec<_>>(), vec![3.0]);
    assert!(!a.tensors.contains_key("bnet_audio.bnet.conv1.weight"));

    let onnx = dir.join("model.onnx");
    let out = lgss()
        .args(["export", "--onnx"])
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&legacy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // verify: the runtimes agree, SceneSeg's metrics included.
    let out = lgss()
        .args([
            "verify",
            "--json",
            "--sceneseg",
            "--runtimes",
            "tch,ort-cpu,tract",
            "--model",
        ])
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&zip)
        .arg("--data")
        .arg(reference().join("tree"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    for row in report["rows"].as_array().unwrap() {
        assert!(row["sceneseg"]["scores"]["Recall_time"].is_number(), "{row}");
    }
    let truth = reference_json()["probabilities"].clone();
    let bound = max_dp_bound(false);
    for (runtime, model) in [
        ("tch", ("--checkpoint", zip.as_path())),
        ("tract", ("--model", onnx.as_path())),
        ("ort-cpu", ("--model", onnx.as_path())),
    ] {
        let got = segment(&dir, runtime, model);
        for (id, want) in truth.as_object().unwrap() {
            let d = max_abs_diff(&got[id], want);
            assert!(d <= bound, "{runtime} {id}: max|Δp| {d:e} > {bound:e}");
        }
    }
}

/// One training-mode forward from the imported state: BatchNorm normalises
/// by the batch's statistics and updates the running ones with PyTorch's
/// momentum and unbiased variance.
#[test]
fn stft_training_mode_matches_pytorch_batchnorm() {
    let dir = tempdir("sceneseg-train-mode");
    let ckpt_path = dir.join("ckpt.safetensors");
    assert!(import("model_best.pth.tar", &ckpt_path).status.success());
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    let model = model_from_checkpoint(&ckpt, Device::Cpu).unwrap();
    let r = reference_json();
    let id = r["train_forward"]["movie"].as_str().unwrap();
    let movie = Movie::load(
        &reference().join("tree/label318").join(format!("{id}.txt")),
        &Schema::any(),
    )
    .unwrap();
    let (k, s) = (model.config.shot_num, model.config.seq_len);
    let n = movie.n_shots();
    let seqs = sequences(0, n, s);
    let rows = batch_rows(&seqs, &[0], &[n], s, k);
    let inputs: Vec<Tensor> = model
        .config
        .modalities
        .iter()
        .map(|&m| {
            let w = gather_windows(movie.features(m).unwrap().view(), &rows, s, k);
            let shape: Vec<i64> = w.shape().iter().map(|&d| d as i64).collect();
            Tensor::from_slice(w.as_slice().unwrap()).view(shape.as_slice())
        })
        .collect();
    // Gradients recorded: the training-mode forward.
    let logits = model.forward(&inputs).logits;
    let want: Vec<f32> = r["train_forward"]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let got = Vec::<f32>::try_from(logits.detach().flatten(0, -1)).unwrap();
    assert_eq!(got.len(), want.len());
    // fp32 results of the same sums in another order: within verify's
    // budget of ~170 roundoffs, relative to the values' scale.
    let close = |what: &str, got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs())) as f64;
        let d = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        assert!(
            d <= max_dp_bound(false) * scale,
            "{what}: max diff {d:e} (scale {scale})"
        );
    };
    close("training-mode logits", &got, &want);
    let vars = model.vs.variables();
    for (name, values) in r["train_forward"]["running_after"].as_object().unwrap() {
        let want: Vec<f32> = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let before = Vec::<f32>::try_from(ckpt.tch(name).unwrap()).unwrap();
        let after = Vec::<f32>::try_from(&vars[name]).unwrap();
        assert_ne!(before, after, "{name} was not updated");
        close(name, &after, &want);
    }
    let tracked = i64::try_from(&vars["bnet_audio.bnet.audnet.bn1.num_batches_tracked"]).unwrap();
    assert_eq!(tracked, 4);
}

/// A checkpoint whose pickle would run a shell command is refused, naming
/// the global, without running it and without writing anything.
#[test]
fn a_checkpoint_that_would_run_code_is_refused_without_running_it() {
    let dir = tempdir("sceneseg-evil");
    let out_path = dir.join("ckpt.safetensors");
    let o = import("evil.pth.tar", &out_path);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("evil.pth.tar") && err.contains("posix.system"),
        "{err}"
    );
    assert!(!reference().join("torch/executed").exists(), "the payload ran");
    assert!(!out_path.exists());
}

/// An STFT image of another size is refused by file and problem, and
/// pickles (MovieScenes' 512-d audio) take no STFT images.
#[test]
fn stft_images_of_other_sizes_are_refused_by_name() {
    let dir = tempdir("sceneseg-bad-stft");
    let tree = dir.join("tree");
    let out = lgss()
        .args([
            "synth", "--layout", "scene318", "--audio", "stft", "--size", "small",
        ])
        .args(["--shots", "12..14", "--movies", "3", "--out"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = tree.join("aud_feat/tt0000002/shot_0003.npy");
    std::fs::write(
        &bad,
        lgss::data::npy::save_f32_shaped(&[0.5; 257 * 91], &[257, 91]),
    )
    .unwrap();
    let out = lgss().arg("info").arg(&tree).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shot_0003.npy") && err.contains("257×91") && err.contains("257×90"),
        "{err}"
    );

    let out = lgss()
        .args(["synth", "--audio", "stft", "--movies", "3", "--out"])
        .arg(dir.join("pickles"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layout scene318"));
    assert!(!dir.join("pickles").exists());
}

/// SceneSeg's LGSS of `mode = ['place', 'aud']` (the modalities video
/// gives): its checkpoint imports with
/// `models/sceneseg-place-audio-small.toml` and gives PyTorch's
/// probabilities in tch, tract and ONNX Runtime.
#[test]
fn a_place_audio_sceneseg_checkpoint_imports_and_matches_pytorch() {
    let dir = tempdir("sceneseg-place-audio");
    let torch_dir = dir.join("torch");
    std::fs::create_dir_all(&torch_dir).unwrap();
    let out = std::process::Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sceneseg_reference.py"))
        .arg("--tree")
        .arg(reference().join("tree"))
        .arg("--out")
        .arg(&torch_dir)
        .args(["--mode", "place,aud"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpt = dir.join("ckpt.safetensors");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sceneseg-place-audio-small.toml");
    let out = lgss()
        .arg("import-torch")
        .arg(torch_dir.join("model_best.pth.tar"))
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let onnx = dir.join("model.onnx");
    crate::common::export_onnx(&ckpt, &onnx);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(torch_dir.join("reference.json")).unwrap()).unwrap();
    let bound = max_dp_bound(false);
    for (runtime, model) in [
        ("tch", ("--checkpoint", ckpt.as_path())),
        ("tract", ("--model", onnx.as_path())),
        ("ort-cpu", ("--model", onnx.as_path())),
    ] {
        let got = segment(&dir, runtime, model);
        for (id, want) in truth["probabilities"].as_object().unwrap() {
            let d = max_abs_diff(&got[id], want);
            assert!(d <= bound, "{runtime} {id}: max|Δp| {d:e} > {bound:e}");
        }
    }
}
