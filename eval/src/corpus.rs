//! What a model learned of a corpus with a known entropy (SPEC §2), in bits.
//!
//! - **Zipf / Markov**: the model's loss on held-out documents (document indices past the training set: fresh
//!   samples of the same source) against the exact entropy rate H; the excess loss − H in bits/token is the only
//!   meaningful "how good" number, and a loss below H is flagged (it means a bug, or too few tokens to measure).
//! - **Uniform random tokens** (Morris et al. 2025): memorized bits = Σ over the training sequences of
//!   max(0, S·log2 V − the model's NLL of the sequence in bits), and memorized bits per parameter (all of them).
//!
//! Documents longer than the context are scored in consecutive windows of `context` predictions: the first window
//! starts at the `<eot>` that precedes every document in training, the next ones at the last token of the
//! previous window. For an i.i.d. source nothing is lost; for a Markov chain of order k the first k predictions of
//! a later window lack part of their context, which can only raise the loss (never below H).

use physlab_generators::tokenizer::EOT;
use physlab_trainer::kernels::Kernels;
use physlab_trainer::model::Gpt;
use physlab_trainer::ParamCounts;
use serde::{Deserialize, Serialize};

use crate::score;

/// Summed NLL (bits) of every token of `docs` (each predicted from `<eot>` and the document's own prefix) and the
/// number of tokens scored. `context` is the model's context length; `batch` windows per forward pass.
pub fn documents_nll_bits<B: Kernels>(
    model: &Gpt<B>,
    docs: &[Vec<u32>],
    context: usize,
    batch: usize,
    device: &B::Device,
) -> (f64, usize) {
    documents_nll_bits_each(model, docs, context, batch, device)
        .iter()
        .fold((0.0, 0), |(b, t), &(db, dt)| (b + db, t + dt))
}

/// [`documents_nll_bits`] per document: (NLL in bits, tokens scored) for each of `docs`, in order.
pub fn documents_nll_bits_each<B: Kernels>(
    model: &Gpt<B>,
    docs: &[Vec<u32>],
    context: usize,
    batch: usize,
    device: &B::Device,
) -> Vec<(f64, usize)> {
    documents_nll_bits_at(model, docs, Positions::ALL, context, batch, device)
}

/// Which content positions of a document an evaluation scores, and how they group: those t with t mod `period`
/// in `offset .. offset + span`, each period's `span` positions scored as one unit, their NLLs summed (every token:
/// period 1, offset 0, span 1; the value of a facts corpus: period L + M, offset L, span M, one unit a fact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positions {
    pub period: usize,
    pub offset: usize,
    pub span: usize,
}

impl Positions {
    pub const ALL: Positions = Positions {
        period: 1,
        offset: 0,
        span: 1,
    };

    pub fn includes(&self, t: usize) -> bool {
        let r = t % self.period.max(1);
        r >= self.offset && r < self.offset + self.span.max(1)
    }

    /// Whether `t` is the last position of its unit (its NLL closes the unit's sum).
    fn closes(&self, t: usize) -> bool {
        t % self.period.max(1) == self.offset + self.span.max(1) - 1
    }
}

/// [`documents_nll_bits_each`] over the content positions `at` only (the model still reads every token): (NLL in
/// bits, tokens scored) for each of `docs`, in order.
pub fn documents_nll_bits_at<B: Kernels>(
    model: &Gpt<B>,
    docs: &[Vec<u32>],
    at: Positions,
    context: usize,
    batch: usize,
    device: &B::Device,
) -> Vec<(f64, usize)> {
    documents_nll_bits_scored(model, docs, at, context, batch, device)
        .iter()
        .map(|v| (v.iter().sum(), v.len()))
        .collect()
}

