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

impl Tokenizer {
    /// The vocabulary as Hugging Face files that `AutoTokenizer.from_pretrained` loads: `tokenizer.json` (a
    /// `tokenizers` WordLevel model over these words, split on whitespace as [`Tokenizer::encode`] splits; a word
    /// outside the vocabulary is an error there too, as `<unk>` is not a word of it), `tokenizer_config.json` and
    /// `special_tokens_map.json`. `<eot>` (id 0) is the end-of-sequence token and, as every document in training
    /// follows one, is put before each encoded text (a BOS); decoding joins the words with single spaces.
    /// `context` is the model's context length.
    pub fn hf_files(&self, context: usize) -> Vec<(&'static str, Vec<u8>)> {
        use serde_json::json;
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), json!(i)))
            .collect();
        let eot = json!({"SpecialToken": {"id": EOT_STR, "type_id": 0}});
        let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [{
                "id": EOT, "content": EOT_STR, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true
            }],
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [eot.clone(), seq("A")],
                "pair": [eot.clone(), seq("A"), eot, seq("B")],
                "special_tokens": {EOT_STR: {"id": EOT_STR, "ids": [EOT], "tokens": [EOT_STR]}}
            },
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
        });
        let special = json!({"bos_token": EOT_STR, "eos_token": EOT_STR, "pad_token": EOT_STR});
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": context,
            "clean_up_tokenization_spaces": false,
            "add_bos_token": true,
            "add_eos_token": false,
        });
        for (k, v) in special.as_object().expect("object") {
            config[k] = v.clone();
        }
        let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("json");
        vec![
            ("tokenizer.json", pretty(&tokenizer)),
            ("tokenizer_config.json", pretty(&config)),
            ("special_tokens_map.json", pretty(&special)),
        ]
    }
}
