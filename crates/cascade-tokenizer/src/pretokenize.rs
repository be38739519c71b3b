//! Pre-tokenization: splitting text into the pieces BPE merges within.
//!
//! GPT-2's and cl100k's patterns need lookahead and possessive quantifiers, which the linear
//! `regex` engine lacks and the backtracking `fancy-regex` engine runs slowly. They are
//! implemented here as exact hand-written scanners (one pass, constant backtracking) and tested
//! against `fancy-regex` running the reference patterns; any other pattern runs on
//! `fancy-regex`. Pieces always tile the input: text a custom pattern does not match becomes a
//! piece of its own rather than being dropped, so no byte is ever lost.

use crate::unicode::{CharClass, INVALID, class_of, decode_at};

/// GPT-2's pre-tokenizer pattern (as tiktoken writes it; equal to the original with `\s+`).
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";

/// cl100k's pre-tokenizer pattern (GPT-3.5/4), as tiktoken writes it.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// A compiled pre-tokenizer.
#[derive(Debug, Clone)]
pub(crate) enum Pretokenizer {
    /// [`GPT2_PATTERN`], hand-written.
    Gpt2,
    /// [`CL100K_PATTERN`], hand-written.
    Cl100k,
    /// Any other pattern, on `fancy-regex`.
    Custom(Box<fancy_regex::Regex>),
}

impl Pretokenizer {
    /// Compiles `pattern`, recognising the two built-in patterns by their exact text.
    pub(crate) fn new(pattern: &str) -> Result<Self, Box<fancy_regex::Error>> {
        crate::unicode::warm_up();
        Ok(match pattern {
            GPT2_PATTERN => Self::Gpt2,
            CL100K_PATTERN => Self::Cl100k,
            other => Self::Custom(Box::new(fancy_regex::Regex::new(other).map_err(Box::new)?)),
        })
    }

    /// The pattern's source text.
    pub(crate) fn pattern(&self) -> &str {
        match self {
            Self::Gpt2 => GPT2_PATTERN,
            Self::Cl100k => CL100K_PATTERN,
            Self::Custom(regex) => regex.as_str(),
        }
    }

    /// Calls `emit` with each piece of `text`, in order; the pieces concatenate to `text`.
    #[inline]
    pub(crate) fn for_each_piece<'t>(&self, text: &'t [u8], mut emit: impl FnMut(&'t [u8])) {
        match self {
            Self::Gpt2 => scan(text, gpt2_piece_end, emit),
            Self::Cl100k => scan(text, cl100k_piece_end, emit),
            Self::Custom(regex) => {
                for chunk in text.utf8_chunks() {
                    custom_pieces(regex, chunk.valid(), &mut emit);
                    if !chunk.invalid().is_empty() {
                        emit(chunk.invalid());
                    }
                }
            }
        }
    }
}

fn custom_pieces<'t>(regex: &fancy_regex::Regex, text: &'t str, emit: &mut impl FnMut(&'t [u8])) {
    let bytes = text.as_bytes();
    let mut covered = 0;
    for found in regex.find_iter(text) {
        // A regex error here is the backtrack limit on a pathological input; what is left is
        // emitted whole below, so the text still round-trips.
        let Ok(found) = found else { break };
        if found.start() > covered {
            emit(&bytes[covered..found.start()]);
        }
        if found.end() > found.start() {
            emit(&bytes[found.start()..found.end()]);
        }
        covered = covered.max(found.end());
    }
    if covered < bytes.len() {
        emit(&bytes[covered..]);
    }
}

#[inline]
fn scan<'t>(text: &'t [u8], piece_end: fn(&[u8], usize) -> usize, mut emit: impl FnMut(&'t [u8])) {
    let mut start = 0;
    while start < text.len() {
        let end = piece_end(text, start);
        emit(&text[start..end]);
        start = end;
    }
}

/// Class and byte length of the character at `idx`, with an ASCII fast path.
#[inline(always)]
fn class_at(text: &[u8], idx: usize) -> (CharClass, usize) {
    let byte = text[idx];
    if byte < 0x80 {
        return (ASCII_CLASS[byte as usize], 1);
    }
    let (cp, len) = decode_at(text, idx);
    (if cp == INVALID { CharClass::Other } else { class_of(cp) }, len)
}

