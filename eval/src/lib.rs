//! physlab eval: what a model learned about a bioS population, in bits.
//!
//! Per SPEC §4 (Part 3.3): token losses are natural-log cross-entropies, *summed* over the tokens of a name or
//! a value. p1 (`loss_name`) is the mean over people of −ln Pr(name tokens) at the start of a biography;
//! p2 (`loss_value`) the mean over people of the summed losses of birth date, birth city, university, major,
//! employer and the pronoun, each given the name and its sentence's prefix. [`evaluate_bios`] reads them from the
//! canonical-order evaluation biography (employer before its city; the employer's city is reported but not
//! counted); [`evaluate_bios_own_orders`] from every one of the person's own training biographies, averaged per
//! person, where a biography that states the city before the employer counts the city's loss with the
//! employer's ([`BioScore::counted_loss`]).

pub mod biod;
pub mod corpus;
pub mod decode;
pub mod fit;
pub mod plot;
pub mod probe;
pub mod qa;
pub mod stats;

use burn::tensor::{Int, Tensor, TensorData};
use physlab_generators::bios::{BioS, RenderedBio};
use physlab_generators::bits::bios_bits;
use physlab_generators::people::Attribute;
use physlab_generators::tokenizer::EOT;
use physlab_trainer::kernels::Kernels;
use physlab_trainer::model::{token_nll, Gpt};
use physlab_trainer::ParamCounts;
use serde::{Deserialize, Serialize};

/// Loss and accuracy of one attribute over all people.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AttributeEval {
    pub attribute: String,
    pub counted_in_bits: bool,
    /// Mean over people (of the mean over the biographies scored for each) of the summed −ln p of the value's
    /// tokens (nats). For the employer it is the loss counted in p2: in a biography that states the employer's
    /// city before the employer, the city's loss is added to the employer's (see [`BioScore::counted_loss`]).
    pub loss: f64,
    /// Share of the scored biographies whose first value token is the model's argmax.
    pub first_token_accuracy: f64,
    /// Share of the scored biographies whose every value token is the argmax given the true prefix — the same as
    /// greedy decoding reproducing the whole value.
    pub whole_value_accuracy: f64,
}

fn one() -> usize {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BioSEval {
    pub people: usize,
    /// Biographies scored per person: 1 for the canonical evaluation biography, `multi · permutations` for the
    /// evaluation in the person's own training biographies ([`evaluate_bios_own_orders`]).
    #[serde(default = "one")]
    pub biographies_per_person: usize,
    /// Share of the scored biographies that state the employer's city before the employer (0 in canonical
    /// order); in those the employer's counted loss includes the city's.
    #[serde(default)]
    pub employer_city_first: f64,
    /// p1, nats.
    pub loss_name: f64,
    /// p2, nats.
    pub loss_value: f64,
    pub log2_n0: f64,
    pub log2_s0: f64,
    /// Bits of knowledge (Def. 4.3).
    pub bits: f64,
    pub bits_per_person: f64,
    pub perfect_recall_bits: f64,
    pub params: ParamCounts,
    /// R = bits / all parameters, the embedding counted for the whole vocabulary (the paper's count; SPEC §5a).
    pub capacity_ratio: f64,
    /// R^max = perfect-recall bits / all parameters (the paper's count).
    pub capacity_ratio_max: f64,
    /// R with the embedding counted only for the tokens that occur in the data (`params.capacity`). NaN in an
    /// eval.json written before the paper's count became the headline (`report` derives it there).
    #[serde(default = "nan")]
    pub capacity_ratio_used_rows: f64,
    /// R^max with the used embedding rows only.
    #[serde(default = "nan")]
    pub capacity_ratio_max_used_rows: f64,
    /// bits / perfect_recall_bits: the share of what there is to store that the model holds (NaN in an eval.json
    /// written before it was added; the report derives it there).
    #[serde(default = "nan")]
    pub stored_fraction: f64,
    pub attributes: Vec<AttributeEval>,
}

pub(crate) fn nan() -> f64 {
    f64::NAN
}

/// Per-position results of one forward pass over a padded batch.
pub(crate) struct Scored {
    pub(crate) nll: Vec<f32>,
    pub(crate) argmax: Vec<i64>,
    pub(crate) width: usize,
}

pub(crate) fn score<B: Kernels>(model: &Gpt<B>, seqs: &[Vec<u32>], device: &B::Device) -> Scored {
    let width = seqs.iter().map(Vec::len).max().unwrap_or(1) - 1;
    let b = seqs.len();
    let mut x = Vec::with_capacity(b * width);
    let mut y = Vec::with_capacity(b * width);
    for s in seqs {
        let mut padded = s.clone();
        padded.resize(width + 1, EOT);
        x.extend(padded[..width].iter().map(|&t| t as i32));
        y.extend(padded[1..].iter().map(|&t| t as i32));
    }
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(x, [b, width]), device);
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(y, [b, width]), device);
    let logits = model.forward(x);
    let argmax = logits.clone().argmax(2).into_data().iter::<i64>().collect();
    let nll = token_nll(logits, y).into_data().iter::<f32>().collect();
    Scored { nll, argmax, width }
}

