//! A pickle reader that understands exactly what MovieScenes files contain.
//!
//! Python's pickle format is a program for a stack machine; a general reader
//! must call arbitrary globals, which is how a pickle can run `os.system`.
//! This VM supports protocols 2–5 with plain data (dict, list, tuple, str,
//! bytes, ints, floats, bools, None) plus the handful of torch and numpy
//! constructors the MovieScenes files use, each interpreted here in Rust. Any
//! other global is refused by name, so nothing is ever executed.
//!
//! Torch tensors arrive as `torch._utils._rebuild_tensor_v2(
//! torch.storage._load_from_bytes(b"…"), offset, size, stride, …)`, whose
//! bytes are a legacy `torch.save` stream (five small pickles, then raw
//! storage data); numpy arrays as `_reconstruct` + BUILD or `_frombuffer`.
//! Memory is bounded by the input size: every length is checked against the
//! bytes that remain, and decoded tensors draw on a budget proportional to
//! the file size, so a hostile file cannot exhaust memory.

use std::cell::RefCell;
use std::rc::Rc;

use super::tensor::{DType, Tensor, TensorData};

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("empty file")]
    Empty,
    #[error("not a pickle (starts with byte 0x{0:02x}; expected protocol 2-5 header 0x80)")]
    NotPickle(u8),
    #[error("unsupported pickle protocol {0} (2 to 5 are supported)")]
    Protocol(u8),
    #[error("pickle ends early (truncated at byte {0})")]
    Truncated(usize),
    #[error("refuses global {0}: only torch/numpy tensor constructors are allowed, nothing is executed")]
    ForbiddenGlobal(String),
    #[error("unsupported pickle opcode 0x{op:02x} at byte {pos}")]
    Opcode { op: u8, pos: usize },
    #[error("malformed pickle at byte {pos}: {msg}")]
    Malformed { pos: usize, msg: String },
    #[error("malformed torch storage: {0}")]
    Storage(String),
    #[error("file would need more memory than its size allows ({0})")]
    TooLarge(String),
}

type Result<T> = std::result::Result<T, PickleError>;

/// Shared, mutable containers: pickle memo entries alias the objects on the
/// stack, and sharing (rather than copying) keeps memory linear in the input.
pub type List<'a> = Rc<RefCell<Vec<Value<'a>>>>;
pub type Dict<'a> = Rc<RefCell<Vec<(Value<'a>, Value<'a>)>>>;

/// Byte strings borrow from the input unless they had to be decoded.
#[derive(Debug, Clone)]
pub enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Rc<Vec<u8>>),
}

impl Bytes<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => b,
        }
    }
}

/// The globals this reader interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    RebuildTensor,
    LoadFromBytes,
    StorageType(DType),
    OrderedDict,
    CodecsEncode,
    NumpyReconstruct,
    NumpyFromBuffer,
    NumpyNdarray,
    NumpyDtype,
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch.storage", "_load_from_bytes") => Global::LoadFromBytes,
            ("torch", storage) => Global::StorageType(DType::from_torch_storage(storage)?),
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::NumpyReconstruct,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::NumpyFromBuffer,
            ("numpy", "ndarray") => Global::NumpyNdarray,
            ("numpy", "dtype") => Global::NumpyDtype,
            _ => return None,
        })
    }
}

/// A numpy dtype under construction: REDUCE gives the type code, BUILD the byte order.
#[derive(Debug, Clone)]
pub struct NumpyDtype {
    pub dtype: Option<DType>,
    pub code: String,
    pub big_endian: bool,
}

