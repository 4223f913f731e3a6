//! A seeded, in-process mutation fuzzer for the MovieScenes reader, on
//! stable Rust. Seeds are the fixture files and tiny synthetic movies (a few
//! shots, narrow widths, so cases are cheap); mutations are byte flips,
//! truncations, splices and opcode-aware edits found by walking the pickle
//! (and the torch streams nested in its bytes): huge lengths, bad memo
//! indices, deep nesting, swapped and unknown globals, offsets, strides and
//! sizes past their storage, overflowing shape products, non-finite values
//! and duplicate keys. The `.npy` reader (scene318's per-shot features) gets
//! the same byte mutations and header-aware ones (huge and many
//! dimensions, other dtypes, broken dict syntax, length fields and
//! versions at their boundaries), seeded with numpy's own files.
//!
//! Each case reads the mutated bytes with `Movie::from_pickle_bytes` and
//! must return (no panic) with its allocations, counted by this binary's
//! allocator, within 4·N + 64 MiB for an N-byte file. Work is bounded by the
//! reader's own deterministic counter, never by a clock.
//!
//! `cargo test --release --test fuzz_pickle` runs 20,000 cases (CI);
//! `LGSS_FUZZ_CASES=1000000 cargo test --release --test fuzz_pickle -- --nocapture`
//! runs 10^6 (`LGSS_FUZZ_SEED` picks another sequence). A failing case is
//! written to `target/fuzz-failures/` for a regression test.

use std::path::{Path, PathBuf};

use lgss::data::movie::{Movie, Schema};
use lgss::data::synth::{self, SynthSpec};
use lgss::rng::Rng;

#[global_allocator]
static ALLOC: lgss::heap::Counting = lgss::heap::Counting;

const MIB: usize = 1 << 20;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The seed corpus: every fixture pickle (movies, and scene318's dicts of
/// numpy arrays) and a few tiny synthetic movies.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in [
        "movies",
        "numpy",
        "bad",
        "scene318/cast_feat",
        "scene318/act_feat",
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "pkl"))
            .collect();
        files.sort();
        for f in files {
            out.push(std::fs::read(&f).expect("read fixture"));
        }
    }
    let tiny = SynthSpec {
        dims: [4, 2, 2, 2],
        min_shots: 3,
        max_shots: 6,
        ..SynthSpec::small()
    };
    for i in 0..4 {
        let mut m = synth::movie(7, i, &tiny);
        if i % 2 == 1 {
            m.prediction = None;
        }
        out.push(lgss::data::pickle_write::movie_to_pickle(&m));
    }
    out
}

/// Where an opcode's argument lies: `(opcode position, opcode, argument
/// start, argument length)`, for the top-level pickle and the legacy torch
/// streams inside its bytes.
type Op = (usize, u8, usize, usize);

/// Walks the opcodes of the pickle at `data[start..]` (stopping at STOP or
/// at anything it cannot size), recursing into byte strings that hold
/// pickles of their own.
fn walk(data: &[u8], start: usize, depth: usize, out: &mut Vec<Op>) {
    let mut p = start;
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(data.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let u64_at = |i: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(data.get(i..i + 8)?.try_into().ok()?)).ok()
    };
    while p < data.len() {
        let op = data[p];
        let a = p + 1;
        let len = match op {
            0x80 | b'K' | b'q' | b'h' => Some(1),
            b'M' => Some(2),
            b'J' | b'r' | b'j' => Some(4),
            b'G' | 0x95 => Some(8),
            0x8a | b'C' | 0x8c => data.get(a).map(|&n| 1 + n as usize),
            0x8b | b'X' | b'B' => u32_at(a).map(|n| 4 + n),
            0x8d | 0x8e | 0x96 => u64_at(a).map(|n| 8 + n),
            b'c' => data[a..].iter().position(|&b| b == b'\n').and_then(|i| {
                data[a + i + 1..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|j| i + j + 2)
            }),
            b'.' => {
                out.push((p, op, a, 0));
                // A legacy stream is five pickles in a row.
                if depth > 0 && a < data.len() && data[a] == 0x80 {
                    p = a;
                    continue;
                }
                return;
            }
            _ => Some(0),
        };
        let Some(len) = len else { return };
        if a + len > data.len() {
            return;
        }
        out.push((p, op, a, len));
        let head = match op {
            b'B' | b'X' => 4,
            0x8e | 0x96 => 8,
            b'C' => 1,
            _ => usize::MAX,
        };
        if head != usize::MAX && depth < 2 && len > head + 2 && data[a + head] == 0x80 {
            walk(&data[..a + len], a + head, depth + 1, out);
        }
        p = a + len;
    }
}