const ASCII_CLASS: [CharClass; 128] = {
    let mut table = [CharClass::Other; 128];
    let mut byte = 0;
    while byte < 128 {
        let c = byte as u8;
        table[byte] = if c.is_ascii_alphabetic() {
            CharClass::Letter
        } else if c.is_ascii_digit() {
            CharClass::Number
        } else if matches!(c, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
            CharClass::Space
        } else {
            CharClass::Other
        };
        byte += 1;
    }
    table
};

/// End of the run of characters of class `class` starting at `idx`.
#[inline(always)]
fn run_end(text: &[u8], mut idx: usize, class: CharClass) -> usize {
    while idx < text.len() {
        let (c, len) = class_at(text, idx);
        if c != class {
            break;
        }
        idx += len;
    }
    idx
}

/// `(end of the whitespace run at idx, start of its last character)`.
#[inline]
fn space_run(text: &[u8], mut idx: usize) -> (usize, usize) {
    let mut last_start = idx;
    while idx < text.len() {
        let (c, len) = class_at(text, idx);
        if c != CharClass::Space {
            break;
        }
        last_start = idx;
        idx += len;
    }
    (idx, last_start)
}

/// Length of the contraction (`'s`, `'t`, `'m`, `'d`, `'ll`, `'ve`, `'re`) at `idx`, if any.
#[inline]
fn contraction_len(text: &[u8], idx: usize, ignore_case: bool) -> Option<usize> {
    let fold = |b: u8| if ignore_case { b.to_ascii_lowercase() } else { b };
    let next = text.get(idx + 1).copied().map(fold);
    let next2 = text.get(idx + 2).copied().map(fold);
    match (next, next2) {
        (Some(b's' | b'd' | b'm' | b't'), _) => Some(2),
        (Some(b'l'), Some(b'l')) | (Some(b'v'), Some(b'e')) | (Some(b'r'), Some(b'e')) => Some(3),
        // Under Unicode case folding `(?i)s` also matches U+017F LATIN SMALL LETTER LONG S.
        _ if ignore_case && text.get(idx + 1..idx + 3) == Some(&[0xC5, 0xBF]) => Some(3),
        _ => None,
    }
}

/// End of the GPT-2 piece starting at `start`.
fn gpt2_piece_end(text: &[u8], start: usize) -> usize {
    let first = text[start];
    if first == b'\''
        && let Some(len) = contraction_len(text, start, false)
    {
        return start + len;
    }
    let (class, len) = class_at(text, start);
    if first == b' ' && start + 1 < text.len() {
        let (next_class, _) = class_at(text, start + 1);
        if next_class != CharClass::Space {
            return run_end(text, start + 1, next_class);
        }
    }
    if class != CharClass::Space {
        return run_end(text, start + len, class);
    }
    whitespace_piece_end(text, start)
}

/// `\s++$|\s+(?!\S)|\s`: the whole run at the end of the text, else all of it but the last
/// character (which then prefixes the next word), else a single character.
#[inline]
fn whitespace_piece_end(text: &[u8], start: usize) -> usize {
    let (end, last_start) = space_run(text, start);
    if end == text.len() {
        end
    } else if last_start > start {
        last_start
    } else {
        end
    }
}

