//! Decoding strategies on exact distributions (hand-computed expected values), and the model adapter against a
//! plain forward pass.

use physlab_eval::decode::{generate, model_next, sampling_distribution, Decoding};
use physlab_trainer::{Cpu, ModelConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn ln(p: &[f64]) -> Vec<f32> {
    p.iter().map(|x| x.ln() as f32).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn temperature_top_k_and_top_p() {
    let lp = ln(&[0.5, 0.3, 0.15, 0.05]);
    let d = sampling_distribution(&lp, 1.0, 0, 1.0);
    let want = [(0, 0.5), (1, 0.3), (2, 0.15), (3, 0.05)];
    for (g, w) in d.iter().zip(want) {
        assert_eq!(g.0, w.0);
        assert!(close(g.1, w.1, 1e-6), "{d:?}");
    }
    // top-k = 2 renormalises 0.5 and 0.3: 0.625, 0.375.
    let d = sampling_distribution(&lp, 1.0, 2, 1.0);
    assert_eq!(d.len(), 2);
    assert!(close(d[0].1, 0.625, 1e-6) && close(d[1].1, 0.375, 1e-6));
    // top-p = 0.8 is reached by the first two (0.5 + 0.3); 0.81 needs a third: 0.5/0.95, 0.3/0.95, 0.15/0.95.
    assert_eq!(sampling_distribution(&lp, 1.0, 0, 0.8).len(), 2);
    let d = sampling_distribution(&lp, 1.0, 0, 0.81);
    assert_eq!(d.len(), 3);
    assert!(close(d[2].1, 0.15 / 0.95, 1e-6));
    // Temperature 2: p ∝ √p = 0.70711, 0.54772, 0.38730, 0.22361 (sum 1.86574).
    let d = sampling_distribution(&lp, 2.0, 0, 1.0);
    let s = 0.5f64.sqrt() + 0.3f64.sqrt() + 0.15f64.sqrt() + 0.05f64.sqrt();
    assert!(close(d[0].1, 0.5f64.sqrt() / s, 1e-6));
    assert!(close(d[3].1, 0.05f64.sqrt() / s, 1e-6));
    // A low temperature concentrates on the argmax.
    assert!(sampling_distribution(&lp, 0.05, 0, 1.0)[0].1 > 0.9999);
}

#[test]
fn sampling_follows_the_distribution() {
    let lp = ln(&[0.5, 0.3, 0.15, 0.05]);
    let mut next = |seqs: &[Vec<u32>]| vec![lp.clone(); seqs.len()];
    let prompts = vec![vec![0u32]; 20_000];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let out = generate(
        &mut next,
        &prompts,
        1,
        &Decoding::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        None,
        &mut rng,
    );
    let mut counts = [0usize; 4];
    for o in &out {
        counts[o[0] as usize] += 1;
    }
    // Binomial std of a share at n = 20,000 is ≤ 0.0036: 0.012 is > 3 std.
    for (c, p) in counts.iter().zip([0.5, 0.3, 0.15, 0.05]) {
        assert!(close(*c as f64 / 20_000.0, p, 0.012), "{counts:?}");
    }
    // top-k = 1 is greedy.
    let out = generate(
        &mut next,
        &prompts[..50],
        1,
        &Decoding::Sample {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        },
        None,
        &mut rng,
    );
    assert!(out.iter().all(|o| o == &vec![0]));
}

/// Tokens: 0 = stop, 1 = A, 2 = B, 3 = start. From start: A 0.6, B 0.4. After A: stop 0.35, A 0.35, B 0.3. After B:
/// stop 0.9, A 0.05, B 0.05. Greedy takes A then stop (0.6 · 0.35 = 0.21); the best sequence is B, stop
/// (0.4 · 0.9 = 0.36), which a beam of width 2 finds.
fn tree(seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let tiny = 1e-9;
    seqs.iter()
        .map(|s| match s.last() {
            Some(3) => ln(&[tiny, 0.6, 0.4, tiny]),
            Some(1) => ln(&[0.35, 0.35, 0.3, tiny]),
            Some(2) => ln(&[0.9, 0.05, 0.05, tiny]),
            _ => ln(&[1.0 - 3.0 * tiny, tiny, tiny, tiny]),
        })
        .collect()
}

#[test]
fn beam_search_finds_what_greedy_misses() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut next = tree;
    let p = vec![vec![3u32]];
    let greedy = generate(&mut next, &p, 5, &Decoding::Greedy, Some(0), &mut rng);
    assert_eq!(greedy, vec![vec![1, 0]]);
    let beam1 = generate(
        &mut next,
        &p,
        5,
        &Decoding::Beam { width: 1 },
        Some(0),
        &mut rng,
    );
    assert_eq!(beam1, greedy, "a beam of width 1 is greedy");
    let beam2 = generate(
        &mut next,
        &p,
        5,
        &Decoding::Beam { width: 2 },
        Some(0),
        &mut rng,
    );
    assert_eq!(beam2, vec![vec![2, 0]]);
    // Without a stop token greedy runs the full length.
    let g = generate(&mut next, &p, 4, &Decoding::Greedy, None, &mut rng);
    assert_eq!(g[0].len(), 4);
}

#[test]
fn model_adapter_reads_each_sequence_at_its_own_end() {
    // Padding a shorter sequence on the right must not change its prediction (causal attention), and the
    // batch must match one sequence at a time.
    let device = Default::default();
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 32,
        init_std: 0.3,
        ..ModelConfig::default()
    }
    .shape(50, 16)
    .unwrap();
    let model = shape.init::<Cpu>(&device);
    let mut next = model_next(&model, 16, &device);
    let a = vec![0u32, 5, 7, 9, 11, 13];
    let b = vec![0u32, 2];
    let both = next(&[a.clone(), b.clone()]);
    let one_a = next(std::slice::from_ref(&a));
    let one_b = next(std::slice::from_ref(&b));
    for (x, y) in both[0].iter().zip(&one_a[0]) {
        assert!((x - y).abs() < 1e-5);
    }
    for (x, y) in both[1].iter().zip(&one_b[0]) {
        assert!((x - y).abs() < 1e-5);
    }
    let total: f64 = both[1].iter().map(|l| (*l as f64).exp()).sum();
    assert!(close(total, 1.0, 1e-4), "log-probabilities sum to {total}");
    // A sequence longer than the context keeps its last 16 tokens.
    let long: Vec<u32> = (0..40).map(|i| i % 50).collect();
    let tail = long[24..].to_vec();
    let l = next(&[long]);
    let t = next(&[tail]);
    for (x, y) in l[0].iter().zip(&t[0]) {
        assert!((x - y).abs() < 1e-6);
    }
}
