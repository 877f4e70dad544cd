//! physlab generators: synthetic corpora whose every fact is known.
//!
//! The foundation dataset is bioS (Allen-Zhu & Li, Part 3.1/3.3): people with unique full names and six
//! attributes, rendered into biographies from templates, tokenized by a closed word-level tokenizer and written
//! as token shards next to the ground-truth knowledge table and a manifest with the dataset's exact bits.

pub mod biod;
pub mod bios;
pub mod bits;
pub mod corpus;
pub mod data;
pub mod error;
pub mod facts;
pub mod fsio;
pub mod people;
pub mod pools;
pub mod rng;
pub mod tasks;
pub mod templates;
pub mod tokenizer;
pub mod zipf;

/// The most people a population may have (the papers go to 20M): a larger count is a typo, and sizes derived
/// from it must stay far from overflowing.
pub const MAX_PEOPLE: usize = 1 << 28;

pub use bios::{BioS, BioSConfig, RenderedBio};
pub use corpus::{write_corpus, Corpus, Dataset, Manifest, TokenStream, WindowMixer};
pub use data::DataConfig;
pub use error::GenError;
pub use people::{Attribute, Gender, Person};
pub use pools::{PoolFiles, Pools};
pub use tokenizer::Tokenizer;
