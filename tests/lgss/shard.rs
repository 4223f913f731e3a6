//! Catalogue-scale segmentation: shards run as separate processes cover a
//! folder exactly once, `--skip-done` redoes only what another model or
//! other options made, and the shipped Slurm and Kubernetes examples use
//! flags that exist and map "invalid input" to done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lgss::data::tensor::Tensor;
use lgss::model::checkpoint::Checkpoint;

use crate::common::{lgss, run_python, tempdir};

const MOVIES: usize = 12;
const SHARDS: usize = 3;

/// `MOVIES` small synthetic movies and the fixture model exported to ONNX.
fn catalogue(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = crate::common::synth_small(dir, MOVIES, 5, None);
    let (ck, onnx) = crate::runtimes::fixture_model_files(dir);
    (data, ck, onnx)
}

fn segment(onnx: &Path, out: &Path, extra: &[&str], inputs: &[&Path]) -> Command {
    let mut c = lgss();
    c.args(["segment", "--runtime", "tract", "--json", "--model"])
        .arg(onnx)
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(inputs);
    c
}

/// The stems a `--json` summary lists under `key` ("done" or "skipped").
fn stems(summary: &serde_json::Value, key: &str) -> Vec<String> {
    summary[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stem"].as_str().unwrap().to_string())
        .collect()
}

fn summary_of(out: std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The shard of each stem by FNV-1a 64 as published, computed by Python.
fn python_shards(stems: &[String], count: usize) -> Vec<usize> {
    let code = "import sys
for s in sys.argv[2:]:
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    print(h % int(sys.argv[1]))";
    let args: Vec<PathBuf> = std::iter::once(count.to_string())
        .chain(stems.iter().cloned())
        .map(PathBuf::from)
        .collect();
    let refs: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    run_python(code, &refs)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

#[test]
fn shards_in_separate_processes_cover_a_folder_exactly_once() {
    let dir = tempdir("shard-union");
    let (data, _, onnx) = catalogue(&dir);
    let whole = summary_of(
        segment(&onnx, &dir.join("whole"), &[], &[&data])
            .output()
            .unwrap(),
    );
    let all: BTreeSet<String> = stems(&whole, "done").into_iter().collect();
    assert_eq!(all.len(), MOVIES);

    // All shards at once, into one folder, as an array job would.
    let sharded = dir.join("sharded");
    let children: Vec<_> = (0..SHARDS)
        .map(|i| {
            segment(&onnx, &sharded, &["--shard", &format!("{i}/{SHARDS}")], &[&data])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = BTreeSet::new();
    for (i, child) in children.into_iter().enumerate() {
        let summary = summary_of(child.wait_with_output().unwrap());
        assert_eq!(summary["listed"], MOVIES);
        assert!(stems(&summary, "skipped").is_empty());
        let done = stems(&summary, "done");
        // Each shard did exactly the movies the published hash gives it.
        for (stem, shard) in done.iter().zip(python_shards(&done, SHARDS)) {
            assert_eq!(shard, i, "{stem} done by shard {i}");
        }
        for stem in done {
            assert!(seen.insert(stem.clone()), "{stem} done twice");
        }
    }
    assert_eq!(seen, all);
    // The union is the unsharded run, byte for byte.
    assert_eq!(files_in(&sharded), files_in(&dir.join("whole")));
    for name in files_in(&sharded) {
        assert_eq!(
            std::fs::read(sharded.join(&name)).unwrap(),
            std::fs::read(dir.join("whole").join(&name)).unwrap(),
            "{name}"
        );
    }

    // --files-from: the same movies from a list, relative to the current folder.
    let list = dir.join("list.txt");
    let names: Vec<String> = all.iter().map(|s| format!("data/{s}.pkl")).collect();
    std::fs::write(&list, format!("# catalogue\n{}\n\n", names.join("\n"))).unwrap();
    let from_list = summary_of(
        segment(&onnx, &dir.join("listed"), &["--files-from", "list.txt"], &[])
            .current_dir(&dir)
            .output()
            .unwrap(),
    );
    assert_eq!(
        stems(&from_list, "done").into_iter().collect::<BTreeSet<_>>(),
        all
    );
}

/// A model with one weight changed: same shapes, other probabilities.
fn other_model(dir: &Path, ck: &Path) -> PathBuf {
    let mut ckpt = Checkpoint::load(ck).unwrap();
    let bias = ckpt.tensors.get_mut("bnet_place.fc2.bias").unwrap();
    let Tensor::F32(v) = bias else {
        panic!("fc2.bias is not f32")
    };
    v[1] += 0.25;
    let ck2 = dir.join("other.safetensors");
    ckpt.save(&ck2).unwrap();
    let onnx2 = dir.join("other.onnx");
    lgss::onnx::export::export_checkpoint(&ckpt, &onnx2).unwrap();
    onnx2
}

#[test]
fn skip_done_redoes_what_another_model_or_other_options_made() {
    let dir = tempdir("shard-skip");
    let (data, ck, onnx) = catalogue(&dir);
    let out = dir.join("out");
    let first = summary_of(segment(&onnx, &out, &["--skip-done"], &[&data]).output().unwrap());
    assert_eq!(stems(&first, "done").len(), MOVIES);
    let before = std::fs::read(out.join("tt0000001.json")).unwrap();

    // Same model and options: nothing to do, nothing rewritten.
    let again = summary_of(segment(&onnx, &out, &["--skip-done"], &[&data]).output().unwrap());
    assert!(stems(&again, "done").is_empty());
    assert_eq!(stems(&again, "skipped").len(), MOVIES);

    // A removed output and a damaged manifest entry: only those redone.
    std::fs::remove_file(out.join("tt0000002.json")).unwrap();
    std::fs::write(out.join("manifest/tt0000003.json"), b"{").unwrap();
    let repair = summary_of(segment(&onnx, &out, &["--skip-done"], &[&data]).output().unwrap());
    assert_eq!(stems(&repair, "done"), ["tt0000002", "tt0000003"]);

    // Another model: every movie redone, and its outputs differ.
    let onnx2 = other_model(&dir, &ck);
    let changed = summary_of(
        segment(&onnx2, &out, &["--skip-done"], &[&data])
            .output()
            .unwrap(),
    );
    assert_eq!(stems(&changed, "done").len(), MOVIES);
    assert_ne!(std::fs::read(out.join("tt0000001.json")).unwrap(), before);
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest/tt0000001.json")).unwrap()).unwrap();
    assert_eq!(entry["model_sha256"], changed["model_sha256"]);
    assert_ne!(changed["model_sha256"], first["model_sha256"]);

    // Other options: redone again.
    let threshold = summary_of(
        segment(&onnx2, &out, &["--skip-done", "--threshold", "0.4"], &[&data])
            .output()
            .unwrap(),
    );
    assert_eq!(stems(&threshold, "done").len(), MOVIES);
}

/// Every flag the examples pass to `lgss segment` exists; the Slurm
/// script, run as Slurm would, does its shard and maps exit code 3
/// ("invalid input: the rest is done") to success, and the Indexed Job
/// (no shell in the image) asks lgss for that with --allow-invalid.
#[test]
fn the_array_job_examples_use_real_flags_and_treat_invalid_input_as_done() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = lgss().args(["segment", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let slurm = std::fs::read_to_string(root.join("examples/slurm-array.sh")).unwrap();
    let call = &slurm[slurm.rfind("lgss segment").unwrap()..];
    let call = &call[..call.find("rc=$?").unwrap()];
    let slurm_flags: Vec<String> = call
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(str::to_string)
        .collect();
    assert!(
        slurm.contains("-eq 3"),
        "slurm-array.sh does not treat exit code 3 as done"
    );
    let job = std::fs::read_to_string(root.join("examples/k8s-indexed-job.yaml")).unwrap();
    let job_flags: Vec<String> = job
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| format!("--{}", f.split('=').next().unwrap_or(f)))
        .collect();
    assert!(
        job_flags.contains(&"--allow-invalid".to_string()),
        "{job_flags:?}"
    );
    for (example, flags) in [
        ("slurm-array.sh", slurm_flags),
        ("k8s-indexed-job.yaml", job_flags),
    ] {
        assert!(
            flags.iter().any(|f| f == "--shard") && flags.iter().any(|f| f == "--skip-done"),
            "{example}: {flags:?}"
        );
        for flag in flags {
            let known = help
                .lines()
                .any(|l| l.trim_start().split([' ', ',']).any(|w| w == flag));
            assert!(known, "{example}: lgss segment has no {flag}");
        }
    }

    let dir = tempdir("shard-slurm");
    let (data, _, onnx) = catalogue(&dir);
    std::fs::copy(
        crate::common::fixtures().join("bad/nan_place.pkl"),
        data.join("tt0000099.pkl"),
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lgss")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = dir.join("out");
    let mut done = 0;
    for task in 0..SHARDS {
        let run = Command::new("bash")
            .arg(root.join("examples/slurm-array.sh"))
            .args([&data, &out, &onnx])
            .env("PATH", &path)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", SHARDS.to_string())
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("LGSS_RUNTIME", "tract")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "task {task}: {err}");
        if err.contains("tt0000099.pkl") {
            assert!(err.contains("done, with invalid movies"), "{err}");
            done += 1;
        }
    }
    assert_eq!(done, 1, "the bad movie belongs to exactly one shard");
    assert_eq!(files_in(&out).len(), MOVIES);
}
