//! A minimal GGUF v3 writer: header, metadata key/values, tensor infos, aligned tensor data.
//!
//! Layout (all integers little-endian): magic `GGUF`, version `3` (u32), tensor count (u64),
//! metadata count (u64); each metadata entry as key (u64 length + UTF-8), value type (u32),
//! value; each tensor info as name, dimension count (u32), dimensions (u64 each, innermost
//! first, i.e. the reverse of a row-major shape), element type (u32) and the offset of its data
//! (u64, relative to the data section); zero padding up to `general.alignment`; then the data
//! of each tensor, each starting on an aligned offset.

use std::path::Path;

use burn::tensor::f16;

use crate::checkpoint::write_atomic;
use crate::error::Result;

/// `GGUF` read as a little-endian u32 is `0x46554747`; written as these bytes.
pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
/// The GGUF version this writer produces.
pub(crate) const VERSION: u32 = 3;
/// Alignment of the data section and of every tensor in it (`general.alignment`).
pub(crate) const ALIGNMENT: usize = 32;

// Metadata value type codes (gguf spec `gguf_metadata_value_type`).
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// One metadata value (only the types the llama export needs).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MetaValue {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

/// Element type of a tensor's data (ggml type codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufDtype {
    /// 32-bit float, ggml type 0.
    F32,
    /// IEEE half float, ggml type 1.
    F16,
}

impl GgufDtype {
    fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
        }
    }
}

/// One tensor to write: GGUF name, row-major shape, element type and f32 values (converted on
/// write).
#[derive(Clone, Debug)]
pub(crate) struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: GgufDtype,
    pub values: Vec<f32>,
}

impl TensorEntry {
    fn data(&self) -> Vec<u8> {
        match self.dtype {
            GgufDtype::F32 => self.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgufDtype::F16 => self.values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        }
    }
}

/// Serializes the file (see the module docs) and writes it atomically to `path`; returns the
/// number of bytes written.
pub(crate) fn write_gguf(path: &Path, metadata: &[(String, MetaValue)], tensors: &[TensorEntry]) -> Result<usize> {
    let bytes = gguf_bytes(metadata, tensors);
    write_atomic(path, &bytes)?;
    Ok(bytes.len())
}

fn gguf_bytes(metadata: &[(String, MetaValue)], tensors: &[TensorEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        put_value(&mut out, value);
    }
    let datas: Vec<Vec<u8>> = tensors.iter().map(TensorEntry::data).collect();
    let mut offset = 0usize;
    for (tensor, data) in tensors.iter().zip(&datas) {
        put_str(&mut out, &tensor.name);
        out.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
        for dim in tensor.shape.iter().rev() {
            out.extend_from_slice(&(*dim as u64).to_le_bytes());
        }
        out.extend_from_slice(&tensor.dtype.code().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(ALIGNMENT);
    }
    for data in &datas {
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        out.extend_from_slice(data);
    }
    out
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U32(v) => {
            out.extend_from_slice(&TYPE_U32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        MetaValue::F32(v) => {
            out.extend_from_slice(&TYPE_F32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        MetaValue::Bool(v) => {
            out.extend_from_slice(&TYPE_BOOL.to_le_bytes());
            out.push(u8::from(*v));
        }
        MetaValue::Str(v) => {
            out.extend_from_slice(&TYPE_STRING.to_le_bytes());
            put_str(out, v);
        }
        MetaValue::StrArray(items) => {
            out.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
            out.extend_from_slice(&TYPE_STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_str(out, item);
            }
        }
        MetaValue::I32Array(items) => {
            out.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
            out.extend_from_slice(&TYPE_I32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                out.extend_from_slice(&item.to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_section_and_every_tensor_are_aligned() {
        let tensors = vec![
            TensorEntry { name: "a".into(), shape: vec![3], dtype: GgufDtype::F32, values: vec![1.0, 2.0, 3.0] },
            TensorEntry { name: "b".into(), shape: vec![2, 3], dtype: GgufDtype::F16, values: vec![0.5; 6] },
        ];
        let bytes = gguf_bytes(&[("k".into(), MetaValue::U32(7))], &tensors);
        assert_eq!(&bytes[..4], MAGIC);
        // 3 f32 = 12 bytes, then 6 f16 = 12 bytes at the next aligned offset (32).
        let data_start = bytes.len() - 32 - 12;
        assert_eq!(data_start % ALIGNMENT, 0);
        assert_eq!(&bytes[data_start..data_start + 4], &1.0f32.to_le_bytes());
        assert_eq!(&bytes[data_start + 32..data_start + 34], &f16::from_f32(0.5).to_le_bytes());
    }
}
