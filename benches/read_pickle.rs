//! Reading a full-size MovieScenes pickle: lgss's reader against Python's
//! `pickle.load` (with torch) of the same file, on the same machine, in one run.
//!
//! The file is a synthetic 2,400-shot movie (~35 MB) written by Python/torch
//! itself (`pickle.dump` of the tensors), so both readers parse what real
//! MovieScenes files contain. Prints medians and the ratio.
//!
//! Then the worst hostile inputs of the attack on the reader (repeated
//! `_codecs.encode` of a memoised 1 MB string; 2.8 MB of one-key SETITEMs),
//! each with its wall time and peak heap (a counting allocator), beside the
//! budget 4·N + 64 MiB.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lgss::data::movie::{Movie, Schema};
use lgss::data::synth::{self, SynthSpec};

const REPS: usize = 15;

#[global_allocator]
static ALLOC: lgss::heap::Counting = lgss::heap::Counting;

/// The two worst inputs found against the old reader.
fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut codecs = vec![0x80, 2, b'X'];
    codecs.extend_from_slice(&(1u32 << 20).to_le_bytes());
    codecs.extend(std::iter::repeat_n(b'a', 1 << 20));
    codecs.extend_from_slice(b"q\x00");
    for _ in 0..2_000 {
        codecs.extend_from_slice(b"c_codecs\nencode\nh\x00X\x06\x00\x00\x00latin1\x86R0");
    }
    codecs.extend_from_slice(b"N.");
    let mut setitem = vec![0x80, 2, b'}'];
    let mut i = 0u64;
    while setitem.len() < 2_800_000 {
        let k = format!("k{i:09}");
        setitem.push(0x8c);
        setitem.push(k.len() as u8);
        setitem.extend_from_slice(k.as_bytes());
        setitem.extend_from_slice(b"K\x01s");
        i += 1;
    }
    setitem.push(b'.');
    vec![
        ("_codecs.encode of a memoised 1 MB string, 2,000 times", codecs),
        ("one-key SETITEMs", setitem),
    ]
}

#[path = "support/baseline.rs"]
mod baseline;
use baseline::{median, python_median};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let dir = std::env::temp_dir().join(format!("lgss-bench-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ours = dir.join("lgss-written.pkl");
    let theirs = dir.join("tt0000001.pkl");
    let size = SynthSpec {
        min_shots: 2400,
        max_shots: 2400,
        ..SynthSpec::full()
    };
    lgss::data::pickle_write::write_movie(&ours, &synth::movie(1, 0, &size))?;
    // Re-dump with Python so the benchmark file is Python-written.
    let status = Command::new(&python)
        .args(["-c", "import pickle,sys; d=pickle.load(open(sys.argv[1],'rb')); pickle.dump(d, open(sys.argv[2],'wb'))"])
        .arg(&ours)
        .arg(&theirs)
        .status()?;
    anyhow::ensure!(status.success(), "python could not re-dump the movie");
    let bytes = std::fs::metadata(&theirs)?.len();

    let mut rust = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        let m = Movie::load(&theirs, &Schema::movie_scenes())?;
        rust.push(t.elapsed().as_secs_f64());
        std::hint::black_box(m);
    }
    let code = format!(
        "import pickle,sys,time,torch\nts=[]\nfor _ in range({REPS}):\n    t=time.perf_counter()\n    d=pickle.load(open(sys.argv[1],'rb'))\n    ts.append(time.perf_counter()-t)\nts.sort()\nprint(torch.__version__, ts[len(ts)//2])"
    );
    let (torch_version, py) = python_median(&code, &[theirs.as_os_str()])?;
    let r = median(rust);
    println!(
        "read a 2,400-shot full-size movie ({:.1} MB), median of {REPS}:",
        bytes as f64 / 1e6
    );
    println!("  lgss Movie::load (incl. validation)  {:8.2} ms", r * 1e3);
    println!(
        "  Python pickle.load (torch {torch_version})  {:8.2} ms",
        py * 1e3
    );
    println!("  ratio: lgss is {:.2}x Python", py / r);

    println!("hostile inputs (read or refused; peak heap beyond the input):");
    for (what, bytes) in hostile_inputs() {
        let base = lgss::heap::start();
        let t = Instant::now();
        let result = lgss::data::pickle::load(&bytes).map(|v| v.kind());
        let secs = t.elapsed().as_secs_f64();
        let peak = lgss::heap::peak_since(base);
        let n = bytes.len();
        println!(
            "  {what} ({:.2} MB): {} in {:.1} ms, peak {:.1} MB (budget 4N + 64 MiB = {:.1} MB)",
            n as f64 / 1e6,
            match result {
                Ok(kind) => format!("read ({kind})"),
                Err(e) => format!("refused ({e})"),
            },
            secs * 1e3,
            peak as f64 / 1e6,
            (4 * n + (64 << 20)) as f64 / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
