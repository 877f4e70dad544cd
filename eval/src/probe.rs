//! Probing the frozen model (Part 3.1 §5): is a person's knowledge already readable, linearly, from the last
//! hidden layer early in the person's biography?
//!
//! - **P-probing** (position-based): the model reads the person's canonical biography (canonical order, the
//!   person's first templates); the probe reads the last hidden layer at six positions, the token right before
//!   each attribute's value (`before_birth_date` … `before_employer_city`, the paper's "special positions").
//!   Part 3.1's contrast: for a multi5+permute model every attribute is readable already at the first position
//!   (`before_birth_date`, right after "<name> was born on"); for a bioS single model an attribute is readable
//!   only at its own position, just before the value is written.
//! - **Q-probing** (query-based): the model reads only `<eot>` and the full name; the probe reads the last name
//!   token.
//!
//! At a position after an attribute's sentence the value is in the text (and the employer's city follows from
//! the employer written just before it): such cells measure reading the context, not stored knowledge. The cells
//! that test storage are P@birth_date (every attribute still unwritten), each attribute at its own position and
//! the attributes whose sentences come later.
//!
//! Every template starts with the name, and the model is causal, so P-probing "at the name" would read exactly
//! the Q-probing state; the P positions start after the first sentence's lead-in words. For the same reason the
//! biography is cut after the last probed position (what follows cannot change the states read).
//!
//! **What each head predicts: the value's class, not its first token.** With the word-level tokenizer the first
//! token is ambiguous for several attributes: a birth date's first token is the day (28 classes, and it says
//! nothing about the month or year); 58 of the 300 universities start with "University"; the 263 company names
//! have only 68 distinct first words. So each head predicts a class id from the person's record
//! ([`Target`]): birth day (28), birth month (12), birth year (200), birth city (city index), university,
//! major, employer (company index) and the employer's city (a city index; only the cities that host a company
//! occur, 141 of 200 with the embedded pools, the most common hosting ≈ 13.7% of companies).
//!
//! **Split and chance.** People are i.i.d.; the first `train_share` of them (default 0.75) train the probes and
//! the rest score them. Beside each accuracy the report gives the chance level an uninformed probe reaches on
//! the test people — the training people's majority class applied to the test people — and the number of
//! classes and of training people per class (a linear head needs several examples of a class to name it; at
//! N = 4,000 the default share gives every target ≥ 10 per class, universities exactly 10). Targets with fewer
//! than [`MIN_PER_CLASS`] training people per class are listed in `few_per_class`.
//!
//! **The probe.** By default (`embedding_rank = 0`) a linear head per target and position is trained on the
//! frozen model's hidden states (computed once): a pure linear probe, cheap enough for many epochs. Part 3.1 also
//! trains a low-rank update of the token embedding with the heads; `embedding_rank = r > 0` does that (the
//! update is shared by the positions, the heads are not), at the price of a forward and backward pass through
//! the model per step. Heads are trained with AdamW on the summed cross-entropies, in shuffled minibatches,
//! `epochs` passes over the training people. The heads start at zero (softmax regression is convex: nothing is
//! lost) and the order is a ChaCha8 stream of `seed`, so the linear probe is deterministic per seed whatever
//! else the process draws; the embedding update's random start comes from the backend's process-global seed
//! (set to `seed` before it is drawn).
//!
//! Cost at N = 4,000 (gpt2-2-2, 2 shared cores, measured): the linear probe ≈ 90 s for P (six positions) and
//! ≈ 12 s for Q at the default 100 epochs; with `embedding_rank = 16` ≈ 13 s per epoch for P and < 1 s for Q,
//! so use ~10–20 epochs there. On synthetic states the default reads a 300-class label stored linearly in
//! d = 128 from 10 training people per class at 100% (tests/probe.rs); where the state is noisier the limit is
//! the people per class, not the training.

use burn::module::{AutodiffModule, Module};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use physlab_generators::bios::BioS;
use physlab_generators::people::{Attribute, Person};
use physlab_generators::pools::{Pools, DAYS, MONTHS, YEARS};
use physlab_generators::tokenizer::EOT;
use physlab_trainer::kernels::{Kernels, TrainBackend};
use physlab_trainer::lora::{FreezeAllButLora, LoraShape};
use physlab_trainer::model::Gpt;
use physlab_trainer::GptShape;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fewer training people per class than this and a head cannot be expected to learn the class; such targets
/// are named in [`ProbeEval::few_per_class`].
pub const MIN_PER_CLASS: f64 = 10.0;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ProbeKind {
    /// Position-based: the whole biography is read, probed right before each attribute's value.
    P,
    /// Query-based: only the name is read, probed at its last token.
    Q,
}

