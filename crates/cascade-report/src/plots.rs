//! Plot drawing on plotters' SVG backend: line/point charts (one or several stacked panels) and
//! overlaid histograms, each returned as SVG text.

use std::error::Error;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};

const WIDTH: u32 = 760;
const PANEL_HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";

/// Distinct colours, colour-blind friendly (Okabe-Ito), then greys.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// The colour of series `idx`.
pub fn color(idx: usize) -> RGBColor {
    PALETTE[idx % PALETTE.len()]
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A thin line.
    Line,
    /// Dots.
    Points,
    /// A line with dots.
    LinePoints,
}

/// One named series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// How to draw it.
    pub mark: Mark,
    /// Index into the palette.
    pub color: usize,
    /// A label beside each point (empty: none).
    pub point_labels: Vec<String>,
}

impl Series {
    /// A series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark, color: usize) -> Self {
        Self { name: name.into(), points, mark, color, point_labels: Vec::new() }
    }

    /// The same series with a label beside each point.
    pub fn labelled(mut self, labels: Vec<String>) -> Self {
        self.point_labels = labels;
        self
    }
}

/// One chart panel.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Caption above the panel.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// The series.
    pub series: Vec<Series>,
    /// Labelled vertical reference lines.
    pub vlines: Vec<(f64, String)>,
    /// Fixed x range (else from the data).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (else from the data).
    pub y_range: Option<(f64, f64)>,
    /// Where the legend goes (default upper right).
    pub legend: Legend,
    /// Height of the reference lines' labels, as a fraction of the y range (default 0.96).
    pub vline_label_height: Option<f64>,
}

/// Legend corner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Legend {
    /// Upper right.
    #[default]
    UpperRight,
    /// Upper left.
    UpperLeft,
    /// Lower right.
    LowerRight,
    /// Lower left.
    LowerLeft,
}

impl Legend {
    fn position(self) -> SeriesLabelPosition {
        match self {
            Self::UpperRight => SeriesLabelPosition::UpperRight,
            Self::UpperLeft => SeriesLabelPosition::UpperLeft,
            Self::LowerRight => SeriesLabelPosition::LowerRight,
            Self::LowerLeft => SeriesLabelPosition::LowerLeft,
        }
    }
}

/// Draws labelled vertical lines; a label sits right of its line, or left of it where it would
/// run past the chart's edge.
fn draw_vlines<DB: DrawingBackend>(
    ctx: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    vlines: &[(f64, String)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    label_height: f64,
) -> std::result::Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let grey = RGBColor(90, 90, 90);
    for (x, label) in vlines {
        ctx.draw_series(LineSeries::new([(*x, y0), (*x, y1)], grey.stroke_width(1)))?;
        // About 8 px per character on a plot area about 650 px wide.
        let label_width = label.chars().count() as f64 * 8.0 / 650.0;
        let overflows = (*x - x0) / (x1 - x0) + 0.01 + label_width > 1.0;
        let (anchor, dx) = if overflows { (HPos::Right, -0.008) } else { (HPos::Left, 0.008) };
        let style = (FONT, 15).into_font().color(&grey).pos(Pos::new(anchor, VPos::Center));
        let at = (*x + dx * (x1 - x0), y0 + (y1 - y0) * label_height);
        ctx.draw_series(std::iter::once(Text::new(label.clone(), at, style)))?;
    }
    Ok(())
}

impl Chart {
    /// An empty chart with a title and axis labels.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Self::default() }
    }

    /// Adds a series (empty ones are dropped).
    pub fn with(mut self, series: Series) -> Self {
        if !series.points.is_empty() {
            self.series.push(series);
        }
        self
    }

    /// Whether there is anything to draw.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Numbers for axis ticks: 1.2k, 3.4M, 0.05.
pub fn short_number(value: f64) -> String {
    let abs = value.abs();
    if abs < 1e-9 {
        // Tick positions computed as sums can miss zero by rounding error.
        "0".to_owned()
    } else if abs >= 1e9 {
        trim(format!("{:.2}", value / 1e9)) + "G"
    } else if abs >= 1e6 {
        trim(format!("{:.2}", value / 1e6)) + "M"
    } else if abs >= 1e3 {
        trim(format!("{:.1}", value / 1e3)) + "k"
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else if abs >= 1.0 {
        trim(format!("{value:.2}"))
    } else if abs >= 1e-3 {
        trim(format!("{value:.4}"))
    } else {
        format!("{value:.1e}")
    }
}

fn trim(text: String) -> String {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

fn range(values: impl Iterator<Item = f64>, pad_fraction: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let half = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - half, hi + half);
    }
    let pad = (hi - lo) * pad_fraction;
    (lo - pad, hi + pad)
}

fn plot_error(file: &str, err: &dyn Error) -> ReportError {
    ReportError::Plot { plot: file.to_owned(), message: err.to_string() }
}