/// The model on one span of a biography.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpanScore {
    /// Σ −ln p of the span's tokens (nats), each given the true prefix.
    pub loss: f64,
    /// The span's first token is the argmax.
    pub first_hit: bool,
    /// Every token of the span is the argmax.
    pub whole_hit: bool,
}

/// The model on one biography: its name, its six values (indexed by [`Attribute::index`]) and its first pronoun.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BioScore {
    pub name: SpanScore,
    pub values: [SpanScore; 6],
    pub pronoun: Option<SpanScore>,
    /// The biography states the employer's city before the employer.
    pub city_before_employer: bool,
}

impl BioScore {
    /// The loss of attribute `a` counted in p2 (SPEC §4).
    ///
    /// The employer's city is a function of the employer, so it carries no bits of its own: what the model knows
    /// about the employer is −ln P(employer, city) = −ln P(employer) + −ln P(city | employer), and since the city
    /// follows from the employer the second term is ≈ 0 for a model that knows it. When the employer comes first
    /// that is the employer's loss alone (the city's loss is reported, not counted). When a biography's order
    /// puts the city *before* the employer, the model's uncertainty about the employer is split: part of it is
    /// paid at the city (−ln P(city)) and the rest at the employer (−ln P(employer | city), small once the city
    /// narrows the companies down). Counting loss(employer) alone would then understate the loss and overstate
    /// the employer's bits; by the chain rule the counted loss is loss(city) + loss(employer) =
    /// −ln P(city, employer) = −ln P(employer) (the pair is determined by the employer).
    pub fn counted_loss(&self, a: Attribute) -> f64 {
        let own = self.values[a.index()].loss;
        if a == Attribute::Employer && self.city_before_employer {
            own + self.values[Attribute::EmployerCity.index()].loss
        } else {
            own
        }
    }
}

/// Scores `bios` in one forward pass (a padded batch), each after an `<eot>` so that the first tokens are
/// predicted at the start of a biography, as in training.
pub fn score_biographies<B: Kernels>(
    model: &Gpt<B>,
    bios: &[RenderedBio],
    device: &B::Device,
) -> Vec<BioScore> {
    if bios.is_empty() {
        return Vec::new();
    }
    let seqs: Vec<Vec<u32>> = bios
        .iter()
        .map(|b| {
            std::iter::once(EOT)
                .chain(b.tokens.iter().copied())
                .collect()
        })
        .collect();
    let s = score(model, &seqs, device);
    bios.iter()
        .enumerate()
        .map(|(row, bio)| {
            // Token k of the biography is target position k of the row (the row's input starts with <eot>).
            let at = |k: usize| row * s.width + k;
            let span = |start: usize, len: usize| -> SpanScore {
                let loss: f64 = (start..start + len).map(|k| s.nll[at(k)] as f64).sum();
                let hit = |k: usize| s.argmax[at(k)] == bio.tokens[k] as i64;
                SpanScore {
                    loss,
                    first_hit: hit(start),
                    whole_hit: (start..start + len).all(hit),
                }
            };
            let position = |a: Attribute| bio.order.iter().position(|&x| x == a.index());
            BioScore {
                name: span(bio.name.start, bio.name.len),
                values: Attribute::ALL.map(|a| {
                    let v = bio.values[a.index()];
                    span(v.start, v.len)
                }),
                pronoun: bio.pronoun.map(|p| span(p, 1)),
                city_before_employer: position(Attribute::EmployerCity)
                    < position(Attribute::Employer),
            }
        })
        .collect()
}

