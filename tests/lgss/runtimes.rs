//! Export and inference: the exported fixture model reproduces PyTorch in
//! every runtime, passes the ONNX checker, and `verify` / `segment` agree.

use std::path::{Path, PathBuf};

use lgss::data::movie::Modality;
use lgss::model::checkpoint::Checkpoint;
use lgss::model::config::FeatureNorm;
use lgss::runtime::{open, RuntimeKind, RuntimeOptions};

use crate::common::{fixtures, lgss, run_python, tempdir};
use crate::model_exact::{fixture_config, fixture_io};

/// The fixture's PyTorch weights as a checkpoint and an exported ONNX file.
pub fn fixture_model_files(dir: &Path) -> (PathBuf, PathBuf) {
    fixture_model_files_with(dir, FeatureNorm::None)
}

/// The same weights with the config's `feature_norm` set to `norm`.
fn fixture_model_files_with(dir: &Path, norm: FeatureNorm) -> (PathBuf, PathBuf) {
    let (mut model, _) = fixture_config();
    model.feature_norm = norm;
    let mut config =
        lgss::model::Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lgss-small.toml"))
            .unwrap();
    config.model = model;
    let weights =
        Checkpoint::from_bytes(&std::fs::read(fixtures().join("lgss-tiny/weights.safetensors")).unwrap())
            .unwrap();
    let mut ckpt = Checkpoint::default();
    for (k, v) in weights.tensors {
        ckpt.tensors.insert(k, v);
    }
    ckpt.metadata.insert("config".into(), config.to_toml().unwrap());
    let stem = match norm {
        FeatureNorm::None => "fixture",
        FeatureNorm::Rms => "fixture-rms",
    };
    let ck = dir.join(format!("{stem}.safetensors"));
    ckpt.save(&ck).unwrap();
    let onnx = dir.join(format!("{stem}.onnx"));
    lgss::onnx::export::export_checkpoint(&ckpt, &onnx).unwrap();
    (ck, onnx)
}

/// Every runtime (tract with its window max in Rust and without) gives
/// PyTorch's `prob` for the inputs in `io`, and the model's own config.
fn assert_runtimes_reproduce(ck: &Path, onnx: &Path, io: &Checkpoint) {
    use lgss::runtime::tract::TractBackend;
    use lgss::runtime::Backend;

    let config = Checkpoint::load(ck).unwrap().config().unwrap().model;
    let inputs = window_inputs(io);
    let views: Vec<ndarray::ArrayView4<f32>> = inputs.iter().map(|a| a.view()).collect();
    let want: Vec<f32> = io.tensors["prob"].to_f32().into_iter().collect();
    let mut backends: Vec<(String, Box<dyn Backend>)> = Vec::new();
    for kind in [RuntimeKind::Tch, RuntimeKind::OrtCpu, RuntimeKind::Tract] {
        let opts = RuntimeOptions {
            onnx: Some(onnx.to_path_buf()),
            checkpoint: Some(ck.to_path_buf()),
            batch: 2,
            ..Default::default()
        };
        backends.push((kind.to_string(), open(kind, &opts).unwrap()));
    }
    let whole = TractBackend::open_with(
        onnx,
        &RuntimeOptions {
            batch: 2,
            ..Default::default()
        },
        false,
    )
    .unwrap();
    backends.push(("tract, whole graph".into(), Box::new(whole)));
    // A plan for fewer sequences than a run brings runs them in its chunks.
    let chunked = TractBackend::open(
        onnx,
        &RuntimeOptions {
            batch: 1,
            ..Default::default()
        },
    )
    .unwrap();
    backends.push(("tract, a plan of 1 sequence".into(), Box::new(chunked)));
    assert!(
        inputs[0].shape()[0] > 1,
        "the fixture's batch must be larger than 1"
    );
    for (name, mut backend) in backends {
        assert_eq!(backend.config(), &config, "{name}");
        let got = backend.run(&views).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-5, "{name}: max |Δprob| {d:e}");
    }
}

