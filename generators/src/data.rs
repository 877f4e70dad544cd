//! Every dataset kind behind one config type: `kind = "bioS" | "bioD" | "zipf" | "uniform"` and that kind's keys.

use serde::{Deserialize, Serialize};

use crate::biod::{BioD, BioDConfig};
use crate::bios::{BioS, BioSConfig};
use crate::corpus::Corpus;
use crate::error::GenError;
use crate::facts::{Facts, FactsConfig};
use crate::zipf::{Uniform, UniformConfig, Zipf, ZipfConfig};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind")]
pub enum DataConfig {
    #[serde(rename = "bioS")]
    BioS(BioSConfig),
    #[serde(rename = "bioD")]
    BioD(BioDConfig),
    /// i.i.d. Zipf unigram (`order = 0`).
    #[serde(rename = "zipf")]
    Zipf(ZipfConfig),
    /// Zipf-permuted Markov chain (`order ≥ 1`).
    #[serde(rename = "markov")]
    Markov(ZipfConfig),
    /// Uniform random tokens (the memorization probe).
    #[serde(rename = "uniform")]
    Uniform(UniformConfig),
    /// Zipf-frequency facts (the quanta model of data scaling).
    #[serde(rename = "facts")]
    Facts(FactsConfig),
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::BioS(BioSConfig::default())
    }
}

/// The kinds a dataset can be.
pub const KINDS: &[&str] = &["bioS", "bioD", "zipf", "markov", "uniform", "facts"];

impl DataConfig {
    /// The config a dataset was written from, read back from its manifest (`kind` and `config`), so that its
    /// generator can be built again (e.g. to name the person of each stored document).
    pub fn from_manifest(manifest: &crate::corpus::Manifest) -> Result<Self, GenError> {
        let mut v = manifest.config.clone();
        let obj = v
            .as_object_mut()
            .ok_or_else(|| GenError::Config("the manifest's config is not a table".to_string()))?;
        obj.insert(
            "kind".into(),
            serde_json::Value::String(manifest.kind.clone()),
        );
        serde_json::from_value(v)
            .map_err(|e| GenError::Config(format!("the manifest's config: {e}")))
    }

    /// The default config of `kind`, or `None` for an unknown kind.
    pub fn default_for(kind: &str) -> Option<Self> {
        match kind {
            "bioS" => Some(DataConfig::BioS(BioSConfig::default())),
            "bioD" => Some(DataConfig::BioD(BioDConfig::default())),
            "zipf" => Some(DataConfig::Zipf(ZipfConfig::default())),
            "markov" => Some(DataConfig::Markov(ZipfConfig {
                order: 1,
                ..ZipfConfig::default()
            })),
            "uniform" => Some(DataConfig::Uniform(UniformConfig::default())),
            "facts" => Some(DataConfig::Facts(FactsConfig::default())),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DataConfig::BioS(_) => "bioS",
            DataConfig::BioD(_) => "bioD",
            DataConfig::Zipf(_) => "zipf",
            DataConfig::Markov(_) => "markov",
            DataConfig::Uniform(_) => "uniform",
            DataConfig::Facts(_) => "facts",
        }
    }

    /// Every problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match self {
            DataConfig::BioS(c) => c.problems(),
            DataConfig::BioD(c) => c.problems(),
            DataConfig::Zipf(c) => {
                let mut p = c.problems();
                if c.order != 0 {
                    p.push("data.order: kind \"zipf\" is i.i.d. (order 0); use kind = \"markov\" for a chain".into());
                }
                p
            }
            DataConfig::Markov(c) => {
                let mut p = c.problems();
                if c.order == 0 {
                    p.push(
                        "data.order: kind \"markov\" needs order ≥ 1 (order 0 is kind \"zipf\")"
                            .into(),
                    );
                }
                p
            }
            DataConfig::Uniform(c) => c.problems(),
            DataConfig::Facts(c) => c.problems(),
        }
    }

    /// The corpus this config describes under `seed`.
    pub fn build(&self, seed: u64) -> Result<Box<dyn Corpus>, GenError> {
        Ok(match self {
            DataConfig::BioS(c) => Box::new(BioS::build(c, seed)?),
            DataConfig::BioD(c) => Box::new(BioD::build(c, seed)?),
            DataConfig::Zipf(c) | DataConfig::Markov(c) => Box::new(Zipf::build(c, seed)?),
            DataConfig::Uniform(c) => Box::new(Uniform::build(c, seed)?),
            DataConfig::Facts(c) => Box::new(Facts::build(c, seed)?),
        })
    }
}
