//! bioD generator tests: value shapes, exact bits (Def. 4.1), uniformity, permutation, determinism, config
//! problems. Each test states its tolerance and where its expected numbers come from.

use std::collections::HashSet;
use std::path::Path;

use physlab_generators::biod::{biod_bit_terms, biod_bits, BioD, BioDConfig};
use physlab_generators::corpus::{write_corpus, Corpus, Dataset, BLOCK_DOCS};

mod common;
use common::files;

fn small(people: usize) -> BioDConfig {
    BioDConfig {
        people,
        attributes: 3,
        chunks: 3,
        values: 50,
        value_tokens: 2,
        vocab: 40,
        multi: 2,
        permute: true,
        ..BioDConfig::default()
    }
}

/// Every value is C·L value tokens, each chunk one of the attribute's D values; each value set has exactly D
/// distinct members of L value tokens. Exact checks (no tolerance).
#[test]
fn values_have_the_declared_shape() {
    let cfg = small(500);
    let b = BioD::build(&cfg, 4).unwrap();
    let (k, c, d, l, t) = (
        cfg.attributes,
        cfg.chunks,
        cfg.values,
        cfg.value_tokens,
        cfg.vocab,
    );
    let value_ids: HashSet<u32> = (0..t as u32).map(|v| b.value_token_id(v)).collect();
    let mut sets = Vec::new();
    for a in 0..k {
        let set: HashSet<Vec<u32>> = (0..d).map(|j| b.value(a, j).to_vec()).collect();
        assert_eq!(set.len(), d, "attribute {a}: {d} distinct values");
        for v in &set {
            assert_eq!(v.len(), l);
            assert!(v.iter().all(|x| value_ids.contains(x)));
        }
        assert_eq!(b.value_set_text(a).len(), d);
        sets.push(set);
    }
    for i in 0..cfg.people {
        let p = b.person(i);
        assert_eq!(p.chunks.len(), k * c);
        let eval = b.render_eval(i);
        for (a, set) in sets.iter().enumerate() {
            let v = b.value_tokens(&p, a);
            assert_eq!(v.len(), c * l, "a value is C·L tokens");
            for chunk in v.chunks(l) {
                assert!(set.contains(chunk), "each chunk is in the attribute's set");
            }
            let s = eval.values[a];
            assert_eq!(&eval.tokens[s.start..s.start + s.len], v.as_slice());
            let f = eval.first_chunks[a];
            assert_eq!((f.start, f.len), (s.start, l));
            assert_eq!(
                &eval.tokens[f.start..f.start + f.len],
                b.value(a, p.chunks[a * c] as usize)
            );
            // The sentence prefix before the value is `a{k} :`.
            assert_eq!(
                b.tokenizer.decode(&eval.tokens[s.start - 2..s.start]),
                format!("a{} :", a + 1)
            );
        }
        assert_eq!(eval.tokens.len(), b.tokens_per_biography());
    }
    println!("person 0: {}", b.tokenizer.decode(&b.render(0, 0).tokens));
}

/// Def. 4.1 at the perfect losses p1 = ln N, p2 = 0, p3 = 0 equals the closed-form upper bound
/// N·log2(N0/N) + N·K·C·log2 D + K·D·log2(T^L/D). By hand, with log2 N0 = 20, N = 1024, K = 3, C = 2, D = 16,
/// L = 2, T = 64: name 1024·(20 − 10) = 10240; values 1024·3·2·4 = 24576; value sets 3·16·log2(4096/16) =
/// 48·8 = 384; total 35200. For the default config with the embedded pools (N0 = 400·400·1000 = 1.6e8):
/// N = 1000, K = 4, C = 2, D = 100, L = 2, T = 200: name 1000·log2(160000) = 17287.712379549;
/// values 8000·log2 100 = 53150.849518198; value sets 400·log2(40000/100) = 3457.542475910.
/// Tolerance 1e-9 relative (f64 rounding of ln/log2).
#[test]
fn perfect_losses_give_the_closed_form_bound() {
    let n = 1024usize;
    let terms = biod_bit_terms(n, 20.0, 3, 2, 16, 2, 64, (n as f64).ln(), 0.0, 0.0);
    let expected = [10240.0, 24576.0, 384.0];
    for (g, e) in terms.iter().zip(expected) {
        assert!((g - e).abs() < 1e-9 * e, "{terms:?} vs {expected:?}");
    }
    let total = biod_bits(n, 20.0, 3, 2, 16, 2, 64, (n as f64).ln(), 0.0, 0.0);
    assert!((total - 35200.0).abs() < 1e-9 * 35200.0, "{total}");
    println!("hand config: terms {terms:?}, total {total}");

    let b = BioD::build(&BioDConfig::default(), 1).unwrap();
    let got = b.perfect_terms();
    let expected = [17287.712379549, 53150.849518198, 3457.542475910];
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-9 * e, "{got:?} vs {expected:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let m = write_corpus(&b, dir.path(), BLOCK_DOCS as u64, |_| {}).unwrap();
    for (key, e) in ["name_bits", "value_bits", "value_set_bits"]
        .iter()
        .zip(expected)
    {
        let f = m.fact(key).unwrap();
        assert!((f - e).abs() < 1e-9 * e, "{key}: {f} vs {e}");
    }
    let total: f64 = expected.iter().sum();
    assert!((m.fact("perfect_recall_bits").unwrap() - total).abs() < 1e-9 * total);
    assert!((m.fact("bits_per_person").unwrap() - total / 1000.0).abs() < 1e-9 * total);
    assert!((m.fact("log2_n0").unwrap() - 1.6e8f64.log2()).abs() < 1e-12);
    println!(
        "default config: terms {got:?}, total {total:.6}, {:.4} bits/person",
        total / 1000.0
    );
}

