//! bioD(N, K, C, D, L, T) — Part 3.3, Def. 2.2: biographies whose knowledge has an exactly known bit count.
//!
//! - A vocabulary of T *value tokens* `v0 … v{T-1}`.
//! - For each of K attributes (`a1 … aK`) a *value set* of D distinct values, each a sequence of L value tokens,
//!   drawn uniformly without replacement from the T^L sequences (the `Corpus` stream with index
//!   [`VALUE_SET_STREAM`]` | k`, fixed by the seed; the set's j-th member is the j-th sequence drawn).
//! - Person i has a unique full name (person i of [`Population`]) and, for each attribute, a value made of C
//!   chunks, each chunk uniform over that attribute's D values, independently (the `Corpus` stream with index
//!   `i`). A value is therefore C·L value tokens.
//!
//! Rendering, one fixed template (every sentence ends with `;`, the name with `.`):
//! ```text
//! First Middle Last . a3 : v12 v7 v40 v3 ; a1 : v5 v5 v9 v0 ; a2 : … ; a4 : … ;
//! ```
//! i.e. the 3 name tokens, `.`, then for each attribute `a{k+1} :`, its C·L value tokens and `;` — 4 + K·(3 + C·L)
//! tokens. With `permute` the K sentences are shuffled for every emission (the `Templates` stream with index
//! `person << 24 | emission`); the name always comes first. Without `permute` the order is canonical
//! (a1, a2, …, aK). Document b of the stream `bio` is emission `b % multi` of person `b / multi` (person-major).
//!
//! The evaluation rendering ([`BioD::render_eval`]) is canonical and returns the token spans of the name, of
//! each attribute's whole value and of each value's first chunk, from which an evaluator computes (in nats, losses
//! summed over a span's tokens): p1 = mean over people of the name's loss at the start of a biography;
//! p2 = mean over (person, attribute) of the whole value's loss; p3 = mean over (person, attribute) of the first
//! chunk's loss — both conditioned on the name and the sentence's prefix `a{k} :`.
//!
//! Bits (SPEC §4, Def. 4.1), [`biod_bits`]: N·log2(N0/e^{p1}) + N·K·log2(D^C/e^{p2}) + K·D·log2(T^L/(D·e^{p3})).
//! The perfect model (every person's values recalled) has p1 = ln N, p2 = 0, p3 = 0 and reaches the upper bound
//! N·log2(N0/N) + N·K·C·log2 D + K·D·log2(T^L/D) (the three terms are `name_bits`, `value_bits` and
//! `value_set_bits` in the manifest's facts).
//!
//! Ground truth: `people.jsonl`, one row per person: `{"id", "name", "chunks": [[j, …] per attribute],
//! "values": ["v.. v..", …] per attribute}` (attributes in order a1…aK, chunks as indices into the attribute's
//! value set). The value sets themselves go into the manifest's facts (`value_sets`, one list of D strings per
//! attribute) when they hold at most [`VALUE_SETS_IN_MANIFEST`] tokens; otherwise `value_sets` is null and the
//! sets are rebuilt by [`BioD::build`] from the config and the seed (and every value a person holds is in the
//! truth table as text).

use std::collections::{BTreeSet, HashSet};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bios::Span;
use crate::corpus::{Corpus, Exposure, StreamSpec, StreamSummary};
use crate::error::GenError;
use crate::people::Population;
use crate::pools::{PoolFiles, Pools, PAPER_FIRST, PAPER_LAST, PAPER_MIDDLE};
use crate::rng::{stream, Purpose};
use crate::tokenizer::{Tokenizer, EOT_STR};

/// Index bit of the `Corpus` streams that draw the value sets (stream `VALUE_SET_STREAM | k` for attribute k);
/// the people's chunk streams use indices below it.
pub const VALUE_SET_STREAM: u64 = 1 << 62;
/// Value sets of at most this many tokens (K·D·L) are written into the manifest's facts.
pub const VALUE_SETS_IN_MANIFEST: usize = 1 << 16;
/// Emissions per person must stay below this (the emission is the low 24 bits of its stream index).
pub const MAX_MULTI: usize = 1 << 24;
/// The most attributes (and chunks per value) a bioD config may have.
pub const MAX_ATTRIBUTES: usize = 1 << 12;
/// The largest value vocabulary (value tokens `v0…`) of a bioD config.
pub const MAX_VALUE_VOCAB: usize = 1 << 20;
/// Value-set tokens (K·D·L) held in memory must stay at or below this.
pub const MAX_VALUE_SET_TOKENS: u128 = 1 << 28;

