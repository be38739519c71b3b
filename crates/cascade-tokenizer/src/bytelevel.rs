//! GPT-2's byte-to-character map, used to spell byte tokens as printable strings in
//! HuggingFace `tokenizer.json` files (`Ġ` for a space, `Ċ` for a newline, ...).

use std::sync::OnceLock;

/// The printable character standing for each byte.
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut next_extra = 256u32;
        for byte in 0..=255u8 {
            let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            map[byte as usize] = if printable {
                char::from(byte)
            } else {
                let c = char::from_u32(next_extra).unwrap_or('\u{FFFD}');
                next_extra += 1;
                c
            };
        }
        map
    })
}

/// Spells `bytes` in the byte-level alphabet.
pub(crate) fn encode_str(bytes: &[u8]) -> String {
    let map = byte_to_char();
    bytes.iter().map(|&b| map[b as usize]).collect()
}

/// Reads a byte-level string back to bytes; `None` if a character is outside the alphabet.
pub(crate) fn decode_str(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| match c as u32 {
            // The inverse of the map above, without a table: printable bytes are themselves,
            // the others were numbered from U+0100 in byte order.
            cp @ (0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) => Some(cp as u8),
            cp @ 0x100..=0x143 => non_printable_bytes().get((cp - 0x100) as usize).copied(),
            _ => None,
        })
        .collect()
}

fn non_printable_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| (0..=255u8).filter(|b| !matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_spellings_and_inverse() {
        assert_eq!(encode_str(b" hello\n"), "\u{120}hello\u{10A}");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_str(&encode_str(&all)).unwrap(), all);
        assert_eq!(decode_str("<|x|>\u{2603}"), None);
    }
}
