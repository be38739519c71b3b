//! Each quality filter rejects the document built to fail it (and only that one), with the
//! reason, value and limit in `rejected.jsonl` and the count in the report.

mod common;

use cascade_core::NoProgress;
use cascade_data::{DataConfig, FilterConfig, FilterKind, RunOptions, check_filters, run};
use common::{out_dir, read_jsonl};

/// `n` distinct six-letter words starting at `start`.
fn words(start: usize, n: usize) -> Vec<String> {
    (start..start + n)
        .map(|mut i| {
            let mut w = String::from("w");
            for _ in 0..5 {
                w.push((b'a' + (i % 26) as u8) as char);
                i /= 26;
            }
            w
        })
        .collect()
}

/// Lines of ten words each.
fn lines(ws: &[String]) -> String {
    ws.chunks(10).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n")
}

/// One document per filter (the name of the filter it must fail) plus a good one.
fn documents() -> Vec<(&'static str, String)> {
    let mut docs = vec![("good", lines(&words(0, 200)))];
    docs.push(("min_words", "only a few words here".into()));
    docs.push(("max_words", lines(&words(1000, 1200))));
    docs.push(("min_mean_word_length", ["a an to of is it"; 12].join("\n")));
    docs.push(("max_mean_word_length", lines(&words(3000, 60).iter().map(|w| w.repeat(3)).collect::<Vec<_>>())));
    docs.push(("symbol_to_word_ratio", lines(&words(4000, 60).iter().map(|w| format!("#{w}")).collect::<Vec<_>>())));
    docs.push(("alpha_word_fraction", lines(&words(5000, 60).iter().enumerate().map(|(i, w)| if i % 2 == 0 { format!("{}", 10000 + i) } else { w.clone() }).collect::<Vec<_>>())));
    let mut dup_lines: Vec<String> = words(6000, 100).chunks(10).map(|c| c.join(" ")).collect();
    dup_lines.extend(std::iter::repeat_n("Exeunt.".to_string(), 10));
    docs.push(("duplicate_line_fraction", dup_lines.join("\n")));
    let mut dup_chars: Vec<String> = words(7000, 100).chunks(10).map(|c| c.join(" ")).collect();
    let long = words(7500, 30).join(" ");
    dup_chars.extend(std::iter::repeat_n(long, 3));
    docs.push(("duplicate_line_char_fraction", dup_chars.join("\n")));
    let two: Vec<String> = words(8000, 60).chunks(2).map(|c| format!("the cat {} the cat {}", c[0], c[1])).collect();
    docs.push(("top_2gram_fraction", two.join("\n")));
    let three: Vec<String> = words(9000, 120).chunks(6).map(|c| format!("alpha beta gamma {}", c.join(" "))).collect();
    docs.push(("top_3gram_fraction", three.join("\n")));
    let four: Vec<String> = words(10000, 200).chunks(10).map(|c| format!("abcd efgh ijkl mnop {}", c.join(" "))).collect();
    docs.push(("top_4gram_fraction", four.join("\n")));
    docs
}

fn config() -> FilterConfig {
    FilterConfig { max_words: 1000, ..FilterConfig::default() }
}

#[test]
fn each_filter_rejects_its_document() {
    for (expected, text) in documents() {
        let verdict = check_filters(&text, &config());
        match (expected, verdict) {
            ("good", Ok(())) => {}
            (name, Err(rejection)) => assert_eq!(rejection.filter.name(), name, "{rejection:?}"),
            (name, Ok(())) => panic!("{name} passed the filters"),
        }
    }
    let off = FilterConfig { enabled: false, ..config() };
    assert!(documents().iter().all(|(_, text)| check_filters(text, &off).is_ok()));
}

#[test]
fn rejections_are_written_with_reason_value_and_limit() {
    let corpus = tempfile::tempdir().unwrap();
    let docs = documents();
    for (name, text) in &docs {
        std::fs::write(corpus.path().join(format!("{name}.txt")), text).unwrap();
    }
    let data = DataConfig { filters: config(), ..DataConfig::default() };
    let out = out_dir();
    let report = run(&data, corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    let rejected = read_jsonl(&out.path().join("rejected.jsonl"));
    assert_eq!(rejected.len(), docs.len() - 1);
    for doc in &rejected {
        let reason = doc["meta"]["reason"].as_str().unwrap();
        assert_eq!(format!("{reason}.txt"), doc["id"].as_str().unwrap());
        assert_eq!(doc["meta"]["step"], "filter");
        assert!(doc["meta"]["value"].is_number() && doc["meta"]["limit"].is_number());
        assert!(!doc["text"].as_str().unwrap().is_empty(), "rejected documents keep their text");
        assert_eq!(report.filters[reason].docs, 1);
    }
    assert_eq!(report.filters.len(), 11);
    let filter_step = &report.steps[1];
    assert_eq!((filter_step.docs_in, filter_step.docs_out), (12, 1));
    assert_eq!(FilterKind::Top2gramFraction.name(), "top_2gram_fraction");
}