/// What one head predicts: a class id read from the person's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    BirthDay,
    BirthMonth,
    BirthYear,
    BirthCity,
    University,
    Major,
    Employer,
    EmployerCity,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::BirthDay,
        Target::BirthMonth,
        Target::BirthYear,
        Target::BirthCity,
        Target::University,
        Target::Major,
        Target::Employer,
        Target::EmployerCity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::BirthDay => "birth_day",
            Target::BirthMonth => "birth_month",
            Target::BirthYear => "birth_year",
            Target::BirthCity => "birth_city",
            Target::University => "university",
            Target::Major => "major",
            Target::Employer => "employer",
            Target::EmployerCity => "employer_city",
        }
    }

    /// The attribute (sentence) the target belongs to.
    pub fn attribute(self) -> Attribute {
        match self {
            Target::BirthDay | Target::BirthMonth | Target::BirthYear => Attribute::BirthDate,
            Target::BirthCity => Attribute::BirthCity,
            Target::University => Attribute::University,
            Target::Major => Attribute::Major,
            Target::Employer => Attribute::Employer,
            Target::EmployerCity => Attribute::EmployerCity,
        }
    }

    /// Width of the head: the size of the id space.
    pub fn width(self, pools: &Pools) -> usize {
        match self {
            Target::BirthDay => DAYS,
            Target::BirthMonth => MONTHS.len(),
            Target::BirthYear => YEARS,
            Target::BirthCity | Target::EmployerCity => pools.cities.len(),
            Target::University => pools.universities.len(),
            Target::Major => pools.majors.len(),
            Target::Employer => pools.companies.len(),
        }
    }

    /// How many classes can occur (the employer's city: only the cities that host a company).
    pub fn classes(self, pools: &Pools) -> usize {
        match self {
            Target::EmployerCity => pools
                .companies
                .iter()
                .map(|c| c.city)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            t => t.width(pools),
        }
    }

    pub fn class(self, p: &Person, pools: &Pools) -> u32 {
        match self {
            Target::BirthDay => p.birth_day as u32 - 1,
            Target::BirthMonth => p.birth_month as u32,
            Target::BirthYear => p.birth_year as u32,
            Target::BirthCity => p.birth_city,
            Target::University => p.university,
            Target::Major => p.major,
            Target::Employer => p.employer,
            Target::EmployerCity => pools.companies[p.employer as usize].city as u32,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeConfig {
    /// Share of the people the probes train on (the first ones); the rest score them.
    pub train_share: f64,
    /// Passes over the training people.
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Rank of the token-embedding update trained with the heads; 0: a pure linear probe on frozen states.
    pub embedding_rank: usize,
    pub seed: u64,
    /// P-probing in each person's own first training biography (its templates and sentence order, as trained)
    /// instead of the canonical one, which a `permute` model may never have seen. The positions are then ordinal
    /// (right before the first, second, … value of that biography), and each cell is scored only over the people
    /// whose value (for the employer's city: the employer's too) is not yet in the text there.
    #[serde(default)]
    pub own_order: bool,
    /// With `own_order`: also drop each target's own position (the token right before its value, where the
    /// model predicts that value as its next token), so a cell counts only the people whose value comes strictly
    /// later: every cell then reads storage ahead of the text, as the canonical P@date column does for every
    /// target but the birth date. Without it, a sixth of P@v1's people are read at their own position.
    #[serde(default)]
    pub strict: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            train_share: 0.75,
            epochs: 100,
            batch: 128,
            lr: 3e-3,
            weight_decay: 0.01,
            embedding_rank: 0,
            seed: 0,
            own_order: false,
            strict: false,
        }
    }
}

/// hits / counted, NaN where no one is counted (a cell with no person has no accuracy, not 0).
fn share(hits: usize, counted: usize) -> f64 {
    if counted == 0 {
        f64::NAN
    } else {
        hits as f64 / counted as f64
    }
}

/// Accuracies as JSON writes them: a NaN is written as `null` (serde_json), read back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = serde::Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

