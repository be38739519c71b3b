//! End-to-end tests of the runner binary on a tiny generated corpus: caching, reruns of exactly
//! the changed stage and what depends on it, and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    _dir: tempfile::TempDir,
    corpus: PathBuf,
    config: PathBuf,
    run_dir: PathBuf,
}

/// A few hundred words of varied pseudo-English per document, different in every document, as
/// short one-line speeches of a play in the Folio layout (so the `sft` stage finds dialogue in
/// it, and an exchange fits the smoke preset's 64-token window).
fn document(seed: u64) -> String {
    const SPEAKERS: &[&str] = &["Lear", "Fool", "Lady", "Ghost"];
    const WORDS: &[&str] = &[
        "the", "king", "doth", "speak", "of", "love", "and", "honour", "while", "his", "daughters", "weep", "upon",
        "a", "stormy", "heath", "where", "fools", "sing", "madness", "crowns", "fall", "night", "comes", "gentle",
        "lord", "sweet", "lady", "sword", "blood", "ghost", "castle", "letter", "friend", "traitor", "forest",
    ];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut text = String::new();
    for line in 0..80 {
        text.push_str("  ");
        text.push_str(SPEAKERS[(seed as usize + line) % SPEAKERS.len()]);
        text.push_str(". ");
        for word_idx in 0..4 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let word = WORDS[(state >> 33) as usize % WORDS.len()];
            if word_idx == 0 {
                let mut chars = word.chars();
                let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or('A');
                text.push(first);
                text.push_str(chars.as_str());
            } else {
                text.push(' ');
                text.push_str(word);
            }
        }
        text.push_str(if line % 3 == 2 { ".\n\n" } else { ",\n" });
    }
    text
}

fn setup(vocab_size: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for idx in 0..12 {
        std::fs::write(corpus.join(format!("work_{idx:02}.txt")), document(idx)).unwrap();
    }
    let config = dir.path().join("tiny.toml");
    write_config(&config, vocab_size);
    let run_dir = dir.path().join("run");
    Run { corpus, config, run_dir, _dir: dir }
}

fn write_config(path: &Path, vocab_size: usize) {
    let smoke = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/smoke.toml")).unwrap();
    let mut table: toml::Table = smoke.parse().unwrap();
    table["tokenizer"].as_table_mut().unwrap().insert("vocab_size".into(), toml::Value::Integer(vocab_size as i64));
    std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().unwrap()
}

