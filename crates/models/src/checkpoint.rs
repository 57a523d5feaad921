//! Checkpoints: the variables of a model in safetensors, with the model kind, its configuration
//! (JSON), caller-supplied extra entries and a checksum in the header metadata, written
//! atomically (temporary file, fsync, rename). The header's keys are sorted, so the same state
//! gives the same bytes (a file digest can check that two runs agree).

use crate::config::{build, ModelConfig};
use crate::error::{Error, Result};
use crate::model::Model;
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Metadata key and value identifying the file format.
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "multiscale-models/1";
const KIND_KEY: &str = "model_kind";
const CONFIG_KEY: &str = "config";
const EXTRA_KEY: &str = "extra";
const CHECKSUM_KEY: &str = "checksum";

/// A checkpoint read from disk.
pub struct Checkpoint {
    /// The configuration of the saved model.
    pub config: ModelConfig,
    /// Its variables, by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The extra entries given to [`save`].
    pub extra: BTreeMap<String, String>,
}

/// FNV-1a (64 bit) over every tensor's name, shape and little-endian bytes in name order:
/// detects bit flips that the safetensors header does not.
fn checksum<'a>(
    items: impl Iterator<Item = (&'a str, &'a [usize], std::borrow::Cow<'a, [u8]>)>,
) -> String {
    let mut h = crate::atomic::Fnv1a::default();
    for (name, shape, data) in items {
        h.eat(name.as_bytes());
        for &d in shape {
            h.eat(&(d as u64).to_le_bytes());
        }
        h.eat(&data);
    }
    h.hex()
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Save the variables of `varmap` with model configuration `cfg` and `extra` entries (e.g. the
/// iteration, the optimiser state file) to `path`, atomically: the file is written beside
/// `path` under a temporary name, flushed to disk and renamed over `path`.
pub fn save(
    path: &Path,
    cfg: &ModelConfig,
    varmap: &VarMap,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let tensors: BTreeMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let sum = checksum(
        tensors
            .iter()
            .map(|(k, t)| (k.as_str(), t.dims(), safetensors::View::data(t))),
    );
    let metadata = HashMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (KIND_KEY.to_string(), cfg.kind().to_string()),
        (CONFIG_KEY.to_string(), to_json(cfg)?),
        (EXTRA_KEY.to_string(), to_json(extra)?),
        (CHECKSUM_KEY.to_string(), sum),
    ]);
    let bytes = safetensors::serialize(tensors.iter(), Some(metadata))
        .map_err(|e| Error::InvalidConfig(format!("cannot serialise checkpoint: {e}")))?;
    let bytes = sorted_header(bytes)?;
    crate::atomic::write_atomic(path, &bytes).map_err(io_err(path))
}

/// `bytes` (a safetensors file: 8-byte little-endian header length, JSON header padded with
/// spaces, data) with the header's keys in sorted order. safetensors writes the metadata from a
/// hash map, whose order changes from map to map; sorted, the same state gives the same file.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |e: String| Error::InvalidConfig(format!("cannot serialise checkpoint: {e}"));
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("no header".into()))?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| bad("header longer than the file".into()))?;
    let text = std::str::from_utf8(&bytes[8..end])
        .map_err(|e| bad(e.to_string()))?
        .trim_end();
    let json = |e: serde_json::Error| bad(e.to_string());
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(json)?;
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).map_err(json)?;
        *meta = serde_json::to_value(sorted).map_err(json)?;
    }
    let sorted = serde_json::to_string(&header).map_err(json)?;
    if sorted.len() != text.len() {
        return Err(bad(format!(
            "sorted header has {} bytes, not {}",
            sorted.len(),
            text.len()
        )));
    }
    bytes[8..8 + sorted.len()].copy_from_slice(sorted.as_bytes());
    Ok(bytes)
}

/// JSON of a metadata value (the configuration, the extra map).
fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::InvalidConfig(format!("cannot encode checkpoint metadata: {e}")))
}

