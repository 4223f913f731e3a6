//! A pickle reader that understands exactly what MovieScenes files contain.
//!
//! Python's pickle format is a program for a stack machine; a general reader
//! must call arbitrary globals, which is how a pickle can run `os.system`.
//! Here the machine ([`machine`]) is inert: protocols 2–5 with plain data
//! (dict, list, tuple, str, bytes, ints, floats, bools, None), and the
//! handful of globals MovieScenes files use are interpreted in Rust by the
//! torch ([`torch`]) and numpy ([`numpy`]) layers, which copy the elements
//! a view selects ([`strided`]). Any other global is refused by name, so
//! nothing is ever executed.
//!
//! Torch tensors arrive as `torch._utils._rebuild_tensor_v2(
//! torch.storage._load_from_bytes(b"…"), offset, size, stride, …)`, whose
//! bytes are a legacy `torch.save` stream (five small pickles, then raw
//! storage data); numpy arrays as `_reconstruct` + BUILD or `_frombuffer`.
//!
//! **Budgets.** A file of N bytes is read or refused in O(N) work and at
//! most [`ALLOC_PER_INPUT_BYTE`]·N + [`ALLOC_ALLOWANCE`] bytes of charged
//! allocations (stack slots, memo slots, container items, dict index
//! entries, decoded and copied bytes); vectors' growth slack at most doubles
//! that, which keeps the real peak within 4·N + 64 MiB beyond the mapped
//! file (`tests/fuzz_pickle.rs` measures it with a counting allocator). Work
//! is counted per opcode, per item moved and per 16 bytes copied, against
//! [`WORK_PER_INPUT_BYTE`]·N + [`WORK_ALLOWANCE`]: deterministic, so a hostile
//! file is refused the same way on every machine.

mod machine;
mod numpy;
pub(crate) mod strided;
mod torch;
mod torch_file;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::tensor::{DType, Tensor};

pub(crate) use strided::{c_strides, decode_le};
pub use torch::LEGACY_MAGIC;
pub use torch_file::{is_torch_save, load_state_dict};

/// Why a pickle could not be read. Text taken from the file is escaped
/// ([`printable`]), so an error message cannot steer a terminal.
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
    #[error("file would need more memory or work than its size allows ({0})")]
    TooLarge(String),
}

pub type Result<T> = std::result::Result<T, PickleError>;

/// Shared, mutable containers: pickle memo entries alias the objects on the
/// stack, and sharing (rather than copying) keeps memory linear in the input.
pub type List<'a> = Rc<RefCell<Vec<Value<'a>>>>;
pub type Dict<'a> = Rc<RefCell<DictData<'a>>>;

/// A dict's items in insertion order, with an index over its str and int
/// keys so that setting an item is O(1) (a repeated key replaces the
/// earlier value, as in Python).
#[derive(Debug, Default)]
pub struct DictData<'a> {
    items: Vec<(Value<'a>, Value<'a>)>,
    index: HashMap<DictKey<'a>, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DictKey<'a> {
    Str(&'a str),
    Int(i64),
}

impl<'a> DictData<'a> {
    /// Bytes [`DictData::insert`] may allocate per item: the pair, and the
    /// index entry (hash map slots run up to 8/7 full).
    const CHARGE_PER_ITEM: usize = std::mem::size_of::<(Value<'static>, Value<'static>)>()
        + 2 * std::mem::size_of::<(DictKey<'static>, usize)>();

    fn insert(&mut self, k: Value<'a>, v: Value<'a>) {
        let key = match &k {
            Value::Str(s) => Some(DictKey::Str(s)),
            Value::Int(i) => Some(DictKey::Int(*i)),
            _ => None,
        };
        match key {
            Some(key) => match self.index.get(&key) {
                Some(&i) => self.items[i].1 = v,
                None => {
                    self.index.insert(key, self.items.len());
                    self.items.push((k, v));
                }
            },
            None => self.items.push((k, v)),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Value<'a>, Value<'a>)> {
        self.items.iter()
    }

    /// Moves the items out (so each value has one owner), leaving it empty.
    pub fn take_items(&mut self) -> Vec<(Value<'a>, Value<'a>)> {
        self.index.clear();
        std::mem::take(&mut self.items)
    }
}

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
    /// `bytes()`: protocol 2 pickles empty bytes as a call of the type.
    BytesType,
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
            ("__builtin__" | "builtins", "bytes") => Global::BytesType,
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

/// `numpy.core.multiarray._reconstruct(ndarray, …)`: an array whose
/// contents BUILD fills in. Python mutates the object in place, so every
/// memo reference to it sees the result; the cell gives the same sharing.
pub type NumpyPending = Rc<RefCell<Option<Rc<Tensor>>>>;

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
    NumpyPending(NumpyPending),
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
            Value::NumpyPending(_) => "unfinished numpy array",
        }
    }

    /// The value with a finished numpy array in place of its pending cell.
    pub fn resolved(self) -> Value<'a> {
        match &self {
            Value::NumpyPending(cell) => match &*cell.borrow() {
                Some(t) => Value::Tensor(t.clone()),
                None => self.clone(),
            },
            _ => self,
        }
    }
}

