//! bioS generator tests: determinism, uniqueness, uniformity, structure, pool-file errors.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::Dataset;
use physlab_generators::people::Attribute;
use physlab_generators::pools::{PoolFiles, Pools};
use physlab_generators::templates::Templates;

mod common;
use common::files;

fn config(people: usize) -> BioSConfig {
    BioSConfig {
        people,
        multi: 2,
        permute: true,
        shard_biographies: 512,
        ..BioSConfig::default()
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let m0 = BioS::build(&config(1500), 11)
        .unwrap()
        .write(dirs[0].path(), |_| {})
        .unwrap();
    let m1 = BioS::build(&config(1500), 11)
        .unwrap()
        .write(dirs[1].path(), |_| {})
        .unwrap();
    let m2 = BioS::build(&config(1500), 12)
        .unwrap()
        .write(dirs[2].path(), |_| {})
        .unwrap();
    assert_eq!(
        m0.streams[0].shards.len(),
        6,
        "3000 biographies in shards of 512"
    );
    let (f0, f1, f2) = (
        files(dirs[0].path()),
        files(dirs[1].path()),
        files(dirs[2].path()),
    );
    assert_eq!(f0, f1, "same seed, same bytes");
    assert_eq!(m0.dataset_hash, m1.dataset_hash);
    assert_ne!(m0.dataset_hash, m2.dataset_hash);
    let differing = f0
        .iter()
        .zip(&f2)
        .filter(|(a, b)| a.0 != "vocab.json" && a.1 != b.1)
        .count();
    assert_eq!(
        differing,
        f0.len() - 1,
        "a different seed changes every file but the vocabulary"
    );
    // The shards read back to the rendered biographies.
    let ds = Dataset::open(dirs[0].path()).unwrap();
    let bio = ds.load("bio").unwrap();
    let bios = BioS::build(&config(1500), 11).unwrap();
    assert_eq!(bio.documents(), 3000);
    for b in [0, 1, 777, 2999] {
        assert_eq!(bio.document(b), bios.render(b / 2, b % 2).tokens.as_slice());
    }
    let measured = (bio.tokens.len() + bio.documents()) as f64 / bio.documents() as f64;
    assert!((ds.manifest.fact("tokens_per_biography").unwrap() - measured).abs() < 1e-12);
    assert!((ds.manifest.exposure.tokens - 1500.0 * measured).abs() < 1e-6);
}

#[test]
fn a_corrupted_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    BioS::build(&config(50), 1)
        .unwrap()
        .write(dir.path(), |_| {})
        .unwrap();
    let shard = dir.path().join("bio-00000.tok");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    let err = Dataset::open(dir.path())
        .unwrap()
        .load("bio")
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("bio-00000.tok") && err.contains("sha256"),
        "{err}"
    );
}

#[test]
fn full_names_are_unique() {
    let bios = BioS::build(
        &BioSConfig {
            people: 100_000,
            ..BioSConfig::default()
        },
        3,
    )
    .unwrap();
    let names: HashSet<_> = bios
        .people(100_000)
        .iter()
        .map(|p| (p.first, p.middle, p.last))
        .collect();
    assert_eq!(names.len(), 100_000);
}

/// Pearson's chi-square statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Each attribute is uniform over its pool: chi-square with k−1 degrees of freedom stays below
/// df + 6·sqrt(2·df) (the statistic has mean df and std sqrt(2·df); six std is a false-alarm rate below 1e-6
/// by the normal approximation, and the seed is fixed). N = 40,000 gives ≥ 133 expected per cell.
#[test]
fn attributes_are_uniform_by_chi_square() {
    let bios = BioS::build(
        &BioSConfig {
            people: 40_000,
            ..BioSConfig::default()
        },
        5,
    )
    .unwrap();
    let pools = &bios.pools;
    let people = bios.people(40_000);
    let check = |name: &str, k: usize, f: &dyn Fn(&physlab_generators::Person) -> usize| {
        let mut counts = vec![0usize; k];
        people.iter().for_each(|p| counts[f(p)] += 1);
        let df = (k - 1) as f64;
        let chi = chi_square(&counts);
        assert!(
            chi < df + 6.0 * (2.0 * df).sqrt(),
            "{name}: chi2 = {chi:.1} with df = {df}"
        );
        assert!(counts.iter().all(|&c| c > 0), "{name}: a value never drawn");
    };
    check("birth day", 28, &|p| p.birth_day as usize - 1);
    check("birth month", 12, &|p| p.birth_month as usize);
    check("birth year", 200, &|p| p.birth_year as usize);
    check("birth city", pools.cities.len(), &|p| p.birth_city as usize);
    check("university", pools.universities.len(), &|p| {
        p.university as usize
    });
    check("major", pools.majors.len(), &|p| p.major as usize);
    check("employer", pools.companies.len(), &|p| p.employer as usize);
    check("pronoun", 2, &|p| p.gender as usize);
}

#[test]
fn employer_city_is_always_the_employers_city() {
    let bios = BioS::build(
        &BioSConfig {
            people: 3000,
            multi: 3,
            permute: true,
            ..BioSConfig::default()
        },
        9,
    )
    .unwrap();
    let hq: HashMap<&str, &str> = bios
        .pools
        .companies
        .iter()
        .map(|c| (c.name.as_str(), bios.pools.cities[c.city].as_str()))
        .collect();
    for (i, p) in bios.people(3000).iter().enumerate() {
        let employer = p.value(Attribute::Employer, &bios.pools);
        assert_eq!(
            hq[employer.as_str()],
            p.value(Attribute::EmployerCity, &bios.pools)
        );
        for e in 0..3 {
            let b = bios.render(i, e);
            let span = b.values[Attribute::EmployerCity.index()];
            let city = bios
                .tokenizer
                .decode(&b.tokens[span.start..span.start + span.len]);
            assert_eq!(city, hq[employer.as_str()]);
        }
    }
}

