//! People: unique full names and six independently, uniformly drawn attributes (SPEC §1).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::GenError;
use crate::pools::{Pools, DAYS, FIRST_YEAR, MONTHS, YEARS};
use crate::rng::{stream, Permutation, Purpose};
use rayon::prelude::*;

/// The six attributes in canonical order (employer before its city).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    BirthDate,
    BirthCity,
    University,
    Major,
    Employer,
    EmployerCity,
}

impl Attribute {
    pub const ALL: [Attribute; 6] = [
        Attribute::BirthDate,
        Attribute::BirthCity,
        Attribute::University,
        Attribute::Major,
        Attribute::Employer,
        Attribute::EmployerCity,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Attribute::BirthDate => "birth_date",
            Attribute::BirthCity => "birth_city",
            Attribute::University => "university",
            Attribute::Major => "major",
            Attribute::Employer => "employer",
            Attribute::EmployerCity => "employer_city",
        }
    }

    /// Whether the attribute carries knowledge of its own. The employer's city follows from the employer, so it
    /// is not counted in the bits (SPEC §4).
    pub fn counted_in_bits(self) -> bool {
        self != Attribute::EmployerCity
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    pub fn pronoun(self) -> &'static str {
        match self {
            Gender::Male => "He",
            Gender::Female => "She",
        }
    }
}

/// One person: indices into the pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Person {
    pub first: u32,
    pub middle: u32,
    pub last: u32,
    pub gender: Gender,
    /// 1..=28
    pub birth_day: u8,
    /// 0..12
    pub birth_month: u8,
    /// 0..200, the year is `FIRST_YEAR + birth_year`.
    pub birth_year: u16,
    pub birth_city: u32,
    pub university: u32,
    pub major: u32,
    pub employer: u32,
}

impl Person {
    pub fn full_name(&self, pools: &Pools) -> String {
        format!(
            "{} {} {}",
            pools.first_names[self.first as usize],
            pools.middle_names[self.middle as usize],
            pools.last_names[self.last as usize]
        )
    }

    /// The attribute's value as text (a birth date is `day month year`).
    pub fn value(&self, attr: Attribute, pools: &Pools) -> String {
        match attr {
            Attribute::BirthDate => format!(
                "{} {} {}",
                self.birth_day,
                MONTHS[self.birth_month as usize],
                FIRST_YEAR + self.birth_year as usize
            ),
            Attribute::BirthCity => pools.cities[self.birth_city as usize].clone(),
            Attribute::University => pools.universities[self.university as usize].clone(),
            Attribute::Major => pools.majors[self.major as usize].clone(),
            Attribute::Employer => pools.companies[self.employer as usize].name.clone(),
            Attribute::EmployerCity => {
                pools.cities[pools.companies[self.employer as usize].city].clone()
            }
        }
    }
}

/// A population: person `i` is a pure function of the seed and `i`, so people are generated in parallel, out of
/// order and without holding a table of them. Full names are unique: person `i` gets name number `π(i)` of the
/// N0 possible (first, middle, last) triples, where π is a keyed permutation ([`Permutation`]). Attributes and
/// the pronoun are drawn uniformly and independently from the person's own `People` stream.
#[derive(Clone, Debug)]
pub struct Population {
    seed: u64,
    names: Permutation,
    sizes: [u32; 7],
}

impl Population {
    pub fn new(seed: u64, pools: &Pools) -> Self {
        let (nf, nm, nl) = (
            pools.first_names.len() as u64,
            pools.middle_names.len() as u64,
            pools.last_names.len() as u64,
        );
        Population {
            seed,
            names: Permutation::new(seed, Purpose::Names, 0, nf * nm * nl),
            sizes: [
                nf as u32,
                nm as u32,
                nl as u32,
                pools.cities.len() as u32,
                pools.universities.len() as u32,
                pools.majors.len() as u32,
                pools.companies.len() as u32,
            ],
        }
    }

    /// N0: how many distinct people (full names) there can be.
    pub fn capacity(&self) -> u64 {
        self.names.domain()
    }

    /// Person `i` (`i < capacity()`).
    pub fn person(&self, i: u64) -> Person {
        let [_, nm, nl, nc, nu, nmaj, ncomp] = self.sizes.map(|s| s as u64);
        let name = self.names.apply(i);
        let mut rng = stream(self.seed, Purpose::People, i);
        let gender = if rng.random_bool(0.5) {
            Gender::Male
        } else {
            Gender::Female
        };
        Person {
            first: (name / (nm * nl)) as u32,
            middle: ((name / nl) % nm) as u32,
            last: (name % nl) as u32,
            gender,
            birth_day: rng.random_range(1..=DAYS as u8),
            birth_month: rng.random_range(0..MONTHS.len() as u8),
            birth_year: rng.random_range(0..YEARS as u16),
            birth_city: rng.random_range(0..nc as u32),
            university: rng.random_range(0..nu as u32),
            major: rng.random_range(0..nmaj as u32),
            employer: rng.random_range(0..ncomp as u32),
        }
    }
}

/// The first `n` people of the population of `seed` (computed in parallel).
pub fn sample_people(n: usize, seed: u64, pools: &Pools) -> Result<Vec<Person>, GenError> {
    let pop = Population::new(seed, pools);
    if n as u64 > pop.capacity() {
        return Err(GenError::Config(format!(
            "people = {n} is more than the {} possible full names; use larger name pools",
            pop.capacity()
        )));
    }
    Ok((0..n as u64)
        .into_par_iter()
        .map(|i| pop.person(i))
        .collect())
}
