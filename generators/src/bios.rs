//! bioS (Part 3.1 / 3.3): six sentences per biography, one per attribute, each from a randomly chosen template.
//! The first sentence names the person in full; later ones use the pronoun (or the full name with `fullname`).
//!
//! Augmentations (SPEC §1), combinable (the paper's 16 variants and more):
//! - `multi = M`: M biographies per person, templates re-drawn for each;
//! - `permute`: shuffle the six sentences (the full name stays in the first sentence);
//! - `permutations = P` (permuteP): each biography is emitted in P shuffled orders of the same templates;
//! - `fullname`: the full name in every sentence instead of the pronoun;
//! - `name_sentence = k` ("reverse" variants): the full name moves to sentence k (0-based); the sentences before
//!   it use the pronoun, so the attributes stated there come before the person is named;
//! - `fresh` (bioS(N) of Part 3.3): a fresh template choice and sentence order every time a biography is
//!   emitted, rendered on the fly while training (multi∞ + permute); `multi = 1, permute = false` is
//!   bioS^simple(N), one fixed biography per person.
//!
//! The same dataset can carry QA and Part 3.2 task streams ([`crate::tasks`]), a celebrity population with its
//! own augmentation, and a junk population rendered on the fly with an optional domain token before every useful
//! biography (Part 3.3 §10). Person `i` and biography `(i, entry, permutation)` are pure functions of the seed, so
//! everything renders in parallel and out of order with the same bytes.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bits;
use crate::corpus::{Corpus, Exposure, MixEntry, StreamSpec, StreamSummary};
use crate::error::GenError;
use crate::people::{Attribute, Person, Population};
use crate::pools::{PoolFiles, Pools, DAYS, FIRST_YEAR, MONTHS, YEARS};
use crate::rng::{mix64, stream, Purpose};
use crate::tasks::{QaConfig, TaskConfig, Tasks};
use crate::templates::{Piece, Templates};
use crate::tokenizer::Tokenizer;

/// The domain token put before every useful biography when `junk.domain_token` is on.
pub const DOMAIN_TOKEN: &str = "<bioS>";

/// A second, heavily augmented population trained in the same corpus (Part 3.1 §6, celebrity vs minority).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CelebrityConfig {
    /// People in the celebrity population (0: none). They are people `N..N+celebrities` of the population.
    pub people: usize,
    pub multi: usize,
    pub permute: bool,
    pub permutations: usize,
    pub fullname: bool,
    /// Share of training windows drawn from the celebrity stream.
    pub share: f64,
}

impl Default for CelebrityConfig {
    fn default() -> Self {
        CelebrityConfig {
            people: 0,
            multi: 5,
            permute: true,
            permutations: 1,
            fullname: false,
            share: 0.5,
        }
    }
}

/// A junk population rendered on the fly and never stored (Part 3.3 §10).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JunkConfig {
    /// People in the junk population (0: none), e.g. 100,000,000. Each emission of a junk biography draws
    /// fresh templates and a fresh sentence order.
    pub people: u64,
    /// Share of training windows drawn from junk (e.g. 0.875 for 7/8 of the tokens).
    pub share: f64,
    /// Put [`DOMAIN_TOKEN`] before every useful biography (the bioS population, not the junk).
    pub domain_token: bool,
}

impl Default for JunkConfig {
    fn default() -> Self {
        JunkConfig {
            people: 0,
            share: 0.875,
            domain_token: false,
        }
    }
}

