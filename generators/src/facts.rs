//! Zipf-frequency facts (kind `facts`): the quanta / Hutter model of the data-scaling law (SPEC §5a row 17).
//!
//! K facts, each a key of L tokens (a random, distinct code over an alphabet of A key tokens) and a value of M
//! tokens (each uniform over V values, fixed per key; M = 1 unless `value_tokens` says otherwise). A document is F facts, each drawn independently with key k's
//! probability p_k ∝ k^(−s). Given its key a fact's value is certain, so a model's loss on the value tokens is
//! all excess: ~0 bits for a fact it has learned, ~M·log2 V for one whose key it never saw. Each fact is one
//! "piece of knowledge" of fixed cost, with Zipf frequencies; with D training facts the unseen probability mass
//! falls as D^(−(s−1)/s) while the keys are many more than the data reaches (Hutter 2021: with α = s − 1,
//! D^(−α/(1+α)); s = 1.5 gives D^(−1/3)). A longer value (M > 1) makes each fact cost more parameters, so that a
//! small model holds only the few hundred most frequent facts and its capacity, not the data, is the limit (the
//! parameter half of the law, loss − H ∝ N^(−α), with the data a CPU can afford).
//!
//! Tokens: 0 is `<eot>`, 1..=A the key alphabet (`k1`…), A+1..=A+V the values (`v1`…).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Exposure, StreamSpec, StreamSummary};
use crate::error::GenError;
use crate::rng::{mix64, stream, Permutation, Purpose};
use crate::tokenizer::{Tokenizer, EOT_STR};
use crate::zipf::{
    one_pass, train_stream, uniform_below, zipf_entropy_bits, zipf_probabilities, AliasTable,
    MAX_DOC_TOKENS, MAX_VOCAB,
};

/// The most keys a facts corpus may have (its sampler holds K probabilities: ~400 MB at the limit).
pub const MAX_KEYS: usize = 1 << 24;

/// The dataset part of a recipe for a Zipf-frequency facts corpus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FactsConfig {
    /// K, the number of facts (keys).
    pub keys: usize,
    /// s: key k (1-based rank) is drawn with probability ∝ k^(−s).
    pub exponent: f64,
    /// L, tokens per key.
    pub key_tokens: usize,
    /// A, the key alphabet: A^L must be ≥ K so that every key has its own code.
    pub key_alphabet: usize,
    /// V, the number of values: each value token is uniform over V, fixed per key.
    pub values: usize,
    /// M, tokens per value (1: the value is one token).
    #[serde(skip_serializing_if = "is_one")]
    pub value_tokens: usize,
    /// Documents in the training set.
    pub documents: usize,
    /// F, facts per document.
    pub facts_per_document: usize,
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            keys: 1 << 20,
            exponent: 1.5,
            key_tokens: 3,
            key_alphabet: 128,
            values: 64,
            value_tokens: 1,
            documents: 1000,
            facts_per_document: 31,
        }
    }
}

