//! The model zoo: parameter counts by hand against burn's own count, causality and a forward pass for every
//! family, and the mixture of experts' capacity and load-balancing loss.

use physlab_trainer::burn::module::{Module, Param};
use physlab_trainer::burn::nn::LinearConfig;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::layers::Mlp;
use physlab_trainer::moe::Moe;
use physlab_trainer::{Cpu, ModelConfig};

fn cfg(preset: &str) -> ModelConfig {
    ModelConfig {
        preset: preset.into(),
        d_model: 64,
        experts: 4,
        ..ModelConfig::default()
    }
}

/// d = 64, 2 layers, V = 100, T = 32. By hand (weights + biases):
/// - gpt2: LayerNorm 128, qkv 64·192+192 = 12,480, out 4,160, LayerNorm 128, fc 64·256+256 = 16,640, proj
///   16,448 → block 49,984; 2 blocks + final LayerNorm 128 = 100,096 (the capacity-cpu gpt2-2-1 figure).
/// - gpt2abs: + 32·64 = 2,048 learned positions → 102,144.
/// - gpt2mlp1 (d→d→d): fc and proj 4,160 each → block 25,216 → 50,560.
/// - gpt2mlp0 (no MLP, no second norm): block 16,768 → 33,664.
/// - llama: no biases, RMSNorm 64; hidden ⌈(8·64/3)/16⌉·16 = 176; qkv 12,288, out 4,096, gate/up/down 3·11,264 →
///   block 50,304 → 100,672 non-embedding; untied: + 2·6,400 → 113,472 in all.
/// - moe (4 experts d→d→d): norm 128 + router 256 + 4·8,320 → ffn 33,664 → block 50,432 → 100,992.
#[test]
fn every_family_counts_its_parameters_by_hand() {
    let cases = [
        ("gpt2-2-1", 100_096, 6_400),
        ("gpt2abs-2-1", 102_144, 6_400),
        ("gpt2mlp1-2-1", 50_560, 6_400),
        ("gpt2mlp0-2-1", 33_664, 6_400),
        ("llama-2-1", 100_672, 12_800),
        ("moe-2-1", 100_992, 6_400),
    ];
    for (preset, non_embedding, embedding) in cases {
        let shape = cfg(preset).shape(100, 32).unwrap();
        let model = shape.init::<Cpu>(&Default::default());
        let counts = shape.num_params(40);
        assert_eq!(counts.non_embedding, non_embedding, "{preset}");
        assert_eq!(counts.total, non_embedding + embedding, "{preset}");
        assert_eq!(counts.total, model.num_params(), "{preset}: burn's count");
        let tables = embedding / 6_400;
        assert_eq!(
            counts.capacity,
            non_embedding + tables * 40 * 64,
            "{preset}"
        );
        assert!(shape.flops_per_token() > 6.0 * 100.0 * 64.0, "{preset}");
    }
    // FLOPs: a token goes through one expert, so the mixture costs about as much as GPT2_1/4 plus its router.
    let f = |p: &str| cfg(p).shape(100, 32).unwrap().flops_per_token();
    assert!((f("moe-2-1") - f("gpt2mlp1-2-1") - 6.0 * 2.0 * 64.0 * 4.0).abs() < 1e-6);
}

#[test]
fn every_family_is_causal() {
    for preset in [
        "gpt2-2-1",
        "gpt2abs-2-1",
        "gpt2mlp1-2-1",
        "gpt2mlp0-2-1",
        "llama-2-1",
        "moe-2-1",
    ] {
        let shape = ModelConfig {
            capacity_factor: 100.0, // no token dropped: dropping depends on the whole batch
            ..cfg(preset)
        }
        .shape(50, 16)
        .unwrap();
        let device = Default::default();
        let model = shape.init::<Cpu>(&device);
        let a: Vec<i32> = (0..16).map(|i| i * 7 % 50).collect();
        let mut b = a.clone();
        b[10] = 3;
        let run = |x: Vec<i32>| -> Vec<f32> {
            let t = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(x, [1, 16]), &device);
            model.forward(t).into_data().iter::<f32>().collect()
        };
        let (la, lb) = (run(a), run(b));
        for pos in 0..16 {
            let diff: f32 = (0..50)
                .map(|k| (la[pos * 50 + k] - lb[pos * 50 + k]).abs())
                .fold(0.0, f32::max);
            if pos < 10 {
                assert!(diff < 1e-5, "{preset}: position {pos} changed by {diff}");
            } else if pos == 10 {
                assert!(diff > 1e-6, "{preset}: position 10 must see its own token");
            }
        }
    }
}

