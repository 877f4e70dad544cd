//! Value pools: names, cities, universities, majors and companies (each company has one headquarters city).
//!
//! The embedded pools are our own strings with the paper's sizes (SPEC §1): first 400, middle 400, last 1000,
//! cities 200, universities 300, majors 100, companies 263. Any pool can be replaced from a user file with one
//! value per line (companies: `Company Name<TAB>City`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::GenError;

/// Paper pool sizes (Part 3.1 / 3.3).
pub const PAPER_FIRST: usize = 400;
pub const PAPER_MIDDLE: usize = 400;
pub const PAPER_LAST: usize = 1000;

/// Month names; birth dates are `day month year` with days 1..=28 and 200 years from [`FIRST_YEAR`].
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub const DAYS: usize = 28;
pub const YEARS: usize = 200;
pub const FIRST_YEAR: usize = 1900;

/// Optional replacement files for the pools (one value per line).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolFiles {
    pub first_names: String,
    pub middle_names: String,
    pub last_names: String,
    pub cities: String,
    pub universities: String,
    pub majors: String,
    /// `Company Name<TAB>City`, the city one of the city pool's values.
    pub companies: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Company {
    pub name: String,
    /// Index into [`Pools::cities`].
    pub city: usize,
}

#[derive(Clone, Debug)]
pub struct Pools {
    pub first_names: Vec<String>,
    pub middle_names: Vec<String>,
    pub last_names: Vec<String>,
    pub cities: Vec<String>,
    pub universities: Vec<String>,
    pub majors: Vec<String>,
    pub companies: Vec<Company>,
}

const EMBEDDED_FIRST: &str = include_str!("../pools/first_names.txt");
const EMBEDDED_MIDDLE: &str = include_str!("../pools/middle_names.txt");
const EMBEDDED_LAST: &str = include_str!("../pools/last_names.txt");
const EMBEDDED_CITIES: &str = include_str!("../pools/cities.txt");
const EMBEDDED_UNIVERSITIES: &str = include_str!("../pools/universities.txt");
const EMBEDDED_MAJORS: &str = include_str!("../pools/majors.txt");
const EMBEDDED_COMPANIES: &str = include_str!("../pools/companies.txt");

fn read_source(
    file: &str,
    embedded: &'static str,
    name: &str,
) -> Result<(String, String), GenError> {
    if file.is_empty() {
        Ok((embedded.to_string(), format!("<embedded {name}>")))
    } else {
        let text =
            std::fs::read_to_string(file).map_err(|e| GenError::io(PathBuf::from(file), e))?;
        Ok((text, file.to_string()))
    }
}

/// Parses a one-value-per-line pool: trims lines, rejects empty files, blank lines, duplicates and
/// characters the tokenizer reserves.
pub fn parse_list(text: &str, origin: &str) -> Result<Vec<String>, GenError> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let v = raw.trim();
        if v.is_empty() {
            // A trailing newline gives no line at all; an empty line inside the file is an error.
            return Err(GenError::Pool {
                path: origin.into(),
                msg: format!("line {line_no} is empty"),
            });
        }
        if v.contains(['{', '}', '<', '>', '\t', '"', '\\']) || v.chars().any(char::is_control) {
            return Err(GenError::Pool {
                path: origin.into(),
                msg: format!(
                    "line {line_no}: {v:?} contains a reserved character ({{ }} < > \" \\, a tab or a control character)"
                ),
            });
        }
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(prev) = seen.insert(v.clone(), line_no) {
            return Err(GenError::Pool {
                path: origin.into(),
                msg: format!("line {line_no}: duplicate value {v:?} (first on line {prev})"),
            });
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(GenError::Pool {
            path: origin.into(),
            msg: "the pool is empty".into(),
        });
    }
    Ok(out)
}

fn parse_companies(text: &str, origin: &str, cities: &[String]) -> Result<Vec<Company>, GenError> {
    let city_index: HashMap<&str, usize> = cities
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut names = String::new();
    let mut city_of = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let Some((name, city)) = raw.split_once('\t') else {
            return Err(GenError::Pool {
                path: origin.into(),
                msg: format!("line {line_no}: expected `Company Name<TAB>City`, got {raw:?}"),
            });
        };
        let city = city.trim();
        let Some(&c) = city_index.get(city) else {
            return Err(GenError::Pool {
                path: origin.into(),
                msg: format!("line {line_no}: city {city:?} is not in the city pool"),
            });
        };
        names.push_str(name);
        names.push('\n');
        city_of.push(c);
    }
    let names = parse_list(&names, origin)?;
    Ok(names
        .into_iter()
        .zip(city_of)
        .map(|(name, city)| Company { name, city })
        .collect())
}

impl Pools {
    /// The embedded pools (paper sizes).
    pub fn embedded() -> Self {
        Self::load(&PoolFiles::default()).expect("embedded pools are valid (tested)")
    }

    /// Embedded pools with any pool replaced by the file named in `files`.
    pub fn load(files: &PoolFiles) -> Result<Self, GenError> {
        let list = |file: &str, emb: &'static str, name: &str| -> Result<Vec<String>, GenError> {
            let (text, origin) = read_source(file, emb, name)?;
            parse_list(&text, &origin)
        };
        let first_names = list(&files.first_names, EMBEDDED_FIRST, "first_names")?;
        let middle_names = list(&files.middle_names, EMBEDDED_MIDDLE, "middle_names")?;
        let last_names = list(&files.last_names, EMBEDDED_LAST, "last_names")?;
        for (pool, origin) in [
            (&first_names, &files.first_names),
            (&middle_names, &files.middle_names),
            (&last_names, &files.last_names),
        ] {
            if let Some(v) = pool.iter().find(|v| v.contains(' ')) {
                return Err(GenError::Pool {
                    path: if origin.is_empty() {
                        "<embedded names>".into()
                    } else {
                        origin.clone()
                    },
                    msg: format!("name {v:?} must be a single word"),
                });
            }
        }
        let cities = list(&files.cities, EMBEDDED_CITIES, "cities")?;
        let universities = list(&files.universities, EMBEDDED_UNIVERSITIES, "universities")?;
        let majors = list(&files.majors, EMBEDDED_MAJORS, "majors")?;
        let (ctext, corigin) = read_source(&files.companies, EMBEDDED_COMPANIES, "companies")?;
        let companies = parse_companies(&ctext, &corigin, &cities)?;
        Ok(Pools {
            first_names,
            middle_names,
            last_names,
            cities,
            universities,
            majors,
            companies,
        })
    }

    /// N0: the number of possible full names.
    pub fn n0(&self) -> f64 {
        (self.first_names.len() * self.middle_names.len()) as f64 * self.last_names.len() as f64
    }

    /// Number of possible birth dates (12 · 28 · 200 = 67,200).
    pub fn n_birth_dates(&self) -> usize {
        MONTHS.len() * DAYS * YEARS
    }
}
