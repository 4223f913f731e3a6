//! The full-scale rehearsal: the SceneSeg path at MovieNet's size, step by
//! step, with the `lgss` binary this bench is built beside.
//!
//! 1. `synth --layout scene318 --audio stft` of `LGSS_BENCH_MOVIES` movies
//!    (default 318, scene318's count) of 400–800 shots (mean 600: ~190,000
//!    shots at 318, MovieNet's), narrow place/cast/action features and
//!    SceneSeg's 257×90 STFT images (92.5 KB a shot, most of the data);
//! 2. `info` of the tree;
//! 3. one epoch of `train` on the CPU with `LGSS_BENCH_CONFIG` (default
//!    `models/sceneseg-small.toml`: SceneSeg's full widths do not train an
//!    epoch of this size on a CPU in hours) under `--max-memory`
//!    (`LGSS_BENCH_MAX_MEMORY`, default 2GiB), which builds the feature
//!    store, then a second run that reuses it;
//! 4. `export --onnx` and `segment --runtime ort-cpu` of the test split.
//!
//! Each step's wall time, throughput and peak resident memory (the
//! kernel's, from `wait4`), the tree's and the store's disk. Before them,
//! on a tree that fits in memory (`LGSS_BENCH_FIT_MOVIES`, default 20),
//! one epoch in memory against one from the store. Everything is written
//! under `LGSS_BENCH_DIR` (default: a temporary folder, removed after).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let movies: usize = env("LGSS_BENCH_MOVIES", "318").parse()?;
    let fit_movies: usize = env("LGSS_BENCH_FIT_MOVIES", "20").parse()?;
    let config = root.join(env("LGSS_BENCH_CONFIG", "models/sceneseg-small.toml"));
    let max_memory = env("LGSS_BENCH_MAX_MEMORY", "2GiB");
    let lgss = lgss_binary()?;
    let temp;
    let dir = match std::env::var_os("LGSS_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            temp = tempfile::Builder::new()
                .prefix("lgss-bench-full-scale")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    println!(
        "full-scale rehearsal: {movies} movies of 400-800 shots, STFT audio, {}, --max-memory {max_memory}, {} cores, in {}",
        config.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        dir.display()
    );
    let config = config.to_str().unwrap_or_default().to_string();

    // In memory against the store, on a tree that fits.
    let fit = dir.join("fit-tree");
    step(&lgss, "synth (fits in memory)", &synth_args(&fit, fit_movies))?;
    let train_args = |tree: &Path, out: &str, store: Option<&str>| {
        let mut a = vec!["train".to_string(), "--data".into(), tree.display().to_string()];
        a.extend([
            "--config".into(),
            config.clone(),
            "--epochs".into(),
            "1".into(),
            "--json".into(),
        ]);
        a.extend(["--out".into(), dir.join(out).display().to_string()]);
        if let Some(s) = store {
            a.extend([
                "--max-memory".into(),
                max_memory.clone(),
                "--feature-store".into(),
            ]);
            a.push(dir.join(s).display().to_string());
        }
        a
    };
    step(&lgss, "train, in memory", &train_args(&fit, "fit-memory", None))?;
    step(
        &lgss,
        "train, from the store",
        &train_args(&fit, "fit-store", Some("fit-store-data")),
    )?;
    let epoch = |out: &str| -> anyhow::Result<f64> {
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{out}.json")))?)?;
        j["history"][0]["seconds"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("{out}: no epoch time"))
    };
    println!(
        "  epoch on the fitting tree: {:.1} s in memory, {:.1} s from the store ({:.2}x)",
        epoch("fit-memory")?,
        epoch("fit-store")?,
        epoch("fit-store")? / epoch("fit-memory")?
    );

    // The rehearsal.
    let tree = dir.join("tree");
    step(&lgss, "synth", &synth_args(&tree, movies))?;
    println!("  tree on disk: {}", human(disk_usage(&tree)?));
    let shots = total_shots(&tree)?;
    let info = step(&lgss, "info", &["info".into(), tree.display().to_string()])?;
    println!("  {shots} shots: {:.0} shots/s", shots as f64 / info.seconds);
    let built = step(
        &lgss,
        "train, one epoch, store built",
        &train_args(&tree, "run", Some("store")),
    )?;
    println!("  store on disk: {}", human(disk_usage(&dir.join("store"))?));
    let windows = |out: &str| -> anyhow::Result<f64> {
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{out}.json")))?)?;
        Ok(j["history"][0]["windows_per_s"].as_f64().unwrap_or(f64::NAN))
    };
    println!(
        "  epoch {:.1} s, {:.0} windows/s; the rest of the run (store build, validation, test) {:.1} s",
        epoch("run")?,
        windows("run")?,
        built.seconds - epoch("run")?
    );
    let reused = step(
        &lgss,
        "train, one epoch, store reused",
        &train_args(&tree, "run-again", Some("store")),
    )?;
    println!(
        "  epoch {:.1} s; the rest {:.1} s",
        epoch("run-again")?,
        reused.seconds - epoch("run-again")?
    );
    let onnx = dir.join("model.onnx").display().to_string();
    let best = dir.join("run/best.safetensors").display().to_string();
    step(
        &lgss,
        "export --onnx",
        &[
            "export".into(),
            "--onnx".into(),
            onnx.clone(),
            "--checkpoint".into(),
            best,
        ],
    )?;
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(tree.join("meta/split318.json"))?)?;
    let test: Vec<String> = split["test"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|id| {
            tree.join("label318")
                .join(format!("{id}.txt"))
                .display()
                .to_string()
        })
        .collect();
    let mut segment = vec![
        "segment".into(),
        "--runtime".into(),
        "ort-cpu".into(),
        "--model".into(),
        onnx,
    ];
    segment.extend(["--out".into(), dir.join("scenes").display().to_string()]);
    segment.extend(test.iter().cloned());
    let seg = step(&lgss, &format!("segment, {} test movies", test.len()), &segment)?;
    let test_shots: usize = test
        .iter()
        .map(|f| shots_of(Path::new(f)))
        .sum::<anyhow::Result<usize>>()?;
    println!(
        "  {test_shots} shots: {:.0} shots/s",
        test_shots as f64 / seg.seconds
    );
    Ok(())
}