/// Zero points of the three terms (Def. 4.1, exact up to 1e-9 absolute per 1e4 bits): a model that guesses the
/// name uniformly over the N0 names (p1 = ln N0) stores 0 name bits; one that guesses each chunk uniformly over
/// the attribute's D values (p2 = C·ln D) stores 0 value bits; the value-set term is 0 at p3 = ln(T^L/D).
/// A model uniform over all T^L sequences for the first chunk (p3 = L·ln T) gets −K·D·log2 D from the third term
/// (the formula is a lower-bound estimate and can go negative for a model that knows nothing).
#[test]
fn a_uniform_guess_stores_no_value_bits() {
    let (n, k, c, d, l, t) = (1000usize, 4usize, 2usize, 100usize, 2usize, 200usize);
    let log2_n0 = 1.6e8f64.log2();
    let ln2 = std::f64::consts::LN_2;
    let (df, tf) = (d as f64, t as f64);
    let terms = biod_bit_terms(
        n,
        log2_n0,
        k,
        c,
        d,
        l,
        t,
        log2_n0 * ln2,
        c as f64 * df.ln(),
        l as f64 * tf.ln() - df.ln(),
    );
    assert!(terms.iter().all(|x| x.abs() < 1e-9), "{terms:?}");
    let third = biod_bit_terms(n, log2_n0, k, c, d, l, t, 0.0, 0.0, l as f64 * tf.ln())[2];
    let expected = -((k * d) as f64) * df.log2();
    assert!(
        (third - expected).abs() < 1e-9 * expected.abs(),
        "{third} vs {expected}"
    );
    println!("uniform-guess terms {terms:?}; third term at p3 = L ln T: {third:.3}");
}