/// The largest number of lists, tuples and dicts one file may create. Real
/// files hold a few dozen; the cap keeps hostile nesting from overflowing the
/// stack when values are dropped.
const MAX_CONTAINERS: usize = 10_000;

/// Charged allocations may reach this many bytes per input byte, plus the
/// allowance: enough for every tensor to be decoded once (1 byte per input
/// byte) and a non-contiguous view copied on the way, while a stride-0
/// view claiming a huge shape over a tiny storage is refused.
pub const ALLOC_PER_INPUT_BYTE: usize = 2;
pub const ALLOC_ALLOWANCE: usize = 32 << 20;

/// Work units (an opcode, an item moved, 16 bytes copied) per input byte,
/// plus the allowance. Real files use a small fraction of it.
pub const WORK_PER_INPUT_BYTE: u64 = 64;
pub const WORK_ALLOWANCE: u64 = 1 << 24;

/// What one file may still spend.
pub(crate) struct Budget {
    bytes_left: usize,
    work_left: u64,
    containers_left: usize,
}

impl Budget {
    pub(super) fn for_input(len: usize) -> Budget {
        Budget {
            bytes_left: len
                .saturating_mul(ALLOC_PER_INPUT_BYTE)
                .saturating_add(ALLOC_ALLOWANCE),
            work_left: (len as u64)
                .saturating_mul(WORK_PER_INPUT_BYTE)
                .saturating_add(WORK_ALLOWANCE),
            containers_left: MAX_CONTAINERS,
        }
    }

    /// Charges an allocation of `n` bytes.
    pub(super) fn take_bytes(&mut self, n: usize, what: &str) -> Result<()> {
        if n > self.bytes_left {
            return Err(PickleError::TooLarge(format!("{what} needs {n} bytes")));
        }
        self.bytes_left -= n;
        Ok(())
    }

    /// Charges `n` work units.
    fn work(&mut self, n: u64) -> Result<()> {
        if n > self.work_left {
            return Err(PickleError::TooLarge("too many operations for its size".into()));
        }
        self.work_left -= n;
        Ok(())
    }

    /// Charges copying `bytes` bytes: their memory and their work.
    fn copy(&mut self, bytes: usize, what: &str) -> Result<()> {
        self.take_bytes(bytes, what)?;
        self.work(bytes as u64 / 16 + 1)
    }

    fn container(&mut self) -> Result<()> {
        if self.containers_left == 0 {
            return Err(PickleError::TooLarge(format!(
                "more than {MAX_CONTAINERS} lists, tuples and dicts"
            )));
        }
        self.containers_left -= 1;
        self.take_bytes(64, "a container")
    }
}

/// Reads one pickle from `data` and returns its top-level value.
pub fn load(data: &[u8]) -> Result<Value<'_>> {
    let mut budget = Budget::for_input(data.len());
    let mut vm = machine::Machine::new(data, 0, &mut budget, machine::Mode::Outer);
    vm.check_header()?;
    vm.run()
}

/// Text from a file made safe to print: control characters (C0, DEL, C1,
/// and Unicode's bidirectional overrides) escaped as `\u{…}`, so a name in
/// a hostile file cannot clear a screen or fake other output. At most 200
/// characters are kept.
pub fn printable(s: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
