//! The n-dimensional arrays a pickle holds (or is written from): one
//! `ndarray::ArrayD` of the element type the file stores, kept as stored so
//! that each consumer decides which conversions are lossless for it.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

/// Element types a MovieScenes file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    Bool,
    I64,
    I32,
    U8,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool | DType::U8 => 1,
        }
    }

    /// The legacy torch storage class that holds this type.
    pub fn torch_storage(self) -> &'static str {
        match self {
            DType::F32 => "FloatStorage",
            DType::F64 => "DoubleStorage",
            DType::Bool => "BoolStorage",
            DType::I64 => "LongStorage",
            DType::I32 => "IntStorage",
            DType::U8 => "ByteStorage",
        }
    }

    pub fn from_torch_storage(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "BoolStorage" => DType::Bool,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ByteStorage" => DType::U8,
            _ => return None,
        })
    }

    /// Parses a numpy type string without byte order (`f4`, `b1`, `i8`, …).
    pub fn from_numpy(code: &str) -> Option<DType> {
        Some(match code {
            "f4" => DType::F32,
            "f8" => DType::F64,
            "b1" => DType::Bool,
            "i8" => DType::I64,
            "i4" => DType::I32,
            "u1" => DType::U8,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::Bool => "bool",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
        })
    }
}

/// An n-dimensional array of one of the element types of [`DType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    Bool(ArrayD<bool>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
}

/// Applies `$body` to the array inside any variant, bound to `$a`.
macro_rules! each {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::F32($a) => $body,
            Tensor::F64($a) => $body,
            Tensor::Bool($a) => $body,
            Tensor::I64($a) => $body,
            Tensor::I32($a) => $body,
            Tensor::U8($a) => $body,
        }
    };
}

/// An element type a [`Tensor`] can hold.
pub trait Element: Sized {
    fn wrap(array: ArrayD<Self>) -> Tensor;
}

macro_rules! element {
    ($($t:ty => $v:ident),*) => {$(
        impl Element for $t {
            fn wrap(array: ArrayD<$t>) -> Tensor {
                Tensor::$v(array)
            }
        }
    )*};
}
element!(f32 => F32, f64 => F64, bool => Bool, i64 => I64, i32 => I32, u8 => U8);

impl Tensor {
    /// A row-major tensor of `shape` over `values`; an error when the
    /// element count does not fit the shape.
    pub fn from_shape_vec<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Tensor, String> {
        ArrayD::from_shape_vec(IxDyn(shape), values)
            .map(T::wrap)
            .map_err(|e| format!("shape {shape:?}: {e}"))
    }

    /// A one-dimensional tensor.
    pub fn from_vec<T: Element>(values: Vec<T>) -> Tensor {
        T::wrap(ndarray::Array1::from(values).into_dyn())
    }

    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::Bool(_) => DType::Bool,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::U8(_) => DType::U8,
        }
    }

    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    pub fn numel(&self) -> usize {
        each!(self, a => a.len())
    }

    /// Appends the elements, in row-major order, as little-endian bytes.
    pub fn write_le(&self, out: &mut Vec<u8>) {
        out.reserve(self.numel() * self.dtype().size());
        match self {
            Tensor::F32(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::F64(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::Bool(a) => out.extend(a.iter().map(|&b| b as u8)),
            Tensor::I64(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I32(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::U8(a) => out.extend(a.iter().copied()),
        }
    }

    /// Values as f32, converting any numeric type (f64 is rounded).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::F64(a) => a.mapv(|x| x as f32),
            Tensor::Bool(a) => a.mapv(|x| x as u8 as f32),
            Tensor::I64(a) => a.mapv(|x| x as f32),
            Tensor::I32(a) => a.mapv(|x| x as f32),
            Tensor::U8(a) => a.mapv(|x| x as f32),
        }
    }

    /// Moves the values out as f32 without copying when they already are.
    pub fn into_f32(self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a,
            other => other.to_f32(),
        }
    }

    /// Values as f64, exactly (every supported type converts losslessly).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(|x| x as f64),
            Tensor::F64(a) => a.clone(),
            Tensor::Bool(a) => a.mapv(|x| x as u8 as f64),
            Tensor::I64(a) => a.mapv(|x| x as f64),
            Tensor::I32(a) => a.mapv(|x| x as f64),
            Tensor::U8(a) => a.mapv(|x| x as f64),
        }
    }

    /// Integer values, or `None` for floating-point tensors.
    pub fn to_i64(&self) -> Option<ArrayD<i64>> {
        Some(match self {
            Tensor::I64(a) => a.clone(),
            Tensor::I32(a) => a.mapv(|x| x as i64),
            Tensor::U8(a) => a.mapv(|x| x as i64),
            Tensor::Bool(a) => a.mapv(|x| x as i64),
            Tensor::F32(_) | Tensor::F64(_) => return None,
        })
    }

    /// Boolean values; integers must be 0 or 1, floats are refused.
    pub fn to_bool(&self) -> Option<ArrayD<bool>> {
        match self {
            Tensor::Bool(a) => Some(a.clone()),
            Tensor::F32(_) | Tensor::F64(_) => None,
            _ => {
                let ints = self.to_i64()?;
                if ints.iter().any(|&x| x != 0 && x != 1) {
                    return None;
                }
                Some(ints.mapv(|x| x == 1))
            }
        }
    }
}
