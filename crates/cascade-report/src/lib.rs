//! The Cascade run report: reads every stage's manifest and metrics, draws the plots (SVG,
//! plotters) and writes `report.md` and a self-contained `report.html`.
//!
//! The report only reads files: stage manifests, `metrics.jsonl`, the data stage's
//! `clusters.jsonl`, the token shard headers and `run.log`. It knows a few stages by name (data,
//! tokenizer, pretraining) and reads every other stage generically (headline metrics from its
//! manifest, curves from its `metrics.jsonl`), so a stage added later shows up without a change
//! here, and a stage that has not run is a "not run" row, never an error. What needs a model
//! (costs of GQA variants, samples, the temperature sweep) is measured by the caller and handed
//! in as [`Extras`], which keeps this crate free of burn.
#![deny(missing_docs)]

pub mod config;
pub mod doc;
pub mod error;
pub mod extras;
pub mod figures;
pub mod fmt;
pub mod plots;
pub mod run;
pub mod sweep;
pub mod tensions;
pub mod trace;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use config::ReportConfig;
pub use error::{ReportError, Result};
pub use extras::{CostVariant, Extras, ReplyStats, SampleRow, Samples, TemperaturePoint};
pub use run::{CacheStatus, RunView};

use crate::doc::Doc;

/// The report's own stage name: its directory is skipped when reading the run.
pub const REPORT_STAGE: &str = "report";

/// What was written, for the report stage's manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// Stages with a manifest, in report order.
    pub stages_done: Vec<String>,
    /// Known stages that have not run.
    pub stages_not_run: Vec<String>,
    /// Plot files under `plots/`.
    pub plots: Vec<String>,
    /// What could not be measured and why.
    pub notes: Vec<String>,
}

/// Reads the run in `run_dir` (stages in `stage_order` first, then any other stage directory)
/// and writes `report.md`, `report.html`, `measurements.json` and `plots/*.svg` into `out_dir`.
pub fn write_report(run_dir: &Path, stage_order: &[&str], extras: &Extras, out_dir: &Path) -> Result<ReportSummary> {
    let run = RunView::load(run_dir, stage_order, &[REPORT_STAGE])?;
    let doc = build(&run, extras)?;
    write_doc(&doc, &format!("Cascade report: {}", run_dir.display()), out_dir)?;
    let measurements = out_dir.join("measurements.json");
    let json = serde_json::to_vec_pretty(extras).map_err(|e| ReportError::BadFile { path: measurements.clone(), message: e.to_string() })?;
    std::fs::write(&measurements, json).map_err(|e| ReportError::io(&measurements, e))?;
    Ok(ReportSummary {
        stages_done: run.stages.iter().filter(|s| s.manifest.is_some()).map(|s| s.name.clone()).collect(),
        stages_not_run: run.stages.iter().filter(|s| s.manifest.is_none()).map(|s| s.name.clone()).collect(),
        plots: doc.figures().map(|(file, _)| file.to_owned()).collect(),
        notes: extras.notes.clone(),
    })
}

/// Writes `report.md`, `report.html` and every figure under `plots/`.
pub fn write_doc(doc: &Doc, title: &str, out_dir: &Path) -> Result<()> {
    let plots = out_dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| ReportError::io(&plots, e))?;
    for (file, svg) in doc.figures() {
        let path = plots.join(file);
        std::fs::write(&path, svg).map_err(|e| ReportError::io(&path, e))?;
    }
    let md = out_dir.join("report.md");
    std::fs::write(&md, doc.to_markdown()).map_err(|e| ReportError::io(&md, e))?;
    let html = out_dir.join("report.html");
    std::fs::write(&html, doc.to_html(title)).map_err(|e| ReportError::io(&html, e))?;
    Ok(())
}

fn build(run: &RunView, extras: &Extras) -> Result<Doc> {
    let mut doc = Doc::default();
    doc.heading(1, format!("Cascade report: {}", run.root.display()));
    let done = run.stages.iter().filter(|s| s.manifest.is_some()).count();
    doc.para(format!(
        "{done} of {} stages have run. Each stage's numbers come from its manifest.json and metrics.jsonl in the run directory; \
         the cache column comes from run.log.",
        run.stages.len()
    ));
    trace::write_trace(&mut doc, run);
    figures::training_curves(&mut doc, run)?;
    doc.heading(2, "Data and tokenizer");
    figures::dedup_s_curve(&mut doc, run)?;
    figures::tokenizer_bytes_per_token(&mut doc, run)?;
    doc.heading(2, "Post-training");
    figures::other_stage_curves(&mut doc, run)?;
    figures::reply_histograms(&mut doc, extras)?;
    tensions::write_tensions(&mut doc, run, extras)?;
    write_samples(&mut doc, extras);
    if !extras.notes.is_empty() {
        doc.heading(2, "Not measured");
        for note in &extras.notes {
            doc.para(note.clone());
        }
    }
    Ok(doc)
}

fn write_samples(doc: &mut Doc, extras: &Extras) {
    doc.heading(2, "Samples");
    let Some(samples) = &extras.samples else {
        doc.para("No samples: answering prompts needs the inference engine (cascade-infer); see the notes below.");
        return;
    };
    doc.para(format!("The same prompts answered by each model ({}).", samples.settings));
    let mut header = vec!["prompt"];
    header.extend(samples.models.iter().map(String::as_str));
    let rows = samples
        .rows
        .iter()
        .map(|row| std::iter::once(row.prompt.clone()).chain(row.replies.iter().cloned()).collect())
        .collect();
    doc.table(&header, rows);
}
