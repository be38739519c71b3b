//! Gopher/C4-style quality heuristics over normalized text.
//!
//! The checks run in the order of [`FilterConfig`]'s fields and stop at the first failure, so
//! each rejected document has exactly one reason, and cheap checks (word counts) spare the
//! expensive ones (n-gram counting).

use rustc_hash::{FxHashMap, FxHashSet};
use xxhash_rust::xxh3::xxh3_64;

use crate::config::FilterConfig;
use crate::report::{FilterKind, Rejection};

/// Whitespace-separated words of `text`.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn reject(filter: FilterKind, value: f64, limit: f64) -> Result<(), Rejection> {
    Err(Rejection { filter, value, limit })
}

/// Runs the filters on `text`; `Err` names the first one that rejects it.
pub fn check(text: &str, config: &FilterConfig) -> Result<(), Rejection> {
    if !config.enabled {
        return Ok(());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let n_words = words.len() as u64;
    if n_words < config.min_words {
        return reject(FilterKind::MinWords, n_words as f64, config.min_words as f64);
    }
    if n_words > config.max_words {
        return reject(FilterKind::MaxWords, n_words as f64, config.max_words as f64);
    }
    if words.is_empty() {
        return Ok(());
    }
    let word_chars: usize = if text.is_ascii() {
        words.iter().map(|w| w.len()).sum()
    } else {
        words.iter().map(|w| w.chars().count()).sum()
    };
    let mean_len = word_chars as f64 / words.len() as f64;
    if mean_len < config.min_mean_word_length {
        return reject(FilterKind::MinMeanWordLength, mean_len, config.min_mean_word_length);
    }
    if mean_len > config.max_mean_word_length {
        return reject(FilterKind::MaxMeanWordLength, mean_len, config.max_mean_word_length);
    }
    let symbols = text.matches('#').count() + text.matches("...").count() + text.matches('\u{2026}').count();
    let symbol_ratio = symbols as f64 / words.len() as f64;
    if symbol_ratio > config.max_symbol_to_word_ratio {
        return reject(FilterKind::SymbolToWordRatio, symbol_ratio, config.max_symbol_to_word_ratio);
    }
    let alpha = words.iter().filter(|w| w.chars().any(char::is_alphabetic)).count();
    let alpha_fraction = alpha as f64 / words.len() as f64;
    if alpha_fraction < config.min_alpha_word_fraction {
        return reject(FilterKind::AlphaWordFraction, alpha_fraction, config.min_alpha_word_fraction);
    }
    check_lines(text, config)?;
    check_top_ngrams(&words, config)
}

fn check_lines(text: &str, config: &FilterConfig) -> Result<(), Rejection> {
    let mut seen = FxHashSet::default();
    let (mut lines, mut dup_lines, mut chars, mut dup_chars) = (0usize, 0usize, 0usize, 0usize);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let len = line.chars().count();
        lines += 1;
        chars += len;
        if !seen.insert(line) {
            dup_lines += 1;
            dup_chars += len;
        }
    }
    if lines == 0 {
        return Ok(());
    }
    let line_fraction = dup_lines as f64 / lines as f64;
    if line_fraction > config.max_duplicate_line_fraction {
        return reject(FilterKind::DuplicateLineFraction, line_fraction, config.max_duplicate_line_fraction);
    }
    let char_fraction = dup_chars as f64 / chars.max(1) as f64;
    if char_fraction > config.max_duplicate_line_char_fraction {
        return reject(FilterKind::DuplicateLineCharFraction, char_fraction, config.max_duplicate_line_char_fraction);
    }
    Ok(())
}

/// Fraction of word characters covered by the most frequent word `n`-gram, for n = 2, 3, 4.
fn check_top_ngrams(words: &[&str], config: &FilterConfig) -> Result<(), Rejection> {
    let hashes: Vec<u64> = words.iter().map(|w| xxh3_64(w.as_bytes())).collect();
    let total_chars: usize = words.iter().map(|w| w.len()).sum();
    let limits = [
        (2, FilterKind::Top2gramFraction, config.max_top_2gram_fraction),
        (3, FilterKind::Top3gramFraction, config.max_top_3gram_fraction),
        (4, FilterKind::Top4gramFraction, config.max_top_4gram_fraction),
    ];
    let mut counts: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
    for (n, filter, limit) in limits {
        if limit >= 1.0 || words.len() < n {
            continue;
        }
        counts.clear();
        for (start, window) in hashes.windows(n).enumerate() {
            let key = window.iter().fold(0u64, |acc, &h| (acc.rotate_left(21) ^ h).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            counts.entry(key).or_insert((0, start as u32)).0 += 1;
        }
        let Some(&(count, start)) = counts.values().max_by_key(|(count, start)| (*count, std::cmp::Reverse(*start))) else {
            continue;
        };
        let gram_chars: usize = words[start as usize..start as usize + n].iter().map(|w| w.len()).sum();
        let fraction = (count as usize * gram_chars) as f64 / total_chars.max(1) as f64;
        if fraction > limit {
            return reject(filter, fraction, limit);
        }
    }
    Ok(())
}
