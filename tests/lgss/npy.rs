//! The `.npy` reader against files written by real numpy
//! (`tests/fixtures/make_npy.py`): every format version and float type
//! numpy writes is read to the bit, everything else is refused by name.

use lgss::data::npy;
use lgss::data::tensor::DType;

use crate::common::fixtures;

#[test]
fn npy_files_written_by_numpy_read_exactly_and_others_are_refused() {
    let dir = fixtures().join("npy");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let read = expected["read"].as_object().unwrap();
    assert!(read.len() >= 6);
    for (name, want) in read {
        let t = npy::load(&std::fs::read(dir.join(name)).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dtype = match want["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            "float64" => DType::F64,
            other => panic!("{other}"),
        };
        assert_eq!(t.dtype(), dtype, "{name}");
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        // float32 values widen to float64 exactly, so both compare with ==.
        let got: Vec<f64> = t.to_f64().iter().copied().collect();
        let want: Vec<f64> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, want, "{name}");
    }
    let refused = expected["refused"].as_object().unwrap();
    assert!(refused.len() >= 6);
    for (name, reason) in refused {
        let err = npy::load(&std::fs::read(dir.join(name)).unwrap())
            .expect_err(name)
            .to_string();
        assert!(err.contains(reason.as_str().unwrap()), "{name}: {err}");
    }
}