/// Read and verify the checkpoint at `path`, placing its tensors on `device`:
/// [`Error::CorruptCheckpoint`] for anything that is not an intact checkpoint of this crate.
pub fn read(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let corrupt = |reason: String| Error::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| corrupt(format!("not safetensors: {e}")))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| corrupt("no metadata".into()))?;
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| corrupt(format!("metadata has no {key:?}")))
    };
    if get(FORMAT_KEY)? != FORMAT {
        return Err(corrupt(format!(
            "format {:?}, expected {FORMAT:?}",
            get(FORMAT_KEY)?
        )));
    }
    let config: ModelConfig =
        serde_json::from_str(get(CONFIG_KEY)?).map_err(|e| corrupt(format!("config: {e}")))?;
    if get(KIND_KEY)? != config.kind() {
        return Err(corrupt(format!(
            "model_kind {:?} disagrees with the config",
            get(KIND_KEY)?
        )));
    }
    let extra: BTreeMap<String, String> =
        serde_json::from_str(get(EXTRA_KEY)?).map_err(|e| corrupt(format!("extra: {e}")))?;
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let sum = checksum(
        views
            .iter()
            .map(|(k, v)| (k.as_str(), v.shape(), std::borrow::Cow::Borrowed(v.data()))),
    );
    if &sum != get(CHECKSUM_KEY)? {
        return Err(corrupt(format!(
            "checksum {sum} does not match the stored {}",
            get(CHECKSUM_KEY)?
        )));
    }
    let tensors = views
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.load(device)
                    .map_err(|e| corrupt(format!("tensor {k}: {e}")))?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Checkpoint {
        config,
        tensors,
        extra,
    })
}

/// Load a checkpoint as `(configuration, variables, extra)` (contract form of [`read`]).
pub fn load(
    path: &Path,
    device: &Device,
) -> Result<(ModelConfig, VarMap, BTreeMap<String, String>)> {
    let ck = read(path, device)?;
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
        for (name, t) in ck.tensors {
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok((ck.config, varmap, ck.extra))
}

/// What [`load_model`] returns: configuration, network, its variables, extra entries.
pub type LoadedModel = (
    ModelConfig,
    Box<dyn Model>,
    VarMap,
    BTreeMap<String, String>,
);

/// Load a checkpoint and build its network, without knowing how it was made.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    let ck = read(path, device)?;
    let varmap = VarMap::new();
    let model = build(
        &ck.config,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    copy_into(path, &ck.tensors, &varmap)?;
    Ok((ck.config, model, varmap, ck.extra))
}

/// Load the checkpoint at `path` into the variables `varmap` of a network built from `cfg`:
/// [`Error::ArchitectureMismatch`] when the checkpoint holds another configuration or its
/// variables differ in name or shape. Returns the extra entries.
pub fn load_into(
    path: &Path,
    cfg: &ModelConfig,
    varmap: &VarMap,
) -> Result<BTreeMap<String, String>> {
    let device = varmap
        .all_vars()
        .first()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    let ck = read(path, &device)?;
    if &ck.config != cfg {
        let show =
            |c: &ModelConfig| serde_json::to_string(c).unwrap_or_else(|_| c.kind().to_string());
        return Err(Error::ArchitectureMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "checkpoint holds {} but the network is {}",
                show(&ck.config),
                show(cfg)
            ),
        });
    }
    copy_into(path, &ck.tensors, varmap)?;
    Ok(ck.extra)
}

/// Load a plain safetensors file of variables (as `VarMap::save` writes, without a model
/// configuration) into `varmap`: exactly the same names and shapes, else
/// [`Error::ArchitectureMismatch`]; an unreadable file is [`Error::CorruptCheckpoint`].
pub fn load_weights(path: &Path, varmap: &VarMap) -> Result<()> {
    let device = varmap
        .all_vars()
        .first()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    std::fs::metadata(path).map_err(io_err(path))?;
    let tensors =
        candle_core::safetensors::load(path, &device).map_err(|e| Error::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason: format!("not safetensors: {e}"),
        })?;
    copy_into(path, &tensors.into_iter().collect(), varmap)
}

/// Set every variable of `varmap` from `tensors`, which must have exactly the same names and shapes.
fn copy_into(path: &Path, tensors: &BTreeMap<String, Tensor>, varmap: &VarMap) -> Result<()> {
    let mismatch = |reason: String| Error::ArchitectureMismatch {
        path: path.to_path_buf(),
        reason,
    };
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    if let Some(name) = data.keys().find(|k| !tensors.contains_key(*k)) {
        return Err(mismatch(format!(
            "the network's variable {name} is not in the checkpoint"
        )));
    }
    if let Some(name) = tensors.keys().find(|k| !data.contains_key(*k)) {
        return Err(mismatch(format!(
            "the checkpoint's variable {name} is not in the network"
        )));
    }
    for (name, var) in data.iter() {
        let t = &tensors[name];
        if t.dims() != var.dims() {
            return Err(mismatch(format!(
                "{name} has shape {:?} in the checkpoint, {:?} in the network",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
