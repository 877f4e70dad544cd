//! Small valid datasets for the damaged-file tests and the fuzz harness, written by the crate's own writer.

#![allow(dead_code)]

use std::path::Path;

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::write_corpus;
use physlab_generators::tasks::QaConfig;
use physlab_generators::zipf::{Zipf, ZipfConfig};

/// bioS with questions: 130 people × 2 biographies in shards of 256 (two shards of `bio`, the second holding 4
/// documents), the truth table `people.jsonl`, and the question streams `qa_train` / `qa_test` with prompt files.
pub fn bios(dir: &Path) {
    let cfg = BioSConfig {
        people: 130,
        multi: 2,
        permute: true,
        shard_biographies: 256,
        qa: QaConfig {
            enabled: true,
            train_fraction: 0.5,
            mix_ratio: 0.2,
            ..QaConfig::default()
        },
        ..BioSConfig::default()
    };
    BioS::build(&cfg, 3).unwrap().write(dir, |_| {}).unwrap();
}

/// Zipf unigram text: 300 documents of 16 tokens over 64 words in shards of 256 (no truth table, no prompts).
pub fn zipf(dir: &Path) {
    let cfg = ZipfConfig {
        vocab: 64,
        exponent: 1.1,
        order: 0,
        documents: 300,
        doc_tokens: 16,
    };
    write_corpus(&Zipf::build(&cfg, 5).unwrap(), dir, 256, |_| {}).unwrap();
}

/// Every file of a folder, sorted by name.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Edits the manifest as JSON.
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Replaces `file` and sets the manifest's `key` to the new bytes' sha256 (a damage that a hash check misses).
pub fn replace_with_hash(dir: &Path, file: &str, bytes: &[u8], key: &str) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let h = sha256_hex(bytes);
    edit_manifest(dir, |m| m[key] = h.into());
}
