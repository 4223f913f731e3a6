//! The inert pickle machine: opcodes, stack, marks and memo. It builds plain
//! values and hands calls of the allowed globals to the torch and numpy
//! layers; every allocation and step is charged to the file's [`Budget`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::super::tensor::DType;
use super::{printable, Budget, Bytes, DictData, Global, PickleError, Result, Value};

/// The opcodes of protocols 2–5 this machine runs (Python's `pickle.py` names).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES8: u8 = 0x8e;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE3: u8 = 0x87;
    pub const LIST: u8 = b'l';
    pub const DICT: u8 = b'd';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
    pub const INST: u8 = b'i';
    pub const EXT1: u8 = 0x82;
    pub const EXT4: u8 = 0x84;
}

/// Bytes charged for one value slot (stack, memo, list or tuple item).
const VALUE_BYTES: usize = std::mem::size_of::<Option<Value<'static>>>();

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The user's pickle.
    Outer,
    /// A pickle inside a legacy torch storage stream: persistent ids allowed,
    /// nested storages not.
    TorchLegacy,
    /// The object pickle of a whole `torch.save` file: persistent ids name
    /// the file's storages ([`Machine::storages`]; without them, a first
    /// pass that only learns the pickle's extent builds no tensors).
    TorchFile,
}

pub(super) struct Machine<'a, 'b> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    stack: Vec<Value<'a>>,
    marks: Vec<usize>,
    memo: Vec<Option<Value<'a>>>,
    pub(super) budget: &'b mut Budget,
    pub(super) mode: Mode,
    /// [`Mode::TorchFile`]'s storages by key: raw little-endian elements.
    pub(super) storages: Option<Rc<HashMap<String, &'a [u8]>>>,
    /// The storages [`Mode::TorchFile`]'s first pass saw referenced: key,
    /// element type and count.
    pub(super) storage_refs: Vec<(String, DType, usize)>,
}

impl<'a, 'b> Machine<'a, 'b> {
    pub(super) fn new(data: &'a [u8], pos: usize, budget: &'b mut Budget, mode: Mode) -> Self {
        Machine {
            data,
            pos,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Vec::new(),
            budget,
            mode,
            storages: None,
            storage_refs: Vec::new(),
        }
    }

    pub(super) fn check_header(&self) -> Result<()> {
        match self.data {
            [] => Err(PickleError::Empty),
            [op::PROTO, p, ..] if (2..=5).contains(p) => Ok(()),
            [op::PROTO, p, ..] => Err(PickleError::Protocol(*p)),
            [op::PROTO] => Err(PickleError::Truncated(1)),
            [b, ..] => Err(PickleError::NotPickle(*b)),
        }
    }

