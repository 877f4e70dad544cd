//! Fuzzing checkpoint loading (issue 17): a real step checkpoint and a real final checkpoint of a tiny run, copied
//! and damaged at random (bytes flipped, files truncated, garbage appended, a file replaced by random bytes or by
//! another file of the checkpoint, one deleted), then loaded. Every case must load, or fail with a one-line
//! error naming the checkpoint folder; none may panic. The final checkpoint is also fuzzed without its
//! checksums.json (as an older build wrote it), so the safetensors reader and the shape and finite checks meet
//! the damage themselves. (A step checkpoint without checksums cannot be fuzzed this way: burn's record decoder
//! may abort on a damaged length prefix before any check can run; such checkpoints only come from older builds
//! and load with a warning.)

use std::path::{Path, PathBuf};

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::train::{load_checkpoint, load_step_checkpoint, optimizer, train};
use physlab_trainer::{Cpu, CpuTrain, Gpt, GptShape, ModelConfig, TrainConfig};
use rand::{Rng, SeedableRng};

/// Cases per CI run (PHYSLAB_FUZZ_CASES overrides; PHYSLAB_FUZZ_SEED picks another seed).
const CASES: usize = 3000;

/// Trains 6 steps of a tiny model into `dir/run`, with a step checkpoint at step 4, and returns its shape.
fn tiny_run(dir: &Path) -> GptShape {
    let bios = BioS::build(
        &BioSConfig {
            people: 20,
            ..BioSConfig::default()
        },
        1,
    )
    .unwrap();
    let manifest = bios.write(&dir.join("data"), |_| {}).unwrap();
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 16,
        ..ModelConfig::default()
    }
    .shape(manifest.vocab_size, 32)
    .unwrap();
    let cfg = TrainConfig {
        steps: 6,
        batch_size: 2,
        context: 32,
        warmup_steps: 1,
        log_every: 1,
        checkpoint_every: 4,
        keep_checkpoints: 2,
        ..TrainConfig::default()
    };
    let ds = Dataset::open(&dir.join("data")).unwrap();
    let sources = mixture_sources(&ds, Some(&bios)).unwrap();
    let mut w = mixer(&sources, 0).unwrap();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    train::<CpuTrain>(
        &cfg,
        shape,
        &mut w,
        1.0,
        0,
        &run,
        &Default::default(),
        false,
    )
    .unwrap();
    shape
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "DONE"))
        .collect();
    v.sort();
    v
}

/// One to three random damages to the files of `dir`.
fn damage(dir: &Path, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        let fs = files(dir);
        if fs.is_empty() {
            break;
        }
        let f = &fs[rng.random_range(0..fs.len())];
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let mut bytes = std::fs::read(f).unwrap();
        let what = rng.random_range(0..7);
        match what {
            0 | 1 if !bytes.is_empty() => {
                // Flip a byte, mostly near the start (headers, length prefixes, JSON keys).
                let at = if rng.random_bool(0.5) {
                    rng.random_range(0..bytes.len().min(64))
                } else {
                    rng.random_range(0..bytes.len())
                };
                bytes[at] ^= 1 << rng.random_range(0..8);
                done.push(format!("{name}: flip at {at}"));
            }
            2 => {
                let n = rng.random_range(0..=bytes.len());
                bytes.truncate(n);
                done.push(format!("{name}: truncate to {n}"));
            }
            3 => {
                let n = rng.random_range(1..64);
                bytes.extend((0..n).map(|_| rng.random::<u8>()));
                done.push(format!("{name}: append {n}"));
            }
            4 => {
                let n = rng.random_range(0..256);
                bytes = (0..n).map(|_| rng.random::<u8>()).collect();
                done.push(format!("{name}: random {n} bytes"));
            }
            5 => {
                let other = &fs[rng.random_range(0..fs.len())];
                bytes = std::fs::read(other).unwrap();
                done.push(format!("{name}: replaced by {}", other.display()));
            }
            _ => {
                std::fs::remove_file(f).unwrap();
                done.push(format!("{name}: deleted"));
                continue;
            }
        }
        std::fs::write(f, bytes).unwrap();
    }
    done
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[derive(Default, Debug)]
struct Counts {
    loaded: usize,
    refused: usize,
}

fn check(
    what: &str,
    case: usize,
    damage: &[String],
    dir: &Path,
    r: std::thread::Result<Result<(), String>>,
    counts: &mut Counts,
) {
    match r {
        Err(_) => panic!("{what} case {case}: panicked after {damage:?}"),
        Ok(Ok(())) => counts.loaded += 1,
        Ok(Err(e)) => {
            assert_eq!(e.lines().count(), 1, "{what} case {case} {damage:?}: {e}");
            assert!(
                e.contains(&dir.display().to_string()),
                "{what} case {case} {damage:?}: the error does not name {}: {e}",
                dir.display()
            );
            counts.refused += 1;
        }
    }
}

#[test]
fn damaged_checkpoints_never_panic_and_errors_name_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = tiny_run(tmp.path());
    let step = tmp.path().join("run/checkpoints/step-00000004");
    let fin = tmp.path().join("run/checkpoints/final");
    assert!(step.join("checksums.json").exists() && fin.join("checksums.json").exists());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("PHYSLAB_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    let cases: usize = std::env::var("PHYSLAB_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let device = Default::default();
    let (mut steps, mut finals, mut old_finals) =
        (Counts::default(), Counts::default(), Counts::default());
    // burn's own panic messages (caught here) would flood the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for case in 0..cases {
        let kind = case % 3;
        let dir = tmp.path().join(format!("case-{case}"));
        copy_dir(if kind == 0 { &step } else { &fin }, &dir);
        if kind == 2 {
            std::fs::remove_file(dir.join("checksums.json")).unwrap();
        }
        let d = damage(&dir, &mut rng);
        let r = std::panic::catch_unwind(|| match kind {
            0 => {
                let cfg = TrainConfig::default();
                let model: Gpt<CpuTrain> = shape.init(&device);
                load_step_checkpoint::<CpuTrain>(&dir, &shape, model, optimizer(&cfg), &device)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => load_checkpoint::<Cpu>(&dir, &device)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        });
        let counts = match kind {
            0 => &mut steps,
            1 => &mut finals,
            _ => &mut old_finals,
        };
        check(
            ["step", "final", "final without checksums"][kind],
            case,
            &d,
            &dir,
            r,
            counts,
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::panic::set_hook(hook);
    println!(
        "{cases} damaged checkpoints: step {steps:?}, final {finals:?}, final without checksums {old_finals:?}"
    );
    // With checksums, every damage to a listed file is caught; a case "loads" only when the damage missed
    // (e.g. a byte flipped twice back, or DONE-only changes).
    assert!(steps.refused > steps.loaded && finals.refused > finals.loaded);
}
