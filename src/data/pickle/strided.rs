//! Strided copies: the elements a tensor view selects from its storage, as
//! a contiguous, typed tensor. Every size, offset and stride is checked
//! before any element is touched.

use std::borrow::Cow;

use super::{Budget, PickleError, Result};
use crate::data::tensor::{DType, Tensor};

/// The number of elements of `shape`, or an error if it overflows.
pub(super) fn numel_of(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| PickleError::TooLarge(format!("shape {shape:?} overflows")))
}

/// Copies the elements a view (`offset`, `shape`, `strides`, in elements)
/// of `raw` selects into a contiguous tensor, charging the copies.
pub(super) fn gather(
    budget: &mut Budget,
    raw: &[u8],
    dtype: DType,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Result<Tensor> {
    let numel = numel_of(shape)?;
    let es = dtype.size();
    let storage_numel = raw.len() / es;
    budget.work(shape.len() as u64)?;
    if numel == 0 {
        // Python accepts any offset for an empty view; there is nothing to read.
        return decode(&[], dtype, shape).map_err(PickleError::Storage);
    }
    // The last element the view touches must lie inside the storage.
    let mut last = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| PickleError::Storage("view overflows".into()))?;
    }
    if last >= storage_numel {
        return Err(PickleError::Storage(format!(
            "view of shape {shape:?} at offset {offset} reaches element {last}, storage has {storage_numel}"
        )));
    }
    // numel ≤ storage bounds × stride products can still be huge for
    // stride-0 views: the budget decides before anything is allocated.
    let nbytes = numel
        .checked_mul(es)
        .ok_or_else(|| PickleError::TooLarge(format!("shape {shape:?} overflows")))?;
    budget.copy(nbytes, "a tensor")?;
    let contiguous = numel == 1 || strides == c_strides(shape).as_slice();
    let bytes: Cow<'_, [u8]> = if contiguous {
        // In bounds: offset + numel - 1 = last < storage_numel.
        Cow::Borrowed(&raw[offset * es..(offset + numel) * es])
    } else {
        budget.copy(nbytes, "a strided copy")?;
        budget.work(numel as u64)?;
        let mut out = Vec::with_capacity(nbytes);
        let mut idx = vec![0usize; shape.len()];
        let mut e = offset;
        for _ in 0..numel {
            out.extend_from_slice(&raw[e * es..(e + 1) * es]);
            // Odometer step. A size-1 axis may carry any stride, so the
            // running offset is kept modulo 2^64; every element actually read
            // is offset + Σ idx·stride ≤ last, checked above.
            for ax in (0..shape.len()).rev() {
                idx[ax] += 1;
                e = e.wrapping_add(strides[ax]);
                if idx[ax] < shape[ax] {
                    break;
                }
                e = e.wrapping_sub(strides[ax].wrapping_mul(shape[ax]));
                idx[ax] = 0;
            }
        }
        Cow::Owned(out)
    };
    decode(&bytes, dtype, shape).map_err(PickleError::Storage)
}

pub(crate) fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

pub(super) fn fortran_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        s[i] = s[i - 1].saturating_mul(shape[i - 1]);
    }
    s
}

/// Decodes contiguous little-endian elements into a row-major tensor.
fn decode(bytes: &[u8], dtype: DType, shape: &[usize]) -> std::result::Result<Tensor, String> {
    match dtype {
        DType::F32 => Tensor::from_shape_vec(shape, decode_le(bytes, f32::from_le_bytes)),
        DType::F64 => Tensor::from_shape_vec(shape, decode_le(bytes, f64::from_le_bytes)),
        DType::I64 => Tensor::from_shape_vec(shape, decode_le(bytes, i64::from_le_bytes)),
        DType::I32 => Tensor::from_shape_vec(shape, decode_le(bytes, i32::from_le_bytes)),
        DType::U8 => Tensor::from_shape_vec(shape, bytes.to_vec()),
        DType::Bool => Tensor::from_shape_vec(
            shape,
            bytes
                .iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    x => Err(format!("bool element has value {x}")),
                })
                .collect::<std::result::Result<Vec<bool>, _>>()?,
        ),
    }
}

/// Little-endian bytes to numbers: one memcpy on little-endian machines
/// (this is the bulk of reading a movie), a byte-order conversion elsewhere.
/// Large tensors are copied by all cores: the time goes to page faults on
/// the fresh allocation, which parallelise.
pub(crate) fn decode_le<T: bytemuck::Pod + Default + Send, const N: usize>(
    bytes: &[u8],
    from_le: fn([u8; N]) -> T,
) -> Vec<T> {
    const PARALLEL_BYTES: usize = 4 << 20;
    let n = bytes.len() / N;
    let mut out = vec![T::default(); n];
    let bytes = &bytes[..n * N];
    let copy = |dst: &mut [T], src: &[u8]| {
        if cfg!(target_endian = "little") {
            bytemuck::cast_slice_mut::<T, u8>(dst).copy_from_slice(src);
        } else {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(N)) {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                *o = from_le(a);
            }
        }
    };
    // Asking for the core count reads the cgroup's quota (a few syscalls):
    // more than copying a small tensor, so only large ones ask.
    let threads = if bytes.len() < PARALLEL_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |t| t.get()).min(8)
    };
    if threads < 2 {
        copy(&mut out, bytes);
    } else {
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (dst, src) in out.chunks_mut(per).zip(bytes.chunks(per * N)) {
                s.spawn(move || copy(dst, src));
            }
        });
    }
    out
}
