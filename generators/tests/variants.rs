//! bioS variants, question streams, populations and mixtures: structure, exact answers, shares, determinism.

use std::collections::HashSet;

use physlab_generators::bios::{BioS, BioSConfig, CelebrityConfig, JunkConfig, DOMAIN_TOKEN};
use physlab_generators::corpus::{mixer, mixture_sources, write_corpus, Corpus, Dataset};
use physlab_generators::people::Attribute;
use physlab_generators::tasks::{
    Compare, Field, HintForm, NameAnswer, QaConfig, QaPopulation, TaskConfig, TaskKind,
};

fn stream_index(b: &BioS, name: &str) -> usize {
    b.streams()
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stream {name}"))
}

fn tasks() -> Vec<TaskConfig> {
    vec![
        TaskConfig {
            name: "parity".into(),
            task: TaskKind::Classification,
            fields: vec![Field::BirthMonth],
            modulus: 2,
            hint: HintForm::Both,
            ..TaskConfig::default()
        },
        TaskConfig {
            name: "score20".into(),
            task: TaskKind::Classification,
            fields: vec![Field::MajorScore],
            modulus: 20,
            ..TaskConfig::default()
        },
        TaskConfig {
            name: "rank".into(),
            task: TaskKind::Comparison,
            fields: vec![Field::BirthMonth],
            compare: Compare::Rank,
            per_person: 2,
            ..TaskConfig::default()
        },
        TaskConfig {
            name: "diff".into(),
            task: TaskKind::Comparison,
            fields: vec![Field::BirthYear],
            compare: Compare::Difference,
            hint: HintForm::Hint,
            ..TaskConfig::default()
        },
        TaskConfig {
            name: "dual".into(),
            task: TaskKind::Retrieval,
            fields: vec![Field::BirthCity, Field::Employer],
            ..TaskConfig::default()
        },
        TaskConfig {
            name: "inverse".into(),
            task: TaskKind::Inverse,
            fields: vec![Field::BirthDate, Field::University],
            answer: NameAnswer::First,
            ..TaskConfig::default()
        },
    ]
}

fn rich(people: usize) -> BioSConfig {
    BioSConfig {
        people,
        multi: 2,
        permute: true,
        qa: QaConfig {
            enabled: true,
            train_fraction: 0.5,
            mix_ratio: 0.2,
            ..QaConfig::default()
        },
        tasks: tasks(),
        celebrity: CelebrityConfig {
            people: 100,
            share: 0.3,
            ..CelebrityConfig::default()
        },
        ..BioSConfig::default()
    }
}

/// Same seed → same bytes whatever the thread count and the shard size: the dataset hash covers blocks of 256
/// documents, not shards. The hash is also pinned (a golden value): a change that alters what the generator
/// writes shows here, and the value is updated deliberately (`cargo test -p physlab-generators --test variants
/// -- --nocapture` prints it).
#[test]
fn same_bytes_whatever_threads_and_shard_size_and_a_golden_hash() {
    let data = BioS::build(&rich(600), 21).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let m1 = one.install(|| write_corpus(&data, dirs[0].path(), 256, |_| {}).unwrap());
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let m2 = two.install(|| write_corpus(&data, dirs[1].path(), 1024, |_| {}).unwrap());
    assert_eq!(m1.dataset_hash, m2.dataset_hash);
    assert!(m1.streams[0].shards.len() > m2.streams[0].shards.len());
    let (d1, d2) = (
        Dataset::open(dirs[0].path()).unwrap(),
        Dataset::open(dirs[1].path()).unwrap(),
    );
    for s in &m1.streams {
        let (a, b) = (d1.load(&s.name).unwrap(), d2.load(&s.name).unwrap());
        assert_eq!(a.tokens, b.tokens, "{}", s.name);
        assert_eq!(a.offsets, b.offsets, "{}", s.name);
        assert_eq!(a.prompts, b.prompts, "{}", s.name);
    }
    let other = write_corpus(
        &BioS::build(&rich(600), 22).unwrap(),
        dirs[2].path(),
        256,
        |_| {},
    )
    .unwrap();
    assert_ne!(other.dataset_hash, m1.dataset_hash);
    println!("golden dataset_hash: {}", m1.dataset_hash);
    assert_eq!(
        m1.dataset_hash, GOLDEN_RICH_600_SEED_21,
        "the generator's output changed; if that is intended, update GOLDEN_RICH_600_SEED_21"
    );
}