/// A value of the pickle machine.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, as little-endian two's complement bytes.
    BigInt(&'a [u8]),
    Float(f64),
    Str(&'a str),
    Bytes(Bytes<'a>),
    List(List<'a>),
    Tuple(Rc<[Value<'a>]>),
    Dict(Dict<'a>),
    Global(Global),
    Tensor(Rc<Tensor>),
    /// A torch storage: raw little-endian elements.
    Storage {
        dtype: DType,
        data: Bytes<'a>,
    },
    /// A persistent id inside a legacy torch stream.
    StorageRef {
        dtype: DType,
        key: String,
        numel: usize,
    },
    NumpyDtype(Rc<NumpyDtype>),
    /// `numpy.core.multiarray._reconstruct(...)` awaiting its BUILD state.
    NumpyPending,
}

impl<'a> Value<'a> {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Tensor(_) => "tensor",
            Value::Storage { .. } => "torch storage",
            Value::StorageRef { .. } => "storage reference",
            Value::NumpyDtype(_) => "numpy dtype",
            Value::NumpyPending => "unfinished numpy array",
        }
    }
}

/// The largest number of lists, tuples and dicts one file may create. Real
/// files hold a few dozen; the cap keeps hostile nesting from overflowing the
/// stack when values are dropped.
const MAX_CONTAINERS: usize = 10_000;

/// Tensors may decode to at most this many bytes per input byte (plus a
/// fixed allowance), which covers widening bool/u8 storages to f32 while
/// refusing stride-0 views that claim huge shapes over tiny storages.
const DECODE_BYTES_PER_INPUT_BYTE: usize = 8;
const DECODE_ALLOWANCE: usize = 1 << 20;

/// Reads one pickle from `data` and returns its top-level value.
pub fn load(data: &[u8]) -> Result<Value<'_>> {
    let budget = data
        .len()
        .saturating_mul(DECODE_BYTES_PER_INPUT_BYTE)
        .saturating_add(DECODE_ALLOWANCE);
    let mut budget = Budget {
        bytes_left: budget,
        containers_left: MAX_CONTAINERS,
    };
    let mut vm = Machine::new(data, 0, &mut budget, Mode::Outer);
    vm.check_header()?;
    vm.run()
}

struct Budget {
    bytes_left: usize,
    containers_left: usize,
}

impl Budget {
    fn take_bytes(&mut self, n: usize, what: &str) -> Result<()> {
        if n > self.bytes_left {
            return Err(PickleError::TooLarge(format!("{what} needs {n} bytes")));
        }
        self.bytes_left -= n;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The user's pickle.
    Outer,
    /// A pickle inside a legacy torch storage stream: persistent ids allowed,
    /// nested storages not.
    TorchLegacy,
}

struct Machine<'a, 'b> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value<'a>>,
    marks: Vec<usize>,
    memo: Vec<Option<Value<'a>>>,
    budget: &'b mut Budget,
    mode: Mode,
}

impl<'a, 'b> Machine<'a, 'b> {
    fn new(data: &'a [u8], pos: usize, budget: &'b mut Budget, mode: Mode) -> Self {
        Machine {
            data,
            pos,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Vec::new(),
            budget,
            mode,
        }
    }

    fn check_header(&self) -> Result<()> {
        match self.data {
            [] => Err(PickleError::Empty),
            [0x80, p, ..] if (2..=5).contains(p) => Ok(()),
            [0x80, p, ..] => Err(PickleError::Protocol(*p)),
            [0x80] => Err(PickleError::Truncated(1)),
            [b, ..] => Err(PickleError::NotPickle(*b)),
        }
    }

    fn malformed<T>(&self, msg: impl Into<String>) -> Result<T> {
        Err(PickleError::Malformed {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(PickleError::Truncated(self.data.len())),
        }
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len64(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| PickleError::Truncated(self.data.len()))
    }

    fn str_of(&mut self, n: usize) -> Result<&'a str> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s),
            Err(_) => self.malformed("string is not valid UTF-8"),
        }
    }

    /// A text line ending in `\n`, as GLOBAL's operands are.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated(self.data.len()));
        };
        let s = self.str_of(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value<'a>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow");
        }
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.malformed("stack underflow"),
        }
    }

    fn top(&mut self) -> Result<&mut Value<'a>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow");
        }
        let pos = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            pos,
            msg: "stack underflow".into(),
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value<'a>>> {
        let Some(mark) = self.marks.pop() else {
            return self.malformed("no MARK on the stack");
        };
        Ok(self.stack.split_off(mark))
    }

    fn container(&mut self) -> Result<()> {
        if self.budget.containers_left == 0 {
            return Err(PickleError::TooLarge(format!(
                "more than {MAX_CONTAINERS} lists, tuples and dicts"
            )));
        }
        self.budget.containers_left -= 1;
        Ok(())
    }

    fn push_tuple(&mut self, items: Vec<Value<'a>>) -> Result<()> {
        self.container()?;
        self.stack.push(Value::Tuple(items.into()));
        Ok(())
    }

    fn memo_put(&mut self, idx: usize) -> Result<()> {
        // Memo indices are dense in practice; refuse ones larger than the
        // input could ever need so a hostile index cannot force allocation.
        if idx > self.data.len() {
            return self.malformed(format!("memo index {idx} out of range"));
        }
        let v = self.top()?.clone();
        if self.memo.len() <= idx {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }

    fn memo_get(&mut self, idx: usize) -> Result<()> {
        match self.memo.get(idx) {
            Some(Some(v)) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            _ => self.malformed(format!("memo index {idx} was never stored")),
        }
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        match Global::resolve(module, name) {
            Some(Global::StorageType(_)) if self.mode == Mode::Outer => {
                Err(PickleError::ForbiddenGlobal(format!("{module}.{name}")))
            }
            Some(g) => {
                self.stack.push(Value::Global(g));
                Ok(())
            }
            None => Err(PickleError::ForbiddenGlobal(format!("{module}.{name}"))),
        }
    }

    fn run(&mut self) -> Result<Value<'a>> {
        loop {
            let op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(PickleError::Protocol(p));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(long_value(b));
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(long_value(b));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.str_of(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.str_of(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.len64()?;
                    let s = self.str_of(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Bytes::Borrowed(b)));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Bytes::Borrowed(b)));
                }
                0x8e | 0x96 => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Bytes::Borrowed(b)));
                }
                b'}' => {
                    self.container()?;
                    self.stack.push(Value::Dict(Rc::default()));
                }
                b']' => {
                    self.container()?;
                    self.stack.push(Value::List(Rc::default()));
                }
                b')' => self.push_tuple(Vec::new())?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_tuple(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.container()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.container()?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push_global(m, n)?,
                        _ => return self.malformed("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.stack.push(v);
                }
                b'Q' if self.mode == Mode::TorchLegacy => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'i' | 0x82..=0x84 => {
                    return Err(PickleError::ForbiddenGlobal("(extension registry)".into()))
                }
                _ => return Err(PickleError::Opcode { op, pos: op_pos }),
            }
        }
    }

    fn pairs(&self, items: Vec<Value<'a>>) -> Result<Vec<(Value<'a>, Value<'a>)>> {
        if !items.len().is_multiple_of(2) {
            return self.malformed("odd number of items for a dict");
        }
        let mut it = items.into_iter();
        let mut out = Vec::with_capacity(it.len() / 2);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn append(&mut self, items: Vec<Value<'a>>) -> Result<()> {
        match self.top()? {
            Value::List(l) => {
                let l = l.clone();
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.malformed(format!("APPEND to a {kind}"))
            }
        }
    }

    fn set_items(&mut self, pairs: Vec<(Value<'a>, Value<'a>)>) -> Result<()> {
        match self.top()? {
            Value::Dict(d) => {
                let d = d.clone();
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    // Python semantics: a repeated key replaces the earlier value.
                    match d.iter_mut().find(|(old, _)| same_key(old, &k)) {
                        Some(slot) => slot.1 = v,
                        None => d.push((k, v)),
                    }
                }
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.malformed(format!("SETITEM on a {kind}"))
            }
        }
    }

    fn reduce(&mut self, func: Value<'a>, args: Value<'a>) -> Result<Value<'a>> {
        let Value::Global(g) = func else {
            return self.malformed(format!("REDUCE calls a {}", func.kind()));
        };
        let Value::Tuple(args) = args else {
            return self.malformed("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    return self.malformed("OrderedDict with arguments");
                }
                self.container()?;
                Ok(Value::Dict(Rc::default()))
            }
            Global::CodecsEncode => match &args[..] {
                [Value::Str(s), Value::Str(enc)] if *enc == "latin1" || *enc == "latin-1" => {
                    match latin1_bytes(s) {
                        Some(b) => Ok(Value::Bytes(Bytes::Owned(Rc::new(b)))),
                        None => self.malformed("_codecs.encode: text is not latin-1"),
                    }
                }
                _ => self.malformed("_codecs.encode needs (str, 'latin1')"),
            },
            Global::LoadFromBytes => match &args[..] {
                [Value::Bytes(b)] => {
                    if self.mode != Mode::Outer {
                        return self.malformed("nested torch storage");
                    }
                    self.load_storage(b.clone())
                }
                _ => self.malformed("_load_from_bytes needs one bytes argument"),
            },
            Global::RebuildTensorV2 | Global::RebuildTensor => self.rebuild_tensor(&args),
            Global::NumpyReconstruct => match &args[..] {
                [Value::Global(Global::NumpyNdarray), ..] => Ok(Value::NumpyPending),
                _ => self.malformed("numpy _reconstruct of something other than ndarray"),
            },
            Global::NumpyDtype => match &args[..] {
                [Value::Str(code), ..] => Ok(Value::NumpyDtype(Rc::new(NumpyDtype {
                    dtype: DType::from_numpy(code),
                    code: code.to_string(),
                    big_endian: false,
                }))),
                _ => self.malformed("numpy.dtype needs a type string"),
            },
            Global::NumpyFromBuffer => match &args[..] {
                [Value::Bytes(buf), Value::NumpyDtype(dt), Value::Tuple(shape), Value::Str(order)] => {
                    let shape = self.shape_of(shape)?;
                    let fortran = *order == "F";
                    self.numpy_array(buf.as_slice(), dt, &shape, fortran)
                }
                _ => self.malformed("numpy _frombuffer needs (bytes, dtype, shape, order)"),
            },
            Global::NumpyNdarray | Global::StorageType(_) => self.malformed("cannot call this type directly"),
        }
    }

    fn build(&mut self, obj: Value<'a>, state: Value<'a>) -> Result<Value<'a>> {
        match obj {
            Value::NumpyDtype(dt) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
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
                let mut dt = (*dt).clone();
                dt.big_endian = order == ">";
                Ok(Value::NumpyDtype(Rc::new(dt)))
            }
            Value::NumpyPending => {
                // (version, shape, dtype, is_fortran, raw data)
                let Value::Tuple(st) = state else {
                    return self.malformed("numpy array state is not a tuple");
                };
                match &st[..] {
                    [Value::Int(_), Value::Tuple(shape), Value::NumpyDtype(dt), Value::Bool(fortran), data] =>
                    {
                        let shape = self.shape_of(shape)?;
                        match data {
                            Value::Bytes(b) => self.numpy_array(b.as_slice(), dt, &shape, *fortran),
                            Value::List(_) => self.malformed(format!(
                                "numpy array of dtype '{}' holds Python objects",
                                dt.code
                            )),
                            other => self.malformed(format!("numpy array data is a {}", other.kind())),
                        }
                    }
                    _ => self.malformed("numpy array state has an unexpected form"),
                }
            }
            Value::Dict(d) => {
                // Plain objects restored by __setstate__ dicts: keep the dict.
                if let Value::Dict(s) = state {
                    let items = s.borrow().clone();
                    d.borrow_mut().extend(items);
                    Ok(Value::Dict(d))
                } else {
                    self.malformed("BUILD with a non-dict state")
                }
            }
            other => self.malformed(format!("BUILD on a {}", other.kind())),
        }
    }

    fn shape_of(&self, dims: &[Value<'a>]) -> Result<Vec<usize>> {
        dims.iter()
            .map(|d| match d {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => self.malformed("tensor shape must be non-negative integers"),
            })
            .collect()
    }

    fn numel_of(&self, shape: &[usize]) -> Result<usize> {
        shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .map_or_else(
                || Err(PickleError::TooLarge(format!("shape {shape:?} overflows"))),
                Ok,
            )
    }

    fn numpy_array(
        &mut self,
        raw: &[u8],
        dt: &NumpyDtype,
        shape: &[usize],
        fortran: bool,
    ) -> Result<Value<'a>> {
        let Some(dtype) = dt.dtype else {
            return self.malformed(format!("unsupported numpy dtype '{}'", dt.code));
        };
        if dt.big_endian && dtype.size() > 1 {
            return self.malformed("big-endian numpy arrays are not supported");
        }
        let numel = self.numel_of(shape)?;
        let need = numel.checked_mul(dtype.size());
        if need != Some(raw.len()) {
            return self.malformed(format!(
                "numpy array of shape {shape:?} and dtype {dtype} needs {} bytes, has {}",
                need.unwrap_or(usize::MAX),
                raw.len()
            ));
        }
        let strides = if fortran {
            fortran_strides(shape)
        } else {
            c_strides(shape)
        };
        let t = self.gather(raw, dtype, numel, 0, shape, &strides)?;
        Ok(Value::Tensor(Rc::new(t)))
    }

    fn rebuild_tensor(&mut self, args: &[Value<'a>]) -> Result<Value<'a>> {
        let (storage, offset, size, stride) = match args {
            [s, Value::Int(o), Value::Tuple(size), Value::Tuple(stride), ..] => (s, *o, size, stride),
            _ => return self.malformed("_rebuild_tensor_v2 arguments have an unexpected form"),
        };
        let Value::Storage { dtype, data } = storage else {
            return self.malformed(format!("tensor built on a {}", storage.kind()));
        };
        let shape = self.shape_of(size)?;
        let strides: Vec<usize> = self.shape_of(stride)?;
        if strides.len() != shape.len() {
            return self.malformed("tensor stride and size differ in length");
        }
        if offset < 0 {
            return self.malformed("negative storage offset");
        }
        let storage_numel = data.as_slice().len() / dtype.size();
        let t = self.gather(
            data.as_slice(),
            *dtype,
            storage_numel,
            offset as usize,
            &shape,
            &strides,
        )?;
        Ok(Value::Tensor(Rc::new(t)))
    }

    /// Copies the elements a strided view selects into a contiguous tensor.
    fn gather(
        &mut self,
        raw: &[u8],
        dtype: DType,
        storage_numel: usize,
        offset: usize,
        shape: &[usize],
        strides: &[usize],
    ) -> Result<Tensor> {
        let numel = self.numel_of(shape)?;
        self.budget
            .take_bytes(numel.saturating_mul(dtype.size()), "a tensor")?;
        if numel > 0 {
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
        }
        let contiguous = strides == c_strides(shape).as_slice() || numel <= 1;
        let es = dtype.size();
        let bytes: std::borrow::Cow<'_, [u8]> = if contiguous {
            std::borrow::Cow::Borrowed(&raw[offset * es..(offset + numel) * es])
        } else {
            let mut out = Vec::with_capacity(numel * es);
            let mut idx = vec![0usize; shape.len()];
            for _ in 0..numel {
                let e = offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
                out.extend_from_slice(&raw[e * es..(e + 1) * es]);
                for ax in (0..shape.len()).rev() {
                    idx[ax] += 1;
                    if idx[ax] < shape[ax] {
                        break;
                    }
                    idx[ax] = 0;
                }
            }
            std::borrow::Cow::Owned(out)
        };
        let data = decode(&bytes, dtype).map_err(PickleError::Storage)?;
        Ok(Tensor::new(shape.to_vec(), data))
    }

    /// Parses a legacy `torch.save` stream (what `_load_from_bytes` receives).
    fn load_storage(&mut self, bytes: Bytes<'a>) -> Result<Value<'a>> {
        let owned;
        let data: &[u8] = match &bytes {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => {
                owned = b.clone();
                &owned
            }
        };
        let (dtype, key, numel, payload_at) = {
            let mut inner = Machine::new(data, 0, self.budget, Mode::TorchLegacy);
            let err = |m: &str| PickleError::Storage(m.to_string());
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
            let sys_info = inner.run()?;
            if let Value::Dict(d) = &sys_info {
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
            (dtype, key, numel, inner.pos)
        };
        let _ = key;
        let mut rest = Machine::new(data, payload_at, self.budget, Mode::TorchLegacy);
        let count = rest
            .len64()
            .map_err(|_| PickleError::Storage("storage data truncated".into()))?;
        if count != numel {
            return Err(PickleError::Storage(format!(
                "storage holds {count} elements, header says {numel}"
            )));
        }
        let nbytes = count
            .checked_mul(dtype.size())
            .ok_or_else(|| PickleError::Storage("storage size overflows".into()))?;
        let start = rest.pos;
        rest.take(nbytes)
            .map_err(|_| PickleError::Storage(format!("storage data truncated: needs {nbytes} bytes")))?;
        let data = match bytes {
            Bytes::Borrowed(b) => Bytes::Borrowed(&b[start..start + nbytes]),
            Bytes::Owned(b) => Bytes::Owned(Rc::new(b[start..start + nbytes].to_vec())),
        };
        Ok(Value::Storage { dtype, data })
    }

    fn reset(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
    }

    fn persistent_load(&mut self, pid: Value<'a>) -> Result<Value<'a>> {
        let Value::Tuple(t) = pid else {
            return self.malformed("persistent id is not a tuple");
        };
        match &t[..] {
            [Value::Str("storage"), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel), ..]
                if *numel >= 0 =>
            {
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

/// The magic number that opens a legacy `torch.save` stream
/// (0x1950a86a20f9469cfc6c), as pickle's little-endian LONG1 bytes.
pub const LEGACY_MAGIC: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn same_key(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => false,
    }
}

fn long_value(b: &[u8]) -> Value<'_> {
    if b.len() <= 8 {
        let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
        let mut a = [if neg { 0xff } else { 0 }; 8];
        a[..b.len()].copy_from_slice(b);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(b)
    }
}

/// Protocol 2 pickles `bytes` as `_codecs.encode(text, 'latin1')`, the text
/// stored as UTF-8: each char below U+0100 is one byte.
fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            out.push(c);
            i += 1;
        } else if (c == 0xc2 || c == 0xc3) && i + 1 < b.len() {
            out.push(((c & 0x1f) << 6) | (b[i + 1] & 0x3f));
            i += 2;
        } else {
            return None;
        }
    }
    Some(out)
}

pub(crate) fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

fn fortran_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        s[i] = s[i - 1].saturating_mul(shape[i - 1]);
    }
    s
}

/// Decodes contiguous little-endian elements.
fn decode(bytes: &[u8], dtype: DType) -> std::result::Result<TensorData, String> {
    Ok(match dtype {
        DType::F32 => TensorData::F32(decode_le(bytes, f32::from_le_bytes)),
        DType::F64 => TensorData::F64(decode_le(bytes, f64::from_le_bytes)),
        DType::I64 => TensorData::I64(decode_le(bytes, i64::from_le_bytes)),
        DType::I32 => TensorData::I32(decode_le(bytes, i32::from_le_bytes)),
        DType::U8 => TensorData::U8(bytes.to_vec()),
        DType::Bool => TensorData::Bool(
            bytes
                .iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    x => Err(format!("bool element has value {x}")),
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
    })
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
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    if bytes.len() < PARALLEL_BYTES || threads < 2 {
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
