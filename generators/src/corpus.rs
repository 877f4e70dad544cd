//! Every dataset of the lab is a [`Corpus`]: a closed vocabulary, one or more named *streams* of documents
//! (biographies, questions, tasks, token sequences), exact facts about its content (bits of knowledge, entropy
//! rate) and, where it has one, a ground-truth table. Document `i` of a stream is a pure function of the seed and
//! `i`, so the writer renders blocks of documents in parallel and out of order, and the bytes on disk are the
//! same whatever the thread count and whatever the shard size.
//!
//! Layout of a dataset folder (format 2):
//! ```text
//! manifest.json           kind, config, streams and shards, training mixture, exact facts, hashes
//! vocab.json              token id → word
//! <truth>.jsonl           the ground-truth table (people.jsonl for biographies), one row a line
//! <stream>-00000.tok      u32 little-endian tokens of the documents, concatenated, no separators
//! <stream>-00000.idx      u64 little-endian document offsets into the .tok file (documents + 1 values)
//! <stream>-00000.prompt   u32 little-endian prompt length per document (question streams only): the tokens
//!                         before the answer; the answer is the rest of the document
//! ```
//! Loaders put an `<eot>` token after every document, so `tokens_per_document` counts it.
//!
//! Integrity: documents are hashed in fixed blocks of [`BLOCK_DOCS`] (tokens, lengths and prompt lengths); a
//! shard's sha256 is the hash of its blocks' hashes and the dataset hash covers every block of every stream, so
//! it does not depend on the shard size. Reading a shard recomputes its blocks' hashes.
//!
//! Reading is safe on a damaged folder (issue 17): `Dataset::open` checks the manifest (version, counts that
//! agree and fit in a file size, file names inside the folder, weights), the vocabulary (sha256 and length) and
//! the truth table (sha256 and rows); every shard reader checks file sizes against the manifest before it
//! allocates and offsets against the shard before it slices; [`Dataset::verify`] checks every file. A damaged
//! file is a `GenError::Dataset` naming it, never a panic (`tests/damaged.rs`, fuzzed by `tests/fuzz.rs`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GenError;
use crate::rng::{stream, Permutation, Purpose};
use crate::tokenizer::{Tokenizer, EOT};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT_VERSION: u32 = 2;
/// Documents per hashed block; shard sizes are multiples of it.
pub const BLOCK_DOCS: usize = 256;
/// Documents of a stream generated on the fly that the writer renders to measure it (tokens per document, tokens
/// used): one pass over the people for bioS(N), a sample of a junk population.
pub const GENERATED_SAMPLE: u64 = 1 << 20;
/// Blocks rendered in parallel before they are written (bounds memory whatever the dataset's size).
const BLOCKS_PER_BATCH: usize = 128;

/// A stream of documents as a corpus declares it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamSpec {
    /// File prefix and the name mixtures refer to: `bio`, `qa_train`, `junk`…
    pub name: String,
    /// Number of documents (for a generated stream: the documents in one pass, its cycle).
    pub documents: u64,
    /// Question-like documents carry a prompt length (the answer follows the prompt).
    pub prompts: bool,
    /// Written to disk (false: rendered on the fly while training, e.g. a junk population of 100M people).
    pub materialized: bool,
    /// What the stream is, in one line (shown by `physlab inspect`).
    pub about: String,
}

/// A share of training windows drawn from one stream (each window holds documents of one stream only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MixEntry {
    pub stream: String,
    /// Share of training windows (the weights of a mixture sum to 1).
    pub weight: f64,
}

/// Measured facts about a stream, handed to [`Corpus::facts`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamSummary {
    pub name: String,
    pub documents: u64,
    /// Tokens of the documents, without separators.
    pub tokens: u64,
    /// `(tokens + documents) / documents`: the `<eot>` after each document counted. For a generated stream,
    /// measured on a sample of documents (see `sampled`).
    pub tokens_per_document: f64,
    /// Documents the measurement saw (all of them for a materialized stream).
    pub sampled: u64,
}

/// What one exposure of the corpus's knowledge is, in tokens of one stream: a budget of E exposures is
/// `E · tokens / weight(stream)` training tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Exposure {
    pub stream: String,
    pub tokens: f64,
    /// What one exposure means, in words.
    pub unit: String,
}