/// Pearson's chi-square statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Chunk choices are uniform over the D values of their attribute, and chunk positions are independent of one
/// another: chi-square with df = D − 1 (per attribute and chunk position) and df = D² − 1 (pairs of chunks 0, 1)
/// stays below df + 6·sqrt(2·df) (mean df, std sqrt(2·df): a false alarm below 1e-6 by the normal approximation;
/// fixed seed). N = 20,000, D = 20: 1000 expected per cell (50 for pairs). The value-set tokens are uniform over
/// the T value tokens too (D = 4000, L = 2, T = 100, T^L = 10,000: 8000 tokens per attribute, 80 per
/// cell; drawing without replacement only lowers the variance).
#[test]
fn chunk_choices_are_uniform_by_chi_square() {
    let cfg = BioDConfig {
        people: 20_000,
        attributes: 3,
        chunks: 2,
        values: 20,
        value_tokens: 2,
        vocab: 10,
        ..BioDConfig::default()
    };
    let b = BioD::build(&cfg, 8).unwrap();
    let (k, c, d) = (cfg.attributes, cfg.chunks, cfg.values);
    let people: Vec<_> = (0..cfg.people).map(|i| b.person(i)).collect();
    let bound = |df: f64| df + 6.0 * (2.0 * df).sqrt();
    for a in 0..k {
        for pos in 0..c {
            let mut counts = vec![0usize; d];
            people
                .iter()
                .for_each(|p| counts[p.chunks[a * c + pos] as usize] += 1);
            let (chi, df) = (chi_square(&counts), (d - 1) as f64);
            println!(
                "attribute {a} chunk {pos}: chi2 = {chi:.1}, df = {df}, bound {:.1}",
                bound(df)
            );
            assert!(
                chi < bound(df),
                "attribute {a} chunk {pos}: chi2 = {chi:.1}, df = {df}"
            );
        }
        let mut pairs = vec![0usize; d * d];
        people
            .iter()
            .for_each(|p| pairs[p.chunks[a * c] as usize * d + p.chunks[a * c + 1] as usize] += 1);
        let (chi, df) = (chi_square(&pairs), (d * d - 1) as f64);
        println!(
            "attribute {a} chunk pairs: chi2 = {chi:.1}, df = {df}, bound {:.1}",
            bound(df)
        );
        assert!(
            chi < bound(df),
            "attribute {a} pairs: chi2 = {chi:.1}, df = {df}"
        );
    }

    let cfg = BioDConfig {
        people: 10,
        attributes: 2,
        values: 4000,
        value_tokens: 2,
        vocab: 100,
        ..BioDConfig::default()
    };
    let b = BioD::build(&cfg, 8).unwrap();
    for a in 0..cfg.attributes {
        let mut counts = vec![0usize; cfg.vocab];
        for j in 0..cfg.values {
            b.value_indices(a, j)
                .iter()
                .for_each(|&t| counts[t as usize] += 1);
        }
        let (chi, df) = (chi_square(&counts), (cfg.vocab - 1) as f64);
        println!(
            "value-set tokens of attribute {a}: chi2 = {chi:.1}, df = {df}, bound {:.1}",
            bound(df)
        );
        assert!(
            chi < bound(df),
            "value-set tokens of attribute {a}: chi2 = {chi:.1}"
        );
    }
}

/// With `permute` the sentence order varies across emissions (with K = 4 there are 24 orders; 200 people × 4
/// emissions see more than one, and some person's emissions differ), the name always opens the biography and
/// every attribute appears exactly once; without it every emission is in canonical order a1…aK. Exact checks.
#[test]
fn permute_shuffles_sentences_and_the_name_comes_first() {
    for permute in [true, false] {
        let cfg = BioDConfig {
            people: 200,
            multi: 4,
            permute,
            ..BioDConfig::default()
        };
        let b = BioD::build(&cfg, 3).unwrap();
        let mut orders = HashSet::new();
        let mut person_varies = false;
        for i in 0..cfg.people {
            let p = b.person(i);
            let name = b.name_tokens(&p);
            let mut mine = HashSet::new();
            for e in 0..cfg.multi {
                let r = b.render(i, e);
                assert_eq!(&r.tokens[..3], &name, "the name opens the biography");
                assert_eq!(b.tokenizer.decode(&r.tokens[..3]), b.full_name(&p));
                assert_eq!(b.tokenizer.decode(&r.tokens[3..4]), ".");
                let mut sorted = r.order.clone();
                sorted.sort();
                assert_eq!(sorted, (0..cfg.attributes).collect::<Vec<_>>());
                // Sentences appear in `order`: the attribute tokens in the text follow it.
                let attrs: Vec<usize> = (0..cfg.attributes)
                    .map(|k| {
                        r.tokens
                            .iter()
                            .position(|&t| t == b.attribute_token_id(r.order[k]))
                            .unwrap()
                    })
                    .collect();
                assert!(attrs.windows(2).all(|w| w[0] < w[1]));
                for k in 0..cfg.attributes {
                    let s = r.values[k];
                    assert_eq!(
                        &r.tokens[s.start..s.start + s.len],
                        b.value_tokens(&p, k).as_slice()
                    );
                }
                orders.insert(r.order.clone());
                mine.insert(r.order);
            }
            person_varies |= mine.len() > 1;
        }
        println!(
            "permute = {permute}: {} distinct sentence orders",
            orders.len()
        );
        if permute {
            assert!(
                orders.len() > 1 && person_varies,
                "orders vary across emissions"
            );
        } else {
            assert_eq!(orders.len(), 1);
            assert!(orders.contains(&(0..cfg.attributes).collect::<Vec<_>>()));
        }
    }
}

