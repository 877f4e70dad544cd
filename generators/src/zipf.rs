//! Token corpora whose entropy is known exactly (SPEC §2).
//!
//! - [`Zipf`] with `order = 0` (kind `zipf`): i.i.d. tokens, rank `k` of `1..=V` drawn with `p_k ∝ k^(−s)`;
//!   token id `k` is rank `k` (word `z<k>`), id 0 is `<eot>`. Entropy `H = log2 Z + (s/Z) Σ k^(−s) log2 k` bits
//!   per token, `Z = Σ_{k≤V} k^(−s)` ([`zipf_entropy_bits`]).
//! - [`Zipf`] with `order = k ≥ 1` (kind `markov`): a Zipf-permuted Markov chain of order `k`. The context (the
//!   previous `k` tokens of the document) is hashed to 64 bits and keys its own pseudo-random permutation `π_ctx`
//!   of the `V` tokens ([`Permutation::new`]`(seed, Purpose::Corpus, hash, V)`); the next token is `π_ctx(r)`
//!   for a rank `r` drawn from the Zipf distribution. Every row of the transition kernel is a permutation of the
//!   same Zipf vector, so every row has entropy `H` and the entropy rate is exactly `H`. The first `k` tokens of
//!   each document are drawn i.i.d. Zipf with the identity rank → token map (entropy `H` each too), so a document
//!   of `T` tokens holds exactly `T·H` bits whatever `k`. Two contexts whose hashes collide share a permutation,
//!   which leaves every row's entropy (and so the rate) unchanged. The kernel depends on the seed.
//! - [`Uniform`] (kind `uniform`, Morris et al.'s memorization probe): `N` sequences of `S` tokens uniform over
//!   `V` (ids `1..=V`, words `u<k>`): exactly `N·S·log2 V` bits.
//!
//! Each corpus has one materialized stream, `train`; document `i` is drawn from `stream(seed, Purpose::Corpus,
//! i)` alone, so documents render in parallel and out of order with identical bytes. The facts count content
//! tokens only: the `<eot>` a loader puts after every document is not content (a model that predicts it also
//! pays nothing for it in principle, but evaluation should leave it out when comparing a loss with `H`).
//!
//! Sampling uses a Walker/Vose alias table built in exact integer arithmetic (one `u64` per draw: the high bits
//! of `x·V` pick the column, the low bits decide between it and its alias), so draws are exact up to the
//! quantization of each probability to `2^−64` of a column (relative error ≈ `V·2^−64`). Uniform draws use
//! Lemire's rejection method (exactly uniform). Both read only `ChaCha8Rng::next_u64`, whose output is
//! value-stable, so the bytes do not depend on `rand`'s own sampling algorithms. The Zipf weights use
//! `f64::powf`; a platform whose `powf` differs in the last bit would move a probability by ~`2^−53`.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Exposure, StreamSpec, StreamSummary};
use crate::error::GenError;
use crate::rng::{mix64, stream, Permutation, Purpose};
use crate::tokenizer::{Tokenizer, EOT_STR};

/// Largest vocabulary (content tokens) a token corpus may have.
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest Markov order (contexts are hashed, so this bounds only the per-token work).
pub const MAX_ORDER: usize = 8;
/// Largest document (token lengths are stored as u32).
pub const MAX_DOC_TOKENS: usize = 1 << 30;

/// Neumaier's compensated sum (Kahan–Babuška): exact to about one ulp of the result whatever the order.
#[derive(Clone, Copy, Debug, Default)]
struct Neumaier {
    sum: f64,
    c: f64,
}

impl Neumaier {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.c += (self.sum - t) + x;
        } else {
            self.c += (x - t) + self.sum;
        }
        self.sum = t;
    }
    fn value(self) -> f64 {
        self.sum + self.c
    }
}

/// `Z = Σ_{k=1..V} k^(−s)` and `Σ k^(−s)·log2 k`, summed from the smallest terms up with compensation.
fn zipf_sums(vocab: usize, exponent: f64) -> (f64, f64) {
    let (mut z, mut l) = (Neumaier::default(), Neumaier::default());
    for k in (1..=vocab).rev() {
        let kf = k as f64;
        let w = kf.powf(-exponent);
        z.add(w);
        l.add(w * kf.log2());
    }
    (z.value(), l.value())
}