/// The words of the fixed template, in vocabulary order after `<eot>`.
const NAME_END: &str = ".";
const COLON: &str = ":";
const SENTENCE_END: &str = ";";

/// The dataset part of a bioD recipe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BioDConfig {
    /// N, the number of people.
    pub people: usize,
    /// K, attributes per person.
    pub attributes: usize,
    /// C, chunks per value.
    pub chunks: usize,
    /// D, the size of each attribute's value set.
    pub values: usize,
    /// L, value tokens per chunk.
    pub value_tokens: usize,
    /// T, the number of value tokens in the vocabulary.
    pub vocab: usize,
    /// Emissions (biographies) materialized per person.
    pub multi: usize,
    /// Shuffle the K sentences of every emission (the name stays first).
    pub permute: bool,
    /// Replacement name pool files (only first, middle and last names are used).
    pub pools: PoolFiles,
    /// Keep only the first `[first, middle, last]` names of the pools (empty: all). Smaller pools shrink the
    /// vocabulary, so that a small model's embedding does not dwarf the rest (N0 shrinks with them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name_pool_sizes: Vec<usize>,
}

impl Default for BioDConfig {
    fn default() -> Self {
        BioDConfig {
            people: 1000,
            attributes: 4,
            chunks: 2,
            values: 100,
            value_tokens: 2,
            vocab: 200,
            multi: 1,
            permute: true,
            pools: PoolFiles::default(),
            name_pool_sizes: Vec::new(),
        }
    }
}

/// T^L, or None when it does not fit in 128 bits (then it is certainly enough).
fn value_space(t: usize, l: usize) -> Option<u128> {
    (t as u128).checked_pow(u32::try_from(l).ok()?)
}

impl BioDConfig {
    /// Problems with the config, all of them (empty when valid). N > N0 is checked here against the embedded
    /// name pools, and by [`BioD::build`] against replacement pool files.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let positive = [
            ("people", self.people),
            ("attributes", self.attributes),
            ("chunks", self.chunks),
            ("values", self.values),
            ("value_tokens", self.value_tokens),
            ("vocab", self.vocab),
            ("multi", self.multi),
        ];
        for (key, v) in positive {
            if v == 0 {
                p.push(format!("data.{key} must be ≥ 1"));
            }
        }
        // Upper bounds far above any experiment's, so that no size derived from them can overflow or allocate
        // beyond a machine (a vocabulary of 2^63 once overflowed a Vec's capacity while building).
        for (key, v, max) in [
            ("people", self.people, crate::MAX_PEOPLE),
            ("attributes", self.attributes, MAX_ATTRIBUTES),
            ("chunks", self.chunks, MAX_ATTRIBUTES),
            ("value_tokens", self.value_tokens, 256),
            ("vocab", self.vocab, MAX_VALUE_VOCAB),
        ] {
            if v > max {
                p.push(format!("data.{key} = {v} must be ≤ {max}"));
            }
        }
        if self.multi >= MAX_MULTI {
            p.push(format!("data.multi = {} must be < {MAX_MULTI}", self.multi));
        }
        if self.values > 0 && self.vocab > 0 && self.value_tokens > 0 {
            let enough = value_space(self.vocab, self.value_tokens)
                .is_none_or(|space| space >= 2 * self.values as u128);
            if !enough {
                p.push(format!(
                    "data.values = {}: not enough distinct values — data.vocab^data.value_tokens = {}^{} must be \
                     ≥ 2·data.values",
                    self.values, self.vocab, self.value_tokens
                ));
            }
        }
        let set_tokens = self.attributes as u128 * self.values as u128 * self.value_tokens as u128;
        if set_tokens > MAX_VALUE_SET_TOKENS {
            p.push(format!(
                "data.attributes × data.values × data.value_tokens = {set_tokens} value-set tokens: at most \
                 {MAX_VALUE_SET_TOKENS}"
            ));
        }
        let names = [
            &self.pools.first_names,
            &self.pools.middle_names,
            &self.pools.last_names,
        ];
        if !self.name_pool_sizes.is_empty()
            && (self.name_pool_sizes.len() != 3 || self.name_pool_sizes.contains(&0))
        {
            p.push(format!(
                "data.name_pool_sizes = {:?}: give three positive sizes [first, middle, last]",
                self.name_pool_sizes
            ));
        }
        if names.iter().all(|f| f.is_empty()) {
            let sizes = match self.name_pool_sizes.as_slice() {
                [f, m, l] => [
                    (*f).min(PAPER_FIRST),
                    (*m).min(PAPER_MIDDLE),
                    (*l).min(PAPER_LAST),
                ],
                _ => [PAPER_FIRST, PAPER_MIDDLE, PAPER_LAST],
            };
            let n0 = (sizes[0] * sizes[1] * sizes[2]) as u128;
            if self.people as u128 > n0 {
                p.push(format!(
                    "data.people = {} is more than the N0 = {n0} possible full names; use larger name pools",
                    self.people
                ));
            }
        }
        let unused = [
            ("cities", &self.pools.cities),
            ("universities", &self.pools.universities),
            ("majors", &self.pools.majors),
            ("companies", &self.pools.companies),
        ];
        for (key, f) in unused {
            if !f.is_empty() {
                p.push(format!(
                    "data.pools.{key}: bioD uses only the name pools (first_names, middle_names, last_names)"
                ));
            }
        }
        p
    }
}