/// One target's scores, per probe position.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetScore {
    pub target: String,
    /// Classes that can occur.
    pub classes: usize,
    /// Classes seen among the training people.
    pub classes_in_train: usize,
    /// Training people per class that can occur.
    pub train_per_class: f64,
    /// Share of the test people in the training people's majority class: what an uninformed probe scores.
    pub chance: f64,
    /// Test accuracy per position (in `ProbeEval::positions` order); NaN (`null` in JSON) where no test person
    /// is scored (an own-order mask left the cell none).
    #[serde(deserialize_with = "null_as_nan")]
    pub accuracy: Vec<f64>,
    /// Accuracy on the training people per position.
    #[serde(deserialize_with = "null_as_nan")]
    pub train_accuracy: Vec<f64>,
    /// With `own_order`: the test people each position's accuracy counts (those whose value is not yet in the
    /// text there); empty: every test person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tested: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeEval {
    pub kind: ProbeKind,
    /// Where the probe reads (`name`, `before_<attribute>`).
    pub positions: Vec<String>,
    pub train_people: usize,
    pub test_people: usize,
    pub targets: Vec<TargetScore>,
    /// Targets with fewer than [`MIN_PER_CLASS`] training people per class (their accuracy is a lower bound
    /// on what the state holds).
    pub few_per_class: Vec<String>,
    pub steps: usize,
    /// Mean training loss (summed over heads) of the last epoch.
    pub final_loss: f64,
    pub config: ProbeConfig,
}

/// Inputs of one person: tokens (from `<eot>`), the probe positions in them and, in the own order, which
/// (position, target) cells test storage for this person (`tests[position][target]`; empty: every cell counts).
struct Example {
    tokens: Vec<u32>,
    at: Vec<usize>,
    tests: Vec<Vec<bool>>,
}

fn position_names(kind: ProbeKind, own_order: bool) -> Vec<String> {
    match kind {
        ProbeKind::P if own_order => (1..=Attribute::ALL.len())
            .map(|k| format!("before_value_{k}"))
            .collect(),
        ProbeKind::P => Attribute::ALL
            .iter()
            .map(|a| format!("before_{}", a.name()))
            .collect(),
        ProbeKind::Q => vec!["name".to_string()],
    }
}

/// The attributes whose values a target can be read from: its own, and for the employer's city the employer's
/// too (the city follows from the company).
fn read_from(t: Target) -> &'static [Attribute] {
    match t {
        Target::EmployerCity => &[Attribute::Employer, Attribute::EmployerCity],
        Target::BirthDay | Target::BirthMonth | Target::BirthYear => &[Attribute::BirthDate],
        Target::BirthCity => &[Attribute::BirthCity],
        Target::University => &[Attribute::University],
        Target::Major => &[Attribute::Major],
        Target::Employer => &[Attribute::Employer],
    }
}

/// With `strict` (own order only), a cell also drops the person where the probed position is its target's own
/// (right before the target's value).
fn examples(data: &BioS, kind: ProbeKind, own_order: bool, strict: bool) -> Vec<Example> {
    (0..data.n_people())
        .map(|p| {
            let bio = if own_order {
                data.render_training(p, 0)
            } else {
                data.render_eval(p)
            };
            let name_end = bio.name.start + bio.name.len; // exclusive, in biography tokens
            let mut tokens = vec![EOT];
            let mut tests = Vec::new();
            // Biography token k sits at sequence position k + 1.
            let at: Vec<usize> = match kind {
                ProbeKind::P => {
                    // The token before the value: (start − 1) + 1.
                    let start = |a: Attribute| bio.values[a.index()].start;
                    let mut at: Vec<usize> = Attribute::ALL.iter().map(|&a| start(a)).collect();
                    if own_order {
                        // Ordinal positions; a cell tests storage while none of its target's values is in the
                        // text yet (every token fed is before the probed position's value); strictly, while
                        // none is next either.
                        at.sort_unstable();
                        let unseen = |a: Attribute, k: usize| {
                            if strict {
                                start(a) > k
                            } else {
                                start(a) >= k
                            }
                        };
                        tests = at
                            .iter()
                            .map(|&k| {
                                Target::ALL
                                    .iter()
                                    .map(|&t| read_from(t).iter().all(|&a| unseen(a, k)))
                                    .collect()
                            })
                            .collect();
                    }
                    let last = *at.iter().max().expect("six attributes");
                    tokens.extend_from_slice(&bio.tokens[..last]); // up to the last probed token
                    at
                }
                ProbeKind::Q => {
                    tokens.extend_from_slice(&bio.tokens[bio.name.start..name_end]);
                    vec![tokens.len() - 1]
                }
            };
            Example { tokens, at, tests }
        })
        .collect()
}

/// Hidden states at each example's probe positions, [n, positions, d].
fn hidden_at<B: Kernels>(gpt: &Gpt<B>, ex: &[&Example], device: &B::Device) -> Tensor<B, 3> {
    let width = ex.iter().map(|e| e.tokens.len()).max().unwrap_or(1);
    let b = ex.len();
    let k = ex.first().map_or(0, |e| e.at.len());
    let mut x = Vec::with_capacity(b * width);
    for e in ex {
        x.extend(e.tokens.iter().map(|&t| t as i32));
        x.extend(std::iter::repeat_n(EOT as i32, width - e.tokens.len()));
    }
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(x, [b, width]), device);
    let h = gpt.forward_hidden(x); // [b, width, d]
    let d = h.dims()[2];
    let idx: Vec<i32> = ex
        .iter()
        .enumerate()
        .flat_map(|(i, e)| e.at.iter().map(move |&a| (i * width + a) as i32))
        .collect();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [b * k]), device);
    h.reshape([b * width, d]).select(0, idx).reshape([b, k, d])
}