fn moe(experts: usize, capacity_factor: f64) -> Moe<Cpu> {
    let device = Default::default();
    Moe {
        router: LinearConfig::new(8, experts).with_bias(false).init(&device),
        experts: (0..experts)
            .map(|_| Mlp {
                fc: LinearConfig::new(8, 8).init(&device),
                proj: LinearConfig::new(8, 8).init(&device),
            })
            .collect(),
        capacity_factor,
    }
}

/// With capacity ⌈0.01·64/4⌉ = 1 token per expert, at most 4 of 64 tokens get an output; the others skip the
/// layer (zero output).
#[test]
fn experts_take_at_most_their_capacity() {
    let device = Default::default();
    let m = moe(4, 0.01);
    let x = Tensor::<Cpu, 3>::random(
        [2, 32, 8],
        physlab_trainer::burn::tensor::Distribution::Default,
        &device,
    );
    let (y, _) = m.forward(x.clone());
    let rows: Vec<f32> = y.abs().sum_dim(2).into_data().iter::<f32>().collect();
    let served = rows.iter().filter(|&&r| r > 0.0).count();
    assert!((1..=4).contains(&served), "{served} tokens served");
    let (y, _) = moe(4, 100.0).forward(x);
    let rows: Vec<f32> = y.abs().sum_dim(2).into_data().iter::<f32>().collect();
    assert_eq!(
        rows.iter().filter(|&&r| r > 0.0).count(),
        64,
        "no capacity limit: all served"
    );
}

/// A mixture of experts at a tight capacity drops tokens, which depend on the whole batch, so a sequence's logits
/// change with what shares its batch; `without_token_dropping` (how models are evaluated) routes every token, so
/// each sequence's logits are the same alone and in a batch (within f32 summation: 1e-5), and the dropping model
/// differs from it.
#[test]
fn evaluation_routes_every_token_of_a_mixture() {
    let device = Default::default();
    let shape = ModelConfig {
        capacity_factor: 0.05,
        ..cfg("moe-2-1")
    }
    .shape(100, 32)
    .unwrap();
    let model = shape.init::<Cpu>(&device);
    let seqs: Vec<i64> = (0..64).map(|i| (i * 37 + 11) % 100).collect();
    let batch = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(seqs.clone(), [2, 32]), &device);
    let alone = |i: usize| {
        Tensor::<Cpu, 2, Int>::from_data(
            TensorData::new(seqs[i * 32..(i + 1) * 32].to_vec(), [1, 32]),
            &device,
        )
    };
    let values = |t: Tensor<Cpu, 3>| t.into_data().iter::<f32>().collect::<Vec<f32>>();
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let routed = model.clone().without_token_dropping();
    let in_batch = values(routed.forward(batch.clone()));
    let mut by_one = values(routed.forward(alone(0)));
    by_one.extend(values(routed.forward(alone(1))));
    assert!(
        max_diff(&in_batch, &by_one) < 1e-5,
        "{}",
        max_diff(&in_batch, &by_one)
    );
    // The training model, at capacity ⌈0.05·64/4⌉ = 1 token per expert, drops and so differs.
    let dropping = values(model.forward(batch));
    assert!(max_diff(&in_batch, &dropping) > 1e-3);
}

/// A router with zero weights gives uniform probabilities 1/E; every token goes to expert 0 (argmax ties), so
/// f = (1, 0, …), P = (1/E, …) and the loss E·Σ f·P = 1 exactly.
#[test]
fn the_load_balancing_loss_matches_its_formula() {
    let device = Default::default();
    let mut m = moe(4, 100.0);
    m.router.weight = Param::from_tensor(Tensor::zeros([8, 4], &device));
    let x = Tensor::<Cpu, 3>::random(
        [1, 16, 8],
        physlab_trainer::burn::tensor::Distribution::Default,
        &device,
    );
    let (_, aux) = m.forward(x);
    let a: f32 = aux.into_scalar();
    assert!((a - 1.0).abs() < 1e-6, "{a}");
}