/// Bits of knowledge of a bioD model (Part 3.3, Def. 4.1), from the losses in nats: p1 = mean loss of a name
/// (summed over its tokens) at the start of a biography, p2 = mean loss of one attribute's whole value (C chunks)
/// and p3 = mean loss of one value's first chunk, both means over (person, attribute):
/// N·log2(N0/e^{p1}) + N·K·log2(D^C/e^{p2}) + K·D·log2(T^L/(D·e^{p3})).
#[allow(clippy::too_many_arguments)]
pub fn biod_bits(
    n: usize,
    log2_n0: f64,
    k: usize,
    c: usize,
    d: usize,
    l: usize,
    t: usize,
    p1: f64,
    p2: f64,
    p3: f64,
) -> f64 {
    biod_bit_terms(n, log2_n0, k, c, d, l, t, p1, p2, p3)
        .iter()
        .sum()
}

/// The three terms of [`biod_bits`]: [name bits, value bits, value-set bits].
#[allow(clippy::too_many_arguments)]
pub fn biod_bit_terms(
    n: usize,
    log2_n0: f64,
    k: usize,
    c: usize,
    d: usize,
    l: usize,
    t: usize,
    p1: f64,
    p2: f64,
    p3: f64,
) -> [f64; 3] {
    let ln2 = std::f64::consts::LN_2;
    let (n, k, c, d, l, t) = (n as f64, k as f64, c as f64, d as f64, l as f64, t as f64);
    [
        n * (log2_n0 - p1 / ln2),
        n * k * (c * d.log2() - p2 / ln2),
        k * d * (l * t.log2() - d.log2() - p3 / ln2),
    ]
}

/// The perfect-recall upper bound (p1 = ln N, p2 = 0, p3 = 0), as its three terms:
/// [N·log2(N0/N), N·K·C·log2 D, K·D·log2(T^L/D)].
pub fn biod_perfect_terms(
    n: usize,
    log2_n0: f64,
    k: usize,
    c: usize,
    d: usize,
    l: usize,
    t: usize,
) -> [f64; 3] {
    biod_bit_terms(n, log2_n0, k, c, d, l, t, (n as f64).ln(), 0.0, 0.0)
}

