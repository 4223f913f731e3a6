//! The numpy layer: `numpy.dtype`, `_reconstruct` + BUILD (pickle
//! protocols 2–4) and `_frombuffer` (protocol 5) arrays.

use std::cell::RefCell;
use std::rc::Rc;

use super::machine::Machine;
use super::{printable, NumpyDtype, NumpyPending, Result, Value};

impl<'a> Machine<'a, '_> {
    /// `_reconstruct(ndarray, (0,), b'b')`: an empty array BUILD fills.
    pub(super) fn numpy_reconstruct(&mut self, args: &[Value<'a>]) -> Result<Value<'a>> {
        match args {
            [Value::Global(super::Global::NumpyNdarray), ..] => {
                Ok(Value::NumpyPending(Rc::new(RefCell::new(None))))
            }
            _ => self.malformed("numpy _reconstruct of something other than ndarray"),
        }
    }

    /// `numpy.dtype(code, align, copy)`; BUILD then sets the byte order.
    pub(super) fn numpy_dtype(&mut self, args: &[Value<'a>]) -> Result<Value<'a>> {
        match args {
            [Value::Str(code), ..] => {
                self.budget.copy(code.len(), "a numpy dtype")?;
                Ok(Value::NumpyDtype(Rc::new(NumpyDtype {
                    dtype: super::super::tensor::DType::from_numpy(code),
                    code: code.to_string(),
                    big_endian: false,
                })))
            }
            _ => self.malformed("numpy.dtype needs a type string"),
        }
    }

    /// The dtype's state: (version, byteorder, subarray, names, fields, elsize, alignment, flags).
    pub(super) fn numpy_dtype_state(&mut self, dt: &NumpyDtype, state: Value<'a>) -> Result<Value<'a>> {
        let Value::Tuple(st) = state else {
            return self.malformed("numpy dtype state is not a tuple");
        };
        let order = match st.get(1) {
            Some(Value::Str(o)) => *o,
            _ => return self.malformed("numpy dtype state has no byte order"),
        };
        if !matches!(st.get(3), Some(Value::None) | None) {
            return self.malformed("structured numpy dtypes are not supported");
        }
        let mut dt = dt.clone();
        dt.big_endian = order == ">";
        Ok(Value::NumpyDtype(Rc::new(dt)))
    }

    /// The array's state: (version, shape, dtype, is_fortran, raw data). The
    /// result also fills the pending cell, so memo references see it.
    pub(super) fn numpy_array_state(&mut self, cell: NumpyPending, state: Value<'a>) -> Result<Value<'a>> {
        if cell.borrow().is_some() {
            return self.malformed("numpy array built twice");
        }
        let Value::Tuple(st) = state else {
            return self.malformed("numpy array state is not a tuple");
        };
        let t = match &st[..] {
            [Value::Int(_), Value::Tuple(shape), Value::NumpyDtype(dt), Value::Bool(fortran), data] => {
                let shape = self.dims_of(shape)?;
                match data {
                    Value::Bytes(b) => self.numpy_array(b.as_slice(), dt, &shape, *fortran)?,
                    Value::List(_) => {
                        return self.malformed(format!(
                            "numpy array of dtype '{}' holds Python objects",
                            printable(&dt.code)
                        ))
                    }
                    other => return self.malformed(format!("numpy array data is a {}", other.kind())),
                }
            }
            _ => return self.malformed("numpy array state has an unexpected form"),
        };
        let t = Rc::new(t);
        *cell.borrow_mut() = Some(t.clone());
        Ok(Value::Tensor(t))
    }

    /// `_frombuffer(buffer, dtype, shape, order)`.
    pub(super) fn numpy_frombuffer(&mut self, args: &[Value<'a>]) -> Result<Value<'a>> {
        match args {
            [Value::Bytes(buf), Value::NumpyDtype(dt), Value::Tuple(shape), Value::Str(order)] => {
                let shape = self.dims_of(shape)?;
                let fortran = *order == "F";
                let t = self.numpy_array(buf.as_slice(), dt, &shape, fortran)?;
                Ok(Value::Tensor(Rc::new(t)))
            }
            _ => self.malformed("numpy _frombuffer needs (bytes, dtype, shape, order)"),
        }
    }

    fn numpy_array(
        &mut self,
        raw: &[u8],
        dt: &NumpyDtype,
        shape: &[usize],
        fortran: bool,
    ) -> Result<super::super::tensor::Tensor> {
        let Some(dtype) = dt.dtype else {
            return self.malformed(format!("unsupported numpy dtype '{}'", printable(&dt.code)));
        };
        if dt.big_endian && dtype.size() > 1 {
            return self.malformed("big-endian numpy arrays are not supported");
        }
        let numel = super::strided::numel_of(shape)?;
        let need = numel.checked_mul(dtype.size());
        if need != Some(raw.len()) {
            return self.malformed(format!(
                "numpy array of shape {shape:?} and dtype {dtype} needs {} bytes, has {}",
                need.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                raw.len()
            ));
        }
        let strides = if fortran {
            super::strided::fortran_strides(shape)
        } else {
            super::strided::c_strides(shape)
        };
        super::strided::gather(self.budget, raw, dtype, 0, shape, &strides)
    }
}