/// The dataset part of a recipe for biographies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BioSConfig {
    /// N, the number of people.
    pub people: usize,
    /// multiM: biographies per person, templates re-drawn for each.
    pub multi: usize,
    /// Shuffle the six sentences of every biography.
    pub permute: bool,
    /// permuteP: shuffled copies of each biography (same templates, P orders); needs `permute`.
    pub permutations: usize,
    /// Use the full name in every sentence instead of the pronoun.
    pub fullname: bool,
    /// The sentence (0..6) that carries the full name; > 0 gives the "reverse" variants.
    pub name_sentence: usize,
    /// bioS(N): a fresh biography (templates and order) at every emission, rendered on the fly while training.
    pub fresh: bool,
    /// Biographies per token shard (a multiple of 256).
    pub shard_biographies: usize,
    /// Replacement pool files (empty: the embedded pools).
    pub pools: PoolFiles,
    /// Six questions per person, split into P_train / P_test.
    pub qa: QaConfig,
    /// Part 3.2 knowledge-manipulation tasks.
    pub tasks: Vec<TaskConfig>,
    pub celebrity: CelebrityConfig,
    pub junk: JunkConfig,
}

impl Default for BioSConfig {
    fn default() -> Self {
        BioSConfig {
            people: 1000,
            multi: 1,
            permute: false,
            permutations: 1,
            fullname: false,
            name_sentence: 0,
            fresh: false,
            shard_biographies: 1 << 20,
            pools: PoolFiles::default(),
            qa: QaConfig::default(),
            tasks: Vec::new(),
            celebrity: CelebrityConfig::default(),
            junk: JunkConfig::default(),
        }
    }
}

fn share_ok(x: f64) -> bool {
    (0.0..1.0).contains(&x)
}

/// Problems of one population's augmentation (`at` is its key prefix, e.g. `data.celebrity`).
fn augmentation_problems(
    at: &str,
    multi: usize,
    permutations: usize,
    permute: bool,
    p: &mut Vec<String>,
) {
    if multi == 0 || multi >= 1 << 24 {
        p.push(format!("{at}.multi must be in 1..16777216"));
    }
    if permutations == 0 || permutations >= 1 << 16 {
        p.push(format!("{at}.permutations must be in 1..65536"));
    }
    if permutations > 1 && !permute {
        p.push(format!(
            "{at}.permutations > 1 shuffles sentences: set {at}.permute = true"
        ));
    }
}

impl BioSConfig {
    /// Problems with the config, all of them (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.people == 0 || self.people > crate::MAX_PEOPLE {
            p.push(format!(
                "data.people = {} must be in 1..={}",
                self.people,
                crate::MAX_PEOPLE
            ));
        }
        if self.celebrity.people > crate::MAX_PEOPLE {
            p.push(format!(
                "data.celebrity.people = {} must be ≤ {}",
                self.celebrity.people,
                crate::MAX_PEOPLE
            ));
        }
        if self.junk.people > crate::MAX_PEOPLE as u64 {
            p.push(format!(
                "data.junk.people = {} must be ≤ {}",
                self.junk.people,
                crate::MAX_PEOPLE
            ));
        }
        augmentation_problems("data", self.multi, self.permutations, self.permute, &mut p);
        if self.name_sentence >= 6 {
            p.push(
                "data.name_sentence must be in 0..6 (the sentence that names the person)".into(),
            );
        }
        if self.fullname && self.name_sentence > 0 {
            p.push("data.name_sentence > 0 moves the full name to a later sentence, but data.fullname puts it in every sentence: set one of them".into());
        }
        if self.fresh && (self.multi > 1 || self.permutations > 1) {
            p.push("data.fresh draws a new biography at every emission: leave data.multi and data.permutations at 1".into());
        }
        if self.shard_biographies == 0
            || !self
                .shard_biographies
                .is_multiple_of(crate::corpus::BLOCK_DOCS)
        {
            p.push(format!(
                "data.shard_biographies must be a positive multiple of {}",
                crate::corpus::BLOCK_DOCS
            ));
        }
        let c = &self.celebrity;
        if c.people > 0 {
            augmentation_problems("data.celebrity", c.multi, c.permutations, c.permute, &mut p);
            if !(c.share > 0.0 && c.share < 1.0) {
                p.push("data.celebrity.share must be in (0, 1)".into());
            }
        }
        if self.junk.people > 0 && !(self.junk.share > 0.0 && self.junk.share < 1.0) {
            p.push("data.junk.share must be in (0, 1)".into());
        }
        if self.junk.people == 0 && self.junk.domain_token {
            p.push("data.junk.domain_token needs a junk population (data.junk.people > 0)".into());
        }
        let mut taken = 0.0;
        if c.people > 0 {
            taken += c.share;
        }
        if self.junk.people > 0 {
            taken += self.junk.share;
        }
        if self.qa.mix_ratio > 0.0 {
            taken += self.qa.mix_ratio;
        }
        if !share_ok(taken) {
            p.push(format!(
                "the shares of windows taken by QA ({}), celebrities and junk sum to {taken}: the biographies need some",
                self.qa.mix_ratio
            ));
        }
        p.extend(self.qa.problems());
        if self.qa.train_population == crate::tasks::QaPopulation::Celebrity && c.people == 0 {
            p.push(
                "data.qa.train_population = \"celebrity\" needs a celebrity population (data.celebrity.people > 0)"
                    .into(),
            );
        }
        for (i, t) in self.tasks.iter().enumerate() {
            p.extend(t.problems(i));
        }
        let mut names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            p.push(format!("data.tasks: two tasks are named {:?}", w[0]));
        }
        p
    }

    /// Biographies per person in the bio stream.
    pub fn per_person(&self) -> usize {
        self.multi * self.permutations
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
    /// The first full name in the biography.
    pub name: Span,
    /// The value of each attribute, indexed by [`Attribute::index`].
    pub values: [Span; 6],
    /// The first pronoun token, if the text shows one.
    pub pronoun: Option<usize>,
    /// Sentence order used (attribute indices).
    pub order: [usize; 6],
}

