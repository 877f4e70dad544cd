//! Zipf, Zipf-permuted Markov and uniform corpora: exact entropies against closed forms and SPEC §2, empirical
//! entropies against the estimator's standard error, determinism across threads and shard sizes, config errors.
//! Every sample is drawn from a fixed seed, so a test's outcome never varies from run to run; the tolerances are
//! still argued from the statistics, so that any seed would pass with overwhelming probability.

use std::path::Path;
use std::time::Instant;

use physlab_generators::corpus::{write_corpus, Corpus, Dataset, Manifest, BLOCK_DOCS};
use physlab_generators::zipf::{
    zipf_entropy_bits, zipf_probabilities, Uniform, UniformConfig, Zipf, ZipfConfig,
};

mod common;
use common::files;

fn write(c: &dyn Corpus, dir: &Path, shard: u64) -> Manifest {
    write_corpus(c, dir, shard, |_| {}).unwrap()
}

fn write_threads(c: &dyn Corpus, dir: &Path, shard: u64, threads: usize) -> Manifest {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| write(c, dir, shard))
}

/// Plug-in entropy in bits of `counts` with the Miller–Madow correction (m − 1)/(2n) nats, m = occupied bins.
fn miller_madow_bits(counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let nf = n as f64;
    let mut h = 0.0;
    let mut m = 0u64;
    for &c in counts.iter().filter(|&&c| c > 0) {
        let p = c as f64 / nf;
        h -= p * p.log2();
        m += 1;
    }
    h + (m as f64 - 1.0) / (2.0 * nf) / std::f64::consts::LN_2
}

/// Standard deviation of the surprisal −log2 p(X) under `p`: the plug-in estimator's standard error is σ/√n
/// (its first-order delta-method term is the sample mean of the surprisal).
fn surprisal_sd(p: &[f64], h: f64) -> f64 {
    let m2: f64 = p.iter().map(|&q| q * q.log2() * q.log2()).sum();
    (m2 - h * h).sqrt()
}

#[test]
fn entropy_matches_spec_and_the_manifest() {
    // SPEC §2 (derived): V = 4096 gives 8.752 bits at s = 1.0 and 6.805 bits at s = 1.2, quoted to 3 decimals, so
    // the tolerance is 0.0005. Independent check: a direct evaluation in Python (naive summation) gave
    // 8.751935461253439 and 6.805380310905218; those agree to 1e-12.
    let h1 = zipf_entropy_bits(4096, 1.0);
    let h12 = zipf_entropy_bits(4096, 1.2);
    println!("H(4096, 1.0) = {h1:.12} bits, H(4096, 1.2) = {h12:.12} bits");
    assert!((h1 - 8.752).abs() < 0.0005, "{h1}");
    assert!((h12 - 6.805).abs() < 0.0005, "{h12}");
    assert!((h1 - 8.751935461253439).abs() < 1e-12, "{h1}");
    assert!((h12 - 6.805380310905218).abs() < 1e-12, "{h12}");
    // Closed-form cross-check: −Σ p log2 p over the explicit probabilities (same quantity, other formula).
    let p = zipf_probabilities(4096, 1.0);
    let direct: f64 = -p.iter().map(|&q| q * q.log2()).sum::<f64>();
    assert!((direct - h1).abs() < 1e-10, "{direct} vs {h1}");
    // Limits: s → 0 is uniform (log2 V); V = 2 is a two-point distribution with p1 = 2^s/(2^s + 1).
    assert!((zipf_entropy_bits(1024, 1e-12) - 10.0).abs() < 1e-9);
    let p1 = 2f64 / 3.0;
    let h2 = -(p1 * p1.log2() + (1.0 - p1) * (1.0 - p1).log2());
    assert!((zipf_entropy_bits(2, 1.0) - h2).abs() < 1e-14);

    for (order, kind) in [(0, "zipf"), (2, "markov")] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ZipfConfig {
            order,
            documents: 300,
            doc_tokens: 100,
            ..ZipfConfig::default()
        };
        let m = write(&Zipf::build(&cfg, 5).unwrap(), dir.path(), 256);
        assert_eq!(m.kind, kind);
        let h = m.fact("entropy_bits_per_token").unwrap();
        assert_eq!(h, h1, "the manifest carries the same number");
        assert_eq!(m.fact("total_entropy_bits").unwrap(), 300.0 * 100.0 * h1);
        assert_eq!(m.fact("order").unwrap(), order as f64);
        assert_eq!(m.fact("vocab").unwrap(), 4096.0);
        assert_eq!(m.streams[0].tokens, 30_000);
        assert_eq!(
            m.exposure.tokens,
            300.0 * 101.0,
            "one pass: tokens and <eot>s"
        );
        assert_eq!(m.vocab_size, 4097);
        let ds = Dataset::open(dir.path()).unwrap();
        assert_eq!(ds.manifest, m);
        assert_eq!(ds.tokenizer.words[0], "<eot>");
        assert_eq!(ds.tokenizer.words[1], "z1");
    }
}

