use std::path::Path;

use crate::common::{assert_close, expected, fixtures, lgss, tempdir};

#[test]
fn eval_json_matches_the_script() {
    let out = lgss()
        .args(["eval", "--json"])
        .arg(fixtures().join("movies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &expected()["scores_movies_dir"];
    for key in ["AP", "mAP", "Miou", "Precision", "Recall", "F1"] {
        assert_close(key, got[key].as_f64().unwrap(), want[key].as_f64().unwrap(), 1e-9);
    }
    for (id, v) in want["AP_dict"].as_object().unwrap() {
        assert_close(
            id,
            got["AP_dict"][id].as_f64().unwrap(),
            v.as_f64().unwrap(),
            1e-9,
        );
    }
}

#[test]
fn eval_with_predictions_from_another_dir() {
    // Predictions from numpy-written files scored against torch-written truth:
    // here the same movies, so the result equals the movies' own scores.
    let dir = tempdir("pred");
    for id in ["tt0000011", "tt0000012", "tt0000013"] {
        std::fs::copy(
            fixtures().join(format!("movies/{id}.pkl")),
            dir.join(format!("{id}.pkl")),
        )
        .unwrap();
    }
    let out = lgss()
        .args(["eval", "--json", "--pred"])
        .arg(&dir)
        .arg(fixtures().join("movies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_close(
        "AP",
        got["AP"].as_f64().unwrap(),
        expected()["scores_movies_dir"]["AP"].as_f64().unwrap(),
        1e-9,
    );
}

#[test]
fn bad_input_exits_nonzero_naming_the_file() {
    let bad = fixtures().join("bad/rows_mismatch.pkl");
    let out = lgss().args(["info"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rows_mismatch.pkl") && err.contains("cast has"),
        "{err}"
    );
    let out = lgss()
        .args(["eval"])
        .arg(fixtures().join("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn synth_then_info_and_eval() {
    let dir = tempdir("cli-synth");
    let out = lgss()
        .args([
            "synth", "--movies", "2", "--seed", "1", "--size", "small", "--shots", "40..60", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = lgss()
        .args(["info", "--json"])
        .arg(dir.join("tt0000001.pkl"))
        .output()
        .unwrap();
    assert!(info.status.success());
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let shots = v["shots"].as_u64().unwrap();
    assert!((40..=60).contains(&shots), "{shots}");
    assert_eq!(v["features"].as_array().unwrap().len(), 4);
    let eval = lgss().arg("eval").arg(&dir).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    assert!(String::from_utf8_lossy(&eval.stdout).contains("tt0000002"));
}

#[test]
fn doctor_loads_onnx_runtime_or_says_why() {
    let out = lgss().arg("doctor").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.31"));
    let out = lgss()
        .args(["doctor", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/libonnxruntime.so"));
}

/// `scripts/gpu-check` runs to its end without a GPU: the CUDA steps are
/// skipped with a clear reason and the CPU rehearsal passes.
#[test]
fn gpu_check_rehearses_on_a_cpu() {
    if tch::Cuda::is_available() {
        return; // with a device it runs for real (minutes): not a unit test
    }
    let dir = tempdir("gpu-check");
    let out = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check"))
        .arg(&dir)
        .env("LGSS_BIN", env!("CARGO_BIN_EXE_lgss"))
        .env("LGSS_GPU_EPOCHS", "1")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("| skip | no CUDA device"), "{table}");
    for step in ["segment --runtime tract", "verify tch,ort-cpu,tract"] {
        assert!(
            table.lines().any(|l| l.contains(step) && l.contains("| ok ")),
            "{step}: {table}"
        );
    }
    assert!(dir.join("gpu-check.md").exists());
}
