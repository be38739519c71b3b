//! Streaming text: UTF-8 characters split across tokens, and stop strings split across chunks.

use cascade_infer::{StopStrings, Utf8Stream};

#[test]
fn characters_split_across_chunks_are_held_until_complete() {
    let text = "aé日本🦀z";
    let mut stream = Utf8Stream::new();
    let mut chunks = Vec::new();
    for byte in text.as_bytes() {
        chunks.push(stream.push(&[*byte]));
    }
    chunks.push(stream.finish());
    assert_eq!(chunks.concat(), text);
    assert!(chunks.iter().all(|c| !c.contains(char::REPLACEMENT_CHARACTER)));
    // The crab's four bytes come out together, on the fourth.
    let crab = text.find('🦀').unwrap();
    assert_eq!(chunks[crab..crab + 4], ["", "", "", "🦀"]);
}

#[test]
fn invalid_bytes_become_replacement_characters_like_from_utf8_lossy() {
    let bytes: &[u8] = &[b'a', 0xFF, b'b', 0xE6, 0x97, b'c', 0xC3];
    let mut stream = Utf8Stream::new();
    let mut out: String = bytes.chunks(2).map(|c| stream.push(c)).collect();
    assert_eq!(stream.pending(), 1);
    out.push_str(&stream.finish());
    assert_eq!(out, String::from_utf8_lossy(bytes));
}

fn run(stops: &[&str], chunks: &[&str]) -> (Vec<String>, Option<usize>) {
    let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
    let mut matcher = StopStrings::new(&stops);
    let mut released = Vec::new();
    for chunk in chunks {
        let r = matcher.push(chunk);
        released.push(r.text);
        if r.stop.is_some() {
            return (released, r.stop);
        }
    }
    released.push(matcher.finish());
    (released, None)
}

#[test]
fn a_stop_string_spanning_chunks_is_never_released() {
    let (released, stop) = run(&["END"], &["foo E", "N", "D bar"]);
    assert_eq!(released, ["foo ", "", ""]);
    assert_eq!(stop, Some(0));
}

#[test]
fn held_text_is_released_once_it_cannot_start_a_stop_string() {
    let (released, stop) = run(&["END"], &["xE", "Nd", "!"]);
    assert_eq!(released, ["x", "ENd", "!", ""]);
    assert_eq!(stop, None);
    // Held back to the end of the text, then released.
    let (released, _) = run(&["END"], &["abcEN"]);
    assert_eq!(released, ["abc", "EN"]);
}

#[test]
fn the_earliest_of_several_stop_strings_wins() {
    let (released, stop) = run(&["\n\n", "User:"], &["Hi.\nUs", "er: yo\n\n"]);
    assert_eq!(released.concat(), "Hi.\n");
    assert_eq!(stop, Some(1));
    let (released, stop) = run(&["日本", "本"], &["é日", "本語"]);
    assert_eq!(released.concat(), "é");
    assert_eq!(stop, Some(0));
}
