//! Dense, contiguous, row-major arrays as read from (or written to) pickles.

use std::fmt;

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

/// Typed element storage of a [`Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::U8(_) => DType::U8,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the elements as little-endian bytes.
    pub fn write_le(&self, out: &mut Vec<u8>) {
        out.reserve(self.len() * self.dtype().size());
        match self {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U8(v) => out.extend_from_slice(v),
        }
    }
}

/// A contiguous row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Values as f32, converting any numeric type (f64 is rounded).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Moves the values out as f32 without copying when they already are.
    pub fn into_f32(self) -> Vec<f32> {
        match self.data {
            TensorData::F32(v) => v,
            _ => self.to_f32(),
        }
    }

    /// Values as f64, exactly (every supported type converts losslessly).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Integer values, or `None` for floating-point tensors.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F32(_) | TensorData::F64(_) => return None,
        })
    }

    /// Boolean values; integers must be 0 or 1, floats are refused.
    pub fn to_bool(&self) -> Option<Vec<bool>> {
        match &self.data {
            TensorData::Bool(v) => Some(v.clone()),
            TensorData::F32(_) | TensorData::F64(_) => None,
            _ => {
                let ints = self.to_i64()?;
                ints.iter()
                    .map(|&x| match x {
                        0 => Some(false),
                        1 => Some(true),
                        _ => None,
                    })
                    .collect()
            }
        }
    }
}
