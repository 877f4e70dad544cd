//! bioS rendering: six sentences per biography, one per attribute, each from a randomly chosen template.
//! The first sentence names the person in full; later ones use the pronoun (or the full name with `fullname`).
//! Augmentations (SPEC §1): `multi` M entries per person with templates re-drawn per entry, `permute` shuffles
//! the six sentences (the full name stays in the first one), `fullname` replaces pronouns with the full name.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bits;
use crate::error::GenError;
use crate::people::{sample_people, Attribute, Person};
use crate::pools::{PoolFiles, Pools};
use crate::rng::{stream, Purpose};
use crate::templates::{Piece, Templates};
use crate::tokenizer::Tokenizer;

/// The dataset part of a recipe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BioSConfig {
    /// N, the number of people.
    pub people: usize,
    /// multiM: biographies per person, templates re-drawn for each.
    pub multi: usize,
    /// Shuffle the six sentences of every biography.
    pub permute: bool,
    /// Use the full name in every sentence instead of the pronoun.
    pub fullname: bool,
    /// Biographies per token shard.
    pub shard_biographies: usize,
    /// Replacement pool files (empty: the embedded pools).
    pub pools: PoolFiles,
}

impl Default for BioSConfig {
    fn default() -> Self {
        BioSConfig {
            people: 1000,
            multi: 1,
            permute: false,
            fullname: false,
            shard_biographies: 1 << 20,
            pools: PoolFiles::default(),
        }
    }
}

impl BioSConfig {
    /// Problems with the config, all of them (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.people == 0 {
            p.push("data.people must be ≥ 1".to_string());
        }
        if self.multi == 0 {
            p.push("data.multi must be ≥ 1".to_string());
        }
        if self.multi >= 1 << 24 {
            p.push("data.multi must be < 16777216".to_string());
        }
        if self.shard_biographies == 0 {
            p.push("data.shard_biographies must be ≥ 1".to_string());
        }
        p
    }
}

/// A token span `[start, start + len)` inside a rendered biography.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// One biography as tokens, with where the knowledge sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedBio {
    pub tokens: Vec<u32>,
    /// The full name at the start of the biography.
    pub name: Span,
    /// The value of each attribute, indexed by [`Attribute::index`].
    pub values: [Span; 6],
    /// The first pronoun token, if the text shows one.
    pub pronoun: Option<usize>,
    /// Sentence order used (attribute indices).
    pub order: [usize; 6],
}

/// A bioS dataset in memory: pools, templates, tokenizer and people. Everything is a pure function of the
/// config and the seed.
pub struct BioS {
    pub config: BioSConfig,
    pub seed: u64,
    pub pools: Pools,
    pub templates: Templates,
    pub tokenizer: Tokenizer,
    pub people: Vec<Person>,
    /// Pre-tokenized values: [person][attribute] and names.
    name_tokens: Vec<Vec<u32>>,
    value_tokens: Vec<[Vec<u32>; 6]>,
    /// Pre-tokenized template pieces: [attribute][template] → pieces with word ids.
    template_ids: Vec<Vec<Vec<TokPiece>>>,
}

#[derive(Clone, Copy, Debug)]
enum TokPiece {
    Subject,
    Value,
    Word(u32),
}

