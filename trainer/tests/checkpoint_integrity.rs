//! Checkpoints against hostile inputs (issue 17): a damaged, foreign, non-finite or old-format checkpoint is
//! either refused with a one-line error naming the checkpoint and the file, or (old format, older fallback) loaded
//! on the same loss curve. Each test reproduces one case a tester found against the code before checksums.
//!
//! Runs are tiny (gpt2-1-1, d_model 32, batch 2 × 32 tokens, ≤ 12 steps), so each test takes well under a second
//! of training. burn-flex's seed is process-global: trainings hold `TRAINING` so that tests do not interleave.
//! "Identical" means bit for bit (same binary, same machine, one thread of training at a time).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{mixer, mixture_sources, Dataset};
use physlab_trainer::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use physlab_trainer::burn::tensor::backend::Backend;
use physlab_trainer::burn::tensor::Tensor;
use physlab_trainer::train::{
    load_checkpoint, optimizer, prune_step_checkpoints, save_checkpoint, save_step_checkpoint,
    train, TrainError, TrainState, CHECKSUMS, FINAL_FILES, STEP_FILES,
};
use physlab_trainer::{Cpu, CpuTrain, GptShape, ModelConfig, TrainConfig, TrainOutcome};

static TRAINING: Mutex<()> = Mutex::new(());

struct Lab {
    dir: tempfile::TempDir,
    bios: BioS,
    vocab: usize,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let bios = BioS::build(
        &BioSConfig {
            people: 30,
            ..BioSConfig::default()
        },
        2,
    )
    .unwrap();
    let manifest = bios.write(&dir.path().join("data"), |_| {}).unwrap();
    Lab {
        dir,
        bios,
        vocab: manifest.vocab_size,
    }
}

fn shape(vocab: usize, preset: &str, d_model: usize) -> GptShape {
    ModelConfig {
        preset: preset.into(),
        d_model,
        ..ModelConfig::default()
    }
    .shape(vocab, 32)
    .unwrap()
}

/// 12 steps, a metrics line per step, a step checkpoint every 4 (step-4 and step-8 kept).
fn cfg() -> TrainConfig {
    TrainConfig {
        steps: 12,
        batch_size: 2,
        context: 32,
        lr: 3e-3,
        warmup_steps: 2,
        log_every: 1,
        checkpoint_every: 4,
        keep_checkpoints: 10,
        ..TrainConfig::default()
    }
}

impl Lab {
    fn run_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn train(
        &self,
        run: &Path,
        cfg: &TrainConfig,
        shape: GptShape,
        resume: bool,
    ) -> Result<TrainOutcome, TrainError> {
        let ds = Dataset::open(&self.dir.path().join("data")).unwrap();
        let sources = mixture_sources(&ds, Some(&self.bios)).unwrap();
        let mut w = mixer(&sources, 0).unwrap();
        train::<CpuTrain>(cfg, shape, &mut w, 1.0, 0, run, &Default::default(), resume)
            .map(|(_, o)| o)
    }
}

