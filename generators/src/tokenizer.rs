//! A closed word-level tokenizer: its vocabulary is every word of the pools, the dates, the pronouns and the
//! templates, plus `<eot>` (id 0) between documents. Text is split on single spaces; punctuation in templates
//! is already space-separated.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::error::GenError;
use crate::pools::{Pools, DAYS, FIRST_YEAR, MONTHS, YEARS};
use crate::templates::{Piece, Templates};

pub const EOT: u32 = 0;
pub const EOT_STR: &str = "<eot>";

#[derive(Clone, Debug, Serialize)]
pub struct Tokenizer {
    /// Token id → word.
    pub words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl PartialEq for Tokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.words == other.words
    }
}

impl Tokenizer {
    pub fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Tokenizer { words, index }
    }

    /// The closed vocabulary of a bioS dataset: sorted, so it depends only on the pools, the templates and the
    /// `extra` words (question words, a domain token), which are added only when the dataset uses them.
    pub fn for_bios(pools: &Pools, templates: &Templates, extra: &[String]) -> Self {
        let mut set: BTreeSet<String> = BTreeSet::new();
        let mut add = |s: &str| {
            for w in s.split(' ') {
                set.insert(w.to_string());
            }
        };
        for pool in [
            &pools.first_names,
            &pools.middle_names,
            &pools.last_names,
            &pools.cities,
            &pools.universities,
            &pools.majors,
        ] {
            pool.iter().for_each(|v| add(v));
        }
        pools.companies.iter().for_each(|c| add(&c.name));
        (1..=DAYS).for_each(|d| add(&d.to_string()));
        MONTHS.iter().for_each(|m| add(m));
        (0..YEARS).for_each(|y| add(&(FIRST_YEAR + y).to_string()));
        add("He");
        add("She");
        for ts in &templates.by_attribute {
            for t in ts {
                for p in &t.pieces {
                    if let Piece::Word(w) = p {
                        add(w);
                    }
                }
            }
        }
        extra.iter().for_each(|w| add(w));
        set.remove(EOT_STR);
        let mut words = vec![EOT_STR.to_string()];
        words.extend(set);
        Self::from_words(words)
    }

    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// Encodes space-separated text; an unknown word is an error naming it.
    pub fn encode(&self, text: &str, context: &str) -> Result<Vec<u32>, GenError> {
        text.split_whitespace()
            .map(|w| {
                self.id(w).ok_or_else(|| GenError::UnknownWord {
                    word: w.into(),
                    context: context.into(),
                })
            })
            .collect()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| {
                self.words
                    .get(i as usize)
                    .map(String::as_str)
                    .unwrap_or("<?>")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}
