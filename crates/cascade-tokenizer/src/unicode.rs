//! Character classes of the pre-tokenizer patterns (`\p{L}`, `\p{N}`, `\s`) and a strict UTF-8
//! decoder that steps over bytes which are not UTF-8.
//!
//! The tables come from `regex-syntax`, the same Unicode data the `regex`/`fancy-regex` engines
//! (and so tiktoken and HF `tokenizers`) use, so the hand-written scanners in
//! [`crate::pretokenize`] classify every code point exactly as the reference regexes do.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The class of one character as the GPT-2 and cl100k patterns see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CharClass {
    /// `\p{L}`.
    Letter = 0,
    /// `\p{N}`.
    Number = 1,
    /// `\s` (Unicode `White_Space`).
    Space = 2,
    /// Anything else, including bytes that are not UTF-8.
    Other = 3,
}

impl CharClass {
    fn from_u8(raw: u8) -> Self {
        match raw {
            0 => Self::Letter,
            1 => Self::Number,
            2 => Self::Space,
            _ => Self::Other,
        }
    }
}

/// A code point that stands for "this byte is not part of valid UTF-8".
pub(crate) const INVALID: u32 = u32::MAX;

struct Tables {
    /// Class of every code point below U+10000 (one lookup for almost all text).
    bmp: Box<[u8]>,
    /// Sorted, disjoint `(first, last, class)` ranges above U+FFFF.
    astral: Vec<(u32, u32, u8)>,
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    // The patterns are fixed literals that regex-syntax always accepts; an empty table would
    // only make the scanners classify those characters as `Other`, never fail.
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else { return Vec::new() };
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (u32::from(r.start()), u32::from(r.end()))).collect()
        }
        _ => Vec::new(),
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut bmp = vec![CharClass::Other as u8; 0x1_0000].into_boxed_slice();
        let mut astral = Vec::new();
        for (pattern, class) in [(r"\p{L}", CharClass::Letter), (r"\p{N}", CharClass::Number), (r"\s", CharClass::Space)] {
            for (first, last) in class_ranges(pattern) {
                for cp in first..=last.min(0xFFFF) {
                    bmp[cp as usize] = class as u8;
                }
                if last > 0xFFFF {
                    astral.push((first.max(0x1_0000), last, class as u8));
                }
            }
        }
        astral.sort_unstable();
        Tables { bmp, astral }
    })
}

/// The class of code point `cp` ([`INVALID`] is `Other`).
#[inline]
pub(crate) fn class_of(cp: u32) -> CharClass {
    let tables = tables();
    if cp < 0x1_0000 {
        return CharClass::from_u8(tables.bmp[cp as usize]);
    }
    match tables.astral.binary_search_by(|&(first, last, _)| {
        if last < cp {
            std::cmp::Ordering::Less
        } else if first > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(idx) => CharClass::from_u8(tables.astral[idx].2),
        Err(_) => CharClass::Other,
    }
}

/// Forces the tables to be built (so the first encode call is not the one that pays).
pub(crate) fn warm_up() {
    let _ = tables();
}

#[inline]
fn is_cont(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// Decodes the character starting at `bytes[idx]`: `(code point, length in bytes)`, or
/// `(INVALID, 1)` when the byte does not start a well-formed UTF-8 sequence.
#[inline]
pub(crate) fn decode_at(bytes: &[u8], idx: usize) -> (u32, usize) {
    let b0 = bytes[idx];
    if b0 < 0x80 {
        return (u32::from(b0), 1);
    }
    let at = |k: usize| bytes.get(idx + k).copied().unwrap_or(0);
    let (b1, b2, b3) = (at(1), at(2), at(3));
    match b0 {
        0xC2..=0xDF if is_cont(b1) => ((u32::from(b0 & 0x1F) << 6) | u32::from(b1 & 0x3F), 2),
        0xE0..=0xEF => {
            let b1_ok = match b0 {
                0xE0 => (0xA0..=0xBF).contains(&b1),
                0xED => (0x80..=0x9F).contains(&b1),
                _ => is_cont(b1),
            };
            if b1_ok && is_cont(b2) {
                let cp = (u32::from(b0 & 0x0F) << 12) | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
                (cp, 3)
            } else {
                (INVALID, 1)
            }
        }
        0xF0..=0xF4 => {
            let b1_ok = match b0 {
                0xF0 => (0x90..=0xBF).contains(&b1),
                0xF4 => (0x80..=0x8F).contains(&b1),
                _ => is_cont(b1),
            };
            if b1_ok && is_cont(b2) && is_cont(b3) {
                let cp = (u32::from(b0 & 0x07) << 18)
                    | (u32::from(b1 & 0x3F) << 12)
                    | (u32::from(b2 & 0x3F) << 6)
                    | u32::from(b3 & 0x3F);
                (cp, 4)
            } else {
                (INVALID, 1)
            }
        }
        _ => (INVALID, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes_of_known_characters() {
        assert_eq!(class_of('a' as u32), CharClass::Letter);
        assert_eq!(class_of('é' as u32), CharClass::Letter);
        assert_eq!(class_of('漢' as u32), CharClass::Letter);
        assert_eq!(class_of('7' as u32), CharClass::Number);
        assert_eq!(class_of('½' as u32), CharClass::Number);
        assert_eq!(class_of(0x1D7CE), CharClass::Number); // MATHEMATICAL BOLD DIGIT ZERO
        assert_eq!(class_of(0x20000), CharClass::Letter); // CJK extension B
        assert_eq!(class_of(' ' as u32), CharClass::Space);
        assert_eq!(class_of(0x3000), CharClass::Space);
        assert_eq!(class_of(0x85), CharClass::Space);
        assert_eq!(class_of('!' as u32), CharClass::Other);
        assert_eq!(class_of(0x1F600), CharClass::Other); // emoji
        assert_eq!(class_of(0x301), CharClass::Other); // combining acute accent (Mn)
        assert_eq!(class_of(INVALID), CharClass::Other);
    }

    proptest! {
        #[test]
        fn decoder_agrees_with_std(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut idx = 0;
            let mut chunks = bytes.utf8_chunks();
            let mut expected = Vec::new();
            for chunk in &mut chunks {
                expected.extend(chunk.valid().chars().map(|c| (c as u32, c.len_utf8())));
                expected.extend(std::iter::repeat_n((INVALID, 1), chunk.invalid().len()));
            }
            let mut got = Vec::new();
            while idx < bytes.len() {
                let (cp, len) = decode_at(&bytes, idx);
                got.push((cp, len));
                idx += len;
            }
            // std groups a truncated sequence into one invalid chunk; ours reports it byte by
            // byte, so compare after expanding std's chunks to single bytes (done above).
            prop_assert_eq!(got, expected);
        }
    }
}