/// One person of a bioD dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BioDPerson {
    /// Indices into the first, middle and last name pools.
    pub name: [u32; 3],
    /// Chunk choices, attribute-major: `chunks[k * C + c]` is the index (into attribute k's value set) of chunk c
    /// of attribute k's value.
    pub chunks: Vec<u32>,
}

/// One bioD biography as tokens, with where the knowledge sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedBioD {
    pub tokens: Vec<u32>,
    /// The full name (3 tokens) at the start of the biography.
    pub name: Span,
    /// Each attribute's whole value (C·L tokens), indexed by attribute (0 = `a1`).
    pub values: Vec<Span>,
    /// Each attribute's first chunk (L tokens), indexed by attribute.
    pub first_chunks: Vec<Span>,
    /// Sentence order used (attribute indices).
    pub order: Vec<usize>,
}

/// A bioD dataset in memory: tokenizer, population and value sets. Everything is a pure function of the config
/// and the seed; people are generated on demand from their own streams.
pub struct BioD {
    pub config: BioDConfig,
    pub seed: u64,
    pub pools: Pools,
    pub tokenizer: Tokenizer,
    population: Population,
    /// Token ids of the value sets, flat: value j of attribute k is
    /// `value_sets[(k * D + j) * L ..][..L]`.
    value_sets: Vec<u32>,
    /// Token id of `v0` (value token t has id `value_base + t`).
    value_base: u32,
    /// Token id of `a1`.
    attr_base: u32,
    name_end: u32,
    colon: u32,
    sentence_end: u32,
    /// Token ids of the first, middle and last name pools.
    name_ids: [Vec<u32>; 3],
}