const GOLDEN_RICH_600_SEED_21: &str =
    "d5c67384dda1936e569900f59695f395488085c0ef13ca7044b8d126d788c2e7";

#[test]
fn qa_answers_are_the_ground_truth_and_the_split_is_disjoint() {
    let data = BioS::build(&rich(300), 3).unwrap();
    let n_train = data.n_train_people();
    assert_eq!(n_train, 150);
    let (tr, te) = (
        stream_index(&data, "qa_train"),
        stream_index(&data, "qa_test"),
    );
    let specs = data.streams();
    assert_eq!(specs[tr].documents, 150 * 6);
    assert_eq!(specs[te].documents, 150 * 6);
    let mut seen_train = HashSet::new();
    let mut seen_test = HashSet::new();
    for (s, people, seen) in [
        (tr, 0..150, &mut seen_train),
        (te, 150..300, &mut seen_test),
    ] {
        for (k, person) in people.enumerate() {
            let name = data.tokenizer.decode(&data.name_tokens(person));
            for a in Attribute::ALL {
                let (prompt, answer) = data.question_text(s, (k * 6 + a.index()) as u64);
                assert!(prompt.contains(&name), "{prompt}");
                assert!(prompt.ends_with("Answer :"), "{prompt}");
                let truth = data.person(person).value(a, &data.pools);
                assert_eq!(answer, format!("{truth} ."));
                seen.insert(name.clone());
            }
        }
    }
    assert!(seen_train.is_disjoint(&seen_test));
    assert_eq!(seen_train.len() + seen_test.len(), 300);
}

