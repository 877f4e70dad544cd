use std::path::PathBuf;

/// Errors of the generators; each names the file, line or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool file {path}: {msg}")]
    Pool { path: String, msg: String },
    #[error("template file {path}, line {line}: {msg}")]
    Template {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("dataset config: {0}")]
    Config(String),
    #[error("tokenizer: unknown word {word:?} in {context}")]
    UnknownWord { word: String, context: String },
    #[error("dataset {path}: {msg}")]
    Dataset { path: PathBuf, msg: String },
}

impl GenError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GenError::Io {
            path: path.into(),
            source,
        }
    }
}
