//! Export of the decoder to a single GGUF file of llama.cpp's `llama` architecture, with the
//! GPT-2-style byte-level BPE tokenizer in its metadata, so llama.cpp loads and runs it.
//!
//! The tensors are the HF Llama export's (same checks: rope, RMSNorm, SwiGLU, no QK-norm), with
//! two changes llama.cpp needs:
//! - Query and key projections are permuted from HF's `rotate_half` rotary layout (head
//!   dimension `i` pairs with `i + d/2`) to llama.cpp's interleaved layout (`2i` pairs with
//!   `2i + 1`): within each head, output row `2i + j` takes HF row `j·d/2 + i`. This is
//!   `LlamaModel.permute` of llama.cpp's `convert_hf_to_gguf.py`, with the key heads counted
//!   as `n_kv_heads`.
//! - Biases are refused: llama.cpp's llama graph does not take every HF bias.
//!
//! The tokenizer metadata comes in as a [`GgufTokenizer`] the caller fills from its tokenizer
//! (this crate does not depend on the tokenizer crate).

use std::path::{Path, PathBuf};

use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::export_hf::{check_llama_compatible, hf_llama_tensors};
use crate::gguf::{ALIGNMENT, MetaValue, TensorEntry, write_gguf};

pub use crate::gguf::GgufDtype;

const FORMAT: &str = "gguf-llama";

/// llama.cpp's token types (`llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufTokenType {
    /// An ordinary vocabulary entry (1).
    Normal,
    /// A special token never produced from text by the tokenizer (chat roles, end of text) (3).
    Control,
    /// A filler entry that pads the vocabulary up to the model's embedding rows (5).
    Unused,
}

impl GgufTokenType {
    fn code(self) -> i32 {
        match self {
            Self::Normal => 1,
            Self::Control => 3,
            Self::Unused => 5,
        }
    }
}

/// The tokenizer as GGUF's `tokenizer.ggml.*` keys describe a GPT-2-style BPE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GgufTokenizer {
    /// Token strings by id, spelled as HF `tokenizer.json` spells them (byte-level alphabet;
    /// special tokens as their text).
    pub tokens: Vec<String>,
    /// One type per token.
    pub token_types: Vec<GgufTokenType>,
    /// Merges in priority order, as `"left right"` in the byte-level spelling.
    pub merges: Vec<String>,
    /// llama.cpp's pre-tokenizer name (`tokenizer.ggml.pre`): `gpt-2`, `llama-bpe`, ...
    pub pre: String,
    /// Beginning-of-sequence id, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id, if any.
    pub eos_token_id: Option<u32>,
    /// End-of-turn id (chat replies stop there), if any.
    pub eot_token_id: Option<u32>,
    /// Padding id, if any.
    pub padding_token_id: Option<u32>,
    /// A Jinja chat template (`tokenizer.chat_template`), if any.
    pub chat_template: Option<String>,
}

/// How to write the file.
#[derive(Clone, Debug)]
pub struct GgufOptions {
    /// Element type of the matrices (norm weights stay f32). Default f32.
    pub dtype: GgufDtype,
    /// `general.name`. Default `cascade-decoder`.
    pub name: String,
}

impl Default for GgufOptions {
    fn default() -> Self {
        Self { dtype: GgufDtype::F32, name: "cascade-decoder".into() }
    }
}

/// What [`export_gguf_llama`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufExport {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// GGUF names of the tensors, in file order.
    pub tensor_names: Vec<String>,
    /// Number of metadata keys.
    pub n_metadata: usize,
}

/// Writes `model` with `tokenizer`'s metadata to the GGUF file `out_path` (see the module docs).
pub fn export_gguf_llama(
    model: &Decoder,
    tokenizer: &GgufTokenizer,
    options: &GgufOptions,
    out_path: &Path,
) -> Result<GgufExport> {
    let config = model.config();
    check_llama_compatible(config, FORMAT)?;
    if config.bias {
        return Err(ModelError::UnsupportedExport {
            format: FORMAT,
            key: "bias",
            value: "true".into(),
            message: "llama.cpp's llama architecture does not load every projection bias".into(),
        });
    }
    let metadata = metadata(model, tokenizer, options)?;
    let head_dim = config.d_model / config.n_heads;
    let mut tensors = Vec::new();
    for (hf_name, (shape, values)) in hf_llama_tensors(model, FORMAT, out_path)? {
        let name = gguf_name(&hf_name).ok_or_else(|| ModelError::BadTensor {
            path: out_path.to_path_buf(),
            tensor: hf_name.clone(),
            message: "has no llama.cpp counterpart".into(),
        })?;
        let values = if hf_name.ends_with("q_proj.weight") {
            permute_rotary_rows(&values, shape[1], config.n_heads, head_dim)
        } else if hf_name.ends_with("k_proj.weight") {
            permute_rotary_rows(&values, shape[1], config.kv_heads(), head_dim)
        } else {
            values
        };
        let dtype = if shape.len() == 1 { GgufDtype::F32 } else { options.dtype };
        tensors.push(TensorEntry { name, shape, dtype, values });
    }
    // llama.cpp does not care about order; a fixed one (embedding, blocks, head) reads best.
    tensors.sort_by_key(|t| tensor_order(&t.name));
    let bytes = write_gguf(out_path, &metadata, &tensors)?;
    Ok(GgufExport {
        path: out_path.to_path_buf(),
        bytes,
        tensor_names: tensors.into_iter().map(|t| t.name).collect(),
        n_metadata: metadata.len(),
    })
}