/// The Zipf probabilities `p_k = k^(−s)/Z` of ranks `k = 1..=V` (index `k − 1`).
pub fn zipf_probabilities(vocab: usize, exponent: f64) -> Vec<f64> {
    let (z, _) = zipf_sums(vocab, exponent);
    (1..=vocab)
        .map(|k| (k as f64).powf(-exponent) / z)
        .collect()
}

/// Entropy in bits of the Zipf distribution over `vocab` ranks with exponent `exponent`:
/// `H = log2 Z + (s/Z)·Σ k^(−s)·log2 k`, `Z = Σ_{k≤V} k^(−s)` (SPEC §2: 8.752 bits for V = 4096, s = 1.0;
/// 6.805 bits at s = 1.2).
pub fn zipf_entropy_bits(vocab: usize, exponent: f64) -> f64 {
    let (z, l) = zipf_sums(vocab, exponent);
    z.log2() + exponent * l / z
}

/// A Walker/Vose alias table over `0..n`: one `u64` per draw, no allocation.
#[derive(Clone, Debug)]
pub struct AliasTable {
    /// (threshold, alias) per column: keep the column when the low 64 bits of `x·n` are below the threshold.
    columns: Vec<(u64, u32)>,
}

impl AliasTable {
    /// From probabilities (non-negative, summing to 1 up to rounding; at least one positive, at most 2^32).
    pub fn new(probs: &[f64]) -> Self {
        let n = probs.len();
        assert!(n >= 1 && n <= u32::MAX as usize, "alias table size {n}");
        const C: u128 = 1 << 64;
        let total: u128 = (n as u128) << 64;
        let sum: f64 = probs.iter().sum();
        let scale = n as f64 * 2f64.powi(64) / sum;
        // Integer weights summing to exactly n·2^64: each column then holds exactly 2^64 units.
        let mut w: Vec<u128> = probs.iter().map(|&p| (p * scale) as u128).collect();
        let got: u128 = w.iter().sum();
        let big = (0..n).max_by(|&a, &b| w[a].cmp(&w[b])).expect("n ≥ 1");
        if got <= total {
            w[big] += total - got;
        } else {
            w[big] -= got - total;
        }
        let mut columns = vec![(u64::MAX, 0u32); n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| w[i] < C);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            columns[s] = (w[s] as u64, l as u32);
            w[l] -= C - w[s];
            if w[l] < C {
                large.pop();
                small.push(l);
            }
        }
        // What is left holds exactly one column's worth (the arithmetic is exact): always itself.
        for i in large.into_iter().chain(small) {
            columns[i] = (u64::MAX, i as u32);
        }
        AliasTable { columns }
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// A draw in `0..n`.
    #[inline]
    pub fn sample(&self, rng: &mut impl RngCore) -> usize {
        let m = rng.next_u64() as u128 * self.columns.len() as u128;
        let i = (m >> 64) as usize;
        let (threshold, alias) = self.columns[i];
        if (m as u64) < threshold {
            i
        } else {
            alias as usize
        }
    }
}

/// An exactly uniform draw in `0..n` (Lemire 2019, "Fast random integer generation in an interval").
#[inline]
pub fn uniform_below(rng: &mut impl RngCore, n: u64) -> u64 {
    debug_assert!(n > 0);
    let mut m = rng.next_u64() as u128 * n as u128;
    if (m as u64) < n {
        let t = n.wrapping_neg() % n;
        while (m as u64) < t {
            m = rng.next_u64() as u128 * n as u128;
        }
    }
    (m >> 64) as u64
}

/// The dataset part of a recipe for a Zipf (order 0) or Zipf-permuted Markov (order ≥ 1) corpus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZipfConfig {
    /// V, the number of content tokens (ids 1..=V; id 0 is `<eot>`).
    pub vocab: usize,
    /// s, the Zipf exponent: p_k ∝ k^(−s).
    pub exponent: f64,
    /// k, the Markov order: 0 is i.i.d. unigram, k ≥ 1 a Zipf-permuted chain on the previous k tokens.
    pub order: usize,
    /// Documents in the corpus.
    pub documents: usize,
    /// Tokens per document (content tokens, without the `<eot>` the loader adds).
    pub doc_tokens: usize,
}