impl FactsConfig {
    /// Problems with the config, all of them (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.keys == 0 || self.keys > MAX_KEYS {
            p.push(format!(
                "data.keys must be in 1..={MAX_KEYS} (got {})",
                self.keys
            ));
        }
        if !(self.exponent.is_finite() && self.exponent > 0.0) {
            p.push(format!(
                "data.exponent must be a finite number > 0 (got {})",
                self.exponent
            ));
        }
        if self.key_tokens == 0 || self.key_tokens > 8 {
            p.push(format!(
                "data.key_tokens must be in 1..=8 (got {})",
                self.key_tokens
            ));
        }
        if self.key_alphabet < 2 {
            p.push(format!(
                "data.key_alphabet must be ≥ 2 (got {})",
                self.key_alphabet
            ));
        }
        if self.values < 2 {
            p.push(format!("data.values must be ≥ 2 (got {})", self.values));
        }
        if self.value_tokens == 0 || self.value_tokens > 64 {
            p.push(format!(
                "data.value_tokens must be in 1..=64 (got {})",
                self.value_tokens
            ));
        }
        if self.key_alphabet.saturating_add(self.values) > MAX_VOCAB {
            p.push(format!(
                "data.key_alphabet + data.values must be ≤ {MAX_VOCAB} (got {})",
                self.key_alphabet.saturating_add(self.values)
            ));
        }
        if self.key_tokens >= 1 && self.key_alphabet >= 2 && self.codes() < self.keys as u128 {
            p.push(format!(
                "data.key_alphabet^data.key_tokens = {}^{} = {} codes for {} keys: every key needs its own code",
                self.key_alphabet,
                self.key_tokens,
                self.codes(),
                self.keys
            ));
        }
        if self.codes() > u64::MAX as u128 {
            p.push(format!(
                "data.key_alphabet^data.key_tokens = {}^{} does not fit in 64 bits",
                self.key_alphabet, self.key_tokens
            ));
        }
        if self.documents == 0 {
            p.push("data.documents must be ≥ 1".to_string());
        }
        if self.facts_per_document == 0 {
            p.push("data.facts_per_document must be ≥ 1".to_string());
        }
        if self.doc_tokens() > MAX_DOC_TOKENS as u128 {
            p.push(format!(
                "data.facts_per_document × (data.key_tokens + data.value_tokens) must be ≤ {MAX_DOC_TOKENS} (got {})",
                self.doc_tokens()
            ));
        }
        p
    }

    /// A^L, the number of key codes (saturating).
    fn codes(&self) -> u128 {
        (self.key_alphabet as u128)
            .checked_pow(self.key_tokens as u32)
            .unwrap_or(u128::MAX)
    }

    fn doc_tokens(&self) -> u128 {
        self.facts_per_document as u128 * (self.key_tokens as u128 + self.value_tokens as u128)
    }

    /// Tokens per fact: the key and its value.
    pub fn fact_tokens(&self) -> usize {
        self.key_tokens + self.value_tokens
    }

    /// Content tokens per document.
    pub fn document_tokens(&self) -> usize {
        self.facts_per_document * self.fact_tokens()
    }

    /// M·log2 V: what a fact's value costs a model that has never seen its key (and knows the value set).
    pub fn value_bits(&self) -> f64 {
        self.value_tokens as f64 * (self.values as f64).log2()
    }

    /// The exact entropy rate in bits per content token: a fact's key carries the Zipf entropy over K keys, its
    /// value nothing more.
    pub fn entropy_bits_per_token(&self) -> f64 {
        zipf_entropy_bits(self.keys, self.exponent) / self.fact_tokens() as f64
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// A Zipf-frequency facts corpus (kind `facts`).
pub struct Facts {
    pub config: FactsConfig,
    pub seed: u64,
    pub tokenizer: Tokenizer,
    /// Key sampler: index k − 1 for p_k.
    ranks: AliasTable,
    /// Key rank → code in 0..A^L (distinct per key).
    codes: Permutation,
}

/// Stream index of the value table (documents use their own index in `Purpose::Corpus`; this one is far past).
const VALUES_STREAM: u64 = 0x7661_6c75_6573 << 16;

impl Facts {
    pub fn build(config: &FactsConfig, seed: u64) -> Result<Self, GenError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let mut words = Vec::with_capacity(1 + config.key_alphabet + config.values);
        words.push(EOT_STR.to_string());
        words.extend((1..=config.key_alphabet).map(|k| format!("k{k}")));
        words.extend((1..=config.values).map(|v| format!("v{v}")));
        Ok(Facts {
            config: config.clone(),
            seed,
            tokenizer: Tokenizer::from_words(words),
            ranks: AliasTable::new(&zipf_probabilities(config.keys, config.exponent)),
            codes: Permutation::new(
                seed,
                Purpose::Corpus,
                VALUES_STREAM - 1,
                config.codes() as u64,
            ),
        })
    }

    /// The key tokens of the fact of 0-based rank `rank`, appended to `out`.
    pub fn key(&self, rank: u64, out: &mut Vec<u32>) {
        let a = self.config.key_alphabet as u64;
        let mut code = self.codes.apply(rank);
        let start = out.len();
        for _ in 0..self.config.key_tokens {
            out.push((code % a) as u32 + 1);
            code /= a;
        }
        out[start..].reverse();
    }

    /// The value tokens of the fact of 0-based rank `rank` (M of them; a one-token value is the first draw of the
    /// key's stream, as before M existed), appended to `out`.
    pub fn value(&self, rank: u64, out: &mut Vec<u32>) {
        let mut rng = stream(self.seed, Purpose::Corpus, VALUES_STREAM ^ mix64(rank));
        for _ in 0..self.config.value_tokens {
            out.push(
                (self.config.key_alphabet as u64
                    + 1
                    + uniform_below(&mut rng, self.config.values as u64)) as u32,
            );
        }
    }

    /// The 0-based ranks of the facts of document `doc`, in order.
    pub fn document_ranks(&self, doc: u64) -> Vec<u64> {
        let mut rng = stream(self.seed, Purpose::Corpus, doc);
        (0..self.config.facts_per_document)
            .map(|_| self.ranks.sample(&mut rng) as u64)
            .collect()
    }

    /// Document `doc`, appended to `out`: its facts, each key then value.
    pub fn render_document(&self, doc: u64, out: &mut Vec<u32>) {
        for r in self.document_ranks(doc) {
            self.key(r, out);
            self.value(r, out);
        }
    }

    /// How often each key occurs in documents `0..documents` (the training set): rank → count.
    pub fn key_counts(&self, documents: u64) -> HashMap<u64, u32> {
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for d in 0..documents {
            for r in self.document_ranks(d) {
                *counts.entry(r).or_default() += 1;
            }
        }
        counts
    }

    /// Whether content position `t` of a document holds a value token (the targets a facts evaluation scores).
    pub fn is_value_position(&self, t: usize) -> bool {
        t % self.config.fact_tokens() >= self.config.key_tokens
    }
}