/// Evaluates `model` on every person of `data`, `batch` people per forward pass, in each person's canonical-order
/// evaluation biography ([`BioS::render_eval`]: entry 0's templates, employer before its city).
pub fn evaluate_bios<B: Kernels>(
    model: &Gpt<B>,
    data: &BioS,
    params: ParamCounts,
    batch: usize,
    device: &B::Device,
) -> BioSEval {
    evaluate_people(model, data, params, batch, device, 1, |p, _| {
        data.render_eval(p)
    })
}

/// Evaluates `model` on every person of `data` in the person's own training biographies: all
/// `multi · permutations` of them ([`BioS::render_training`]), in the templates and sentence orders the model was
/// trained on, `batch` biographies per forward pass. p1 is the mean over people of the mean over their
/// biographies of −ln Pr(name) (at the start of the biography, or after the sentences before it in the
/// "reverse" variants); p2 the mean over people of the mean over their biographies of the summed counted value
/// losses (the employer's includes its city's where the city comes first: [`BioScore::counted_loss`]);
/// accuracies are shares of all scored biographies. For `permute` runs the canonical order of
/// [`evaluate_bios`] is one the model may never have seen, so this is the fairer figure of what it stores.
///
/// `None` for `fresh` datasets: a person has no fixed training biographies there.
pub fn evaluate_bios_own_orders<B: Kernels>(
    model: &Gpt<B>,
    data: &BioS,
    params: ParamCounts,
    batch: usize,
    device: &B::Device,
) -> Option<BioSEval> {
    if data.config.fresh {
        return None;
    }
    let per_person = data.config.per_person();
    Some(evaluate_people(
        model,
        data,
        params,
        batch,
        device,
        per_person,
        |p, k| data.render_training(p, k),
    ))
}

