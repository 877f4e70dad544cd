//! Questions about the people of a bioS dataset, each with an exact answer: the six QA questions of Part 3.1 and
//! the knowledge-manipulation tasks of Part 3.2 (retrieval, classification, comparison, inverse search).
//!
//! A question document is `prompt ++ answer`; the prompt ends with `Answer :` and the answer ends with `.`, and its
//! length is stored beside the document so that training can mask the loss to the answer and evaluation can
//! generate from the prompt. People `0..n_train` form P_train and the rest P_test (people are drawn i.i.d., so this
//! is a random split); each task has a `<name>_train` and a `<name>_test` stream.
//!
//! Task documents open with a control token, `<direct>` or `<hint>`: with the hint (a chain of thought) the answer
//! first states the attribute(s) it derives from, then the answer (`2 October 1996 ; 0 .` for the parity of a birth
//! month). `hint = "both"` emits each question in both forms.

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bios::{BioS, BioSConfig};
use crate::corpus::StreamSpec;
use crate::error::GenError;
use crate::people::{Attribute, Person};
use crate::pools::{Pools, FIRST_YEAR, MONTHS};
use crate::rng::{stream, Purpose};
use crate::tokenizer::Tokenizer;

/// The six QA questions (Part 3.1).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QaConfig {
    /// Write the `qa_train` / `qa_test` streams.
    pub enabled: bool,
    /// Share of people in P_train (the rest is P_test); shared with the tasks.
    pub train_fraction: f64,
    /// Mixed training: share of pretraining windows drawn from `qa_train` (0: QA is not in pretraining).
    pub mix_ratio: f64,
    /// Whose QA is trained on. `main` (the default): P_train is the first `train_fraction` of the main
    /// population and P_test the rest. `celebrity` (Part 3.1 §6): `qa_train` holds every celebrity's questions
    /// and `qa_test` every person of the main (minority) population, so a QA finetune on the celebrities is tested
    /// on the minority. The Part 3.2 tasks keep the main population's split.
    pub train_population: QaPopulation,
}

/// The population whose questions make `qa_train` (see [`QaConfig::train_population`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QaPopulation {
    #[default]
    Main,
    Celebrity,
}

impl Default for QaConfig {
    fn default() -> Self {
        QaConfig {
            enabled: false,
            train_fraction: 0.5,
            mix_ratio: 0.0,
            train_population: QaPopulation::Main,
        }
    }
}

impl QaConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            p.push("data.qa.train_fraction must be in (0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.mix_ratio) {
            p.push("data.qa.mix_ratio must be in [0, 1)".into());
        }
        if self.mix_ratio > 0.0 && !self.enabled {
            p.push(
                "data.qa.mix_ratio > 0 mixes QA into pretraining: set data.qa.enabled = true"
                    .into(),
            );
        }
        p
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Partial retrieval (one field, e.g. the birth year) or dual retrieval (two fields).
    Retrieval,
    /// A numeric field mod `modulus` (birth month mod 2/6/12, major score mod 5/20/100).
    Classification,
    /// Two people: is A's field smaller than B's (`rank`), or A's minus B's (`difference`).
    Comparison,
    /// Attributes → first or full name.
    Inverse,
}

/// What a question asks about: an attribute, or a part of one, or a function of one.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    BirthDate,
    BirthCity,
    University,
    Major,
    Employer,
    EmployerCity,
    BirthYear,
    /// 1..=12
    BirthMonth,
    /// 1..=28
    BirthDay,
    /// A fixed score in 1..=100 of each major (drawn once per dataset; listed in the manifest).
    MajorScore,
}