#[test]
fn paper_pool_sizes_and_at_least_40_templates_per_attribute() {
    let pools = Pools::embedded();
    let sizes = [
        pools.first_names.len(),
        pools.middle_names.len(),
        pools.last_names.len(),
        pools.cities.len(),
        pools.universities.len(),
        pools.majors.len(),
        pools.companies.len(),
    ];
    assert_eq!(sizes, [400, 400, 1000, 200, 300, 100, 263]);
    assert_eq!(pools.n_birth_dates(), 67_200);
    // SPEC §1: about 13.7% of the companies share one city (36 of 263).
    let mut per_city = vec![0usize; pools.cities.len()];
    pools.companies.iter().for_each(|c| per_city[c.city] += 1);
    assert_eq!(per_city.iter().max(), Some(&36));
    let t = Templates::embedded();
    for a in Attribute::ALL {
        assert!(
            t.for_attribute(a).len() >= 40,
            "{}: {} templates",
            a.name(),
            t.for_attribute(a).len()
        );
    }
}

#[test]
fn spans_hold_the_values_and_the_name_opens_every_biography() {
    for (permute, fullname) in [(false, false), (true, false), (true, true)] {
        let cfg = BioSConfig {
            people: 300,
            multi: 4,
            permute,
            fullname,
            ..BioSConfig::default()
        };
        let bios = BioS::build(&cfg, 2).unwrap();
        let mut orders = HashSet::new();
        for i in 0..300 {
            let p = &bios.person(i);
            for b in (0..4)
                .map(|e| bios.render(i, e))
                .chain([bios.render_eval(i)])
            {
                let name = bios.tokenizer.decode(&b.tokens[..3]);
                assert_eq!(
                    name,
                    p.full_name(&bios.pools),
                    "the full name opens the biography"
                );
                assert_eq!((b.name.start, b.name.len), (0, 3));
                for a in Attribute::ALL {
                    let s = b.values[a.index()];
                    assert_eq!(
                        &b.tokens[s.start..s.start + s.len],
                        bios.value_tokens(i, a).as_slice()
                    );
                }
                assert_eq!(b.pronoun.is_some(), !fullname);
                if let Some(k) = b.pronoun {
                    assert_eq!(bios.tokenizer.decode(&[b.tokens[k]]), p.gender.pronoun());
                }
                orders.insert(b.order);
            }
            let eval = bios.render_eval(i);
            assert_eq!(
                eval.order,
                [0, 1, 2, 3, 4, 5],
                "evaluation is in canonical order"
            );
            assert!(
                eval.values[4].start < eval.values[5].start,
                "employer before its city"
            );
        }
        assert_eq!(
            orders.len() > 1,
            permute,
            "permute shuffles the sentences, canonical keeps them"
        );
        // multiM re-draws templates: entries of one person differ.
        assert_ne!(bios.render(0, 0).tokens, bios.render(0, 1).tokens);
    }
}

fn write_tmp(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn bad_pool_files_give_errors_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            PoolFiles {
                majors: write_tmp(dir.path(), "empty.txt", ""),
                ..Default::default()
            },
            vec!["empty.txt", "empty"],
        ),
        (
            PoolFiles {
                majors: write_tmp(dir.path(), "dup.txt", "Art\nLaw\nArt\n"),
                ..Default::default()
            },
            vec!["dup.txt", "line 3", "duplicate", "line 1"],
        ),
        (
            PoolFiles {
                companies: write_tmp(dir.path(), "co.txt", "Acme Corp\n"),
                ..Default::default()
            },
            vec!["co.txt", "line 1", "TAB"],
        ),
        (
            PoolFiles {
                companies: write_tmp(dir.path(), "co2.txt", "Acme Corp\tAtlantis\n"),
                ..Default::default()
            },
            vec!["co2.txt", "line 1", "Atlantis"],
        ),
        (
            PoolFiles {
                majors: write_tmp(dir.path(), "quote.txt", "Art\nLaw \"Honours\"\n"),
                ..Default::default()
            },
            vec!["quote.txt", "line 2", "reserved character"],
        ),
        (
            PoolFiles {
                first_names: write_tmp(dir.path(), "two.txt", "Ann Marie\n"),
                ..Default::default()
            },
            vec!["two.txt", "single word"],
        ),
        (
            PoolFiles {
                cities: dir.path().join("missing.txt").display().to_string(),
                ..Default::default()
            },
            vec!["missing.txt"],
        ),
    ];
    for (files, needles) in cases {
        let err = Pools::load(&files)
            .expect_err("a bad pool file is refused")
            .to_string();
        for n in needles {
            assert!(err.contains(n), "{err:?} should mention {n:?}");
        }
    }
    // A good replacement pool is used, and the vocabulary follows it.
    let files = PoolFiles {
        majors: write_tmp(dir.path(), "m.txt", "Alchemy\nAstrology Studies\n"),
        ..Default::default()
    };
    let bios = BioS::build(
        &BioSConfig {
            people: 10,
            pools: files,
            ..BioSConfig::default()
        },
        0,
    )
    .unwrap();
    assert_eq!(bios.pools.majors.len(), 2);
    assert!(bios.tokenizer.id("Alchemy").is_some());
}