/// Scores `per_person` biographies (`render(person, k)`, k in 0..per_person) of every person of `data`,
/// `batch` biographies per forward pass, and averages per person, then over people.
fn evaluate_people<B: Kernels>(
    model: &Gpt<B>,
    data: &BioS,
    params: ParamCounts,
    batch: usize,
    device: &B::Device,
    per_person: usize,
    render: impl Fn(usize, usize) -> RenderedBio,
) -> BioSEval {
    let n = data.n_people();
    let per_person = per_person.max(1);
    let pp = per_person as f64;
    let total = n * per_person;
    let mut name_loss = 0.0f64;
    // [attribute 0..6, pronoun = 6]: summed per-person mean loss, first-token hits, whole-value hits, count
    let mut loss = [0.0f64; 7];
    let mut first = [0usize; 7];
    let mut whole = [0usize; 7];
    let mut count = [0usize; 7];
    let mut city_first = 0usize;
    // One person's sums over their biographies (the pronoun's loss is averaged over the biographies that show it).
    let mut person_name = 0.0f64;
    let mut person_loss = [0.0f64; 7];
    let mut person_pronouns = 0usize;
    let mut pronoun_people = 0usize;
    for chunk_start in (0..total).step_by(batch.max(1)) {
        let ids: Vec<(usize, usize)> = (chunk_start..(chunk_start + batch.max(1)).min(total))
            .map(|j| (j / per_person, j % per_person))
            .collect();
        let bios: Vec<RenderedBio> = ids.iter().map(|&(p, k)| render(p, k)).collect();
        let scores = score_biographies(model, &bios, device);
        for (&(_, k), sc) in ids.iter().zip(&scores) {
            person_name += sc.name.loss;
            for a in Attribute::ALL {
                let i = a.index();
                let v = sc.values[i];
                person_loss[i] += sc.counted_loss(a);
                first[i] += v.first_hit as usize;
                whole[i] += v.whole_hit as usize;
                count[i] += 1;
            }
            if let Some(p) = sc.pronoun {
                person_loss[6] += p.loss;
                person_pronouns += 1;
                first[6] += p.first_hit as usize;
                whole[6] += p.whole_hit as usize;
                count[6] += 1;
            }
            city_first += sc.city_before_employer as usize;
            if k + 1 == per_person {
                name_loss += person_name / pp;
                for i in 0..6 {
                    loss[i] += person_loss[i] / pp;
                }
                if person_pronouns > 0 {
                    loss[6] += person_loss[6] / person_pronouns as f64;
                    pronoun_people += 1;
                }
                person_name = 0.0;
                person_loss = [0.0; 7];
                person_pronouns = 0;
            }
        }
    }
    let mut attributes = Vec::new();
    let mut loss_value = 0.0;
    for i in 0..7 {
        if count[i] == 0 {
            continue;
        }
        let (name, counted) = if i < 6 {
            (
                Attribute::ALL[i].name(),
                Attribute::ALL[i].counted_in_bits(),
            )
        } else {
            ("pronoun", true)
        };
        let c = count[i] as f64;
        // Means over people; the pronoun over the people whose biographies show it (all or none of them).
        let people = if i < 6 { n } else { pronoun_people };
        let mean = loss[i] / people as f64;
        if counted {
            loss_value += mean;
        }
        attributes.push(AttributeEval {
            attribute: name.into(),
            counted_in_bits: counted,
            loss: mean,
            first_token_accuracy: first[i] as f64 / c,
            whole_value_accuracy: whole[i] as f64 / c,
        });
    }
    let loss_name = name_loss / n as f64;
    let (log2_n0, log2_s0) = (data.log2_n0(), data.log2_s0());
    let bits = bios_bits(n, log2_n0, log2_s0, loss_name, loss_value);
    let perfect = data.perfect_recall_bits();
    BioSEval {
        people: n,
        biographies_per_person: per_person,
        employer_city_first: city_first as f64 / total.max(1) as f64,
        loss_name,
        loss_value,
        log2_n0,
        log2_s0,
        bits,
        bits_per_person: bits / n as f64,
        perfect_recall_bits: perfect,
        params,
        capacity_ratio: bits / params.total as f64,
        capacity_ratio_max: perfect / params.total as f64,
        capacity_ratio_used_rows: bits / params.capacity as f64,
        capacity_ratio_max_used_rows: perfect / params.capacity as f64,
        stored_fraction: bits / perfect,
        attributes,
    }
}

