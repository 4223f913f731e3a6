//! The torch layer: `_rebuild_tensor_v2` over storages that
//! `_load_from_bytes` reads from legacy `torch.save` streams.

use std::rc::Rc;

use super::machine::{Machine, Mode};
use super::{Bytes, Global, PickleError, Result, Value};
use crate::data::tensor::DType;

/// The magic number that opens a legacy `torch.save` stream
/// (0x1950a86a20f9469cfc6c), as pickle's little-endian LONG1 bytes.
pub const LEGACY_MAGIC: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

impl<'a> Machine<'a, '_> {
    /// `_rebuild_tensor_v2(storage, offset, size, stride, …)`.
    pub(super) fn rebuild_tensor(&mut self, args: &[Value<'a>]) -> Result<Value<'a>> {
        let (storage, offset, size, stride) = match args {
            [s, Value::Int(o), Value::Tuple(size), Value::Tuple(stride), ..] => (s, *o, size, stride),
            _ => return self.malformed("_rebuild_tensor_v2 arguments have an unexpected form"),
        };
        let (dtype, data) = match storage {
            Value::Storage { dtype, data } => (dtype, data),
            // A whole file's first pass: the storages come after the pickle.
            Value::StorageRef { .. } if self.mode == Mode::TorchFile && self.storages.is_none() => {
                return Ok(Value::None)
            }
            _ => return self.malformed(format!("tensor built on a {}", storage.kind())),
        };
        let shape = self.dims_of(size)?;
        let strides = self.dims_of(stride)?;
        if strides.len() != shape.len() {
            return self.malformed("tensor stride and size differ in length");
        }
        let Ok(offset) = usize::try_from(offset) else {
            return self.malformed("negative storage offset");
        };
        let t = super::strided::gather(self.budget, data.as_slice(), *dtype, offset, &shape, &strides)?;
        Ok(Value::Tensor(Rc::new(t)))
    }

    /// Parses a legacy `torch.save` stream (what `_load_from_bytes` receives):
    /// magic, protocol version, system info, the storage's persistent id and
    /// key list as five pickles, then the element count and raw elements.
    pub(super) fn load_storage(&mut self, bytes: Bytes<'a>) -> Result<Value<'a>> {
        let owned;
        let data: &[u8] = match &bytes {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => {
                owned = b.clone();
                &owned
            }
        };
        let err = |m: &str| PickleError::Storage(m.to_string());
        let (dtype, numel, payload_at) = {
            let mut inner = Machine::new(data, 0, self.budget, Mode::TorchLegacy);
            match inner
                .run()
                .map_err(|e| PickleError::Storage(format!("magic number: {e}")))?
            {
                Value::BigInt(b) if b == LEGACY_MAGIC => {}
                _ => return Err(err("bad magic number")),
            }
            inner.reset();
            match inner.run()? {
                Value::Int(1001) => {}
                _ => return Err(err("unsupported protocol version")),
            }
            inner.reset();
            if let Value::Dict(d) = inner.run()? {
                let little = d
                    .borrow()
                    .iter()
                    .any(|(k, v)| matches!((k, v), (Value::Str("little_endian"), Value::Bool(true))));
                if !little {
                    return Err(err("big-endian storages are not supported"));
                }
            }
            inner.reset();
            let (dtype, key, numel) = match inner.run()? {
                Value::StorageRef { dtype, key, numel } => (dtype, key, numel),
                _ => return Err(err("object is not a storage")),
            };
            inner.reset();
            match inner.run()? {
                Value::List(l) => {
                    let l = l.borrow();
                    if l.len() != 1 || !matches!(&l[0], Value::Str(k) if *k == key) {
                        return Err(err("storage key list does not match"));
                    }
                }
                _ => return Err(err("storage key list missing")),
            }
            (dtype, numel, inner.pos)
        };
        let mut rest = Machine::new(data, payload_at, self.budget, Mode::TorchLegacy);
        let count = rest.len64().map_err(|_| err("storage data truncated"))?;
        if count != numel {
            return Err(PickleError::Storage(format!(
                "storage holds {count} elements, header says {numel}"
            )));
        }
        let nbytes = count
            .checked_mul(dtype.size())
            .ok_or_else(|| err("storage size overflows"))?;
        let start = rest.pos;
        rest.take(nbytes)
            .map_err(|_| PickleError::Storage(format!("storage data truncated: needs {nbytes} bytes")))?;
        let end = start + nbytes;
        let data = match bytes {
            Bytes::Borrowed(b) => Bytes::Borrowed(&b[start..end]),
            Bytes::Owned(b) => {
                self.budget.copy(nbytes, "a storage")?;
                Bytes::Owned(Rc::new(b[start..end].to_vec()))
            }
        };
        Ok(Value::Storage { dtype, data })
    }

    /// `('storage', StorageType, key, location, numel[, view])` inside a
    /// legacy stream or a `torch.save` file: a reference to the storage, or
    /// the storage itself where the file's storages are known.
    pub(super) fn persistent_load(&mut self, pid: Value<'a>) -> Result<Value<'a>> {
        let Value::Tuple(t) = pid else {
            return self.malformed("persistent id is not a tuple");
        };
        if let [_, _, _, _, _, view, ..] = &t[..] {
            if !matches!(view, Value::None) {
                return self.malformed("storage views (torch < 1.0) are not supported");
            }
        }
        match &t[..] {
            [Value::Str("storage"), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel), ..]
                if *numel >= 0 && self.storages.is_some() =>
            {
                let Some(bytes) = self.storages.as_ref().and_then(|st| st.get(*key).copied()) else {
                    return Err(PickleError::Storage(format!(
                        "no storage {}",
                        super::printable(key)
                    )));
                };
                let want = (*numel as usize).checked_mul(dtype.size());
                if want != Some(bytes.len()) {
                    return Err(PickleError::Storage(format!(
                        "storage {} holds {} bytes, its reference says {numel} elements of {}",
                        super::printable(key),
                        bytes.len(),
                        dtype.size()
                    )));
                }
                Ok(Value::Storage {
                    dtype: *dtype,
                    data: Bytes::Borrowed(bytes),
                })
            }
            [Value::Str("storage"), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel), ..]
                if *numel >= 0 =>
            {
                self.budget.copy(key.len(), "a storage key")?;
                if self.mode == Mode::TorchFile {
                    self.budget.take_bytes(
                        std::mem::size_of::<(String, DType, usize)>(),
                        "a storage reference",
                    )?;
                    self.storage_refs.push((key.to_string(), *dtype, *numel as usize));
                }
                Ok(Value::StorageRef {
                    dtype: *dtype,
                    key: key.to_string(),
                    numel: *numel as usize,
                })
            }
            _ => self.malformed("unsupported persistent id"),
        }
    }
}
