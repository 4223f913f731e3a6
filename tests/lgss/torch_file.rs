//! `torch.save` files through the inert reader, against what torch wrote
//! (`tests/fixtures/torch/`, made by `make_torch_checkpoints.py`).

use lgss::data::pickle::load_state_dict;
use lgss::data::tensor::{DType, Tensor};

use crate::common::fixtures;

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("torch/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn both_formats_read_as_torch_wrote_them() {
    let expected = expected();
    for file in [
        "dataparallel_zip.pth.tar",
        "dataparallel_legacy.pth.tar",
        "views_zip.pt",
        "views_legacy.pt",
    ] {
        let bytes = std::fs::read(fixtures().join("torch").join(file)).unwrap();
        assert!(lgss::data::pickle::is_torch_save(&bytes), "{file}");
        let state = load_state_dict(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = expected[file].as_object().unwrap();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = want.keys().map(String::as_str).collect();
        assert_eq!(
            names.iter().copied().collect::<std::collections::BTreeSet<_>>(),
            want_names.iter().copied().collect(),
            "{file}"
        );
        for (name, t) in &state {
            let w = &want[name];
            let dtype = match t.dtype() {
                DType::F32 => "float32",
                DType::F64 => "float64",
                DType::I64 => "int64",
                other => panic!("{file} {name}: {other:?}"),
            };
            assert_eq!(dtype, w["dtype"], "{file} {name}");
            let shape: Vec<u64> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(
                t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>(),
                shape,
                "{file} {name}"
            );
            let values: Vec<f64> = match t {
                Tensor::I64(a) => a.iter().map(|&v| v as f64).collect(),
                _ => t.to_f64().iter().copied().collect(),
            };
            let want_values: Vec<f64> = w["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            // Exact: f32 values widen to f64 without rounding, as json holds them.
            assert_eq!(values, want_values, "{file} {name}");
        }
    }
}

/// What is not a `torch.save` file is not taken for one: a safetensors
/// checkpoint, a plain pickle.
#[test]
fn other_files_are_not_taken_for_torch_saves() {
    let safetensors = std::fs::read(fixtures().join("lgss-tiny/weights.safetensors")).unwrap();
    let pickle = std::fs::read(fixtures().join("movies/tt0000011.pkl")).unwrap();
    for (what, bytes) in [("safetensors", safetensors), ("a movie pickle", pickle)] {
        assert!(!lgss::data::pickle::is_torch_save(&bytes), "{what}");
    }
}

#[test]
fn a_checkpoint_carrying_another_global_is_refused_by_name() {
    let bytes = std::fs::read(fixtures().join("torch/evil.pth.tar")).unwrap();
    let err = load_state_dict(&bytes).unwrap_err().to_string();
    assert!(err.contains("posix.system"), "{err}");
    assert!(!std::path::Path::new("/tmp/lgss-torch-fixture-executed").exists());
}

#[test]
fn damaged_checkpoints_are_refused_with_the_problem() {
    let zip = std::fs::read(fixtures().join("torch/dataparallel_zip.pth.tar")).unwrap();
    let legacy = std::fs::read(fixtures().join("torch/dataparallel_legacy.pth.tar")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated zip", zip[..zip.len() / 2].to_vec(), "zip"),
        (
            "truncated legacy",
            legacy[..legacy.len() - 9].to_vec(),
            "truncated",
        ),
        ("legacy without magic", legacy[14..].to_vec(), ""),
        ("empty", Vec::new(), "empty"),
    ];
    for (what, bytes, needle) in cases {
        let err = load_state_dict(&bytes).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(needle), "{what}: {err}");
    }
}