impl Default for ZipfConfig {
    fn default() -> Self {
        ZipfConfig {
            vocab: 4096,
            exponent: 1.0,
            order: 0,
            documents: 1000,
            doc_tokens: 512,
        }
    }
}

impl ZipfConfig {
    /// Problems with the config, all of them (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.vocab < 2 {
            p.push(format!("data.vocab must be ≥ 2 (got {})", self.vocab));
        }
        if self.vocab > MAX_VOCAB {
            p.push(format!(
                "data.vocab must be ≤ {MAX_VOCAB} (got {})",
                self.vocab
            ));
        }
        if !(self.exponent.is_finite() && self.exponent > 0.0) {
            p.push(format!(
                "data.exponent must be a finite number > 0 (got {})",
                self.exponent
            ));
        }
        if self.order > MAX_ORDER {
            p.push(format!(
                "data.order must be ≤ {MAX_ORDER} (got {})",
                self.order
            ));
        }
        if self.documents == 0 {
            p.push("data.documents must be ≥ 1".to_string());
        }
        if self.doc_tokens == 0 {
            p.push("data.doc_tokens must be ≥ 1".to_string());
        }
        if self.doc_tokens > MAX_DOC_TOKENS {
            p.push(format!(
                "data.doc_tokens must be ≤ {MAX_DOC_TOKENS} (got {})",
                self.doc_tokens
            ));
        }
        p
    }

    /// The exact entropy rate in bits per content token.
    pub fn entropy_bits_per_token(&self) -> f64 {
        zipf_entropy_bits(self.vocab, self.exponent)
    }
}

/// A Zipf unigram (kind `zipf`, order 0) or Zipf-permuted Markov (kind `markov`, order ≥ 1) corpus.
pub struct Zipf {
    pub config: ZipfConfig,
    pub seed: u64,
    pub tokenizer: Tokenizer,
    /// Rank sampler (rank r − 1 for p_r).
    ranks: AliasTable,
    entropy: f64,
}

/// The 64-bit key of a context (its tokens, in order, and its length).
#[inline]
pub fn context_key(context: &[u32]) -> u64 {
    let mut h = mix64(0x6374_7800 ^ context.len() as u64);
    for &t in context {
        h = mix64(h ^ t as u64);
    }
    h
}

impl Zipf {
    pub fn build(config: &ZipfConfig, seed: u64) -> Result<Self, GenError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let mut words = Vec::with_capacity(config.vocab + 1);
        words.push(EOT_STR.to_string());
        words.extend((1..=config.vocab).map(|k| format!("z{k}")));
        Ok(Zipf {
            config: config.clone(),
            seed,
            tokenizer: Tokenizer::from_words(words),
            ranks: AliasTable::new(&zipf_probabilities(config.vocab, config.exponent)),
            entropy: config.entropy_bits_per_token(),
        })
    }

    /// H, the exact entropy rate in bits per content token.
    pub fn entropy_bits_per_token(&self) -> f64 {
        self.entropy
    }

    /// The transition row of a context (order ≥ 1): rank r (0-based) → token `perm.apply(r) + 1`.
    pub fn context_permutation(&self, context: &[u32]) -> Permutation {
        Permutation::new(
            self.seed,
            Purpose::Corpus,
            context_key(context),
            self.config.vocab as u64,
        )
    }

    /// −log2 of the true probability of each token of a document (as [`Zipf::render_document`] makes it): the
    /// source's own surprisal of the sample, whose mean is H in expectation. A model's loss minus this on the same
    /// tokens estimates KL(source ‖ model) with far less noise than loss − H.
    pub fn surprisal_bits(&self, doc: &[u32]) -> Vec<f64> {
        let probs = zipf_probabilities(self.config.vocab, self.config.exponent);
        let k = self.config.order;
        (0..doc.len())
            .map(|t| {
                let token = doc[t] as u64 - 1;
                let rank = if t < k || k == 0 {
                    token
                } else {
                    // The rank whose image under this context's permutation is the token.
                    let perm = self.context_permutation(&doc[t - k..t]);
                    (0..self.config.vocab as u64)
                        .find(|&r| perm.apply(r) == token)
                        .expect("a permutation of the vocabulary")
                };
                -probs[rank as usize].log2()
            })
            .collect()
    }

    /// Document `doc`, appended to `out`.
    pub fn render_document(&self, doc: u64, out: &mut Vec<u32>) {
        let mut rng = stream(self.seed, Purpose::Corpus, doc);
        let k = self.config.order;
        let start = out.len();
        out.reserve(self.config.doc_tokens);
        for t in 0..self.config.doc_tokens {
            let r = self.ranks.sample(&mut rng) as u64;
            // Order 0, and the first k tokens of a document: rank r is token r (i.i.d. Zipf).
            let token = if t < k || k == 0 {
                r
            } else {
                let end = start + t;
                self.context_permutation(&out[end - k..end]).apply(r)
            };
            out.push(token as u32 + 1);
        }
    }
}