/// Same seed → identical files and dataset hash; 1 vs 2 rayon threads and shards of 256 vs 512 documents give the
/// same dataset hash; a different seed a different one; the loaded stream equals the rendered documents and the
/// truth table the people. Exact checks; tokens per document is exact (every biography has 4 + K·(3 + C·L)
/// tokens plus `<eot>`).
#[test]
fn same_seed_same_bytes_whatever_threads_and_shards() {
    let cfg = small(1500);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let write = |seed: u64, dir: &Path, shard: usize, threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                write_corpus(&BioD::build(&cfg, seed).unwrap(), dir, shard as u64, |_| {}).unwrap()
            })
    };
    let m0 = write(11, dirs[0].path(), BLOCK_DOCS, 1);
    let m1 = write(11, dirs[1].path(), BLOCK_DOCS, 2);
    let m2 = write(11, dirs[2].path(), 2 * BLOCK_DOCS, 2);
    let m3 = write(12, dirs[3].path(), BLOCK_DOCS, 2);
    assert_eq!(
        m0.stream("bio").unwrap().shards.len(),
        3000usize.div_ceil(BLOCK_DOCS)
    );
    assert_eq!(
        m2.stream("bio").unwrap().shards.len(),
        3000usize.div_ceil(2 * BLOCK_DOCS)
    );
    assert_eq!(
        files(dirs[0].path()),
        files(dirs[1].path()),
        "1 vs 2 threads: same bytes"
    );
    assert_eq!(m0.dataset_hash, m1.dataset_hash);
    assert_eq!(
        m0.dataset_hash, m2.dataset_hash,
        "the hash does not depend on the shard size"
    );
    assert_ne!(
        m0.dataset_hash, m3.dataset_hash,
        "a different seed, a different dataset"
    );
    println!(
        "dataset_hash {} (seed 11), {} (seed 12)",
        m0.dataset_hash, m3.dataset_hash
    );

    let b = BioD::build(&cfg, 11).unwrap();
    let ds = Dataset::open(dirs[2].path()).unwrap();
    let bio = ds.load("bio").unwrap();
    assert_eq!(bio.documents(), 3000);
    for d in 0..3000 {
        assert_eq!(
            bio.document(d),
            b.render(d / 2, d % 2).tokens.as_slice(),
            "document {d}"
        );
    }
    let tpd = (b.tokens_per_biography() + 1) as f64;
    assert_eq!(b.tokens_per_biography(), 4 + 3 * (3 + 3 * 2));
    let info = ds.manifest.stream("bio").unwrap();
    assert_eq!(info.tokens_per_document, tpd);
    assert_eq!(ds.manifest.exposure.tokens, 1500.0 * tpd);
    assert_eq!(ds.manifest.exposure.unit, "one biography per person");
    assert_eq!(ds.manifest.kind, "bioD");
    assert_eq!(ds.manifest.vocab_size, b.tokenizer().vocab_size());
    assert_eq!(ds.tokenizer.words, b.tokenizer.words);
    assert_eq!(&b.tokenizer.words[..5], &["<eot>", ".", ":", ";", "a1"]);
    assert_eq!(b.tokenizer.words[b.value_token_id(0) as usize], "v0");
    let truth = std::fs::read_to_string(dirs[2].path().join("people.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1500);
    for i in [0usize, 1, 777, 1499] {
        let p = b.person(i);
        assert_eq!(rows[i]["id"], i);
        assert_eq!(rows[i]["name"], b.full_name(&p));
        let (chunks, values) = (
            rows[i]["chunks"].as_array().unwrap(),
            rows[i]["values"].as_array().unwrap(),
        );
        assert_eq!(
            (chunks.len(), values.len()),
            (cfg.attributes, cfg.attributes)
        );
        for (k, (chunks, value)) in chunks.iter().zip(values).enumerate() {
            let chunks: Vec<u32> = serde_json::from_value(chunks.clone()).unwrap();
            assert_eq!(chunks, p.chunks[k * cfg.chunks..(k + 1) * cfg.chunks]);
            assert_eq!(value, &b.tokenizer.decode(&b.value_tokens(&p, k)));
        }
    }
    let sets = &ds.manifest.facts["value_sets"];
    for k in 0..cfg.attributes {
        let got: Vec<String> = serde_json::from_value(sets[k].clone()).unwrap();
        assert_eq!(got, b.value_set_text(k));
    }
    println!("first truth row: {}", truth.lines().next().unwrap());
}

/// All problems are reported at once, each naming its key; unknown keys are refused by serde.
#[test]
fn config_problems_are_all_reported_naming_keys() {
    let bad = BioDConfig {
        people: 200_000_000,
        attributes: 0,
        chunks: 0,
        values: 50,
        value_tokens: 1,
        vocab: 60,
        multi: 0,
        permute: true,
        pools: physlab_generators::PoolFiles {
            cities: "x.txt".into(),
            ..Default::default()
        },
        name_pool_sizes: vec![10, 0],
    };
    let problems = bad.problems();
    for p in &problems {
        println!("problem: {p}");
    }
    assert!(problems.iter().any(|p| p.contains("data.name_pool_sizes")));
    for key in [
        "data.attributes",
        "data.chunks",
        "data.multi",
        "data.values = 50: not enough distinct values",
        "data.people = 200000000",
        "data.pools.cities",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(key)),
            "{key} missing from {problems:?}"
        );
    }
    assert_eq!(problems.len(), 7, "{problems:?}");
    let err = BioD::build(&bad, 0).err().expect("refused").to_string();
    for key in [
        "data.attributes",
        "data.chunks",
        "data.multi",
        "data.values",
        "data.people",
    ] {
        assert!(err.contains(key), "{err}");
    }
    assert!(BioDConfig::default().problems().is_empty());
    // T^L = 2·D exactly is enough; one less is not.
    let edge = BioDConfig {
        values: 50,
        value_tokens: 2,
        vocab: 10,
        ..BioDConfig::default()
    };
    assert!(edge.problems().is_empty(), "{:?}", edge.problems());
    let edge = BioDConfig { values: 51, ..edge };
    assert_eq!(edge.problems().len(), 1);
    let e: Result<BioDConfig, _> = serde_json::from_str(r#"{"people": 5, "chunk": 2}"#);
    let e = e.expect_err("unknown key refused").to_string();
    assert!(e.contains("chunk"), "{e}");
}

