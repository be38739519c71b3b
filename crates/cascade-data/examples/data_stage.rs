//! Runs the data stage with the default config on a corpus and prints the step counts and
//! timings: `cargo run --release -p cascade-data --example data_stage -- CORPUS [OUT_DIR]`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use cascade_core::NoProgress;
use cascade_data::{DataConfig, RunOptions, run};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(corpus) = args.next() else {
        eprintln!("usage: data_stage CORPUS [OUT_DIR]");
        std::process::exit(2);
    };
    let temp = tempfile::tempdir().expect("a temporary directory");
    let out = args.next().map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
    match run(&DataConfig::default(), corpus.as_ref(), &out, &RunOptions::default(), &NoProgress) {
        Ok(report) => {
            for step in &report.steps {
                println!("{:<12} docs {:>7} -> {:>7}  bytes {:>11} -> {:>11}", step.step, step.docs_in, step.docs_out, step.bytes_in, step.bytes_out);
            }
            println!("same-work clusters: {}", report.same_work.clusters.len());
            println!("{}", serde_json::to_string_pretty(&report.timings).unwrap_or_default());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
