use lgss::data::movie::{Movie, Schema};
use lgss::data::pickle_write::write_movie;

use crate::common::{fixtures, run_python, tempdir};

/// Reads two pickles with real torch and checks every key: same type, dtype,
/// shape and values, exactly. Prints "ok".
const COMPARE: &str = r#"
import pickle, sys, torch, numpy as np
a = pickle.load(open(sys.argv[1], 'rb'))
b = pickle.load(open(sys.argv[2], 'rb'))
assert type(b) is dict, type(b)
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
for k in a:
    x, y = a[k], b[k]
    if isinstance(x, str):
        assert x == y, (k, x, y)
        continue
    assert isinstance(y, torch.Tensor), (k, type(y))
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if k == 'scene_transition_boundary_prediction':
        x = x.to(torch.float32)
    assert x.dtype == y.dtype, (k, x.dtype, y.dtype)
    assert tuple(x.shape) == tuple(y.shape), (k, x.shape, y.shape)
    assert torch.equal(x, y), k
    assert y.is_contiguous(), k
print('ok')
"#;

#[test]
fn written_movies_load_identically_in_python_torch() {
    let dir = tempdir("write");
    for rel in [
        "movies/tt0000011.pkl",
        "movies/tt0000012.pkl",
        "movies/tt0000013.pkl",
        "numpy/tt0000014.pkl",
    ] {
        let src = fixtures().join(rel);
        let m = Movie::load(&src, &Schema::movie_scenes()).unwrap();
        let out = dir.join(src.file_name().unwrap());
        write_movie(&out, &m).unwrap();
        // Our own reader gets the same movie back (numpy's f64 prediction
        // is stored as the format's f32).
        let back = Movie::load(&out, &Schema::movie_scenes()).unwrap();
        let mut want = m.clone();
        want.prediction = want
            .prediction
            .map(|p| p.iter().map(|&x| x as f32 as f64).collect());
        assert_eq!(back, want, "{rel}");
        assert_eq!(run_python(COMPARE, &[&src, &out]).trim(), "ok", "{rel}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn replaced_prediction_reaches_python() {
    let dir = tempdir("replace");
    let src = fixtures().join("movies/tt0000012.pkl");
    let mut m = Movie::load(&src, &Schema::movie_scenes()).unwrap();
    let n = m.n_shots() - 1;
    let new: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f32 / 100.0) as f64).collect();
    m.prediction = Some(new.clone());
    let out = dir.join("tt0000012.pkl");
    write_movie(&out, &m).unwrap();
    let code = r#"
import pickle, sys, torch
d = pickle.load(open(sys.argv[1], 'rb'))
p = d['scene_transition_boundary_prediction']
assert p.dtype == torch.float32
print(' '.join(repr(float(x)) for x in p.tolist()))
"#;
    let got: Vec<f64> = run_python(code, &[&out])
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(got, new);
}

#[test]
fn writing_into_a_missing_directory_fails_cleanly() {
    let m = Movie::load(&fixtures().join("movies/tt0000011.pkl"), &Schema::any()).unwrap();
    let dir = tempdir("missing");
    let bad = dir.join("no/such/dir/tt.pkl");
    let err = write_movie(&bad, &m).unwrap_err();
    assert!(format!("{err:#}").contains("tt.pkl"), "{err:#}");
}