/// Every metrics.jsonl line in file order: (step, loss, lr, grad_norm, tokens), floats as bits.
fn metrics(run: &Path) -> Vec<(u64, u64, u64, u64, u64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| v[k].as_f64().unwrap().to_bits();
            (
                v["step"].as_u64().unwrap(),
                f("loss"),
                f("lr"),
                f("grad_norm"),
                v["tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The final checkpoint's parameters, in module order, as bits (the safetensors file's header may order its
/// entries differently from run to run; the values are what must agree).
fn final_weights(run: &Path) -> Vec<Vec<u32>> {
    struct Bits(Vec<Vec<u32>>);
    impl ModuleVisitor<Cpu> for Bits {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Cpu, D>>) {
            self.0.push(
                p.val()
                    .into_data()
                    .iter::<f32>()
                    .map(f32::to_bits)
                    .collect(),
            );
        }
    }
    let (m, _) =
        load_checkpoint::<Cpu>(&run.join("checkpoints/final"), &Default::default()).unwrap();
    let mut b = Bits(Vec::new());
    m.visit(&mut b);
    b.0
}

fn step_dir(run: &Path, step: usize) -> PathBuf {
    run.join(format!("checkpoints/step-{step:08}"))
}

/// A crash after the last step checkpoint: the final checkpoint and the step checkpoints after `keep_up_to` go.
fn crash_after(run: &Path, keep_up_to: usize) {
    std::fs::remove_dir_all(run.join("checkpoints/final")).unwrap();
    for e in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().to_string();
        if let Some(k) = n
            .strip_prefix("step-")
            .and_then(|k| k.parse::<usize>().ok())
        {
            if k > keep_up_to {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
    }
}

/// Flips bits of 16 bytes in the middle of a file (the float exponents of the tensors stored there).
fn flip_bytes(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 16] {
        *x ^= 0x7c;
    }
    std::fs::write(path, b).unwrap();
}

/// A one-line error message (no panic on the way: the caller got a `Result`).
fn one_line(e: impl std::fmt::Display) -> String {
    let m = e.to_string();
    eprintln!("error: {m}");
    assert!(!m.contains('\n'), "the message is one line: {m}");
    m
}

/// Replaces the first float parameter of a model with NaN.
struct NanFirst(bool);
impl<B: Backend> ModuleMapper<B> for NanFirst {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.0 {
            return p;
        }
        self.0 = true;
        p.map(|t| t.mul_scalar(f32::NAN))
    }
}

/// Case 1: a step checkpoint's model.bin with flipped bytes resumed to a finished run with a loss of 2.75e27.
/// Now its sha256 differs from checksums.json's and resuming is refused naming model.bin; the same for the
/// final checkpoint's model.safetensors.
#[test]
fn flipped_bytes_in_checkpoint_weights_are_refused_naming_the_file() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let run = lab.run_dir("run");
    let shape = shape(lab.vocab, "gpt2-1-1", 32);
    lab.train(&run, &cfg(), shape, false).unwrap();
    flip_bytes(&run.join("checkpoints/final/model.safetensors"));
    let e = one_line(
        load_checkpoint::<Cpu>(&run.join("checkpoints/final"), &Default::default()).unwrap_err(),
    );
    assert!(
        e.starts_with("loading the checkpoint")
            && e.contains("checkpoints/final")
            && e.contains("model.safetensors: its sha256"),
        "{e}"
    );
    crash_after(&run, 8);
    for s in [4, 8] {
        flip_bytes(&step_dir(&run, s).join("model.bin"));
    }
    let e = one_line(lab.train(&run, &cfg(), shape, true).unwrap_err());
    assert!(
        e.contains("step-00000008: model.bin: its sha256")
            && e.contains("step-00000004: model.bin: its sha256"),
        "{e}"
    );
}

/// Case 2: a step checkpoint of another model's shape panicked inside burn ("The vec record does not the same
/// length as the module"). Now state.json's shape is compared first, and the error names both shapes.
#[test]
fn a_step_checkpoint_of_another_shape_is_refused_naming_both_shapes() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let run = lab.run_dir("run");
    let two_layers = shape(lab.vocab, "gpt2-2-1", 32);
    let cfg = TrainConfig { steps: 8, ..cfg() };
    lab.train(&run, &cfg, two_layers, false).unwrap();
    crash_after(&run, 4);
    let one_layer = shape(lab.vocab, "gpt2-1-1", 32);
    let e = one_line(lab.train(&run, &cfg, one_layer, true).unwrap_err());
    assert!(
        e.contains("step-00000004: state.json records a model of shape")
            && e.contains(&format!("{two_layers:?}"))
            && e.contains(&format!("{one_layer:?}")),
        "{e}"
    );
}

/// Case 2, an older checkpoint (no checksums.json) whose state.json claims this run's shape but whose model.bin
/// is another model's (two layers, or another width): refused naming model.bin, no panic escapes.
#[test]
fn an_unverifiable_foreign_model_bin_is_refused_without_a_panic() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let one_layer = shape(lab.vocab, "gpt2-1-1", 32);
    let cfg = TrainConfig { steps: 8, ..cfg() };
    for (name, other, expect) in [
        (
            "layers",
            shape(lab.vocab, "gpt2-2-1", 32),
            "model.bin does not fit the model",
        ),
        (
            "width",
            shape(lab.vocab, "gpt2-1-1", 48),
            "model.bin: parameter",
        ),
    ] {
        let run = lab.run_dir(name);
        lab.train(&run, &cfg, other, false).unwrap();
        crash_after(&run, 4);
        let ck = step_dir(&run, 4);
        std::fs::remove_file(ck.join(CHECKSUMS)).unwrap();
        let sp = ck.join("state.json");
        let mut st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sp).unwrap()).unwrap();
        st["shape"] = serde_json::to_value(one_layer).unwrap();
        std::fs::write(&sp, serde_json::to_vec(&st).unwrap()).unwrap();
        let e = one_line(lab.train(&run, &cfg, one_layer, true).unwrap_err());
        assert!(
            e.contains("step-00000004") && e.contains(expect),
            "{name}: {e}"
        );
    }
}

