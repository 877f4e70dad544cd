//! Decoding strategies: greedy, sampling with temperature, top-k and top-p (nucleus), and beam search.
//!
//! The strategies work on a `next` function that maps a batch of token sequences to the log-probabilities of the
//! next token of each (one `Vec<f32>` over the vocabulary per sequence), so that they are tested on exact
//! distributions; [`model_next`] is that function for a model.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::kernels::Kernels;
use physlab_trainer::model::Gpt;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Next-token log-probabilities (one vector over the vocabulary per sequence) of a batch of token sequences.
pub type NextFn<'a> = dyn FnMut(&[Vec<u32>]) -> Vec<Vec<f32>> + 'a;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Decoding {
    Greedy,
    /// Sampling from softmax(logits / temperature), restricted to the `top_k` most likely tokens (0: all) and to the
    /// smallest set whose probability reaches `top_p` (1: all).
    Sample {
        temperature: f64,
        top_k: usize,
        top_p: f64,
    },
    /// Beam search with `width` beams, scored by the summed log-probability; a beam ends at `stop`.
    Beam {
        width: usize,
    },
}

impl Decoding {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self {
            Decoding::Greedy => {}
            Decoding::Sample {
                temperature, top_p, ..
            } => {
                if !(*temperature > 0.0 && temperature.is_finite()) {
                    p.push(format!("temperature = {temperature}: must be > 0"));
                }
                if !(*top_p > 0.0 && *top_p <= 1.0) {
                    p.push(format!("top-p = {top_p}: must be in (0, 1]"));
                }
            }
            Decoding::Beam { width } => {
                if *width == 0 {
                    p.push("beams = 0: must be ≥ 1".into());
                }
            }
        }
        p
    }
}

/// The sampling distribution over token ids from next-token log-probabilities: temperature, then top-k, then
/// top-p, renormalised. Returns (token, probability) pairs of the tokens kept, most likely first.
pub fn sampling_distribution(
    logp: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
) -> Vec<(u32, f64)> {
    let scaled: Vec<f64> = logp.iter().map(|&l| l as f64 / temperature).collect();
    let m = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<(u32, f64)> = scaled
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, (l - m).exp()))
        .collect();
    // Most likely first; ties by token id, so the result is deterministic.
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_k > 0 {
        p.truncate(top_k);
    }
    let z: f64 = p.iter().map(|x| x.1).sum();
    for x in p.iter_mut() {
        x.1 /= z;
    }
    if top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = 0;
        for x in &p {
            acc += x.1;
            keep += 1;
            if acc >= top_p - 1e-12 {
                break;
            }
        }
        p.truncate(keep);
        let z: f64 = p.iter().map(|x| x.1).sum();
        for x in p.iter_mut() {
            x.1 /= z;
        }
    }
    p
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Continues every prompt by up to `steps` tokens with `decoding`; a continuation ends after `stop` (kept). Returns
/// the continuations (prompt excluded). Beam search returns the best beam of each prompt.
pub fn generate(
    next: &mut NextFn<'_>,
    prompts: &[Vec<u32>],
    steps: usize,
    decoding: &Decoding,
    stop: Option<u32>,
    rng: &mut impl Rng,
) -> Vec<Vec<u32>> {
    match decoding {
        Decoding::Beam { width } => prompts
            .iter()
            .map(|p| beam(next, p, steps, *width, stop))
            .collect(),
        _ => {
            let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
            let mut done = vec![false; seqs.len()];
            for _ in 0..steps {
                let active: Vec<usize> = (0..seqs.len()).filter(|&i| !done[i]).collect();
                if active.is_empty() {
                    break;
                }
                let batch: Vec<Vec<u32>> = active.iter().map(|&i| seqs[i].clone()).collect();
                let logp = next(&batch);
                for (&i, lp) in active.iter().zip(&logp) {
                    let t = match decoding {
                        Decoding::Sample {
                            temperature,
                            top_k,
                            top_p,
                        } => {
                            let dist = sampling_distribution(lp, *temperature, *top_k, *top_p);
                            let u: f64 = rng.random();
                            let mut acc = 0.0;
                            let mut pick = dist[dist.len() - 1].0;
                            for (tok, pr) in &dist {
                                acc += pr;
                                if u < acc {
                                    pick = *tok;
                                    break;
                                }
                            }
                            pick
                        }
                        _ => argmax(lp),
                    };
                    seqs[i].push(t);
                    if Some(t) == stop {
                        done[i] = true;
                    }
                }
            }
            seqs.into_iter()
                .zip(prompts)
                .map(|(s, p)| s[p.len()..].to_vec())
                .collect()
        }
    }
}