impl Corpus for Facts {
    fn kind(&self) -> &'static str {
        "facts"
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
            c.documents,
            format!(
                "{} documents of {} facts (key of {} tokens over {}, value {} token(s) of {}), keys Zipf(s = {}) over K = {}",
                c.documents, c.facts_per_document, c.key_tokens, c.key_alphabet, c.value_tokens, c.values, c.exponent, c.keys
            ),
        )
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
        serde_json::json!({
            "entropy_bits_per_token": c.entropy_bits_per_token(),
            "keys": c.keys,
            "exponent": c.exponent,
            "key_tokens": c.key_tokens,
            "key_alphabet": c.key_alphabet,
            "values": c.values,
            "value_tokens": c.value_tokens,
            "value_bits": c.value_bits(),
            "documents": c.documents,
            "facts_per_document": c.facts_per_document,
            "training_facts": c.documents as u64 * c.facts_per_document as u64,
            "content_tokens": c.documents as u64 * c.document_tokens() as u64,
            "note": "a fact's value is certain given its key: the loss on value tokens is all excess",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Facts {
        Facts::build(
            &FactsConfig {
                keys: 500,
                key_tokens: 2,
                key_alphabet: 30,
                values: 7,
                documents: 50,
                facts_per_document: 10,
                ..FactsConfig::default()
            },
            3,
        )
        .unwrap()
    }

    /// Every key has its own code of L tokens from the alphabet, each value is in the value range and fixed per
    /// key, and a document is its ranks' keys and values in order.
    #[test]
    fn keys_are_distinct_values_fixed_documents_consistent() {
        let f = small();
        let mut seen = std::collections::HashSet::new();
        for r in 0..500 {
            let mut k = Vec::new();
            f.key(r, &mut k);
            assert_eq!(k.len(), 2);
            assert!(k.iter().all(|&t| (1..=30).contains(&t)), "{k:?}");
            assert!(seen.insert(k), "key of rank {r} repeated");
            let mut v = Vec::new();
            f.value(r, &mut v);
            assert!(v.len() == 1 && (31..=37).contains(&v[0]), "{v:?}");
            let mut again = Vec::new();
            f.value(r, &mut again);
            assert_eq!(v, again);
        }
        let mut doc = Vec::new();
        f.render_document(4, &mut doc);
        assert_eq!(doc.len(), 30);
        for (i, r) in f.document_ranks(4).into_iter().enumerate() {
            let mut k = Vec::new();
            f.key(r, &mut k);
            assert_eq!(&doc[3 * i..3 * i + 2], &k[..]);
            let mut v = Vec::new();
            f.value(r, &mut v);
            assert_eq!(doc[3 * i + 2], v[0]);
            assert!(f.is_value_position(3 * i + 2) && !f.is_value_position(3 * i));
        }
    }

    /// A value of M = 4 tokens: a fact is its L key tokens then M value tokens, each in the value range and fixed
    /// per key; its first token is the one-token value of the same key (the same stream, so M = 1 corpora are
    /// what they were); exactly the M value positions of each fact are scored; a fact costs M·log2 V bits; the
    /// config serializes `value_tokens` only when it is not 1 (run configs written before it are unchanged).
    #[test]
    fn multi_token_values_are_fixed_per_key_and_scored_whole() {
        let one = small();
        let c4 = FactsConfig {
            value_tokens: 4,
            ..one.config.clone()
        };
        let four = Facts::build(&c4, 3).unwrap();
        assert_eq!(c4.fact_tokens(), 6);
        assert!((c4.value_bits() - 4.0 * 7f64.log2()).abs() < 1e-12);
        for r in 0..50 {
            let (mut a, mut b, mut v1) = (Vec::new(), Vec::new(), Vec::new());
            four.value(r, &mut a);
            four.value(r, &mut b);
            one.value(r, &mut v1);
            assert_eq!(a.len(), 4);
            assert_eq!(a, b, "fixed per key");
            assert!(a.iter().all(|t| (31..=37).contains(t)), "{a:?}");
            assert_eq!(a[0], v1[0], "the first token is the one-token value");
        }
        let mut doc = Vec::new();
        four.render_document(7, &mut doc);
        assert_eq!(doc.len(), 10 * 6);
        for (i, r) in four.document_ranks(7).into_iter().enumerate() {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            four.key(r, &mut k);
            four.value(r, &mut v);
            assert_eq!(&doc[6 * i..6 * i + 2], &k[..]);
            assert_eq!(&doc[6 * i + 2..6 * i + 6], &v[..]);
        }
        let scored: Vec<usize> = (0..12).filter(|&t| four.is_value_position(t)).collect();
        assert_eq!(scored, vec![2, 3, 4, 5, 8, 9, 10, 11]);
        let json = serde_json::to_value(&one.config).unwrap();
        assert!(json.get("value_tokens").is_none(), "{json}");
        assert_eq!(serde_json::to_value(&c4).unwrap()["value_tokens"], 4);
        let bad = FactsConfig {
            value_tokens: 0,
            ..c4.clone()
        };
        assert!(bad.problems().join("; ").contains("data.value_tokens"));
    }

    /// Keys are drawn with p_k ∝ k^(−s): over 2,000 documents (20,000 draws) the top key's share is within 5
    /// standard errors of p_1 = 1/Σ k^(−1.5) (K = 500) and the counts fall with the rank.
    #[test]
    fn keys_follow_the_zipf_law() {
        let f = small();
        let counts = f.key_counts(2000);
        let p = zipf_probabilities(500, 1.5);
        let n = 20_000.0;
        let top = *counts.get(&0).unwrap() as f64;
        let se = (n * p[0] * (1.0 - p[0])).sqrt();
        assert!((top - n * p[0]).abs() < 5.0 * se, "{top} vs {}", n * p[0]);
        assert!(counts[&0] > counts[&1] && counts[&1] > counts[&9]);
    }

    #[test]
    fn too_few_codes_and_bad_keys_are_refused() {
        let c = FactsConfig {
            keys: 1000,
            key_tokens: 2,
            key_alphabet: 30,
            ..FactsConfig::default()
        };
        let p = c.problems().join("; ");
        assert!(p.contains("30^2 = 900 codes for 1000 keys"), "{p}");
        let c = FactsConfig {
            keys: 0,
            values: 1,
            ..FactsConfig::default()
        };
        let p = c.problems().join("; ");
        assert!(p.contains("data.keys") && p.contains("data.values"), "{p}");
    }
}
