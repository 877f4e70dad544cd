//! physlab eval: what a model learned about a bioS population, in bits.
//!
//! Per SPEC §4 (Part 3.3): token losses are natural-log cross-entropies, *summed* over the tokens of a name or
//! a value. p1 (`loss_name`) is the mean over people of −ln Pr(name tokens) at the start of a biography;
//! p2 (`loss_value`) the mean over people of the summed losses of birth date, birth city, university, major,
//! employer and the pronoun, each given the name and its sentence's prefix, read from the canonical-order
//! evaluation biography (employer before its city; the employer's city is reported but not counted).

pub mod biod;
pub mod corpus;
pub mod decode;
pub mod fit;
pub mod plot;
pub mod probe;
pub mod qa;
pub mod stats;

use burn::tensor::{Int, Tensor, TensorData};
use physlab_generators::bios::BioS;
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
    /// Mean over people of the summed −ln p of the value's tokens (nats).
    pub loss: f64,
    /// Share of people whose first value token is the model's argmax.
    pub first_token_accuracy: f64,
    /// Share of people whose every value token is the argmax given the true prefix — the same as greedy
    /// decoding reproducing the whole value.
    pub whole_value_accuracy: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BioSEval {
    pub people: usize,
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
    /// R = bits / parameters counted for capacity.
    pub capacity_ratio: f64,
    /// R^max = perfect-recall bits / parameters counted for capacity.
    pub capacity_ratio_max: f64,
    pub attributes: Vec<AttributeEval>,
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

/// Evaluates `model` on every person of `data`, `batch` people per forward pass.
pub fn evaluate_bios<B: Kernels>(
    model: &Gpt<B>,
    data: &BioS,
    params: ParamCounts,
    batch: usize,
    device: &B::Device,
) -> BioSEval {
    let n = data.n_people();
    let mut name_loss = 0.0f64;
    // [attribute 0..6, pronoun = 6]: summed loss, first-token hits, whole-value hits, count
    let mut loss = [0.0f64; 7];
    let mut first = [0usize; 7];
    let mut whole = [0usize; 7];
    let mut count = [0usize; 7];
    for chunk_start in (0..n).step_by(batch.max(1)) {
        let ids: Vec<usize> = (chunk_start..(chunk_start + batch).min(n)).collect();
        let bios: Vec<_> = ids.iter().map(|&p| data.render_eval(p)).collect();
        // <eot> first, so that the name is predicted at the start of a biography, as in training.
        let seqs: Vec<Vec<u32>> = bios
            .iter()
            .map(|b| {
                std::iter::once(EOT)
                    .chain(b.tokens.iter().copied())
                    .collect()
            })
            .collect();
        let s = score(model, &seqs, device);
        for (row, bio) in bios.iter().enumerate() {
            // Token k of the biography is target position k of the row (the row's input starts with <eot>).
            let at = |k: usize| row * s.width + k;
            let span_stats = |start: usize, len: usize| -> (f64, bool, bool) {
                let l: f64 = (start..start + len).map(|k| s.nll[at(k)] as f64).sum();
                let hit = |k: usize| s.argmax[at(k)] == bio.tokens[k] as i64;
                (l, hit(start), (start..start + len).all(hit))
            };
            name_loss += span_stats(bio.name.start, bio.name.len).0;
            for a in Attribute::ALL {
                let v = bio.values[a.index()];
                let (l, f, w) = span_stats(v.start, v.len);
                let i = a.index();
                loss[i] += l;
                first[i] += f as usize;
                whole[i] += w as usize;
                count[i] += 1;
            }
            if let Some(p) = bio.pronoun {
                let (l, f, w) = span_stats(p, 1);
                loss[6] += l;
                first[6] += f as usize;
                whole[6] += w as usize;
                count[6] += 1;
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
        let mean = loss[i] / c;
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
        loss_name,
        loss_value,
        log2_n0,
        log2_s0,
        bits,
        bits_per_person: bits / n as f64,
        perfect_recall_bits: perfect,
        params,
        capacity_ratio: bits / params.capacity as f64,
        capacity_ratio_max: perfect / params.capacity as f64,
        attributes,
    }
}

/// The result table a person reads at the end of a run.
pub fn render_table(title: &str, e: &BioSEval, exposures: f64) -> String {
    let mut s = String::new();
    s.push_str(&format!("== {title} ==\n"));
    let rows: Vec<(&str, String)> = vec![
        ("people N", e.people.to_string()),
        ("parameters (total)", e.params.total.to_string()),
        (
            "parameters (non-embedding)",
            e.params.non_embedding.to_string(),
        ),
        (
            "parameters (counted for capacity)",
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
            format!("{:.4}", e.capacity_ratio),
        ),
        ("R^max (bits/param)", format!("{:.4}", e.capacity_ratio_max)),
    ];
    for (k, v) in rows {
        s.push_str(&format!("{k:<36}{v}\n"));
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
