//! `physlab export-model` and `physlab import-model` through the binary (issue 18), on tiny runs trained here:
//! the export holds every file transformers needs; export → import writes a checkpoint with bit-identical weights
//! and the same config.json that physlab's loaders accept; an output folder that is not new or empty is refused
//! and left as it was; a mixture-of-experts run is refused with a one-line reason and nothing written.
//! (The tensor mapping itself is checked against transformers in trainer/tests/hf_export.rs.)

use std::path::{Path, PathBuf};

use physlab_trainer::hf;

mod common;

/// (success, stdout, stderr) of `physlab args…`, run in `cwd`.
fn physlab_in(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    common::physlab_args(Some(cwd), args)
}

/// Trains a tiny run of `preset` in `dir` (a few steps) and returns its run folder.
fn tiny_run(dir: &Path, preset: &str) -> PathBuf {
    let ws = format!(
        "[experiment.tiny]\ndata.people = 20\ndata.qa.enabled = true\nmodel.preset = \"{preset}\"\n\
         model.d_model = 16\nmodel.experts = 2\ntrain.steps = 3\ntrain.batch_size = 2\ntrain.context = 96\n\
         train.log_every = 1\n"
    );
    std::fs::write(dir.join("workspace.toml"), ws).unwrap();
    let (ok, _, err) = physlab_in(dir, &["run", "tiny", "--runs", "runs"]);
    assert!(ok, "training the tiny {preset} run: {err}");
    let mut found = Vec::new();
    let mut stack = vec![dir.join("runs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.join("checkpoints/final/DONE").exists() {
                    found.push(p.clone());
                }
                stack.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn weights(path: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    hf::read_safetensors(&std::fs::read(path).unwrap())
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.shape, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn export_then_import_gives_the_same_weights_and_refuses_a_used_folder() {
    let d = tempfile::tempdir().unwrap();
    let run = tiny_run(d.path(), "gpt2-1-2");
    let run_s = run.to_str().unwrap();

    let (ok, out, err) = physlab_in(d.path(), &["export-model", run_s, "--out", "hf"]);
    assert!(ok, "{err}");
    assert!(out.contains("GPTNeoXForCausalLM"), "{out}");
    for f in [
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "physlab_logits.safetensors",
    ] {
        assert!(d.path().join("hf").join(f).is_file(), "{f} missing");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt_neox");
    assert_eq!(config["use_parallel_residual"], false);
    assert_eq!(config["hidden_act"], "gelu");
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("hf/tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(tok["model"]["type"], "WordLevel");
    assert_eq!(tok["model"]["vocab"]["<eot>"], 0);
    assert_eq!(tok["pre_tokenizer"]["type"], "WhitespaceSplit");

    // The round trip: the imported checkpoint's weights and config are the run's, bit for bit.
    let (ok, out, err) = physlab_in(d.path(), &["import-model", "hf", "--out", "back"]);
    assert!(ok, "{err}");
    assert!(out.contains("checkpoints/final"), "{out}");
    let a = run.join("checkpoints/final");
    let b = d.path().join("back/checkpoints/final");
    assert_eq!(
        weights(&a.join("model.safetensors")),
        weights(&b.join("model.safetensors"))
    );
    assert_eq!(
        std::fs::read(a.join("config.json")).unwrap(),
        std::fs::read(b.join("config.json")).unwrap()
    );
    for f in ["checksums.json", "state.json", "DONE"] {
        assert!(b.join(f).exists(), "{f}");
    }
    // Importing again never replaces the checkpoint.
    let (ok, _, err) = physlab_in(d.path(), &["import-model", "hf", "--out", "back"]);
    assert!(
        !ok && err.contains("back/checkpoints/final exists"),
        "{err}"
    );

    // A folder that is not new or empty is refused, named, and left as it was.
    let before = std::fs::read(d.path().join("hf/model.safetensors")).unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["export-model", run_s, "--out", "hf"]);
    assert!(!ok, "exported into a used folder");
    assert!(
        err.contains("hf exists and is not empty") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        std::fs::read(d.path().join("hf/model.safetensors")).unwrap(),
        before
    );
    std::fs::write(d.path().join("a-file"), "mine").unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["export-model", run_s, "--out", "a-file"]);
    assert!(!ok && err.contains("a-file"), "{err}");
    assert_eq!(std::fs::read(d.path().join("a-file")).unwrap(), b"mine");
    // An empty folder is fine.
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let (ok, _, err) = physlab_in(d.path(), &["export-model", run_s, "--out", "empty"]);
    assert!(ok, "{err}");
}

#[test]
fn a_mixture_of_experts_is_refused_with_its_reason() {
    let d = tempfile::tempdir().unwrap();
    let run = tiny_run(d.path(), "moe-1-1");
    let (ok, _, err) = physlab_in(
        d.path(),
        &["export-model", run.to_str().unwrap(), "--out", "hf"],
    );
    assert!(!ok, "a moe run was exported");
    let err = err.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot export to transformers: moe") && err.contains("no standard"),
        "{err}"
    );
    assert!(
        !d.path().join("hf").exists(),
        "the refused export wrote hf/"
    );
}
