//! What an inference-only build (`--no-default-features --features tract`,
//! no libtorch, no Python) must do, checked against PyTorch's own outputs
//! for the `lgss-tiny` fixture: export from a safetensors checkpoint,
//! segment and verify with tract; commands and runtimes it was not built
//! with fail naming the feature that builds them. Runs in every build.

use std::path::{Path, PathBuf};

mod support;
use support::{export_onnx, lgss, tempdir};

use lgss::data::movie::Modality;
use lgss::model::checkpoint::Checkpoint;
use lgss::model::Config;
use lgss::runtime::{open, Backend, RuntimeKind, RuntimeOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The PyTorch fixture's weights as an lgss checkpoint (its config is
/// `models/lgss-small.toml`'s model: the same widths and sizes).
fn fixture_checkpoint(dir: &Path) -> PathBuf {
    let tiny = root().join("tests/fixtures/lgss-tiny");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("model.json")).unwrap()).unwrap();
    let config = Config::load(&root().join("models/lgss-small.toml")).unwrap();
    assert_eq!(
        config.model.sim_channel as u64,
        json["sim_channel"].as_u64().unwrap()
    );
    assert_eq!(
        config.model.lstm_hidden_size as u64,
        json["lstm_hidden_size"].as_u64().unwrap()
    );
    assert_eq!(
        config.model.feature_dims.place as u64,
        json["feature_dims"]["place"].as_u64().unwrap()
    );
    let mut ckpt = Checkpoint::load(&tiny.join("weights.safetensors")).unwrap();
    ckpt.metadata.insert("config".into(), config.to_toml().unwrap());
    let path = dir.join("tiny.safetensors");
    ckpt.save(&path).unwrap();
    path
}

/// `lgss export` of the fixture checkpoint into `dir`.
fn exported_fixture(dir: &Path) -> PathBuf {
    let ck = fixture_checkpoint(dir);
    let onnx = dir.join("tiny.onnx");
    export_onnx(&ck, &onnx);
    onnx
}

#[test]
fn export_and_tract_reproduce_pytorch_without_libtorch() {
    let dir = tempdir("inference-only");
    let onnx = exported_fixture(&dir);

    let io = Checkpoint::load(&root().join("tests/fixtures/lgss-tiny/io.safetensors")).unwrap();
    let inputs: Vec<ndarray::Array4<f32>> = Modality::ALL
        .iter()
        .map(|m| {
            let t = &io.tensors[&format!("input.{}", m.key())];
            t.to_f32().into_dimensionality::<ndarray::Ix4>().unwrap()
        })
        .collect();
    let want: Vec<f32> = io.tensors["prob"].to_f32().into_iter().collect();
    let opts = RuntimeOptions {
        onnx: Some(onnx.clone()),
        batch: 2,
        ..Default::default()
    };
    let mut backend: Box<dyn Backend> = open(RuntimeKind::Tract, &opts).unwrap();
    assert_eq!(backend.config().sim_channel, 16);
    let views: Vec<ndarray::ArrayView4<f32>> = inputs.iter().map(|a| a.view()).collect();
    let got = backend.run(&views).unwrap();
    let d = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "tract vs PyTorch: max |Δprob| {d:e}");

    // The command line, as a user of the inference-only build runs it.
    let data = dir.join("data");
    let size = lgss::data::synth::SynthSpec {
        min_shots: 30,
        max_shots: 60,
        ..lgss::data::synth::SynthSpec::small()
    };
    lgss::data::synth::write_dataset(&data, 3, 2, &size, &|| {}).unwrap();
    let out = lgss()
        .args(["segment", "--runtime", "tract", "--model"])
        .arg(&onnx)
        .arg("--out")
        .arg(dir.join("seg"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = lgss()
        .args(["verify", "--runtimes", "tract", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// What was not built says which feature builds it.
#[test]
fn missing_features_are_named() {
    let dir = tempdir("inference-only-missing");
    if !cfg!(feature = "tch") {
        let out = lgss()
            .args(["train", "--data"])
            .arg(&dir)
            .arg("--out")
            .arg(dir.join("run"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("`tch` feature"), "{err}");
    }
    if !cfg!(feature = "ort") {
        let out = lgss()
            .args(["segment", "--runtime", "ort-cpu", "--model", "x.onnx", "y.pkl"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("`ort` feature"), "{err}");
    }
    let version = String::from_utf8_lossy(&lgss().arg("--version").output().unwrap().stdout).into_owned();
    assert!(version.contains("tract-onnx 0.23.9"), "{version}");
    assert_eq!(version.contains("tch 0.24.0"), cfg!(feature = "tch"), "{version}");
    assert_eq!(
        version.contains("ort 2.0.0-rc.15"),
        cfg!(feature = "ort"),
        "{version}"
    );
    let out = lgss().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("features"), "{text}");
    assert_eq!(
        text.contains("libtorch    not in this build"),
        !cfg!(feature = "tch"),
        "{text}"
    );
}

/// A model that records another input interface is refused by name.
#[test]
fn models_of_another_interface_are_refused() {
    use prost::Message;
    let dir = tempdir("inference-only-interface");
    let onnx = exported_fixture(&dir);
    let mut proto = tract_onnx::pb::ModelProto::decode(std::fs::read(&onnx).unwrap().as_slice()).unwrap();
    let entry = proto
        .metadata_props
        .iter_mut()
        .find(|p| p.key == "lgss.interface")
        .expect("the export records its interface");
    assert_eq!(entry.value, lgss::runtime::INTERFACE);
    entry.value = "shots-9".into();
    let other = dir.join("other.onnx");
    std::fs::write(&other, proto.encode_to_vec()).unwrap();
    let opts = RuntimeOptions {
        onnx: Some(other),
        batch: 2,
        ..Default::default()
    };
    let err = open(RuntimeKind::Tract, &opts)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("shots-9") && err.contains(lgss::runtime::INTERFACE),
        "{err}"
    );
}