/// Pool values as token ids, flat: value `i` is `tokens[offsets[i]..offsets[i+1]]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokList {
    tokens: Vec<u32>,
    offsets: Vec<u32>,
}

impl TokList {
    fn build<'a>(
        values: impl Iterator<Item = &'a str>,
        tok: &Tokenizer,
        what: &str,
    ) -> Result<Self, GenError> {
        let mut t = TokList {
            tokens: Vec::new(),
            offsets: vec![0],
        };
        for v in values {
            t.tokens.extend(tok.encode(v, what)?);
            t.offsets.push(t.tokens.len() as u32);
        }
        Ok(t)
    }

    pub(crate) fn get(&self, i: usize) -> &[u32] {
        &self.tokens[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

#[derive(Clone, Copy, Debug)]
enum TokPiece {
    Subject,
    Value,
    Word(u32),
}

/// The pools, pre-tokenized, and the template pieces as token ids: everything rendering needs.
pub(crate) struct Tokens {
    pub(crate) first: Vec<u32>,
    pub(crate) middle: Vec<u32>,
    pub(crate) last: Vec<u32>,
    pub(crate) day: Vec<u32>,
    pub(crate) month: Vec<u32>,
    pub(crate) year: Vec<u32>,
    pub(crate) city: TokList,
    pub(crate) university: TokList,
    pub(crate) major: TokList,
    pub(crate) company: TokList,
    pub(crate) company_city: Vec<usize>,
    pub(crate) pronoun: [u32; 2],
    templates: Vec<Vec<Vec<TokPiece>>>,
    domain: Option<u32>,
}

/// Rendering options of one population.
#[derive(Clone, Copy, Debug)]
struct Style {
    fullname: bool,
    name_sentence: usize,
    domain: bool,
}

/// A bioS dataset: pools, templates, tokenizer and the population. Everything is a pure function of the config
/// and the seed; no table of people is held.
pub struct BioS {
    pub config: BioSConfig,
    pub seed: u64,
    pub pools: Pools,
    pub templates: Templates,
    pub tokenizer: Tokenizer,
    pub population: Population,
    pub(crate) tok: Tokens,
    pub(crate) tasks: Tasks,
}

/// Streams of a bioS dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamKind {
    Bio,
    Celebrity,
    Junk,
    Task(usize),
}

impl BioS {
    pub fn build(config: &BioSConfig, seed: u64) -> Result<Self, GenError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(GenError::Config(problems.join("; ")));
        }
        let pools = Pools::load(&config.pools)?;
        let population = Population::new(seed, &pools);
        let needed = config.people as u64 + config.celebrity.people as u64 + config.junk.people;
        if needed > population.capacity() {
            return Err(GenError::Config(format!(
                "{needed} people (data.people + data.celebrity.people + data.junk.people) but the name pools give only {} distinct full names",
                population.capacity()
            )));
        }
        let templates = Templates::embedded();
        let tasks = Tasks::new(config, seed, &pools)?;
        let mut extra: Vec<String> = tasks.words();
        if config.junk.domain_token {
            extra.push(DOMAIN_TOKEN.into());
        }
        let tokenizer = Tokenizer::for_bios(&pools, &templates, &extra);
        let id = |w: &str| tokenizer.id(w).expect("in the closed vocabulary");
        let names = |v: &[String]| v.iter().map(|w| id(w)).collect::<Vec<u32>>();
        let tok = Tokens {
            first: names(&pools.first_names),
            middle: names(&pools.middle_names),
            last: names(&pools.last_names),
            day: (1..=DAYS).map(|d| id(&d.to_string())).collect(),
            month: MONTHS.iter().map(|m| id(m)).collect(),
            year: (0..YEARS)
                .map(|y| id(&(FIRST_YEAR + y).to_string()))
                .collect(),
            city: TokList::build(
                pools.cities.iter().map(String::as_str),
                &tokenizer,
                "a city",
            )?,
            university: TokList::build(
                pools.universities.iter().map(String::as_str),
                &tokenizer,
                "a university",
            )?,
            major: TokList::build(
                pools.majors.iter().map(String::as_str),
                &tokenizer,
                "a major",
            )?,
            company: TokList::build(
                pools.companies.iter().map(|c| c.name.as_str()),
                &tokenizer,
                "a company",
            )?,
            company_city: pools.companies.iter().map(|c| c.city).collect(),
            pronoun: [id("He"), id("She")],
            templates: templates
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
                                    Piece::Word(w) => TokPiece::Word(id(w)),
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect(),
            domain: config.junk.domain_token.then(|| id(DOMAIN_TOKEN)),
        };
        let tasks = tasks.tokenize(&tokenizer)?;
        Ok(BioS {
            config: config.clone(),
            seed,
            pools,
            templates,
            tokenizer,
            population,
            tok,
            tasks,
        })
    }

    pub fn n_people(&self) -> usize {
        self.config.people
    }

    /// Person `i` of the main population (`i < N`), or of the celebrity and junk populations after it.
    pub fn person(&self, i: usize) -> Person {
        self.population.person(i as u64)
    }

    /// The first `n` people (computed in parallel).
    pub fn people(&self, n: usize) -> Vec<Person> {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(|i| self.person(i)).collect()
    }

    /// Biographies of the main population in the bio stream (0 when `fresh`: they are generated on the fly).
    pub fn n_biographies(&self) -> usize {
        self.config.people * self.config.per_person()
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
        bits::bios_perfect_bits(self.config.people, self.log2_n0(), self.log2_s0())
    }

    fn style(&self) -> Style {
        Style {
            fullname: self.config.fullname,
            name_sentence: self.config.name_sentence,
            domain: self.tok.domain.is_some(),
        }
    }

    /// Templates of entry `entry` of person `person` (its own stream).
    fn templates_of(&self, person: u64, entry: u64) -> [usize; 6] {
        let mut rng = stream(self.seed, Purpose::Templates, (person << 24) | entry);
        let mut tmpl = [0usize; 6];
        for (a, t) in tmpl.iter_mut().enumerate() {
            *t = rng.random_range(0..self.tok.templates[a].len());
        }
        tmpl
    }

    /// Sentence order of permutation `perm` of entry `entry` of person `person`.
    fn order_of(&self, person: u64, entry: u64, perm: u64, permute: bool) -> [usize; 6] {
        let mut order = [0, 1, 2, 3, 4, 5];
        if permute {
            let key = mix64((person << 24) | entry) ^ perm;
            let mut rng = stream(self.seed ^ 0x006f_7264_6572, Purpose::Templates, key);
            order.shuffle(&mut rng);
        }
        order
    }

    /// Biography `entry` (0..multi) of person `person`, first permutation, as in training.
    pub fn render(&self, person: usize, entry: usize) -> RenderedBio {
        self.render_variant(person, entry, 0)
    }

    /// Biography `entry` of person `person` in permutation `perm` (0..permutations).
    pub fn render_variant(&self, person: usize, entry: usize, perm: usize) -> RenderedBio {
        self.render_keyed(person, entry as u64, perm as u64, self.config.permute)
    }

    /// The `k`-th biography of `person` in the bio stream (`k` in `0..config.per_person()`), rendered exactly as
    /// training renders document `person · multi · permutations + k` of the `bio` stream
    /// ([`Corpus::render`]): entry `(k / permutations) mod multi`, permutation `k mod permutations`, the run's
    /// templates, sentence order and style (name sentence, fullname, domain token), with the spans of the name,
    /// the values and the pronoun, like [`BioS::render_eval`]. With `fresh` it is the person's `k`-th emission
    /// (document `k · N + person`), a fresh draw the model saw once.
    pub fn render_training(&self, person: usize, k: usize) -> RenderedBio {
        let c = &self.config;
        if c.fresh {
            return self.render_keyed(person, k as u64, 0, true);
        }
        let (m, pp, k) = (c.multi as u64, c.permutations as u64, k as u64);
        self.render_keyed(person, (k / pp) % m, k % pp, c.permute)
    }

    /// Biography `(entry, perm)` of `person` in the run's style, with its spans (what [`BioS::push_bio`] emits).
    fn render_keyed(&self, person: usize, entry: u64, perm: u64, permute: bool) -> RenderedBio {
        let p = person as u64;
        let tmpl = self.templates_of(p, entry);
        let order = self.order_of(p, entry, perm, permute);
        let mut out = Vec::with_capacity(80);
        let (name, values, pronoun) =
            self.render_into(&self.person(person), tmpl, order, self.style(), &mut out);
        RenderedBio {
            tokens: out,
            name,
            values,
            pronoun,
            order,
        }
    }

    /// The evaluation biography of a person: entry 0's templates in canonical order (employer before its city),
    /// name in the first sentence, so that every value is predicted after the name and the sentence's prefix
    /// (SPEC §4). With a domain token it opens the biography, as in training.
    pub fn render_eval(&self, person: usize) -> RenderedBio {
        let tmpl = self.templates_of(person as u64, 0);
        let order = [0, 1, 2, 3, 4, 5];
        let style = Style {
            name_sentence: 0,
            ..self.style()
        };
        let mut out = Vec::with_capacity(80);
        let (name, values, pronoun) =
            self.render_into(&self.person(person), tmpl, order, style, &mut out);
        RenderedBio {
            tokens: out,
            name,
            values,
            pronoun,
            order,
        }
    }

    /// Appends the tokens of attribute `a` of `p` to `out`.
    pub(crate) fn push_value(&self, p: &Person, a: Attribute, out: &mut Vec<u32>) {
        let t = &self.tok;
        match a {
            Attribute::BirthDate => {
                out.push(t.day[p.birth_day as usize - 1]);
                out.push(t.month[p.birth_month as usize]);
                out.push(t.year[p.birth_year as usize]);
            }
            Attribute::BirthCity => out.extend_from_slice(t.city.get(p.birth_city as usize)),
            Attribute::University => out.extend_from_slice(t.university.get(p.university as usize)),
            Attribute::Major => out.extend_from_slice(t.major.get(p.major as usize)),
            Attribute::Employer => out.extend_from_slice(t.company.get(p.employer as usize)),
            Attribute::EmployerCity => {
                out.extend_from_slice(t.city.get(t.company_city[p.employer as usize]))
            }
        }
    }

    pub(crate) fn push_name(&self, p: &Person, out: &mut Vec<u32>) {
        out.push(self.tok.first[p.first as usize]);
        out.push(self.tok.middle[p.middle as usize]);
        out.push(self.tok.last[p.last as usize]);
    }

    fn render_into(
        &self,
        p: &Person,
        tmpl: [usize; 6],
        order: [usize; 6],
        style: Style,
        out: &mut Vec<u32>,
    ) -> (Span, [Span; 6], Option<usize>) {
        let pronoun = self.tok.pronoun[p.gender as usize];
        let mut values = [Span { start: 0, len: 0 }; 6];
        let mut name_span = None;
        let mut pronoun_pos = None;
        if style.domain {
            out.push(self.tok.domain.expect("domain token"));
        }
        for (k, &a) in order.iter().enumerate() {
            for piece in &self.tok.templates[a][tmpl[a]] {
                match *piece {
                    TokPiece::Subject => {
                        if k == style.name_sentence || style.fullname {
                            let start = out.len();
                            self.push_name(p, out);
                            name_span.get_or_insert(Span { start, len: 3 });
                        } else {
                            pronoun_pos.get_or_insert(out.len());
                            out.push(pronoun);
                        }
                    }
                    TokPiece::Value => {
                        let start = out.len();
                        self.push_value(p, Attribute::ALL[a], out);
                        values[a] = Span {
                            start,
                            len: out.len() - start,
                        };
                    }
                    TokPiece::Word(w) => out.push(w),
                }
            }
        }
        (
            name_span.expect("one sentence names the person"),
            values,
            pronoun_pos,
        )
    }

    /// The value tokens of a person's attribute.
    pub fn value_tokens(&self, person: usize, attr: Attribute) -> Vec<u32> {
        let mut v = Vec::new();
        self.push_value(&self.person(person), attr, &mut v);
        v
    }

    /// The full name's tokens of a person.
    pub fn name_tokens(&self, person: usize) -> Vec<u32> {
        let mut v = Vec::new();
        self.push_name(&self.person(person), &mut v);
        v
    }

    /// P_train: people `0..n_train` (people are drawn i.i.d., so this is a random split); P_test the rest.
    pub fn n_train_people(&self) -> usize {
        self.tasks.n_train
    }

    fn stream_kinds(&self) -> Vec<(StreamKind, StreamSpec)> {
        let c = &self.config;
        let mut v = vec![(
            StreamKind::Bio,
            StreamSpec {
                name: "bio".into(),
                documents: if c.fresh {
                    c.people as u64
                } else {
                    self.n_biographies() as u64
                },
                prompts: false,
                materialized: !c.fresh,
                about: format!(
                    "biographies of the {} people (multi {}, permute {}, permutations {}, fullname {}, name in sentence {}{})",
                    c.people,
                    c.multi,
                    c.permute,
                    c.permutations,
                    c.fullname,
                    c.name_sentence,
                    if c.fresh {
                        "; fresh templates and order at every emission, rendered while training"
                    } else {
                        ""
                    }
                ),
            },
        )];
        let cel = &c.celebrity;
        if cel.people > 0 {
            v.push((
                StreamKind::Celebrity,
                StreamSpec {
                    name: "celebrity".into(),
                    documents: (cel.people * cel.multi * cel.permutations) as u64,
                    prompts: false,
                    materialized: true,
                    about: format!(
                        "biographies of {} celebrities (people {}..{}; multi {}, permute {}, permutations {})",
                        cel.people,
                        c.people,
                        c.people + cel.people,
                        cel.multi,
                        cel.permute,
                        cel.permutations
                    ),
                },
            ));
        }
        if c.junk.people > 0 {
            v.push((
                StreamKind::Junk,
                StreamSpec {
                    name: "junk".into(),
                    documents: c.junk.people,
                    prompts: false,
                    materialized: false,
                    about: format!(
                        "junk: biographies of {} other people, fresh at every emission, rendered while training",
                        c.junk.people
                    ),
                },
            ));
        }
        for (i, s) in self.tasks.streams().into_iter().enumerate() {
            v.push((StreamKind::Task(i), s));
        }
        v
    }

    /// Appends a biography of `person` with emission key `(entry, perm)` in the given augmentation.
    #[allow(clippy::too_many_arguments)]
    fn push_bio(
        &self,
        person: u64,
        entry: u64,
        perm: u64,
        permute: bool,
        style: Style,
        out: &mut Vec<u32>,
    ) {
        let tmpl = self.templates_of(person, entry);
        let order = self.order_of(person, entry, perm, permute);
        self.render_into(&self.population.person(person), tmpl, order, style, out);
    }
}

