//! Text normalization: `\n` line ends, control characters removed, Unicode NFC.
//!
//! Every document goes through this before any filter or hash, so two copies of a text that
//! differ only in line ends or composed/decomposed accents are exact duplicates. ASCII text
//! (most of any English corpus) takes a byte-level fast path and is returned untouched when
//! there is nothing to change.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use crate::report::NormalizeStats;

fn is_removed_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}'
}

/// Normalizes `text`; `stats` counts what changed.
pub fn normalize(text: String, stats: &mut NormalizeStats) -> String {
    if text.is_ascii() {
        let clean = text.bytes().all(|b| b >= 0x20 && b != 0x7f || b == b'\n' || b == b'\t');
        if clean {
            return text;
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            stats.line_ends_normalized += 1;
            out.push('\n');
        } else if is_removed_control(c) {
            stats.control_chars_removed += 1;
        } else {
            out.push(c);
        }
    }
    if out.is_ascii() || is_nfc_quick(out.chars()) == IsNormalized::Yes {
        return out;
    }
    let nfc: String = out.nfc().collect();
    if nfc != out {
        stats.docs_nfc_changed += 1;
    }
    nfc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_controls_and_nfc() {
        let mut stats = NormalizeStats::default();
        let text = "\u{feff}Cafe\u{301}\r\nline\rtwo\u{7}\tend\n".to_string();
        assert_eq!(normalize(text, &mut stats), "Caf\u{e9}\nline\ntwo\tend\n");
        assert_eq!(stats.line_ends_normalized, 2);
        assert_eq!(stats.control_chars_removed, 2);
        assert_eq!(stats.docs_nfc_changed, 1);
    }

    #[test]
    fn clean_ascii_is_untouched() {
        let mut stats = NormalizeStats::default();
        assert_eq!(normalize("To be,\n\tor not.".into(), &mut stats), "To be,\n\tor not.");
        assert_eq!(stats, NormalizeStats::default());
    }

    proptest::proptest! {
        #[test]
        fn normalization_is_idempotent_and_leaves_no_controls(text in "\\PC{0,40}[\r\n\t\u{0}-\u{1f}\u{301}\u{feff}]{0,5}\\PC{0,40}") {
            let mut stats = NormalizeStats::default();
            let once = normalize(text, &mut stats);
            let twice = normalize(once.clone(), &mut NormalizeStats::default());
            proptest::prop_assert_eq!(&once, &twice);
            proptest::prop_assert!(!once.contains('\r'));
            proptest::prop_assert!(once.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
        }
    }
}