/// A dataset whose content is known exactly.
pub trait Corpus: Sync {
    /// `bioS`, `bioD`, `zipf`, `markov`, `uniform`.
    fn kind(&self) -> &'static str;
    fn seed(&self) -> u64;
    /// The config it was built from, as written to the manifest.
    fn config_json(&self) -> serde_json::Value;
    fn tokenizer(&self) -> &Tokenizer;
    fn streams(&self) -> Vec<StreamSpec>;
    /// Appends document `doc` of stream `stream` (an index into [`Corpus::streams`]) to `out` and returns its
    /// prompt length (0 for plain text). Must be a pure function of the seed, `stream` and `doc`.
    fn render(&self, stream: usize, doc: u64, out: &mut Vec<u32>) -> u32;
    /// The training mixture (default: all windows from the first stream).
    fn mixture(&self) -> Vec<MixEntry> {
        vec![MixEntry {
            stream: self.streams()[0].name.clone(),
            weight: 1.0,
        }]
    }
    /// One exposure, from the measured streams.
    fn exposure(&self, measured: &[StreamSummary]) -> Exposure;
    /// Exact facts about the content (bits of knowledge, entropy rate…), from the measured streams.
    fn facts(&self, measured: &[StreamSummary]) -> serde_json::Value;
    /// The ground-truth table's file name and row count, if the corpus has one.
    /// The person (row of the truth table) document `doc` of stream `stream` is about, where there is one: a
    /// biography's subject, a question's person. `None` for corpora without people.
    fn document_person(&self, _stream: usize, _doc: u64) -> Option<u64> {
        None
    }
    fn truth(&self) -> Option<(&'static str, u64)> {
        None
    }
    /// Appends row `row` of the ground-truth table as one JSON line (with its newline) to `out`.
    fn truth_row(&self, _row: u64, _out: &mut Vec<u8>) {}
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    pub tokens_file: String,
    pub index_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<String>,
    pub documents: u64,
    pub tokens: u64,
    /// sha256 over the sha256 of each block of [`BLOCK_DOCS`] documents in the shard.
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamInfo {
    pub name: String,
    pub about: String,
    pub documents: u64,
    pub tokens: u64,
    pub tokens_per_document: f64,
    pub prompts: bool,
    pub materialized: bool,
    /// Documents measured for `tokens_per_document` (all, when materialized).
    pub sampled: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub kind: String,
    pub seed: u64,
    pub config: serde_json::Value,
    pub vocab_size: usize,
    /// Distinct token ids in the streams of the training mixture, `<eot>` included: the embedding rows counted
    /// for capacity. For a stream generated on the fly, over its first [`GENERATED_SAMPLE`] documents.
    pub used_vocab: usize,
    pub streams: Vec<StreamInfo>,
    pub mixture: Vec<MixEntry>,
    pub exposure: Exposure,
    /// Exact facts about the content (kind-specific).
    pub facts: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_file: Option<String>,
    pub truth_rows: u64,
    pub truth_sha256: String,
    pub vocab_sha256: String,
    /// sha256 over the vocabulary, the truth table and every block of every stream: two datasets with the same
    /// hash hold the same bytes, whatever their shard sizes.
    pub dataset_hash: String,
}

impl Manifest {
    pub fn stream(&self, name: &str) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The streams' names, comma-separated (for messages).
    pub fn stream_names(&self) -> String {
        self.streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Training tokens for a budget of `exposures` (the exposure stream's share of the mixture counted).
    pub fn tokens_for_exposures(&self, exposures: f64) -> f64 {
        let total: f64 = self.mixture.iter().map(|m| m.weight).sum();
        let w = self
            .mixture
            .iter()
            .find(|m| m.stream == self.exposure.stream)
            .map(|m| m.weight / total)
            .unwrap_or(1.0);
        exposures * self.exposure.tokens / w
    }

    /// Exposures that `tokens` training tokens give.
    pub fn exposures_of_tokens(&self, tokens: f64) -> f64 {
        tokens / self.tokens_for_exposures(1.0)
    }

    /// A kind-specific fact as a number.
    pub fn fact(&self, key: &str) -> Option<f64> {
        self.facts.get(key).and_then(|v| v.as_f64())
    }
}

pub(crate) fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Hash of one block: its documents' tokens (as little-endian bytes), lengths and prompt lengths.
fn block_hash(token_bytes: &[u8], lens: &[u32], prompts: &[u32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token_bytes);
    let mut buf = Vec::with_capacity((lens.len() + prompts.len()) * 4);
    lens.iter()
        .chain(prompts)
        .for_each(|t| buf.extend_from_slice(&t.to_le_bytes()));
    h.update(&buf);
    h.finalize().into()
}

struct Block {
    /// The tokens as little-endian u32 bytes, as written.
    bytes: Vec<u8>,
    tokens: u64,
    lens: Vec<u32>,
    prompts: Vec<u32>,
    hash: [u8; 32],
    used: Vec<u64>,
}

fn render_block(
    c: &dyn Corpus,
    s: usize,
    start: u64,
    end: u64,
    vocab: usize,
    prompts: bool,
) -> Block {
    let mut tokens = Vec::with_capacity((end - start) as usize * 64);
    let mut lens = Vec::with_capacity((end - start) as usize);
    let mut pl = Vec::new();
    for d in start..end {
        let before = tokens.len();
        let p = c.render(s, d, &mut tokens);
        lens.push((tokens.len() - before) as u32);
        if prompts {
            pl.push(p);
        }
    }
    let mut used = vec![0u64; vocab.div_ceil(64)];
    let mut bytes = Vec::with_capacity(tokens.len() * 4);
    for &t in &tokens {
        used[t as usize / 64] |= 1 << (t % 64);
        bytes.extend_from_slice(&t.to_le_bytes());
    }
    let hash = block_hash(&bytes, &lens, &pl);
    Block {
        bytes,
        tokens: tokens.len() as u64,
        lens,
        prompts: pl,
        hash,
        used,
    }
}

/// Progress of a write, handed to the callback: documents done and to do, over all streams.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Where the shards of the stream being written go.
struct ShardWriter {
    dir: PathBuf,
    name: String,
    index: usize,
    prompts: bool,
    tok: Option<BufWriter<std::fs::File>>,
    offsets: Vec<u64>,
    prompt_lens: Vec<u32>,
    hasher: Sha256,
    docs: u64,
    shards: Vec<ShardInfo>,
}

impl ShardWriter {
    fn file(&self, ext: &str) -> String {
        format!("{}-{:05}.{ext}", self.name, self.index)
    }

    fn ensure_open(&mut self) -> Result<(), GenError> {
        if self.tok.is_none() {
            let p = self.dir.join(self.file("tok"));
            let f = std::fs::File::create(&p).map_err(|e| GenError::io(&p, e))?;
            self.tok = Some(BufWriter::with_capacity(1 << 20, f));
            self.offsets = vec![0];
            self.prompt_lens.clear();
            self.hasher = Sha256::new();
            self.docs = 0;
        }
        Ok(())
    }

    fn push(&mut self, b: &Block) -> Result<(), GenError> {
        self.ensure_open()?;
        if let Err(e) = self.tok.as_mut().expect("open").write_all(&b.bytes) {
            return Err(GenError::io(self.dir.join(self.file("tok")), e));
        }
        let mut off = *self.offsets.last().expect("starts at 0");
        for &l in &b.lens {
            off += l as u64;
            self.offsets.push(off);
        }
        self.prompt_lens.extend_from_slice(&b.prompts);
        self.hasher.update(b.hash);
        self.docs += b.lens.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), GenError> {
        let Some(mut tok) = self.tok.take() else {
            return Ok(());
        };
        let tokens_file = self.file("tok");
        let tp = self.dir.join(&tokens_file);
        tok.flush().map_err(|e| GenError::io(&tp, e))?;
        let index_file = self.file("idx");
        let ip = self.dir.join(&index_file);
        let idx: Vec<u8> = self.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        std::fs::write(&ip, idx).map_err(|e| GenError::io(&ip, e))?;
        let prompt_file = if self.prompts {
            let f = self.file("prompt");
            let pp = self.dir.join(&f);
            let bytes: Vec<u8> = self
                .prompt_lens
                .iter()
                .flat_map(|o| o.to_le_bytes())
                .collect();
            std::fs::write(&pp, bytes).map_err(|e| GenError::io(&pp, e))?;
            Some(f)
        } else {
            None
        };
        let hasher = std::mem::replace(&mut self.hasher, Sha256::new());
        self.shards.push(ShardInfo {
            tokens_file,
            index_file,
            prompt_file,
            documents: self.docs,
            tokens: *self.offsets.last().expect("starts at 0"),
            sha256: hex(hasher.finalize()),
        });
        self.index += 1;
        Ok(())
    }
}

/// Writes `corpus` into `dir` (created if needed): vocabulary, truth table, every materialized stream in shards of
/// `shard_documents` documents (a multiple of [`BLOCK_DOCS`]), and the manifest last. Memory stays bounded by
/// [`BLOCKS_PER_BATCH`] blocks whatever the size of the dataset. `progress` is called after each batch.
pub fn write_corpus(
    corpus: &dyn Corpus,
    dir: &Path,
    shard_documents: u64,
    mut progress: impl FnMut(Progress),
) -> Result<Manifest, GenError> {
    if shard_documents == 0 || !shard_documents.is_multiple_of(BLOCK_DOCS as u64) {
        return Err(GenError::Config(format!(
            "shard size {shard_documents} documents: must be a positive multiple of {BLOCK_DOCS}"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| GenError::io(dir, e))?;
    let tok = corpus.tokenizer();
    let vocab = tok.vocab_size();
    let vocab_json = serde_json::to_vec(&tok.words).expect("vocab serialises");
    let vpath = dir.join("vocab.json");
    std::fs::write(&vpath, &vocab_json).map_err(|e| GenError::io(&vpath, e))?;
    let vocab_sha256 = hex(Sha256::digest(&vocab_json));
    let mut dataset = Sha256::new();
    dataset.update(corpus.kind());
    dataset.update(&vocab_sha256);

    // Ground truth, in parallel chunks written in order.
    let (truth_file, truth_rows, truth_sha256) = match corpus.truth() {
        Some((name, rows)) => {
            let path = dir.join(name);
            let f = std::fs::File::create(&path).map_err(|e| GenError::io(&path, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let mut h = Sha256::new();
            let chunk = 4096u64;
            let chunks: Vec<u64> = (0..rows.div_ceil(chunk)).collect();
            // Format batch k+1 on the pool while batch k is hashed and written.
            let mut pending: Vec<Vec<u8>> = Vec::new();
            let mut batches = chunks.chunks(32);
            loop {
                let next = batches.next();
                let (texts, written) = rayon::join(
                    || {
                        next.map(|batch| {
                            batch
                                .par_iter()
                                .map(|&c| {
                                    let mut out = Vec::new();
                                    for r in c * chunk..((c + 1) * chunk).min(rows) {
                                        corpus.truth_row(r, &mut out);
                                    }
                                    out
                                })
                                .collect::<Vec<Vec<u8>>>()
                        })
                    },
                    || -> Result<(), GenError> {
                        for t in pending.drain(..) {
                            h.update(&t);
                            w.write_all(&t).map_err(|e| GenError::io(&path, e))?;
                        }
                        Ok(())
                    },
                );
                written?;
                match texts {
                    Some(t) => pending = t,
                    None => break,
                }
            }
            w.flush().map_err(|e| GenError::io(&path, e))?;
            (Some(name.to_string()), rows, hex(h.finalize()))
        }
        None => (None, 0, hex(Sha256::digest(b""))),
    };
    dataset.update(&truth_sha256);

    let specs = corpus.streams();
    let mixture = corpus.mixture();
    let total: u64 = specs
        .iter()
        .filter(|s| s.materialized)
        .map(|s| s.documents)
        .sum();
    let mut done = 0u64;
    let mut used = vec![0u64; vocab.div_ceil(64)];
    used[EOT as usize / 64] |= 1 << (EOT % 64);
    let mut infos = Vec::new();
    let mut summaries = Vec::new();
    for (s, spec) in specs.iter().enumerate() {
        validate_stream_name(&spec.name)?;
        let in_mixture = mixture.iter().any(|m| m.stream == spec.name);
        if !spec.materialized {
            // Measure tokens per document, and the tokens used, on the first pass (up to 2^20 documents).
            let sample = spec.documents.min(GENERATED_SAMPLE);
            let blocks: Vec<(u64, u64)> = (0..sample)
                .step_by(BLOCK_DOCS)
                .map(|a| (a, (a + BLOCK_DOCS as u64).min(sample)))
                .collect();
            let (tokens, seen) = blocks
                .par_iter()
                .map(|&(a, b)| {
                    let blk = render_block(corpus, s, a, b, vocab, false);
                    (blk.tokens, blk.used)
                })
                .reduce(
                    || (0, vec![0u64; vocab.div_ceil(64)]),
                    |(t1, mut u1), (t2, u2)| {
                        u1.iter_mut().zip(&u2).for_each(|(a, b)| *a |= b);
                        (t1 + t2, u1)
                    },
                );
            if in_mixture {
                used.iter_mut().zip(&seen).for_each(|(a, b)| *a |= b);
            }
            let tpd = (tokens + sample) as f64 / sample.max(1) as f64;
            summaries.push(StreamSummary {
                name: spec.name.clone(),
                documents: spec.documents,
                tokens: ((tpd - 1.0).max(0.0) * spec.documents as f64) as u64,
                tokens_per_document: tpd,
                sampled: sample,
            });
            dataset.update(spec.name.as_bytes());
            dataset.update(spec.documents.to_le_bytes());
            infos.push(StreamInfo {
                name: spec.name.clone(),
                about: spec.about.clone(),
                documents: spec.documents,
                tokens: 0,
                tokens_per_document: tpd,
                prompts: spec.prompts,
                materialized: false,
                sampled: sample,
                shards: Vec::new(),
            });
            continue;
        }
        let mut w = ShardWriter {
            dir: dir.to_path_buf(),
            name: spec.name.clone(),
            index: 0,
            prompts: spec.prompts,
            tok: None,
            offsets: Vec::new(),
            prompt_lens: Vec::new(),
            hasher: Sha256::new(),
            docs: 0,
            shards: Vec::new(),
        };
        dataset.update(spec.name.as_bytes());
        let mut tokens = 0u64;
        let blocks: Vec<(u64, u64)> = (0..spec.documents)
            .step_by(BLOCK_DOCS)
            .map(|a| (a, (a + BLOCK_DOCS as u64).min(spec.documents)))
            .collect();
        // Render batch k+1 on the pool while batch k is hashed into the dataset hash and written.
        let mut pending: Option<Vec<Block>> = None;
        let mut batches = blocks.chunks(BLOCKS_PER_BATCH);
        loop {
            let next = batches.next();
            let (rendered, written) = rayon::join(
                || {
                    next.map(|batch| {
                        batch
                            .par_iter()
                            .map(|&(a, b)| render_block(corpus, s, a, b, vocab, spec.prompts))
                            .collect::<Vec<Block>>()
                    })
                },
                || -> Result<u64, GenError> {
                    let mut n = 0;
                    for b in pending.take().unwrap_or_default() {
                        w.push(&b)?;
                        dataset.update(b.hash);
                        tokens += b.tokens;
                        n += b.lens.len() as u64;
                        if in_mixture {
                            for (u, x) in used.iter_mut().zip(&b.used) {
                                *u |= x;
                            }
                        }
                        if w.docs == shard_documents {
                            w.finish()?;
                        }
                    }
                    Ok(n)
                },
            );
            let n = written?;
            if n > 0 {
                done += n;
                progress(Progress { done, total });
            }
            match rendered {
                Some(r) => pending = Some(r),
                None => break,
            }
        }
        w.finish()?;
        let tpd = (tokens + spec.documents) as f64 / spec.documents.max(1) as f64;
        summaries.push(StreamSummary {
            name: spec.name.clone(),
            documents: spec.documents,
            tokens,
            tokens_per_document: tpd,
            sampled: spec.documents,
        });
        infos.push(StreamInfo {
            name: spec.name.clone(),
            about: spec.about.clone(),
            documents: spec.documents,
            tokens,
            tokens_per_document: tpd,
            prompts: spec.prompts,
            materialized: true,
            sampled: spec.documents,
            shards: w.shards,
        });
    }
    for m in &mixture {
        if !specs.iter().any(|s| s.name == m.stream) {
            return Err(GenError::Config(format!(
                "the training mixture names stream {:?}, which the dataset does not have",
                m.stream
            )));
        }
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind: corpus.kind().into(),
        seed: corpus.seed(),
        config: corpus.config_json(),
        vocab_size: vocab,
        used_vocab: used.iter().map(|u| u.count_ones() as usize).sum(),
        streams: infos,
        mixture,
        exposure: corpus.exposure(&summaries),
        facts: corpus.facts(&summaries),
        truth_file,
        truth_rows,
        truth_sha256,
        vocab_sha256,
        dataset_hash: hex(dataset.finalize()),
    };
    let mpath = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    // The manifest goes last, through a rename: a folder with a manifest is a complete dataset. Every file it
    // names is flushed to disk first, so a power cut cannot leave a manifest over files that never reached it.
    let mut files = vec!["vocab.json".to_string()];
    files.extend(manifest.truth_file.clone());
    for st in &manifest.streams {
        for sh in &st.shards {
            files.push(sh.tokens_file.clone());
            files.push(sh.index_file.clone());
            files.extend(sh.prompt_file.clone());
        }
    }
    for f in &files {
        let p = dir.join(f);
        crate::fsio::sync_file(&p).map_err(|e| GenError::io(&p, e))?;
    }
    crate::fsio::atomic_write(&mpath, &json).map_err(|e| GenError::io(&mpath, e))?;
    Ok(manifest)
}

fn validate_stream_name(name: &str) -> Result<(), GenError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(GenError::Config(format!(
            "stream name {name:?}: use letters, digits, `_` and `-`"
        )));
    }
    Ok(())
}

/// One stream read back from disk.
#[derive(Clone, Debug, Default)]
pub struct TokenStream {
    pub name: String,
    /// Every document's tokens, concatenated.
    pub tokens: Vec<u32>,
    /// Document offsets into `tokens` (documents + 1 values).
    pub offsets: Vec<usize>,
    /// Prompt length per document (question streams).
    pub prompts: Option<Vec<u32>>,
}

impl TokenStream {
    pub fn documents(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn document(&self, i: usize) -> &[u32] {
        &self.tokens[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The stream's first `k` documents (all of them when it has fewer), e.g. a fixed slice of a question
    /// stream to evaluate while training.
    pub fn head(&self, k: usize) -> TokenStream {
        let k = k.min(self.documents());
        let end = self.offsets[k];
        TokenStream {
            name: self.name.clone(),
            tokens: self.tokens[..end].to_vec(),
            offsets: self.offsets[..=k].to_vec(),
            prompts: self.prompts.as_ref().map(|p| p[..k].to_vec()),
        }
    }

    /// (prompt, answer) of a question document.
    pub fn question(&self, i: usize) -> Option<(&[u32], &[u32])> {
        let p = self.prompts.as_ref()?[i] as usize;
        Some(self.document(i).split_at(p))
    }
}

/// A document read by [`Dataset::peek`]: its tokens and, for a question, its prompt length.
pub type Peeked = (Vec<u32>, Option<u32>);

/// A dataset folder: the manifest and the vocabulary; streams load on demand, checked against their hashes.
///
/// Reading a damaged folder never panics and never allocates more than the files' real sizes: every reader checks
/// the manifest's counts against each other and against the files' lengths before it reads, and the offsets of
/// an index against its shard before it slices. A damaged file is a [`GenError::Dataset`] whose path is the file
/// and whose one-line message says what is wrong.
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
}

/// What [`Dataset::verify`] read and found intact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyReport {
    /// Files read and checked against the manifest (vocabulary, truth table, every shard file).
    pub files: usize,
    /// Shards whose sha256 matched.
    pub shards: usize,
    /// Documents and tokens in those shards.
    pub documents: u64,
    pub tokens: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// One shard read back and checked.
struct Shard {
    tokens: Vec<u32>,
    /// Document offsets into `tokens` (documents + 1 values, from 0 to `tokens.len()`, non-decreasing).
    offsets: Vec<usize>,
    /// Prompt length per document (empty for a stream without prompts).
    prompts: Vec<u32>,
    bytes: u64,
}

fn read_u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `s` on one line and at most about 300 characters: control characters escaped (a message may quote a file).
fn one_line(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() > 300 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The error for file `file` of the dataset in `dir`.
fn damaged(dir: &Path, file: &str, msg: impl AsRef<str>) -> GenError {
    GenError::Dataset {
        path: dir.join(file),
        msg: one_line(msg.as_ref()),
    }
}

/// A file name the manifest may refer to: one plain component of the folder (no separator, not hidden, not `..`),
/// and not the manifest itself.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name != MANIFEST
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Bytes of a shard's files by the manifest's counts: (tokens, index, prompts), `None` if they overflow.
fn shard_sizes(s: &ShardInfo, prompts: bool) -> Option<(u64, u64, u64)> {
    Some((
        s.tokens.checked_mul(4)?,
        s.documents.checked_add(1)?.checked_mul(8)?,
        if prompts {
            s.documents.checked_mul(4)?
        } else {
            0
        },
    ))
}

/// Every inconsistency of a manifest that a reader would trip on (counts that disagree, overflow or exceed what
/// an id can hold, file names outside the folder, weights that are not positive numbers), all of them.
fn manifest_problems(m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    if m.vocab_size == 0 || m.vocab_size as u64 > 1 << 32 {
        p.push(format!(
            "vocab_size {} (token ids are u32: 1 to 2^32)",
            m.vocab_size
        ));
    }
    if m.used_vocab > m.vocab_size {
        p.push(format!(
            "used_vocab {} exceeds vocab_size {}",
            m.used_vocab, m.vocab_size
        ));
    }
    for (what, h) in [
        ("vocab_sha256", &m.vocab_sha256),
        ("truth_sha256", &m.truth_sha256),
        ("dataset_hash", &m.dataset_hash),
    ] {
        if !is_sha256_hex(h) {
            p.push(format!("{what} {h:?} is not a sha256 in hex"));
        }
    }
    match &m.truth_file {
        Some(f) if !plain_file_name(f) || f == "vocab.json" => {
            p.push(format!("truth_file {f:?} is not a file name in the folder"))
        }
        None if m.truth_rows != 0 => {
            p.push(format!("truth_rows {} without a truth_file", m.truth_rows))
        }
        _ => {}
    }
    if m.streams.is_empty() {
        p.push("no streams".into());
    }
    let mut files: Vec<&str> = Vec::new();
    for (i, s) in m.streams.iter().enumerate() {
        let at = format!("stream {:?}", s.name);
        if validate_stream_name(&s.name).is_err() {
            p.push(format!(
                "{at}: not a stream name (letters, digits, `_`, `-`)"
            ));
        }
        if m.streams[..i].iter().any(|o| o.name == s.name) {
            p.push(format!("{at} appears twice"));
        }
        if !(s.tokens_per_document.is_finite() && s.tokens_per_document >= 0.0) {
            p.push(format!(
                "{at}: tokens_per_document {} is not a non-negative number",
                s.tokens_per_document
            ));
        }
        if !s.materialized {
            if !s.shards.is_empty() {
                p.push(format!("{at} is generated on the fly but lists shards"));
            }
            continue;
        }
        let (mut docs, mut tokens) = (Some(0u64), Some(0u64));
        for (k, sh) in s.shards.iter().enumerate() {
            let at = format!("{at}, shard {k}");
            docs = docs.and_then(|d| d.checked_add(sh.documents));
            tokens = tokens.and_then(|t| t.checked_add(sh.tokens));
            if sh.documents == 0 {
                p.push(format!("{at} has no documents"));
            }
            if shard_sizes(sh, s.prompts).is_none() {
                p.push(format!(
                    "{at}: {} documents, {} tokens overflow a file size",
                    sh.documents, sh.tokens
                ));
            }
            if !is_sha256_hex(&sh.sha256) {
                p.push(format!(
                    "{at}: sha256 {:?} is not a sha256 in hex",
                    sh.sha256
                ));
            }
            if sh.prompt_file.is_some() != s.prompts {
                p.push(format!(
                    "{at}: prompt_file {:?} but prompts = {}",
                    sh.prompt_file, s.prompts
                ));
            }
            for f in [
                Some(&sh.tokens_file),
                Some(&sh.index_file),
                sh.prompt_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                if !plain_file_name(f)
                    || f == "vocab.json"
                    || m.truth_file.as_deref() == Some(f.as_str())
                {
                    p.push(format!(
                        "{at}: {f:?} is not a shard file name in the folder"
                    ));
                } else if files.contains(&f.as_str()) {
                    p.push(format!("{at}: {f:?} is listed twice"));
                }
                files.push(f);
            }
        }
        if docs != Some(s.documents) {
            p.push(format!(
                "{at}: documents {} but its shards hold {}",
                s.documents,
                docs.map_or("more than 2^64".into(), |d| d.to_string())
            ));
        }
        if tokens != Some(s.tokens) {
            p.push(format!(
                "{at}: tokens {} but its shards hold {}",
                s.tokens,
                tokens.map_or("more than 2^64".into(), |t| t.to_string())
            ));
        }
    }
    if m.mixture.is_empty() {
        p.push("an empty training mixture".into());
    }
    for e in &m.mixture {
        if m.stream(&e.stream).is_none() {
            p.push(format!(
                "the mixture names stream {:?}, which is not listed",
                e.stream
            ));
        }
        if !(e.weight.is_finite() && e.weight > 0.0) {
            p.push(format!(
                "mixture weight {} of {:?} is not a positive number",
                e.weight, e.stream
            ));
        }
    }
    if m.stream(&m.exposure.stream).is_none() {
        p.push(format!(
            "the exposure counts stream {:?}, which is not listed",
            m.exposure.stream
        ));
    }
    if !(m.exposure.tokens.is_finite() && m.exposure.tokens >= 0.0) {
        p.push(format!(
            "exposure tokens {} is not a non-negative number",
            m.exposure.tokens
        ));
    }
    p
}

/// Reads `file` of `dir` whole, after checking that it holds exactly `expected` bytes (the size the manifest's
/// counts give): the allocation is bounded by both.
fn read_sized(dir: &Path, file: &str, expected: u64) -> Result<Vec<u8>, GenError> {
    use std::io::Read;
    let p = dir.join(file);
    let f = std::fs::File::open(&p).map_err(|e| GenError::io(&p, e))?;
    let len = f.metadata().map_err(|e| GenError::io(&p, e))?.len();
    if len != expected {
        return Err(damaged(
            dir,
            file,
            format!("{len} bytes; the manifest's counts make it {expected} (truncated or padded)"),
        ));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(expected as usize)
        .map_err(|_| damaged(dir, file, format!("{expected} bytes do not fit in memory")))?;
    f.take(expected)
        .read_to_end(&mut buf)
        .map_err(|e| GenError::io(&p, e))?;
    if buf.len() as u64 != expected {
        return Err(damaged(
            dir,
            file,
            format!(
                "{} bytes read, {expected} expected (changed while read)",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

/// The sha256 and the line count of a file, read in pieces (whatever its size).
fn hash_lines(path: &Path) -> Result<(String, u64, u64), GenError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| GenError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GenError::io(path, e)),
        };
        h.update(&buf[..n]);
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += n as u64;
    }
    Ok((hex(h.finalize()), lines, bytes))
}

impl Dataset {
    /// Opens a dataset folder: reads the manifest and checks it (format version, counts, names, numbers), the
    /// vocabulary (sha256 and length against the manifest's `vocab_size`) and the truth table (sha256 and rows;
    /// read in pieces, it is small next to the shards). Shards are checked when read.
    pub fn open(dir: &Path) -> Result<Self, GenError> {
        let bad = |file: &str, msg: String| damaged(dir, file, msg);
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath).map_err(|e| GenError::io(&mpath, e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(MANIFEST, format!("not JSON: {e}")))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        match version {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(bad(
                    MANIFEST,
                    format!(
                        "format_version {v} is newer than this build reads ({FORMAT_VERSION}): update physlab"
                    ),
                ))
            }
            _ => {
                return Err(bad(
                    MANIFEST,
                    format!(
                        "format_version {}; this build reads {FORMAT_VERSION}: generate the dataset again",
                        value
                            .get("format_version")
                            .map_or("missing".into(), |v| v.to_string())
                    ),
                ))
            }
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| bad(MANIFEST, format!("bad manifest: {e}")))?;
        let problems = manifest_problems(&manifest);
        if !problems.is_empty() {
            return Err(bad(MANIFEST, problems.join("; ")));
        }
        let tokenizer = Self::check_vocab(dir, &manifest)?.1;
        Self::check_truth(dir, &manifest)?;
        Ok(Dataset {
            dir: dir.to_path_buf(),
            manifest,
            tokenizer,
        })
    }

    /// vocab.json against the manifest: its sha256, that it is a list of words, and its length. Returns the bytes
    /// read and the tokenizer.
    fn check_vocab(dir: &Path, m: &Manifest) -> Result<(u64, Tokenizer), GenError> {
        let file = "vocab.json";
        let vpath = dir.join(file);
        let vtext = std::fs::read(&vpath).map_err(|e| GenError::io(&vpath, e))?;
        if hex(Sha256::digest(&vtext)) != m.vocab_sha256 {
            return Err(damaged(
                dir,
                file,
                "does not match the manifest's vocab_sha256",
            ));
        }
        let words: Vec<String> = serde_json::from_slice(&vtext)
            .map_err(|e| damaged(dir, file, format!("not a list of words: {e}")))?;
        if words.len() != m.vocab_size {
            return Err(damaged(
                dir,
                file,
                format!(
                    "{} words; the manifest's vocab_size is {}: token ids would decode to the wrong words",
                    words.len(),
                    m.vocab_size
                ),
            ));
        }
        Ok((vtext.len() as u64, Tokenizer::from_words(words)))
    }

    /// The truth table against the manifest: its sha256 and its row count (one row a line). Returns the bytes
    /// read.
    fn check_truth(dir: &Path, m: &Manifest) -> Result<u64, GenError> {
        let Some(file) = &m.truth_file else {
            if m.truth_sha256 != hex(Sha256::digest(b"")) {
                return Err(damaged(
                    dir,
                    MANIFEST,
                    "a truth_sha256 without a truth_file",
                ));
            }
            return Ok(0);
        };
        let (sha, lines, bytes) = hash_lines(&dir.join(file))?;
        if sha != m.truth_sha256 {
            return Err(damaged(
                dir,
                file,
                "does not match the manifest's truth_sha256",
            ));
        }
        if lines != m.truth_rows {
            return Err(damaged(
                dir,
                file,
                format!(
                    "{lines} rows; the manifest's truth_rows is {}",
                    m.truth_rows
                ),
            ));
        }
        Ok(bytes)
    }

    /// The stream `name` if it is stored on disk.
    fn stored(&self, name: &str) -> Result<&StreamInfo, GenError> {
        let info = self.manifest.stream(name).ok_or_else(|| {
            damaged(
                &self.dir,
                MANIFEST,
                format!(
                    "no stream {name:?}; it has {}",
                    self.manifest.stream_names()
                ),
            )
        })?;
        if !info.materialized {
            return Err(damaged(
                &self.dir,
                MANIFEST,
                format!("stream {name:?} is generated on the fly, not stored"),
            ));
        }
        Ok(info)
    }

    /// Reads shard `s` of stream `info` and checks it: file sizes against the manifest's counts, offsets (from 0,
    /// non-decreasing, ending at the shard's last token), the blocks' hashes against the shard's sha256, then
    /// token ids against the vocabulary and prompt lengths against their documents.
    fn read_shard(&self, info: &StreamInfo, s: &ShardInfo) -> Result<Shard, GenError> {
        let dir = &self.dir;
        let (tsize, isize_, psize) = shard_sizes(s, info.prompts).ok_or_else(|| {
            damaged(
                dir,
                MANIFEST,
                format!("{}: counts overflow a file size", s.tokens_file),
            )
        })?;
        let prompt_file = match (&s.prompt_file, info.prompts) {
            (Some(f), true) => Some(f.as_str()),
            (None, false) => None,
            _ => {
                return Err(damaged(
                    dir,
                    MANIFEST,
                    format!("{}: prompt_file disagrees with prompts", s.tokens_file),
                ))
            }
        };
        // The index first: it is the smallest, and a damaged one is the likeliest.
        let ib = read_sized(dir, &s.index_file, isize_)?;
        let tb = read_sized(dir, &s.tokens_file, tsize)?;
        let prompts = match prompt_file {
            Some(f) => read_u32s(&read_sized(dir, f, psize)?),
            None => Vec::new(),
        };
        let bytes = (ib.len() + tb.len() + prompts.len() * 4) as u64;
        let n = s.documents as usize;
        let total = tb.len() / 4;
        let mut offsets = Vec::with_capacity(n + 1);
        for (i, c) in ib.chunks_exact(8).enumerate() {
            let o = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let prev = offsets.last().copied().unwrap_or(0);
            let ok = if i == 0 {
                o == 0
            } else {
                o >= prev as u64 && o <= total as u64 && (i < n || o == total as u64)
            };
            if !ok {
                return Err(damaged(
                    dir,
                    &s.index_file,
                    format!(
                        "offset {i} is {o}: offsets must rise from 0 to the {total} tokens of {}",
                        s.tokens_file
                    ),
                ));
            }
            offsets.push(o as usize);
        }
        let lens_fit = offsets
            .windows(2)
            .all(|w| u32::try_from(w[1] - w[0]).is_ok());
        if !lens_fit {
            return Err(damaged(dir, &s.index_file, "a document over 2^32 tokens"));
        }
        let hashes: Vec<[u8; 32]> = (0..n)
            .step_by(BLOCK_DOCS)
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&a| {
                let b = (a + BLOCK_DOCS).min(n);
                let lens: Vec<u32> = (a..b)
                    .map(|i| (offsets[i + 1] - offsets[i]) as u32)
                    .collect();
                let p = if info.prompts {
                    &prompts[a..b]
                } else {
                    &[][..]
                };
                block_hash(&tb[offsets[a] * 4..offsets[b] * 4], &lens, p)
            })
            .collect();
        let mut h = Sha256::new();
        hashes.iter().for_each(|x| h.update(x));
        if hex(h.finalize()) != s.sha256 {
            let files = [
                Some(&s.tokens_file),
                Some(&s.index_file),
                s.prompt_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ");
            return Err(damaged(
                dir,
                &s.tokens_file,
                format!("{files} do not match the manifest's sha256"),
            ));
        }
        drop(ib);
        let tokens = read_u32s(&tb);
        drop(tb);
        let vocab = self.manifest.vocab_size as u64;
        if let Some(t) = tokens.iter().find(|&&t| t as u64 >= vocab) {
            return Err(damaged(
                dir,
                &s.tokens_file,
                format!("token id {t} outside the vocabulary of {vocab}"),
            ));
        }
        if let Some(i) =
            (0..prompts.len()).find(|&i| prompts[i] as usize > offsets[i + 1] - offsets[i])
        {
            return Err(damaged(
                dir,
                prompt_file.unwrap_or(&s.index_file),
                format!(
                    "document {i}: a prompt of {} tokens in a document of {}",
                    prompts[i],
                    offsets[i + 1] - offsets[i]
                ),
            ));
        }
        Ok(Shard {
            tokens,
            offsets,
            prompts,
            bytes,
        })
    }

    /// Loads a materialized stream, checking every block against the manifest.
    pub fn load(&self, name: &str) -> Result<TokenStream, GenError> {
        self.load_shards(name, usize::MAX)
    }

    /// The first `k` documents of a stored stream, as (tokens, prompt length), checked: the manifest records one
    /// sha256 per shard (over its blocks' hashes), so checking the blocks shown means reading and hashing the
    /// stream's first shard whole (at most the shard size, `shard_documents`, however large the stream). A stream
    /// that is missing or generated on the fly gives no documents. [`Dataset::verify`] checks every file.
    pub fn peek(&self, name: &str, k: usize) -> Result<Vec<Peeked>, GenError> {
        let Some(info) = self.manifest.stream(name).filter(|s| s.materialized) else {
            return Ok(Vec::new());
        };
        let Some(s) = info.shards.first() else {
            return Ok(Vec::new());
        };
        let shard = self.read_shard(info, s)?;
        let k = k.min(shard.offsets.len() - 1);
        Ok((0..k)
            .map(|i| {
                (
                    shard.tokens[shard.offsets[i]..shard.offsets[i + 1]].to_vec(),
                    info.prompts.then(|| shard.prompts[i]),
                )
            })
            .collect())
    }

    /// Loads the first `shards` shards of a stream (all of them: [`Dataset::load`]), checked.
    pub fn load_shards(&self, name: &str, shards: usize) -> Result<TokenStream, GenError> {
        let info = self.stored(name)?;
        let chosen = &info.shards[..shards.min(info.shards.len())];
        // Size the stream from the files' real lengths (checked against the manifest), not from its counts.
        let mut capacity = 0u64;
        for s in chosen {
            let p = self.dir.join(&s.tokens_file);
            let len = std::fs::metadata(&p)
                .map_err(|e| GenError::io(&p, e))?
                .len();
            if Some(len) != s.tokens.checked_mul(4) {
                return Err(damaged(
                    &self.dir,
                    &s.tokens_file,
                    format!(
                        "{len} bytes; the manifest's {} tokens make it {}",
                        s.tokens,
                        s.tokens.saturating_mul(4)
                    ),
                ));
            }
            capacity += s.tokens;
        }
        let mut out = TokenStream {
            name: name.into(),
            tokens: Vec::new(),
            offsets: vec![0],
            prompts: info.prompts.then(Vec::new),
        };
        out.tokens
            .try_reserve_exact(capacity as usize)
            .map_err(|_| {
                damaged(
                    &self.dir,
                    MANIFEST,
                    format!("stream {name:?}: {capacity} tokens do not fit in memory"),
                )
            })?;
        for s in chosen {
            let shard = self.read_shard(info, s)?;
            let base = out.tokens.len();
            out.tokens.extend_from_slice(&shard.tokens);
            out.offsets
                .extend(shard.offsets[1..].iter().map(|o| base + o));
            if let Some(p) = out.prompts.as_mut() {
                p.extend_from_slice(&shard.prompts);
            }
        }
        if chosen.len() == info.shards.len() && out.documents() as u64 != info.documents {
            return Err(damaged(
                &self.dir,
                MANIFEST,
                format!(
                    "stream {name:?}: {} documents on disk, {} in the manifest",
                    out.documents(),
                    info.documents
                ),
            ));
        }
        Ok(out)
    }

    /// Checks every file of the dataset against the manifest: the manifest's own consistency, the vocabulary
    /// (sha256, length), the truth table (sha256, rows) and every shard of every stored stream (sizes, offsets,
    /// blocks against the shard's sha256, token ids, prompt lengths), one shard in memory at a time. Every file is
    /// checked even after a damaged one; the error names each damaged file, on one line. For `physlab inspect`,
    /// and before trusting a copied or old dataset.
    pub fn verify(&self) -> Result<VerifyReport, GenError> {
        let mut report = VerifyReport::default();
        let mut problems: Vec<GenError> = manifest_problems(&self.manifest)
            .into_iter()
            .map(|p| damaged(&self.dir, MANIFEST, p))
            .collect();
        if problems.is_empty() {
            match Self::check_vocab(&self.dir, &self.manifest) {
                Ok((bytes, _)) => {
                    report.files += 1;
                    report.bytes += bytes;
                }
                Err(e) => problems.push(e),
            }
            match Self::check_truth(&self.dir, &self.manifest) {
                Ok(bytes) => {
                    report.files += usize::from(self.manifest.truth_file.is_some());
                    report.bytes += bytes;
                }
                Err(e) => problems.push(e),
            }
            for info in self.manifest.streams.iter().filter(|s| s.materialized) {
                for s in &info.shards {
                    match self.read_shard(info, s) {
                        Ok(shard) => {
                            report.files += 2 + usize::from(info.prompts);
                            report.shards += 1;
                            report.documents += s.documents;
                            report.tokens += shard.tokens.len() as u64;
                            report.bytes += shard.bytes;
                        }
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
        match problems.len() {
            0 => Ok(report),
            1 => Err(problems.remove(0)),
            n => Err(GenError::Dataset {
                path: self.dir.clone(),
                msg: format!(
                    "{n} damaged files: {}",
                    problems
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
        }
    }
}

/// Where a window's documents come from.
pub trait DocSource: Sync {
    /// Documents in one pass (the shuffle cycle).
    fn cycle(&self) -> u64;
    /// Appends document `pass · cycle + i` (`i < cycle`) to `out` and returns its prompt length (0 for plain
    /// text): a stored stream ignores `pass`, a generated one renders a fresh emission.
    fn doc(&self, pass: u64, i: u64, out: &mut Vec<u32>) -> u32;
}

impl DocSource for TokenStream {
    fn cycle(&self) -> u64 {
        self.documents() as u64
    }
    fn doc(&self, _pass: u64, i: u64, out: &mut Vec<u32>) -> u32 {
        out.extend_from_slice(self.document(i as usize));
        self.prompts.as_ref().map_or(0, |p| p[i as usize])
    }
}

/// A stream of a corpus rendered on the fly (a junk population, fresh biographies): document `pass · cycle + i`.
pub struct Generated<'a> {
    pub corpus: &'a dyn Corpus,
    pub stream: usize,
    pub cycle: u64,
}

impl DocSource for Generated<'_> {
    fn cycle(&self) -> u64 {
        self.cycle
    }
    fn doc(&self, pass: u64, i: u64, out: &mut Vec<u32>) -> u32 {
        self.corpus.render(self.stream, pass * self.cycle + i, out)
    }
}

/// Reads one source in a fresh shuffled order each pass (a keyed permutation, so no order table is held),
/// documents followed by `<eot>`, cut into windows.
///
/// - **Stream** windows (the default): the documents run on from one window into the next, and consecutive
///   windows of one source overlap by one token, so every token is a target exactly once per pass; a window can
///   open in the middle of a document.
/// - **Aligned** windows ([`SourceCursor::set_aligned`]; the paper's "each window opens with a biography"):
///   every window is `<eot>` and then whole documents, each followed by `<eot>`, as many as fit; the document that
///   does not fit opens the next window, and the rest of the window is padding (`<eot>` tokens that are no
///   target: see [`SourceCursor::next_window_flags`]). Every document is seen whole, once per pass, its first
///   token predicted from `<eot>` as in stream windows. A document longer than the window is cut at the window's
///   end (counted in `docs_cut`).
pub struct SourceCursor<'a> {
    source: &'a dyn DocSource,
    seed: u64,
    salt: u64,
    pub pass: u64,
    pub next: u64,
    perm: Permutation,
    buffer: Vec<u32>,
    /// Per buffered token: false for a question's prompt tokens (not a target when training on answers).
    counted: Vec<bool>,
    aligned: bool,
    /// Aligned windows: documents placed whole, and documents cut because they were longer than a window.
    pub docs_whole: u64,
    pub docs_cut: u64,
}

impl<'a> SourceCursor<'a> {
    pub fn new(source: &'a dyn DocSource, seed: u64, salt: u64) -> Self {
        let perm = Permutation::new(seed, Purpose::DataOrder, salt << 40, source.cycle().max(1));
        SourceCursor {
            source,
            seed,
            salt,
            pass: 0,
            next: 0,
            perm,
            buffer: Vec::new(),
            counted: Vec::new(),
            aligned: false,
            docs_whole: 0,
            docs_cut: 0,
        }
    }

    /// Aligned windows (see the type's documentation) instead of stream windows. Set before the first window.
    pub fn set_aligned(&mut self, aligned: bool) {
        self.aligned = aligned;
    }

    pub fn next_window(&mut self, len: usize) -> Vec<u32> {
        self.next_window_counted(len).0
    }

    /// Appends the next document of the shuffled order, and its `<eot>`, to the buffer.
    fn pull(&mut self) {
        if self.next == self.source.cycle() {
            self.pass += 1;
            self.next = 0;
            self.perm = Permutation::new(
                self.seed,
                Purpose::DataOrder,
                (self.salt << 40) | self.pass,
                self.source.cycle(),
            );
        }
        let d = self.perm.apply(self.next);
        self.next += 1;
        let start = self.buffer.len();
        let prompt = self.source.doc(self.pass, d, &mut self.buffer) as usize;
        self.buffer.push(EOT);
        let n = self.buffer.len() - start;
        self.counted.extend((0..n).map(|k| k >= prompt.min(n)));
    }

    /// The next window and, per token, whether it counts as a target when training on answers only (prompt
    /// tokens of questions do not; answers, plain text and the `<eot>` after a document do). Padding counts as
    /// no target.
    pub fn next_window_counted(&mut self, len: usize) -> (Vec<u32>, Vec<bool>) {
        let (w, c, real) = self.next_window_flags(len);
        let c = c.iter().zip(&real).map(|(&c, &r)| c && r).collect();
        (w, c)
    }

    /// The next window with two flags per token: whether it counts when training on answers only (as in
    /// [`Self::next_window_counted`]), and whether it is text rather than an aligned window's padding (always
    /// true for stream windows). A padding token is never a target, whatever the loss counts.
    pub fn next_window_flags(&mut self, len: usize) -> (Vec<u32>, Vec<bool>, Vec<bool>) {
        if !self.aligned {
            while self.buffer.len() < len {
                self.pull();
            }
            let w = self.buffer[..len].to_vec();
            let c = self.counted[..len].to_vec();
            self.buffer.drain(..len - 1);
            self.counted.drain(..len - 1);
            return (w, c, vec![true; len]);
        }
        // Aligned: `<eot>`, then whole documents while they fit; the buffer holds at most the one pending document.
        let mut w = Vec::with_capacity(len);
        let mut c = Vec::with_capacity(len);
        w.push(EOT);
        c.push(true);
        loop {
            if self.buffer.is_empty() {
                self.pull();
            }
            let n = self.buffer.len();
            if w.len() + n <= len {
                w.append(&mut self.buffer);
                c.append(&mut self.counted);
                self.docs_whole += 1;
                continue;
            }
            if w.len() == 1 {
                // Longer than a window on its own: its head fills this window and the rest is dropped.
                let take = len - 1;
                w.extend_from_slice(&self.buffer[..take]);
                c.extend_from_slice(&self.counted[..take]);
                self.buffer.clear();
                self.counted.clear();
                self.docs_cut += 1;
            }
            break;
        }
        let real = w.len();
        w.resize(len, EOT);
        c.resize(len, false);
        let r = (0..len).map(|i| i < real).collect();
        (w, c, r)
    }
}

/// How aligned windows ([`SourceCursor::set_aligned`]) of `len` tokens pack `source`, measured over its first
/// `max_documents` documents (or its whole first pass, if shorter) in the order cursor `salt` of a mixer seeded
/// `seed` reads them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlignedPacking {
    /// Windows drawn until the documents measured were all placed.
    pub windows: u64,
    /// Documents placed (whole or cut).
    pub documents: u64,
    /// Their targets: each document's tokens and its `<eot>` (a cut document's tokens in its window).
    pub text_targets: u64,
    /// Documents cut for being longer than a window.
    pub cut: u64,
}

impl AlignedPacking {
    /// Window targets (`len − 1` a window, padding included) per text target: what aligned windows cost over
    /// stream windows for the same text.
    pub fn overhead(&self, len: usize) -> f64 {
        (self.windows * (len as u64 - 1)) as f64 / self.text_targets.max(1) as f64
    }
}

/// Packs the first documents of `source` into aligned windows to measure [`AlignedPacking`].
pub fn aligned_packing(
    source: &dyn DocSource,
    seed: u64,
    salt: u64,
    len: usize,
    max_documents: u64,
) -> AlignedPacking {
    let mut cur = SourceCursor::new(source, seed, salt);
    cur.set_aligned(true);
    let n = source.cycle().min(max_documents);
    let mut p = AlignedPacking {
        windows: 0,
        documents: 0,
        text_targets: 0,
        cut: 0,
    };
    while cur.docs_whole + cur.docs_cut < n {
        let (_, _, real) = cur.next_window_flags(len);
        p.windows += 1;
        p.text_targets += real[1..].iter().filter(|&&r| r).count() as u64;
    }
    p.documents = cur.docs_whole + cur.docs_cut;
    p.cut = cur.docs_cut;
    p
}

/// Training windows from a mixture of sources: each window comes whole from one source, chosen at random with
/// the mixture's weights (the `Mixture` stream), so a QA ratio or a junk share is a share of windows and of
/// tokens.
pub struct WindowMixer<'a> {
    cursors: Vec<SourceCursor<'a>>,
    cumulative: Vec<f64>,
    rng: rand_chacha::ChaCha8Rng,
    /// Windows handed out so far, and per source.
    pub windows: u64,
    pub per_source: Vec<u64>,
}

impl<'a> WindowMixer<'a> {
    /// `sources` with their weights (need not sum to 1; each must be positive).
    pub fn new(sources: Vec<(&'a dyn DocSource, f64)>, seed: u64) -> Result<Self, GenError> {
        if sources.is_empty() {
            return Err(GenError::Config("an empty training mixture".into()));
        }
        let total: f64 = sources.iter().map(|s| s.1).sum();
        if sources
            .iter()
            .any(|s| s.1 <= 0.0 || s.1.is_nan() || s.0.cycle() == 0)
            || !total.is_finite()
        {
            return Err(GenError::Config(
                "mixture weights must be positive and finite, and every source non-empty".into(),
            ));
        }
        let mut acc = 0.0;
        let cumulative = sources
            .iter()
            .map(|s| {
                acc += s.1 / total;
                acc
            })
            .collect();
        let n = sources.len();
        Ok(WindowMixer {
            cursors: sources
                .into_iter()
                .enumerate()
                .map(|(i, (s, _))| SourceCursor::new(s, seed, i as u64))
                .collect(),
            cumulative,
            rng: stream(seed, Purpose::Mixture, 0),
            windows: 0,
            per_source: vec![0; n],
        })
    }

    /// Aligned windows for every source (see [`SourceCursor`]). Set before the first window.
    pub fn set_aligned(&mut self, aligned: bool) {
        for c in &mut self.cursors {
            c.set_aligned(aligned);
        }
    }

    /// Documents cut so far for being longer than an aligned window, over every source.
    pub fn documents_cut(&self) -> u64 {
        self.cursors.iter().map(|c| c.docs_cut).sum()
    }

    pub fn next_window(&mut self, len: usize) -> Vec<u32> {
        self.next_window_counted(len).0
    }

    /// The next window with its per-token target flags (see [`SourceCursor::next_window_counted`]).
    pub fn next_window_counted(&mut self, len: usize) -> (Vec<u32>, Vec<bool>) {
        let (w, c, r) = self.next_window_flags(len);
        let c = c.iter().zip(&r).map(|(&c, &r)| c && r).collect();
        (w, c)
    }

    /// The next window with both of its per-token flags (see [`SourceCursor::next_window_flags`]).
    pub fn next_window_flags(&mut self, len: usize) -> (Vec<u32>, Vec<bool>, Vec<bool>) {
        let k = if self.cursors.len() == 1 {
            0
        } else {
            let u: f64 = self.rng.random();
            self.cumulative
                .iter()
                .position(|&c| u < c)
                .unwrap_or(self.cursors.len() - 1)
        };
        self.windows += 1;
        self.per_source[k] += 1;
        self.cursors[k].next_window_flags(len)
    }

    /// Draws and drops `windows` windows of `len` tokens: a resumed run replays its data cursor this way and then
    /// sees exactly the windows the uninterrupted run would have seen.
    pub fn fast_forward(&mut self, windows: u64, len: usize) {
        for _ in 0..windows {
            self.next_window(len);
        }
    }

    /// A batch as (inputs, targets), each `batch × context`, row-major.
    pub fn next_batch(&mut self, batch: usize, context: usize) -> (Vec<i32>, Vec<i32>) {
        let (x, y, _) = self.next_batch_masked(batch, context);
        (x, y)
    }

    /// A batch as (inputs, targets, target weights): a weight is 0 for a target inside a question's prompt or in
    /// an aligned window's padding and 1 otherwise (answers, plain text, `<eot>`), for training on answers only.
    pub fn next_batch_masked(
        &mut self,
        batch: usize,
        context: usize,
    ) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
        self.next_batch_weighted(batch, context, true)
    }

    /// A batch as (inputs, targets, target weights). A weight is 0 for an aligned window's padding, and, with
    /// `answers_only`, for a target inside a question's prompt; 1 otherwise. Stream windows without
    /// `answers_only` weigh every target 1.
    pub fn next_batch_weighted(
        &mut self,
        batch: usize,
        context: usize,
        answers_only: bool,
    ) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
        let mut x = Vec::with_capacity(batch * context);
        let mut y = Vec::with_capacity(batch * context);
        let mut m = Vec::with_capacity(batch * context);
        for _ in 0..batch {
            let (w, c, r) = self.next_window_flags(context + 1);
            x.extend(w[..context].iter().map(|&t| t as i32));
            y.extend(w[1..].iter().map(|&t| t as i32));
            m.extend(c[1..].iter().zip(&r[1..]).map(|(&c, &r)| {
                if r && (c || !answers_only) {
                    1.0f32
                } else {
                    0.0
                }
            }));
        }
        (x, y, m)
    }

    /// Passes completed by the first source (epochs of the main data).
    pub fn epoch(&self) -> u64 {
        self.cursors[0].pass
    }
}

/// A source of training windows owned by the caller: a stream loaded from disk or one rendered on the fly.
pub enum MixSource<'a> {
    Stored(TokenStream),
    Generated(Generated<'a>),
}

impl DocSource for MixSource<'_> {
    fn cycle(&self) -> u64 {
        match self {
            MixSource::Stored(s) => s.cycle(),
            MixSource::Generated(g) => g.cycle(),
        }
    }
    fn doc(&self, pass: u64, i: u64, out: &mut Vec<u32>) -> u32 {
        match self {
            MixSource::Stored(s) => s.doc(pass, i, out),
            MixSource::Generated(g) => g.doc(pass, i, out),
        }
    }
}

/// A source for stream `name` of the dataset: loaded (and checked) when stored, rendered by `corpus` (the corpus
/// the dataset was written from) when generated on the fly.
fn source_for<'a>(
    ds: &Dataset,
    corpus: Option<&'a dyn Corpus>,
    name: &str,
) -> Result<MixSource<'a>, GenError> {
    let err = |msg: String| GenError::Dataset {
        path: ds.dir.clone(),
        msg,
    };
    let info = ds.manifest.stream(name).ok_or_else(|| {
        err(format!(
            "no stream {name:?}; the dataset has {}",
            ds.manifest.stream_names()
        ))
    })?;
    if info.materialized {
        return Ok(MixSource::Stored(ds.load(name)?));
    }
    let c = corpus.ok_or_else(|| {
        err(format!(
            "stream {name:?} is generated while training: the corpus is needed"
        ))
    })?;
    let stream = c
        .streams()
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| err(format!("the corpus has no stream {name:?}")))?;
    Ok(MixSource::Generated(Generated {
        corpus: c,
        stream,
        cycle: info.documents,
    }))
}

/// The sources and weights of the dataset's training mixture.
pub fn mixture_sources<'a>(
    ds: &Dataset,
    corpus: Option<&'a dyn Corpus>,
) -> Result<Vec<(MixSource<'a>, f64)>, GenError> {
    ds.manifest
        .mixture
        .iter()
        .map(|m| Ok((source_for(ds, corpus, &m.stream)?, m.weight)))
        .collect()
}

/// Sources for the named streams in equal shares (instead of the dataset's own mixture), e.g. `["qa_train"]`
/// for QA finetuning.
pub fn named_sources<'a>(
    ds: &Dataset,
    corpus: Option<&'a dyn Corpus>,
    names: &[String],
) -> Result<Vec<(MixSource<'a>, f64)>, GenError> {
    names
        .iter()
        .map(|n| Ok((source_for(ds, corpus, n)?, 1.0)))
        .collect()
}

/// A [`WindowMixer`] over `sources`.
pub fn mixer<'a>(
    sources: &'a [(MixSource<'a>, f64)],
    seed: u64,
) -> Result<WindowMixer<'a>, GenError> {
    WindowMixer::new(
        sources
            .iter()
            .map(|(s, w)| (s as &dyn DocSource, *w))
            .collect(),
        seed,
    )
}