/// Share of `test` labels equal to the most frequent label of `train` (ties: the smallest label): the accuracy
/// of a probe that ignores its input.
pub fn majority_chance(train: &[u32], test: &[u32]) -> f64 {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for &y in train {
        *counts.entry(y).or_default() += 1;
    }
    let Some(top) = counts
        .iter()
        .max_by_key(|(y, c)| (**c, std::cmp::Reverse(**y)))
        .map(|(y, _)| *y)
    else {
        return 0.0;
    };
    test.iter().filter(|&&y| y == top).count() as f64 / test.len().max(1) as f64
}

/// Labels of the heads: `y[t][i]` is person i's class for target t, below `widths[t]`.
#[derive(Clone, Debug)]
pub struct Labels {
    pub names: Vec<String>,
    pub widths: Vec<usize>,
    /// Classes that can occur (for the per-class counts).
    pub classes: Vec<usize>,
    pub y: Vec<Vec<u32>>,
}

impl Labels {
    pub fn of_bios(data: &BioS) -> Labels {
        let people = data.people(data.n_people());
        Labels {
            names: Target::ALL.iter().map(|t| t.name().to_string()).collect(),
            widths: Target::ALL.iter().map(|t| t.width(&data.pools)).collect(),
            classes: Target::ALL.iter().map(|t| t.classes(&data.pools)).collect(),
            y: Target::ALL
                .iter()
                .map(|t| people.iter().map(|p| t.class(p, &data.pools)).collect())
                .collect(),
        }
    }
}

/// Per (position, target): a batch's 0/1 row weights `[1, b]` and how many are 1 (the own-order masks).
type CellWeights<B> = Vec<Vec<(Tensor<B, 2>, usize)>>;

/// One head per position, each predicting every target: a linear map d → Σ widths, split by target.
#[derive(Module, Debug)]
struct Heads<B: Backend> {
    heads: Vec<Linear<B>>,
}

impl<B: Kernels> Heads<B> {
    fn new(positions: usize, d: usize, widths: &[usize], device: &B::Device) -> Self {
        let total = widths.iter().sum();
        Heads {
            heads: (0..positions)
                .map(|_| {
                    LinearConfig::new(d, total)
                        .with_initializer(Initializer::Zeros)
                        .init(device)
                })
                .collect(),
        }
    }

    /// Logits of position `k` for `h` [b, positions, d]: [b, Σ widths].
    fn logits(&self, h: &Tensor<B, 3>, k: usize) -> Tensor<B, 2> {
        let [b, _, d] = h.dims();
        let x = h.clone().narrow(1, k, 1).reshape([1, b, d]);
        let y = physlab_trainer::layers::linear(&self.heads[k], x);
        let n = y.dims()[2];
        y.reshape([b, n])
    }

    /// Sum over positions and targets of the mean cross-entropy; with `weights[position][target]` (0/1 per row,
    /// and the number of ones), the mean over the rows weighted 1 (a cell with none adds nothing).
    fn loss(
        &self,
        h: &Tensor<B, 3>,
        y: &[Tensor<B, 2, Int>],
        widths: &[usize],
        weights: Option<&CellWeights<B>>,
    ) -> Tensor<B, 1> {
        let b = h.dims()[0];
        let mut loss: Option<Tensor<B, 1>> = None;
        for k in 0..self.heads.len() {
            let logits = self.logits(h, k);
            let mut off = 0;
            for (t, &w) in widths.iter().enumerate() {
                let l = logits.clone().narrow(1, off, w).reshape([1, b, w]);
                off += w;
                let nll = physlab_trainer::model::token_nll(l, y[t].clone());
                let l = match weights {
                    Some(ws) => {
                        let (m, n) = &ws[k][t];
                        (nll * m.clone()).sum().div_scalar((*n).max(1) as f32)
                    }
                    None => nll.mean(),
                };
                loss = Some(match loss {
                    Some(s) => s + l,
                    None => l,
                });
            }
        }
        loss.expect("at least one position and target")
    }

