//! Whole `torch.save` files (a PyTorch checkpoint such as SceneSeg's
//! `model_best.pth.tar`) through the same inert machine: the zip format of
//! torch ≥ 1.6 (`<name>/data.pkl` plus one stored entry a storage under
//! `<name>/data/`) and the legacy format of torch 1.0–1.5 (magic, protocol,
//! system info, the object pickle, the storage keys, then each storage's
//! element count and bytes). The object pickle may use only what tensors
//! need; any other global is refused by name, so nothing in the file runs.

use std::collections::HashMap;
use std::io::Cursor;
use std::rc::Rc;

use super::machine::{Machine, Mode};
use super::{printable, Budget, PickleError, Result, Value, LEGACY_MAGIC};
use crate::data::tensor::Tensor;

/// The named tensors of a checkpoint's state dict, in the file's order:
/// the dict's `state_dict` entry when it has one (SceneSeg's and most
/// training scripts' `{'state_dict': …, 'epoch': …}`), else the dict
/// itself. The `module.` prefix `nn.DataParallel` adds is removed.
pub fn load_state_dict(data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut budget = Budget::for_input(data.len());
    if data.starts_with(ZIP_MAGIC) {
        let (pickle, storages) = zip_parts(data)?;
        let mut vm = Machine::new(pickle, 0, &mut budget, Mode::TorchFile);
        vm.storages = Some(Rc::new(storages));
        vm.check_header()?;
        state_dict(vm.run()?)
    } else {
        let mut vm = Machine::new(data, 0, &mut budget, Mode::TorchFile);
        vm.check_header()?;
        let object_at = legacy_preamble(&mut vm)?;
        vm.run()?; // learns where the object pickle ends and which storages it uses
        vm.reset();
        let storages = legacy_storages(&mut vm)?;
        let mut vm = Machine::new(data, object_at, &mut budget, Mode::TorchFile);
        vm.storages = Some(Rc::new(storages));
        state_dict(vm.run()?)
    }
}

/// Whether `data` opens as a `torch.save` file: a zip, or a legacy stream
/// whose first pickle is the magic number (PROTO, then LONG1 of its bytes).
pub fn is_torch_save(data: &[u8]) -> bool {
    let legacy = match data {
        [0x80, _, 0x8a, len, rest @ ..] => {
            usize::from(*len) == LEGACY_MAGIC.len() && rest.starts_with(LEGACY_MAGIC)
        }
        _ => false,
    };
    data.starts_with(ZIP_MAGIC) || legacy
}

/// The local file header signature every zip opens with.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// A file's storages by key: their raw little-endian elements.
type Storages<'a> = HashMap<String, &'a [u8]>;

fn archive(msg: impl Into<String>) -> PickleError {
    PickleError::Storage(msg.into())
}

/// A torch zip's object pickle and storages (each a stored entry, sliced
/// from `data` without copying).
fn zip_parts(data: &[u8]) -> Result<(&[u8], Storages<'_>)> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(data)).map_err(|e| archive(format!("not a readable zip: {e}")))?;
    let mut entries = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let f = zip
            .by_index_raw(i)
            .map_err(|e| archive(format!("zip entry {i}: {e}")))?;
        let name = f.name().to_string();
        if f.compression() != zip::CompressionMethod::Stored || f.size() != f.compressed_size() {
            return Err(archive(format!(
                "zip entry {} is compressed; torch.save stores its entries",
                printable(&name)
            )));
        }
        let start = usize::try_from(f.data_start()).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(f.size()).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= data.len() => entries.push((name, &data[s..e])),
            _ => {
                return Err(archive(format!(
                    "zip entry {} runs past the file",
                    printable(&name)
                )))
            }
        }
    }
    let pickles: Vec<&(String, &[u8])> = entries
        .iter()
        .filter(|(n, _)| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .collect();
    let [(pkl_name, pickle)] = pickles[..] else {
        return Err(archive(format!(
            "{} <name>/data.pkl entries: not a torch.save zip",
            pickles.len()
        )));
    };
    let prefix = pkl_name.trim_end_matches("data.pkl");
    if let Some((_, order)) = entries.iter().find(|(n, _)| *n == format!("{prefix}byteorder")) {
        if *order != b"little" {
            return Err(archive("big-endian storages are not supported"));
        }
    }
    let data_dir = format!("{prefix}data/");
    let storages = entries
        .iter()
        .filter_map(|(n, bytes)| Some((n.strip_prefix(&data_dir)?.to_string(), *bytes)))
        .collect();
    Ok((pickle, storages))
}

