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

use crate::common::{export_onnx, lgss, python, tempdir};

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

/// Movie `id` of the reference tree.
fn tree_movie(id: &str) -> Movie {
    Movie::load(
        &reference().join("tree/label318").join(format!("{id}.txt")),
        &Schema::any(),
    )
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
    export_onnx(&legacy, &onnx);
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

/// Each shot's audio CNN once (`runtime::input`): on each of the tree's
/// movies, every CPU runtime, and ort-cuda's per-shot form run on the CPU,
/// give the per-window form's probabilities (each window position embedded
/// on its own, as before) and PyTorch's within verify's fp32 bound, for runs
/// that do and do not divide the movie; a run holding two movies'
/// sequences (as `lgss serve` batches them) gives each its own, also
/// through a tract plan of one sequence that must cut it. The exported
/// graph passes the ONNX checker with the audio input per shot.
#[test]
fn stft_runtimes_embed_each_shot_once_with_the_per_window_numbers() {
    use lgss::runtime::onnxruntime::OrtBackend;
    use lgss::runtime::{open, Backend, RunInput, RuntimeKind, RuntimeOptions};

    let dir = tempdir("sceneseg-per-shot");
    let ckpt = dir.join("ckpt.safetensors");
    assert!(import("model_best.pth.tar", &ckpt).status.success());
    let onnx = dir.join("model.onnx");
    export_onnx(&ckpt, &onnx);
    let inputs = crate::common::run_python(
        r#"
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
for i in m.graph.input:
    t = i.type.tensor_type
    print(i.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim])
"#,
        &[&onnx],
    );
    assert!(inputs.contains("audio 1 ['audio_shots', 23130]"), "{inputs}");
    assert!(inputs.contains("audio_rows 7 ['batch', 10, 4]"), "{inputs}");
    assert!(inputs.contains("place 1 ['batch', 10, 4, 64]"), "{inputs}");

    let truth = reference_json()["probabilities"].clone();
    let bound = max_dp_bound(false);
    let diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max)
    };
    let movies: Vec<(String, Movie)> = truth
        .as_object()
        .unwrap()
        .keys()
        .map(|id| (id.clone(), tree_movie(id)))
        .collect();
    let options = |batch: usize, per_window: bool| RuntimeOptions {
        onnx: Some(onnx.clone()),
        checkpoint: Some(ckpt.clone()),
        batch,
        per_window,
        ..Default::default()
    };
    // Each runtime per shot, and per window.
    type Pair = (String, Box<dyn Backend>, Box<dyn Backend>);
    let mut backends: Vec<Pair> = Vec::new();
    for kind in [RuntimeKind::Tch, RuntimeKind::OrtCpu, RuntimeKind::Tract] {
        backends.push((
            kind.to_string(),
            open(kind, &options(4, false)).unwrap(),
            open(kind, &options(4, true)).unwrap(),
        ));
    }
    backends.push((
        "ort per-shot form".into(),
        Box::new(OrtBackend::open_with(&onnx, false, true, &options(4, false)).unwrap()),
        Box::new(OrtBackend::open_with(&onnx, false, true, &options(4, true)).unwrap()),
    ));
    let mut phases = lgss::phases::Phases::new();
    for (name, per_shot, per_window) in &mut backends {
        let config = per_shot.config().clone();
        for (id, movie) in &movies {
            let feats = lgss::segment::model_features(&config, movie).unwrap();
            let views: Vec<ndarray::ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
            let n = movie.n_shots();
            let seqs = sequences(0, n, config.seq_len);
            let want = per_window.run_movie(&views, n, &seqs, 4, &mut phases).unwrap();
            let torch: Vec<f32> = truth[id]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let real = |p: &[f32]| -> Vec<f32> {
                seqs.iter()
                    .enumerate()
                    .flat_map(|(i, s)| p[i * config.seq_len..i * config.seq_len + s.valid].to_vec())
                    .collect()
            };
            let d = diff(&real(&want), &torch);
            assert!(d <= bound, "{name} {id} per window vs PyTorch: {d:e}");
            for batch in [1, 3, seqs.len()] {
                let got = per_shot.run_movie(&views, n, &seqs, batch, &mut phases).unwrap();
                let d = diff(&got, &want);
                assert!(d <= bound, "{name} {id} batch {batch}: max|Δp| {d:e} > {bound:e}");
            }
        }
        // Two movies' sequences in one run, as serve's batcher makes it.
        let config = per_shot.config().clone();
        // Each movie's features, rows, and probabilities alone.
        type Part<'a> = (Vec<ndarray::ArrayView2<'a, f32>>, Vec<i64>, Vec<f32>);
        let parts: Vec<Part> = movies[..2]
            .iter()
            .map(|(_, movie)| {
                let feats = lgss::segment::model_features(&config, movie).unwrap();
                let views: Vec<ndarray::ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
                let n = movie.n_shots();
                let seqs = sequences(0, n, config.seq_len);
                let alone = per_shot.run_movie(&views, n, &seqs, 4, &mut phases).unwrap();
                (
                    views,
                    batch_rows(&seqs, &[0], &[n], config.seq_len, config.shot_num),
                    alone,
                )
            })
            .collect();
        let both: Vec<(&[ndarray::ArrayView2<f32>], &[i64])> = parts
            .iter()
            .map(|(v, r, _)| (v.as_slice(), r.as_slice()))
            .collect();
        let input = RunInput::gather(&config, &both);
        let want: Vec<f32> = parts.iter().flat_map(|(_, _, p)| p.clone()).collect();
        let d = diff(&per_shot.run_input(&input).unwrap(), &want);
        assert!(d <= bound, "{name}, two movies in a run: {d:e}");
        let d = diff(&per_window.run_input(&input).unwrap(), &want);
        assert!(d <= bound, "{name}, two movies in a per-window run: {d:e}");
    }
    let mut one = open(RuntimeKind::Tract, &options(1, false)).unwrap();
    let config = one.config().clone();
    let (_, movie) = &movies[0];
    let feats = lgss::segment::model_features(&config, movie).unwrap();
    let views: Vec<ndarray::ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
    let n = movie.n_shots();
    let seqs = sequences(0, n, config.seq_len);
    let rows = batch_rows(&seqs, &[0], &[n], config.seq_len, config.shot_num);
    let other = batch_rows(&seqs[..1], &[0], &[n], config.seq_len, config.shot_num);
    let input = RunInput::gather(&config, &[(&views, &rows), (&views, &other)]);
    let mut want = backends[2].1.run_movie(&views, n, &seqs, 4, &mut phases).unwrap();
    want.extend_from_within(..config.seq_len);
    let d = diff(&one.run_input(&input).unwrap(), &want);
    assert!(d <= bound, "tract, a plan of one sequence: {d:e}");
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
    let movie = tree_movie(id);
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
    export_onnx(&ckpt, &onnx);
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

