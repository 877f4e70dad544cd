//! Checkpoints travel between precisions (issue 15): a model trained in bf16-mixed is evaluated, sampled, probed
//! and finetuned in f32, and one trained in f32 is sampled, probed and finetuned in bf16-mixed. The checkpoint is
//! f32 whatever the training precision, so each use starts from the same weights:
//! - evaluation (always f32) of the reloaded checkpoint equals that of the in-memory model exactly;
//! - greedy samples of the reloaded model equal the in-memory model's in the same precision;
//! - a P-probe trains and scores (accuracies in [0, 1]);
//! - a finetune continues the same loss: its first logged loss within 15% of the pretraining's last (both are
//!   means over 10 steps at the end of a falling curve; a checkpoint that did not load starts near ln V ≈ 8,
//!   nearly twice as high).

use physlab_eval::decode::{generate, model_next, Decoding};
use physlab_eval::evaluate_bios;
use physlab_eval::probe::{probe, ProbeConfig, ProbeKind};
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::precision::PrecisionScope;
use physlab_trainer::train::{load_checkpoint, train};
use physlab_trainer::{Cpu, CpuTrain, ModelConfig, Precision, TrainConfig};
use rand::SeedableRng;

fn run(
    bios: &BioS,
    data_dir: &std::path::Path,
    run_dir: &std::path::Path,
    cfg: &TrainConfig,
) -> (physlab_trainer::Gpt<Cpu>, physlab_trainer::TrainOutcome) {
    std::fs::create_dir_all(run_dir).unwrap();
    let ds = Dataset::open(data_dir).unwrap();
    let sources = mixture_sources(&ds, Some(bios)).unwrap();
    let mut windows = mixer(&sources, 3).unwrap();
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 64,
        ..ModelConfig::default()
    }
    .shape(ds.manifest.vocab_size, cfg.context)
    .unwrap();
    train::<CpuTrain>(
        cfg,
        shape,
        &mut windows,
        ds.manifest.tokens_for_exposures(1.0),
        3,
        run_dir,
        &Default::default(),
        false,
    )
    .unwrap()
}

#[test]
fn a_checkpoint_trained_in_one_precision_is_used_in_the_other() {
    let device = Default::default();
    let bios = BioS::build(
        &BioSConfig {
            people: 40,
            ..BioSConfig::default()
        },
        3,
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let manifest = bios.write(&data_dir, |_| {}).unwrap();
    for (trained, used) in [
        (Precision::Bf16Mixed, Precision::F32),
        (Precision::F32, Precision::Bf16Mixed),
    ] {
        let pre_dir = root.path().join(format!("pre-{}", trained.name()));
        let cfg = TrainConfig {
            steps: 150,
            batch_size: 8,
            context: 64,
            lr: 3e-3,
            warmup_steps: 10,
            log_every: 10,
            checkpoint_every: 0,
            precision: trained,
            ..TrainConfig::default()
        };
        let (model, outcome) = run(&bios, &data_dir, &pre_dir, &cfg);
        assert_eq!(outcome.precision, trained);
        let (loaded, shape) = load_checkpoint::<Cpu>(&outcome.checkpoint, &device).unwrap();
        let params = shape.num_params(manifest.used_vocab);
        // Evaluation is f32 whatever the training precision: the same numbers from memory and from the file.
        let eval = evaluate_bios::<Cpu>(&model, &bios, params, 16, &device);
        assert_eq!(
            eval,
            evaluate_bios::<Cpu>(&loaded, &bios, params, 16, &device)
        );
        assert!(eval.bits.is_finite() && eval.loss_value.is_finite());

        let scope = PrecisionScope::enter(used);
        let prompts: Vec<Vec<u32>> = (0..4).map(|p| bios.name_tokens(p)).collect();
        let sample = |m: &physlab_trainer::Gpt<Cpu>| {
            let mut next = model_next(m, cfg.context, &device);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            generate(&mut next, &prompts, 6, &Decoding::Greedy, None, &mut rng)
        };
        let (a, b) = (sample(&model), sample(&loaded));
        assert_eq!(a, b, "{} samples of the reloaded model", used.name());
        assert!(a.iter().all(|s| s.len() == 6));
        let (autodiff, _) = load_checkpoint::<CpuTrain>(&outcome.checkpoint, &device).unwrap();
        let pe = probe(
            autodiff,
            &shape,
            &bios,
            ProbeKind::P,
            &ProbeConfig {
                epochs: 2,
                batch: 8,
                embedding_rank: 4,
                ..ProbeConfig::default()
            },
            &device,
            &mut |_| {},
        );
        assert!(pe
            .targets
            .iter()
            .flat_map(|t| &t.accuracy)
            .all(|a| (0.0..=1.0).contains(a) && a.is_finite()));
        drop(scope);

        let ft = TrainConfig {
            steps: 20,
            warmup_steps: 2,
            init_from: outcome.checkpoint.display().to_string(),
            precision: used,
            ..cfg.clone()
        };
        let (_, fto) = run(
            &bios,
            &data_dir,
            &root.path().join(format!("ft-{}", used.name())),
            &ft,
        );
        assert_eq!(fto.precision, used);
        let rel = (fto.first_loss - outcome.final_loss).abs() / outcome.final_loss;
        eprintln!(
            "trained {} → finetuned {}: pretraining's last loss {:.4}, the finetune's first {:.4} ({:.1}%)",
            trained.name(),
            used.name(),
            outcome.final_loss,
            fto.first_loss,
            100.0 * rel
        );
        assert!(
            rel < 0.15,
            "the finetune did not continue the pretrained loss"
        );
        assert!(fto.final_loss.is_finite());
    }
}
