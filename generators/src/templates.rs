//! Sentence templates, one file per attribute, each line starting with `{s}` (the subject: full name or
//! pronoun) and holding `{v}` (the value) once. Words and punctuation are space-separated tokens.

use crate::error::GenError;
use crate::people::Attribute;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Subject,
    Value,
    Word(String),
}

#[derive(Clone, Debug)]
pub struct Template {
    pub text: String,
    pub pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
pub struct Templates {
    /// Indexed by [`Attribute::index`].
    pub by_attribute: Vec<Vec<Template>>,
}

fn embedded(attr: Attribute) -> &'static str {
    match attr {
        Attribute::BirthDate => include_str!("../templates/birth_date.txt"),
        Attribute::BirthCity => include_str!("../templates/birth_city.txt"),
        Attribute::University => include_str!("../templates/university.txt"),
        Attribute::Major => include_str!("../templates/major.txt"),
        Attribute::Employer => include_str!("../templates/employer.txt"),
        Attribute::EmployerCity => include_str!("../templates/employer_city.txt"),
    }
}

/// Parses one template file; errors name the origin and the line.
pub fn parse_templates(text: &str, origin: &str) -> Result<Vec<Template>, GenError> {
    let mut out: Vec<Template> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let err = |msg: String| GenError::Template {
            path: origin.into(),
            line,
            msg,
        };
        if t.is_empty() {
            return Err(err("empty line".into()));
        }
        if !t.starts_with("{s} ") {
            return Err(err(format!("{t:?} must start with `{{s}} `")));
        }
        if t.matches("{s}").count() != 1 || t.matches("{v}").count() != 1 {
            return Err(err(format!(
                "{t:?} must hold `{{s}}` and `{{v}}` exactly once each"
            )));
        }
        if out.iter().any(|o| o.text == t) {
            return Err(err(format!("duplicate template {t:?}")));
        }
        let pieces = t
            .split(' ')
            .map(|w| match w {
                "{s}" => Ok(Piece::Subject),
                "{v}" => Ok(Piece::Value),
                w if w.contains(['{', '}', '<', '>']) => {
                    Err(err(format!("word {w:?} holds a reserved character")))
                }
                w => Ok(Piece::Word(w.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Template { text: t, pieces });
    }
    if out.is_empty() {
        return Err(GenError::Template {
            path: origin.into(),
            line: 0,
            msg: "no templates".into(),
        });
    }
    Ok(out)
}

impl Templates {
    pub fn embedded() -> Self {
        let by_attribute = Attribute::ALL
            .iter()
            .map(|&a| {
                parse_templates(
                    embedded(a),
                    &format!("<embedded templates/{}.txt>", a.name()),
                )
                .expect("embedded templates are valid (tested)")
            })
            .collect();
        Templates { by_attribute }
    }

    pub fn for_attribute(&self, a: Attribute) -> &[Template] {
        &self.by_attribute[a.index()]
    }
}