/// The NLL in bits of every scored unit (`at`: a position, or a span of them summed) of each of `docs`, in document
/// and position order. A unit the document ends inside is not counted.
pub fn documents_nll_bits_scored<B: Kernels>(
    model: &Gpt<B>,
    docs: &[Vec<u32>],
    at: Positions,
    context: usize,
    batch: usize,
    device: &B::Device,
) -> Vec<Vec<f64>> {
    assert!(context >= 2, "a context of at least two tokens");
    // Windows of ≤ context + 1 tokens: input = window[..n-1], targets = window[1..]; each remembers its document.
    // (document, content position of the window's first target, tokens).
    let mut windows: Vec<(usize, usize, Vec<u32>)> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let mut seq = Vec::with_capacity(d.len() + 1);
        seq.push(EOT);
        seq.extend_from_slice(d);
        let mut start = 0;
        while start + 1 < seq.len() {
            let end = (start + context + 1).min(seq.len());
            windows.push((i, start, seq[start..end].to_vec()));
            start = end - 1;
        }
    }
    // A document's windows are consecutive and in order, so its scored positions are pushed in order.
    let mut each: Vec<Vec<f64>> = vec![Vec::new(); docs.len()];
    // A unit's NLL so far: its positions may fall in two windows, which come in order.
    let mut open = vec![0.0f64; docs.len()];
    for chunk in windows.chunks(batch.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|(_, _, w)| w.clone()).collect();
        let s = score(model, &seqs, device);
        for (row, (doc, first, w)) in chunk.iter().enumerate() {
            // Target k of the window is content position first + k (the window's token 0 is <eot> or context).
            for k in (0..w.len() - 1).filter(|k| at.includes(first + k)) {
                open[*doc] += s.nll[row * s.width + k] as f64 / std::f64::consts::LN_2;
                if at.closes(first + k) {
                    each[*doc].push(std::mem::take(&mut open[*doc]));
                }
            }
        }
    }
    each
}

/// Morris et al. (2025), unintended memorization summed over the training sequences: for each sequence x,
/// H(x | reference) − H(x | model, reference), with the joint compression taken as the better of the two models,
/// so a sequence adds max(0, reference_bits − model_bits) and one the model predicts worse than the reference
/// adds nothing (it does not cancel another's memorization). `model_bits[i]` and `reference_bits[i]` are
/// −log2 p(x_i) under each.
pub fn morris_memorized_bits(model_bits: &[f64], reference_bits: &[f64]) -> f64 {
    model_bits
        .iter()
        .zip(reference_bits)
        .map(|(&m, &r)| (r - m).max(0.0))
        .sum()
}

/// Early stopping on held-out data (`train.eval_every` on a Zipf or Markov run): the excess loss was measured
/// while training on validation documents and on the held-out test documents (both fresh samples, disjoint from
/// each other and from the training set); the step reported is the one where the *validation* excess was lowest,
/// and the figure reported is the *test* excess at that step, so the choice never looks at the test documents.
/// This is the stopping rule of the data sweep: a small training set is trained past its best point and would
/// otherwise be scored over-fitted, a large one under-trained.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EarlyStopping {
    /// Evaluations made (steps on the curve).
    pub evaluations: usize,
    /// The step with the lowest validation excess (the first such step on ties).
    pub best_step: usize,
    /// The last step evaluated (the end of training).
    pub last_step: usize,
    /// The validation excess at `best_step` (bits/token, over the validation sample's true surprisal).
    pub validation_excess_bits_per_token: f64,
    /// The test excess at `best_step`: the figure the data sweep fits.
    pub excess_bits_per_token: f64,
    /// The test excess at the last step, for comparison (the figure without early stopping).
    pub last_excess_bits_per_token: f64,
    /// Whether the best step was the last one evaluated: training may not have reached its best point, so the
    /// figure is an upper bound (a longer run could score lower).
    pub best_is_last: bool,
}