const GLOBALS: &[&[u8]] = &[
    b"torch._utils\n_rebuild_tensor_v2\n",
    b"torch.storage\n_load_from_bytes\n",
    b"collections\nOrderedDict\n",
    b"_codecs\nencode\n",
    b"numpy.core.multiarray\n_reconstruct\n",
    b"numpy\ndtype\n",
    b"numpy\nndarray\n",
    b"torch\nFloatStorage\n",
    b"__builtin__\nbytes\n",
    b"builtins\neval\n",
    b"posix\nsystem\n",
    b"x\x1b[2J\ny\n",
];

/// One mutation of `data` (a seed or an earlier mutant).
fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.is_empty() {
        return other.to_vec();
    }
    let mut ops = Vec::new();
    walk(&d, 0, 0, &mut ops);
    // Rng::range is inclusive: a uniform index below n.
    let pick = |rng: &mut Rng, n: usize| rng.range(0, n.max(1) - 1);
    let boundary = [
        0u64,
        1,
        2,
        0x7f,
        0xff,
        0xfffe,
        0xffff,
        0x7fff_ffff,
        0xffff_ffff,
        u64::MAX,
        1 << 40,
    ];
    match rng.range(0, 11) {
        // Byte flips.
        0 => {
            for _ in 0..rng.range(1, 8) {
                let i = pick(rng, d.len());
                d[i] ^= 1 << rng.range(0, 7);
            }
        }
        // A random byte value.
        1 => {
            let i = pick(rng, d.len());
            d[i] = rng.range(0, 255) as u8;
        }
        // Truncation.
        2 => d.truncate(pick(rng, d.len())),
        // Splice: our head, another seed's tail.
        3 => {
            let i = pick(rng, d.len());
            let j = pick(rng, other.len());
            d.truncate(i);
            d.extend_from_slice(&other[j.min(other.len())..]);
        }
        // Repeat a region (duplicate keys, repeated calls, memo reuse).
        4 => {
            let i = pick(rng, d.len());
            let n = rng.range(1, 64).min(d.len() - i);
            let region = d[i..i + n].to_vec();
            for _ in 0..rng.range(1, 200) {
                d.splice(i..i, region.iter().copied());
            }
        }
        // An opcode's argument set to a boundary value (lengths, memo
        // indices, ints of shapes, strides and offsets).
        5 | 6 if !ops.is_empty() => {
            let (_, op, a, len) = ops[pick(rng, ops.len())];
            let v = boundary[pick(rng, boundary.len())].to_le_bytes();
            let n = match op {
                b'K' | b'q' | b'h' | b'C' | 0x8c | 0x8a => 1,
                b'M' => 2,
                b'J' | b'r' | b'j' | b'X' | b'B' | 0x8b => 4,
                0x8d | 0x8e | 0x96 | 0x95 => 8,
                _ => len.min(8),
            };
            let n = n.min(len);
            d[a..a + n].copy_from_slice(&v[..n]);
        }
        // Deep nesting at an opcode boundary.
        7 if !ops.is_empty() => {
            let (p, ..) = ops[pick(rng, ops.len())];
            let b = [b'(', b']', b'}', b')'][pick(rng, 4)];
            let n = [10, 1000, 20_000][pick(rng, 3)];
            d.splice(p..p, std::iter::repeat_n(b, n));
        }
        // A global replaced by another (allowed ones with wrong arguments,
        // refused ones, and one with an escape sequence in its name).
        8 if !ops.is_empty() => {
            let globals: Vec<Op> = ops.iter().copied().filter(|o| o.1 == b'c').collect();
            let g = GLOBALS[pick(rng, GLOBALS.len())];
            match globals.get(pick(rng, globals.len())) {
                Some(&(_, _, a, len)) => {
                    d.splice(a..a + len, g.iter().copied());
                }
                None => {
                    let (p, ..) = ops[pick(rng, ops.len())];
                    let mut ins = vec![b'c'];
                    ins.extend_from_slice(g);
                    d.splice(p..p, ins);
                }
            }
        }
        // Non-finite floats written over tensor data.
        9 => {
            let nan = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX][pick(rng, 4)].to_le_bytes();
            for _ in 0..rng.range(1, 4) {
                let i = pick(rng, d.len().saturating_sub(4)) & !3;
                if i + 4 <= d.len() {
                    d[i..i + 4].copy_from_slice(&nan);
                }
            }
        }
        // A memo fetch of a random index, or a memo store, at a boundary.
        10 if !ops.is_empty() => {
            let (p, ..) = ops[pick(rng, ops.len())];
            let ins: Vec<u8> = match rng.range(0, 2) {
                0 => vec![b'h', rng.range(0, 255) as u8],
                1 => {
                    let mut v = vec![b'j'];
                    v.extend_from_slice(&(boundary[pick(rng, boundary.len())] as u32).to_le_bytes());
                    v
                }
                _ => vec![0x94],
            };
            d.splice(p..p, ins);
        }
        // Random bytes inserted.
        _ => {
            let i = pick(rng, d.len());
            let n = rng.range(1, 16);
            let ins: Vec<u8> = (0..n).map(|_| rng.range(0, 255) as u8).collect();
            d.splice(i..i, ins);
        }
    }
    d
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a fuzzing run saw: inputs read, inputs refused, and the largest
/// peak heap beyond 8 MiB per input byte (with that input's size).
struct Outcomes {
    read: u64,
    refused: u64,
    worst: (f64, usize),
}

