//! Exports a small seeded decoder to the HF Llama layout and writes the logits burn computes
//! for a fixed token sequence, for `scripts/check_hf_export.py` to compare with `transformers`.
//!
//! `cargo run -p cascade-model --example hf_export_check -- OUT_DIR`

use std::path::PathBuf;

use burn::prelude::*;
use cascade_model::{DecoderConfig, HfSpecialTokens, export_hf_llama};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: hf_export_check OUT_DIR")?);
    let device = Device::flex();
    device.seed(5);
    let variants = [
        ("gqa_tied", DecoderConfig { vocab_size: 300, d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, max_seq_len: 64, init_std: 0.1, ..DecoderConfig::default() }),
        ("mha_untied_bias", DecoderConfig { vocab_size: 300, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64, tie_embeddings: false, bias: true, rope_theta: 500.0, init_std: 0.1, ..DecoderConfig::default() }),
    ];
    for (name, config) in variants {
        let model = config.init(&device)?;
        let dir = out.join(name);
        export_hf_llama(&model, &HfSpecialTokens::default(), None, &dir)?;
        let ids: Vec<i64> = (0..40).map(|i| (i * 37 + 11) % 300).collect();
        let tokens = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([1, ids.len()]);
        let logits = model.forward(tokens).into_data().convert::<f32>().try_to_vec::<f32>()?;
        let json = serde_json::json!({ "tokens": ids, "vocab_size": config.vocab_size, "logits": logits });
        std::fs::write(dir.join("burn_logits.json"), json.to_string())?;
    }
    Ok(())
}
