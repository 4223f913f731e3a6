//! The `.npy` reader: one array as `numpy.save` writes it (format versions
//! 1.0, 2.0 and 3.0), for the per-shot feature files of MovieNet's scene318
//! layout (`place_feat/<id>/shot_NNNN.npy`, `aud_feat/…`).
//!
//! The header is a Python dict literal; `numpy.load` evaluates it with
//! `ast.literal_eval`, and here a small parser takes exactly the three keys
//! numpy writes (`descr`, `fortran_order`, `shape`) and nothing else. Only
//! little-endian float32 and float64 in C order are taken; anything else
//! (big-endian, integers, objects, structured dtypes, Fortran order) is
//! refused by name. The work and memory are linear in the file: the header
//! is at most [`MAX_HEADER_BYTES`] (numpy's own limit), and the data must be
//! exactly the bytes the shape needs, so one copy of the file's data is all
//! that is allocated.

use super::pickle::{decode_le, printable};
use super::tensor::Tensor;

/// The magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The longest header taken: `numpy.load`'s default `max_header_size`.
pub const MAX_HEADER_BYTES: usize = 10_000;

/// The most dimensions an array may have (numpy 2's `NPY_MAXDIMS`).
const MAX_DIMS: usize = 64;

/// Why a `.npy` file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy file (does not start with \\x93NUMPY)")]
    NotNpy,
    #[error(".npy format version {0}.{1} is not supported (1.0, 2.0 and 3.0 are)")]
    Version(u8, u8),
    #[error(".npy file ends early: {0}")]
    Truncated(&'static str),
    #[error(".npy header of {0} bytes is longer than numpy's limit of {MAX_HEADER_BYTES}")]
    HeaderTooLong(usize),
    #[error("malformed .npy header at byte {pos}: {msg}")]
    Header { pos: usize, msg: String },
    #[error(".npy dtype {0}: only little-endian float32 ('<f4') and float64 ('<f8') are read")]
    Dtype(String),
    #[error(".npy array is in Fortran order: only C order is read (save it with numpy.ascontiguousarray)")]
    FortranOrder,
    #[error(".npy data is {got} bytes; shape {shape:?} of {dtype} needs {want}")]
    Size {
        shape: Vec<usize>,
        dtype: String,
        want: usize,
        got: usize,
    },
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Reads one `.npy` file's bytes: a float32 or float64 tensor of its shape.
pub fn load(data: &[u8]) -> Result<Tensor, NpyError> {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let version = data.get(6..8).ok_or(NpyError::Truncated("no format version"))?;
    let (len_bytes, start) = match (version[0], version[1]) {
        (1, 0) => (2, 10),
        (2, 0) | (3, 0) => (4, 12),
        (major, minor) => return Err(NpyError::Version(major, minor)),
    };
    let len_field = data
        .get(8..start)
        .ok_or(NpyError::Truncated("no header length"))?;
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([len_field[0], len_field[1]]) as usize
    } else {
        u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(NpyError::HeaderTooLong(header_len));
    }
    let header = data
        .get(start..start + header_len)
        .ok_or(NpyError::Truncated("the header is cut short"))?;
    let header = parse_header(header)?;
    if header.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    let body = &data[start + header_len..];
    let size = match header.descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        other => return Err(NpyError::Dtype(printable(other))),
    };
    let numel = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(size));
    if numel != Some(body.len()) {
        return Err(NpyError::Size {
            shape: header.shape,
            dtype: header.descr,
            want: numel.unwrap_or(usize::MAX),
            got: body.len(),
        });
    }
    let tensor = if size == 4 {
        Tensor::from_shape_vec(&header.shape, decode_le(body, f32::from_le_bytes))
    } else {
        Tensor::from_shape_vec(&header.shape, decode_le(body, f64::from_le_bytes))
    };
    // The size was checked above, so the shape always fits.
    tensor.map_err(|msg| NpyError::Header { pos: 0, msg })
}

/// A float32 vector as `numpy.save` writes it (format 1.0, the header
/// padded to 64 bytes).
pub fn save_f32(values: &[f32]) -> Vec<u8> {
    save_f32_shaped(values, &[values.len()])
}

/// `values` as a C-order float32 array of `shape` (whose product is their
/// count), as `np.save` writes it.
pub fn save_f32_shaped(values: &[f32], shape: &[usize]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), values.len());
    let dims = match shape {
        [n] => format!("{n},"),
        _ => shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * values.len());
    out.extend_from_slice(MAGIC);
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values.iter().flat_map(|x| x.to_le_bytes()));
    out
}

