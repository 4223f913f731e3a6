//! The pages (`segment --html`, `lgss serve`'s `/`, `train`'s
//! `curves.html`) in a real browser: Debian's headless Chromium driven by
//! `tests/page_check.py`, which reports what the page shows and did; the
//! HTML checked by the Nu Html Checker. Screenshots are kept in the target
//! folder's `tmp/page-screenshots/` (the book's pictures are these).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{lgss, synth_small, tempdir, trained_small};

/// Where screenshots are kept after the test.
pub(crate) fn screenshot(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `tests/page_check.py ARGS`: what it saw.
pub(crate) fn page_check(args: &[&OsStr]) -> Value {
    crate::common::python_script("page_check.py", args)
}

/// The Nu Html Checker's messages on `files`: none expected.
pub(crate) fn assert_valid_html(files: &[&Path]) {
    let mut args: Vec<&OsStr> = vec![OsStr::new("validate")];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let seen = page_check(&args);
    assert_eq!(seen["messages"], serde_json::json!([]), "{files:?}");
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The scene whose shots include `shot`.
fn scene_of_shot(seg: &Value, shot: u64) -> u64 {
    seg["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["first_shot"].as_u64().unwrap() <= shot && shot <= s["last_shot"].as_u64().unwrap())
        .unwrap()["index"]
        .as_u64()
        .unwrap()
}

/// What every movie page must show and do, against `seg` (the JSON
/// `segment` wrote for the same movie): no console message and no request
/// but its own files, a block and a band per scene, the model's
/// probabilities as the curve's points, click and keys moving the current
/// scene, a tooltip naming the boundary.
pub(crate) fn assert_movie_page(seen: &Value, seg: &Value, allowed: &[&str]) {
    assert_eq!(seen["console"], serde_json::json!([]), "console messages");
    for url in seen["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with("data:") || allowed.contains(&url),
            "the page asked for {url}; only {allowed:?} and data: are its own"
        );
    }
    let scenes = seg["scenes"].as_array().unwrap();
    assert_eq!(seen["scene_blocks"], scenes.len(), "scene blocks");
    assert_eq!(seen["scene_bands"], scenes.len(), "scene bands");
    let model = seg
        .get("model_probabilities")
        .unwrap_or(&seg["boundary_probabilities"]);
    assert_eq!(f64s(&seen["points"]), f64s(model), "the curve's points");
    let summary = &seen["summary"];
    assert_eq!(summary["shots"], seg["n_shots"].to_string());
    assert_eq!(summary["scenes"], scenes.len().to_string());
    for c in seen["clicks"].as_array().unwrap() {
        assert_eq!(c["current"], c["scene"], "clicked {c}");
    }
    let b = seen["hover"]["boundary"].as_u64().unwrap();
    let p = f64s(model)[b as usize];
    assert_eq!(seen["hover"]["shown"], true);
    let tip = seen["hover"]["text"].as_str().unwrap();
    assert!(
        tip.starts_with(&format!("after shot {b} · ")) && tip.contains(&format!("p {p:.4}")),
        "{tip}"
    );
    assert_eq!(seen["point_click"]["current"], scene_of_shot(seg, b + 1));
    if scenes.len() >= 3 {
        assert_eq!(seen["keys"], serde_json::json!([1, 2, 1]), "→ → ←");
    }
}

fn segment_json(onnx: &Path, input: &Path, out: &Path, extra: &[&str]) -> Value {
    let run = lgss()
        .args(["segment", "--runtime", "tract", "--model"])
        .arg(onnx)
        .arg("--out")
        .arg(out)
        .args(extra)
        .arg(input)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stem = input.file_stem().unwrap().to_str().unwrap();
    serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap()
}

/// A pickle's page: everything above, plus its scores against
/// scikit-learn's AP on the movie's own ground truth; a 3,000-shot movie's
/// page draws whole; the training curves page is valid HTML with a point
/// per epoch.
#[test]
fn a_movies_page_in_chromium() {
    let dir = tempdir("pages-movie");
    let (data, _ck, onnx) = trained_small(&dir, 6, 3, (40, 60), 2);
    let movie = data.join("tt0000006.pkl");
    let out = dir.join("scenes");
    let seg = segment_json(&onnx, &movie, &out, &["--html"]);
    let page = out.join("tt0000006.html");
    let shot = screenshot("movie-page.png");
    let seen = page_check(&[
        OsStr::new("movie"),
        page.as_os_str(),
        shot.as_os_str(),
        OsStr::new("--pickle"),
        movie.as_os_str(),
    ]);
    let page_url = seen["page_url"].as_str().unwrap().to_string();
    assert_movie_page(&seen, &seg, &[&page_url]);
    assert_eq!(seen["video"], false);
    // AP is a sum of up to n terms ≤ 1: both orders agree within n ulps.
    let n = f64s(&seg["boundary_probabilities"]).len() as f64;
    crate::common::assert_close(
        "AP against scikit-learn",
        seen["view_scores"]["AP"].as_f64().unwrap(),
        seen["sklearn"]["AP"].as_f64().unwrap(),
        n * f64::EPSILON,
    );
    assert_eq!(
        seen["summary"]["AP"],
        format!("{:.4}", seen["sklearn"]["AP"].as_f64().unwrap())
    );

    // Three hours of shots: the page still draws them all.
    let long_dir = dir.join("long");
    let long = synth_small(&long_dir, 1, 11, Some((3000, 3000)));
    let long_movie = long.join("tt0000001.pkl");
    let long_out = dir.join("long-scenes");
    let long_seg = segment_json(&onnx, &long_movie, &long_out, &["--html"]);
    assert_eq!(long_seg["n_shots"], 3000);
    let long_page = long_out.join("tt0000001.html");
    let long_shot = screenshot("movie-page-3000-shots.png");
    let seen = page_check(&[OsStr::new("movie"), long_page.as_os_str(), long_shot.as_os_str()]);
    let url = seen["page_url"].as_str().unwrap().to_string();
    assert_movie_page(&seen, &long_seg, &[&url]);
    eprintln!(
        "a 3,000-shot movie's page ({} scenes) drew in {} ms in Chromium",
        long_seg["scenes"].as_array().unwrap().len(),
        seen["render_ms"]
    );

    // The training curves: valid, and a point per epoch and series.
    let curves = dir.join("run/curves.html");
    let html = std::fs::read_to_string(&curves).unwrap();
    assert_eq!(html.matches("data-series=\"train\"").count(), 2, "two epochs");
    assert_eq!(html.matches("data-series=\"AP\"").count(), 2);
    let shot = screenshot("training-curves.png");
    let seen = page_check(&[OsStr::new("static"), curves.as_os_str(), shot.as_os_str()]);
    assert_eq!(seen["console"], serde_json::json!([]));
    assert_eq!(seen["requests"], serde_json::json!([seen["page_url"]]));
    assert_valid_html(&[&page, &long_page, &curves]);
}

/// `lgss serve`'s page: asks for the token, shows the API's refusals in
/// its words, and draws an uploaded movie's scenes exactly as `segment`
/// decides them; valid HTML.
#[test]
fn the_serve_page_uploads_a_movie() {
    let dir = tempdir("pages-serve");
    let (data, _ck, onnx) = trained_small(&dir, 6, 5, (40, 60), 1);
    let movie = data.join("tt0000005.pkl");
    let want = segment_json(&onnx, &movie, &dir.join("scenes"), &[]);
    let token = dir.join("token");
    std::fs::write(&token, "page-test-token\n").unwrap();
    let server = crate::serve::Server::start(&onnx, &["--token-file", token.to_str().unwrap()]);
    let bad = dir.join("notes.pkl");
    std::fs::write(&bad, "not a pickle").unwrap();
    let shot = screenshot("serve-page.png");
    let seen = page_check(&[
        OsStr::new("serve"),
        OsStr::new(&server.url("/")),
        movie.as_os_str(),
        bad.as_os_str(),
        OsStr::new("page-test-token"),
        shot.as_os_str(),
    ]);
    assert_eq!(seen["token_field_shown"], true);
    let api_error = |args: &[&str]| -> String {
        let (status, body) = crate::serve::curl(args);
        let v: Value = serde_json::from_slice(&body).unwrap();
        format!("{status} {}", v["error"].as_str().unwrap())
    };
    let url = server.url("/v1/segment?format=json");
    let no_token = api_error(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", movie.display()),
        &url,
    ]);
    assert_eq!(seen["no_token_error"], format!("tt0000005.pkl: {no_token}"));
    let bad_file = api_error(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer page-test-token",
        "--data-binary",
        &format!("@{}", bad.display()),
        &url,
    ]);
    assert_eq!(seen["bad_file_error"], format!("notes.pkl: {bad_file}"));
    assert_eq!(seen["console"], serde_json::json!([]), "after the refusals");
    for u in seen["requests"].as_array().unwrap() {
        assert!(u.as_str().unwrap().starts_with(&server.url("/")), "{u}");
    }
    let scenes: Vec<String> = want["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} – {}",
                s["start"].as_str().unwrap(),
                s["end"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(seen["segmentation"]["scenes"], serde_json::json!(scenes));
    let model = want
        .get("model_probabilities")
        .unwrap_or(&want["boundary_probabilities"]);
    assert_eq!(f64s(&seen["segmentation"]["points"]), f64s(model));
    let page = dir.join("serve.html");
    let (status, body) = crate::serve::curl(&[&server.url("/")]);
    assert_eq!(status, 200);
    std::fs::write(&page, body).unwrap();
    assert_valid_html(&[&page]);
}