pub(crate) fn train_stream(documents: usize, about: String) -> Vec<StreamSpec> {
    vec![StreamSpec {
        name: "train".into(),
        documents: documents as u64,
        prompts: false,
        materialized: true,
        about,
    }]
}

pub(crate) fn one_pass(measured: &[StreamSummary], documents: usize) -> Exposure {
    let tokens = measured
        .iter()
        .find(|s| s.name == "train")
        .map(|s| s.documents as f64 * s.tokens_per_document)
        .unwrap_or(documents as f64);
    Exposure {
        stream: "train".into(),
        tokens,
        unit: "one pass over the corpus".into(),
    }
}

impl Corpus for Zipf {
    fn kind(&self) -> &'static str {
        if self.config.order == 0 {
            "zipf"
        } else {
            "markov"
        }
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).expect("config serialises")
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn streams(&self) -> Vec<StreamSpec> {
        let c = &self.config;
        let about = if c.order == 0 {
            format!(
                "{} documents of {} i.i.d. Zipf tokens (V = {}, s = {})",
                c.documents, c.doc_tokens, c.vocab, c.exponent
            )
        } else {
            format!(
                "{} documents of {} tokens of a Zipf-permuted Markov chain (order {}, V = {}, s = {})",
                c.documents, c.doc_tokens, c.order, c.vocab, c.exponent
            )
        };
        train_stream(c.documents, about)
    }

    fn render(&self, _stream: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        self.render_document(doc, out);
        0
    }

    fn exposure(&self, measured: &[StreamSummary]) -> Exposure {
        one_pass(measured, self.config.documents)
    }

    fn facts(&self, _measured: &[StreamSummary]) -> serde_json::Value {
        let c = &self.config;
        let content = c.documents as f64 * c.doc_tokens as f64;
        serde_json::json!({
            "entropy_bits_per_token": self.entropy,
            "vocab": c.vocab,
            "exponent": c.exponent,
            "order": c.order,
            "documents": c.documents,
            "doc_tokens": c.doc_tokens,
            "content_tokens": c.documents as u64 * c.doc_tokens as u64,
            "total_entropy_bits": content * self.entropy,
            "note": "entropy counts content tokens only: the <eot> after each document is not content",
        })
    }
}

/// The dataset part of a recipe for uniform random token sequences (Morris et al.).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UniformConfig {
    /// N, the number of sequences.
    pub sequences: usize,
    /// S, tokens per sequence.
    pub length: usize,
    /// V, the number of content tokens (ids 1..=V; id 0 is `<eot>`).
    pub vocab: usize,
}

impl Default for UniformConfig {
    fn default() -> Self {
        UniformConfig {
            sequences: 1000,
            length: 64,
            vocab: 2048,
        }
    }
}

impl UniformConfig {
    /// Problems with the config, all of them (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.sequences == 0 {
            p.push("data.sequences must be ≥ 1".to_string());
        }
        if self.length == 0 {
            p.push("data.length must be ≥ 1".to_string());
        }
        if self.length > MAX_DOC_TOKENS {
            p.push(format!(
                "data.length must be ≤ {MAX_DOC_TOKENS} (got {})",
                self.length
            ));
        }
        if self.vocab < 2 {
            p.push(format!("data.vocab must be ≥ 2 (got {})", self.vocab));
        }
        if self.vocab > MAX_VOCAB {
            p.push(format!(
                "data.vocab must be ≤ {MAX_VOCAB} (got {})",
                self.vocab
            ));
        }
        p
    }

    /// N·S·log2 V, the exact entropy of the corpus in bits.
    pub fn entropy_bits(&self) -> f64 {
        self.sequences as f64 * self.length as f64 * (self.vocab as f64).log2()
    }
}

