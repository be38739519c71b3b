//! A tiny document model (headings, paragraphs, tables, figures) rendered twice: to Markdown
//! that links the plot files, and to one self-contained HTML page with the SVGs inlined.

use std::fmt::Write as _;

/// One block of the report.
#[derive(Debug, Clone)]
pub enum Block {
    /// `#`-level heading (1 = title).
    Heading(u8, String),
    /// A paragraph of plain text (no markup).
    Para(String),
    /// A table of plain-text cells.
    Table {
        /// Column names.
        header: Vec<String>,
        /// Rows, each as long as the header.
        rows: Vec<Vec<String>>,
    },
    /// A plot.
    Figure {
        /// File name under `plots/`.
        file: String,
        /// The SVG text.
        svg: String,
        /// Caption under the plot.
        caption: String,
    },
    /// Preformatted text (samples, config excerpts).
    Pre(String),
}

/// The report being assembled.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// The blocks in reading order.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// A heading.
    pub fn heading(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }

    /// A paragraph.
    pub fn para(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }

    /// A table; rows shorter than the header are padded.
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        let rows = rows
            .into_iter()
            .map(|mut row| {
                row.resize(header.len(), String::new());
                row
            })
            .collect();
        self.blocks.push(Block::Table { header, rows });
    }

    /// A figure.
    pub fn figure(&mut self, file: impl Into<String>, svg: String, caption: impl Into<String>) {
        self.blocks.push(Block::Figure { file: file.into(), svg, caption: caption.into() });
    }

    /// Preformatted text.
    pub fn pre(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Pre(text.into()));
    }

    /// Every figure: (file name, SVG).
    pub fn figures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Figure { file, svg, .. } => Some((file.as_str(), svg.as_str())),
            _ => None,
        })
    }

    /// Markdown; figures link `plots/<file>`.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from(*level).clamp(1, 6)));
                }
                Block::Para(text) => {
                    let _ = writeln!(out, "{text}\n");
                }
                Block::Table { header, rows } => {
                    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
                    let _ = writeln!(out, "| {} |", header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
                    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                    for row in rows {
                        let _ = writeln!(out, "| {} |", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
                    }
                    out.push('\n');
                }
                Block::Figure { file, caption, .. } => {
                    let _ = writeln!(out, "![{file}](plots/{file})\n\n*{caption}*\n");
                }
                Block::Pre(text) => {
                    let _ = writeln!(out, "```text\n{}\n```\n", text.trim_end());
                }
            }
        }
        out
    }

    /// One HTML page with inline SVGs and a small stylesheet; no external resources.
    pub fn to_html(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head><body>\n",
            escape(title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let level = (*level).clamp(1, 6);
                    let _ = writeln!(out, "<h{level} id=\"{}\">{}</h{level}>", slug(text), escape(text));
                }
                Block::Para(text) => {
                    let _ = writeln!(out, "<p>{}</p>", inline_code(&escape(text)));
                }
                Block::Table { header, rows } => {
                    out.push_str("<div class=\"scroll\"><table><thead><tr>");
                    for h in header {
                        let _ = write!(out, "<th>{}</th>", escape(h));
                    }
                    out.push_str("</tr></thead><tbody>\n");
                    for row in rows {
                        out.push_str("<tr>");
                        for c in row {
                            let _ = write!(out, "<td>{}</td>", escape(c));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody></table></div>\n");
                }
                Block::Figure { svg, caption, .. } => {
                    let _ = writeln!(out, "<figure>{}<figcaption>{}</figcaption></figure>", strip_xml_prolog(svg), escape(caption));
                }
                Block::Pre(text) => {
                    let _ = writeln!(out, "<pre>{}</pre>", escape(text));
                }
            }
        }
        out.push_str("</body></html>\n");
        out
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}.scroll{overflow-x:auto}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:0.85em;color:#555}\
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.85em;white-space:pre-wrap}";

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// `` `x` `` spans (Markdown inline code) as `<code>x</code>`; an unmatched backtick stays.
fn inline_code(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return escaped.to_owned();
    }
    parts.iter().enumerate().map(|(idx, part)| if idx % 2 == 1 { format!("<code>{part}</code>") } else { (*part).to_owned() }).collect()
}

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(start) => &svg[start..],
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_carry_every_block() {
        let mut doc = Doc::default();
        doc.heading(1, "Run <x>");
        doc.para("a & `b`");
        doc.table(&["stage", "kept"], vec![vec!["data".into()], vec!["a|b".into(), "2".into()]]);
        doc.figure("loss.svg", "<?xml version=\"1.0\"?><svg></svg>".into(), "Loss");
        let md = doc.to_markdown();
        assert!(md.contains("# Run <x>") && md.contains("| data |  |") && md.contains("a\\|b"), "{md}");
        assert!(md.contains("![loss.svg](plots/loss.svg)") && md.contains("*Loss*"), "{md}");
        let html = doc.to_html("t");
        assert!(html.contains("Run &lt;x&gt;") && html.contains("a &amp; <code>b</code>"), "{html}");
        assert!(html.contains("<figure><svg></svg>") && !html.contains("<?xml"), "{html}");
    }
}