/// Case 3: a final checkpoint whose config.json and weights were swapped in from another model loaded silently.
/// Now checksums.json catches the swap; without checksums.json (an older checkpoint), weights that do not fit
/// the model of config.json are refused: tensors of other dims (burn-store), and extra tensors.
#[test]
fn final_config_and_weights_of_another_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let save = |name: &str, s: GptShape| {
        let run = dir.path().join(name);
        save_checkpoint(&s.init::<Cpu>(&device), &s, &run, 0, 0).unwrap()
    };
    let x = save("x", shape(90, "gpt2-1-1", 32));
    let wide = save("wide", shape(90, "gpt2-1-1", 48));
    let deep = save("deep", shape(90, "gpt2-2-1", 32));
    let swap_in = |from: &Path, files: &[&str]| {
        for f in files {
            std::fs::copy(from.join(f), x.join(f)).unwrap();
        }
    };
    // Both files of another model, consistent with each other: checksums.json of x lists other digests.
    swap_in(&wide, &["config.json", "model.safetensors"]);
    let e = one_line(load_checkpoint::<Cpu>(&x, &device).unwrap_err());
    assert!(
        e.contains("checkpoints/final") && e.contains("config.json: its sha256"),
        "{e}"
    );
    // No checksums.json (an older checkpoint): config.json of x (32 wide), weights 48 wide.
    std::fs::remove_file(x.join(CHECKSUMS)).unwrap();
    let x_config = serde_json::to_vec_pretty(&shape(90, "gpt2-1-1", 32)).unwrap();
    std::fs::write(x.join("config.json"), &x_config).unwrap();
    let e = one_line(load_checkpoint::<Cpu>(&x, &device).unwrap_err());
    assert!(
        e.contains("checkpoints/final: model.safetensors") && e.contains("ShapeMismatch"),
        "{e}"
    );
    // No checksums.json: config.json of x (one layer), weights of two layers: the second layer is extra.
    swap_in(&deep, &["model.safetensors"]);
    let e = one_line(load_checkpoint::<Cpu>(&x, &device).unwrap_err());
    assert!(
        e.contains("model.safetensors holds tensors the model in config.json does not have"),
        "{e}"
    );
}

/// Case 4: final weights full of NaN were sampled and probed without complaint; a step checkpoint with NaN
/// weights resumed into a non-finite loss. Now both loads name the checkpoint and the first non-finite parameter.
#[test]
fn non_finite_weights_are_refused_naming_the_parameter() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let device = Default::default();
    let s = shape(lab.vocab, "gpt2-1-1", 32);
    let nan = s.init::<Cpu>(&device).map(&mut NanFirst(false));
    let final_dir = save_checkpoint(&nan, &s, &lab.run_dir("final"), 12, 0).unwrap();
    let e = one_line(load_checkpoint::<Cpu>(&final_dir, &device).unwrap_err());
    assert!(
        e.contains("checkpoints/final: model.safetensors: parameter wte")
            && e.contains("NaN")
            && e.contains("not finite"),
        "{e}"
    );

    let run = lab.run_dir("run");
    lab.train(&run, &cfg(), s, false).unwrap();
    crash_after(&run, 4);
    let st: TrainState =
        serde_json::from_slice(&std::fs::read(step_dir(&run, 4).join("state.json")).unwrap())
            .unwrap();
    let nan = s.init::<CpuTrain>(&device).map(&mut NanFirst(false));
    save_step_checkpoint(&nan, &optimizer::<CpuTrain>(&cfg()), &st, &run, 10).unwrap();
    let e = one_line(lab.train(&run, &cfg(), s, true).unwrap_err());
    assert!(
        e.contains("step-00000004: model.bin: parameter wte") && e.contains("not finite"),
        "{e}"
    );
}

/// Case 5: a step checkpoint written before the first metrics line (first_loss and last_loss NaN, written as
/// null) could never be resumed ("state.json: invalid type: null, expected f64"). Now it resumes onto the same
/// loss curve as the uninterrupted run.
#[test]
fn a_checkpoint_written_before_the_first_log_line_resumes() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let s = shape(lab.vocab, "gpt2-1-1", 32);
    let cfg = TrainConfig {
        steps: 8,
        log_every: 6,
        checkpoint_every: 2,
        ..cfg()
    };
    let reference = lab.run_dir("reference");
    let want = lab.train(&reference, &cfg, s, false).unwrap();
    let run = lab.run_dir("run");
    lab.train(&run, &cfg, s, false).unwrap();
    crash_after(&run, 2);
    let state = std::fs::read_to_string(step_dir(&run, 2).join("state.json")).unwrap();
    assert!(state.contains("\"first_loss\": null"), "{state}");
    let got = lab.train(&run, &cfg, s, true).unwrap();
    assert_eq!(got.resumed_from, 2);
    assert_eq!(got.first_loss.to_bits(), want.first_loss.to_bits());
    assert_eq!(got.final_loss.to_bits(), want.final_loss.to_bits());
    assert_eq!(metrics(&run), metrics(&reference));
}