impl Run {
    fn cascade(&self, extra: &[&str]) -> Output {
        let mut args = vec!["cascade", "--quiet", "--config", self.config.to_str().unwrap()];
        args.extend(["--corpus", self.corpus.to_str().unwrap(), "--run-dir", self.run_dir.to_str().unwrap()]);
        args.extend(extra);
        xtask(&args)
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) -> String {
    let err = stderr(output);
    assert!(output.status.success(), "failed: {err}");
    err
}

/// A failure is one `error:` line, no panic, non-zero exit.
fn assert_one_line_error(output: &Output, expected: &[&str]) {
    let err = stderr(output);
    assert!(!output.status.success(), "unexpected success: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    for needle in expected {
        assert!(error_lines[0].contains(needle), "`{needle}` not in: {err}");
    }
}

const STAGES: [&str; 6] = ["data", "tokenizer", "pretrain-decoder", "pretrain-encoder", "pretrain-encoder-decoder", "dpo"];

fn status_of(log: &str, stage: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .map(|l| l.trim_start()[stage.len()..].trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn second_run_is_cached_and_a_config_change_reruns_exactly_downstream() {
    let run = setup(320);
    let first = assert_ok(&run.cascade(&[]));
    assert!(status_of(&first, "data").starts_with("done"), "{first}");
    assert!(status_of(&first, "tokenizer").starts_with("done"), "{first}");
    for stage in STAGES {
        assert!(run.run_dir.join(stage).join("manifest.json").is_file(), "{stage}");
    }
    assert!(run.run_dir.join("config.toml").is_file() && run.run_dir.join("run.log").is_file());

    let second = assert_ok(&run.cascade(&[]));
    for stage in STAGES {
        assert_eq!(status_of(&second, stage), "up to date", "{stage}: {second}");
    }

    write_config(&run.config, 300);
    let third = assert_ok(&run.cascade(&[]));
    assert_eq!(status_of(&third, "data"), "up to date", "{third}");
    for stage in &STAGES[1..] {
        assert!(status_of(&third, stage).starts_with("done"), "{stage}: {third}");
    }
    let pretrain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.run_dir.join("pretrain-decoder/manifest.json")).unwrap()).unwrap();
    let (initial, last) = (pretrain["metrics"]["initial_val_loss"].as_f64().unwrap(), pretrain["metrics"]["final_val_loss"].as_f64().unwrap());
    assert!(initial > 5.0 && last < initial - 1.0, "the smoke decoder must learn: val loss {initial} -> {last}");
    let dpo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.run_dir.join("dpo/manifest.json")).unwrap()).unwrap();
    let effects = &dpo["metrics"]["effects"];
    assert_eq!(effects["preference"]["before"]["rewards/accuracies"].as_f64(), Some(0.0), "{effects}");
    assert!(effects["win_rate"]["prompts"].as_u64().is_some() && dpo["metrics"]["sequence_kl_to_reference"].is_number(), "{effects}");
    let costs = &pretrain["metrics"]["model_costs"];
    assert!(costs["kv_cache_bytes_per_token"].as_u64().unwrap() > 0 && costs["params_total"].as_u64().unwrap() > 0, "{costs}");

    let forced = assert_ok(&run.cascade(&["--force", "data", "--to", "data"]));
    assert!(status_of(&forced, "data").starts_with("done"), "{forced}");
    assert!(!forced.contains("tokenizer"), "--to data runs nothing downstream: {forced}");
}

#[test]
fn a_corrupt_manifest_is_one_clear_error() {
    let run = setup(300);
    assert_ok(&run.cascade(&["--to", "data"]));
    std::fs::write(run.run_dir.join("data/manifest.json"), "{ not json").unwrap();
    assert_one_line_error(&run.cascade(&[]), &["data/manifest.json", "corrupt"]);
}

#[test]
fn missing_inputs_and_config_typos_are_one_clear_error() {
    let run = setup(300);
    let missing = run.corpus.join("nope");
    assert_one_line_error(
        &xtask(&["cascade", "--quiet", "--corpus", missing.to_str().unwrap(), "--run-dir", run.run_dir.to_str().unwrap()]),
        &["nope", "does not exist"],
    );
    assert_one_line_error(
        &xtask(&["tokenizer", "--quiet", "--config", run.config.to_str().unwrap(), "--run-dir", run.run_dir.to_str().unwrap()]),
        &["data", "run the data stage first"],
    );
    let typo = run.config.with_file_name("typo.toml");
    std::fs::write(&typo, "[tokenizer]\nvocab_sise = 300\n").unwrap();
    assert_one_line_error(
        &xtask(&["cascade", "--config", typo.to_str().unwrap(), "--run-dir", run.run_dir.to_str().unwrap()]),
        &["typo.toml:2", "vocab_sise"],
    );
    assert_one_line_error(&xtask(&["cascade", "--preset", "enormous"]), &["enormous", "smoke"]);
    if !cfg!(feature = "wgpu") {
        assert_one_line_error(&xtask(&["cascade", "--device", "wgpu"]), &["--device wgpu", "--features wgpu"]);
    }
}

