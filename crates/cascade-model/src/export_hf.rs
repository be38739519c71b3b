//! Export of the decoder to the HuggingFace Llama layout: `config.json`, `model.safetensors`
//! (HF tensor names, `[out, in]` weights, f32) and optionally the tokenizer's `tokenizer.json`,
//! so `transformers.LlamaForCausalLM.from_pretrained(dir)` loads it.
//!
//! No weight permutation is needed: the decoder's rotary embedding already uses HF's
//! `rotate_half` convention (see `blocks/position.rs`). Only configs Llama can express are
//! exported (rope, RMSNorm, SwiGLU, no QK-norm); anything else is refused naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::ModuleSnapshot;
use burn::tensor::DType;
use serde_json::json;

use crate::checkpoint::write_atomic;
use crate::config::{MlpKind, NormKind, PositionKind};
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::{ModelError, Result};

const FORMAT: &str = "hf-llama";

/// Token ids HF's config and generation need; the tokenizer knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HfSpecialTokens {
    /// Beginning-of-text id, if the tokenizer has one.
    pub bos_token_id: Option<u32>,
    /// End-of-text id (generation stops there).
    pub eos_token_id: Option<u32>,
    /// Padding id, if any.
    pub pad_token_id: Option<u32>,
}

/// What [`export_hf_llama`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfExport {
    /// `out_dir/config.json`.
    pub config_path: PathBuf,
    /// `out_dir/model.safetensors`.
    pub weights_path: PathBuf,
    /// `out_dir/tokenizer.json` when a tokenizer file was given.
    pub tokenizer_path: Option<PathBuf>,
    /// HF names of the tensors written, sorted.
    pub tensor_names: Vec<String>,
}

/// Writes `model` to `out_dir` in the HF Llama layout (see the module docs), copying
/// `tokenizer_json` beside it when given.
pub fn export_hf_llama(
    model: &Decoder,
    special: &HfSpecialTokens,
    tokenizer_json: Option<&Path>,
    out_dir: &Path,
) -> Result<HfExport> {
    let config = model.config();
    check_llama_compatible(config, FORMAT)?;
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let tensors = hf_llama_tensors(model, FORMAT, out_dir)?;

    let weights_path = out_dir.join("model.safetensors");
    write_atomic(&weights_path, &safetensors_bytes(&tensors))?;

    let hf_config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.resolved_d_ff(),
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads(),
        "head_dim": config.d_model / config.n_heads,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": null,
        "hidden_act": "silu",
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "pretraining_tp": 1,
        "use_cache": true,
        "torch_dtype": "float32",
        "bos_token_id": special.bos_token_id,
        "eos_token_id": special.eos_token_id,
        "pad_token_id": special.pad_token_id,
    });
    let config_path = out_dir.join("config.json");
    let text = serde_json::to_string_pretty(&hf_config)
        .map_err(|e| ModelError::BadConfigFile { path: config_path.clone(), message: e.to_string() })?;
    write_atomic(&config_path, text.as_bytes())?;

    let tokenizer_path = match tokenizer_json {
        Some(src) => {
            let dst = out_dir.join("tokenizer.json");
            std::fs::copy(src, &dst).map_err(|e| ModelError::io(src, e))?;
            Some(dst)
        }
        None => None,
    };
    Ok(HfExport { config_path, weights_path, tokenizer_path, tensor_names: tensors.into_keys().collect() })
}

/// Tensors by HF name: row-major shape and f32 values.
pub(crate) type HfTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Refuses configs the Llama architecture cannot express, naming the key.
pub(crate) fn check_llama_compatible(config: &DecoderConfig, format: &'static str) -> Result<()> {
    let refuse = |key: &'static str, value: &str, message: &str| ModelError::UnsupportedExport {
        format,
        key,
        value: value.into(),
        message: message.into(),
    };
    if config.position != PositionKind::Rope {
        return Err(refuse("position", "\"learned\"", "Llama uses rotary positions only"));
    }
    if config.norm != NormKind::Rms {
        return Err(refuse("norm", "\"layer\"", "Llama uses RMSNorm only"));
    }
    if config.mlp != MlpKind::Swiglu {
        return Err(refuse("mlp", "\"gelu\"", "Llama's MLP is gated SiLU"));
    }
    if config.qk_norm {
        return Err(refuse("qk_norm", "true", "Llama has no QK-norm"));
    }
    Ok(())
}

/// Every parameter of `model` under its HF Llama name, in HF's `[out, in]` layout, as f32.
/// `dest` only names the output in errors.
pub(crate) fn hf_llama_tensors(
    model: &Decoder,
    format: &'static str,
    dest: &Path,
) -> Result<HfTensors> {
    let mut tensors = BTreeMap::new();
    for snapshot in model.collect(None, None, false) {
        let shape = snapshot.shape.to_vec();
        if snapshot.dtype != DType::F32 {
            return Err(ModelError::UnsupportedExport {
                format,
                key: "dtype",
                value: format!("{:?}", snapshot.dtype),
                message: "export writes f32 models only".into(),
            });
        }
        let bytes = snapshot
            .to_bytes()
            .map_err(|e| ModelError::Store { path: dest.to_path_buf(), message: e.to_string() })?;
        let values: Vec<f32> =
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (hf_name, transpose) = hf_name(&snapshot.name).ok_or_else(|| ModelError::BadTensor {
            path: dest.to_path_buf(),
            tensor: snapshot.name.clone(),
            message: "has no HF Llama counterpart".into(),
        })?;
        let (shape, values) = if transpose { transpose_2d(&shape, &values) } else { (shape, values) };
        tensors.insert(hf_name, (shape, values));
    }
    Ok(tensors)
}

/// Maps a decoder parameter path to its HF Llama name, and whether it is a burn `[in, out]`
/// linear weight that HF stores as `[out, in]`.
fn hf_name(path: &str) -> Option<(String, bool)> {
    match path {
        "embed_tokens.weight" => return Some(("model.embed_tokens.weight".into(), false)),
        "norm.weight" => return Some(("model.norm.weight".into(), false)),
        "lm_head.weight" => return Some(("lm_head.weight".into(), true)),
        _ => {}
    }
    let rest = path.strip_prefix("layers.")?;
    let (index, name) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let (hf, transpose) = match name {
        "attn_norm.weight" => ("input_layernorm.weight".to_string(), false),
        "mlp_norm.weight" => ("post_attention_layernorm.weight".to_string(), false),
        _ => {
            let (module, param) = name.split_once('.')?;
            let (proj, kind) = param.split_once('.')?;
            let parent = match (module, proj) {
                ("attn", "q_proj" | "k_proj" | "v_proj" | "o_proj") => "self_attn",
                ("mlp", "gate_proj" | "up_proj" | "down_proj") => "mlp",
                _ => return None,
            };
            match kind {
                "weight" => (format!("{parent}.{proj}.weight"), true),
                "bias" => (format!("{parent}.{proj}.bias"), false),
                _ => return None,
            }
        }
    };
    Some((format!("model.layers.{index}.{hf}"), transpose))
}

fn transpose_2d(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (shape[0], shape[1]);
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

/// Serializes f32 tensors in the SafeTensors format: u64 header length, JSON header (padded to
/// 8 bytes), then the little-endian data in header order.
pub(crate) fn safetensors_bytes(tensors: &HfTensors) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, (shape, values)) in tensors {
        let end = offset + values.len() * 4;
        header.insert(name.clone(), json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for (_, values) in tensors.values() {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}
