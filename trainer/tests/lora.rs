//! LoRA: adapters start as the identity update, only they train, and their parameter count is what the shape says.

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::burn::module::{Module, ModuleVisitor, Param};
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::lora::LoraShape;
use physlab_trainer::train::{load_checkpoint, train};
use physlab_trainer::{Cpu, CpuTrain, GptShape, ModelConfig, TrainConfig};

fn base_shape(vocab: usize) -> GptShape {
    ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 32,
        ..ModelConfig::default()
    }
    .shape(vocab, 64)
    .unwrap()
}

#[test]
fn fresh_adapters_leave_the_model_unchanged_and_count_as_declared() {
    let device = Default::default();
    let shape = base_shape(80);
    let base = shape.init::<Cpu>(&device);
    let lora = GptShape {
        lora: LoraShape {
            qv_rank: 4,
            embedding_rank: 8,
            alpha: 0.0,
        },
        ..shape
    };
    let n_base = base.num_params();
    let x = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new((0..32).map(|i| i % 80).collect::<Vec<i32>>(), [1, 32]),
        &device,
    );
    let before: Vec<f32> = base.forward(x.clone()).into_data().iter::<f32>().collect();
    let adapted = base.with_lora(&lora, &device);
    let after: Vec<f32> = adapted.forward(x).into_data().iter::<f32>().collect();
    assert_eq!(
        before, after,
        "B = 0 (A = 0 for the embedding): the update starts at zero"
    );
    // q and v of 1 layer: 2 · (32·4 + 4·32) = 512; embedding: 8 · (80 + 32) = 896.
    assert_eq!(lora.lora_params(), 512 + 896);
    assert_eq!(adapted.num_params(), n_base + 1408);
}

struct Collect(Vec<Vec<f32>>);
impl ModuleVisitor<Cpu> for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Cpu, D>>) {
        self.0.push(p.val().into_data().iter::<f32>().collect());
    }
}

