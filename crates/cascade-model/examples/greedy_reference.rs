//! Greedy continuation and prompt logits of a decoder checkpoint by full recomputation (no KV
//! cache), as the reference that `scripts/check_gguf_export.py` compares llama.cpp against.
//!
//! `cargo run --release -p cascade-model --example greedy_reference -- CHECKPOINT IDS N > out.json`
//! with `IDS` comma-separated prompt token ids; prints `{"prompt", "greedy", "prompt_logits"}`
//! (`prompt_logits` row-major `[prompt_len, vocab]`).
#![allow(clippy::print_stdout)] // an example reports on the terminal

use std::path::PathBuf;

use burn::prelude::*;
use cascade_model::{Decoder, load_safetensors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: greedy_reference CHECKPOINT IDS N";
    let mut args = std::env::args().skip(1);
    let checkpoint = PathBuf::from(args.next().ok_or(usage)?);
    let prompt: Vec<i64> = args.next().ok_or(usage)?.split(',').map(|id| id.trim().parse()).collect::<Result<_, _>>()?;
    let n_new: usize = args.next().ok_or(usage)?.parse()?;
    let device = Device::flex();
    let model: Decoder = load_safetensors(&checkpoint, &device)?;
    let logits_of = |ids: &[i64]| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let tokens = Tensor::<1, Int>::from_ints(ids, &device).reshape([1, ids.len()]);
        Ok(model.forward(tokens).into_data().convert::<f32>().try_to_vec::<f32>()?)
    };
    let vocab = model.config().vocab_size;
    let prompt_logits = logits_of(&prompt)?;
    let mut ids = prompt.clone();
    let mut greedy = Vec::with_capacity(n_new);
    for step in 0..n_new {
        let logits = if step == 0 { prompt_logits.clone() } else { logits_of(&ids)? };
        let last = &logits[logits.len() - vocab..];
        let next = (0..vocab).max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a))).ok_or("empty vocabulary")?;
        greedy.push(next);
        ids.push(next as i64);
    }
    println!("{}", serde_json::json!({ "prompt": prompt, "greedy": greedy, "prompt_logits": prompt_logits }));
    Ok(())
}
