//! Every dataset kind behind one config type: `kind = "bioS" | "bioD" | "zipf" | "uniform"` and that kind's keys.

use serde::{Deserialize, Serialize};

use crate::biod::{BioD, BioDConfig};
use crate::bios::{BioS, BioSConfig};
use crate::corpus::Corpus;
use crate::error::GenError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind")]
pub enum DataConfig {
    #[serde(rename = "bioS")]
    BioS(BioSConfig),
    #[serde(rename = "bioD")]
    BioD(BioDConfig),
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::BioS(BioSConfig::default())
    }
}

/// The kinds a dataset can be.
pub const KINDS: &[&str] = &["bioS", "bioD"];

impl DataConfig {
    /// The default config of `kind`, or `None` for an unknown kind.
    pub fn default_for(kind: &str) -> Option<Self> {
        match kind {
            "bioS" => Some(DataConfig::BioS(BioSConfig::default())),
            "bioD" => Some(DataConfig::BioD(BioDConfig::default())),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DataConfig::BioS(_) => "bioS",
            DataConfig::BioD(_) => "bioD",
        }
    }

    /// Every problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match self {
            DataConfig::BioS(c) => c.problems(),
            DataConfig::BioD(c) => c.problems(),
        }
    }

    /// The corpus this config describes under `seed`.
    pub fn build(&self, seed: u64) -> Result<Box<dyn Corpus>, GenError> {
        Ok(match self {
            DataConfig::BioS(c) => Box::new(BioS::build(c, seed)?),
            DataConfig::BioD(c) => Box::new(BioD::build(c, seed)?),
        })
    }
}
