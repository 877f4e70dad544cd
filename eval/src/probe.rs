//! Probing the frozen model (Part 3.1 §5): is a person's knowledge already readable, linearly, from the hidden
//! state at the person's name?
//!
//! - **P-probing** (position-based): the model reads the person's canonical biography; the probe reads the last
//!   hidden layer at the last token of the full name, before any attribute is stated.
//! - **Q-probing** (query-based): the model reads only the full name (after `<eot>`); the probe reads the same
//!   position.
//!
//! As in the paper, the trainable part is a rank-r update of the token embedding (LoRA, the rest frozen) plus one
//! linear head per attribute on the last hidden layer; each head predicts the first token of the attribute's
//! value. Probes train on the first half of the people and are scored on the second half (people are i.i.d.).
//! Accuracy near chance means the knowledge is not stored at the name (it is recalled only once the sentence
//! that states it has begun); near 100%, that it is stored with the name — which Part 3.1 links to extraction
//! after QA finetuning.

use burn::module::{AutodiffModule, Module};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use physlab_generators::bios::BioS;
use physlab_generators::people::Attribute;
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

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ProbeKind {
    /// Position-based: the whole biography is read, the probe sits at the end of the name.
    P,
    /// Query-based: only the name is read.
    Q,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Rank of the embedding update (Part 3.1: a low rank).
    pub embedding_rank: usize,
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            steps: 300,
            batch: 32,
            lr: 1e-3,
            embedding_rank: 16,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeEval {
    pub kind: ProbeKind,
    pub train_people: usize,
    pub test_people: usize,
    /// Test accuracy (first value token) per attribute.
    pub accuracy: BTreeMap<String, f64>,
    pub mean_accuracy: f64,
    /// Accuracy on the people the probe trained on.
    pub train_accuracy: f64,
    /// Accuracy of always guessing an attribute's most frequent first token among the training people.
    pub majority_baseline: f64,
    pub config: ProbeConfig,
}

#[derive(Module, Debug)]
struct ProbeModel<B: burn::tensor::backend::Backend> {
    gpt: Gpt<B>,
    heads: Vec<Linear<B>>,
}

/// Inputs and targets of one person: tokens (from `<eot>`), probe position, first value token per attribute.
struct Example {
    tokens: Vec<u32>,
    at: usize,
    targets: Vec<u32>,
}

fn examples(data: &BioS, kind: ProbeKind) -> Vec<Example> {
    (0..data.n_people())
        .map(|p| {
            let bio = data.render_eval(p);
            let name_end = bio.name.start + bio.name.len; // exclusive, in biography tokens
            let targets = Attribute::ALL
                .iter()
                .map(|a| bio.tokens[bio.values[a.index()].start])
                .collect();
            let mut tokens = vec![EOT];
            match kind {
                ProbeKind::P => tokens.extend_from_slice(&bio.tokens),
                ProbeKind::Q => tokens.extend_from_slice(&bio.tokens[bio.name.start..name_end]),
            }
            // Sequence position of the name's last token: biography token k sits at k + 1.
            let at = match kind {
                ProbeKind::P => name_end,
                ProbeKind::Q => tokens.len() - 1,
            };
            Example {
                tokens,
                at,
                targets,
            }
        })
        .collect()
}

/// Hidden states at each example's probe position, [n, d].
fn hidden_at<B: Kernels>(gpt: &Gpt<B>, ex: &[&Example], device: &B::Device) -> Tensor<B, 2> {
    let width = ex.iter().map(|e| e.tokens.len()).max().unwrap_or(1);
    let b = ex.len();
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
        .map(|(i, e)| (i * width + e.at) as i32)
        .collect();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [b]), device);
    h.reshape([b * width, d]).select(0, idx)
}

fn accuracy<B: Kernels>(m: &ProbeModel<B>, ex: &[&Example], device: &B::Device) -> Vec<f64> {
    let k = m.heads.len();
    let mut hits = vec![0usize; k];
    for chunk in ex.chunks(64) {
        let h = hidden_at(&m.gpt, chunk, device);
        for (a, head) in m.heads.iter().enumerate() {
            let logits = physlab_trainer::layers::linear(head, h.clone().unsqueeze::<3>());
            let [_, b, v] = logits.dims();
            let pred: Vec<i64> = logits
                .reshape([b, v])
                .argmax(1)
                .into_data()
                .iter::<i64>()
                .collect();
            for (e, p) in chunk.iter().zip(pred) {
                hits[a] += (e.targets[a] as i64 == p) as usize;
            }
        }
    }
    hits.iter()
        .map(|&h| h as f64 / ex.len().max(1) as f64)
        .collect()
}

