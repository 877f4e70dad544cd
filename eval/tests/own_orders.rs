//! The evaluation in each person's own training biographies (`evaluate_bios_own_orders`), on a tiny model trained
//! here: for bioS single without permute it is the canonical evaluation exactly (the one training biography *is*
//! the canonical one), and for a permuted multi dataset it is the per-person mean over the person's biographies,
//! recomputed here by hand from `score_biographies` one biography at a time.

use physlab_eval::{evaluate_bios, evaluate_bios_own_orders, score_biographies};
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_generators::people::Attribute;
use physlab_trainer::train::train;
use physlab_trainer::{CpuTrain, ModelConfig, TrainConfig};

const PEOPLE: usize = 30;

#[test]
fn own_orders_equal_the_canonical_evaluation_for_single_and_average_per_person_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let single = BioS::build(
        &BioSConfig {
            people: PEOPLE,
            ..BioSConfig::default()
        },
        1,
    )
    .unwrap();
    let manifest = single.write(&dir.path().join("data"), |_| {}).unwrap();
    let ds = Dataset::open(&dir.path().join("data")).unwrap();
    let sources = mixture_sources(&ds, Some(&single)).unwrap();
    let mut windows = mixer(&sources, 0).unwrap();
    let cfg = TrainConfig {
        steps: 60,
        batch_size: 8,
        context: 96,
        lr: 3e-3,
        warmup_steps: 10,
        log_every: 20,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 64,
        ..ModelConfig::default()
    }
    .shape(manifest.vocab_size, cfg.context)
    .unwrap();
    let device = Default::default();
    let (model, _) = train::<CpuTrain>(
        &cfg,
        shape,
        &mut windows,
        manifest.tokens_for_exposures(1.0),
        0,
        dir.path(),
        &device,
        false,
    )
    .unwrap();
    let params = shape.num_params(manifest.used_vocab);

    // (a) single, no permute: identical to the canonical evaluation (tolerance 1e-9: the same tokens in the same
    // batches, summed in the same order).
    let canonical = evaluate_bios(&model, &single, params, 16, &device);
    let own = evaluate_bios_own_orders(&model, &single, params, 16, &device).expect("not fresh");
    assert_eq!(own.biographies_per_person, 1);
    assert_eq!(own.employer_city_first, 0.0);
    for (what, a, b) in [
        ("p1", own.loss_name, canonical.loss_name),
        ("p2", own.loss_value, canonical.loss_value),
        ("bits", own.bits, canonical.bits),
    ] {
        assert!((a - b).abs() < 1e-9, "{what}: own {a} vs canonical {b}");
    }
    assert_eq!(own, canonical);
    assert!(canonical.loss_value > 0.0 && canonical.loss_name > 0.0);

    // multi2 + permute2 of the same people (same pools, same vocabulary): 4 biographies per person, scored in
    // batches of 7 (so batches cut through people); p1/p2 are the per-person means of what one biography at a
    // time gives (tolerance 1e-4: padding to another width may change float sums in the last digits).
    let permuted = BioS::build(
        &BioSConfig {
            people: PEOPLE,
            multi: 2,
            permute: true,
            permutations: 2,
            ..BioSConfig::default()
        },
        1,
    )
    .unwrap();
    assert_eq!(
        permuted.tokenizer.vocab_size(),
        single.tokenizer.vocab_size()
    );
    let own = evaluate_bios_own_orders(&model, &permuted, params, 7, &device).expect("not fresh");
    assert_eq!(own.biographies_per_person, 4);
    let (mut p1, mut p2, mut city_first) = (0.0, 0.0, 0usize);
    let mut whole_employer = 0usize;
    for p in 0..PEOPLE {
        let (mut name, mut value) = (0.0, 0.0);
        for k in 0..4 {
            let bio = permuted.render_training(p, k);
            let s = score_biographies(&model, std::slice::from_ref(&bio), &device)[0];
            name += s.name.loss;
            value += Attribute::ALL
                .iter()
                .filter(|a| a.counted_in_bits())
                .map(|&a| s.counted_loss(a))
                .sum::<f64>()
                + s.pronoun.map_or(0.0, |x| x.loss);
            city_first += s.city_before_employer as usize;
            whole_employer += s.values[Attribute::Employer.index()].whole_hit as usize;
        }
        p1 += name / 4.0;
        p2 += value / 4.0;
    }
    p1 /= PEOPLE as f64;
    p2 /= PEOPLE as f64;
    assert!(
        (own.loss_name - p1).abs() < 1e-4,
        "p1 {} vs {p1}",
        own.loss_name
    );
    assert!(
        (own.loss_value - p2).abs() < 1e-4,
        "p2 {} vs {p2}",
        own.loss_value
    );
    assert!(city_first > 0, "some biographies put the city first");
    assert!((own.employer_city_first - city_first as f64 / (4 * PEOPLE) as f64).abs() < 1e-12);
    let employer = own
        .attributes
        .iter()
        .find(|a| a.attribute == Attribute::Employer.name())
        .unwrap();
    assert!(
        (employer.whole_value_accuracy - whole_employer as f64 / (4 * PEOPLE) as f64).abs() < 1e-12
    );
    // The canonical figure of the permuted dataset is another number (one biography, canonical order).
    let canonical = evaluate_bios(&model, &permuted, params, 16, &device);
    assert!((canonical.loss_value - own.loss_value).abs() > 1e-6);

    // fresh: no fixed biographies of one's own.
    let fresh = BioS::build(
        &BioSConfig {
            people: PEOPLE,
            fresh: true,
            ..BioSConfig::default()
        },
        1,
    )
    .unwrap();
    assert!(evaluate_bios_own_orders(&model, &fresh, params, 16, &device).is_none());
}