/// Case 6: resume did not fall back to an older checkpoint. Now a damaged newest one is reported and the next
/// older one resumed (same curve as the uninterrupted run); when none loads, the error lists each and why, and
/// every checkpoint folder is kept.
#[test]
fn resume_falls_back_to_an_older_checkpoint_and_lists_all_when_none_loads() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let s = shape(lab.vocab, "gpt2-1-1", 32);
    let reference = lab.run_dir("reference");
    lab.train(&reference, &cfg(), s, false).unwrap();
    let run = lab.run_dir("run");
    lab.train(&run, &cfg(), s, false).unwrap();
    crash_after(&run, 8);
    flip_bytes(&step_dir(&run, 8).join("optimizer.bin"));
    let got = lab.train(&run, &cfg(), s, true).unwrap();
    assert_eq!(got.resumed_from, 4, "step-8 is damaged: step-4 is resumed");
    assert_eq!(metrics(&run), metrics(&reference));
    assert!(
        final_weights(&run) == final_weights(&reference),
        "the final weights differ from the uninterrupted run's"
    );

    crash_after(&run, 8);
    flip_bytes(&step_dir(&run, 8).join("model.bin"));
    std::fs::write(step_dir(&run, 4).join("state.json"), b"{\"step\": 4").unwrap();
    let e = one_line(lab.train(&run, &cfg(), s, true).unwrap_err());
    assert!(
        e.starts_with("cannot resume from")
            && e.contains("none of its 2 complete step checkpoints loads")
            && e.contains("step-00000008: model.bin: its sha256")
            && e.contains("step-00000004: state.json: its sha256"),
        "{e}"
    );
    assert!(step_dir(&run, 4).exists() && step_dir(&run, 8).exists());
    // An old-format checkpoint (no checksums.json) with a broken state.json: the parse error is the reason.
    std::fs::remove_file(step_dir(&run, 4).join(CHECKSUMS)).unwrap();
    let e = one_line(lab.train(&run, &cfg(), s, true).unwrap_err());
    assert!(e.contains("step-00000004: state.json: EOF"), "{e}");
}

/// Case 7: load errors said "saving the checkpoint". Now a load says "loading the checkpoint" and names it.
#[test]
fn load_errors_say_loading_and_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let s = shape(90, "gpt2-1-1", 32);
    let ck = save_checkpoint(&s.init::<Cpu>(&device), &s, dir.path(), 0, 0).unwrap();
    std::fs::remove_file(ck.join("DONE")).unwrap();
    let e = one_line(load_checkpoint::<Cpu>(&ck, &device).unwrap_err());
    assert_eq!(
        e,
        format!(
            "loading the checkpoint {}: incomplete checkpoint (no DONE marker)",
            ck.display()
        )
    );
    std::fs::write(ck.join("DONE"), b"").unwrap();
    std::fs::remove_file(ck.join(CHECKSUMS)).unwrap();
    std::fs::write(ck.join("config.json"), b"{").unwrap();
    let e = one_line(load_checkpoint::<Cpu>(&ck, &device).unwrap_err());
    assert!(
        e.starts_with(&format!(
            "loading the checkpoint {}: config.json:",
            ck.display()
        )),
        "{e}"
    );
}

/// Case 8: a resumed run's metrics.jsonl repeated the steps after its checkpoint (written before the crash).
/// Now they are dropped on resume and written again: each step once, the same lines as the uninterrupted run.
#[test]
fn a_resumed_run_writes_each_metrics_step_once() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let s = shape(lab.vocab, "gpt2-1-1", 32);
    let reference = lab.run_dir("reference");
    lab.train(&reference, &cfg(), s, false).unwrap();
    let run = lab.run_dir("run");
    lab.train(&run, &cfg(), s, false).unwrap();
    crash_after(&run, 4);
    // A line cut short by the crash is dropped too.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"step\": 13, \"tok").unwrap();
    drop(f);
    let got = lab.train(&run, &cfg(), s, true).unwrap();
    assert_eq!(got.resumed_from, 4);
    let m = metrics(&run);
    assert_eq!(
        m.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<u64>>()
    );
    assert_eq!(m, metrics(&reference));
}

