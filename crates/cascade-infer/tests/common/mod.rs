//! Helpers shared by the integration tests: a byte-level test tokenizer and tiny random models.
#![allow(dead_code)]

use std::sync::Arc;

use cascade_core::{AllowedSpecial, Tokenizer, TokenizerError};
use cascade_infer::{Engine, LanguageModel};
use cascade_model::burn::prelude::*;
use cascade_model::{DecoderConfig, EncoderDecoderConfig};

/// Special tokens, in id order.
pub const SPECIALS: [&str; 7] =
    ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end_of_turn|>", "<|mask|>"];
/// Ids `BYTE0..BYTE0 + 256` are the bytes; the multi-byte tokens follow.
pub const BYTE0: u32 = 8;
/// Tokens that stand for several bytes, some of them only part of a UTF-8 character.
pub const MULTI: [&[u8]; 6] = [b"ab", b"END", &[0xC3], &[0xA9], "é".as_bytes(), "日本".as_bytes()];
pub const VOCAB: usize = BYTE0 as usize + 256 + MULTI.len();

/// A byte-level tokenizer: one id per byte, plus the special and multi-byte tokens above.
#[derive(Debug)]
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
        text.bytes().map(|b| BYTE0 + b as u32).collect()
    }

    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        for &id in ids {
            match id {
                id if (id as usize) < SPECIALS.len() => out.extend_from_slice(SPECIALS[id as usize].as_bytes()),
                id if id < BYTE0 => {}
                id if id < BYTE0 + 256 => out.push((id - BYTE0) as u8),
                id if (id as usize) < VOCAB => out.extend_from_slice(MULTI[(id - BYTE0 - 256) as usize]),
                id => return Err(TokenizerError::UnknownId { id, vocab_size: VOCAB }),
            }
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        VOCAB
    }

    fn special_token(&self, name: &str) -> Option<u32> {
        SPECIALS.iter().position(|s| *s == name).map(|i| i as u32)
    }

    fn fingerprint(&self) -> String {
        "byte-test".into()
    }
}

pub fn device() -> Device {
    Device::flex()
}

pub fn tiny_decoder(max_seq_len: usize) -> DecoderConfig {
    DecoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len,
        // Larger weights than the training default make the random model's choices sharp,
        // so float rounding between batched and unbatched runs cannot flip a greedy token.
        init_std: 0.3,
        ..DecoderConfig::default()
    }
}

pub fn tiny_seq2seq() -> EncoderDecoderConfig {
    EncoderDecoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_encoder_layers: 2,
        n_decoder_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_source_len: 32,
        max_target_len: 24,
        init_std: 0.3,
        ..EncoderDecoderConfig::default()
    }
}

pub fn decoder_engine(max_seq_len: usize) -> Engine {
    let dev = device();
    dev.seed(7);
    let model = tiny_decoder(max_seq_len).init(&dev).unwrap();
    Engine::new(LanguageModel::Decoder(model), Arc::new(ByteTokenizer), dev)
}

pub fn seq2seq_engine() -> Engine {
    let dev = device();
    dev.seed(11);
    let model = tiny_seq2seq().init(&dev).unwrap();
    Engine::new(LanguageModel::EncoderDecoder(model), Arc::new(ByteTokenizer), dev)
}

pub fn ids(text: &str) -> Vec<u32> {
    ByteTokenizer.encode(text, &AllowedSpecial::None)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

pub fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let flat: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([1, ids.len()])
}

pub fn argmax(row: &[f32]) -> u32 {
    cascade_infer::sampling::argmax(row)
}