/// Draws `charts` stacked vertically into one SVG.
pub fn draw_charts(file: &str, charts: &[Chart]) -> Result<String> {
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * charts.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let drawn = (|| -> std::result::Result<(), Box<dyn Error>> {
            root.fill(&WHITE)?;
            let panels = root.split_evenly((charts.len().max(1), 1));
            for (panel, chart) in panels.iter().zip(charts) {
                draw_panel(panel, chart)?;
            }
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| plot_error(file, e.as_ref()))?;
    }
    Ok(svg)
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, chart: &Chart) -> std::result::Result<(), Box<dyn Error>> {
    let all_points = || chart.series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, mut x1) = chart
        .x_range
        .unwrap_or_else(|| range(all_points().map(|p| p.0).chain(chart.vlines.iter().map(|v| v.0)), 0.02));
    if chart.x_range.is_none() && chart.series.iter().any(|s| !s.point_labels.is_empty()) {
        // Room for the labels of the rightmost points.
        x1 += (x1 - x0) * 0.08;
    }
    let (y0, y1) = chart.y_range.unwrap_or_else(|| range(all_points().map(|p| p.1), 0.05));
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, (FONT, 21))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    draw_vlines(&mut ctx, &chart.vlines, (x0, x1), (y0, y1), chart.vline_label_height.unwrap_or(0.96))?;
    for series in &chart.series {
        let color = self::color(series.color);
        let legend_color = color;
        if matches!(series.mark, Mark::Points | Mark::LinePoints) {
            let points = ctx.draw_series(series.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            if series.mark == Mark::Points {
                points.label(series.name.as_str()).legend(move |(x, y)| Circle::new((x + 10, y), 3, legend_color.filled()));
            }
        }
        let label_style = (FONT, 13).into_font().color(&color).pos(Pos::new(HPos::Left, VPos::Bottom));
        let dx = (x1 - x0) * 0.006;
        ctx.draw_series(
            series.points.iter().zip(&series.point_labels).map(|(p, label)| Text::new(label.clone(), (p.0 + dx, p.1), label_style.clone())),
        )?;
        if matches!(series.mark, Mark::Line | Mark::LinePoints) {
            ctx.draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))?
                .label(series.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], legend_color.stroke_width(2)));
        }
    }
    // One series needs no legend: the title names it.
    if chart.series.len() > 1 {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 15))
            .position(chart.legend.position())
            .draw()?;
    }
    Ok(())
}

/// Overlaid histograms of several groups of values on shared bins, with labelled vertical
/// reference lines; counts are shown as shares of each group so groups of different sizes compare.
pub fn draw_histograms(
    file: &str,
    title: &str,
    x_label: &str,
    groups: &[(String, Vec<f64>)],
    bins: usize,
    vlines: &[(f64, String)],
) -> Result<String> {
    let values = || groups.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = range(values(), 0.03);
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let shares: Vec<Vec<f64>> = groups
        .iter()
        .map(|(_, group)| {
            let mut counts = vec![0.0; bins];
            let finite: Vec<f64> = group.iter().copied().filter(|v| v.is_finite()).collect();
            for v in &finite {
                let idx = (((v - lo) / width) as usize).min(bins - 1);
                counts[idx] += 1.0;
            }
            let total = finite.len().max(1) as f64;
            counts.into_iter().map(|c| c / total).collect()
        })
        .collect();
    // Headroom above the tallest bar keeps the legend off the bars.
    let top = shares.iter().flatten().copied().fold(0.0_f64, f64::max).max(1e-9) * 1.35;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT)).into_drawing_area();
        let drawn = (|| -> std::result::Result<(), Box<dyn Error>> {
            root.fill(&WHITE)?;
            let mut ctx = ChartBuilder::on(&root)
                .caption(title, (FONT, 21))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(62)
                .build_cartesian_2d(lo..hi, 0.0..top)?;
            ctx.configure_mesh()
                .x_desc(x_label)
                .y_desc("share of items")
                .x_label_formatter(&|v| short_number(*v))
                .y_label_formatter(&|v| short_number(*v))
                .label_style((FONT, 15))
                .axis_desc_style((FONT, 16))
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .draw()?;
            for (idx, ((name, group), share)) in groups.iter().zip(&shares).enumerate() {
                let color = self::color(idx);
                let alpha = if groups.len() > 1 { 0.45 } else { 0.75 };
                ctx.draw_series(share.iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(bin, s)| {
                    let left = lo + bin as f64 * width;
                    Rectangle::new([(left, 0.0), (left + width, *s)], color.mix(alpha).filled())
                }))?
                .label(format!("{name} (n={})", group.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(alpha).filled()));
            }
            draw_vlines(&mut ctx, vlines, (lo, hi), (0.0, top), 0.8)?;
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 15))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| plot_error(file, e.as_ref()))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_and_histograms_are_svg_with_their_labels() {
        let chart = Chart::new("Loss", "tokens", "nats")
            .with(Series::new("train", vec![(0.0, 5.0), (100.0, 3.0)], Mark::Line, 0))
            .with(Series::new("val", vec![(100.0, 3.5)], Mark::Points, 1))
            .with(Series::new("empty", vec![], Mark::Line, 2));
        assert_eq!(chart.series.len(), 2);
        let svg = draw_charts("loss.svg", &[chart.clone(), chart]).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..80]);
        assert!(svg.contains("\nLoss\n") && svg.contains("\ntrain\n") && svg.contains("\nval\n"));
        let svg = draw_histograms("h.svg", "Lengths", "tokens", &[("a".into(), vec![1.0, 2.0, 2.0]), ("b".into(), vec![3.0])], 4, &[(2.0, "mean".into())]).unwrap();
        assert!(svg.contains("\nLengths\n") && svg.contains("a (n=3)"), "{svg}");
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(150_000.0), "150k");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(3.25), "3.25");
        assert_eq!(short_number(0.05), "0.05");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(1e-16), "0");
    }
}
