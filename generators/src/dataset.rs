//! Writing a bioS dataset to disk: token shards, the ground-truth knowledge table, the vocabulary and a manifest
//! with counts measured from the data and the dataset's perfect-recall bits.
//!
//! Layout of a dataset folder:
//! ```text
//! manifest.json        counts, tokens per biography (measured), bits, file hashes
//! vocab.json           token id → word
//! people.jsonl         ground truth: one person a line, every attribute as text
//! train-00000.tok      u32 little-endian tokens of the biographies, concatenated, no separators
//! train-00000.idx      u64 little-endian document offsets into the .tok file (n_docs + 1 values)
//! ```
//! The trainer puts an `<eot>` token between biographies, so `tokens_per_biography` counts it.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bios::BioS;
use crate::error::GenError;
use crate::people::Attribute;
use crate::tokenizer::{Tokenizer, EOT};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    pub tokens_file: String,
    pub index_file: String,
    pub documents: usize,
    pub tokens: usize,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PoolSizes {
    pub first_names: usize,
    pub middle_names: usize,
    pub last_names: usize,
    pub birth_dates: usize,
    pub cities: usize,
    pub universities: usize,
    pub majors: usize,
    pub companies: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub kind: String,
    pub seed: u64,
    pub config: crate::bios::BioSConfig,
    pub people: usize,
    pub biographies: usize,
    /// Tokens of all biographies, plus one `<eot>` separator per biography.
    pub tokens: usize,
    /// Measured: `tokens / biographies` (separator included).
    pub tokens_per_biography: f64,
    pub vocab_size: usize,
    /// Distinct token ids that occur in the training data (with `<eot>`): the embedding rows counted for capacity.
    pub used_vocab: usize,
    pub pool_sizes: PoolSizes,
    pub templates_per_attribute: Vec<usize>,
    pub log2_n0: f64,
    pub log2_s0: f64,
    pub pronoun_in_text: bool,
    /// Bits a perfect model stores (Part 3.3 Def. 4.3, p1 = ln N, p2 = 0).
    pub perfect_recall_bits: f64,
    pub perfect_bits_per_person: f64,
    pub shards: Vec<ShardInfo>,
    pub vocab_sha256: String,
    pub people_sha256: String,
    /// sha256 over the hashes of every file: two datasets with the same hash hold the same bytes.
    pub dataset_hash: String,
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<String, GenError> {
    std::fs::write(path, bytes).map_err(|e| GenError::io(path, e))?;
    Ok(hex(Sha256::digest(bytes)))
}

/// Writes the dataset into `dir` (created if needed) and returns its manifest. `progress` is called with the
/// number of biographies written so far.
pub fn write_bios(
    data: &BioS,
    dir: &Path,
    mut progress: impl FnMut(usize),
) -> Result<Manifest, GenError> {
    std::fs::create_dir_all(dir).map_err(|e| GenError::io(dir, e))?;
    let vocab_json = serde_json::to_vec(&data.tokenizer.words).expect("vocab serialises");
    let vocab_sha256 = write_file(&dir.join("vocab.json"), &vocab_json)?;

    // Ground-truth knowledge table.
    let mut people = Vec::new();
    for (i, p) in data.people.iter().enumerate() {
        let mut row = serde_json::Map::new();
        row.insert("id".into(), i.into());
        row.insert("name".into(), p.full_name(&data.pools).into());
        row.insert("pronoun".into(), p.gender.pronoun().into());
        for a in Attribute::ALL {
            row.insert(a.name().into(), p.value(a, &data.pools).into());
        }
        serde_json::to_writer(&mut people, &row).expect("json");
        people.push(b'\n');
    }
    let people_sha256 = write_file(&dir.join("people.jsonl"), &people)?;

    let multi = data.config.multi;
    let total = data.n_biographies();
    let per_shard = data.config.shard_biographies;
    let mut used = vec![false; data.tokenizer.vocab_size()];
    used[EOT as usize] = true;
    let mut shards = Vec::new();
    let mut tokens_total = 0usize;
    for (k, start) in (0..total).step_by(per_shard).enumerate() {
        let end = (start + per_shard).min(total);
        // Biography b is entry b % multi of person b / multi; rendered in parallel, written in order.
        let docs: Vec<Vec<u32>> = (start..end)
            .into_par_iter()
            .map(|b| data.render(b / multi, b % multi).tokens)
            .collect();
        let tokens_file = format!("train-{k:05}.tok");
        let index_file = format!("train-{k:05}.idx");
        let tpath = dir.join(&tokens_file);
        let ipath = dir.join(&index_file);
        let mut hasher = Sha256::new();
        let f = std::fs::File::create(&tpath).map_err(|e| GenError::io(&tpath, e))?;
        let mut w = BufWriter::new(f);
        let mut offsets: Vec<u64> = Vec::with_capacity(docs.len() + 1);
        let mut off = 0u64;
        offsets.push(0);
        for d in &docs {
            for &t in d {
                used[t as usize] = true;
                let b = t.to_le_bytes();
                hasher.update(b);
                w.write_all(&b).map_err(|e| GenError::io(&tpath, e))?;
            }
            off += d.len() as u64;
            offsets.push(off);
        }
        w.flush().map_err(|e| GenError::io(&tpath, e))?;
        let idx: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        hasher.update(&idx);
        std::fs::write(&ipath, &idx).map_err(|e| GenError::io(&ipath, e))?;
        tokens_total += off as usize + docs.len();
        shards.push(ShardInfo {
            tokens_file,
            index_file,
            documents: docs.len(),
            tokens: off as usize,
            sha256: hex(hasher.finalize()),
        });
        progress(end);
    }

    let mut h = Sha256::new();
    h.update(&vocab_sha256);
    h.update(&people_sha256);
    shards.iter().for_each(|s| h.update(&s.sha256));
    let n = data.people.len();
    let pools = &data.pools;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind: "bioS".into(),
        seed: data.seed,
        config: data.config.clone(),
        people: n,
        biographies: total,
        tokens: tokens_total,
        tokens_per_biography: tokens_total as f64 / total as f64,
        vocab_size: data.tokenizer.vocab_size(),
        used_vocab: used.iter().filter(|&&u| u).count(),
        pool_sizes: PoolSizes {
            first_names: pools.first_names.len(),
            middle_names: pools.middle_names.len(),
            last_names: pools.last_names.len(),
            birth_dates: pools.n_birth_dates(),
            cities: pools.cities.len(),
            universities: pools.universities.len(),
            majors: pools.majors.len(),
            companies: pools.companies.len(),
        },
        templates_per_attribute: data.templates.by_attribute.iter().map(Vec::len).collect(),
        log2_n0: data.log2_n0(),
        log2_s0: data.log2_s0(),
        pronoun_in_text: data.pronoun_in_text(),
        perfect_recall_bits: data.perfect_recall_bits(),
        perfect_bits_per_person: data.perfect_recall_bits() / n as f64,
        shards,
        vocab_sha256,
        people_sha256,
        dataset_hash: hex(h.finalize()),
    };
    let mpath = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&mpath, json).map_err(|e| GenError::io(&mpath, e))?;
    Ok(manifest)
}