fn metadata(model: &Decoder, tokenizer: &GgufTokenizer, options: &GgufOptions) -> Result<Vec<(String, MetaValue)>> {
    let config = model.config();
    let bad = |message: String| ModelError::InvalidInput { message: format!("GGUF tokenizer metadata: {message}") };
    if tokenizer.tokens.len() != tokenizer.token_types.len() {
        return Err(bad(format!(
            "{} tokens but {} token types",
            tokenizer.tokens.len(),
            tokenizer.token_types.len()
        )));
    }
    if tokenizer.tokens.len() > config.vocab_size {
        return Err(bad(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.tokens.len(),
            config.vocab_size
        )));
    }
    let mut tokens = tokenizer.tokens.clone();
    let mut types: Vec<i32> = tokenizer.token_types.iter().map(|t| t.code()).collect();
    for id in tokens.len()..config.vocab_size {
        tokens.push(format!("[PAD{id}]"));
        types.push(GgufTokenType::Unused.code());
    }

    let u32_of = |key: &'static str, value: usize| {
        u32::try_from(value).map(MetaValue::U32).map_err(|_| ModelError::config(key, "does not fit GGUF's u32"))
    };
    let head_dim = config.d_model / config.n_heads;
    let file_type = match options.dtype {
        GgufDtype::F32 => 0, // LLAMA_FTYPE_ALL_F32
        GgufDtype::F16 => 1, // LLAMA_FTYPE_MOSTLY_F16
    };
    let mut kv: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), MetaValue::Str("llama".into())),
        ("general.name".into(), MetaValue::Str(options.name.clone())),
        ("general.alignment".into(), MetaValue::U32(ALIGNMENT as u32)),
        ("general.file_type".into(), MetaValue::U32(file_type)),
        ("llama.vocab_size".into(), u32_of("vocab_size", config.vocab_size)?),
        ("llama.context_length".into(), u32_of("max_seq_len", config.max_seq_len)?),
        ("llama.embedding_length".into(), u32_of("d_model", config.d_model)?),
        ("llama.block_count".into(), u32_of("n_layers", config.n_layers)?),
        ("llama.feed_forward_length".into(), u32_of("d_ff", config.resolved_d_ff())?),
        ("llama.attention.head_count".into(), u32_of("n_heads", config.n_heads)?),
        ("llama.attention.head_count_kv".into(), u32_of("n_kv_heads", config.kv_heads())?),
        ("llama.attention.key_length".into(), u32_of("d_model", head_dim)?),
        ("llama.attention.value_length".into(), u32_of("d_model", head_dim)?),
        ("llama.rope.dimension_count".into(), u32_of("d_model", head_dim)?),
        ("llama.rope.freq_base".into(), MetaValue::F32(config.rope_theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), MetaValue::F32(config.norm_eps as f32)),
        ("tokenizer.ggml.model".into(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::Str(tokenizer.pre.clone())),
        ("tokenizer.ggml.tokens".into(), MetaValue::StrArray(tokens)),
        ("tokenizer.ggml.token_type".into(), MetaValue::I32Array(types)),
        ("tokenizer.ggml.merges".into(), MetaValue::StrArray(tokenizer.merges.clone())),
        // The model was trained on raw documents: nothing is prepended or appended.
        ("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(false)),
        ("tokenizer.ggml.add_eos_token".into(), MetaValue::Bool(false)),
    ];
    let ids = [
        ("tokenizer.ggml.bos_token_id", tokenizer.bos_token_id),
        ("tokenizer.ggml.eos_token_id", tokenizer.eos_token_id),
        ("tokenizer.ggml.eot_token_id", tokenizer.eot_token_id),
        ("tokenizer.ggml.padding_token_id", tokenizer.padding_token_id),
    ];
    for (key, id) in ids {
        if let Some(id) = id {
            if id as usize >= config.vocab_size {
                return Err(bad(format!("{key} = {id} is outside the vocabulary of {}", config.vocab_size)));
            }
            kv.push((key.into(), MetaValue::U32(id)));
        }
    }
    if let Some(template) = &tokenizer.chat_template {
        kv.push(("tokenizer.chat_template".into(), MetaValue::Str(template.clone())));
    }
    Ok(kv)
}

/// llama.cpp's name for an HF Llama tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (index, name) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let short = match name {
        "input_layernorm.weight" => "attn_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{index}.{short}.weight"))
}

fn tensor_order(name: &str) -> (usize, usize, String) {
    match name {
        "token_embd.weight" => (0, 0, String::new()),
        "output_norm.weight" => (2, 0, String::new()),
        "output.weight" => (3, 0, String::new()),
        _ => {
            let index = name.split('.').nth(1).and_then(|i| i.parse().ok()).unwrap_or(usize::MAX);
            (1, index, name.to_owned())
        }
    }
}

/// Reorders the rows of a `[n_heads·head_dim, cols]` projection from the halves rotary layout
/// to the interleaved one: in each head, new row `2i + j` is old row `j·head_dim/2 + i`.
pub(crate) fn permute_rotary_rows(values: &[f32], cols: usize, n_heads: usize, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for head in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let new_row = head * head_dim + 2 * i + j;
                let old_row = head * head_dim + j * half + i;
                out[new_row * cols..(new_row + 1) * cols].copy_from_slice(&values[old_row * cols..(old_row + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_permutation_interleaves_the_halves_of_each_head() {
        // 2 heads of dim 4, one column: rows hold their own index.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        assert_eq!(permute_rotary_rows(&rows, 1, 2, 4), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn every_llama_tensor_has_a_gguf_name() {
        assert_eq!(gguf_name("model.layers.3.self_attn.o_proj.weight").as_deref(), Some("blk.3.attn_output.weight"));
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(), Some("blk.0.ffn_norm.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.q_proj.bias"), None);
    }
}
