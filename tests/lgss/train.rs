//! Training on CPU: it learns, it resumes exactly, and imports PyTorch weights.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lgss::data::synth::{self, SynthSpec};
use lgss::metrics::average_precision;
use lgss::model::checkpoint::Checkpoint;
use lgss::model::Config;
use lgss::train::{train, TrainOptions};
use tch::Device;

use crate::common::{lgss, tempdir, train_small};

fn small_config() -> Config {
    Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lgss-small.toml")).unwrap()
}

fn options(data: &std::path::Path, out: &std::path::Path, config: Config) -> TrainOptions {
    TrainOptions {
        files: lgss::data::dataset::movie_files(data).unwrap(),
        config,
        out: out.to_path_buf(),
        device: Device::Cpu,
        seed: 3,
        val_movies: None,
        split: None,
        resume: None,
        stop_after_epochs: None,
        progress: std::sync::Arc::new(lgss::progress::Silent),
        profile: false,
        cuda_graph: true,
        store: None,
    }
}

#[test]
fn small_model_beats_provided_and_constant_predictions() {
    let dir = tempdir("train-learns");
    let size = SynthSpec {
        min_shots: 200,
        max_shots: 350,
        ..SynthSpec::small()
    };
    synth::write_dataset(&dir.join("data"), 21, 16, &size, &|| {}).unwrap();
    let mut config = small_config();
    config.train.epochs = 12;
    let opts = options(&dir.join("data"), &dir.join("run"), config);
    let r = train(&opts, Arc::new(AtomicBool::new(false))).unwrap();
    let test = r.test.expect("test scores");
    let provided = r.test_provided.expect("provided scores");
    // A constant predictor's AP is the positive rate of the test boundaries.
    let files = lgss::data::dataset::movie_files(&dir.join("data")).unwrap();
    let mut gt = Vec::new();
    for f in &files[files.len() - test.ap_dict.len()..] {
        let m = lgss::data::Movie::load(f, &lgss::data::Schema::any()).unwrap();
        gt.extend(m.ground_truth.unwrap());
    }
    let constant = average_precision(&gt, &vec![0.5; gt.len()]);
    assert!(
        test.ap > provided.ap + 0.1,
        "test AP {} vs provided {}",
        test.ap,
        provided.ap
    );
    assert!(
        test.ap > constant + 0.1,
        "test AP {} vs constant {constant}",
        test.ap
    );
    assert!(test.ap < 0.95, "synthetic data should stay hard (AP {})", test.ap);
    for f in [
        "best.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "curves.png",
        "test_metrics.json",
    ] {
        assert!(dir.join("run").join(f).exists(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        12
    );
}

/// Stopping mid-epoch and at an epoch boundary, then resuming, ends with
/// bit-identical weights, optimizer state and logs.
#[test]
fn resume_continues_exactly() {
    assert_resume_exact("train-resume", small_config());
}

/// The same with every recipe option on: the moving average, the dropout
/// masks and AdamW's state all continue exactly.
#[test]
fn resume_continues_exactly_with_ema_dropout_and_adamw() {
    let mut config = small_config();
    config.train.ema_decay = Some(0.9);
    config.train.lstm_input_dropout = 0.3;
    config.train.decoupled_weight_decay = true;
    config.train.weight_decay = 1e-2;
    assert_resume_exact("train-resume-recipe", config);
}

/// SceneSeg's model with its STFT audio network: BatchNorm's running
/// statistics and batch counts continue exactly too.
#[test]
fn resume_continues_exactly_with_stft_batchnorm() {
    let config =
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sceneseg-small.toml")).unwrap();
    assert_resume_exact_on("train-resume-stft", config, |data, size| {
        let size = SynthSpec {
            min_shots: 30,
            max_shots: 50,
            ..size
        };
        synth::write_dataset_as(
            synth::Layout::Scene318,
            data,
            5,
            5,
            &size,
            synth::AudioForm::Stft,
            &|| {},
        )
        .unwrap();
    });
}

fn assert_resume_exact(name: &str, config: Config) {
    assert_resume_exact_on(name, config, |data, size| {
        synth::write_dataset(data, 5, 5, &size, &|| {}).unwrap();
    });
}

fn assert_resume_exact_on(name: &str, mut config: Config, write_data: impl Fn(&Path, SynthSpec)) {
    let dir = tempdir(name);
    let size = SynthSpec {
        min_shots: 60,
        max_shots: 120,
        ..SynthSpec::small()
    };
    write_data(&dir.join("data"), size);
    config.train.epochs = 3;
    config.train.milestones = vec![1];
    let data = dir.join("data");

    let whole = options(&data, &dir.join("whole"), config.clone());
    train(&whole, Arc::new(AtomicBool::new(false))).unwrap();

    let parts = dir.join("parts");
    // Stop after the first batch of epoch 1.
    let r = train(
        &options(&data, &parts, config.clone()),
        Arc::new(AtomicBool::new(true)),
    )
    .unwrap();
    assert!(r.interrupted && r.epochs_done == 0);
    // Resume to the end of epoch 1, then to the end.
    let mut o = options(&data, &parts, config.clone());
    o.resume = Some(parts.join("last.safetensors"));
    o.stop_after_epochs = Some(1);
    let r = train(&o, Arc::new(AtomicBool::new(false))).unwrap();
    assert!(r.interrupted && r.epochs_done == 1);
    o.stop_after_epochs = None;
    let r = train(&o, Arc::new(AtomicBool::new(false))).unwrap();
    assert!(!r.interrupted && r.epochs_done == 3);

    let a = Checkpoint::load(&dir.join("whole/last.safetensors")).unwrap();
    let b = Checkpoint::load(&parts.join("last.safetensors")).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, t) in &a.tensors {
        assert!(t == &b.tensors[name], "{name} differs after resume");
    }
    assert_eq!(a.metadata, b.metadata);
    let log = |d: &str| std::fs::read_to_string(dir.join(d).join("metrics.jsonl")).unwrap();
    let strip = |s: String| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("windows_per_s");
                v
            })
            .collect()
    };
    assert_eq!(strip(log("whole")), strip(log("parts")));
}