    /// Hits per (position, target) on `h` against `y` (rows = people); with `mask`, only the rows whose
    /// `mask[row][position][target]` holds.
    fn hits(
        &self,
        h: &Tensor<B, 3>,
        y: &[&[u32]],
        widths: &[usize],
        mask: Option<&[Vec<Vec<bool>>]>,
    ) -> Vec<Vec<usize>> {
        (0..self.heads.len())
            .map(|k| {
                let logits = self.logits(h, k);
                let mut off = 0;
                widths
                    .iter()
                    .enumerate()
                    .map(|(t, &w)| {
                        let pred: Vec<i64> = logits
                            .clone()
                            .narrow(1, off, w)
                            .argmax(1)
                            .into_data()
                            .iter::<i64>()
                            .collect();
                        off += w;
                        pred.iter()
                            .zip(y[t])
                            .enumerate()
                            .filter(|(row, (p, y))| {
                                **p == **y as i64 && mask.is_none_or(|m| m[*row][k][t])
                            })
                            .count()
                    })
                    .collect()
            })
            .collect()
    }
}

#[derive(Module, Debug)]
struct LoraProbe<B: Backend> {
    gpt: Gpt<B>,
    heads: Heads<B>,
}

/// Where the states come from: fixed (computed once by the frozen model) or recomputed by a model with a
/// trainable embedding update.
enum States<B: TrainBackend> {
    Fixed(Tensor<B, 3>),
    Lora(Vec<Example>),
}