/// Part 3.1 §6: with `qa.train_population = "celebrity"`, `qa_train` asks about every celebrity and `qa_test`
/// about every person of the main (minority) population, with the true answers; the tasks keep the main split.
#[test]
fn celebrity_qa_trains_on_the_celebrities_and_tests_the_minority() {
    let mut c = BioSConfig {
        people: 40,
        permute: true,
        qa: QaConfig {
            enabled: true,
            train_population: QaPopulation::Celebrity,
            ..QaConfig::default()
        },
        celebrity: CelebrityConfig {
            people: 30,
            ..CelebrityConfig::default()
        },
        ..BioSConfig::default()
    };
    let data = BioS::build(&c, 5).unwrap();
    let (tr, te) = (
        stream_index(&data, "qa_train"),
        stream_index(&data, "qa_test"),
    );
    let specs = data.streams();
    assert_eq!(specs[tr].documents, 30 * 6);
    assert_eq!(specs[te].documents, 40 * 6);
    for (s, people) in [(tr, 40..70), (te, 0..40)] {
        for (k, person) in people.enumerate() {
            let name = data.tokenizer.decode(&data.name_tokens(person));
            for a in Attribute::ALL {
                let (prompt, answer) = data.question_text(s, (k * 6 + a.index()) as u64);
                assert!(prompt.contains(&name), "{prompt} should ask about {name}");
                let truth = data.person(person).value(a, &data.pools);
                assert_eq!(answer, format!("{truth} ."));
            }
        }
    }
    // Without celebrities the setting is refused, naming the keys.
    c.celebrity.people = 0;
    let err = match BioS::build(&c, 5) {
        Ok(_) => panic!("a celebrity QA without celebrities was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("data.qa.train_population") && err.contains("data.celebrity.people"),
        "{err}"
    );
}

fn number(s: &str) -> i64 {
    s.trim_end_matches(" .")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn task_answers_are_exact() {
    let data = BioS::build(&rich(400), 5).unwrap();
    let pools = &data.pools;
    let names: Vec<String> = (0..400).map(|i| data.person(i).full_name(pools)).collect();
    let by_name = |n: &str| names.iter().position(|x| x == n).unwrap();
    // parity: both forms for each person, answer = month mod 2, the hint states the birth date first.
    let s = stream_index(&data, "parity_train");
    for k in 0..200u64 {
        let person = (k / 2) as usize;
        let p = data.person(person);
        let (prompt, answer) = data.question_text(s, k);
        let hint = k % 2 == 1;
        assert!(prompt.starts_with(if hint { "<hint>" } else { "<direct>" }));
        assert_eq!(
            number(&answer),
            (p.birth_month as i64 + 1) % 2,
            "{prompt} {answer}"
        );
        if hint {
            assert!(answer.starts_with(&p.value(Attribute::BirthDate, pools)));
        }
    }
    // Major score mod 20: the score is a fixed function of the major.
    let s = stream_index(&data, "score20_test");
    let mut score_of_major = std::collections::HashMap::new();
    for k in 0..200u64 {
        let p = data.person(200 + k as usize);
        let (_, answer) = data.question_text(s, k);
        let prev = score_of_major.insert(p.major, number(&answer));
        assert!(prev.is_none() || prev == Some(number(&answer)));
        assert!((0..20).contains(&number(&answer)));
    }
    // rank: two partners per person, from the same split, with a different month; Yes iff earlier.
    let s = stream_index(&data, "rank_train");
    for k in 0..400u64 {
        let (prompt, answer) = data.question_text(s, k);
        let body = prompt.trim_start_matches("<direct> Is the birth month of ");
        let (a, rest) = body.split_once(" smaller than that of ").unwrap();
        let b = rest.trim_end_matches(" ? Answer :");
        let (ia, ib) = (by_name(a), by_name(b));
        assert_eq!(ia, (k / 2) as usize);
        assert!(ib < 200 && ib != ia, "partner from P_train");
        let (ma, mb) = (data.person(ia).birth_month, data.person(ib).birth_month);
        assert_ne!(ma, mb);
        assert_eq!(answer, if ma < mb { "Yes ." } else { "No ." });
    }
    // difference of birth years, hinted.
    let s = stream_index(&data, "diff_test");
    for k in 0..200u64 {
        let (prompt, answer) = data.question_text(s, k);
        let body = prompt.trim_start_matches("<hint> What is the birth year of ");
        let (a, rest) = body.split_once(" minus that of ").unwrap();
        let b = rest.trim_end_matches(" ? Answer :");
        let (pa, pb) = (data.person(by_name(a)), data.person(by_name(b)));
        assert_eq!(number(&answer), pa.birth_year as i64 - pb.birth_year as i64);
        assert!(answer.contains(" ; "), "hinted: {answer}");
    }
    // dual retrieval.
    let s = stream_index(&data, "dual_train");
    for k in 0..200u64 {
        let p = data.person(k as usize);
        let (_, answer) = data.question_text(s, k);
        assert_eq!(
            answer,
            format!(
                "{} ; {} .",
                p.value(Attribute::BirthCity, pools),
                p.value(Attribute::Employer, pools)
            )
        );
    }
    // inverse search: the first name.
    let s = stream_index(&data, "inverse_test");
    for k in 0..200u64 {
        let p = data.person(200 + k as usize);
        let (prompt, answer) = data.question_text(s, k);
        assert!(prompt.contains(&p.value(Attribute::BirthDate, pools)));
        assert!(prompt.contains(&p.value(Attribute::University, pools)));
        assert_eq!(answer, format!("{} .", pools.first_names[p.first as usize]));
    }
}

/// Inverse search by the major alone cannot name 400 people from 100 majors: the manifest counts the people
/// whose question has more than one right answer, exactly (checked against brute force over pairs). By birth
/// date and university almost none share (C(400, 2) pairs over 67,200 · 300 combinations: 0.004 pairs expected).
#[test]
fn the_manifest_counts_ambiguous_inverse_questions() {
    let mk = |fields: Vec<Field>| BioSConfig {
        people: 400,
        tasks: vec![TaskConfig {
            name: "inv".into(),
            task: TaskKind::Inverse,
            fields,
            ..TaskConfig::default()
        }],
        ..BioSConfig::default()
    };
    let count = |cfg: BioSConfig| -> (usize, usize) {
        let data = BioS::build(&cfg, 9).unwrap();
        let a = data.inverse_ambiguity()["inv"].as_u64().unwrap() as usize;
        // Brute force over pairs.
        let people = data.people(400);
        let cfg_fields = &cfg.tasks[0].fields;
        let same = |i: usize, j: usize| {
            cfg_fields.iter().all(|f| {
                let at = match f {
                    Field::Major => Attribute::Major,
                    Field::BirthDate => Attribute::BirthDate,
                    Field::University => Attribute::University,
                    _ => unreachable!(),
                };
                people[i].value(at, &data.pools) == people[j].value(at, &data.pools)
            })
        };
        let brute = (0..400)
            .filter(|&i| (0..400).any(|j| j != i && same(i, j)))
            .count();
        (a, brute)
    };
    let (a, brute) = count(mk(vec![Field::Major]));
    assert_eq!(a, brute);
    // A person is alone in their major with probability 0.99^399 = 0.018: 7.3 of 400 expected (std ≈ 2.7), so
    // ambiguous people number 400 − 7.3 ± 2.7; six std below is 376.
    assert!(a > 376, "{a}");
    let (a, brute) = count(mk(vec![Field::BirthDate, Field::University]));
    assert_eq!(a, brute);
    assert!(a < 5, "{a}");
}

/// The paper's augmentation grid (single / multi2 / multi5 × no permutation / permute1 / permute5 × pronoun /
/// fullname): every document of the bio stream opens with the person's full name, holds every value at its
/// span, shows the pronoun exactly when `fullname` is off, and the stream holds N · multi · P documents.
#[test]
fn every_augmentation_combination_keeps_the_name_first_and_the_values_at_their_spans() {
    for multi in [1usize, 2, 5] {
        for (permute, permutations) in [(false, 1usize), (true, 1), (true, 5)] {
            for fullname in [false, true] {
                let cfg = BioSConfig {
                    people: 40,
                    multi,
                    permute,
                    permutations,
                    fullname,
                    ..BioSConfig::default()
                };
                let data = BioS::build(&cfg, 13).unwrap();
                let what =
                    format!("multi{multi} permute{permute}/{permutations} fullname {fullname}");
                assert_eq!(
                    data.streams()[0].documents,
                    (40 * multi * permutations) as u64,
                    "{what}"
                );
                for person in 0..40 {
                    let name = data.name_tokens(person);
                    for entry in 0..multi {
                        for k in 0..permutations {
                            let b = data.render_variant(person, entry, k);
                            assert_eq!(&b.tokens[..3], name.as_slice(), "{what}");
                            for a in Attribute::ALL {
                                let s = b.values[a.index()];
                                assert_eq!(
                                    &b.tokens[s.start..s.start + s.len],
                                    data.value_tokens(person, a).as_slice(),
                                    "{what}"
                                );
                            }
                            assert_eq!(b.pronoun.is_none(), fullname, "{what}");
                            let names = b
                                .tokens
                                .windows(3)
                                .filter(|w| *w == name.as_slice())
                                .count();
                            assert_eq!(names, if fullname { 6 } else { 1 }, "{what}");
                            assert!(b.order == [0, 1, 2, 3, 4, 5] || permute, "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn permute_p_gives_p_orders_of_one_set_of_templates() {
    let cfg = BioSConfig {
        people: 50,
        multi: 2,
        permute: true,
        permutations: 4,
        ..BioSConfig::default()
    };
    let data = BioS::build(&cfg, 1).unwrap();
    assert_eq!(data.streams()[0].documents, 50 * 2 * 4);
    let mut distinct_orders = 0;
    for person in 0..50 {
        for entry in 0..2 {
            let docs: Vec<_> = (0..4)
                .map(|k| data.render_variant(person, entry, k))
                .collect();
            // Same templates: the same multiset of tokens, the same name first.
            let mut sorted: Vec<Vec<u32>> = docs
                .iter()
                .map(|d| {
                    let mut t = d.tokens.clone();
                    t.sort();
                    t
                })
                .collect();
            sorted.dedup();
            assert_eq!(sorted.len(), 1, "one set of templates per entry");
            assert!(docs.iter().all(|d| d.name.start == 0));
            let orders: HashSet<_> = docs.iter().map(|d| d.order).collect();
            distinct_orders += orders.len();
        }
        // Entries re-draw templates.
        assert_ne!(
            data.render_variant(person, 0, 0).tokens,
            data.render_variant(person, 1, 0).tokens
        );
    }
    // 100 entries × 4 shuffles of 720 orders: nearly all distinct.
    assert!(distinct_orders > 380, "{distinct_orders}");
    // The stream holds exactly these documents, entry-major then permutation.
    let mut out = Vec::new();
    Corpus::render(&data, 0, 2 * 4 + 4 + 3, &mut out);
    assert_eq!(out, data.render_variant(1, 1, 3).tokens);
}

#[test]
fn reverse_variants_name_the_person_in_a_later_sentence() {
    for k in [1usize, 5] {
        let cfg = BioSConfig {
            people: 100,
            name_sentence: k,
            ..BioSConfig::default()
        };
        let data = BioS::build(&cfg, 2).unwrap();
        for person in 0..100 {
            let b = data.render(person, 0);
            let name = data.name_tokens(person);
            assert!(b.name.start > 0);
            assert_eq!(&b.tokens[b.name.start..b.name.start + 3], name.as_slice());
            assert_eq!(b.pronoun, Some(0), "the biography opens with the pronoun");
            // Every value before the name's sentence comes before the name.
            let before = b.order[..k]
                .iter()
                .filter(|&&a| b.values[a].start < b.name.start)
                .count();
            assert_eq!(before, k);
            // The name appears exactly once.
            let hits = b
                .tokens
                .windows(3)
                .filter(|w| *w == name.as_slice())
                .count();
            assert_eq!(hits, 1);
            // Evaluation keeps the name first.
            assert_eq!(data.render_eval(person).name.start, 0);
        }
    }
}

#[test]
fn fresh_biographies_differ_at_every_emission_and_are_not_stored() {
    let cfg = BioSConfig {
        people: 200,
        fresh: true,
        ..BioSConfig::default()
    };
    let data = BioS::build(&cfg, 4).unwrap();
    let spec = &data.streams()[0];
    assert!(!spec.materialized);
    assert_eq!(spec.documents, 200);
    let mut same = 0;
    for p in 0..200u64 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Corpus::render(&data, 0, p, &mut a);
        Corpus::render(&data, 0, p + 200, &mut b);
        let name = data.name_tokens(p as usize);
        assert_eq!(&a[..3], name.as_slice());
        assert_eq!(&b[..3], name.as_slice());
        same += (a == b) as usize;
    }
    assert_eq!(same, 0, "a fresh emission re-draws templates and order");
    let dir = tempfile::tempdir().unwrap();
    let m = data.write(dir.path(), |_| {}).unwrap();
    assert!(m.streams[0].shards.is_empty());
    // The tokens used (embedding rows counted for capacity) are measured on a pass of generated biographies:
    // the same words as a stored single-biography dataset of these people uses, at least.
    let stored = BioS::build(
        &BioSConfig {
            fresh: false,
            ..cfg.clone()
        },
        4,
    )
    .unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let sm = stored.write(sdir.path(), |_| {}).unwrap();
    assert!(
        m.used_vocab >= sm.used_vocab * 9 / 10 && m.used_vocab > 1000,
        "fresh {} vs stored {}",
        m.used_vocab,
        sm.used_vocab
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tok")));
    // Training windows still come: rendered on the fly.
    let ds = Dataset::open(dir.path()).unwrap();
    let sources = mixture_sources(&ds, Some(&data)).unwrap();
    let mut w = mixer(&sources, 0).unwrap();
    let (x, _) = w.next_batch(4, 64);
    assert_eq!(x.len(), 256);
}

/// Junk takes 7/8 of the windows: the observed share of 20,000 windows is within 6 binomial standard
/// deviations (6·sqrt(p(1−p)/n) = 0.014) of 0.875. The domain token opens every useful biography and no junk
/// one; junk people are none of the useful ones.
#[test]
fn junk_windows_take_their_share_and_the_domain_token_marks_useful_data() {
    let cfg = BioSConfig {
        people: 500,
        junk: JunkConfig {
            people: 100_000_000,
            share: 0.875,
            domain_token: true,
        },
        ..BioSConfig::default()
    };
    let data = BioS::build(&cfg, 6).unwrap();
    let dom = data.tokenizer.id(DOMAIN_TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = data.write(dir.path(), |_| {}).unwrap();
    assert_eq!(m.mixture.len(), 2);
    let ds = Dataset::open(dir.path()).unwrap();
    let bio = ds.load("bio").unwrap();
    assert!((0..bio.documents()).all(|i| bio.document(i)[0] == dom));
    let junk = stream_index(&data, "junk");
    let useful: HashSet<Vec<u32>> = (0..500).map(|i| data.name_tokens(i)).collect();
    for d in [0u64, 1, 99_999_999, 100_000_000, 5_000_000_123] {
        let mut out = Vec::new();
        Corpus::render(&data, junk, d, &mut out);
        assert_ne!(out[0], dom);
        assert!(!useful.contains(&out[..3]));
    }
    let sources = mixture_sources(&ds, Some(&data)).unwrap();
    let mut w = mixer(&sources, 1).unwrap();
    let n = 20_000;
    for _ in 0..n {
        w.next_window(65);
    }
    let share = w.per_source[1] as f64 / n as f64;
    assert!((share - 0.875).abs() < 0.014, "junk share {share}");
    // An exposure budget counts only the useful share: E exposures = E · N · tokens/bio / (1/8) tokens.
    let e = m.tokens_for_exposures(1.0);
    assert!((e - m.exposure.tokens * 8.0).abs() < 1e-6 * e);
}

/// Every window of the mixture comes whole from one source, so a window never mixes QA and biographies.
#[test]
fn mixed_training_windows_are_all_one_kind() {
    let data = BioS::build(&rich(200), 8).unwrap();
    let dir = tempfile::tempdir().unwrap();
    data.write(dir.path(), |_| {}).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let answer = data.tokenizer.id("Answer").unwrap();
    let sources = mixture_sources(&ds, Some(&data)).unwrap();
    assert_eq!(
        ds.manifest
            .mixture
            .iter()
            .map(|m| m.stream.as_str())
            .collect::<Vec<_>>(),
        ["bio", "qa_train", "celebrity"]
    );
    let mut w = mixer(&sources, 2).unwrap();
    let mut qa_windows = 0;
    for _ in 0..3000 {
        let before = w.per_source.clone();
        let win = w.next_window(129);
        let has_answer = win.contains(&answer);
        if w.per_source[1] > before[1] {
            qa_windows += 1;
            assert!(has_answer, "a QA window holds questions");
        } else {
            assert!(!has_answer, "a biography window holds no question");
        }
    }
    // 0.2 of 3000 windows, within 6 binomial std (6·sqrt(0.16/3000) = 0.044).
    let share = qa_windows as f64 / 3000.0;
    assert!((share - 0.2).abs() < 0.044, "{share}");
    // Celebrities are other people than the main population.
    let main: HashSet<Vec<u32>> = (0..200).map(|i| data.name_tokens(i)).collect();
    let cel = ds.load("celebrity").unwrap();
    assert_eq!(cel.documents(), 100 * 5);
    assert!((0..cel.documents()).all(|i| !main.contains(&cel.document(i)[..3])));
}

#[test]
fn bad_configs_report_every_problem() {
    let cfg = BioSConfig {
        people: 0,
        permutations: 3,
        name_sentence: 6,
        shard_biographies: 1000,
        qa: QaConfig {
            enabled: false,
            train_fraction: 1.5,
            mix_ratio: 0.3,
            ..QaConfig::default()
        },
        tasks: vec![
            TaskConfig {
                name: "bad name".into(),
                task: TaskKind::Classification,
                fields: vec![Field::University],
                modulus: 1,
                ..TaskConfig::default()
            },
            TaskConfig {
                name: "inv".into(),
                task: TaskKind::Inverse,
                fields: vec![Field::BirthYear],
                hint: HintForm::Both,
                ..TaskConfig::default()
            },
        ],
        ..BioSConfig::default()
    };
    let p = cfg.problems().join("\n");
    for needle in [
        "data.people",
        "data.permutations",
        "data.name_sentence",
        "data.shard_biographies",
        "data.qa.train_fraction",
        "data.qa.mix_ratio",
        "data.tasks[0].name",
        "data.tasks[0].fields",
        "data.tasks[0].modulus",
        "data.tasks[1].fields",
        "data.tasks[1].hint",
    ] {
        assert!(p.contains(needle), "missing {needle} in:\n{p}");
    }
    let err = BioS::build(&cfg, 0).err().unwrap().to_string();
    assert!(err.contains("data.people") && err.contains("data.tasks[1].hint"));
}

/// Training on answers only: in QA windows the targets inside a prompt weigh 0 and the answer's tokens, its `.`
/// and the `<eot>` after it weigh 1; biography windows weigh 1 everywhere.
#[test]
fn answer_masks_cover_exactly_the_answers() {
    let data = BioS::build(&rich(100), 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    data.write(dir.path(), |_| {}).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let names = vec!["qa_train".to_string(), "bio".to_string()];
    let sources = physlab_generators::corpus::named_sources(&ds, Some(&data), &names).unwrap();
    let mut w = mixer(&sources, 3).unwrap();
    let id = |s: &str| data.tokenizer.id(s).unwrap() as i32;
    let (answer, colon, dot) = (id("Answer"), id(":"), id("."));
    let (mut answers_seen, mut prompts_seen) = (0, 0);
    for _ in 0..50 {
        let before = w.per_source.clone();
        let (x, y, m) = w.next_batch_masked(1, 96);
        let qa = w.per_source[0] > before[0];
        for k in 0..96 {
            if !qa {
                assert_eq!(m[k], 1.0, "biographies count everywhere");
                continue;
            }
            if y[k] == answer {
                assert_eq!(m[k], 0.0, "the prompt is not a target");
                prompts_seen += 1;
            }
            // The first answer token follows `Answer :`.
            if k >= 1 && x[k] == colon && x[k - 1] == answer {
                assert_eq!(m[k], 1.0, "the answer is a target");
                answers_seen += 1;
            }
            if y[k] == 0 {
                assert_eq!(m[k], 1.0, "<eot> after an answer is a target");
                assert_eq!(x[k], dot, "an answer ends with `.`");
            }
        }
    }
    assert!(
        answers_seen > 20 && prompts_seen > 20,
        "{answers_seen} {prompts_seen}"
    );
}

/// Part 3.1's mixed training at QA_r = 0.8 (SPEC §5a rows 9–13): 80% of the windows are P_train's questions and
/// 20% biographies, each window all one kind, and an exposure budget counts only the biographies' share (E
/// exposures = E · N · tokens per biography / 0.2 training tokens).
#[test]
fn qa_r_0_8_gives_four_fifths_of_the_windows_to_questions() {
    let cfg = BioSConfig {
        people: 300,
        qa: QaConfig {
            enabled: true,
            train_fraction: 0.5,
            mix_ratio: 0.8,
            ..QaConfig::default()
        },
        ..BioSConfig::default()
    };
    let data = BioS::build(&cfg, 11).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = data.write(dir.path(), |_| {}).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let answer = data.tokenizer.id("Answer").unwrap();
    let sources = mixture_sources(&ds, Some(&data)).unwrap();
    let mut w = mixer(&sources, 4).unwrap();
    let n = 20_000;
    let mut qa_windows = 0;
    for _ in 0..n {
        let before = w.per_source.clone();
        let win = w.next_window(129);
        let qa = w.per_source[1] > before[1];
        qa_windows += qa as usize;
        assert_eq!(
            win.contains(&answer),
            qa,
            "a window is all questions or all biographies"
        );
    }
    // Tolerance: 5 binomial standard deviations, 5·sqrt(0.8·0.2/20000) = 0.0141.
    let share = qa_windows as f64 / n as f64;
    assert!((share - 0.8).abs() < 0.0141, "QA share of windows {share}");
    let e = m.tokens_for_exposures(1.0);
    assert!(
        (e - m.exposure.tokens / 0.2).abs() < 1e-6 * e,
        "{e} vs {}",
        m.exposure.tokens
    );
}

/// `render_training(person, k)` is the stored training document `person · multi · permutations + k` of the `bio`
/// stream, token for token (rendered directly and read back from the written shards), with spans that point at
/// the person's name and values; checked for single, multi5, multi5+permute, single+permute5 and a reverse
/// variant with a domain token.
#[test]
fn render_training_is_the_stored_training_document() {
    let base = BioSConfig {
        people: 30,
        shard_biographies: 256,
        ..BioSConfig::default()
    };
    let cases = [
        ("single", base.clone()),
        (
            "multi5",
            BioSConfig {
                multi: 5,
                ..base.clone()
            },
        ),
        (
            "multi5+permute",
            BioSConfig {
                multi: 5,
                permute: true,
                ..base.clone()
            },
        ),
        (
            "single+permute5",
            BioSConfig {
                permute: true,
                permutations: 5,
                ..base.clone()
            },
        ),
        (
            "multi2+permute3, name in sentence 2, domain token",
            BioSConfig {
                multi: 2,
                permute: true,
                permutations: 3,
                name_sentence: 2,
                junk: JunkConfig {
                    people: 100,
                    share: 0.5,
                    domain_token: true,
                },
                ..base.clone()
            },
        ),
    ];
    for (what, cfg) in cases {
        let data = BioS::build(&cfg, 21).unwrap();
        let dir = tempfile::tempdir().unwrap();
        data.write(dir.path(), |_| {}).unwrap();
        let stored = Dataset::open(dir.path()).unwrap().load("bio").unwrap();
        let pp = cfg.per_person();
        assert_eq!(stored.documents(), 30 * pp, "{what}");
        let mut orders = HashSet::new();
        for person in 0..30 {
            let name = data.name_tokens(person);
            for k in 0..pp {
                let doc = person * pp + k;
                let b = data.render_training(person, k);
                let mut direct = Vec::new();
                Corpus::render(&data, 0, doc as u64, &mut direct);
                assert_eq!(b.tokens, direct, "{what}: person {person}, k {k}");
                assert_eq!(
                    b.tokens.as_slice(),
                    stored.document(doc),
                    "{what}: doc {doc}"
                );
                assert_eq!(data.document_person(0, doc as u64), Some(person as u64));
                assert_eq!(
                    &b.tokens[b.name.start..b.name.start + 3],
                    name.as_slice(),
                    "{what}"
                );
                for a in Attribute::ALL {
                    let s = b.values[a.index()];
                    assert_eq!(
                        &b.tokens[s.start..s.start + s.len],
                        data.value_tokens(person, a).as_slice(),
                        "{what}"
                    );
                }
                orders.insert(b.order);
            }
        }
        // The orders are the training ones: canonical without permute, shuffled with it.
        assert_eq!(
            orders.len() == 1,
            !cfg.permute,
            "{what}: {} orders",
            orders.len()
        );
    }
}

/// `qa.train_fraction` moves people between P_train and P_test and nothing else: the biographies and the vocabulary
/// are the same bytes at 0.5 and 0.8, so a finetune at one fraction may start from a pretraining at the other
/// (extraction-inverse-cpu finetunes at 0.8 from extraction-pretrain-cpu's 0.5), while the question streams follow
/// the split (P_train 300 → 480 of 600 people).
#[test]
fn the_train_fraction_changes_the_split_not_the_biographies() {
    let config = |fraction: f64| BioSConfig {
        qa: QaConfig {
            enabled: true,
            train_fraction: fraction,
            ..QaConfig::default()
        },
        ..rich(600)
    };
    let (half, most) = (
        BioS::build(&config(0.5), 21).unwrap(),
        BioS::build(&config(0.8), 21).unwrap(),
    );
    assert_eq!(half.tokenizer, most.tokenizer);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let m_half = write_corpus(&half, dirs[0].path(), 256, |_| {}).unwrap();
    let m_most = write_corpus(&most, dirs[1].path(), 256, |_| {}).unwrap();
    let stream = |m: &physlab_generators::corpus::Manifest, name: &str| {
        m.streams
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stream {name}"))
            .clone()
    };
    assert_eq!(stream(&m_half, "bio"), stream(&m_most, "bio"));
    assert_ne!(m_half.dataset_hash, m_most.dataset_hash);
    // Six questions a person: P_train's questions follow the fraction.
    assert_eq!(stream(&m_half, "qa_train").documents, 6 * 300);
    assert_eq!(stream(&m_most, "qa_train").documents, 6 * 480);
    assert_eq!(stream(&m_most, "qa_test").documents, 6 * 120);
}
