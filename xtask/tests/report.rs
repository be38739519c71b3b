//! The report stage and the sweep on a tiny generated corpus with short pretraining runs: the
//! report has a trace row per stage and well-formed SVG plots, it is cached like any stage, and a
//! sweep of `model.decoder.n_kv_heads` reruns only what the key touches.

use std::path::Path;
use std::process::{Command, Output};

/// Pseudo-English documents, different in every document.
fn document(seed: u64) -> String {
    const WORDS: &[&str] =
        &["the", "king", "doth", "speak", "of", "love", "and", "honour", "while", "fools", "sing", "night", "comes", "gentle", "lord"];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut text = String::new();
    for line in 0..30 {
        for _ in 0..9 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            text.push_str(WORDS[(state >> 33) as usize % WORDS.len()]);
            text.push(' ');
        }
        text.push_str(if line % 3 == 2 { ".\n\n" } else { ",\n" });
    }
    text
}

/// The smoke preset with a 300-token vocabulary, 20-step pretraining runs and few samples.
fn write_config(path: &Path) {
    let smoke = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/smoke.toml")).unwrap();
    let mut table: toml::Table = smoke.parse().unwrap();
    table["tokenizer"].as_table_mut().unwrap().insert("vocab_size".into(), 300.into());
    for family in ["decoder", "encoder", "encoder_decoder"] {
        let section = table["pretrain"][family].as_table_mut().unwrap();
        for (key, value) in [("max_steps", 20), ("eval_every", 10), ("checkpoint_every", 20)] {
            section.insert(key.into(), value.into());
        }
    }
    let report: toml::Table = toml::from_str(
        "prompts = [\"LEAR: Who am I?\", \"FOOL: Sing.\"]\nmax_new_tokens = 8\nreplies_per_prompt = 2\nsweep_temperatures = [0.5, 1.5]\n",
    )
    .unwrap();
    table.insert("report".into(), report.into());
    std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().unwrap()
}

fn assert_ok(output: &Output) -> String {
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "failed: {err}");
    err
}

fn status_of(log: &str, stage: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .map(|l| l.trim_start()[stage.len()..].trim().to_owned())
        .unwrap_or_default()
}

fn assert_svgs_parse(plots: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(plots).unwrap() {
        let path = entry.unwrap().path();
        let svg = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{} is not well-formed: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg", "{}", path.display());
        count += 1;
    }
    count
}

#[test]
fn the_report_traces_every_stage_and_a_sweep_reruns_only_what_its_key_touches() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for idx in 0..10 {
        std::fs::write(corpus.join(format!("work_{idx:02}.txt")), document(idx)).unwrap();
    }
    let config = dir.path().join("tiny.toml");
    write_config(&config);
    let run_dir = dir.path().join("run");
    let common = ["--quiet", "--config", config.to_str().unwrap(), "--corpus", corpus.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap()];
    let with = |command: &[&str]| -> Vec<String> { command.iter().chain(&common).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());

    assert_ok(&run(with(&["cascade", "--to", "pretrain-encoder"])));
    let first = assert_ok(&run(with(&["report"])));
    assert!(status_of(&first, "report").starts_with("done"), "{first}");
    let report = run_dir.join("report");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for stage in ["data", "tokenizer", "pretrain-decoder", "pretrain-encoder"] {
        assert!(md.contains(&format!("| {stage} | done | fresh (not run yet) |")), "no trace row for {stage}:\n{md}");
    }
    assert!(md.contains("| pretrain-encoder-decoder | not run |"), "a stage that has not run is a row: {md}");
    assert!(md.contains("## The six tensions") && md.contains("### Compute vs memory"), "{md}");
    assert!(md.contains("| pretrain-decoder |") && md.contains("temperature"), "samples and the sweep come from the decoder:\n{md}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Cascade trace"));
    let plots = assert_svgs_parse(&report.join("plots"));
    assert!(plots >= 6, "only {plots} plots");

    let again = assert_ok(&run(with(&["report"])));
    assert_eq!(status_of(&again, "report"), "up to date", "{again}");

    let sweep = assert_ok(&run(with(&["sweep", "model.decoder.n_kv_heads=1,2", "--to", "pretrain-decoder"])));
    let sweep_dir = dir.path().join("run.sweep").join("model.decoder.n_kv_heads");
    let one = sweep.split("sweep: model.decoder.n_kv_heads=2").next().unwrap();
    for reused in ["data", "tokenizer"] {
        assert_eq!(status_of(one, reused), "up to date", "{reused} is upstream of the key: {sweep}");
    }
    assert!(status_of(one, "pretrain-decoder").starts_with("done"), "{sweep}");
    assert_eq!(status_of(&sweep, "pretrain-decoder"), "up to date", "n_kv_heads = 2 is the base config: {sweep}");
    let comparison = std::fs::read_to_string(sweep_dir.join("report/report.md")).unwrap();
    assert!(comparison.contains("| 1 |") && comparison.contains("| 2 |"), "{comparison}");
    assert_svgs_parse(&sweep_dir.join("report/plots"));
    let kv = |value: &str| -> u64 {
        let manifest = std::fs::read_to_string(sweep_dir.join(value).join("pretrain-decoder/manifest.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&manifest).unwrap()["metrics"]["model_costs"]["kv_cache_bytes_per_token"].as_u64().unwrap()
    };
    assert_eq!(kv("2"), 2 * kv("1"), "the KV cache is proportional to the KV heads");
}

#[test]
fn a_report_on_a_directory_without_a_run_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing");
    let output = xtask(&["report", "--quiet", "--preset", "smoke", "--run-dir", empty.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && err.contains("holds no run") && err.contains("cargo xtask cascade"), "{err}");
    assert!(!empty.join("report").exists(), "nothing is written");
}