/// Picks the early-stopping step from `(step, validation excess, test excess)` triples (any order; the last
/// triple given for a step wins, as when a resumed run wrote a step again). None when there are none or a
/// validation value is not finite.
pub fn early_stopping(curve: &[(usize, f64, f64)]) -> Option<EarlyStopping> {
    let mut by_step: std::collections::BTreeMap<usize, (f64, f64)> = Default::default();
    for &(s, v, t) in curve {
        by_step.insert(s, (v, t));
    }
    if by_step.values().any(|(v, _)| !v.is_finite()) {
        return None;
    }
    let (&last_step, &(_, last_test)) = by_step.iter().next_back()?;
    let (&best_step, &(best_v, best_t)) =
        by_step
            .iter()
            .reduce(|a, b| if b.1 .0 < a.1 .0 { b } else { a })?;
    Some(EarlyStopping {
        evaluations: by_step.len(),
        best_step,
        last_step,
        validation_excess_bits_per_token: best_v,
        excess_bits_per_token: best_t,
        last_excess_bits_per_token: last_test,
        best_is_last: best_step == last_step,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CorpusEval {
    pub kind: String,
    /// The source's exact entropy rate (bits per content token).
    pub entropy_bits_per_token: f64,
    /// Documents and content tokens scored (units of `Positions`: for a facts corpus, one a fact's value, its M
    /// tokens summed, so the per-token figures are per fact).
    pub documents: usize,
    pub tokens: usize,
    /// Whether the documents scored are held out (fresh samples), or the training set itself.
    pub held_out: bool,
    /// The model's mean loss in bits per token.
    pub loss_bits_per_token: f64,
    /// The source's own mean surprisal of the scored tokens (−log2 of their true probabilities), when known:
    /// H up to the sample's noise.
    pub sample_entropy_bits_per_token: Option<f64>,
    /// The excess loss in bits/token: loss − the sample's own surprisal when it is known (an estimate of
    /// KL(source ‖ model) on these tokens, free of the sample's noise), else loss − H.
    pub excess_bits_per_token: f64,
    /// loss − H (bits/token), noisy by the sample's fluctuation around H.
    pub excess_over_rate_bits_per_token: f64,
    /// The excess loss on held-out documents is negative: a bug, or too few tokens scored to resolve it. (On the
    /// training set, as in memorization, a loss below H is what memorizing means, and is not flagged.)
    pub below_entropy: bool,
    /// Memorization runs (uniform tokens): Morris et al.'s unintended memorization of the training set in bits,
    /// Σ over sequences of max(0, reference bits − model bits), the reference being the source itself (each
    /// token's exact −log2 p, log2 V for uniform tokens) ([`morris_memorized_bits`]).
    pub memorized_bits: Option<f64>,
    /// The same without the per-sequence max: the training set's entropy − its NLL under the model (a sequence
    /// predicted worse than the source subtracts). What `memorized_bits` was before stop 23; absent in older
    /// eval.json.
    #[serde(default)]
    pub memorized_bits_aggregate: Option<f64>,
    pub params: ParamCounts,
    /// memorized bits / all parameters (Morris counts every parameter).
    pub bits_per_param: Option<f64>,
}

/// Evaluates `docs` against `entropy_bits_per_token`. With `memorization`, the documents are the training set
/// and the memorized bits are reported.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_corpus<B: Kernels>(
    model: &Gpt<B>,
    kind: &str,
    docs: &[Vec<u32>],
    at: Positions,
    entropy_bits_per_token: f64,
    sample_surprisal_bits: Option<f64>,
    held_out: bool,
    memorization: bool,
    params: ParamCounts,
    context: usize,
    batch: usize,
    device: &B::Device,
) -> CorpusEval {
    let scored = documents_nll_bits_scored(model, docs, at, context, batch, device);
    corpus_eval_from_scores(
        kind,
        &scored,
        entropy_bits_per_token,
        sample_surprisal_bits,
        held_out,
        memorization,
        params,
    )
}

/// [`evaluate_corpus`] from the per-position NLLs (bits) of each document that [`documents_nll_bits_scored`]
/// returned, for a caller that needs them for more than this (the facts run's seen/unseen split).
pub fn corpus_eval_from_scores(
    kind: &str,
    scored: &[Vec<f64>],
    entropy_bits_per_token: f64,
    sample_surprisal_bits: Option<f64>,
    held_out: bool,
    memorization: bool,
    params: ParamCounts,
) -> CorpusEval {
    let each: Vec<(f64, usize)> = scored.iter().map(|v| (v.iter().sum(), v.len())).collect();
    let (bits, tokens) = each
        .iter()
        .fold((0.0, 0), |(b, t), &(db, dt)| (b + db, t + dt));
    let loss = bits / tokens.max(1) as f64;
    let sample = sample_surprisal_bits.map(|s| s / tokens.max(1) as f64);
    let excess = loss - sample.unwrap_or(entropy_bits_per_token);
    // The reference is the source: for uniform tokens (the memorization runs) every token's exact surprisal is
    // the entropy rate, so a document of n tokens costs n · H bits under it.
    let memorized = memorization.then(|| {
        let model_bits: Vec<f64> = each.iter().map(|e| e.0).collect();
        let reference: Vec<f64> = each
            .iter()
            .map(|e| e.1 as f64 * entropy_bits_per_token)
            .collect();
        morris_memorized_bits(&model_bits, &reference)
    });
    let aggregate = memorization.then_some(entropy_bits_per_token * tokens as f64 - bits);
    CorpusEval {
        kind: kind.into(),
        entropy_bits_per_token,
        documents: scored.len(),
        tokens,
        held_out,
        loss_bits_per_token: loss,
        sample_entropy_bits_per_token: sample,
        excess_bits_per_token: excess,
        excess_over_rate_bits_per_token: loss - entropy_bits_per_token,
        below_entropy: held_out && excess < 0.0,
        memorized_bits: memorized,
        memorized_bits_aggregate: aggregate,
        bits_per_param: memorized.map(|m| m / params.total as f64),
        params,
    }
}

/// The result table of a corpus run.
pub fn render_corpus(title: &str, e: &CorpusEval, exposures: f64) -> String {
    let mut s = format!("== {title} ==\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<40}{v}\n"));
    row("corpus", e.kind.clone());
    row(
        "parameters (all: the paper's count)",
        e.params.total.to_string(),
    );
    row(
        "parameters (used embedding rows)",
        e.params.capacity.to_string(),
    );
    row(
        "passes over the data (exposures)",
        format!("{exposures:.1}"),
    );
    row(
        "documents / tokens scored",
        format!(
            "{} / {} ({})",
            e.documents,
            e.tokens,
            if e.held_out {
                "held out"
            } else {
                "the training set"
            }
        ),
    );
    row(
        "entropy rate H (bits/token, exact)",
        format!("{:.4}", e.entropy_bits_per_token),
    );
    row(
        "model loss (bits/token)",
        format!("{:.4}", e.loss_bits_per_token),
    );
    if let Some(sample) = e.sample_entropy_bits_per_token {
        row(
            "the sample's true surprisal (bits/token)",
            format!("{sample:.4}"),
        );
        row(
            "loss − H (bits/token)",
            format!("{:.4}", e.excess_over_rate_bits_per_token),
        );
    }
    row(
        if e.sample_entropy_bits_per_token.is_some() {
            "excess: loss − true surprisal (bits/token)"
        } else {
            "excess loss − H (bits/token)"
        },
        format!(
            "{:.4}{}",
            e.excess_bits_per_token,
            if e.below_entropy {
                "   NEGATIVE: a bug, or too few tokens scored"
            } else if !e.held_out && e.excess_bits_per_token < 0.0 {
                "   (the training set, below H: memorized)"
            } else {
                ""
            }
        ),
    );
    if let (Some(m), Some(b)) = (e.memorized_bits, e.bits_per_param) {
        row("memorized bits (Morris, per sequence)", format!("{m:.0}"));
        if let Some(a) = e.memorized_bits_aggregate {
            row("entropy − NLL of the training set", format!("{a:.0}"));
        }
        row("memorized bits per parameter", format!("{b:.4}"));
    }
    s
}