impl Field {
    fn phrase(self) -> &'static str {
        match self {
            Field::BirthDate => "birth date",
            Field::BirthCity => "birth city",
            Field::University => "university",
            Field::Major => "major",
            Field::Employer => "employer",
            Field::EmployerCity => "employer city",
            Field::BirthYear => "birth year",
            Field::BirthMonth => "birth month",
            Field::BirthDay => "birth day",
            Field::MajorScore => "major score",
        }
    }

    fn attribute(self) -> Attribute {
        match self {
            Field::BirthDate | Field::BirthYear | Field::BirthMonth | Field::BirthDay => {
                Attribute::BirthDate
            }
            Field::BirthCity => Attribute::BirthCity,
            Field::University => Attribute::University,
            Field::Major | Field::MajorScore => Attribute::Major,
            Field::Employer => Attribute::Employer,
            Field::EmployerCity => Attribute::EmployerCity,
        }
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            Field::BirthYear | Field::BirthMonth | Field::BirthDay | Field::MajorScore
        )
    }

    /// Derived from an attribute (so a hint can state that attribute first).
    fn derived(self) -> bool {
        self.numeric()
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HintForm {
    /// Direct answers only (`<direct>`).
    None,
    /// Hinted answers only (`<hint>`).
    Hint,
    /// Each question in both forms.
    Both,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    Rank,
    Difference,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NameAnswer {
    First,
    Full,
}

/// One Part 3.2 task (its streams are `<name>_train` and `<name>_test`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    pub name: String,
    pub task: TaskKind,
    /// Retrieval: 1 field (partial) or 2 (dual); classification and comparison: 1 numeric field; inverse: the
    /// attributes given in the question.
    pub fields: Vec<Field>,
    /// Classification modulus.
    pub modulus: u32,
    pub compare: Compare,
    /// Inverse search: answer with the first name or the full name.
    pub answer: NameAnswer,
    pub hint: HintForm,
    /// Questions per person (comparison: each with another partner).
    pub per_person: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            name: "task".into(),
            task: TaskKind::Retrieval,
            fields: vec![Field::BirthYear],
            modulus: 2,
            compare: Compare::Rank,
            answer: NameAnswer::Full,
            hint: HintForm::None,
            per_person: 1,
        }
    }
}

impl TaskConfig {
    pub fn problems(&self, i: usize) -> Vec<String> {
        let at = format!("data.tasks[{i}]");
        let mut p = Vec::new();
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            p.push(format!(
                "{at}.name {:?}: use letters, digits, `_` and `-`",
                self.name
            ));
        }
        if ["bio", "celebrity", "junk", "qa"].contains(&self.name.as_str()) {
            p.push(format!("{at}.name {:?} is reserved", self.name));
        }
        if self.per_person == 0 || self.per_person > 1000 {
            p.push(format!("{at}.per_person must be in 1..=1000"));
        }
        let numeric = self.fields.iter().all(|f| f.numeric());
        match self.task {
            TaskKind::Retrieval => {
                if !(1..=2).contains(&self.fields.len()) {
                    p.push(format!(
                        "{at}.fields: retrieval asks for 1 field (partial) or 2 (dual)"
                    ));
                }
                if self.hint != HintForm::None && !self.fields.iter().all(|f| f.derived()) {
                    p.push(format!("{at}.hint: a hint states the attribute a field derives from; use derived fields (birth_year, birth_month, birth_day, major_score) or hint = \"none\""));
                }
            }
            TaskKind::Classification | TaskKind::Comparison => {
                if self.fields.len() != 1 || !numeric {
                    p.push(format!("{at}.fields: one numeric field (birth_year, birth_month, birth_day, major_score)"));
                }
                if self.task == TaskKind::Classification && !(2..=100).contains(&self.modulus) {
                    p.push(format!("{at}.modulus must be in 2..=100"));
                }
            }
            TaskKind::Inverse => {
                if self.fields.is_empty() || self.fields.iter().any(|f| f.numeric()) {
                    p.push(format!("{at}.fields: inverse search gives whole attributes (birth_date, birth_city, university, major, employer, employer_city)"));
                }
                if self.hint != HintForm::None {
                    p.push(format!(
                        "{at}.hint: inverse search has no hint form; use hint = \"none\""
                    ));
                }
            }
        }
        let mut f = self.fields.clone();
        f.sort_by_key(|x| *x as u8);
        f.dedup();
        if f.len() != self.fields.len() {
            p.push(format!("{at}.fields: a field is listed twice"));
        }
        p
    }

    fn forms(&self) -> u64 {
        if self.hint == HintForm::Both {
            2
        } else {
            1
        }
    }
}

