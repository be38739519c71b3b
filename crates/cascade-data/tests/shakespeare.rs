//! The default corpus end to end: editions cluster as one work, the split keeps them together,
//! the metadata file is filtered, and nothing is lost without a reason.

mod common;

use cascade_core::NoProgress;
use cascade_data::{DataConfig, RunOptions, run};
use common::{out_dir, read_jsonl, shakespeare_texts};

#[test]
fn default_corpus_report() {
    let Some(texts) = shakespeare_texts() else { return };
    let out = out_dir();
    let report = run(&DataConfig::default(), texts, out.path(), &RunOptions::default(), &NoProgress).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
