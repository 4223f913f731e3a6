//! Reading a full-size synthetic scene318 tree (MovieNet's layout, as
//! SceneSeg reads it): lgss's readers against numpy.load + pickle.load of the
//! same files, on the same machine, in one run.
//!
//! `lgss synth --layout scene318` writes `LGSS_BENCH_MOVIES` (default 8)
//! full-size movies of 1,200 shots (2048-d place and 512-d audio vectors as
//! one `.npy` a shot, cast and action as pickled dicts of numpy arrays):
//! ~2,400 small files and ~12 MB a movie; the real 318-movie tree is
//! ~300,000 files. lgss reads every movie of the split with `Movie::load`
//! (the `.npy` files of a movie by several threads, validated); Python
//! reads the same files with `numpy.load` and `pickle.load` into stacked
//! arrays, one after the other as SceneSeg's data code does. Both run warm
//! (the files in the page cache); medians of `REPS`, and the ratio.

use std::path::Path;
use std::time::Instant;

use lgss::data::dataset::movie_files;
use lgss::data::movie::{Movie, Schema};
use lgss::data::synth::{write_dataset_as, AudioForm, Layout, SynthSpec};

const REPS: usize = 5;

const PYTHON: &str = r#"
import os, pickle, sys, time
import numpy as np
root, reps = sys.argv[1], int(sys.argv[2])
ids = [l.split(".")[0] for l in sorted(os.listdir(os.path.join(root, "label318")))]
def read(imdb_id):
    n = len(open(os.path.join(root, "shot_movie318", imdb_id + ".txt")).read().splitlines())
    place = np.stack([np.load(os.path.join(root, "place_feat", imdb_id, "shot_%04d.npy" % s)) for s in range(n)])
    aud = np.stack([np.load(os.path.join(root, "aud_feat", imdb_id, "shot_%04d.npy" % s)) for s in range(n)])
    with open(os.path.join(root, "cast_feat", imdb_id + ".pkl"), "rb") as f:
        cast = pickle.load(f)
    with open(os.path.join(root, "act_feat", imdb_id + ".pkl"), "rb") as f:
        act = pickle.load(f)
    cast = np.stack([np.mean(cast["%04d" % s], axis=0) for s in range(n)])
    act = np.stack([act["%04d" % s] for s in range(n)])
    labels = open(os.path.join(root, "label318", imdb_id + ".txt")).read().splitlines()
    return place, cast, act, aud, labels
ts = []
for _ in range(reps):
    t = time.perf_counter()
    for i in ids:
        read(i)
    ts.append(time.perf_counter() - t)
ts.sort()
print(np.__version__, ts[len(ts) // 2])
"#;

#[path = "support/baseline.rs"]
mod baseline;
use baseline::{median, python_median};

fn main() -> anyhow::Result<()> {
    let movies: usize = std::env::var("LGSS_BENCH_MOVIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("lgss-bench-scene318-{}", std::process::id()));
    let size = SynthSpec {
        min_shots: 1200,
        max_shots: 1200,
        ..SynthSpec::full()
    };
    let t = Instant::now();
    write_dataset_as(
        Layout::Scene318,
        &dir,
        1,
        movies,
        &size,
        AudioForm::Features,
        &|| {},
    )?;
    let written = t.elapsed().as_secs_f64();
    let files = movie_files(&dir)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for e in walk(&dir)? {
        count += 1;
        bytes += std::fs::metadata(&e)?.len();
    }

    let schema = Schema::movie_scenes();
    let mut rust = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(Movie::load(f, &schema)?);
        }
        rust.push(t.elapsed().as_secs_f64());
    }
    let reps = REPS.to_string();
    let (numpy_version, py) = python_median(PYTHON, &[dir.as_os_str(), reps.as_ref()])?;
    let r = median(rust);
    println!(
        "read a synthetic scene318 tree of {movies} full-size movies (1,200 shots each; {count} files, {:.0} MB; written in {written:.1} s), median of {REPS}, warm:",
        bytes as f64 / 1e6
    );
    println!(
        "  lgss Movie::load (npy + inert pickle, validated)  {:8.1} ms  ({:.0} files/s)",
        r * 1e3,
        count as f64 / r
    );
    println!(
        "  Python numpy.load + pickle.load (numpy {numpy_version})  {:8.1} ms  ({:.0} files/s)",
        py * 1e3,
        count as f64 / py
    );
    println!("  ratio: lgss is {:.2}x Python", py / r);
    println!(
        "  a 318-movie tree of ~300,000 files at these rates: lgss {:.0} s, Python {:.0} s",
        300_000.0 * r / count as f64,
        300_000.0 * py / count as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}