/// Word pieces of question templates (all go into the vocabulary when questions are written).
const QA_TEMPLATES: [&str; 6] = [
    "What is the birth date of {n} ?",
    "Which city was {n} born in ?",
    "Which university did {n} study at ?",
    "What major did {n} study ?",
    "Which company did {n} work for ?",
    "Where did {n} work ?",
];
const WORDS: &str = "What What's are is the of and ? Answer : . ; , mod minus that than smaller Is Who was born on in studied at worked for Yes No <hint> <direct> first name full birth date city university major employer year month day score";
const INVERSE: [&str; 6] = [
    "was born on",
    "was born in",
    "studied at",
    "studied",
    "worked for",
    "worked in",
];
/// Numbers that answers can hold (differences of birth years reach ±199).
const MAX_NUMBER: i32 = 200;

/// A task with its words as token ids.
#[derive(Clone, Debug, Default)]
struct Ids {
    map: HashMap<String, u32>,
}

impl Ids {
    fn get(&self, w: &str) -> u32 {
        *self
            .map
            .get(w)
            .unwrap_or_else(|| panic!("{w:?} is in the vocabulary"))
    }
    fn words(&self, text: &str, out: &mut Vec<u32>) {
        text.split(' ').for_each(|w| out.push(self.get(w)));
    }
    fn number(&self, x: i64, out: &mut Vec<u32>) {
        out.push(self.get(&x.to_string()));
    }
}

/// The question streams of a bioS dataset.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    pub(crate) n_train: usize,
    n_people: usize,
    qa: bool,
    /// `Some((first, count))`: `qa_train` is the celebrities `first..first + count` and `qa_test` the whole main
    /// population (`qa.train_population = "celebrity"`).
    pub(crate) qa_celebrity: Option<(u64, usize)>,
    list: Vec<TaskConfig>,
    /// Score (1..=100) of each major.
    pub(crate) major_score: Vec<u32>,
    ids: Ids,
}

impl Tasks {
    pub(crate) fn new(c: &BioSConfig, seed: u64, pools: &Pools) -> Result<Self, GenError> {
        let n_train = ((c.people as f64 * c.qa.train_fraction).round() as usize)
            .clamp((c.people > 1) as usize, c.people.saturating_sub(1).max(1));
        let mut rng = stream(seed, Purpose::Tasks, u64::MAX);
        let major_score = (0..pools.majors.len())
            .map(|_| rng.random_range(1..=100))
            .collect();
        Ok(Tasks {
            n_train,
            n_people: c.people,
            qa: c.qa.enabled,
            qa_celebrity: (c.qa.train_population == QaPopulation::Celebrity)
                .then_some((c.people as u64, c.celebrity.people)),
            list: c.tasks.clone(),
            major_score,
            ids: Ids::default(),
        })
    }

    fn any(&self) -> bool {
        self.qa || !self.list.is_empty()
    }

    /// Words the questions need beyond the biographies' vocabulary.
    pub(crate) fn words(&self) -> Vec<String> {
        if !self.any() {
            return Vec::new();
        }
        let mut w: Vec<String> = WORDS.split(' ').map(String::from).collect();
        for t in QA_TEMPLATES.iter().chain(INVERSE.iter()) {
            w.extend(t.split(' ').filter(|x| *x != "{n}").map(String::from));
        }
        w.extend((-MAX_NUMBER..=MAX_NUMBER).map(|x| x.to_string()));
        w
    }

    pub(crate) fn tokenize(mut self, tok: &Tokenizer) -> Result<Self, GenError> {
        for w in self.words() {
            let id = tok.id(&w).ok_or_else(|| GenError::UnknownWord {
                word: w.clone(),
                context: "question words".into(),
            })?;
            self.ids.map.insert(w, id);
        }
        Ok(self)
    }