impl BioD {
    pub fn build(config: &BioDConfig, seed: u64) -> Result<Self, GenError> {
        let mut problems = config.problems();
        let truncate = |mut p: Pools| -> Result<Pools, GenError> {
            if let [f, m, l] = config.name_pool_sizes[..] {
                for (pool, k, key) in [
                    (&mut p.first_names, f, "first"),
                    (&mut p.middle_names, m, "middle"),
                    (&mut p.last_names, l, "last"),
                ] {
                    if k > pool.len() {
                        return Err(GenError::Config(format!(
                            "data.name_pool_sizes: {k} {key} names asked, the pool has {}",
                            pool.len()
                        )));
                    }
                    pool.truncate(k);
                }
            }
            Ok(p)
        };
        let pools = if problems.is_empty() {
            Some(truncate(Pools::load(&config.pools)?)?)
        } else {
            // Load the pools anyway to report N > N0 for replacement files, but keep config problems first.
            Pools::load(&config.pools)
                .ok()
                .and_then(|p| truncate(p).ok())
        };
        if let Some(pools) = &pools {
            if config.people as f64 > pools.n0() && !problems.iter().any(|p| p.contains("N0")) {
                problems.push(format!(
                    "data.people = {} is more than the N0 = {} possible full names; use larger name pools",
                    config.people,
                    pools.n0()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let pools = pools.expect("loaded when there is no problem");
        let (k, d, l, t) = (
            config.attributes,
            config.values,
            config.value_tokens,
            config.vocab,
        );

        // Vocabulary: <eot>, the template words, a1..aK, v0..v{T-1}, then the sorted name words.
        let mut words = vec![
            EOT_STR.to_string(),
            NAME_END.to_string(),
            COLON.to_string(),
            SENTENCE_END.to_string(),
        ];
        let attr_base = words.len() as u32;
        words.extend((1..=k).map(|i| format!("a{i}")));
        let value_base = words.len() as u32;
        words.extend((0..t).map(|i| format!("v{i}")));
        let reserved: HashSet<&str> = words.iter().map(String::as_str).collect();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for pool in [&pools.first_names, &pools.middle_names, &pools.last_names] {
            for w in pool {
                if reserved.contains(w.as_str()) {
                    return Err(GenError::Config(format!(
                        "data.pools: name {w:?} is also a bioD template, attribute or value token"
                    )));
                }
                names.insert(w);
            }
        }
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        words.extend(names);
        let tokenizer = Tokenizer::from_words(words);
        let ids = |pool: &[String]| -> Vec<u32> {
            pool.iter()
                .map(|w| tokenizer.id(w).expect("name words are in the vocabulary"))
                .collect()
        };
        let name_ids = [
            ids(&pools.first_names),
            ids(&pools.middle_names),
            ids(&pools.last_names),
        ];

        // Value sets: D distinct L-token sequences per attribute, uniform without replacement (rejection
        // sampling: T^L ≥ 2·D, so at most 2 draws per value are expected).
        let value_sets: Vec<u32> = {
            use rayon::prelude::*;
            (0..k)
                .into_par_iter()
                .map(|a| {
                    let mut rng = stream(seed, Purpose::Corpus, VALUE_SET_STREAM | a as u64);
                    let mut seen: HashSet<Vec<u32>> = HashSet::with_capacity(d);
                    let mut flat = Vec::with_capacity(d * l);
                    while seen.len() < d {
                        let v: Vec<u32> = (0..l)
                            .map(|_| value_base + rng.random_range(0..t as u32))
                            .collect();
                        if !seen.contains(&v) {
                            flat.extend_from_slice(&v);
                            seen.insert(v);
                        }
                    }
                    flat
                })
                .collect::<Vec<_>>()
                .concat()
        };
        Ok(BioD {
            config: config.clone(),
            seed,
            population: Population::new(seed, &pools),
            pools,
            tokenizer,
            value_sets,
            value_base,
            attr_base,
            name_end: 1,
            colon: 2,
            sentence_end: 3,
            name_ids,
        })
    }

    pub fn n_people(&self) -> usize {
        self.config.people
    }

    /// Documents of the `bio` stream: N · multi.
    pub fn n_biographies(&self) -> u64 {
        self.config.people as u64 * self.config.multi as u64
    }

    /// Tokens of one biography, without `<eot>`: 3 + 1 + K·(3 + C·L).
    pub fn tokens_per_biography(&self) -> usize {
        let c = &self.config;
        4 + c.attributes * (3 + c.chunks * c.value_tokens)
    }

    pub fn log2_n0(&self) -> f64 {
        self.pools.n0().log2()
    }

    /// The perfect-recall bound's terms [name bits, value bits, value-set bits].
    pub fn perfect_terms(&self) -> [f64; 3] {
        let c = &self.config;
        biod_perfect_terms(
            c.people,
            self.log2_n0(),
            c.attributes,
            c.chunks,
            c.values,
            c.value_tokens,
            c.vocab,
        )
    }

    /// Bits a perfect model of this dataset stores (Def. 4.1 with p1 = ln N, p2 = 0, p3 = 0).
    pub fn perfect_recall_bits(&self) -> f64 {
        self.perfect_terms().iter().sum()
    }

    /// Token ids of value `j` of attribute `k` (L tokens).
    pub fn value(&self, k: usize, j: usize) -> &[u32] {
        let l = self.config.value_tokens;
        let at = (k * self.config.values + j) * l;
        &self.value_sets[at..at + l]
    }

    /// Value-token indices (0..T) of value `j` of attribute `k`.
    pub fn value_indices(&self, k: usize, j: usize) -> Vec<u32> {
        self.value(k, j)
            .iter()
            .map(|&t| t - self.value_base)
            .collect()
    }

    /// Token id of value token `t` (`v{t}`).
    pub fn value_token_id(&self, t: u32) -> u32 {
        self.value_base + t
    }

    /// Token id of attribute `k`'s name (`a{k+1}`).
    pub fn attribute_token_id(&self, k: usize) -> u32 {
        self.attr_base + k as u32
    }

    /// Attribute `k`'s value set as text, one string (`"v12 v7"`) per value.
    pub fn value_set_text(&self, k: usize) -> Vec<String> {
        (0..self.config.values)
            .map(|j| self.tokenizer.decode(self.value(k, j)))
            .collect()
    }

    /// Person `i`: name and chunk choices, from the person's own stream.
    pub fn person(&self, i: usize) -> BioDPerson {
        let p = self.population.person(i as u64);
        let c = &self.config;
        let mut rng = stream(self.seed, Purpose::Corpus, i as u64);
        let chunks = (0..c.attributes * c.chunks)
            .map(|_| rng.random_range(0..c.values as u32))
            .collect();
        BioDPerson {
            name: [p.first, p.middle, p.last],
            chunks,
        }
    }

    /// The full name of a person as tokens.
    pub fn name_tokens(&self, person: &BioDPerson) -> [u32; 3] {
        [0, 1, 2].map(|f| self.name_ids[f][person.name[f] as usize])
    }

    /// The full name of a person as text.
    pub fn full_name(&self, person: &BioDPerson) -> String {
        format!(
            "{} {} {}",
            self.pools.first_names[person.name[0] as usize],
            self.pools.middle_names[person.name[1] as usize],
            self.pools.last_names[person.name[2] as usize]
        )
    }

    /// Attribute `k`'s value of a person as tokens (C·L).
    pub fn value_tokens(&self, person: &BioDPerson, k: usize) -> Vec<u32> {
        let c = self.config.chunks;
        person.chunks[k * c..(k + 1) * c]
            .iter()
            .flat_map(|&j| self.value(k, j as usize).iter().copied())
            .collect()
    }

    /// Sentence order of emission `emission` of person `person`.
    pub fn order(&self, person: usize, emission: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.config.attributes).collect();
        if self.config.permute {
            let mut rng = stream(
                self.seed,
                Purpose::Templates,
                ((person as u64) << 24) | emission as u64,
            );
            order.shuffle(&mut rng);
        }
        order
    }

    /// Emission `emission` (0..multi) of person `person`, as used in training.
    pub fn render(&self, person: usize, emission: usize) -> RenderedBioD {
        let mut r = RenderedBioD {
            tokens: Vec::with_capacity(self.tokens_per_biography()),
            name: Span { start: 0, len: 0 },
            values: Vec::new(),
            first_chunks: Vec::new(),
            order: self.order(person, emission),
        };
        let p = self.person(person);
        self.render_into(
            &p,
            &r.order,
            &mut r.tokens,
            Some((&mut r.values, &mut r.first_chunks)),
        );
        r.name = Span { start: 0, len: 3 };
        r
    }

    /// The evaluation biography of a person: canonical order a1…aK, so that every value follows the name and
    /// its sentence's prefix `a{k} :` (SPEC §4). `name`, `values` and `first_chunks` are the spans of p1, p2, p3.
    pub fn render_eval(&self, person: usize) -> RenderedBioD {
        let order: Vec<usize> = (0..self.config.attributes).collect();
        let mut r = RenderedBioD {
            tokens: Vec::with_capacity(self.tokens_per_biography()),
            name: Span { start: 0, len: 3 },
            values: Vec::new(),
            first_chunks: Vec::new(),
            order,
        };
        let p = self.person(person);
        self.render_into(
            &p,
            &r.order,
            &mut r.tokens,
            Some((&mut r.values, &mut r.first_chunks)),
        );
        r
    }

    /// Appends a biography of `p` in sentence order `order` to `out`; fills the value and first-chunk spans
    /// (indexed by attribute, positions relative to the start of the biography) when asked.
    fn render_into(
        &self,
        p: &BioDPerson,
        order: &[usize],
        out: &mut Vec<u32>,
        spans: Option<(&mut Vec<Span>, &mut Vec<Span>)>,
    ) {
        let base = out.len();
        let (c, l) = (self.config.chunks, self.config.value_tokens);
        out.extend_from_slice(&self.name_tokens(p));
        out.push(self.name_end);
        let mut starts = vec![0usize; self.config.attributes];
        for &k in order {
            out.push(self.attribute_token_id(k));
            out.push(self.colon);
            starts[k] = out.len() - base;
            for &j in &p.chunks[k * c..(k + 1) * c] {
                out.extend_from_slice(self.value(k, j as usize));
            }
            out.push(self.sentence_end);
        }
        if let Some((values, firsts)) = spans {
            *values = starts
                .iter()
                .map(|&s| Span {
                    start: s,
                    len: c * l,
                })
                .collect();
            *firsts = starts.iter().map(|&s| Span { start: s, len: l }).collect();
        }
    }

    /// One row of `people.jsonl`.
    pub fn truth_json(&self, i: usize) -> serde_json::Value {
        let p = self.person(i);
        let c = self.config.chunks;
        let chunks: Vec<&[u32]> = (0..self.config.attributes)
            .map(|k| &p.chunks[k * c..(k + 1) * c])
            .collect();
        let values: Vec<String> = (0..self.config.attributes)
            .map(|k| self.tokenizer.decode(&self.value_tokens(&p, k)))
            .collect();
        serde_json::json!({
            "id": i,
            "name": self.full_name(&p),
            "chunks": chunks,
            "values": values,
        })
    }
}

impl Corpus for BioD {
    fn kind(&self) -> &'static str {
        "bioD"
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
        vec![StreamSpec {
            name: "bio".into(),
            documents: self.n_biographies(),
            prompts: false,
            materialized: true,
            about: format!(
                "bioD biographies: document b is emission b % {} of person b / {}{}",
                self.config.multi,
                self.config.multi,
                if self.config.permute {
                    ", sentences shuffled per emission"
                } else {
                    ", sentences in canonical order"
                }
            ),
        }]
    }

    fn document_person(&self, _stream: usize, doc: u64) -> Option<u64> {
        Some(doc / self.config.multi as u64)
    }

    fn render(&self, stream: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        debug_assert_eq!(stream, 0, "bioD has one stream");
        let multi = self.config.multi as u64;
        let (person, emission) = ((doc / multi) as usize, (doc % multi) as usize);
        let p = self.person(person);
        let order = self.order(person, emission);
        self.render_into(&p, &order, out, None);
        0
    }

    fn exposure(&self, measured: &[StreamSummary]) -> Exposure {
        let tpd = measured
            .iter()
            .find(|s| s.name == "bio")
            .map(|s| s.tokens_per_document)
            .unwrap_or((self.tokens_per_biography() + 1) as f64);
        Exposure {
            stream: "bio".into(),
            tokens: self.config.people as f64 * tpd,
            unit: "one biography per person".into(),
        }
    }

    fn facts(&self, measured: &[StreamSummary]) -> serde_json::Value {
        let c = &self.config;
        let [name_bits, value_bits, value_set_bits] = self.perfect_terms();
        let total = name_bits + value_bits + value_set_bits;
        let tpd = measured
            .iter()
            .find(|s| s.name == "bio")
            .map(|s| s.tokens_per_document);
        let set_tokens = c.attributes * c.values * c.value_tokens;
        let value_sets = (set_tokens <= VALUE_SETS_IN_MANIFEST).then(|| {
            (0..c.attributes)
                .map(|k| self.value_set_text(k))
                .collect::<Vec<_>>()
        });
        serde_json::json!({
            "log2_n0": self.log2_n0(),
            "people": c.people,
            "attributes": c.attributes,
            "chunks": c.chunks,
            "values": c.values,
            "value_tokens": c.value_tokens,
            "vocab": c.vocab,
            "name_bits": name_bits,
            "value_bits": value_bits,
            "value_set_bits": value_set_bits,
            "perfect_recall_bits": total,
            "bits_per_person": total / c.people as f64,
            "perfect_p1": (c.people as f64).ln(),
            "perfect_p2": 0.0,
            "perfect_p3": 0.0,
            "losses": "nats summed over a span's tokens: p1 = name at the start of a biography (mean over people); \
                       p2 = one attribute's whole value, p3 = its first chunk (means over person and attribute), \
                       both after the name and the prefix `a{k} :`, canonical order",
            "tokens_per_biography": self.tokens_per_biography(),
            "tokens_per_document": tpd,
            "template": "First Middle Last . a{k} : <C·L value tokens> ; … (K sentences)",
            "value_sets": value_sets,
        })
    }

    fn truth(&self) -> Option<(&'static str, u64)> {
        Some(("people.jsonl", self.config.people as u64))
    }

    fn truth_row(&self, row: u64, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, &self.truth_json(row as usize)).expect("row serialises");
        out.push(b'\n');
    }
}