/// While `record_routing` runs, each mixture layer call leaves one record: the batch's tokens, its tokens per
/// expert (summing to the batch), the tokens served (Σ min(count, capacity): ⌈0.3·64/4⌉ = 5 a expert here) and the
/// sum of the chosen experts' probabilities (the row maxima of the router's softmax, computed here apart). Outside
/// it nothing is kept, and a nested recording keeps its own calls.
#[test]
fn routing_is_recorded_per_layer_call() {
    use physlab_trainer::burn::tensor::activation::softmax;
    use physlab_trainer::moe::record_routing;
    let device = Default::default();
    let m = moe(4, 0.3);
    let x = Tensor::<Cpu, 3>::random(
        [2, 32, 8],
        physlab_trainer::burn::tensor::Distribution::Default,
        &device,
    );
    let (_, none) = record_routing(|| ());
    assert!(none.is_empty());
    let ((), rec) = record_routing(|| {
        m.forward(x.clone());
        let (_, inner) = record_routing(|| {
            m.forward(x.clone());
        });
        assert_eq!(inner.len(), 1, "the nested recording sees its own call");
        m.forward(x.clone());
    });
    assert_eq!(
        rec.len(),
        2,
        "the outer recording: its two calls, not the nested one"
    );
    let r = &rec[0];
    assert_eq!(r.tokens, 64);
    assert_eq!(r.counts.iter().sum::<usize>(), 64);
    assert_eq!(r.served, r.counts.iter().map(|&c| c.min(5)).sum::<usize>());
    assert!(
        r.served < 64,
        "capacity 5 a expert drops some: {:?}",
        r.counts
    );
    let probs = softmax(m.router.forward(x.reshape([64, 8])), 1);
    let rows: Vec<f32> = probs.into_data().iter::<f32>().collect();
    let maxima: f64 = rows
        .chunks(4)
        .map(|p| p.iter().copied().fold(0.0f32, f32::max) as f64)
        .sum();
    // Each token's choice is its router row's largest probability, and the choices add up to the counts.
    assert_eq!(r.choices.len(), 64);
    for (p, &c) in rows.chunks(4).zip(&r.choices) {
        assert!(p.iter().all(|&q| q <= p[c as usize]), "{p:?} chose {c}");
    }
    for (k, &n) in r.counts.iter().enumerate() {
        assert_eq!(r.choices.iter().filter(|&&c| c as usize == k).count(), n);
    }
    assert!(
        (r.gate_sum - maxima).abs() < 1e-4,
        "{} vs {maxima}",
        r.gate_sum
    );
    assert_eq!(rec[1], rec[0], "the same batch routes the same way");
}

/// The per-layer summary by hand: two layers, two batches each (records alternate layer 0, 1, 0, 1), 4 experts.
/// Layer 0: counts (6, 2, 0, 0) and (3, 3, 1, 1) of 8 tokens: 16 tokens, expert 0 has 9 (top share 9/16), 4
/// experts used; at factor 1 the capacity is ⌈8/4⌉ = 2, so 4 + 0 and 1 + 1 over: 6/16; gates 4.0 + 2.0 → 6/16.
/// Layer 1: counts (8, 0, 0, 0) twice: top share 1, one expert, 6 + 6 = 12 of 16 over; gates 8 + 8 → 1.
#[test]
fn routing_summary_matches_hand_counts() {
    use physlab_trainer::moe::{summarize_routing, Routing};
    let r = |counts: [usize; 4], gate_sum: f64| Routing {
        tokens: 8,
        counts: counts.to_vec(),
        served: 8,
        gate_sum,
        choices: Vec::new(),
    };
    let recs = [
        r([6, 2, 0, 0], 4.0),
        r([8, 0, 0, 0], 8.0),
        r([3, 3, 1, 1], 2.0),
        r([8, 0, 0, 0], 8.0),
    ];
    let s = summarize_routing(&recs, 2, 1.0);
    assert_eq!(s.len(), 2);
    let (a, b) = (&s[0], &s[1]);
    assert_eq!(
        (a.layer, a.tokens, a.experts_used, a.experts),
        (0, 16, 4, 4)
    );
    assert!((a.top_share - 9.0 / 16.0).abs() < 1e-12);
    assert!((a.over_capacity - 6.0 / 16.0).abs() < 1e-12);
    assert!((a.gate_mean - 6.0 / 16.0).abs() < 1e-12);
    assert_eq!((b.layer, b.tokens, b.experts_used), (1, 16, 1));
    assert!((b.top_share - 1.0).abs() < 1e-12);
    assert!((b.over_capacity - 12.0 / 16.0).abs() < 1e-12);
    assert!((b.gate_mean - 1.0).abs() < 1e-12);
    assert_eq!(b.capacity_factor, 1.0);
    assert!(summarize_routing(&[], 2, 1.0).is_empty());
}
