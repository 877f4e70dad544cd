//! Bits of knowledge of a bioD dataset (Part 3.3 Def. 4.1, all three terms; SPEC §4).
//!
//! From each person's canonical evaluation biography (`BioD::render_eval`, preceded by `<eot>` as in training),
//! in nats with losses summed over a span's tokens: p1 (`loss_name`) = mean over people of the name's loss;
//! p2 (`loss_value`) = mean over (person, attribute) of the whole value's loss; p3 (`loss_value1`) = mean over
//! (person, attribute) of the first chunk's loss. bits = N·log2(N0/e^{p1}) + N·K·log2(D^C/e^{p2}) +
//! K·D·log2(T^L/(D·e^{p3})) (`physlab_generators::biod::biod_bit_terms`).

use physlab_generators::biod::{biod_bit_terms, BioD};
use physlab_generators::tokenizer::EOT;
use physlab_trainer::kernels::Kernels;
use physlab_trainer::model::Gpt;
use physlab_trainer::ParamCounts;
use serde::{Deserialize, Serialize};

use crate::score;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BioDEval {
    pub people: usize,
    /// p1, nats.
    pub loss_name: f64,
    /// p2, nats (per attribute value).
    pub loss_value: f64,
    /// p3, nats (per first chunk).
    pub loss_value1: f64,
    /// [name bits, value bits, value-set bits].
    pub terms: [f64; 3],
    pub bits: f64,
    pub perfect_terms: [f64; 3],
    pub perfect_recall_bits: f64,
    pub params: ParamCounts,
    /// R = bits / all parameters (the paper's count: the embedding of the whole vocabulary).
    pub capacity_ratio: f64,
    pub capacity_ratio_max: f64,
    /// R and R^max with the embedding counted only for the tokens that occur in the data (`params.capacity`);
    /// NaN in an eval.json written before the paper's count became the headline.
    #[serde(default = "crate::nan")]
    pub capacity_ratio_used_rows: f64,
    #[serde(default = "crate::nan")]
    pub capacity_ratio_max_used_rows: f64,
    /// bits / perfect_recall_bits: the share of what there is to store that the model holds (NaN in an eval.json
    /// written before it was added; the report derives it there).
    #[serde(default = "crate::nan")]
    pub stored_fraction: f64,
    /// Share of (person, attribute) whose first value token is the argmax.
    pub first_token_accuracy: f64,
    /// Share of (person, attribute) whose every value token is the argmax given the true prefix.
    pub whole_value_accuracy: f64,
}

pub fn evaluate_biod<B: Kernels>(
    model: &Gpt<B>,
    data: &BioD,
    params: ParamCounts,
    batch: usize,
    device: &B::Device,
) -> BioDEval {
    let c = &data.config;
    let n = data.n_people();
    let (mut l1, mut l2, mut l3) = (0.0f64, 0.0f64, 0.0f64);
    let (mut first, mut whole, mut values) = (0usize, 0usize, 0usize);
    for start in (0..n).step_by(batch.max(1)) {
        let bios: Vec<_> = (start..(start + batch).min(n))
            .map(|p| data.render_eval(p))
            .collect();
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
            // Token k of the biography is target position k of the row (the input starts with <eot>).
            let at = |k: usize| row * s.width + k;
            let loss = |start: usize, len: usize| -> f64 {
                (start..start + len).map(|k| s.nll[at(k)] as f64).sum()
            };
            let hit = |k: usize| s.argmax[at(k)] == bio.tokens[k] as i64;
            l1 += loss(bio.name.start, bio.name.len);
            for (v, f) in bio.values.iter().zip(&bio.first_chunks) {
                l2 += loss(v.start, v.len);
                l3 += loss(f.start, f.len);
                first += hit(v.start) as usize;
                whole += (v.start..v.start + v.len).all(hit) as usize;
                values += 1;
            }
        }
    }
    let (p1, p2, p3) = (
        l1 / n as f64,
        l2 / values.max(1) as f64,
        l3 / values.max(1) as f64,
    );
    let terms = biod_bit_terms(
        n,
        data.log2_n0(),
        c.attributes,
        c.chunks,
        c.values,
        c.value_tokens,
        c.vocab,
        p1,
        p2,
        p3,
    );
    let bits: f64 = terms.iter().sum();
    let perfect_terms = data.perfect_terms();
    let perfect: f64 = perfect_terms.iter().sum();
    BioDEval {
        people: n,
        loss_name: p1,
        loss_value: p2,
        loss_value1: p3,
        terms,
        bits,
        perfect_terms,
        perfect_recall_bits: perfect,
        params,
        capacity_ratio: bits / params.total as f64,
        capacity_ratio_max: perfect / params.total as f64,
        capacity_ratio_used_rows: bits / params.capacity as f64,
        capacity_ratio_max_used_rows: perfect / params.capacity as f64,
        stored_fraction: bits / perfect,
        first_token_accuracy: first as f64 / values.max(1) as f64,
        whole_value_accuracy: whole as f64 / values.max(1) as f64,
    }
}

/// The result table of a bioD run.
pub fn render_biod(title: &str, e: &BioDEval, exposures: f64) -> String {
    let mut s = format!("== {title} ==\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<40}{v}\n"));
    row("people N", e.people.to_string());
    row(
        "parameters (all: the paper's count)",
        e.params.total.to_string(),
    );
    row(
        "parameters (used embedding rows)",
        e.params.capacity.to_string(),
    );
    row("exposures", format!("{exposures:.1}"));
    row(
        "p1 loss_name (nats)",
        format!(
            "{:.3}   (perfect: ln N = {:.3})",
            e.loss_name,
            (e.people as f64).ln()
        ),
    );
    row(
        "p2 loss_value (nats)",
        format!("{:.3}   (perfect: 0)", e.loss_value),
    );
    row(
        "p3 loss_value1 (nats)",
        format!("{:.3}   (perfect: 0)", e.loss_value1),
    );
    let names = ["name bits", "value bits", "value-set bits"];
    for ((name, term), perfect) in names.iter().zip(e.terms).zip(e.perfect_terms) {
        row(name, format!("{term:.0}   (perfect {perfect:.0})"));
    }
    row(
        "bits of knowledge (Def. 4.1)",
        format!(
            "{:.0}   (perfect {:.0}: {:.1}% stored)",
            e.bits,
            e.perfect_recall_bits,
            100.0 * e.stored_fraction
        ),
    );
    row(
        "capacity ratio R (bits/param)",
        format!(
            "{:.4}   (used rows only: {:.4})",
            e.capacity_ratio, e.capacity_ratio_used_rows
        ),
    );
    row(
        "R^max (bits/param)",
        format!(
            "{:.4}   (used rows only: {:.4})",
            e.capacity_ratio_max, e.capacity_ratio_max_used_rows
        ),
    );
    row(
        "value accuracy: first token / whole",
        format!(
            "{:.1}% / {:.1}%",
            100.0 * e.first_token_accuracy,
            100.0 * e.whole_value_accuracy
        ),
    );
    s
}