impl Corpus for BioS {
    fn kind(&self) -> &'static str {
        "bioS"
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
        self.stream_kinds().into_iter().map(|s| s.1).collect()
    }

    fn document_person(&self, stream: usize, doc: u64) -> Option<u64> {
        let c = &self.config;
        Some(match self.stream_kinds()[stream].0 {
            // Emission `doc / N` of person `doc % N`.
            StreamKind::Bio if c.fresh => doc % c.people as u64,
            StreamKind::Bio => doc / (c.multi as u64 * c.permutations as u64),
            StreamKind::Celebrity => {
                let cel = &c.celebrity;
                c.people as u64 + doc / (cel.multi as u64 * cel.permutations as u64)
            }
            StreamKind::Junk => (c.people + c.celebrity.people) as u64 + doc % c.junk.people,
            StreamKind::Task(i) => self.task_person(i, doc),
        })
    }

    fn render(&self, stream: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        let c = &self.config;
        let kinds = self.stream_kinds();
        let person = || {
            self.document_person(stream, doc)
                .expect("every bioS document has a person")
        };
        match kinds[stream].0 {
            StreamKind::Bio if c.fresh => {
                // Emission `doc / N` of person `doc % N`: fresh templates and order each time.
                let n = c.people as u64;
                self.push_bio(person(), doc / n, 0, true, self.style(), out);
                0
            }
            StreamKind::Bio => {
                let (m, pp) = (c.multi as u64, c.permutations as u64);
                let entry = (doc / pp) % m;
                self.push_bio(person(), entry, doc % pp, c.permute, self.style(), out);
                0
            }
            StreamKind::Celebrity => {
                let cel = &c.celebrity;
                let (m, pp) = (cel.multi as u64, cel.permutations as u64);
                let person = person();
                let entry = (doc / pp) % m;
                let style = Style {
                    fullname: cel.fullname,
                    name_sentence: 0,
                    domain: self.tok.domain.is_some(),
                };
                self.push_bio(person, entry, doc % pp, cel.permute, style, out);
                0
            }
            StreamKind::Junk => {
                let n = c.junk.people;
                let person = person();
                let style = Style {
                    fullname: c.fullname,
                    name_sentence: 0,
                    domain: false,
                };
                self.push_bio(person, doc / n, 0, true, style, out);
                0
            }
            StreamKind::Task(i) => self.render_task(i, doc, out),
        }
    }

    fn mixture(&self) -> Vec<MixEntry> {
        let c = &self.config;
        let mut rest = 1.0;
        let mut m = Vec::new();
        if c.qa.mix_ratio > 0.0 {
            m.push(MixEntry {
                stream: "qa_train".into(),
                weight: c.qa.mix_ratio,
            });
            rest -= c.qa.mix_ratio;
        }
        if c.celebrity.people > 0 {
            m.push(MixEntry {
                stream: "celebrity".into(),
                weight: c.celebrity.share,
            });
            rest -= c.celebrity.share;
        }
        if c.junk.people > 0 {
            m.push(MixEntry {
                stream: "junk".into(),
                weight: c.junk.share,
            });
            rest -= c.junk.share;
        }
        m.insert(
            0,
            MixEntry {
                stream: "bio".into(),
                weight: rest,
            },
        );
        m
    }

    fn exposure(&self, measured: &[StreamSummary]) -> Exposure {
        let bio = &measured[0];
        Exposure {
            stream: "bio".into(),
            tokens: self.config.people as f64 * bio.tokens_per_document,
            unit: "one biography per person of the main population (measured tokens per biography, <eot> included)".into(),
        }
    }

    fn facts(&self, measured: &[StreamSummary]) -> serde_json::Value {
        let n = self.config.people;
        let pools = &self.pools;
        serde_json::json!({
            "people": n,
            "biographies": self.n_biographies(),
            "tokens_per_biography": measured[0].tokens_per_document,
            "p_train": self.tasks.n_train,
            "p_test": n - self.tasks.n_train,
            "pool_sizes": {
                "first_names": pools.first_names.len(),
                "middle_names": pools.middle_names.len(),
                "last_names": pools.last_names.len(),
                "birth_dates": pools.n_birth_dates(),
                "cities": pools.cities.len(),
                "universities": pools.universities.len(),
                "majors": pools.majors.len(),
                "companies": pools.companies.len(),
            },
            "templates_per_attribute": self.templates.by_attribute.iter().map(Vec::len).collect::<Vec<_>>(),
            "log2_n0": self.log2_n0(),
            "log2_s0": self.log2_s0(),
            "pronoun_in_text": self.pronoun_in_text(),
            "perfect_recall_bits": self.perfect_recall_bits(),
            "perfect_bits_per_person": self.perfect_recall_bits() / n as f64,
            "celebrity_people": self.config.celebrity.people,
            "celebrity_perfect_recall_bits": if self.config.celebrity.people > 0 {
                bits::bios_perfect_bits(self.config.celebrity.people, self.log2_n0(), self.log2_s0())
            } else { 0.0 },
            "junk_people": self.config.junk.people,
            "tasks": self.tasks.facts(),
            "inverse_ambiguous_people": self.inverse_ambiguity(),
        })
    }

    fn truth(&self) -> Option<(&'static str, u64)> {
        Some((
            "people.jsonl",
            (self.config.people + self.config.celebrity.people) as u64,
        ))
    }

    /// One JSON line per person, written directly: pool values hold no character JSON must escape (quotes,
    /// backslashes and control characters are refused when a pool is read), so no escaping is needed.
    fn truth_row(&self, row: u64, out: &mut Vec<u8>) {
        use std::io::Write;
        let p = self.person(row as usize);
        let n = self.config.people as u64;
        let pools = &self.pools;
        let company = &pools.companies[p.employer as usize];
        let population = if row < n { "main" } else { "celebrity" };
        let split = match (row < n, (row as usize) < self.tasks.n_train) {
            _ if self.tasks.qa_celebrity.is_some() => {
                if row < n {
                    r#","split":"p_test""#
                } else {
                    r#","split":"p_train""#
                }
            }
            (false, _) => "",
            (true, true) => r#","split":"p_train""#,
            (true, false) => r#","split":"p_test""#,
        };
        write!(
            out,
            r#"{{"id":{row},"population":"{population}"{split},"name":"{} {} {}","pronoun":"{}","birth_date":"{} {} {}","birth_city":"{}","university":"{}","major":"{}","employer":"{}","employer_city":"{}"}}"#,
            pools.first_names[p.first as usize],
            pools.middle_names[p.middle as usize],
            pools.last_names[p.last as usize],
            p.gender.pronoun(),
            p.birth_day,
            MONTHS[p.birth_month as usize],
            FIRST_YEAR + p.birth_year as usize,
            pools.cities[p.birth_city as usize],
            pools.universities[p.university as usize],
            pools.majors[p.major as usize],
            company.name,
            pools.cities[company.city],
        )
        .expect("writing to a Vec");
        out.push(b'\n');
    }
}

impl BioS {
    /// Writes the dataset into `dir` (see [`crate::corpus`]) in shards of `shard_biographies` documents.
    pub fn write(
        &self,
        dir: &std::path::Path,
        progress: impl FnMut(crate::corpus::Progress),
    ) -> Result<crate::corpus::Manifest, GenError> {
        crate::corpus::write_corpus(self, dir, self.config.shard_biographies as u64, progress)
    }
}