/// End of the cl100k piece starting at `start`.
fn cl100k_piece_end(text: &[u8], start: usize) -> usize {
    let first = text[start];
    if first == b'\''
        && let Some(len) = contraction_len(text, start, true)
    {
        return start + len;
    }
    let (class, len) = class_at(text, start);
    match class {
        CharClass::Letter => return run_end(text, start + len, CharClass::Letter),
        CharClass::Number => {
            let mut end = start + len;
            for _ in 0..2 {
                if end >= text.len() {
                    break;
                }
                let (next_class, next_len) = class_at(text, end);
                if next_class != CharClass::Number {
                    break;
                }
                end += next_len;
            }
            return end;
        }
        _ => {}
    }
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`: one non-letter, non-digit, non-newline before a word.
    if first != b'\r' && first != b'\n' && start + len < text.len() {
        let (next_class, next_len) = class_at(text, start + len);
        if next_class == CharClass::Letter {
            return run_end(text, start + len + next_len, CharClass::Letter);
        }
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    let other_start = if class == CharClass::Other {
        Some(start)
    } else if first == b' ' && start + 1 < text.len() && class_at(text, start + 1).0 == CharClass::Other {
        Some(start + 1)
    } else {
        None
    };
    if let Some(other_start) = other_start {
        let mut end = run_end(text, other_start, CharClass::Other);
        while end < text.len() && matches!(text[end], b'\r' | b'\n') {
            end += 1;
        }
        return end;
    }
    // Whitespace: `\s++$|\s*[\r\n]|\s+(?!\S)|\s`.
    let (end, last_start) = space_run(text, start);
    if end == text.len() {
        return end;
    }
    if let Some(newline) = text[start..end].iter().rposition(|&b| b == b'\r' || b == b'\n') {
        return start + newline + 1;
    }
    if last_start > start { last_start } else { end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pieces(pre: &Pretokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre.for_each_piece(text.as_bytes(), |piece| out.push(String::from_utf8_lossy(piece).into_owned()));
        out
    }

    fn reference(pattern: &str, text: &str) -> Vec<String> {
        let regex = fancy_regex::Regex::new(pattern).unwrap();
        regex.find_iter(text).map(|m| m.unwrap().as_str().to_owned()).collect()
    }

    const SAMPLES: &[&str] = &[
        "Hello world! It's 2024, isn't it? I'LL say WE'RE  fine...\n\n  \tTabs\r\nand CRLF\r\n",
        "  leading and trailing   ",
        "numbers 1234567 and 3.14159, ½ ⅓ Ⅻ",
        "emoji 😀😃 and CJK 漢字かな and combining e\u{301}e\u{301} mark",
        "'s 'S 'ſ 'll 'LL 've 're 'd 'm 't 'x '",
        "\n\n\n   \n  x\u{3000}y\u{85}z\u{a0}w",
        "end with newline spaces\n   ",
        "!!!\n\n???\r\n  \"quoted\"  ",
    ];

    #[test]
    fn scanners_match_the_reference_regexes() {
        for (pre, pattern) in [(Pretokenizer::Gpt2, GPT2_PATTERN), (Pretokenizer::Cl100k, CL100K_PATTERN)] {
            for text in SAMPLES {
                assert_eq!(pieces(&pre, text), reference(pattern, text), "{pattern} on {text:?}");
            }
        }
    }

    #[test]
    fn custom_pattern_keeps_unmatched_text() {
        let pre = Pretokenizer::new(r"\d+").unwrap();
        assert_eq!(pieces(&pre, "ab12cd3"), ["ab", "12", "cd", "3"]);
        let bytes = b"a\xffb12";
        let mut out = Vec::new();
        pre.for_each_piece(bytes, |piece| out.push(piece.to_vec()));
        assert_eq!(out.concat(), bytes);
    }

    fn interesting_text() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            'a', 'b', 'Z', 's', 'S', 't', 'l', 'L', 'e', 'v', 'r', 'd', 'm', '\'', ' ', ' ', '\n', '\r', '\t',
            '0', '7', '½', '!', '.', ',', '"', 'é', '漢', '😀', '\u{301}', '\u{3000}', '\u{a0}', '\u{85}',
            'ſ', 'K', '\u{2028}', '_', '-',
        ]);
        prop::collection::vec(chars, 0..40).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn gpt2_scanner_equals_regex(text in interesting_text()) {
            prop_assert_eq!(pieces(&Pretokenizer::Gpt2, &text), reference(GPT2_PATTERN, &text));
        }

        #[test]
        fn cl100k_scanner_equals_regex(text in interesting_text()) {
            prop_assert_eq!(pieces(&Pretokenizer::Cl100k, &text), reference(CL100K_PATTERN, &text));
        }

        #[test]
        fn pieces_tile_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            for pre in [Pretokenizer::Gpt2, Pretokenizer::Cl100k, Pretokenizer::new(r"\w+").unwrap()] {
                let mut out = Vec::new();
                pre.for_each_piece(&bytes, |piece| { assert!(!piece.is_empty()); out.extend_from_slice(piece) });
                prop_assert_eq!(&out, &bytes);
            }
        }
    }
}