    /// (stream name, task index or None for QA, P_train?)
    fn layout(&self) -> Vec<(String, Option<usize>, bool)> {
        let mut v = Vec::new();
        if self.qa {
            v.push(("qa_train".to_string(), None, true));
            v.push(("qa_test".to_string(), None, false));
        }
        for (i, t) in self.list.iter().enumerate() {
            v.push((format!("{}_train", t.name), Some(i), true));
            v.push((format!("{}_test", t.name), Some(i), false));
        }
        v
    }

    /// The main population's P_train (`train`) or P_test, which the Part 3.2 tasks ask about: (first person,
    /// people).
    fn split(&self, train: bool) -> (u64, usize) {
        if train {
            (0, self.n_train)
        } else {
            (self.n_train as u64, self.n_people - self.n_train)
        }
    }

    /// The people the QA questions of `train` (P_train) or P_test ask about: (first person, people). The main
    /// population's split, unless `qa_train` is the celebrities (then `qa_test` is the whole main population).
    pub(crate) fn qa_people(&self, train: bool) -> (u64, usize) {
        match (self.qa_celebrity, train) {
            (Some(c), true) => c,
            (Some(_), false) => (0, self.n_people),
            (None, _) => self.split(train),
        }
    }

    pub(crate) fn streams(&self) -> Vec<StreamSpec> {
        self.layout()
            .into_iter()
            .map(|(name, task, train)| {
                let people = match task {
                    None => self.qa_people(train).1,
                    Some(_) => self.split(train).1,
                } as u64;
                let split = match (task, self.qa_celebrity, train) {
                    (None, Some(_), true) => "P_train (the celebrities)",
                    (None, Some(_), false) => "P_test (the whole main population)",
                    (_, _, true) => "P_train",
                    (_, _, false) => "P_test",
                };
                match task {
                    None => StreamSpec {
                        name,
                        documents: people * 6,
                        prompts: true,
                        materialized: true,
                        about: format!("six questions for each of the {people} people of {split}"),
                    },
                    Some(i) => {
                        let t = &self.list[i];
                        StreamSpec {
                            name,
                            documents: people * t.per_person as u64 * t.forms(),
                            prompts: true,
                            materialized: true,
                            about: format!(
                                "{:?} task {:?} on {:?} for the {people} people of {split} (hint {:?}, {} per person)",
                                t.task, t.name, t.fields, t.hint, t.per_person
                            ),
                        }
                    }
                }
            })
            .collect()
    }

    pub(crate) fn facts(&self) -> serde_json::Value {
        serde_json::json!({
            "qa": self.qa,
            "tasks": self.list,
            "major_score": self.major_score,
        })
    }
}

impl BioS {
    /// For each inverse-search task, how many people of the main population share the attributes the question
    /// gives with someone else (their question has more than one right name): exact, from every person.
    pub fn inverse_ambiguity(&self) -> serde_json::Value {
        use rayon::prelude::*;
        let mut out = serde_json::Map::new();
        for t in self
            .tasks
            .list
            .iter()
            .filter(|t| t.task == TaskKind::Inverse)
        {
            let key = |p: &Person| -> [u32; 6] {
                let mut k = [u32::MAX; 6];
                for f in &t.fields {
                    let a = f.attribute();
                    k[a.index()] = match a {
                        Attribute::BirthDate => {
                            (p.birth_year as u32) << 16
                                | (p.birth_month as u32) << 8
                                | p.birth_day as u32
                        }
                        Attribute::BirthCity => p.birth_city,
                        Attribute::University => p.university,
                        Attribute::Major => p.major,
                        Attribute::Employer => p.employer,
                        Attribute::EmployerCity => {
                            self.tok.company_city[p.employer as usize] as u32
                        }
                    };
                }
                k
            };
            let mut keys: Vec<[u32; 6]> = (0..self.tasks.n_people)
                .into_par_iter()
                .map(|i| key(&self.person(i)))
                .collect();
            keys.par_sort_unstable();
            let mut ambiguous = 0usize;
            let mut i = 0;
            while i < keys.len() {
                let j = i + keys[i..].partition_point(|k| *k == keys[i]);
                if j - i > 1 {
                    ambiguous += j - i;
                }
                i = j;
            }
            out.insert(t.name.clone(), ambiguous.into());
        }
        serde_json::Value::Object(out)
    }