/// Reads `cases` inputs made by `next` with `read` (true: read, false:
/// refused): none may panic or allocate more than 4·N + 64 MiB for an
/// N-byte input. A failing input is saved under target/fuzz-failures/.
fn fuzz(
    cases: u64,
    seed: u64,
    ext: &str,
    mut next: impl FnMut() -> Vec<u8>,
    read: impl Fn(&[u8]) -> bool + std::panic::RefUnwindSafe,
) -> Outcomes {
    let mut seen = Outcomes {
        read: 0,
        refused: 0,
        worst: (0.0, 0),
    };
    let failures = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    for case in 0..cases {
        let input = next();
        let base = lgss::heap::start();
        let result = std::panic::catch_unwind(|| read(&input));
        let peak = lgss::heap::peak_since(base);
        let limit = 4 * input.len() + 64 * MIB;
        let save = |why: &str| {
            let _ = std::fs::create_dir_all(&failures);
            let f = failures.join(format!("seed{seed}-case{case}.{ext}"));
            let _ = std::fs::write(&f, &input);
            panic!("case {case} (seed {seed}): {why}; input saved to {}", f.display());
        };
        match result {
            Ok(true) => seen.read += 1,
            Ok(false) => seen.refused += 1,
            Err(_) => save("the reader panicked"),
        }
        if peak > limit {
            save(&format!(
                "allocated {peak} bytes for a {}-byte file (limit {limit})",
                input.len()
            ));
        }
        let ratio = peak as f64 / input.len().max(1) as f64;
        if peak > 64 * MIB / 8 && ratio > seen.worst.0 {
            seen.worst = (ratio, input.len());
        }
    }
    seen
}

/// One to three mutations of a corpus file, splicing from another: stacked
/// now and then, to get past a reader's first check.
fn stacked_mutation(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let base = &corpus[rng.range(0, corpus.len() - 1)];
    let other = &corpus[rng.range(0, corpus.len() - 1)];
    let mut input = mutate(rng, base, other);
    for _ in 0..rng.range(0, 2) {
        input = mutate(rng, &input, other);
    }
    input
}

#[test]
fn reader_survives_mutated_pickles_within_budget() {
    let cases = env_u64("LGSS_FUZZ_CASES", 20_000);
    let seed = env_u64("LGSS_FUZZ_SEED", 1);
    let corpus = seeds();
    assert!(corpus.len() >= 15, "seed corpus");
    let schema = Schema::any();
    let mut rng = Rng::new(seed);
    let next = || stacked_mutation(&mut rng, &corpus);
    let seen = fuzz(cases, seed, "pkl", next, |input| {
        Movie::from_pickle_bytes(input, &schema).is_ok()
    });
    eprintln!(
        "fuzz: {cases} cases (seed {seed}): {} read, {} refused, none panicked or over budget; \
         largest peak beyond 8 MiB: {:.1} bytes per input byte (a {}-byte file)",
        seen.read, seen.refused, seen.worst.0, seen.worst.1
    );
    assert!(
        seen.read > 0 && seen.refused > 0,
        "the mutations never reached both outcomes"
    );
}