#[test]
fn import_torch_state_dict_reproduces_pytorch() {
    let (config, _) = crate::model_exact::fixture_config();
    let dir = tempdir("import");
    let mut full = small_config();
    full.model = config;
    // As models/lgss-paper.toml has it: the import must still give PyTorch's raw-feature model.
    full.model.feature_norm = lgss::model::config::FeatureNorm::Rms;
    let toml_path = dir.join("fixture.toml");
    std::fs::write(&toml_path, full.to_toml().unwrap()).unwrap();
    let import = |extra: &[&str], out: &Path| {
        let status = lgss()
            .arg("import-torch")
            .arg(crate::common::fixtures().join("lgss-tiny/weights.safetensors"))
            .args(extra)
            .arg("--config")
            .arg(&toml_path)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    let out = dir.join("ckpt.safetensors");
    import(&[], &out);
    let ckpt = Checkpoint::load(&out).unwrap();
    let model = lgss::model::checkpoint::model_from_checkpoint(&ckpt, Device::Cpu).unwrap();
    let io = crate::model_exact::fixture_io();
    let logits = tch::no_grad(|| model.forward(&crate::model_exact::fixture_inputs(&io)).logits);
    let d = (&logits - &io.tch("logits").unwrap())
        .abs()
        .max()
        .double_value(&[]);
    assert!(d <= 1e-5, "imported model's logits differ by {d}");
    assert_eq!(
        ckpt.config().unwrap().model.feature_norm,
        lgss::model::config::FeatureNorm::None
    );
    // A PyTorch model trained on unit-RMS features says so.
    let rms = dir.join("rms.safetensors");
    import(&["--feature-norm", "rms"], &rms);
    assert_eq!(
        Checkpoint::load(&rms)
            .unwrap()
            .config()
            .unwrap()
            .model
            .feature_norm,
        lgss::model::config::FeatureNorm::Rms
    );
    // A config that does not fit the weights is a clear error.
    let wrong = dir.join("wrong.toml");
    let mut other = small_config();
    other.model.sim_channel = 8;
    std::fs::write(&wrong, other.to_toml().unwrap()).unwrap();
    let bad = lgss()
        .arg("import-torch")
        .arg(crate::common::fixtures().join("lgss-tiny/weights.safetensors"))
        .args(["--out", "/tmp/lgss-never-written.safetensors", "--config"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("shape"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Ctrl-C during `lgss train` stops with a checkpoint and a resume hint;
/// resuming from it finishes the run.
#[test]
fn ctrl_c_stops_with_a_resumable_checkpoint() {
    let dir = tempdir("train-sigint");
    let size = SynthSpec {
        min_shots: 300,
        max_shots: 400,
        ..SynthSpec::small()
    };
    synth::write_dataset(&dir.join("data"), 9, 6, &size, &|| {}).unwrap();
    let run = dir.join("run");
    let child = train_small(&dir.join("data"), &run, 1000)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then interrupt.
    let started = std::time::Instant::now();
    while !run.join("last.safetensors").exists() {
        assert!(started.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let ckpt = Checkpoint::load(&run.join("last.safetensors")).unwrap();
    let epoch: usize = ckpt.meta("epoch").unwrap().unwrap();
    assert!(epoch < 1000);
    // Resuming (with the checkpoint's own config) continues from there.
    let mut o = options(&dir.join("data"), &run, small_config());
    o.resume = Some(run.join("last.safetensors"));
    o.stop_after_epochs = Some(1);
    let r = train(&o, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(r.epochs_done, epoch + 1);
}

/// `train.decoupled_weight_decay` is `torch.optim.AdamW`: three steps with
/// the fixture's gradients. Each step rounds about six f32 operations, each
/// off by at most half an ulp of its result, so after step k an element may
/// differ by the sum over steps of 8 ulps of the parameter and of the
/// update it took (the fixture's own |Δp|), and no more.
#[test]
fn decoupled_weight_decay_is_torch_adamw() {
    let j = json_fixture("adamw/steps.json");
    let start = floats(&j["param"]);
    let param = tch::Tensor::from_slice(&start).set_requires_grad(true);
    let mut adam = lgss::train::adam::Adam::new(
        vec![("w".into(), param.shallow_clone())],
        j["lr"].as_f64().unwrap(),
        j["weight_decay"].as_f64().unwrap(),
    );
    adam.decoupled = true;
    let ulp = f32::EPSILON as f64;
    let mut tolerance = vec![0.0f64; start.len()];
    let mut previous = start.clone();
    for (g, want) in j["grads"]
        .as_array()
        .unwrap()
        .iter()
        .zip(j["after"].as_array().unwrap())
    {
        let g = tch::Tensor::from_slice(&floats(g));
        adam.zero_grad();
        // d/dw Σ w·g = g.
        (&param * &g).sum(tch::Kind::Float).backward();
        adam.step().unwrap();
        let want = floats(want);
        let got: Vec<f32> = Vec::try_from(&param.detach()).unwrap();
        for i in 0..want.len() {
            tolerance[i] += 8.0 * ulp * (want[i].abs() as f64 + (want[i] - previous[i]).abs() as f64);
            let d = (got[i] as f64 - want[i] as f64).abs();
            assert!(
                d <= tolerance[i],
                "element {i}: {} vs torch {} (tolerance {})",
                got[i],
                want[i],
                tolerance[i]
            );
        }
        // The fixture's step moved the weights.
        assert!(want.iter().zip(&previous).any(|(a, b)| a != b));
        previous = want;
    }
}

/// The fused kernel (what training uses on CUDA; libtorch has the same on
/// the CPU) against PyTorch's own `fused=True` and `foreach=False` runs of
/// Adam and AdamW, four steps on two parameters
/// (`fixtures/make_fused_adam.py`). The per-tensor path is PyTorch's to the
/// bit. The fused one rounds differently (bias corrections on the device,
/// its own operation order): each step may differ by a few f32 roundings of
/// the update, ≤ (10 + 3s)·u·|Δp| at step s (about ten roundings per
/// update, and the moments' own errors growing by ≤ 3u a step), plus one
/// rounding of the sum p + Δp: u·|p|. Summed over the steps so far.
#[test]
fn fused_adam_is_torchs_fused_step_within_its_rounding() {
    use lgss::train::adam::{Adam, AdamKernel};
    let j = json_fixture("adam_fused/steps.json");
    let u = f32::EPSILON as f64 / 2.0;
    let starts: Vec<Vec<f32>> = j["params"].as_array().unwrap().iter().map(floats).collect();
    for (name, decoupled) in [("adam", false), ("adamw", true)] {
        for (kernel, key) in [
            (AdamKernel::Fused, "fused"),
            (AdamKernel::PerTensor, "per_tensor"),
        ] {
            let params: Vec<tch::Tensor> = starts
                .iter()
                .map(|p| tch::Tensor::from_slice(p).set_requires_grad(true))
                .collect();
            let named = params
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), p.shallow_clone()))
                .collect();
            let mut adam = Adam::new(
                named,
                j["lr"].as_f64().unwrap(),
                j["weight_decay"].as_f64().unwrap(),
            );
            adam.decoupled = decoupled;
            adam.kernel = kernel;
            let mut tolerance: Vec<Vec<f64>> = starts.iter().map(|p| vec![0.0; p.len()]).collect();
            let mut previous = starts.clone();
            for (s, (grads, want)) in j["grads"]
                .as_array()
                .unwrap()
                .iter()
                .zip(j[name][key].as_array().unwrap())
                .enumerate()
            {
                adam.zero_grad();
                let mut total = tch::Tensor::from(0.0f32);
                for (p, g) in params.iter().zip(grads.as_array().unwrap()) {
                    // d/dw Σ w·g = g.
                    total += (p * tch::Tensor::from_slice(&floats(g))).sum(tch::Kind::Float);
                }
                total.backward();
                adam.step().unwrap();
                for (k, (p, want)) in params.iter().zip(want.as_array().unwrap()).enumerate() {
                    let want = floats(want);
                    let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
                    for i in 0..want.len() {
                        let step = (want[i] - previous[k][i]).abs() as f64;
                        tolerance[k][i] +=
                            (10.0 + 3.0 * (s + 1) as f64) * u * step + u * want[i].abs() as f64;
                        let d = (got[i] as f64 - want[i] as f64).abs();
                        let allowed = tolerance[k][i];
                        assert!(
                            d <= allowed,
                            "{name} {key} step {} p{k}[{i}]: {} vs torch {} (allowed {allowed})",
                            s + 1,
                            got[i],
                            want[i]
                        );
                    }
                    previous[k] = want;
                }
            }
        }
    }
}

fn json_fixture(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(crate::common::fixtures().join(name)).unwrap()).unwrap()
}

/// A JSON array of numbers as f32s (the fixtures' f32 values, written exactly).
fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A run whose validation AP stops improving ends `early_stop_patience`
/// epochs after its best, says so on its last `metrics.jsonl` line, is
/// still scored on the test movies, and resuming it trains nothing more.
/// (lr 1e-12 moves no f32 weight of this size, so AP plateaus at once.)
#[test]
fn early_stopping_ends_on_a_plateau() {
    let dir = tempdir("train-early-stop");
    let size = SynthSpec {
        min_shots: 60,
        max_shots: 120,
        ..SynthSpec::small()
    };
    synth::write_dataset(&dir.join("data"), 5, 5, &size, &|| {}).unwrap();
    let mut config = small_config();
    config.train.epochs = 6;
    config.train.lr = 1e-12;
    config.train.early_stop_patience = Some(1);
    let opts = options(&dir.join("data"), &dir.join("run"), config);
    let r = train(&opts, Arc::new(AtomicBool::new(false))).unwrap();
    assert!(r.stopped_early && !r.interrupted, "{:?}", r.history);
    assert!(r.epochs_done < 6);
    assert_eq!(r.epochs_done, r.best_epoch + 1);
    assert!(r.test.is_some() && r.test_global.is_some());
    let best = r
        .history
        .iter()
        .map(|l| l.val_ap)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(r.history[r.best_epoch - 1].val_ap, best);
    let log = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let stops: Vec<bool> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["stopped_early"] == true)
        .collect();
    assert_eq!(stops.len(), r.epochs_done);
    assert_eq!(stops.iter().filter(|&&s| s).count(), 1);
    assert!(stops[r.epochs_done - 1]);
    let mut again = opts.clone();
    again.resume = Some(dir.join("run/last.safetensors"));
    let r2 = train(&again, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(r2.epochs_done, r.epochs_done);
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap(),
        log
    );
}

/// Peak resident memory (kB) of `lgss args…`, measured by Python's
/// `resource` as the kernel counts it for the one child it ran; its
/// stdout goes to `stdout`, its stderr comes back.
fn lgss_peak_rss_kb(args: &[&std::ffi::OsStr], stdout: &Path) -> (u64, String) {
    let code = r#"
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    r = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)
sys.stderr.buffer.write(r.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
"#;
    let out = std::process::Command::new(crate::common::python())
        .arg("-c")
        .arg(code)
        .arg(stdout)
        .arg(env!("CARGO_BIN_EXE_lgss"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(), err)
}

/// `train --max-memory` on a scene318 tree with STFT audio whose features
/// are larger than the limit: the store is built and read a batch at a
/// time, the run gives in-memory training's checkpoint bit for bit and its
/// scores, and its peak resident memory stays below in-memory training's
/// by at least half of what it did not hold (features − limit). A limit
/// that cannot hold two batches is refused, naming the flag, before
/// anything is built.
#[test]
fn training_from_a_feature_store_is_bit_identical_in_bounded_memory() {
    let dir = tempdir("train-store");
    let tree = dir.join("tree");
    let out = lgss()
        .args([
            "synth", "--layout", "scene318", "--audio", "stft", "--size", "small",
        ])
        .args(["--shots", "150..250", "--movies", "20", "--seed", "3", "--out"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sceneseg-small.toml");
    let run = |name: &str, extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec!["train".into(), "--data".into(), tree.clone().into()];
        args.extend([
            "--config".into(),
            config.clone().into(),
            "--epochs".into(),
            "1".into(),
        ]);
        args.extend(["--json".into(), "--out".into(), dir.join(name).into()]);
        args.extend(extra.iter().map(Into::into));
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        lgss_peak_rss_kb(&args, &dir.join(format!("{name}.json")))
    };
    let limit: u64 = 160 << 20;
    let store = dir.join("store");
    let store_flag = store.to_str().unwrap();
    let (in_memory, _) = run("memory", &[]);
    let (streamed, log) = run(
        "store",
        &["--max-memory", "160MiB", "--feature-store", store_flag],
    );
    assert!(log.contains("feature store") && log.contains("built"), "{log}");
    let features: u64 = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "f32"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        features > 2 * limit,
        "the tree's features ({features} B) must exceed the limit"
    );

    let (a, b) = (
        Checkpoint::load(&dir.join("memory/last.safetensors")).unwrap(),
        Checkpoint::load(&dir.join("store/last.safetensors")).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors, "the same weights, bit for bit");
    let summary = |name: &str| {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let mut j: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = j.as_object_mut().unwrap();
        for key in ["run", "best_checkpoint", "last_checkpoint"] {
            o.remove(key);
        }
        for epoch in o["history"].as_array_mut().unwrap() {
            let e = epoch.as_object_mut().unwrap();
            e.remove("seconds");
            e.remove("windows_per_s");
        }
        j
    };
    assert_eq!(summary("memory"), summary("store"));
    // kB as the kernel reports them.
    eprintln!("peak RSS: {in_memory} kB in memory, {streamed} kB from the store; features {features} B");
    let saved = (in_memory as i64 - streamed as i64) * 1024;
    assert!(
        saved >= (features - limit) as i64 / 2,
        "peak RSS {in_memory} kB in memory, {streamed} kB from the store, features {features} B"
    );

    let out = lgss()
        .args(["train", "--data"])
        .arg(&tree)
        .arg("--config")
        .arg(&config)
        .args(["--max-memory", "1MiB", "--feature-store"])
        .arg(dir.join("small-store"))
        .arg("--out")
        .arg(dir.join("small"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--max-memory 1.0 MiB"),
        "{err}"
    );
    assert!(
        !dir.join("small-store").exists() && !dir.join("small").exists(),
        "nothing written"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