    /// Numeric value of a field.
    fn numeric(&self, p: &Person, f: Field) -> i64 {
        match f {
            Field::BirthYear => (FIRST_YEAR + p.birth_year as usize) as i64,
            Field::BirthMonth => p.birth_month as i64 + 1,
            Field::BirthDay => p.birth_day as i64,
            Field::MajorScore => self.tasks.major_score[p.major as usize] as i64,
            _ => unreachable!("not a numeric field"),
        }
    }

    /// Appends a field's answer.
    fn push_field(&self, p: &Person, f: Field, out: &mut Vec<u32>) {
        if f.numeric() {
            match f {
                Field::BirthYear => out.push(self.tok.year[p.birth_year as usize]),
                _ => self.tasks.ids.number(self.numeric(p, f), out),
            }
        } else {
            self.push_value(p, f.attribute(), out);
        }
    }

    /// The text of a question document, as (prompt, answer) strings — for inspection and tests.
    pub fn question_text(&self, stream: usize, doc: u64) -> (String, String) {
        let mut out = Vec::new();
        let p = crate::corpus::Corpus::render(self, stream, doc, &mut out) as usize;
        (
            self.tokenizer.decode(&out[..p]),
            self.tokenizer.decode(&out[p..]),
        )
    }

    /// Question stream `i` (in [`Tasks::streams`] order), document `doc`: appends it and returns the prompt
    /// length.
    /// The person document `doc` of task stream `i` asks about (the first of a comparison's two).
    pub(crate) fn task_person(&self, i: usize, doc: u64) -> u64 {
        let (_, task, train) = self.tasks.layout()[i].clone();
        match task {
            None => self.tasks.qa_people(train).0 + doc / 6,
            Some(t) => {
                let cfg = &self.tasks.list[t];
                self.tasks.split(train).0 + (doc / cfg.forms()) / cfg.per_person as u64
            }
        }
    }