/// Parses numpy's header dict: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2048,), }`, padded with spaces and ending in a newline. Each
/// of the three keys once, no others.
fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    let mut p = Parser { bytes, pos: 0 };
    if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
        return Err(NpyError::Header {
            pos: i,
            msg: "a byte outside ASCII".into(),
        });
    }
    p.expect(b'{')?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    loop {
        p.skip_space();
        if p.eat(b'}') {
            break;
        }
        let key_at = p.pos;
        let key = p.string()?;
        p.skip_space();
        p.expect(b':')?;
        p.skip_space();
        let seen = match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(NpyError::Dtype("a structured dtype".into()));
                }
                descr.replace(p.string()?).is_some()
            }
            "fortran_order" => fortran_order.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.shape()?).is_some(),
            other => return p.fail_at(key_at, format!("unexpected key '{}'", printable(other))),
        };
        if seen {
            return p.fail_at(key_at, format!("key '{key}' given twice"));
        }
        p.skip_space();
        if p.eat(b',') {
            continue;
        }
        p.expect(b'}')?;
        break;
    }
    if let Some(i) = bytes[p.pos..].iter().position(|b| !b.is_ascii_whitespace()) {
        return p.fail_at(p.pos + i, "text after the header dict".into());
    }
    let missing = |k: &str| NpyError::Header {
        pos: bytes.len(),
        msg: format!("no '{k}' key"),
    };
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn fail_at<T>(&self, pos: usize, msg: String) -> Result<T, NpyError> {
        Err(NpyError::Header { pos, msg })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b == b' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8) -> Result<(), NpyError> {
        if self.eat(b) {
            Ok(())
        } else {
            self.fail_at(self.pos, format!("expected '{}'", b as char))
        }
    }

    /// A quoted string without escapes (numpy writes none in these keys).
    fn string(&mut self) -> Result<String, NpyError> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return self.fail_at(self.pos, "expected a quoted string".into()),
        };
        let start = self.pos + 1;
        let Some(len) = self.bytes[start..].iter().position(|&b| b == quote) else {
            return self.fail_at(self.pos, "unterminated string".into());
        };
        let text = &self.bytes[start..start + len];
        if text.contains(&b'\\') {
            return self.fail_at(start, "escapes in a string".into());
        }
        self.pos = start + len + 1;
        // ASCII was checked for the whole header.
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.bytes[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        self.fail_at(self.pos, "expected True or False".into())
    }

    /// `()`, `(n,)` or `(a, b, …)`, with an optional trailing comma; the
    /// `L` suffix Python 2's numpy wrote is taken.
    fn shape(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            let digits = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("");
            let Ok(dim) = digits.parse::<usize>() else {
                return self.fail_at(start, "expected a dimension".into());
            };
            if dims.len() == MAX_DIMS {
                return self.fail_at(start, format!("more than {MAX_DIMS} dimensions"));
            }
            dims.push(dim);
            self.eat(b'L');
            self.skip_space();
            if !self.eat(b',') {
                self.skip_space();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as `numpy.save` lays it out, version 1.0, with `header` as
    /// the dict text.
    fn npy(header: &str, body: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn header_dicts_as_numpy_and_python_2_wrote_them() {
        let body: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        for h in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            "{\"shape\": (2L,), \"descr\": \"<f4\", \"fortran_order\": False}",
            "{'descr':'<f4','fortran_order':False,'shape':(1, 2)}",
        ] {
            let t = load(&npy(h, &body)).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(t.to_f32().iter().copied().collect::<Vec<_>>(), [1.5, -2.0], "{h}");
        }
        let scalar = load(&npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &7f64.to_le_bytes(),
        ))
        .unwrap();
        assert_eq!(scalar.shape(), &[] as &[usize]);
    }

    #[test]
    fn everything_else_is_refused_by_name() {
        let f4 = |shape: &str, descr: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x93NUMPX".to_vec(), "not a .npy"),
            (npy(&f4("(2,)", ">f4"), &[0; 8]), "dtype >f4"),
            (npy(&f4("(2,)", "|O"), &[0; 8]), "float32"),
            (npy(&f4("(2,)", "<i8"), &[0; 16]), "<i8"),
            (
                npy(
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
                    &[0; 8],
                ),
                "structured",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}",
                    &[0; 16],
                ),
                "Fortran",
            ),
            (npy(&f4("(3,)", "<f4"), &[0; 8]), "needs 12"),
            (
                npy(&f4("(99999999999, 99999999999, 99999999999)", "<f4"), &[0; 8]),
                "needs",
            ),
            (npy("{'descr': '<f4', 'fortran_order': False}", &[]), "no 'shape'"),
            (
                npy(
                    "{'descr': '<f4', 'descr': '<f4', 'shape': (), 'fortran_order': False}",
                    &[0; 4],
                ),
                "twice",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                    &[0; 4],
                ),
                "unexpected key",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                    &[0; 4],
                ),
                "dimension",
            ),
            (npy("__import__('os').system('true')", &[]), "expected '{'"),
        ];
        for (bytes, needle) in cases {
            let err = load(&bytes).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
        let mut v4 = npy(&f4("(2,)", "<f4"), &[0; 8]);
        v4[6] = 4;
        assert_eq!(load(&v4), Err(NpyError::Version(4, 0)));
        let mut long = MAGIC.to_vec();
        long.extend([2, 0]);
        long.extend(20_000u32.to_le_bytes());
        assert_eq!(load(&long), Err(NpyError::HeaderTooLong(20_000)));
        let whole = npy(&f4("(2,)", "<f4"), &[0; 8]);
        for cut in 0..whole.len() {
            assert!(load(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }
}