/// The result table a person reads at the end of a run.
pub fn render_table(title: &str, e: &BioSEval, exposures: f64) -> String {
    let mut s = String::new();
    s.push_str(&format!("== {title} ==\n"));
    let rows: Vec<(&str, String)> = vec![
        ("people N", e.people.to_string()),
        (
            "parameters (all: the paper's count)",
            e.params.total.to_string(),
        ),
        (
            "parameters (non-embedding)",
            e.params.non_embedding.to_string(),
        ),
        (
            "parameters (used embedding rows)",
            e.params.capacity.to_string(),
        ),
        ("exposures", format!("{exposures:.1}")),
        (
            "loss_name p1 (nats)",
            format!(
                "{:.3}   (perfect: ln N = {:.3})",
                e.loss_name,
                (e.people as f64).ln()
            ),
        ),
        (
            "loss_value p2 (nats)",
            format!("{:.3}   (perfect: 0)", e.loss_value),
        ),
        (
            "bits of knowledge",
            format!("{:.0}   ({:.2} bits/person)", e.bits, e.bits_per_person),
        ),
        (
            "perfect-recall bits",
            format!(
                "{:.0}   ({:.2} bits/person)",
                e.perfect_recall_bits,
                e.perfect_recall_bits / e.people as f64
            ),
        ),
        (
            "capacity ratio R (bits/param)",
            format!(
                "{:.4}   (used rows only: {:.4})",
                e.capacity_ratio, e.capacity_ratio_used_rows
            ),
        ),
        (
            "R^max (bits/param)",
            format!(
                "{:.4}   (used rows only: {:.4})",
                e.capacity_ratio_max, e.capacity_ratio_max_used_rows
            ),
        ),
    ];
    for (k, v) in rows {
        s.push_str(&format!("{k:<36}{v}\n"));
    }
    if e.biographies_per_person > 1 || e.employer_city_first > 0.0 {
        s.push_str(&format!(
            "{:<36}{}   (employer's city first in {:.1}%: its loss counted with the employer's)\n",
            "biographies scored per person",
            e.biographies_per_person,
            100.0 * e.employer_city_first
        ));
    }
    s.push_str(&format!(
        "\n{:<16}{:>10}{:>14}{:>14}\n",
        "attribute", "loss", "first-token", "whole-value"
    ));
    for a in &e.attributes {
        let name = if a.counted_in_bits {
            a.attribute.clone()
        } else {
            format!("{} *", a.attribute)
        };
        s.push_str(&format!(
            "{name:<16}{:>10.3}{:>13.1}%{:>13.1}%\n",
            a.loss,
            100.0 * a.first_token_accuracy,
            100.0 * a.whole_value_accuracy
        ));
    }
    s.push_str("(* follows from the employer: reported, not counted in the bits)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use physlab_generators::bios::BioSConfig;
    use physlab_trainer::{Cpu, ModelConfig};

    /// The employer/city rule by hand: in a training biography that states the employer's city before the
    /// employer, the employer's counted loss is the sum of the two spans' losses read straight off [`score`]
    /// (Σ −ln p over each span's tokens); where the employer comes first it is the employer's span alone. An
    /// untrained model (losses near ln V per token) is enough: the check is arithmetic, tolerance 1e-9 (the same
    /// forward pass, summed in the same order).
    #[test]
    fn the_employer_counts_its_city_when_the_city_comes_first() {
        let data = BioS::build(
            &BioSConfig {
                people: 12,
                multi: 2,
                permute: true,
                ..BioSConfig::default()
            },
            5,
        )
        .unwrap();
        let device = Default::default();
        let shape = ModelConfig {
            preset: "gpt2-1-1".into(),
            d_model: 16,
            ..ModelConfig::default()
        }
        .shape(data.tokenizer.vocab_size(), 128)
        .unwrap();
        let model = shape.init::<Cpu>(&device);
        let (emp, city) = (Attribute::Employer, Attribute::EmployerCity);
        let mut seen = [false; 2];
        for p in 0..12 {
            for k in 0..2 {
                let bio = data.render_training(p, k);
                let pos = |a: Attribute| bio.order.iter().position(|&x| x == a.index()).unwrap();
                let city_first = pos(city) < pos(emp);
                seen[city_first as usize] = true;
                // Directly: one row, <eot> then the biography; token j is target position j.
                let seq: Vec<u32> = std::iter::once(EOT).chain(bio.tokens.clone()).collect();
                let s = score(&model, &[seq], &device);
                let span_loss = |a: Attribute| -> f64 {
                    let v = bio.values[a.index()];
                    (v.start..v.start + v.len).map(|j| s.nll[j] as f64).sum()
                };
                let expected = if city_first {
                    span_loss(emp) + span_loss(city)
                } else {
                    span_loss(emp)
                };
                let got = score_biographies(&model, std::slice::from_ref(&bio), &device)[0];
                assert_eq!(got.city_before_employer, city_first);
                assert!(
                    span_loss(city) > 0.1,
                    "an untrained model pays for the city"
                );
                assert!(
                    (got.counted_loss(emp) - expected).abs() < 1e-9,
                    "person {p} bio {k}: counted {} vs {expected} (city first: {city_first})",
                    got.counted_loss(emp)
                );
                // The other attributes count their own span only.
                for a in [Attribute::BirthDate, Attribute::Major, city] {
                    assert!((got.counted_loss(a) - span_loss(a)).abs() < 1e-9);
                }
            }
        }
        assert_eq!(
            seen,
            [true, true],
            "both orders occur among 24 shuffled biographies"
        );
    }
}
