//! Exact resume: K steps straight equal K/2 steps, a stop, and K/2 more from the checkpoint.
//! Alone in its binary because the device RNG that draws the initial weights is process-global.

mod common;

use std::path::Path;

use cascade_core::NoProgress;
use cascade_model::burn::prelude::Device;
use cascade_pretrain::{PretrainConfig, PretrainJob, PretrainReport, StopReason, run};
use common::*;

fn job_run(cfg: &PretrainConfig, train: &Path, out: &Path, resume: Option<&Path>) -> PretrainReport {
    std::fs::create_dir_all(out).unwrap();
    let special = special();
    let model = decoder();
    let job = PretrainJob {
        model: &model,
        config: cfg,
        train_tokens: train,
        val_tokens: train,
        val_bytes_per_token: None,
        special: &special,
        out_dir: out,
        resume_from: resume,
        peak_flops: None,
    };
    run(&job, &Device::flex(), &NoProgress).unwrap()
}

fn losses(out: &Path) -> Vec<f64> {
    read_metrics(out).iter().map(|l| l["train_loss"].as_f64().unwrap()).collect()
}

#[test]
fn interrupted_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let train = write_shard(dir.path(), "train", 40, 3);
    let k = 10u64;
    let cfg = PretrainConfig { grad_accum: 2, eval_every: 0, ..config(k) };
    let straight = job_run(&cfg, &train, &dir.path().join("straight"), None);

    // "Interrupt" after k/2 steps through the token budget, then resume with the original config.
    let half = PretrainConfig { max_tokens: (k / 2) * cfg.tokens_per_step(), ..cfg.clone() };
    let first = job_run(&half, &train, &dir.path().join("first"), None);
    assert_eq!(first.stop_reason, StopReason::MaxTokens);
    assert_eq!(first.steps, k / 2);
    let ckpt = dir.path().join("first/checkpoint");
    let resumed = job_run(&cfg, &train, &dir.path().join("second"), Some(&ckpt));
    assert_eq!(resumed.resumed_from_step, k / 2);
    assert_eq!(resumed.steps, k);

    let all = losses(&dir.path().join("straight"));
    let mut pieced = losses(&dir.path().join("first"));
    pieced.extend(losses(&dir.path().join("second")));
    assert_eq!(all.len(), k as usize);
    assert_eq!(all, pieced, "losses differ after resume");
    assert_eq!(straight.final_val_loss, resumed.final_val_loss);
}