#[test]
fn iid_sample_entropy_is_within_five_standard_errors() {
    // 4M tokens of Zipf(V = 4096, s = 1.0). Plug-in + Miller–Madow: the leading bias −(m−1)/(2n) nats is
    // removed, the next term is O(Σ 1/(n²p)) ≈ V²·Z/n² ≈ 1e-5 bits here (rarest bin expects n·p_V ≈ 110
    // tokens). The standard error is σ/√n with σ the surprisal's sd (3.68 bits, computed below): 0.0018 bits.
    // Tolerance: 5 standard errors + 1e-4 for the remaining bias.
    let cfg = ZipfConfig {
        documents: 4096,
        doc_tokens: 1024,
        ..ZipfConfig::default()
    };
    let z = Zipf::build(&cfg, 42).unwrap();
    let t0 = Instant::now();
    let mut tokens = Vec::with_capacity(4 << 20);
    for d in 0..cfg.documents as u64 {
        z.render(0, d, &mut tokens);
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = tokens.len();
    let mut counts = vec![0u64; cfg.vocab + 1];
    tokens.iter().for_each(|&t| counts[t as usize] += 1);
    assert_eq!(counts[0], 0, "no <eot> inside documents");
    let h = zipf_entropy_bits(cfg.vocab, cfg.exponent);
    let est = miller_madow_bits(&counts[1..]);
    let se = surprisal_sd(&zipf_probabilities(cfg.vocab, cfg.exponent), h) / (n as f64).sqrt();
    let tol = 5.0 * se + 1e-4;
    println!(
        "{n} tokens in {secs:.3} s ({:.1} M tokens/s); H = {h:.5}, Miller–Madow = {est:.5}, diff {:+.5}, \
         se {se:.5}, tolerance {tol:.5}",
        n as f64 / secs / 1e6,
        est - h
    );
    assert!((est - h).abs() < tol);
    // The shape, token by token: token k is rank k. Rank 1's share is p_1 = 1/Z ≈ 0.1124 (sd √(p(1−p)/n) ≈
    // 1.5e-4; 6 sd), and the chi-square of all counts against n·p_k (every expected count ≥ 110) is within
    // df ± 6·√(2·df), df = V − 1 (a permuted or flattened sampler is off by thousands of sd).
    let p = zipf_probabilities(cfg.vocab, cfg.exponent);
    let share = counts[1] as f64 / n as f64;
    let chi2: f64 = (0..cfg.vocab)
        .map(|k| {
            let e = p[k] * n as f64;
            (counts[k + 1] as f64 - e).powi(2) / e
        })
        .sum();
    let df = (cfg.vocab - 1) as f64;
    println!(
        "share of token 1: {share:.5}, p_1 = {:.5}; chi2 {chi2:.0}, df {df}, bound ±{:.0}",
        p[0],
        6.0 * (2.0 * df).sqrt()
    );
    assert!((share - p[0]).abs() < 6.0 * (p[0] * (1.0 - p[0]) / n as f64).sqrt());
    assert!((chi2 - df).abs() < 6.0 * (2.0 * df).sqrt(), "chi2 {chi2}");
}

#[test]
fn markov_conditional_entropy_is_zipf_but_the_marginal_is_not() {
    // Order 1, V = 64, s = 1.0: H = Zipf entropy (closed form). Ranks are i.i.d. Zipf whatever the context, so
    // the conditional plug-in estimate (Miller–Madow per context) has standard error ≈ σ/√n as in the i.i.d.
    // case (σ ≈ 1.93 bits, n ≈ 4M: 9.4e-4 bits). Each context sees ~65K transitions (4M over 64 contexts); the
    // bias Miller–Madow leaves, ≈ (Σ_x 1/p_x − 1)/(12 n_c² ln 2) per context with Σ 1/p_x ≈ 9.9e3, is ~1e-6 bits,
    // so 1e-4 covers it. Tolerance 5 se + 1e-4.
    let cfg = ZipfConfig {
        vocab: 64,
        exponent: 1.0,
        order: 1,
        documents: 4096,
        doc_tokens: 1024,
    };
    let z = Zipf::build(&cfg, 7).unwrap();
    let v = cfg.vocab;
    let t0 = Instant::now();
    let mut doc = Vec::with_capacity(cfg.doc_tokens);
    let mut pairs = vec![0u64; (v + 1) * (v + 1)];
    let mut unigram = vec![0u64; v + 1];
    for d in 0..cfg.documents as u64 {
        doc.clear();
        z.render(0, d, &mut doc);
        for w in doc.windows(2) {
            pairs[w[0] as usize * (v + 1) + w[1] as usize] += 1;
        }
        doc.iter().for_each(|&t| unigram[t as usize] += 1);
    }
    let secs = t0.elapsed().as_secs_f64();
    let n: u64 = pairs.iter().sum();
    let h = zipf_entropy_bits(v, cfg.exponent);
    let mut cond = 0.0;
    let mut top = Vec::new();
    for ctx in 1..=v {
        let row = &pairs[ctx * (v + 1)..(ctx + 1) * (v + 1)];
        let nc: u64 = row.iter().sum();
        cond += nc as f64 / n as f64 * miller_madow_bits(row);
        let argmax = (0..=v).max_by_key(|&t| row[t]).unwrap();
        top.push(argmax);
    }
    let p = zipf_probabilities(v, cfg.exponent);
    let se = surprisal_sd(&p, h) / (n as f64).sqrt();
    let tol = 5.0 * se + 1e-4;
    top.sort();
    top.dedup();
    let total: u64 = unigram.iter().sum();
    let max_share = *unigram.iter().max().unwrap() as f64 / total as f64;
    println!(
        "{total} tokens in {secs:.3} s ({:.1} M tokens/s); H = {h:.5}, H(X_t|X_t-1) = {cond:.5}, diff {:+.5}, \
         tolerance {tol:.5}; top marginal share {max_share:.4} vs p_1 = {:.4}; {} distinct top tokens over {v} \
         contexts",
        total as f64 / secs / 1e6,
        cond - h,
        p[0],
        top.len()
    );
    assert!((cond - h).abs() < tol);
    // The permutation acts: were the chain the identity, token 1 would take p_1 = 0.211 of the tokens. With a
    // random permutation per context the stationary law mixes ranks, so no token comes close (expected shares
    // ≈ 1/64 ± a few times that).
    assert!(max_share < p[0] / 3.0, "{max_share} vs {}", p[0]);
    // Each context's most frequent successor is its own π_ctx(1): 64 random draws from 64 tokens hit ≈ 64(1 − 1/e)
    // ≈ 40 distinct tokens (sd ≈ 2.3); an identity chain would give 1.
    assert!(top.len() >= 28, "{} distinct top tokens", top.len());
    // The most frequent successor of each context is the permutation's image of rank 1.
    for ctx in 1..=v as u32 {
        let row = &pairs[ctx as usize * (v + 1)..(ctx as usize + 1) * (v + 1)];
        let argmax = (0..=v).max_by_key(|&t| row[t]).unwrap();
        assert_eq!(argmax as u64, z.context_permutation(&[ctx]).apply(0) + 1);
    }
}

/// Plug-in (Miller–Madow per context) conditional entropy H(X_t | previous `c` tokens) in bits, over the
/// positions t ≥ c of each document, and the number of positions counted.
fn conditional_entropy_bits(docs: &[Vec<u32>], c: usize, v: usize) -> (f64, u64) {
    let contexts = v.pow(c as u32);
    let mut cells = vec![0u64; contexts * v];
    for d in docs {
        for w in d.windows(c + 1) {
            let ctx = w[..c].iter().fold(0usize, |a, &t| a * v + (t as usize - 1));
            cells[ctx * v + (w[c] as usize - 1)] += 1;
        }
    }
    let n: u64 = cells.iter().sum();
    let h = cells
        .chunks(v)
        .map(|row| row.iter().sum::<u64>() as f64 / n as f64 * miller_madow_bits(row))
        .sum();
    (h, n)
}

#[test]
fn markov_order_three_conditions_on_exactly_the_last_three_tokens() {
    // V = 6, s = 1.0, order 3: 216 contexts × 6 successors, ~2M transitions (hundreds of expected counts even for
    // the rarest context's rarest successor, so Miller–Madow's residual bias is < 1e-4). H(X_t | X_{t−3..t−1}) must
    // be H within 5 se + 1e-4 (se = σ/√n as in the order-1 test). Conditioning on only the last two tokens mixes
    // the rows of 6 different permutations, so it must sit well above H (the chain really has order 3), and a
    // chain that used the wrong window would sit above H with three tokens too.
    let cfg = ZipfConfig {
        vocab: 6,
        exponent: 1.0,
        order: 3,
        documents: 2048,
        doc_tokens: 1024,
    };
    let z = Zipf::build(&cfg, 11).unwrap();
    let docs: Vec<Vec<u32>> = (0..cfg.documents as u64)
        .map(|d| {
            let mut out = Vec::new();
            z.render(0, d, &mut out);
            out
        })
        .collect();
    let h = zipf_entropy_bits(cfg.vocab, cfg.exponent);
    let (h3, n) = conditional_entropy_bits(&docs, 3, cfg.vocab);
    let (h2, _) = conditional_entropy_bits(&docs, 2, cfg.vocab);
    let se = surprisal_sd(&zipf_probabilities(cfg.vocab, cfg.exponent), h) / (n as f64).sqrt();
    let tol = 5.0 * se + 1e-4;
    println!(
        "H = {h:.5}; H(X_t | 3 previous) = {h3:.5} (diff {:+.5}, tolerance {tol:.5}); H(X_t | 2 previous) = {h2:.5}",
        h3 - h
    );
    assert!((h3 - h).abs() < tol);
    assert!(h2 > h + 20.0 * tol, "order 3 acts: {h2} vs {h}");
}

#[test]
fn uniform_manifest_entropy_and_chi_square() {
    // Entropy: N·S·log2 V exactly (SPEC §2, Morris et al.). Chi-square of the token counts against uniform has
    // mean df = V − 1 and sd √(2 df); the bound df + 6 sd (and df − 6 sd below) fails with probability ~1e-9.
    let cfg = UniformConfig {
        sequences: 2000,
        length: 64,
        vocab: 2048,
    };
    let u = Uniform::build(&cfg, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let m = write(&u, dir.path(), 512);
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(m.kind, "uniform");
    assert_eq!(m.fact("entropy_bits").unwrap(), 2000.0 * 64.0 * 11.0);
    assert_eq!(m.fact("entropy_bits_per_token").unwrap(), 11.0);
    assert_eq!(m.exposure.tokens, 2000.0 * 65.0);
    let s = Dataset::open(dir.path()).unwrap().load("train").unwrap();
    assert_eq!(s.documents(), 2000);
    assert!((0..2000).all(|i| s.document(i).len() == 64));
    let mut counts = vec![0u64; cfg.vocab + 1];
    s.tokens.iter().for_each(|&t| counts[t as usize] += 1);
    assert_eq!(counts[0], 0);
    let e = s.tokens.len() as f64 / cfg.vocab as f64;
    let chi2: f64 = counts[1..]
        .iter()
        .map(|&c| (c as f64 - e).powi(2) / e)
        .sum();
    let df = (cfg.vocab - 1) as f64;
    let bound = 6.0 * (2.0 * df).sqrt();
    println!("written in {secs:.3} s; chi2 = {chi2:.1}, df = {df}, bound ±{bound:.1}");
    assert!((chi2 - df).abs() < bound, "chi2 {chi2}");
    // Fractional log2 V stays exact: N·S·log2 V in f64.
    let odd = UniformConfig {
        vocab: 1000,
        ..cfg.clone()
    };
    assert_eq!(odd.entropy_bits(), 2000.0 * 64.0 * 1000f64.log2());
}

#[test]
fn same_bytes_whatever_threads_and_shards_different_seed_different_hash() {
    // 1300 documents: 5 full blocks of 256 and a partial one, so shards of 256 and 768 cut it differently.
    let markov = ZipfConfig {
        vocab: 300,
        exponent: 1.1,
        order: 2,
        documents: 1300,
        doc_tokens: 37,
    };
    let uniform = UniformConfig {
        sequences: 1300,
        length: 16,
        vocab: 500,
    };
    let corpora: Vec<(Box<dyn Corpus>, Box<dyn Corpus>)> = vec![
        (
            Box::new(Zipf::build(&markov, 1).unwrap()),
            Box::new(Zipf::build(&markov, 2).unwrap()),
        ),
        (
            Box::new(
                Zipf::build(
                    &ZipfConfig {
                        order: 0,
                        ..markov.clone()
                    },
                    1,
                )
                .unwrap(),
            ),
            Box::new(
                Zipf::build(
                    &ZipfConfig {
                        order: 0,
                        ..markov.clone()
                    },
                    2,
                )
                .unwrap(),
            ),
        ),
        (
            Box::new(Uniform::build(&uniform, 1).unwrap()),
            Box::new(Uniform::build(&uniform, 2).unwrap()),
        ),
    ];
    let shard = BLOCK_DOCS as u64;
    for (c, other_seed) in &corpora {
        let d: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = write_threads(c.as_ref(), d[0].path(), shard, 1);
        let b = write_threads(c.as_ref(), d[1].path(), shard, 2);
        let small = write_threads(c.as_ref(), d[2].path(), 3 * shard, 2);
        write(c.as_ref(), d[3].path(), shard);
        let other = write(other_seed.as_ref(), d[4].path(), shard);
        assert_eq!(a.streams[0].shards.len(), 6);
        assert_eq!(small.streams[0].shards.len(), 2);
        assert_eq!(
            files(d[0].path()),
            files(d[1].path()),
            "{}: 1 vs 2 threads",
            c.kind()
        );
        assert_eq!(
            files(d[0].path()),
            files(d[3].path()),
            "{}: same seed",
            c.kind()
        );
        assert_eq!(a.dataset_hash, b.dataset_hash);
        assert_eq!(
            a.dataset_hash,
            small.dataset_hash,
            "{}: shard size",
            c.kind()
        );
        assert_ne!(a.dataset_hash, other.dataset_hash, "{}: seed", c.kind());
        let la = Dataset::open(d[0].path()).unwrap().load("train").unwrap();
        let ls = Dataset::open(d[2].path()).unwrap().load("train").unwrap();
        let lo = Dataset::open(d[4].path()).unwrap().load("train").unwrap();
        assert_eq!(la.tokens, ls.tokens);
        assert_eq!(la.offsets, ls.offsets);
        assert_ne!(la.tokens, lo.tokens);
        // The stream on disk is the rendered documents, in order.
        let mut direct = Vec::new();
        for i in [0u64, 700, 1299] {
            direct.clear();
            c.render(0, i, &mut direct);
            assert_eq!(la.document(i as usize), &direct[..]);
        }
    }
}

#[test]
fn config_problems_are_all_reported() {
    let bad = ZipfConfig {
        vocab: 1,
        exponent: f64::NAN,
        order: 9,
        documents: 0,
        doc_tokens: 0,
    };
    let p = bad.problems();
    println!("{p:#?}");
    assert_eq!(p.len(), 5, "{p:?}");
    for key in [
        "data.vocab",
        "data.exponent",
        "data.order",
        "data.documents",
        "data.doc_tokens",
    ] {
        assert!(p.iter().any(|s| s.contains(key)), "{key} missing in {p:?}");
    }
    let err = Zipf::build(&bad, 0).err().expect("refused").to_string();
    assert!(
        err.contains("data.vocab") && err.contains("data.order"),
        "{err}"
    );
    for e in [0.0, -1.0, f64::INFINITY] {
        let p = ZipfConfig {
            exponent: e,
            ..ZipfConfig::default()
        }
        .problems();
        assert_eq!(p.len(), 1, "{e}: {p:?}");
    }
    assert_eq!(
        ZipfConfig {
            vocab: 0,
            ..ZipfConfig::default()
        }
        .problems()
        .len(),
        1
    );
    assert!(ZipfConfig {
        order: 8,
        ..ZipfConfig::default()
    }
    .problems()
    .is_empty());
    assert!(ZipfConfig::default().problems().is_empty());

    let bad = UniformConfig {
        sequences: 0,
        length: 0,
        vocab: 1,
    };
    let p = bad.problems();
    assert_eq!(p.len(), 3, "{p:?}");
    for key in ["data.sequences", "data.length", "data.vocab"] {
        assert!(p.iter().any(|s| s.contains(key)), "{key} missing in {p:?}");
    }
    assert!(Uniform::build(&bad, 0).is_err());
    assert!(UniformConfig::default().problems().is_empty());

    // Unknown keys are refused; missing keys take the defaults.
    let e = serde_json::from_str::<ZipfConfig>(r#"{"vocab": 10, "exponnent": 1.0}"#).unwrap_err();
    assert!(e.to_string().contains("exponnent"), "{e}");
    let c: ZipfConfig = serde_json::from_str(r#"{"order": 2}"#).unwrap();
    assert_eq!(
        c,
        ZipfConfig {
            order: 2,
            ..ZipfConfig::default()
        }
    );
    assert!(serde_json::from_str::<UniformConfig>(r#"{"lenght": 3}"#).is_err());
}

/// The source's surprisal of each token: for i.i.d. Zipf, −log2 p of the token's rank exactly; for a Markov chain,
/// of the token's rank under its context's permutation. Its mean over many tokens is H within five standard
/// errors (the standard deviation of one token's surprisal from the closed form `surprisal_sd`).
#[test]
fn surprisal_is_the_true_probability_and_averages_to_h() {
    for order in [0usize, 2] {
        let cfg = ZipfConfig {
            vocab: 256,
            exponent: 1.1,
            order,
            documents: 64,
            doc_tokens: 200,
        };
        let z = Zipf::build(&cfg, 9).unwrap();
        let p = zipf_probabilities(256, 1.1);
        let h = zipf_entropy_bits(256, 1.1);
        let mut sum = 0.0;
        let mut n = 0usize;
        for d in 0..64u64 {
            let mut doc = Vec::new();
            z.render_document(d, &mut doc);
            let s = z.surprisal_bits(&doc);
            assert_eq!(s.len(), doc.len());
            // Before the chain has k tokens of context (and always for order 0), a token is its own rank.
            for t in 0..order.max(1).min(doc.len()) {
                if order == 0 || t < order {
                    assert!((s[t] + p[doc[t] as usize - 1].log2()).abs() < 1e-12);
                }
            }
            sum += s.iter().sum::<f64>();
            n += s.len();
        }
        let mean = sum / n as f64;
        let se = surprisal_sd(&p, h) / (n as f64).sqrt();
        assert!(
            (mean - h).abs() < 5.0 * se,
            "order {order}: {mean} vs H = {h} (se {se})"
        );
    }
}