/// Pretrain 40 steps, then finetune 40 steps with LoRA: the pretrained weights come back bit for bit from the
/// finetuned checkpoint, the adapters moved, and the finetuning loss fell.
#[test]
fn lora_finetuning_trains_the_adapters_only() {
    let dir = tempfile::tempdir().unwrap();
    let bios = BioS::build(
        &BioSConfig {
            people: 40,
            ..BioSConfig::default()
        },
        3,
    )
    .unwrap();
    let manifest = bios.write(&dir.path().join("data"), |_| {}).unwrap();
    let ds = Dataset::open(&dir.path().join("data")).unwrap();
    let sources = mixture_sources(&ds, Some(&bios)).unwrap();
    let shape = base_shape(manifest.vocab_size);
    let device = Default::default();
    let pre = TrainConfig {
        steps: 40,
        batch_size: 4,
        context: 64,
        lr: 3e-3,
        warmup_steps: 4,
        log_every: 10,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let pre_dir = dir.path().join("pre");
    std::fs::create_dir_all(&pre_dir).unwrap();
    let mut w = mixer(&sources, 0).unwrap();
    train::<CpuTrain>(&pre, shape, &mut w, 1.0, 0, &pre_dir, &device, false).unwrap();
    let ft = TrainConfig {
        init_from: pre_dir.join("checkpoints/final").display().to_string(),
        lora_qv_rank: 4,
        lora_embedding_rank: 8,
        lr: 1e-2,
        ..pre.clone()
    };
    let ft_dir = dir.path().join("ft");
    std::fs::create_dir_all(&ft_dir).unwrap();
    let mut w = mixer(&sources, 1).unwrap();
    let (_, outcome) =
        train::<CpuTrain>(&ft, shape, &mut w, 1.0, 0, &ft_dir, &device, false).unwrap();
    assert!(outcome.final_loss < outcome.first_loss, "{outcome:?}");

    let (base, _) = load_checkpoint::<Cpu>(&pre_dir.join("checkpoints/final"), &device).unwrap();
    let (tuned, tuned_shape) =
        load_checkpoint::<Cpu>(&ft_dir.join("checkpoints/final"), &device).unwrap();
    assert_eq!(tuned_shape.lora.qv_rank, 4);
    let (mut a, mut b) = (Collect(Vec::new()), Collect(Vec::new()));
    base.visit(&mut a);
    tuned.visit(&mut b);
    // The tuned model holds the base parameters, in order, then its adapters interleaved: every base
    // parameter appears unchanged in the tuned model.
    for p in &a.0 {
        assert!(b.0.contains(p), "a pretrained parameter changed");
    }
    let adapters: Vec<&Vec<f32>> = b.0.iter().filter(|p| !a.0.contains(p)).collect();
    assert_eq!(adapters.len(), 6, "A and B of q, v and the embedding");
    assert!(
        adapters.iter().all(|p| p.iter().any(|&v| v != 0.0)),
        "every adapter trained"
    );

    // The adapters moved because of training, not because of their initialisation: the same finetune at a
    // learning rate of 1e-30 (same seed, so the same initial adapters; every update is below f32 resolution for
    // the randomly initialised factors, and ~1e-30 for the zero ones) gives their starting values. Every adapter
    // factor (q, v and the embedding, A and B) of the real finetune lies at least 1e-3 from them somewhere.
    let still = TrainConfig {
        lr: 1e-30,
        ..ft.clone()
    };
    let still_dir = dir.path().join("still");
    std::fs::create_dir_all(&still_dir).unwrap();
    let mut w = mixer(&sources, 1).unwrap();
    train::<CpuTrain>(&still, shape, &mut w, 1.0, 0, &still_dir, &device, false).unwrap();
    let (start, _) = load_checkpoint::<Cpu>(&still_dir.join("checkpoints/final"), &device).unwrap();
    let mut c = Collect(Vec::new());
    start.visit(&mut c);
    let initial: Vec<&Vec<f32>> = c.0.iter().filter(|p| !a.0.contains(p)).collect();
    assert_eq!(initial.len(), 6);
    for (k, (t, i)) in adapters.iter().zip(&initial).enumerate() {
        assert_eq!(t.len(), i.len());
        let moved = t
            .iter()
            .zip(i.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 1e-3,
            "adapter factor {k} moved only {moved} from its initial value"
        );
        let tiny = i.iter().all(|v| v.abs() < 1e-20);
        let random = i.iter().any(|v| v.abs() > 1e-3);
        assert!(tiny || random, "factor {k} starts at 0 or at random values");
    }
}

/// A diverging run stops with a clear error at the first non-finite loss, and the checkpoints it completed
/// before stay.
#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_earlier_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let bios = BioS::build(
        &BioSConfig {
            people: 30,
            ..BioSConfig::default()
        },
        5,
    )
    .unwrap();
    let manifest = bios.write(&dir.path().join("data"), |_| {}).unwrap();
    let ds = Dataset::open(&dir.path().join("data")).unwrap();
    let sources = mixture_sources(&ds, Some(&bios)).unwrap();
    let mut w = mixer(&sources, 0).unwrap();
    let cfg = TrainConfig {
        steps: 200,
        batch_size: 2,
        context: 32,
        lr: 1e30,
        warmup_steps: 1,
        grad_clip: 0.0,
        checkpoint_every: 1,
        keep_checkpoints: 1,
        ..TrainConfig::default()
    };
    let shape = base_shape(manifest.vocab_size);
    let err = train::<CpuTrain>(
        &cfg,
        shape,
        &mut w,
        1.0,
        0,
        dir.path(),
        &Default::default(),
        false,
    )
    .expect_err("a learning rate of 1e30 diverges");
    let msg = err.to_string();
    assert!(
        msg.contains("the loss became") && msg.contains("--resume"),
        "{msg}"
    );
    let step: usize = msg
        .split("at step ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("the message names the step");
    if step > 0 {
        assert!(physlab_trainer::train::newest_checkpoint(dir.path()).is_some());
    }
}