/// Old-format step checkpoints (written before checksums.json existed; a running experiment resumes them) still
/// resume, with a warning, onto identical results: metrics and final weights bit for bit.
#[test]
fn an_old_format_step_checkpoint_resumes_with_identical_results() {
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let s = shape(lab.vocab, "gpt2-1-1", 32);
    let reference = lab.run_dir("reference");
    let want = lab.train(&reference, &cfg(), s, false).unwrap();
    let run = lab.run_dir("run");
    lab.train(&run, &cfg(), s, false).unwrap();
    crash_after(&run, 8);
    std::fs::remove_file(step_dir(&run, 8).join(CHECKSUMS)).unwrap();
    let got = lab.train(&run, &cfg(), s, true).unwrap();
    assert_eq!(got.resumed_from, 8);
    assert_eq!(got.final_loss.to_bits(), want.final_loss.to_bits());
    assert_eq!(metrics(&run), metrics(&reference));
    assert!(
        final_weights(&run) == final_weights(&reference),
        "the final weights differ from the uninterrupted run's"
    );
    // An old-format final checkpoint loads too.
    std::fs::remove_file(run.join("checkpoints/final").join(CHECKSUMS)).unwrap();
    load_checkpoint::<Cpu>(&run.join("checkpoints/final"), &Default::default()).unwrap();
}

/// Case 9: every checkpoint lists the sha256 of each of its files in checksums.json, next to DONE, and no
/// temporary file or folder is left behind.
#[test]
fn checkpoints_hold_checksums_of_every_file_and_no_temporaries() {
    use sha2::{Digest, Sha256};
    let _t = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let run = lab.run_dir("run");
    lab.train(&run, &cfg(), shape(lab.vocab, "gpt2-1-1", 32), false)
        .unwrap();
    let ckpts = run.join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["final", "step-00000004", "step-00000008"]);
    for (name, files) in [
        ("final", FINAL_FILES),
        ("step-00000004", STEP_FILES),
        ("step-00000008", STEP_FILES),
    ] {
        let d = ckpts.join(name);
        let mut present: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        present.sort();
        let mut want: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        want.extend([CHECKSUMS.to_string(), "DONE".to_string()]);
        want.sort();
        assert_eq!(present, want, "{name}");
        let sums: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(CHECKSUMS)).unwrap()).unwrap();
        let listed = sums["sha256"].as_object().unwrap();
        assert_eq!(listed.len(), files.len(), "{name}");
        for f in files {
            let digest: String = Sha256::digest(std::fs::read(d.join(f)).unwrap())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(listed[f].as_str().unwrap(), digest, "{name}/{f}");
        }
    }
}

/// A process killed while it removed an old step checkpoint left a `step-N` folder without DONE (the marker
/// removed, other files not yet): it was never counted as complete, so never pruned, and a run kept three step
/// checkpoints instead of two (`a_killed_run_resumes_on_the_same_loss_curve` failed once that way under load).
/// Pruning now clears such folders, interrupted writes (`.tmp`) and interrupted removals (`.old`), keeps the
/// newest complete ones, and leaves every name it does not write alone.
#[test]
fn pruning_clears_what_an_interrupted_removal_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkpoints");
    let folder = |name: &str, files: &[&str]| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::write(d.join(f), b"x").unwrap();
        }
    };
    let complete = [
        "model.bin",
        "optimizer.bin",
        "state.json",
        "checksums.json",
        "DONE",
    ];
    folder("step-00000004", &complete);
    folder("step-00000008", &["optimizer.bin", "state.json"]); // DONE and model.bin already removed
    folder("step-00000012", &complete);
    folder("step-00000016", &complete);
    folder("step-00000020.tmp", &["model.bin"]);
    folder("step-00000002.old", &["state.json"]);
    folder("final", &["model.safetensors", "DONE"]);
    folder("step-mine", &["notes.txt"]);
    folder("step-00000003.bak", &["DONE"]);
    std::fs::write(dir.join("step-00000001"), b"a file, not a checkpoint").unwrap();
    prune_step_checkpoints(&dir, 2).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "final",
            "step-00000001",
            "step-00000003.bak",
            "step-00000012",
            "step-00000016",
            "step-mine"
        ]
    );
    for kept in ["step-00000012", "step-00000016"] {
        assert!(dir.join(kept).join("model.bin").exists(), "{kept}");
    }
    // Nothing left to do: a second call changes nothing.
    prune_step_checkpoints(&dir, 2).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 6);
}