    pub(super) fn malformed<T>(&self, msg: impl Into<String>) -> Result<T> {
        Err(PickleError::Malformed {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A u32 length or index as usize.
    fn len32(&mut self) -> Result<usize> {
        Ok(self.u32()? as usize)
    }

    pub(super) fn len64(&mut self) -> Result<usize> {
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
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated(self.data.len()));
        };
        let s = self.str_of(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn push(&mut self, v: Value<'a>) -> Result<()> {
        self.budget.take_bytes(VALUE_BYTES, "the stack")?;
        self.stack.push(v);
        Ok(())
    }

    pub(super) fn pop(&mut self) -> Result<Value<'a>> {
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
        if mark > self.stack.len() {
            return self.malformed("MARK above the stack");
        }
        let items = self.stack.split_off(mark);
        self.budget.work(items.len() as u64)?;
        self.budget
            .take_bytes(items.len().saturating_mul(VALUE_BYTES), "a MARK's items")?;
        Ok(items)
    }

    fn push_tuple(&mut self, items: Vec<Value<'a>>) -> Result<()> {
        self.budget.container()?;
        self.budget
            .take_bytes(items.len().saturating_mul(VALUE_BYTES), "a tuple")?;
        self.push(Value::Tuple(items.into()))
    }

    fn memo_put(&mut self, idx: usize) -> Result<()> {
        // Memo indices are dense in practice: a new slot beyond the end is
        // charged with every slot it adds, so a hostile index is refused by
        // the budget instead of allocating.
        let v = self.top()?.clone();
        if self.memo.len() <= idx {
            let grow = (idx - self.memo.len()).saturating_add(1);
            self.budget
                .take_bytes(grow.saturating_mul(VALUE_BYTES), "the memo")?;
            self.budget.work(grow as u64)?;
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }

    fn memo_get(&mut self, idx: usize) -> Result<()> {
        match self.memo.get(idx) {
            Some(Some(v)) => {
                let v = v.clone().resolved();
                self.push(v)
            }
            _ => self.malformed(format!("memo index {idx} was never stored")),
        }
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        let refused = || PickleError::ForbiddenGlobal(printable(&format!("{module}.{name}")));
        match Global::resolve(module, name) {
            Some(Global::StorageType(_)) if self.mode == Mode::Outer => Err(refused()),
            Some(Global::LoadFromBytes) if self.mode == Mode::TorchFile => Err(refused()),
            Some(g) => self.push(Value::Global(g)),
            None => Err(refused()),
        }
    }

    pub(super) fn run(&mut self) -> Result<Value<'a>> {
        loop {
            self.budget.work(1)?;
            let op_pos = self.pos;
            let code = self.u8()?;
            match code {
                op::PROTO => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(PickleError::Protocol(p));
                    }
                }
                op::FRAME => {
                    self.u64()?; // a size hint only
                }
                op::STOP => return Ok(self.pop()?.resolved()),
                op::MARK => {
                    self.budget.take_bytes(std::mem::size_of::<usize>(), "a MARK")?;
                    self.marks.push(self.stack.len());
                }
                op::POP => {
                    self.pop()?;
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                op::NONE => self.push(Value::None)?,
                op::NEWTRUE => self.push(Value::Bool(true))?,
                op::NEWFALSE => self.push(Value::Bool(false))?,
                op::BININT => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?;
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?;
                }
                op::BININT2 => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?;
                }
                op::LONG1 => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(long_value(b))?;
                }
                op::LONG4 => {
                    let n = self.len32()?;
                    let b = self.take(n)?;
                    self.push(long_value(b))?;
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v))?;
                }
                op::BINUNICODE => {
                    let n = self.len32()?;
                    let s = self.str_of(n)?;
                    self.push(Value::Str(s))?;
                }
                op::SHORT_BINUNICODE => {
                    let n = self.u8()? as usize;
                    let s = self.str_of(n)?;
                    self.push(Value::Str(s))?;
                }
                op::BINUNICODE8 => {
                    let n = self.len64()?;
                    let s = self.str_of(n)?;
                    self.push(Value::Str(s))?;
                }
                op::BINBYTES => {
                    let n = self.len32()?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(Bytes::Borrowed(b)))?;
                }
                op::SHORT_BINBYTES => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(Bytes::Borrowed(b)))?;
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(Bytes::Borrowed(b)))?;
                }
                op::EMPTY_DICT => {
                    self.budget.container()?;
                    self.push(Value::Dict(Rc::default()))?;
                }
                op::EMPTY_LIST => {
                    self.budget.container()?;
                    self.push(Value::List(Rc::default()))?;
                }
                op::EMPTY_TUPLE => self.push_tuple(Vec::new())?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?;
                }
                op::TUPLE1..=op::TUPLE3 => {
                    let n = (code - op::TUPLE1 + 1) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_tuple(items)?;
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.budget.container()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?;
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.budget.container()?;
                    let dict: super::Dict<'a> = Rc::default();
                    self.push(Value::Dict(dict))?;
                    self.set_items(pairs)?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                op::BINPUT => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                op::LONG_BINPUT => {
                    let i = self.len32()?;
                    self.memo_put(i)?;
                }
                op::MEMOIZE => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                op::BINGET => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                op::LONG_BINGET => {
                    let i = self.len32()?;
                    self.memo_get(i)?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_global(module, name)?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push_global(m, n)?,
                        _ => return self.malformed("STACK_GLOBAL needs two strings"),
                    }
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.push(v)?;
                }
                op::BINPERSID if matches!(self.mode, Mode::TorchLegacy | Mode::TorchFile) => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                op::INST | op::EXT1..=op::EXT4 => {
                    return Err(PickleError::ForbiddenGlobal("(extension registry)".into()))
                }
                _ => {
                    return Err(PickleError::Opcode {
                        op: code,
                        pos: op_pos,
                    })
                }
            }
        }
    }

    /// Clears the machine for the next pickle of a stream.
    pub(super) fn reset(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
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
        self.budget.work(items.len() as u64)?;
        self.budget
            .take_bytes(items.len().saturating_mul(VALUE_BYTES), "a list")?;
        match self.top()? {
            Value::List(l) => {
                let l = l.clone();
                l.borrow_mut().extend(items.into_iter().map(Value::resolved));
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.malformed(format!("APPEND to a {kind}"))
            }
        }
    }

    pub(super) fn set_items(&mut self, pairs: Vec<(Value<'a>, Value<'a>)>) -> Result<()> {
        self.budget.work(pairs.len() as u64)?;
        self.budget
            .take_bytes(pairs.len().saturating_mul(DictData::CHARGE_PER_ITEM), "a dict")?;
        match self.top()? {
            Value::Dict(d) => {
                let d = d.clone();
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    d.insert(k, v.resolved());
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
                self.budget.container()?;
                Ok(Value::Dict(Rc::default()))
            }
            Global::BytesType => {
                if !args.is_empty() {
                    return self.malformed("bytes() with arguments");
                }
                Ok(Value::Bytes(Bytes::Borrowed(&[])))
            }
            Global::CodecsEncode => match &args[..] {
                [Value::Str(s), Value::Str(enc)] if *enc == "latin1" || *enc == "latin-1" => {
                    self.budget.copy(s.len(), "_codecs.encode")?;
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
            Global::NumpyReconstruct => self.numpy_reconstruct(&args),
            Global::NumpyDtype => self.numpy_dtype(&args),
            Global::NumpyFromBuffer => self.numpy_frombuffer(&args),
            Global::NumpyNdarray | Global::StorageType(_) => self.malformed("cannot call this type directly"),
        }
    }

    fn build(&mut self, obj: Value<'a>, state: Value<'a>) -> Result<Value<'a>> {
        match obj {
            Value::NumpyDtype(dt) => self.numpy_dtype_state(&dt, state),
            Value::NumpyPending(cell) => self.numpy_array_state(cell, state),
            Value::Dict(d) => {
                // Plain objects restored by __setstate__ dicts: keep the dict.
                let Value::Dict(s) = state else {
                    return self.malformed("BUILD with a non-dict state");
                };
                if Rc::ptr_eq(&d, &s) {
                    return Ok(Value::Dict(d));
                }
                let items: Vec<(Value<'a>, Value<'a>)> = s.borrow().iter().cloned().collect();
                self.push(Value::Dict(d.clone()))?;
                self.set_items(items)?;
                self.pop()
            }
            other => self.malformed(format!("BUILD on a {}", other.kind())),
        }
    }

    /// Non-negative integers, e.g. a shape or strides.
    pub(super) fn dims_of(&mut self, dims: &[Value<'a>]) -> Result<Vec<usize>> {
        self.budget.work(dims.len() as u64)?;
        dims.iter()
            .map(|d| match d {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => self.malformed("tensor shape and strides must be non-negative integers"),
            })
            .collect()
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