/// Replacement name pools: N > N0 is refused at build time naming `data.people` (2·2·2 = 8 names here), and a
/// name that is also a bioD token (`v3`) is refused naming `data.pools`; a valid small pool gives N0 = 8 exactly
/// (log2_n0 = 3) and 8 distinct names.
#[test]
fn replacement_name_pools_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let pools = physlab_generators::PoolFiles {
        first_names: write("f.txt", "Ann\nBob\n"),
        middle_names: write("m.txt", "Cy\nDee\n"),
        last_names: write("l.txt", "Eck\nFox\n"),
        ..Default::default()
    };
    let cfg = BioDConfig {
        people: 9,
        pools: pools.clone(),
        ..BioDConfig::default()
    };
    assert!(cfg.problems().is_empty(), "N0 of files is checked at build");
    let err = BioD::build(&cfg, 0).err().expect("refused").to_string();
    println!("N > N0: {err}");
    assert!(
        err.contains("data.people = 9") && err.contains("N0 = 8"),
        "{err}"
    );

    let b = BioD::build(
        &BioDConfig {
            people: 8,
            ..cfg.clone()
        },
        0,
    )
    .unwrap();
    assert_eq!(b.log2_n0(), 3.0);
    let names: HashSet<String> = (0..8).map(|i| b.full_name(&b.person(i))).collect();
    assert_eq!(names.len(), 8);

    let clash = BioDConfig {
        people: 4,
        pools: physlab_generators::PoolFiles {
            last_names: write("l2.txt", "Eck\nv3\n"),
            ..pools
        },
        ..BioDConfig::default()
    };
    let err = BioD::build(&clash, 0).err().expect("refused").to_string();
    println!("clash: {err}");
    assert!(
        err.contains("data.pools") && err.contains("\"v3\""),
        "{err}"
    );
}

/// Truncated name pools: N0 and the vocabulary shrink with them, the name bits follow N0, and asking for more
/// names than a pool holds is an error naming the key.
#[test]
fn name_pool_sizes_shrink_the_vocabulary_and_n0() {
    let base = BioDConfig {
        people: 500,
        ..BioDConfig::default()
    };
    let full = BioD::build(&base, 1).unwrap();
    let small = BioD::build(
        &BioDConfig {
            name_pool_sizes: vec![20, 20, 50],
            ..base.clone()
        },
        1,
    )
    .unwrap();
    // N0 = 20 · 20 · 50 = 20,000 (closed form).
    assert!((small.log2_n0() - 20_000f64.log2()).abs() < 1e-12);
    assert!(small.tokenizer.vocab_size() + 800 < full.tokenizer.vocab_size());
    // The name term of the perfect bound: N·log2(N0/N) = 500·log2(40).
    assert!((small.perfect_terms()[0] - 500.0 * 40f64.log2()).abs() < 1e-9);
    let err = BioD::build(
        &BioDConfig {
            name_pool_sizes: vec![20, 20, 5000],
            ..base
        },
        1,
    )
    .err()
    .expect("too many names");
    assert!(err.to_string().contains("name_pool_sizes"), "{err}");
}