/// Trains heads on states [n, positions, d] (the first `n_train` rows) and scores them on the rest: the core
/// of the probe, exposed so that it can be checked on synthetic states.
pub fn probe_states<B: TrainBackend>(
    states: Tensor<B::InnerBackend, 3>,
    labels: &Labels,
    n_train: usize,
    cfg: &ProbeConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> (Vec<TargetScore>, usize, f64) {
    probe_states_masked::<B>(states, labels, n_train, None, cfg, device, progress)
}

/// [`probe_states`], each person's cells trained and scored only where `masks[person][position][target]` (the
/// own-order P-probe: a cell tests storage only while its value is not yet in the text, so its head learns from
/// those people alone, not to copy a value already written); `TargetScore::tested` says how many test people each
/// position counted.
pub fn probe_states_masked<B: TrainBackend>(
    states: Tensor<B::InnerBackend, 3>,
    labels: &Labels,
    n_train: usize,
    masks: Option<&[Vec<Vec<bool>>]>,
    cfg: &ProbeConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> (Vec<TargetScore>, usize, f64) {
    let d = states.dims()[2];
    let k = states.dims()[1];
    B::seed(device, cfg.seed);
    let heads = Heads::<B>::new(k, d, &labels.widths, device);
    let (heads, _, steps, loss) = fit(
        heads,
        None,
        &States::Fixed(Tensor::from_inner(states.clone())),
        labels,
        n_train,
        masks,
        cfg,
        device,
        progress,
    );
    let scores = score::<B::InnerBackend>(
        &heads.valid(),
        |rows| states.clone().narrow(0, rows.start, rows.len()),
        labels,
        n_train,
        masks,
    );
    (scores, steps, loss)
}

/// Accuracy per target and position, and chance, from heads and a way to get the states of a range of people;
/// with `masks`, each cell over the people whose mask holds it (see [`Example::tests`]).
fn score<B: Kernels>(
    heads: &Heads<B>,
    states: impl Fn(std::ops::Range<usize>) -> Tensor<B, 3>,
    labels: &Labels,
    n_train: usize,
    masks: Option<&[Vec<Vec<bool>>]>,
) -> Vec<TargetScore> {
    let n = labels.y[0].len();
    let k = heads.heads.len();
    let count = |range: std::ops::Range<usize>| {
        let mut hits = vec![vec![0usize; labels.widths.len()]; k];
        let mut at = range.start;
        while at < range.end {
            let end = (at + 256).min(range.end);
            let h = states(at..end);
            let y: Vec<&[u32]> = labels.y.iter().map(|y| &y[at..end]).collect();
            let m = masks.map(|m| &m[at..end]);
            for (acc, new) in hits.iter_mut().zip(heads.hits(&h, &y, &labels.widths, m)) {
                for (a, b) in acc.iter_mut().zip(new) {
                    *a += b;
                }
            }
            at = end;
        }
        hits
    };
    // People counted per (position, target): all of the range, or those whose mask holds the cell.
    let counted = |range: std::ops::Range<usize>, p: usize, t: usize| match masks {
        Some(m) => m[range].iter().filter(|c| c[p][t]).count(),
        None => range.len(),
    };
    let test_hits = count(n_train..n);
    let train_hits = count(0..n_train);
    (0..labels.widths.len())
        .map(|t| {
            let train = &labels.y[t][..n_train];
            TargetScore {
                target: labels.names[t].clone(),
                classes: labels.classes[t],
                classes_in_train: train
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                train_per_class: n_train as f64 / labels.classes[t].max(1) as f64,
                chance: majority_chance(train, &labels.y[t][n_train..]),
                accuracy: (0..k)
                    .map(|p| share(test_hits[p][t], counted(n_train..n, p, t)))
                    .collect(),
                train_accuracy: (0..k)
                    .map(|p| share(train_hits[p][t], counted(0..n_train, p, t)))
                    .collect(),
                tested: match masks {
                    Some(_) => (0..k).map(|p| counted(n_train..n, p, t)).collect(),
                    None => Vec::new(),
                },
            }
        })
        .collect()
}

/// The training loop shared by both probes; with `gpt` the embedding update trains too.
#[allow(clippy::too_many_arguments)]
fn fit<B: TrainBackend>(
    heads: Heads<B>,
    gpt: Option<Gpt<B>>,
    states: &States<B>,
    labels: &Labels,
    n_train: usize,
    masks: Option<&[Vec<Vec<bool>>]>,
    cfg: &ProbeConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> (Heads<B>, Option<Gpt<B>>, usize, f64) {
    let batch = cfg.batch.min(n_train).max(1);
    let per_epoch = n_train.div_ceil(batch);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, LoraProbe<B>>();
    let mut optim_heads = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, Heads<B>>();
    let mut lora = gpt.map(|gpt| LoraProbe {
        gpt,
        heads: heads.clone(),
    });
    let mut heads = heads;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut steps = 0;
    let mut last_loss = f64::NAN;
    let report_every = (cfg.epochs / 10).max(1);
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut sum = 0.0;
        for chunk in order.chunks(batch) {
            let y: Vec<Tensor<B, 2, Int>> = labels
                .y
                .iter()
                .map(|y| {
                    let v: Vec<i32> = chunk.iter().map(|&i| y[i] as i32).collect();
                    Tensor::from_data(TensorData::new(v, [1, chunk.len()]), device)
                })
                .collect();
            // Per (position, target): which rows of the batch train it (all, without masks).
            let weights: Option<CellWeights<B>> = masks.map(|m| {
                let (positions, targets) = (m[chunk[0]].len(), labels.y.len());
                (0..positions)
                    .map(|k| {
                        (0..targets)
                            .map(|t| {
                                let v: Vec<f32> = chunk
                                    .iter()
                                    .map(|&i| f32::from(u8::from(m[i][k][t])))
                                    .collect();
                                let n = v.iter().filter(|&&x| x > 0.0).count();
                                (
                                    Tensor::from_data(TensorData::new(v, [1, chunk.len()]), device),
                                    n,
                                )
                            })
                            .collect()
                    })
                    .collect()
            });
            let weights = weights.as_ref();
            match (states, lora.take()) {
                (States::Fixed(all), None) => {
                    let idx: Vec<i32> = chunk.iter().map(|&i| i as i32).collect();
                    let idx =
                        Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [chunk.len()]), device);
                    let h = all.clone().select(0, idx);
                    let loss = heads.loss(&h, &y, &labels.widths, weights);
                    sum += loss.clone().into_scalar().elem::<f64>();
                    let grads = GradientsParams::from_grads(loss.backward(), &heads);
                    heads = optim_heads.step(cfg.lr, heads, grads);
                }
                (States::Lora(ex), Some(m)) => {
                    let batch_ex: Vec<&Example> = chunk.iter().map(|&i| &ex[i]).collect();
                    let h = hidden_at(&m.gpt, &batch_ex, device);
                    let loss = m.heads.loss(&h, &y, &labels.widths, weights);
                    sum += loss.clone().into_scalar().elem::<f64>();
                    let grads = GradientsParams::from_grads(loss.backward(), &m);
                    lora = Some(optim.step(cfg.lr, m, grads));
                }
                _ => unreachable!("fixed states train heads alone, LoRA states a LoRA model"),
            }
            steps += 1;
        }
        last_loss = sum / per_epoch as f64;
        if (epoch + 1) % report_every == 0 || epoch + 1 == cfg.epochs {
            progress(&format!(
                "epoch {}/{} step {} loss {:.3}",
                epoch + 1,
                cfg.epochs,
                steps,
                last_loss
            ));
        }
    }
    match lora {
        Some(m) => (m.heads, Some(m.gpt), steps, last_loss),
        None => (heads, None, steps, last_loss),
    }
}