/// A header-aware edit of a `.npy` file: the header's dict text replaced
/// by a hostile variant (huge or many dimensions, other dtypes, broken
/// syntax), or its length field or version set to a boundary value.
fn mutate_npy_header(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let dicts = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2048,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1), }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
        "{'descr': '<f4\\', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': Nope, 'shape': (2,), }",
        "{'shape': (2,), 'shape': (3,), 'descr': '<f4', 'fortran_order': False}",
    ];
    let mut d = data.to_vec();
    if d.len() < 12 {
        return d;
    }
    let (len_at, header_at) = if d[6] == 1 { (8, 10) } else { (8, 12) };
    match rng.range(0, 2) {
        0 => {
            let old_len = if header_at == 10 {
                u16::from_le_bytes([d[8], d[9]]) as usize
            } else {
                u32::from_le_bytes([d[8], d[9], d[10], d[11]]) as usize
            };
            let end = (header_at + old_len).min(d.len());
            let text = dicts[rng.range(0, dicts.len() - 1)];
            let mut out = d[..header_at].to_vec();
            out.extend(text.as_bytes());
            out.push(b'\n');
            let new_len = out.len() - header_at;
            if header_at == 10 {
                out[8..10].copy_from_slice(&(new_len as u16).to_le_bytes());
            } else {
                out[8..12].copy_from_slice(&(new_len as u32).to_le_bytes());
            }
            out.extend(&d[end..]);
            out
        }
        1 => {
            let v = [0u32, 1, 9_999, 10_000, 10_001, 0xffff, u32::MAX][rng.range(0, 6)];
            if header_at == 10 {
                d[len_at..len_at + 2].copy_from_slice(&(v as u16).to_le_bytes());
            } else {
                d[len_at..len_at + 4].copy_from_slice(&v.to_le_bytes());
            }
            d
        }
        _ => {
            d[6] = [0u8, 1, 2, 3, 4, 255][rng.range(0, 5)];
            d
        }
    }
}

/// The `.npy` reader (scene318's per-shot features) under the same
/// mutations and the same heap limit, seeded with numpy's own files.
#[test]
fn npy_reader_survives_mutated_files_within_budget() {
    let cases = env_u64("LGSS_FUZZ_CASES", 20_000) / 2;
    let seed = env_u64("LGSS_FUZZ_SEED", 1);
    let corpus = corpus_of("npy", &["npy"]);
    assert!(corpus.len() >= 10, "seed corpus");
    let mut rng = Rng::new(seed);
    let next = || {
        let base = &corpus[rng.range(0, corpus.len() - 1)];
        let other = &corpus[rng.range(0, corpus.len() - 1)];
        let input = match rng.range(0, 1) {
            0 => mutate(&mut rng, base, other),
            _ => mutate_npy_header(&mut rng, base),
        };
        if rng.range(0, 3) == 0 {
            mutate(&mut rng, &input, other)
        } else {
            input
        }
    };
    let seen = fuzz(cases, seed, "npy", next, |input| {
        lgss::data::npy::load(input).is_ok()
    });
    report("npy", cases, seed, &seen);
}

/// The fixture files under `tests/fixtures/<dir>` with one of `extensions`,
/// sorted: a fuzzer's seed corpus.
fn corpus_of(dir: &str, extensions: &[&str]) -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(fixtures().join(dir))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| extensions.iter().any(|e| x == *e)))
        .map(|p| std::fs::read(p).expect("read fixture"))
        .collect();
    corpus.sort();
    corpus
}

/// Says what a fuzzing run saw; fails if its mutations never reached both
/// outcomes (then they test nothing).
fn report(what: &str, cases: u64, seed: u64, seen: &Outcomes) {
    eprintln!(
        "fuzz {what}: {cases} cases (seed {seed}): {} read, {} refused, none panicked or over budget",
        seen.read, seen.refused
    );
    assert!(
        seen.read > 0 && seen.refused > 0,
        "the mutations never reached both outcomes"
    );
}

/// Whole `torch.save` checkpoints (zip and legacy, `lgss import-torch`'s
/// input) under the same mutations and the same heap limit, seeded with
/// torch's own files.
#[test]
fn torch_checkpoint_reader_survives_mutated_files_within_budget() {
    let cases = env_u64("LGSS_FUZZ_CASES", 20_000) / 2;
    let seed = env_u64("LGSS_FUZZ_SEED", 1);
    let corpus = corpus_of("torch", &["tar", "pt"]);
    assert!(corpus.len() >= 5, "seed corpus");
    let mut rng = Rng::new(seed);
    let next = || stacked_mutation(&mut rng, &corpus);
    let seen = fuzz(cases, seed, "pth", next, |input| {
        lgss::data::pickle::load_state_dict(input).is_ok()
    });
    report("torch checkpoints", cases, seed, &seen);
}