/// The fixture's model inputs, one `[batch, seq_len, shot_num, D]` array per modality.
fn window_inputs(io: &Checkpoint) -> Vec<ndarray::Array4<f32>> {
    Modality::ALL
        .iter()
        .map(|m| {
            let t = &io.tensors[&format!("input.{}", m.key())];
            t.to_f32().into_dimensionality::<ndarray::Ix4>().unwrap()
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max)
}

#[test]
fn exported_fixture_reproduces_pytorch_in_every_runtime() {
    let dir = tempdir("rt-fixture");
    let (ck, onnx) = fixture_model_files(&dir);
    assert_runtimes_reproduce(&ck, &onnx, &fixture_io());
}

/// `feature_norm = "rms"` against PyTorch (`lgss-tiny/rms.safetensors`, made
/// by `tests/fixtures/make_lgss_tiny_rms.py`): shot rows scaled by 1e-3..1e3
/// and some all-zero give PyTorch's probabilities in every runtime.
#[test]
fn rms_feature_norm_reproduces_pytorch_in_every_runtime() {
    use lgss::runtime::Backend;

    let dir = tempdir("rt-rms");
    let (ck, onnx) = fixture_model_files_with(&dir, FeatureNorm::Rms);
    let io = Checkpoint::from_bytes(&std::fs::read(fixtures().join("lgss-tiny/rms.safetensors")).unwrap())
        .unwrap();
    assert_runtimes_reproduce(&ck, &onnx, &io);
    // The raw model on these inputs is far from PyTorch's: the check can fail.
    let (_, raw) = fixture_model_files(&dir);
    let mut plain = lgss::runtime::tract::TractBackend::open(
        &raw,
        &RuntimeOptions {
            batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let inputs = window_inputs(&io);
    let views: Vec<ndarray::ArrayView4<f32>> = inputs.iter().map(|a| a.view()).collect();
    assert!(
        max_abs_diff(
            &plain.run(&views).unwrap(),
            io.tensors["prob"].to_f32().as_slice().unwrap()
        ) > 1e-3
    );
}

#[test]
fn onnx_checker_and_python_onnxruntime_accept_the_export() {
    let dir = tempdir("rt-python");
    let (_, onnx) = fixture_model_files(&dir);
    let (_, rms) = fixture_model_files_with(&dir, FeatureNorm::Rms);
    let code = r#"
import sys, json, struct
import numpy as np, onnx, onnxruntime as ort
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
assert m.ir_version <= 10 and m.opset_import[0].version == 17
meta = {p.key: p.value for p in m.metadata_props}
assert meta['lgss.modalities'] == 'place,cast,action,audio', meta
# Every initializer once: the file is about 4 bytes a parameter.
names = [i.name for i in m.graph.initializer]
assert len(names) == len(set(names))
b = open(sys.argv[2], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
def get(k):
    v = h[k]; s, e = v['data_offsets']
    return np.frombuffer(b[8 + n + s:8 + n + e], dtype={'F32': np.float32, 'I64': np.int64}[v['dtype']]).reshape(v['shape'])
s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
prob, logits = s.run(['prob', 'logits'], {k: get('input.' + k) for k in ['place', 'cast', 'action', 'audio']})
assert prob.shape == (2, 10) and logits.shape == (2, 10, 2)
print(float(np.abs(prob.reshape(-1) - get('prob')).max()))
if 'logits' in h:
    print(float(np.abs(logits.reshape(-1, 2) - get('logits')).max()))
"#;
    let mut out = run_python(code, &[&onnx, &fixtures().join("lgss-tiny/io.safetensors")]);
    // The feature_norm = "rms" export: standard too, and PyTorch's numbers in Python's onnxruntime.
    out += &run_python(code, &[&rms, &fixtures().join("lgss-tiny/rms.safetensors")]);
    let diffs: Vec<f64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert!(
        diffs.iter().all(|&d| d <= 1e-5),
        "python onnxruntime vs PyTorch: {diffs:?}"
    );
    // About 4 bytes a parameter: the weights (less the window-conv channels
    // that can never win) plus at most 32 KiB of graph and metadata.
    let weights = Checkpoint::load(&fixtures().join("lgss-tiny/weights.safetensors")).unwrap();
    let n: f64 = weights.tensors.values().map(|t| t.numel() as f64).sum();
    let params = std::fs::metadata(&onnx).unwrap().len() as f64 / 4.0;
    assert!(
        (0.95 * n..n + 8192.0).contains(&params),
        "{params} parameters' worth of bytes for {n} parameters"
    );
}

#[test]
fn verify_segment_and_write_pkl_agree() {
    let dir = tempdir("rt-verify");
    let (data, ck, onnx) = crate::common::trained_small(&dir, 6, 8, (37, 131), 2);
    // Batch 3 leaves partial batches, which tract pads.
    let out = lgss()
        .args([
            "verify",
            "--json",
            "--tolerance",
            "1e-6",
            "--batch",
            "3",
            "--runtimes",
            "tch,ort-cpu,tract",
            "--data",
        ])
        .arg(&data)
        .arg("--model")
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&ck)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(r["max_abs_dp"].as_f64().unwrap() < 1e-4, "{r}");
    }
    // The default rule: global grouping, whose cuts every runtime decides alike here.
    assert_eq!(report["rule"], "global");
    for r in rows {
        assert_eq!(r["global"]["differing_cuts"].as_array().unwrap().len(), 0, "{r}");
    }
    let ap = rows[1]["global"]["scores"]["AP"].as_f64().unwrap();
    let miou = rows[1]["global"]["scores"]["Miou"].as_f64().unwrap();

    // Segment with ort-cpu (by the default rule), write the pickles back,
    // read them with Python, score them: verify's grouped row.
    let seg = dir.join("seg");
    let out = lgss()
        .args(["segment", "--runtime", "ort-cpu", "--write-pkl", "--model"])
        .arg(&onnx)
        .arg("--out")
        .arg(&seg)
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = r#"
import pickle, sys, glob, torch
for f in sorted(glob.glob(sys.argv[1] + '/tt*.pkl')):
    d = pickle.load(open(f, 'rb'))
    p = d['scene_transition_boundary_prediction']
    assert p.dtype == torch.float32 and p.shape[0] == d['place'].shape[0] - 1
print('ok')
"#;
    assert_eq!(run_python(check, &[&seg]).trim(), "ok");
    let out = lgss().args(["eval", "--json"]).arg(&seg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Stored as float32, as the challenge files are: equal to the verify row.
    assert!(
        (s["AP"].as_f64().unwrap() - ap).abs() <= 1e-6,
        "{} vs {ap}",
        s["AP"]
    );
    assert!(
        (s["Miou"].as_f64().unwrap() - miou).abs() <= 1e-9,
        "{} vs {miou}",
        s["Miou"]
    );

    // Scenes tile the movie: consecutive shots and frames, first at 0.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seg.join("tt0000001.json")).unwrap()).unwrap();
    let scenes = json["scenes"].as_array().unwrap();
    let n = json["n_shots"].as_u64().unwrap();
    assert_eq!(scenes[0]["first_shot"], 0);
    assert_eq!(scenes[0]["first_frame"], 0);
    assert_eq!(scenes.last().unwrap()["last_shot"].as_u64().unwrap(), n - 1);
    for w in scenes.windows(2) {
        assert_eq!(
            w[1]["first_shot"].as_u64().unwrap(),
            w[0]["last_shot"].as_u64().unwrap() + 1
        );
        assert_eq!(
            w[1]["first_frame"].as_i64().unwrap(),
            w[0]["last_frame"].as_i64().unwrap() + 1
        );
    }
    let probs = json["boundary_probabilities"].as_array().unwrap();
    assert_eq!(probs.len() as u64, n - 1);
    let cuts = probs.iter().filter(|p| p.as_f64().unwrap() >= 0.5).count();
    assert_eq!(scenes.len(), cuts + 1);
}

#[test]
fn unavailable_runtime_fails_verify() {
    let dir = tempdir("rt-missing");
    let (_, onnx) = fixture_model_files(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A movie of the fixture model's widths.
    let movie = lgss::data::synth::movie(3, 0, &lgss::data::synth::SynthSpec::small());
    lgss::data::pickle_write::write_movie(&data.join(format!("{}.pkl", movie.imdb_id)), &movie).unwrap();
    let out = lgss()
        .args(["verify", "--runtimes", "ort-cpu,ort-cuda", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if tch::Cuda::is_available() {
        return; // on a GPU machine ort-cuda may well be there
    }
    assert!(err.contains("ort-cuda"), "{err}");
    assert!(stdout.contains("unavailable"), "{stdout}");
}

/// The tract runtime computes each branch's window max in Rust instead of
/// tract's skinny MatMuls: the same function. Checked element by element
/// against libtorch's window max (the training code's) within the rounding
/// of a (k+1)-term f32 sum, and end to end against tract running the whole
/// ONNX graph.
#[test]
fn tract_window_max_in_rust_equals_the_onnx_subgraph() {
    use lgss::runtime::tract::{window_max, TractBackend, WindowConv};
    use lgss::runtime::Backend;

    let dir = tempdir("rt-wmax");
    let (ck, onnx) = fixture_model_files(&dir);
    let ckpt = Checkpoint::load(&ck).unwrap();
    let (c, k, d, n) = (16usize, 4usize, 64usize, 37usize);
    let w: Vec<f32> = ckpt.tensors["bnet_place.bnet.conv1.weight"]
        .to_f32()
        .into_iter()
        .collect();
    let b: Vec<f32> = ckpt.tensors["bnet_place.bnet.conv1.bias"]
        .to_f32()
        .into_iter()
        .collect();
    let x: Vec<f32> = (0..n * k * d)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    let got = window_max(
        &WindowConv {
            w: w.clone(),
            b: b.clone(),
            k,
        },
        &x,
        d,
        2,
    );
    let xt = tch::Tensor::from_slice(&x).view([n as i64, k as i64, d as i64]);
    let want = tch::no_grad(|| {
        lgss::model::lgss::window_max(
            &xt,
            &tch::Tensor::from_slice(&w).view([c as i64, k as i64]),
            &tch::Tensor::from_slice(&b),
            lgss::model::lgss::Tiles::CPU,
        )
    });
    let want = Vec::<f32>::try_from(want.flatten(0, -1)).unwrap();
    let u = f32::EPSILON as f64 / 2.0;
    for win in 0..n {
        for j in 0..d {
            // |Σ| rounding of k+1 terms, the largest channel's magnitudes.
            let scale = (0..c)
                .map(|ch| {
                    b[ch].abs() as f64
                        + (0..k)
                            .map(|i| (w[ch * k + i] * x[(win * k + i) * d + j]).abs() as f64)
                            .sum::<f64>()
                })
                .fold(0.0, f64::max);
            let (g, e) = (got[win * d + j] as f64, want[win * d + j] as f64);
            assert!(
                (g - e).abs() <= 2.0 * (k + 1) as f64 * u * scale,
                "window {win} column {j}: {g} vs {e}"
            );
        }
    }

    let io = fixture_io();
    let inputs = window_inputs(&io);
    let mut rust = TractBackend::open_with(
        &onnx,
        &RuntimeOptions {
            batch: 2,
            ..Default::default()
        },
        true,
    )
    .unwrap();
    let mut whole = TractBackend::open_with(
        &onnx,
        &RuntimeOptions {
            batch: 2,
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let views: Vec<ndarray::ArrayView4<f32>> = inputs.iter().map(|a| a.view()).collect();
    let (a, z) = (rust.run(&views).unwrap(), whole.run(&views).unwrap());
    let dp = a.iter().zip(&z).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(dp <= 1e-6, "max |Δprob| {dp:e}");
}

/// Every `--format` holds the JSON's scenes as the tools users read it with
/// see them (`tests/read_back_scenes.py`): CSV by Python's csv module,
/// WebVTT by webvtt-py, the EDL by OpenTimelineIO's CMX 3600 adapter, by
/// pycmx and by a strict CMX 3600 reading, OTIO by OpenTimelineIO; at the
/// broadcast rates, by both rules, for a movie of many scenes, a movie of
/// one scene and a movie longer than an hour; each says which rule decided.
#[test]
fn scene_formats_read_back_by_their_readers() {
    let dir = tempdir("rt-formats");
    let (ck, onnx) = fixture_model_files(&dir);
    let spec = |shots: usize| lgss::data::synth::SynthSpec {
        min_shots: shots,
        max_shots: shots,
        ..lgss::data::synth::SynthSpec::small()
    };
    let mut many = lgss::data::synth::movie(4, 0, &spec(90));
    many.imdb_id = "tt0000042".into();
    // 120 shots of 1,000 frames: 66 minutes at 30 fps.
    let mut long = lgss::data::synth::movie(6, 0, &spec(120));
    long.shot_end_frame = (1..=120).map(|i| i * 1000 - 1).collect();
    long.imdb_id = "tt0000044".into();
    let mut one = lgss::data::synth::movie(5, 0, &spec(12));
    one.imdb_id = "tt0000043".into();
    // The fixture model gives every boundary 0.64 to 0.76: τ 0.3 cuts
    // them all, τ 0.9 none (the one-scene movie).
    let sets = [("cut", 0.3, vec![many, long]), ("one", 0.9, vec![one])];
    let mut specs = Vec::new();
    for (name, threshold, movies) in &sets {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        for m in movies {
            lgss::data::pickle_write::write_movie(&data.join(format!("{}.pkl", m.imdb_id)), m).unwrap();
        }
        for fps in ["23.976", "24", "25", "29.97", "30"] {
            for rule in ["global", "local"] {
                let out = dir.join(format!("{name}-{rule}-{fps}"));
                for format in ["json", "csv", "webvtt", "edl", "otio"] {
                    let run = lgss()
                        .args([
                            "segment",
                            "--runtime",
                            "tract",
                            "--threshold",
                            &threshold.to_string(),
                        ])
                        .args(["--fps", fps, "--format", format, "--model"])
                        .arg(&onnx)
                        .arg("--checkpoint")
                        .arg(&ck)
                        .arg("--out")
                        .arg(&out)
                        .arg(&data)
                        .args((rule == "local").then_some("--local"))
                        .output()
                        .unwrap();
                    assert!(
                        run.status.success(),
                        "{format} at {fps}: {}",
                        String::from_utf8_lossy(&run.stderr)
                    );
                }
                specs.push(format!("{fps},{rule},{}", out.display()));
            }
        }
    }
    let counts = crate::common::read_back_scenes(&specs);
    for key in ["movies", "csv", "vtt", "edl", "otio"] {
        assert_eq!(counts[key], 30, "{key}: {counts}");
    }
    assert_eq!(counts["min_scenes"], 1, "the one-scene movie: {counts}");
    assert!(counts["max_scenes"].as_u64().unwrap() > 5, "{counts}");
    assert_eq!(counts["max_end_frame"], 120_000, "{counts}");
}

/// An EDL counts timecode at broadcast rates: any other `--fps` is refused
/// before a movie is read, naming the rates; a movie past 24 hours of
/// timecode is refused by name; nothing is written either way.
#[test]
fn edl_refuses_what_timecode_cannot_count() {
    let dir = tempdir("rt-edl-refusals");
    let (ck, onnx) = fixture_model_files(&dir);
    let mut movie = lgss::data::synth::movie(
        7,
        0,
        &lgss::data::synth::SynthSpec {
            min_shots: 30,
            max_shots: 30,
            ..lgss::data::synth::SynthSpec::small()
        },
    );
    movie.imdb_id = "tt0000045".into();
    // 30 shots of 80,000 frames: 27.8 hours at 24 fps.
    movie.shot_end_frame = (1..=30).map(|i| i * 80_000 - 1).collect();
    let file = dir.join("tt0000045.pkl");
    lgss::data::pickle_write::write_movie(&file, &movie).unwrap();
    let segment = |fps: &str, out: &Path| {
        lgss()
            .args([
                "segment",
                "--runtime",
                "tract",
                "--format",
                "edl",
                "--fps",
                fps,
                "--model",
            ])
            .arg(&onnx)
            .arg("--checkpoint")
            .arg(&ck)
            .arg("--out")
            .arg(out)
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = segment("12.5", &dir.join("a"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--fps 12.5") && err.contains("29.97"),
        "{err}"
    );
    assert!(!dir.join("a").exists(), "nothing written");

    let out = segment("24", &dir.join("b"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("24 hours") && err.contains("tt0000045"),
        "{err}"
    );
    assert!(!dir.join("b/tt0000045.edl").exists(), "no EDL written");
    // 25 fps is still past 24 hours; the same movie at 30 fps is 22.2 hours.
    let out = segment("30", &dir.join("c"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let edl = std::fs::read_to_string(dir.join("c/tt0000045.edl")).unwrap();
    assert!(edl.contains(" 22:13:20:00\n"), "{edl}");
}

/// libtorch assembles a movie's windows where its shots live (on a GPU, the
/// device): the same `index_select` on the CPU gives `data::windows`' host
/// windows exactly, and tch's per-movie path the probabilities of its
/// window path, to the bit, for batches that do and do not divide the movie.
#[test]
fn tch_gathers_windows_where_the_shots_live_exactly_as_data_windows() {
    use lgss::data::windows::{batch_rows, gather_windows, sequences};
    use lgss::model::lgss::gather_windows_on;

    let (n, d, seq_len, shot_num) = (53usize, 7usize, 10usize, 8usize);
    let shots = ndarray::Array2::from_shape_fn((n, d), |(i, j)| (i * 31 + j) as f32 * 0.5 - 3.0);
    let seqs = sequences(0, n, seq_len);
    let rows = batch_rows(&seqs, &[0], &[n], seq_len, shot_num);
    let want = gather_windows(shots.view(), &rows, seq_len, shot_num);
    let t = tch::Tensor::from_slice(shots.as_slice().unwrap()).view([n as i64, d as i64]);
    let got = gather_windows_on(&t, &tch::Tensor::from_slice(&rows), seq_len, shot_num);
    let shape: Vec<i64> = want.shape().iter().map(|&x| x as i64).collect();
    assert_eq!(got.size(), shape);
    let got: Vec<f32> = Vec::try_from(got.flatten(0, -1)).unwrap();
    assert_eq!(got, want.iter().copied().collect::<Vec<f32>>());

    let dir = tempdir("rt-tch-movie");
    let (ck, _onnx) = fixture_model_files(&dir);
    let opts = RuntimeOptions {
        checkpoint: Some(ck),
        batch: 2,
        ..Default::default()
    };
    let mut tch = open(RuntimeKind::Tch, &opts).unwrap();
    let config = tch.config().clone();
    let n = 87;
    let features = shot_features(&config, n);
    let views: Vec<ndarray::ArrayView2<f32>> = features.iter().map(|f| f.view()).collect();
    let seqs = sequences(0, n, config.seq_len);
    for batch in [1, 3, seqs.len()] {
        let mut by_windows = Vec::new();
        for run in seqs.chunks(batch) {
            let rows = batch_rows(run, &[0], &[n], config.seq_len, config.shot_num);
            let inputs: Vec<ndarray::Array4<f32>> = views
                .iter()
                .map(|f| gather_windows(*f, &rows, config.seq_len, config.shot_num))
                .collect();
            let inputs: Vec<ndarray::ArrayView4<f32>> = inputs.iter().map(|a| a.view()).collect();
            by_windows.extend(tch.run(&inputs).unwrap());
        }
        let by_movie = tch
            .run_movie(&views, n, &seqs, batch, &mut lgss::phases::Phases::new())
            .unwrap();
        assert_eq!(by_movie, by_windows, "batch {batch}");
    }
}

/// ort-cuda runs the model's per-shot form (the windows gathered inside the
/// graph from features bound once, `onnx::per_shot`). The same form on the
/// CPU gives the window interface's probabilities to the bit: through
/// `run_movie` for batches that do and do not divide the movie, and through
/// `run` (windows given whole, as `lgss serve` batches them).
#[test]
fn ort_per_shot_form_gives_the_window_interfaces_probabilities() {
    use lgss::data::windows::{batch_rows, gather_windows, sequences};
    use lgss::runtime::onnxruntime::OrtBackend;
    use lgss::runtime::Backend;

    let dir = tempdir("rt-ort-per-shot");
    let (_ck, onnx) = fixture_model_files_with(&dir, FeatureNorm::Rms);
    let opts = RuntimeOptions::default();
    let mut by_windows = OrtBackend::open_with(&onnx, false, false, &opts).unwrap();
    let mut per_shot = OrtBackend::open_with(&onnx, false, true, &opts).unwrap();
    let config = by_windows.config().clone();
    let n = 87;
    let features = shot_features(&config, n);
    let views: Vec<ndarray::ArrayView2<f32>> = features.iter().map(|f| f.view()).collect();
    let seqs = sequences(0, n, config.seq_len);
    let mut phases = lgss::phases::Phases::new();
    for batch in [1, 3, seqs.len()] {
        let want = by_windows
            .run_movie(&views, n, &seqs, batch, &mut phases)
            .unwrap();
        let got = per_shot.run_movie(&views, n, &seqs, batch, &mut phases).unwrap();
        assert_eq!(got.len(), seqs.len() * config.seq_len);
        assert_eq!(got, want, "batch {batch}");
    }
    let rows = batch_rows(&seqs[2..6], &[0], &[n], config.seq_len, config.shot_num);
    let windows: Vec<ndarray::Array4<f32>> = views
        .iter()
        .map(|f| gather_windows(*f, &rows, config.seq_len, config.shot_num))
        .collect();
    let windows: Vec<ndarray::ArrayView4<f32>> = windows.iter().map(|a| a.view()).collect();
    assert_eq!(per_shot.run(&windows).unwrap(), by_windows.run(&windows).unwrap());
}

/// Per-shot features of `n` shots for each modality of `config`: fixed,
/// varied values in [-0.7, 0.7].
fn shot_features(config: &lgss::model::config::ModelConfig, n: usize) -> Vec<ndarray::Array2<f32>> {
    config
        .modalities
        .iter()
        .enumerate()
        .map(|(m, &md)| {
            ndarray::Array2::from_shape_fn((n, config.feature_dims.get(md)), |(i, j)| {
                (((i * 131 + j * 17 + m * 7) % 97) as f32 / 48.0 - 1.0) * 0.7
            })
        })
        .collect()
}