/// `lgss serve` with an STFT model: movies of the tree, as pickles with
/// SceneSeg's STFT images as their audio, posted together (one run holds
/// several movies' sequences, each shot embedded once) come back with
/// PyTorch's probabilities within verify's fp32 bound.
#[test]
fn serve_segments_stft_movies_as_pytorch_does() {
    let dir = tempdir("sceneseg-serve");
    let ckpt = dir.join("ckpt.safetensors");
    assert!(import("model_best.pth.tar", &ckpt).status.success());
    let onnx = dir.join("model.onnx");
    export_onnx(&ckpt, &onnx);
    let truth = reference_json()["probabilities"].clone();
    let server = crate::serve::Server::start(&onnx, &["--batch", "4", "--batch-wait-ms", "200"]);
    let posts: Vec<_> = truth
        .as_object()
        .unwrap()
        .keys()
        .map(|id| {
            let movie = tree_movie(id);
            let pickle = dir.join(format!("{id}.pkl"));
            lgss::data::pickle_write::write_movie(&pickle, &movie).unwrap();
            // The threshold rule: its probabilities are the model's own.
            let url = server.url("/v1/segment?rule=local");
            let id = id.clone();
            std::thread::spawn(move || {
                let body = format!("@{}", pickle.display());
                (id, crate::serve::curl(&["--data-binary", &body, &url]))
            })
        })
        .collect();
    let bound = max_dp_bound(false);
    for post in posts {
        let (id, (status, body)) = post.join().unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let d = max_abs_diff(&answer["boundary_probabilities"], &truth[&id]);
        assert!(d <= bound, "{id}: max|Δp| {d:e} > {bound:e}");
    }
}
