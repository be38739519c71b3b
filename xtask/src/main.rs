//! `cargo xtask`: the Cascade runner. Parses the command line, then hands off to the runner.
//!
//! This binary is deliberately thin: every stage's work is done by its library crate; xtask only
//! knows the cascade order, the config file, the default corpus and the run directory.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod cli;
mod config;
mod corpus;
mod dpo;
mod export;
mod infer;
mod pretrain;
mod progress;
mod reply_models;
mod report;
mod report_samples;
mod runner;
mod serve;
mod sft;
mod stages;
mod sweep;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, the whole chain of causes, no backtrace: users act on the message.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