    pub(crate) fn render_task(&self, i: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        let (_, task, train) = self.tasks.layout()[i].clone();
        let ids = &self.tasks.ids;
        let start = out.len();
        let person = self.task_person(i, doc);
        match task {
            None => {
                let a = (doc % 6) as usize;
                let p = self.population.person(person);
                for w in QA_TEMPLATES[a].split(' ') {
                    if w == "{n}" {
                        self.push_name(&p, out);
                    } else {
                        out.push(ids.get(w));
                    }
                }
                ids.words("Answer :", out);
                let prompt = (out.len() - start) as u32;
                self.push_value(&p, Attribute::ALL[a], out);
                out.push(ids.get("."));
                prompt
            }
            Some(t) => {
                let cfg = &self.tasks.list[t];
                let forms = cfg.forms();
                let hint = match cfg.hint {
                    HintForm::None => false,
                    HintForm::Hint => true,
                    HintForm::Both => doc % 2 == 1,
                };
                let local = doc / forms;
                let rep = local % cfg.per_person as u64;
                let p = self.population.person(person);
                out.push(ids.get(if hint { "<hint>" } else { "<direct>" }));
                let f = cfg.fields.first().copied().unwrap_or(Field::BirthYear);
                let prompt;
                match cfg.task {
                    TaskKind::Retrieval => {
                        if cfg.fields.len() == 1 {
                            ids.words(&format!("What is the {} of", f.phrase()), out);
                        } else {
                            ids.words(
                                &format!(
                                    "What are the {} and {} of",
                                    f.phrase(),
                                    cfg.fields[1].phrase()
                                ),
                                out,
                            );
                        }
                        self.push_name(&p, out);
                        ids.words("? Answer :", out);
                        prompt = (out.len() - start) as u32;
                        if hint {
                            for (k, g) in cfg.fields.iter().enumerate() {
                                if k > 0 {
                                    out.push(ids.get(","));
                                }
                                self.push_value(&p, g.attribute(), out);
                            }
                            out.push(ids.get(";"));
                        }
                        for (k, g) in cfg.fields.iter().enumerate() {
                            if k > 0 {
                                out.push(ids.get(";"));
                            }
                            self.push_field(&p, *g, out);
                        }
                    }
                    TaskKind::Classification => {
                        ids.words(&format!("What is the {} of", f.phrase()), out);
                        self.push_name(&p, out);
                        out.push(ids.get("mod"));
                        ids.number(cfg.modulus as i64, out);
                        ids.words("? Answer :", out);
                        prompt = (out.len() - start) as u32;
                        if hint {
                            self.push_value(&p, f.attribute(), out);
                            out.push(ids.get(";"));
                        }
                        ids.number(self.numeric(&p, f).rem_euclid(cfg.modulus as i64), out);
                    }
                    TaskKind::Comparison => {
                        let q = self.partner(t, person, rep, train, f);
                        let (a, b) = (self.numeric(&p, f), self.numeric(&q, f));
                        match cfg.compare {
                            Compare::Rank => {
                                ids.words(&format!("Is the {} of", f.phrase()), out);
                                self.push_name(&p, out);
                                ids.words("smaller than that of", out);
                            }
                            Compare::Difference => {
                                ids.words(&format!("What is the {} of", f.phrase()), out);
                                self.push_name(&p, out);
                                ids.words("minus that of", out);
                            }
                        }
                        self.push_name(&q, out);
                        ids.words("? Answer :", out);
                        prompt = (out.len() - start) as u32;
                        if hint {
                            self.push_value(&p, f.attribute(), out);
                            out.push(ids.get(","));
                            self.push_value(&q, f.attribute(), out);
                            out.push(ids.get(";"));
                        }
                        match cfg.compare {
                            Compare::Rank => out.push(ids.get(if a < b { "Yes" } else { "No" })),
                            Compare::Difference => ids.number(a - b, out),
                        }
                    }
                    TaskKind::Inverse => {
                        out.push(ids.get("Who"));
                        for (k, g) in cfg.fields.iter().enumerate() {
                            if k > 0 {
                                out.push(ids.get("and"));
                            }
                            let a = g.attribute();
                            ids.words(INVERSE[a.index()], out);
                            self.push_value(&p, a, out);
                        }
                        ids.words("? Answer :", out);
                        prompt = (out.len() - start) as u32;
                        match cfg.answer {
                            NameAnswer::First => out.push(self.tok.first[p.first as usize]),
                            NameAnswer::Full => self.push_name(&p, out),
                        }
                    }
                }
                out.push(ids.get("."));
                prompt
            }
        }
    }

    /// The comparison partner of `person` for question `rep`: another person of the same split, drawn from the
    /// task's stream; for `rank`, one whose field differs (so the answer is defined).
    fn partner(&self, task: usize, person: u64, rep: u64, train: bool, f: Field) -> Person {
        let (lo, n) = self.tasks.split(train);
        let n = n as u64;
        let p = self.population.person(person);
        let mut rng = stream(
            self.seed,
            Purpose::Tasks,
            ((task as u64) << 56) ^ (person << 16) ^ rep,
        );
        let rank = self.tasks.list[task].compare == Compare::Rank;
        let mut last = p;
        for _ in 0..64 {
            let j = lo + rng.random_range(0..n);
            if j == person && n > 1 {
                continue;
            }
            last = self.population.person(j);
            if !rank || self.numeric(&last, f) != self.numeric(&p, f) {
                return last;
            }
        }
        last
    }
}

/// Month name of a 1-based month number (for readers of task answers).
pub fn month_name(m: usize) -> &'static str {
    MONTHS[m - 1]
}