/// Trains a `kind` probe on the frozen `gpt` (loaded on the autodiff backend `B`) and scores it on the people
/// after the first `train_share` of them. `progress` receives one line per tenth of the training.
pub fn probe<B: TrainBackend>(
    gpt: Gpt<B>,
    shape: &GptShape,
    data: &BioS,
    kind: ProbeKind,
    cfg: &ProbeConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> ProbeEval {
    let own = cfg.own_order && kind == ProbeKind::P;
    let mut all = examples(data, kind, own, own && cfg.strict);
    // The cells each person's example tests, moved out of the examples (nothing else reads them there).
    let masks: Option<Vec<Vec<Vec<bool>>>> = own.then(|| {
        all.iter_mut()
            .map(|e| std::mem::take(&mut e.tests))
            .collect()
    });
    let labels = Labels::of_bios(data);
    let n = all.len();
    let n_train =
        ((n as f64 * cfg.train_share).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let positions = position_names(kind, own);
    let (targets, steps, final_loss) = if cfg.embedding_rank == 0 {
        let frozen = gpt.valid();
        let inner = device.clone();
        let refs: Vec<&Example> = all.iter().collect();
        let states: Vec<Tensor<B::InnerBackend, 3>> = refs
            .chunks(256)
            .map(|c| hidden_at(&frozen, c, &inner))
            .collect();
        progress(&format!("{kind:?}: hidden states of {n} people computed"));
        probe_states_masked::<B>(
            Tensor::cat(states, 0),
            &labels,
            n_train,
            masks.as_deref(),
            cfg,
            device,
            progress,
        )
    } else {
        let lora = GptShape {
            lora: LoraShape {
                qv_rank: 0,
                embedding_rank: cfg.embedding_rank,
                alpha: 0.0,
            },
            ..*shape
        };
        B::seed(device, cfg.seed);
        // The embedding update is the only trainable part of the model; the heads train too.
        let gpt = gpt
            .with_lora(&lora, device)
            .map(&mut FreezeAllButLora::new());
        let heads = Heads::<B>::new(positions.len(), shape.d_model, &labels.widths, device);
        let (train_ex, _) = all.split_at(n_train);
        let train_ex: Vec<Example> = train_ex
            .iter()
            .map(|e| Example {
                tokens: e.tokens.clone(),
                at: e.at.clone(),
                tests: Vec::new(),
            })
            .collect();
        let (heads, gpt, steps, loss) = fit(
            heads,
            Some(gpt),
            &States::Lora(train_ex),
            &labels,
            n_train,
            masks.as_deref(),
            cfg,
            device,
            progress,
        );
        let gpt = gpt.expect("the LoRA model comes back").valid();
        let inner = device.clone();
        let scores = score::<B::InnerBackend>(
            &heads.valid(),
            |rows| {
                let refs: Vec<&Example> = all[rows].iter().collect();
                hidden_at(&gpt, &refs, &inner)
            },
            &labels,
            n_train,
            masks.as_deref(),
        );
        (scores, steps, loss)
    };
    let few_per_class = targets
        .iter()
        .filter(|t| t.train_per_class < MIN_PER_CLASS)
        .map(|t| t.target.clone())
        .collect();
    ProbeEval {
        kind,
        positions,
        train_people: n_train,
        test_people: n - n_train,
        targets,
        few_per_class,
        steps,
        final_loss,
        config: cfg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use physlab_generators::bios::BioSConfig;

    #[test]
    fn probe_positions_sit_right_before_each_value_and_see_no_value_after_them() {
        let d = BioS::build(
            &BioSConfig {
                people: 24,
                multi: 2,
                permute: true,
                ..BioSConfig::default()
            },
            3,
        )
        .unwrap();
        for (p, e) in examples(&d, ProbeKind::P, false, false).iter().enumerate() {
            let bio = d.render_eval(p);
            assert_eq!(e.tokens[0], EOT);
            assert_eq!(e.at.len(), 6);
            for a in Attribute::ALL {
                let start = bio.values[a.index()].start;
                // Sequence position k + 1 holds biography token k: the probe reads the token before the value.
                assert_eq!(e.at[a.index()], start, "person {p} {a:?}");
                assert_eq!(e.tokens[e.at[a.index()]], bio.tokens[start - 1]);
            }
            // The last probed position is the last token fed: no value token after a probe can leak into it
            // (the model is causal), and the biography is cut there.
            assert_eq!(*e.at.iter().max().unwrap(), e.tokens.len() - 1);
        }
        for (p, e) in examples(&d, ProbeKind::Q, false, false).iter().enumerate() {
            let bio = d.render_eval(p);
            assert_eq!(e.at, vec![e.tokens.len() - 1]);
            assert_eq!(
                e.tokens[1..],
                bio.tokens[bio.name.start..bio.name.start + bio.name.len]
            );
        }
        // Every template starts with the name (so P at the name would equal Q): the first value comes later.
        assert!((0..24).all(|p| d.render_eval(p).name.start == 0));
    }

    /// 40 people whose training biographies come in permuted sentence orders.
    fn permuted_people() -> BioS {
        BioS::build(
            &BioSConfig {
                people: 40,
                permute: true,
                ..BioSConfig::default()
            },
            5,
        )
        .unwrap()
    }

    /// In the own order the positions are the person's first training biography's values in order, and a cell
    /// tests storage exactly while none of its target's values (the employer's too, for its city) is in the text.
    #[test]
    fn own_order_positions_follow_the_training_biography_and_mask_what_the_text_shows() {
        let d = permuted_people();
        let mut orders = std::collections::BTreeSet::new();
        for (p, e) in examples(&d, ProbeKind::P, true, false).iter().enumerate() {
            let bio = d.render_training(p, 0);
            let start = |a: Attribute| bio.values[a.index()].start;
            assert!(
                e.at.windows(2).all(|w| w[0] < w[1]),
                "person {p}: ordinal positions"
            );
            assert_eq!(e.tests.len(), 6);
            for (k, &at) in e.at.iter().enumerate() {
                // The token right before the k-th value of the training biography.
                assert!(Attribute::ALL.iter().any(|&a| start(a) == at));
                assert_eq!(e.tokens[at], bio.tokens[at - 1]);
                for (t, target) in Target::ALL.iter().enumerate() {
                    let unseen = read_from(*target).iter().all(|&a| start(a) >= at);
                    assert_eq!(e.tests[k][t], unseen, "person {p} position {k} {target:?}");
                }
            }
            // At the first position nothing is in the text yet; at the last, only the last value's targets.
            assert!(e.tests[0].iter().all(|&c| c));
            assert!(e.tests[5].iter().filter(|&&c| c).count() < Target::ALL.len());
            orders.insert(Attribute::ALL.map(start).to_vec());
        }
        // The permuted biographies do not all share one order (else this would test the canonical case only).
        assert!(orders.len() > 1);
    }

    /// Strictly, a cell is the non-strict cell less the target's own position: at each position exactly the
    /// targets read from the value there are dropped (both for the employer's city at the employer's and its
    /// own), and at the last position no cell is left.
    #[test]
    fn a_strict_own_order_mask_drops_exactly_each_targets_own_position() {
        let d = permuted_people();
        let loose = examples(&d, ProbeKind::P, true, false);
        let strict = examples(&d, ProbeKind::P, true, true);
        let mut dropped_at_first = 0;
        for (p, (l, s)) in loose.iter().zip(&strict).enumerate() {
            assert_eq!((&l.tokens, &l.at), (&s.tokens, &s.at), "person {p}");
            let bio = d.render_training(p, 0);
            let start = |a: Attribute| bio.values[a.index()].start;
            for (k, &at) in l.at.iter().enumerate() {
                for (t, target) in Target::ALL.iter().enumerate() {
                    let own = read_from(*target).iter().any(|&a| start(a) == at);
                    assert_eq!(
                        s.tests[k][t],
                        l.tests[k][t] && !own,
                        "person {p} position {k} {target:?}"
                    );
                    if k == 0 && own {
                        dropped_at_first += 1;
                    }
                }
            }
            assert!(
                s.tests[5].iter().all(|&c| !c),
                "person {p}: nothing after the last value"
            );
            // At the first position only the first value's targets are dropped, and at least one is.
            assert!(s.tests[0].iter().any(|&c| !c) && s.tests[0].iter().any(|&c| c));
        }
        assert!(dropped_at_first >= 40);
    }

    #[test]
    fn targets_are_the_record_classes_and_the_employer_city_follows_the_employer() {
        let d = BioS::build(&BioSConfig::default(), 1).unwrap();
        let pools = &d.pools;
        let p = d.person(7);
        assert_eq!(Target::BirthDay.class(&p, pools), p.birth_day as u32 - 1);
        assert_eq!(
            Target::EmployerCity.class(&p, pools),
            pools.companies[p.employer as usize].city as u32
        );
        // Embedded pools: 200 cities, 141 of them host a company (SPEC §1 sizes; counted from companies.txt).
        assert_eq!(Target::EmployerCity.width(pools), 200);
        assert_eq!(Target::EmployerCity.classes(pools), 141);
        assert_eq!(Target::University.classes(pools), 300);
        for t in Target::ALL {
            assert!((0..50).all(|i| (t.class(&d.person(i), pools) as usize) < t.width(pools)));
        }
    }
}