impl BioS {
    pub fn build(config: &BioSConfig, seed: u64) -> Result<Self, GenError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let pools = Pools::load(&config.pools)?;
        let templates = Templates::embedded();
        let tokenizer = Tokenizer::for_bios(&pools, &templates);
        let people = sample_people(config.people, seed, &pools)?;
        let name_tokens = people
            .iter()
            .map(|p| tokenizer.encode(&p.full_name(&pools), "a full name"))
            .collect::<Result<Vec<_>, _>>()?;
        let value_tokens = people
            .iter()
            .map(|p| -> Result<[Vec<u32>; 6], GenError> {
                let mut out: [Vec<u32>; 6] = Default::default();
                for a in Attribute::ALL {
                    out[a.index()] = tokenizer.encode(&p.value(a, &pools), a.name())?;
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let template_ids = templates
            .by_attribute
            .iter()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        t.pieces
                            .iter()
                            .map(|p| match p {
                                Piece::Subject => TokPiece::Subject,
                                Piece::Value => TokPiece::Value,
                                Piece::Word(w) => TokPiece::Word(
                                    tokenizer
                                        .id(w)
                                        .expect("template words are in the vocabulary"),
                                ),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Ok(BioS {
            config: config.clone(),
            seed,
            pools,
            templates,
            tokenizer,
            people,
            name_tokens,
            value_tokens,
            template_ids,
        })
    }

    pub fn n_biographies(&self) -> usize {
        self.people.len() * self.config.multi
    }

    /// Whether the pronoun appears in the text (not with `fullname`).
    pub fn pronoun_in_text(&self) -> bool {
        !self.config.fullname
    }

    pub fn log2_n0(&self) -> f64 {
        self.pools.n0().log2()
    }

    pub fn log2_s0(&self) -> f64 {
        bits::log2_s0(&self.pools, self.pronoun_in_text())
    }

    /// Bits a perfect model of this dataset stores (Def. 4.3 with p1 = ln N, p2 = 0).
    pub fn perfect_recall_bits(&self) -> f64 {
        bits::bios_perfect_bits(self.people.len(), self.log2_n0(), self.log2_s0())
    }

    /// Template choices and sentence order of entry `entry` of person `person`, from its own stream.
    fn choices(&self, person: usize, entry: usize) -> ([usize; 6], [usize; 6]) {
        let mut rng = stream(
            self.seed,
            Purpose::Templates,
            ((person as u64) << 24) | entry as u64,
        );
        let mut tmpl = [0usize; 6];
        for a in Attribute::ALL {
            tmpl[a.index()] = rng.random_range(0..self.template_ids[a.index()].len());
        }
        let mut order = [0, 1, 2, 3, 4, 5];
        if self.config.permute {
            order.shuffle(&mut rng);
        }
        (tmpl, order)
    }

    /// Biography `entry` (0..multi) of person `person`, as used in training.
    pub fn render(&self, person: usize, entry: usize) -> RenderedBio {
        let (tmpl, order) = self.choices(person, entry);
        self.render_with(person, tmpl, order)
    }

    /// The evaluation biography of a person: entry 0's templates in canonical order (employer before its city),
    /// so that every value is predicted after the name and the sentence's prefix (SPEC §4).
    pub fn render_eval(&self, person: usize) -> RenderedBio {
        let (tmpl, _) = self.choices(person, 0);
        self.render_with(person, tmpl, [0, 1, 2, 3, 4, 5])
    }

    fn render_with(&self, person: usize, tmpl: [usize; 6], order: [usize; 6]) -> RenderedBio {
        let p = &self.people[person];
        let pronoun = self
            .tokenizer
            .id(p.gender.pronoun())
            .expect("pronouns are in the vocabulary");
        let name = &self.name_tokens[person];
        let mut tokens = Vec::with_capacity(80);
        let mut values = [Span { start: 0, len: 0 }; 6];
        let mut name_span = Span { start: 0, len: 0 };
        let mut pronoun_pos = None;
        for (k, &a) in order.iter().enumerate() {
            for piece in &self.template_ids[a][tmpl[a]] {
                match *piece {
                    TokPiece::Subject => {
                        if k == 0 || self.config.fullname {
                            if k == 0 {
                                name_span = Span {
                                    start: tokens.len(),
                                    len: name.len(),
                                };
                            }
                            tokens.extend_from_slice(name);
                        } else {
                            if pronoun_pos.is_none() {
                                pronoun_pos = Some(tokens.len());
                            }
                            tokens.push(pronoun);
                        }
                    }
                    TokPiece::Value => {
                        let v = &self.value_tokens[person][a];
                        values[a] = Span {
                            start: tokens.len(),
                            len: v.len(),
                        };
                        tokens.extend_from_slice(v);
                    }
                    TokPiece::Word(w) => tokens.push(w),
                }
            }
        }
        RenderedBio {
            tokens,
            name: name_span,
            values,
            pronoun: pronoun_pos,
            order,
        }
    }

    /// The value tokens of a person's attribute.
    pub fn value_tokens(&self, person: usize, attr: Attribute) -> &[u32] {
        &self.value_tokens[person][attr.index()]
    }
}