/// The `lgss` binary built beside this bench (`cargo bench` builds it).
fn lgss_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no folder above {}", exe.display()))?;
    let lgss = dir.join("lgss");
    anyhow::ensure!(
        lgss.exists(),
        "{}: not built (run it with cargo bench)",
        lgss.display()
    );
    Ok(lgss)
}

fn synth_args(tree: &Path, movies: usize) -> Vec<String> {
    let mut a: Vec<String> = [
        "synth", "--layout", "scene318", "--audio", "stft", "--size", "small",
    ]
    .map(String::from)
    .to_vec();
    a.extend([
        "--shots".into(),
        "400..800".into(),
        "--movies".into(),
        movies.to_string(),
    ]);
    a.extend([
        "--seed".into(),
        "318".into(),
        "--out".into(),
        tree.display().to_string(),
    ]);
    a
}

/// What a step took.
struct Step {
    seconds: f64,
}

/// Runs `lgss args`, its stdout into `<--out>.json` when it prints JSON;
/// prints its wall time and peak resident memory (the kernel's count for
/// that child, from `wait4`).
fn step(lgss: &Path, name: &str, args: &[String]) -> anyhow::Result<Step> {
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|_| args.iter().position(|a| a == "--out"))
        .map(|i| PathBuf::from(format!("{}.json", args[i + 1])));
    let stdout = match &json_out {
        Some(p) => std::process::Stdio::from(std::fs::File::create(p)?),
        None => std::process::Stdio::null(),
    };
    let t = Instant::now();
    let child = Command::new(lgss)
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let stderr = child.stderr;
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = t.elapsed().as_secs_f64();
    let text = log.join().unwrap_or_default();
    anyhow::ensure!(
        waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "lgss {}: failed\n{text}",
        args.join(" ")
    );
    println!(
        "{name:<36} {seconds:8.1} s   peak RSS {}",
        human(usage.ru_maxrss as u64 * 1024)
    );
    Ok(Step { seconds })
}

fn human(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// Bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        total += if t.is_dir() {
            disk_usage(&e.path())?
        } else {
            e.metadata()?.len()
        };
    }
    Ok(total)
}

/// Shots of a movie of the tree (its shot file's lines).
fn shots_of(label: &Path) -> anyhow::Result<usize> {
    let id = label.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let root = label.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(root.join("shot_movie318").join(format!("{id}.txt")))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Shots of every movie of the tree.
fn total_shots(tree: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(tree.join("shot_movie318"))? {
        let text = std::fs::read_to_string(e?.path())?;
        n += text.lines().filter(|l| !l.trim().is_empty()).count();
    }
    Ok(n)
}