#[test]
fn export_writes_the_hf_llama_layout_with_the_runs_tokenizer() {
    let run = setup(300);
    assert_ok(&run.cascade(&["--to", "tokenizer"]));
    let device = cascade_model::parse_device("flex").unwrap();
    let config = cascade_model::DecoderConfig {
        vocab_size: 300,
        d_model: 32,
        n_layers: 1,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: 64,
        ..Default::default()
    };
    let decoder = config.init(&device).unwrap();
    let checkpoint = run.run_dir.join("pretrain").join("decoder.safetensors");
    cascade_model::save_safetensors(&decoder, &checkpoint).unwrap();

    let out = run.run_dir.join("hf");
    assert_ok(&xtask(&["export", "--format", "hf", "--run-dir", run.run_dir.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let hf_config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf_config["num_key_value_heads"], 2);
    assert_eq!(hf_config["eos_token_id"], 0, "<|endoftext|> is id 0 in the run's tokenizer");

    let empty = tempfile::tempdir().unwrap();
    assert_one_line_error(
        &xtask(&["export", "--format", "hf", "--run-dir", empty.path().to_str().unwrap()]),
        &["no decoder checkpoint", "--checkpoint"],
    );
}

#[test]
fn sharded_data_runs_merge_into_the_unsharded_outputs() {
    let run = setup(300);
    let args = |extra: &[&str]| {
        let mut args = vec!["data", "--quiet", "--config", run.config.to_str().unwrap()];
        args.extend(["--corpus", run.corpus.to_str().unwrap(), "--run-dir", run.run_dir.to_str().unwrap()]);
        args.extend(extra.iter().copied());
        xtask(&args)
    };
    assert_ok(&args(&[]));
    let unsharded: Vec<Vec<u8>> =
        ["train.jsonl", "val.jsonl", "clusters.jsonl"].map(|f| std::fs::read(run.run_dir.join("data").join(f)).unwrap()).to_vec();

    assert_ok(&args(&["--shard", "0/2"]));
    assert_one_line_error(&args(&["--merge", "2"]), &["1-of-2"]);
    assert_ok(&args(&["--shard", "1/2"]));
    let merged = assert_ok(&args(&["--merge", "2"]));
    assert!(status_of(&merged, "data").starts_with("done"), "{merged}");
    for (file, before) in ["train.jsonl", "val.jsonl", "clusters.jsonl"].iter().zip(&unsharded) {
        assert_eq!(&std::fs::read(run.run_dir.join("data").join(file)).unwrap(), before, "{file}");
    }
    assert_one_line_error(&args(&["--shard", "2/2"]), &["--shard 2/2"]);
}

#[test]
fn an_interrupted_pretraining_stage_resumes_from_its_checkpoint() {
    let run = setup(300);
    let smoke = std::fs::read_to_string(&run.config).unwrap();
    let mut table: toml::Table = smoke.parse().unwrap();
    let decoder = table["pretrain"]["decoder"].as_table_mut().unwrap();
    for (key, value) in [("max_steps", 400), ("checkpoint_every", 5), ("eval_every", 1000)] {
        decoder.insert(key.into(), toml::Value::Integer(value));
    }
    decoder.insert("max_wall_s".into(), toml::Value::Float(0.0));
    std::fs::write(&run.config, toml::to_string(&table).unwrap()).unwrap();
    assert_ok(&run.cascade(&["--to", "tokenizer"]));

    let mut args = vec!["cascade", "--quiet", "--config", run.config.to_str().unwrap(), "--to", "pretrain-decoder"];
    args.extend(["--corpus", run.corpus.to_str().unwrap(), "--run-dir", run.run_dir.to_str().unwrap()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask")).args(&args).spawn().unwrap();
    let state_path = run.run_dir.join(".pretrain-decoder.partial/checkpoint/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let interrupted_at = loop {
        let step = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|state| state["step"].as_u64());
        if let Some(step) = step.filter(|&step| step >= 10) {
            child.kill().unwrap();
            child.wait().unwrap();
            break step;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!run.run_dir.join("pretrain-decoder/manifest.json").exists());

    let resumed = assert_ok(&run.cascade(&["--to", "pretrain-decoder"]));
    assert!(resumed.lines().any(|l| l.contains("pretrain-decoder") && l.contains("resuming")), "{resumed}");
    let dir = run.run_dir.join("pretrain-decoder");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let from = manifest["metrics"]["resumed_from_step"].as_u64().unwrap();
    assert!(from >= interrupted_at, "resumed from step {from}, interrupted after {interrupted_at}");
    let steps: Vec<u64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=400).collect::<Vec<_>>(), "every step logged once");
    assert!(!run.run_dir.join(".pretrain-decoder.partial").exists());
}