/// A dataset read back from disk: the manifest, the vocabulary and every biography's tokens.
pub struct TokenDataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
    /// All biographies' tokens, concatenated.
    pub tokens: Vec<u32>,
    /// Document offsets into `tokens` (documents + 1 values).
    pub offsets: Vec<usize>,
}

impl TokenDataset {
    pub fn open(dir: &Path) -> Result<Self, GenError> {
        let err = |msg: String| GenError::Dataset {
            path: dir.to_path_buf(),
            msg,
        };
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath).map_err(|e| GenError::io(&mpath, e))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| GenError::Dataset {
            path: mpath.clone(),
            msg: format!("bad manifest: {e}"),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(err(format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        let vpath = dir.join("vocab.json");
        let vtext = std::fs::read(&vpath).map_err(|e| GenError::io(&vpath, e))?;
        let words: Vec<String> = serde_json::from_slice(&vtext).map_err(|e| GenError::Dataset {
            path: vpath.clone(),
            msg: e.to_string(),
        })?;
        let tokenizer = Tokenizer::from_words(words);
        let mut tokens = Vec::with_capacity(manifest.tokens);
        let mut offsets = vec![0usize];
        for s in &manifest.shards {
            let tpath = dir.join(&s.tokens_file);
            let ipath = dir.join(&s.index_file);
            let tb = std::fs::read(&tpath).map_err(|e| GenError::io(&tpath, e))?;
            let ib = std::fs::read(&ipath).map_err(|e| GenError::io(&ipath, e))?;
            let mut h = Sha256::new();
            h.update(&tb);
            h.update(&ib);
            if hex(h.finalize()) != s.sha256 {
                return Err(err(format!(
                    "{} / {} do not match the manifest's sha256",
                    s.tokens_file, s.index_file
                )));
            }
            if tb.len() % 4 != 0 || ib.len() % 8 != 0 || ib.len() / 8 != s.documents + 1 {
                return Err(err(format!("{} has a malformed size", s.tokens_file)));
            }
            let base = tokens.len();
            tokens.extend(
                tb.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))),
            );
            let idx: Vec<usize> = ib
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as usize)
                .collect();
            offsets.extend(idx[1..].iter().map(|o| base + o));
        }
        if offsets.len() != manifest.biographies + 1 {
            return Err(err("document count differs from the manifest".into()));
        }
        Ok(TokenDataset {
            dir: dir.to_path_buf(),
            manifest,
            tokenizer,
            tokens,
            offsets,
        })
    }

    pub fn documents(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn document(&self, i: usize) -> &[u32] {
        &self.tokens[self.offsets[i]..self.offsets[i + 1]]
    }
}
