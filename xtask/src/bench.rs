//! `cargo xtask bench [data|tokenizer|model|infer]`: criterion benches (ours beside the Rust peers,
//! in one process) plus the Python peers where they are installed.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::workspace_root;

/// A bench target and its optional Python peer script (under `benches/peers/`).
const BENCHES: &[(&str, Option<&str>)] =
    &[("data", Some("datasketch_minhash.py")), ("tokenizer", None), ("model", None), ("infer", None)];

/// Runs one bench, or all of them, in release mode.
pub fn run(target: Option<&str>, criterion_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let available: Vec<_> =
        BENCHES.iter().filter(|(name, _)| root.join("benches/benches").join(format!("{name}.rs")).is_file()).collect();
    let selected: Vec<_> = match target {
        None => available,
        Some(name) => match available.iter().find(|(n, _)| *n == name) {
            Some(bench) => vec![*bench],
            None => bail!(
                "no bench `{name}`; the benches are: {}",
                available.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (name, peer) in selected {
        eprintln!("bench {name}: criterion (ours and the Rust peers)");
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["bench", "-p", "cascade-benches", "--bench", name])
            .args(if matches!(*name, "model" | "infer") { &["--features", "model"][..] } else { &[] })
            .arg("--")
            .args(criterion_args)
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        if !status.success() {
            bail!("bench {name} failed ({status})");
        }
        if *name == "infer" {
            eprintln!("bench infer: summary (peak memory, physical limits): cascade-infer's throughput example");
            let status = Command::new(&cargo)
                .current_dir(&root)
                .args(["run", "-p", "cascade-infer", "--example", "throughput"])
                .status()
                .with_context(|| format!("cannot run {cargo}"))?;
            if !status.success() {
                bail!("the throughput example failed ({status})");
            }
        }
        if let Some(script) = peer {
            let script = root.join("benches/peers").join(script);
            eprintln!("bench {name}: Python peer {}", script.display());
            match Command::new("python3").arg(&script).current_dir(&root).status() {
                Ok(s) if s.success() => {}
                Ok(s) => eprintln!("  peer skipped or failed ({s}); install it with `pip install datasketch`"),
                Err(e) => eprintln!("  peer skipped: cannot run python3 ({e})"),
            }
        }
    }
    Ok(())
}
