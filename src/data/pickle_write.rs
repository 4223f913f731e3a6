//! Writes movies as Python pickles of torch tensors, the MovieScenes format
//! (and dicts of numpy arrays, scene318's).
//!
//! The output is what `pickle.dump(dict_of_tensors, f, protocol=4)` writes:
//! each tensor as `torch._utils._rebuild_tensor_v2(
//! torch.storage._load_from_bytes(<legacy torch.save stream>), 0, size,
//! stride, False, OrderedDict())`, so `pickle.load` with torch installed
//! returns ordinary tensors.

use std::path::Path;

use super::movie::{Movie, KEY_END_FRAME, KEY_GROUND_TRUTH, KEY_IMDB_ID, KEY_PREDICTION};
use super::pickle::{c_strides, LEGACY_MAGIC};
use super::tensor::Tensor;
use crate::fsutil::write_atomic;

/// A pickle opcode stream under construction.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn new(protocol: u8) -> Writer {
        Writer {
            out: vec![0x80, protocol],
        }
    }

    fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    fn str(&mut self, s: &str) {
        if s.len() < 256 {
            self.out.push(0x8c);
            self.out.push(s.len() as u8);
        } else {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    /// BINUNICODE, the only string opcode protocol 2 has.
    fn str_p2(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.push(b'K');
            self.out.push(v as u8);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.out.push(0x8a);
            self.out.push(8);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        if let Ok(n) = u32::try_from(b.len()) {
            self.out.push(b'B');
            self.out.extend_from_slice(&n.to_le_bytes());
        } else {
            self.out.push(0x8e);
            self.out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        self.out.extend_from_slice(b);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.str(module);
        self.str(name);
        self.op(0x93);
    }

    fn int_tuple(&mut self, v: &[usize]) {
        self.op(b'(');
        for &x in v {
            self.int(x as i64);
        }
        self.op(b't');
    }

    fn tensor(&mut self, t: &Tensor) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        self.global("torch.storage", "_load_from_bytes");
        self.bytes(&legacy_storage_stream(t));
        self.op(0x85); // TUPLE1
        self.op(b'R');
        self.int(0);
        self.int_tuple(t.shape());
        self.int_tuple(&c_strides(t.shape()));
        self.op(0x89); // requires_grad = False
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
        self.op(b't');
        self.op(b'R');
    }

    /// A float32 numpy array as numpy pickles it (protocol 3+):
    /// `_reconstruct(ndarray, (0,), b'b')`, then BUILD with (version,
    /// shape, dtype('<f4'), Fortran order, raw bytes). `numpy.core` names
    /// the module, which numpy 1 and 2 both load.
    fn numpy_f32(&mut self, shape: &[usize], values: &[f32]) {
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int_tuple(&[0]);
        self.bytes(b"b");
        self.op(0x87); // TUPLE3
        self.op(b'R');
        self.op(b'(');
        self.int(1);
        self.int_tuple(shape);
        self.global("numpy", "dtype");
        self.str("f4");
        self.op(0x89); // align = False
        self.op(0x88); // copy = True
        self.op(0x87);
        self.op(b'R');
        self.op(b'(');
        self.int(3);
        self.str("<");
        self.op(b'N');
        self.op(b'N');
        self.op(b'N');
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.op(b't');
        self.op(b'b');
        self.op(0x89); // C order
        let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(&raw);
        self.op(b't');
        self.op(b'b');
    }

    fn finish(mut self) -> Vec<u8> {
        self.op(b'.');
        self.out
    }
}

/// A legacy `torch.save` stream of one storage, as `_load_from_bytes` reads.
fn legacy_storage_stream(data: &Tensor) -> Vec<u8> {
    let numel = data.numel();
    let key = "0";
    let mut out = Vec::with_capacity(numel * data.dtype().size() + 256);
    // Magic number.
    let mut w = Writer::new(2);
    w.op(0x8a);
    w.out.push(LEGACY_MAGIC.len() as u8);
    w.out.extend_from_slice(LEGACY_MAGIC);
    out.extend(w.finish());
    // Protocol version.
    let mut w = Writer::new(2);
    w.int(1001);
    out.extend(w.finish());
    // System info.
    let mut w = Writer::new(2);
    w.op(b'}');
    w.op(b'(');
    w.str_p2("protocol_version");
    w.int(1001);
    w.str_p2("little_endian");
    w.op(0x88);
    w.str_p2("type_sizes");
    w.op(b'}');
    w.op(b'(');
    for (name, size) in [("short", 2), ("int", 4), ("long", 4)] {
        w.str_p2(name);
        w.int(size);
    }
    w.op(b'u');
    w.op(b'u');
    out.extend(w.finish());
    // The storage, as a persistent id.
    let mut w = Writer::new(2);
    w.op(b'(');
    w.str_p2("storage");
    w.op(b'c');
    w.out
        .extend_from_slice(format!("torch\n{}\n", data.dtype().torch_storage()).as_bytes());
    w.str_p2(key);
    w.str_p2("cpu");
    w.int(numel as i64);
    w.op(b'N');
    w.op(b't');
    w.op(b'Q');
    out.extend(w.finish());
    // Storage keys.
    let mut w = Writer::new(2);
    w.op(b']');
    w.str_p2(key);
    w.op(b'a');
    out.extend(w.finish());
    // Data: element count, then raw little-endian elements.
    out.extend_from_slice(&(numel as u64).to_le_bytes());
    data.write_le(&mut out);
    out
}

/// Serialises a movie in the MovieScenes torch-tensor format.
pub fn movie_to_pickle(movie: &Movie) -> Vec<u8> {
    let mut w = Writer::new(4);
    w.op(b'}');
    w.op(b'(');
    for m in super::movie::Modality::ALL {
        if let Some(f) = movie.features(m) {
            w.str(m.key());
            w.tensor(&Tensor::F32(f.clone().into_dyn()));
        }
    }
    if let Some(gt) = &movie.ground_truth {
        w.str(KEY_GROUND_TRUTH);
        w.tensor(&Tensor::from_vec(gt.clone()));
    }
    w.str(KEY_END_FRAME);
    w.tensor(&Tensor::from_vec(movie.shot_end_frame.clone()));
    if let Some(p) = &movie.prediction {
        // The challenge files store predictions as float32.
        w.str(KEY_PREDICTION);
        let p: Vec<f32> = p.iter().map(|&x| x as f32).collect();
        w.tensor(&Tensor::from_vec(p));
    }
    w.str(KEY_IMDB_ID);
    w.str(&movie.imdb_id);
    w.op(b'u');
    w.finish()
}

/// A dict of float32 numpy arrays, `{key: array of shape}`, as
/// `pickle.dump(d, f, protocol=4)` writes it (scene318's `cast_feat` and
/// `act_feat` files).
pub fn numpy_dict_to_pickle<'a>(items: impl IntoIterator<Item = (String, Vec<usize>, &'a [f32])>) -> Vec<u8> {
    let mut w = Writer::new(4);
    w.op(b'}');
    w.op(b'(');
    for (key, shape, values) in items {
        w.str(&key);
        w.numpy_f32(&shape, values);
    }
    w.op(b'u');
    w.finish()
}

/// Writes a movie atomically: readers see the old file or the whole new one.
pub fn write_movie(path: &Path, movie: &Movie) -> anyhow::Result<()> {
    write_atomic(path, &movie_to_pickle(movie))
}
