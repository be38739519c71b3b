//! Writes a seeded, untrained decoder checkpoint (SafeTensors + config), for benchmarks that
//! need a model of a given shape but not a trained one (inference speed does not depend on the
//! weights' values).
//!
//! `cargo run -p cascade-model --example init_decoder -- OUT.safetensors [CONFIG_JSON]`
//! `CONFIG_JSON` overrides fields of the default `DecoderConfig` (d_model 256, 4 layers, 8 heads,
//! vocab 4096, max_seq_len 256: the `small` preset's decoder), e.g. `'{"max_seq_len": 512}'`.
#![allow(clippy::print_stderr)] // an example reports on the terminal

use std::path::PathBuf;

use burn::prelude::*;
use cascade_model::{DecoderConfig, save_safetensors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: init_decoder OUT.safetensors [CONFIG_JSON]")?);
    let mut config = serde_json::to_value(DecoderConfig::default())?;
    if let Some(overrides) = args.next() {
        let overrides: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&overrides)?;
        for (key, value) in overrides {
            config[key.as_str()] = value;
        }
    }
    let config: DecoderConfig = serde_json::from_value(config)?;
    let device = Device::flex();
    device.seed(0);
    let model = config.init(&device)?;
    save_safetensors(&model, &out)?;
    eprintln!("wrote {} ({} parameters)", out.display(), config.costs().params_total);
    Ok(())
}