/// Beam search: keeps the `width` highest summed log-probabilities; a beam that emits `stop` is finished. Returns
/// the best finished-or-final continuation.
fn beam(
    next: &mut NextFn<'_>,
    prompt: &[u32],
    steps: usize,
    width: usize,
    stop: Option<u32>,
) -> Vec<u32> {
    let mut beams: Vec<(Vec<u32>, f64)> = vec![(prompt.to_vec(), 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    for _ in 0..steps {
        if beams.is_empty() {
            break;
        }
        let seqs: Vec<Vec<u32>> = beams.iter().map(|b| b.0.clone()).collect();
        let logp = next(&seqs);
        let mut cand: Vec<(usize, u32, f64)> = Vec::new();
        for (bi, lp) in logp.iter().enumerate() {
            // Only each beam's `width` best extensions can enter the next beam set.
            let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
            idx.sort_by(|a, b| lp[*b as usize].total_cmp(&lp[*a as usize]).then(a.cmp(b)));
            for &t in idx.iter().take(width) {
                cand.push((bi, t, beams[bi].1 + lp[t as usize] as f64));
            }
        }
        cand.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        let mut next_beams = Vec::new();
        for (bi, t, score) in cand.into_iter().take(width) {
            let mut s = beams[bi].0.clone();
            s.push(t);
            if Some(t) == stop {
                finished.push((s, score));
            } else {
                next_beams.push((s, score));
            }
        }
        beams = next_beams;
        // Once the best finished beam beats every live one, no extension can overtake it (log-probs are ≤ 0).
        let best_done = finished
            .iter()
            .map(|f| f.1)
            .fold(f64::NEG_INFINITY, f64::max);
        if beams.iter().all(|b| b.1 <= best_done) {
            break;
        }
    }
    finished.extend(beams);
    finished
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s[prompt.len()..].to_vec())
        .unwrap_or_default()
}

/// The next-token log-probabilities of `model` for each sequence (padded on the right with `<eot>`; the
/// prediction is read at each sequence's own last position). Sequences longer than the context keep their last
/// `context` tokens.
pub fn model_next<'a, B: Kernels>(
    model: &'a Gpt<B>,
    context: usize,
    device: &B::Device,
) -> impl FnMut(&[Vec<u32>]) -> Vec<Vec<f32>> + 'a {
    let device = device.clone();
    move |seqs: &[Vec<u32>]| {
        let views: Vec<&[u32]> = seqs
            .iter()
            .map(|s| &s[s.len().saturating_sub(context)..])
            .collect();
        let width = views.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let b = views.len();
        let mut x = Vec::with_capacity(b * width);
        for s in &views {
            x.extend(s.iter().map(|&t| t as i32));
            x.extend(std::iter::repeat_n(
                physlab_generators::tokenizer::EOT as i32,
                width - s.len(),
            ));
        }
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(x, [b, width]), &device);
        let logits = model.forward(x);
        let [_, _, v] = logits.dims();
        let lp: Vec<f32> = log_softmax(logits, 2).into_data().iter::<f32>().collect();
        views
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = (i * width + s.len().max(1) - 1) * v;
                lp[at..at + v].to_vec()
            })
            .collect()
    }
}