/// Trains a `kind` probe on the frozen `gpt` (loaded on the autodiff backend `B`) and scores it.
pub fn probe<B: TrainBackend>(
    gpt: Gpt<B>,
    shape: &GptShape,
    data: &BioS,
    kind: ProbeKind,
    cfg: &ProbeConfig,
    device: &B::Device,
) -> ProbeEval {
    let all = examples(data, kind);
    let n = all.len();
    let n_train = n / 2;
    let train: Vec<&Example> = all[..n_train].iter().collect();
    let test: Vec<&Example> = all[n_train..].iter().collect();
    let v = shape.vocab_size;
    let lora = GptShape {
        lora: LoraShape {
            qv_rank: 0,
            embedding_rank: cfg.embedding_rank,
            alpha: 0.0,
        },
        ..*shape
    };
    // The embedding update is the only trainable part of the model; the heads train too.
    let gpt = gpt
        .with_lora(&lora, device)
        .map(&mut FreezeAllButLora::new());
    let heads = (0..Attribute::ALL.len())
        .map(|_| LinearConfig::new(shape.d_model, v).init(device))
        .collect();
    let mut model = ProbeModel { gpt, heads };
    let mut optim = AdamConfig::new().init::<B, ProbeModel<B>>();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut cursor = order.len();
    for _ in 0..cfg.steps {
        let mut batch = Vec::with_capacity(cfg.batch);
        while batch.len() < cfg.batch.min(train.len()) {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            batch.push(train[order[cursor]]);
            cursor += 1;
        }
        let h = hidden_at(&model.gpt, &batch, device);
        let b = batch.len();
        let mut loss: Option<Tensor<B, 1>> = None;
        for (a, head) in model.heads.iter().enumerate() {
            let logits = physlab_trainer::layers::linear(head, h.clone().unsqueeze::<3>()); // [1, b, V]
            let y: Vec<i32> = batch.iter().map(|e| e.targets[a] as i32).collect();
            let y = Tensor::<B, 2, Int>::from_data(TensorData::new(y, [1, b]), device);
            let l = physlab_trainer::model::token_nll(logits, y).mean();
            loss = Some(match loss {
                Some(s) => s + l,
                None => l,
            });
        }
        let loss = loss.expect("six attributes");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.lr, model, grads);
    }
    let frozen = model.valid();
    let inner_device = device.clone();
    let test_acc = accuracy(&frozen, &test, &inner_device);
    let train_acc = accuracy(&frozen, &train, &inner_device);
    // Majority baseline per attribute from the training people, scored on the test people.
    let mut baseline = 0.0;
    for a in 0..Attribute::ALL.len() {
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for e in &train {
            *counts.entry(e.targets[a]).or_default() += 1;
        }
        let top = counts
            .iter()
            .max_by_key(|(t, c)| (**c, std::cmp::Reverse(**t)))
            .map(|(t, _)| *t);
        baseline += test.iter().filter(|e| Some(e.targets[a]) == top).count() as f64
            / test.len().max(1) as f64;
    }
    let k = Attribute::ALL.len() as f64;
    ProbeEval {
        kind,
        train_people: train.len(),
        test_people: test.len(),
        accuracy: Attribute::ALL
            .iter()
            .zip(&test_acc)
            .map(|(a, &x)| (a.name().to_string(), x))
            .collect(),
        mean_accuracy: test_acc.iter().sum::<f64>() / k,
        train_accuracy: train_acc.iter().sum::<f64>() / k,
        majority_baseline: baseline / k,
        config: cfg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use physlab_generators::bios::BioSConfig;
    use physlab_trainer::{CpuTrain, ModelConfig};

    fn data() -> BioS {
        BioS::build(
            &BioSConfig {
                people: 24,
                multi: 2,
                permute: true,
                ..BioSConfig::default()
            },
            3,
        )
        .unwrap()
    }

    #[test]
    fn probe_positions_sit_on_the_last_name_token_and_targets_are_first_value_tokens() {
        let d = data();
        for kind in [ProbeKind::P, ProbeKind::Q] {
            for (p, e) in examples(&d, kind).iter().enumerate() {
                let bio = d.render_eval(p);
                let last_name = bio.tokens[bio.name.start + bio.name.len - 1];
                assert_eq!(e.tokens[0], EOT);
                assert_eq!(e.tokens[e.at], last_name, "{kind:?} person {p}");
                // Nothing after the name is visible at the probe position: the next token (if any) is the
                // first token after the name in the biography.
                if kind == ProbeKind::Q {
                    assert_eq!(e.at, e.tokens.len() - 1);
                    assert_eq!(e.tokens.len(), 1 + bio.name.len);
                }
                for a in Attribute::ALL {
                    assert_eq!(
                        e.targets[a.index()],
                        bio.tokens[bio.values[a.index()].start]
                    );
                }
            }
        }
    }

    #[test]
    fn a_probe_learns_its_training_people() {
        // A frozen random model and 12 training people: the heads and the embedding update must at least fit the
        // people they train on (gradients reach them); test accuracy on unseen people is not asked of a random
        // model.
        let d = data();
        let device = Default::default();
        let shape = ModelConfig {
            preset: "gpt2-1-1".into(),
            d_model: 32,
            ..ModelConfig::default()
        }
        .shape(d.tokenizer.vocab_size(), 128)
        .unwrap();
        let gpt = shape.init::<CpuTrain>(&device);
        let cfg = ProbeConfig {
            steps: 60,
            batch: 12,
            lr: 1e-2,
            embedding_rank: 4,
            seed: 1,
        };
        let e = probe::<CpuTrain>(gpt, &shape, &d, ProbeKind::Q, &cfg, &device);
        assert_eq!((e.train_people, e.test_people), (12, 12));
        assert!(e.train_accuracy > 0.9, "{e:?}");
        assert_eq!(e.accuracy.len(), 6);
    }
}