/// Uniform random token sequences (kind `uniform`).
pub struct Uniform {
    pub config: UniformConfig,
    pub seed: u64,
    pub tokenizer: Tokenizer,
}

impl Uniform {
    pub fn build(config: &UniformConfig, seed: u64) -> Result<Self, GenError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let mut words = Vec::with_capacity(config.vocab + 1);
        words.push(EOT_STR.to_string());
        words.extend((1..=config.vocab).map(|k| format!("u{k}")));
        Ok(Uniform {
            config: config.clone(),
            seed,
            tokenizer: Tokenizer::from_words(words),
        })
    }

    /// Sequence `doc`, appended to `out`.
    pub fn render_sequence(&self, doc: u64, out: &mut Vec<u32>) {
        let mut rng = stream(self.seed, Purpose::Corpus, doc);
        let v = self.config.vocab as u64;
        out.extend((0..self.config.length).map(|_| uniform_below(&mut rng, v) as u32 + 1));
    }
}

impl Corpus for Uniform {
    fn kind(&self) -> &'static str {
        "uniform"
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).expect("config serialises")
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn streams(&self) -> Vec<StreamSpec> {
        let c = &self.config;
        train_stream(
            c.sequences,
            format!(
                "{} sequences of {} tokens uniform over {} tokens",
                c.sequences, c.length, c.vocab
            ),
        )
    }

    fn render(&self, _stream: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        self.render_sequence(doc, out);
        0
    }

    fn exposure(&self, measured: &[StreamSummary]) -> Exposure {
        one_pass(measured, self.config.sequences)
    }

    fn facts(&self, _measured: &[StreamSummary]) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "entropy_bits": c.entropy_bits(),
            "entropy_bits_per_token": (c.vocab as f64).log2(),
            "sequences": c.sequences,
            "length": c.length,
            "vocab": c.vocab,
            "content_tokens": c.sequences as u64 * c.length as u64,
            "note": "entropy counts content tokens only: the <eot> after each sequence is not content",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neumaier_beats_naive_summation() {
        // 1 + 1e-16 · 10^4 = 1 + 1e-12 exactly (closed form); naive summation loses every small term.
        let mut n = Neumaier::default();
        n.add(1.0);
        for _ in 0..10_000 {
            n.add(1e-16);
        }
        assert!((n.value() - (1.0 + 1e-12)).abs() < 1e-15, "{}", n.value());
    }

    #[test]
    fn alias_table_holds_the_exact_probabilities() {
        // Integer Vose: each column holds exactly 2^64 units, so the mass per outcome reconstructed from the
        // columns equals the input probability to ~2^-52 (the f64 rounding of p·n·2^64).
        let probs = zipf_probabilities(1000, 1.3);
        let t = AliasTable::new(&probs);
        let n = probs.len();
        let mut mass = vec![0f64; n];
        for (i, &(th, a)) in t.columns.iter().enumerate() {
            let keep = if th == u64::MAX {
                1.0
            } else {
                th as f64 / 2f64.powi(64)
            };
            mass[i] += keep / n as f64;
            mass[a as usize] += (1.0 - keep) / n as f64;
        }
        for (i, (m, p)) in mass.iter().zip(&probs).enumerate() {
            assert!((m - p).abs() <= 1e-15 + 1e-12 * p, "rank {i}: {m} vs {p}");
        }
    }

    #[test]
    fn uniform_below_covers_the_range() {
        let mut rng = stream(1, Purpose::Corpus, 0);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[uniform_below(&mut rng, 7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn a_document_does_not_depend_on_what_precedes_it_in_the_buffer() {
        let z = Zipf::build(
            &ZipfConfig {
                vocab: 50,
                order: 3,
                documents: 4,
                doc_tokens: 40,
                ..ZipfConfig::default()
            },
            9,
        )
        .unwrap();
        let mut alone = Vec::new();
        z.render_document(2, &mut alone);
        let mut after = vec![7u32; 13];
        z.render_document(2, &mut after);
        assert_eq!(&after[13..], &alone[..]);
        assert!(alone.iter().all(|&t| (1..=50).contains(&t)));
    }
}