/// The legacy format's first three pickles (magic number, protocol
/// version, system info); returns where the object pickle starts.
fn legacy_preamble(vm: &mut Machine<'_, '_>) -> Result<usize> {
    match vm.run() {
        Ok(Value::BigInt(b)) if b == LEGACY_MAGIC => {}
        _ => {
            return Err(archive(
                "neither a torch.save zip nor a legacy torch.save file (bad magic number)",
            ))
        }
    }
    vm.reset();
    match vm.run()? {
        Value::Int(1001) => {}
        _ => return Err(archive("unsupported legacy torch.save protocol version")),
    }
    vm.reset();
    let Value::Dict(info) = vm.run()? else {
        return Err(archive("legacy torch.save system info is not a dict"));
    };
    let little = info
        .borrow()
        .iter()
        .any(|(k, v)| matches!((k, v), (Value::Str("little_endian"), Value::Bool(true))));
    if !little {
        return Err(archive("big-endian storages are not supported"));
    }
    vm.reset();
    Ok(vm.pos)
}

/// After the object pickle of a legacy file: the storage keys, then each
/// storage as an 8-byte element count and its elements.
fn legacy_storages<'a>(vm: &mut Machine<'a, '_>) -> Result<Storages<'a>> {
    let refs: HashMap<String, (usize, usize)> = vm
        .storage_refs
        .drain(..)
        .map(|(key, dtype, numel)| (key, (dtype.size(), numel)))
        .collect();
    let Value::List(keys) = vm.run()? else {
        return Err(archive("legacy torch.save storage key list missing"));
    };
    let keys: Vec<String> = keys
        .borrow()
        .iter()
        .map(|k| match k {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(archive(format!("storage key is a {}", other.kind()))),
        })
        .collect::<Result<_>>()?;
    let mut storages = HashMap::with_capacity(keys.len());
    for key in keys {
        let &(size, numel) = refs
            .get(&key)
            .ok_or_else(|| archive(format!("storage {} is not used by the object", printable(&key))))?;
        let count = vm.len64().map_err(|_| archive("storage data truncated"))?;
        if count != numel {
            return Err(archive(format!(
                "storage {} holds {count} elements, its reference says {numel}",
                printable(&key)
            )));
        }
        let nbytes = count
            .checked_mul(size)
            .ok_or_else(|| archive("storage size overflows"))?;
        let bytes = vm.take(nbytes).map_err(|_| {
            archive(format!(
                "storage {} truncated: needs {nbytes} bytes",
                printable(&key)
            ))
        })?;
        storages.insert(key, bytes);
    }
    Ok(storages)
}

/// The tensors of the checkpoint's state dict (see [`load_state_dict`]).
fn state_dict(top: Value<'_>) -> Result<Vec<(String, Tensor)>> {
    let Value::Dict(top) = top else {
        return Err(archive(format!("the checkpoint is a {}, not a dict", top.kind())));
    };
    let inner = top.borrow().iter().find_map(|(k, v)| match (k, v) {
        (Value::Str("state_dict"), Value::Dict(d)) => Some(d.clone()),
        _ => None,
    });
    let dict = inner.unwrap_or(top);
    let dict = dict.borrow();
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let Value::Str(name) = k else {
            return Err(archive(format!("a state dict key is a {}", k.kind())));
        };
        match v {
            Value::Tensor(t) => {
                let name = name.strip_prefix("module.").unwrap_or(name);
                out.push((name.to_string(), (**t).clone()));
            }
            // nn.Module.state_dict's version record, restored by BUILD as an item.
            Value::Dict(_) if *name == "_metadata" => {}
            other => {
                return Err(archive(format!(
                    "state dict entry {} is a {}, not a tensor",
                    printable(name),
                    other.kind()
                )))
            }
        }
    }
    Ok(out)
}
