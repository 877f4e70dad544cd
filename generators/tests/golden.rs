//! Golden dataset hashes: one small dataset of every kind, pinned. A change that alters what a generator writes
//! (a template, a stream key, the sampling, the file format) shows here; when it is intended, run
//! `cargo test -p physlab-generators --test golden -- --nocapture`, check the change, and update the value.

use physlab_generators::biod::BioDConfig;
use physlab_generators::corpus::write_corpus;
use physlab_generators::zipf::{UniformConfig, ZipfConfig};
use physlab_generators::{BioSConfig, DataConfig};

fn hash(cfg: DataConfig, seed: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let corpus = cfg.build(seed).unwrap();
    write_corpus(corpus.as_ref(), dir.path(), 512, |_| {})
        .unwrap()
        .dataset_hash
}

#[test]
fn every_kind_writes_its_pinned_bytes() {
    let cases: Vec<(&str, DataConfig, &str)> = vec![
        (
            "bioS multi2+permute, 300 people",
            DataConfig::BioS(BioSConfig {
                people: 300,
                multi: 2,
                permute: true,
                ..BioSConfig::default()
            }),
            "682f6806fe6e40ed9921f149175932999c8419aec9b380cfcb99d41a0b5999d7",
        ),
        (
            "bioD(300, 3, 2, 50, 2, 100)",
            DataConfig::BioD(BioDConfig {
                people: 300,
                attributes: 3,
                chunks: 2,
                values: 50,
                value_tokens: 2,
                vocab: 100,
                ..BioDConfig::default()
            }),
            "aabc228f88a27e88af10881466d8f6359fb1cc72a7239e84703fa0dcc642a70f",
        ),
        (
            "zipf(V=512, s=1.1), 100 × 128",
            DataConfig::Zipf(ZipfConfig {
                vocab: 512,
                exponent: 1.1,
                order: 0,
                documents: 100,
                doc_tokens: 128,
            }),
            "b16f782d1a9c063c532e1dcefc0e9a296ac43d1f32734df97bf068a081aeb37a",
        ),
        (
            "markov order 2 (V=64, s=1.0), 100 × 128",
            DataConfig::Markov(ZipfConfig {
                vocab: 64,
                exponent: 1.0,
                order: 2,
                documents: 100,
                doc_tokens: 128,
            }),
            "b993b0cf9395f459089ad9475270cb778dbcd080ae1d54e6cdd4c8a86e9b5298",
        ),
        (
            "uniform 100 × 64 over 256",
            DataConfig::Uniform(UniformConfig {
                sequences: 100,
                length: 64,
                vocab: 256,
            }),
            "5ee88d5d9dd5cc89c99be446214f799d92ffc1ac4c034c81c75c44cb99bcd903",
        ),
    ];
    let mut changed = Vec::new();
    for (what, cfg, golden) in cases {
        let h = hash(cfg, 7);
        println!("{what}: {h}");
        if h != golden {
            changed.push(format!("{what}: {h} (pinned {golden})"));
        }
    }
    assert!(changed.is_empty(), "changed:\n{}", changed.join("\n"));
}
